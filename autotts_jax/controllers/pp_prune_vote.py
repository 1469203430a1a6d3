"""SCOUT's pruning variant of Parallel-Probe (upstream ``ParallelESTPruning`` under
``GreedySolver``): pruned chains stop being probed but keep voting.

Round 0 opens ``num_chains`` chains by one probe; if the branches run out first, SCOUT's
initialisation raises and the episode has no answer (the probes made stay charged; stop
reason ``exhausted``).  Every later round (step 0, 1, ...) probes each chain that is
neither finished nor pruned once, then takes the majority of the latest answers of **all**
chains in slot order -- running ones, naturally finished ones (final answer) and pruned ones
(their last probe answer, frozen).  From step ``warm_up`` on, and only while more than one
chain is still being probed, a running chain off the winner for ``prune_patience``
consecutive steps is pruned; the winner is not recomputed (pruned chains keep their vote).
Stop with the winner once it has been the same for ``T + 1`` consecutive steps, when every
chain is finished or pruned, or after ``max_steps`` steps.

Differences from ``parallel_probe`` (= SCOUT's ``ParallelESTPruningBurstMajorityOnActiveBranches``):
pruned chains keep voting, the pruning gate counts only chains still being probed, no
``probe_burst``, and running out of branches at the start gives no answer.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from autotts_jax.controllers.parallel_probe import State, initial_state, trace_fields
from autotts_jax.engine.env import NO_ANSWER, Observation
from autotts_jax.engine.protocol import Controller, Effects, Range


class Params(NamedTuple):
    """``ParallelESTPruning``'s arguments and SCOUT's defaults; the config is the params."""

    num_chains: int = 4  # () int32 chains opened in round 0 (all of them, or no answer)
    K: int = 1000  # () int32 stored by SCOUT, never used
    T: int = 3  # () int32 stop once the winner was unchanged for T further steps
    eps_inter: float = 5.0  # () float64 stored by SCOUT, never used
    eps_intra: float = 5.0  # () float64 stored by SCOUT, never used
    max_steps: int = 100  # () int32 steps at most
    prune_patience: int = 8  # () int32 steps off the winner before a chain is pruned
    warm_up: int = 10  # () int32 steps before pruning starts


def make_params(config) -> Params:
    p = Params(
        num_chains=int(config["num_chains"]), K=int(config["K"]), T=int(config["T"]),
        eps_inter=float(config["eps_inter"]), eps_intra=float(config["eps_intra"]),
        max_steps=int(config["max_steps"]), prune_patience=int(config["prune_patience"]),
        warm_up=int(config["warm_up"]),
    )
    if p.num_chains < 1:
        raise ValueError(f"pp_prune_vote: num_chains must be >= 1, got {p.num_chains}")
    return p


def init(obs: Observation, params: Params, fx: Effects) -> tuple[Observation, State]:
    obs = fx.probe_new(obs, params.num_chains)
    obs = fx.stop(obs, NO_ANSWER, "exhausted", when=obs.opened < params.num_chains)
    obs = fx.stop(obs, NO_ANSWER, "max_steps", when=params.max_steps < 1)
    return obs, initial_state(obs)


def step(obs: Observation, cstate: State, params: Params, fx: Effects
         ) -> tuple[Observation, State]:
    obs, _ = fx.advance(obs, jnp.where(obs.alive, 1, 0))
    win, _, _ = fx.vote(obs.latest, obs.is_open)  # every chain votes, pruned ones included

    alive = obs.alive  # still being probed after this step's probe
    check = (cstate.n_steps >= params.warm_up) & (jnp.sum(alive, dtype=jnp.int32) > 1)
    track = check & alive
    off = jnp.where(track, jnp.where(obs.latest != win, cstate.off + 1, 0), cstate.off)
    obs = fx.prune(obs, track & (off >= params.prune_patience))

    stable = jnp.where(win == cstate.prev, cstate.stable + 1, 0)
    obs = fx.stop(obs, win, "stable", when=stable >= params.T)
    obs = fx.stop(obs, win, "all_resolved", when=~jnp.any(obs.alive))
    n_steps = cstate.n_steps + 1
    obs = fx.stop(obs, win, "max_steps", when=n_steps >= params.max_steps)
    return obs, State(off=off, stable=stable, prev=win, n_steps=n_steps)


PP_PRUNE_VOTE = Controller(
    name="pp_prune_vote",
    aliases=("ParallelESTPruning", "GreedySolver+ParallelESTPruning"),
    defaults=Params(),
    make_params=make_params,
    max_slots=lambda c: int(c["num_chains"]),
    init=init,
    step=step,
    stop_reasons=("stable", "all_resolved", "max_steps", "exhausted"),
    trace_fields=trace_fields,
    group_slots=True,
    oracle="autotts_jax.oracle.scout:pp_prune_vote",
    config_space={"num_chains": Range(1, 14), "K": Range(0, 9), "T": Range(0, 4),
                  "prune_patience": Range(0, 4), "warm_up": Range(0, 4),
                  "max_steps": Range(0, 12, (100,))},
    examples=({"num_chains": 3, "T": 1, "prune_patience": 1, "warm_up": 0},),
    doc=__doc__,
)
