"""SCOUT's pruning variant of Parallel-Probe (upstream ``ParallelESTPruning`` under
``GreedySolver``): pruned chains stop being probed but keep voting.

Round 0 opens ``num_chains`` chains by one probe; if the branches run out first, SCOUT's
initialisation raises and the episode has no answer (the probes made stay charged; stop
reason ``exhausted``).  Every later round (``step`` 0, 1, ...) probes each chain that is
neither finished nor pruned once, then takes the majority of the latest answers of **all**
chains in slot order -- running ones, naturally finished ones (final answer) and pruned ones
(their last probe answer, frozen).  From ``step >= warm_up``, and only while more than one
chain is still being probed, a running chain off the winner for ``prune_patience``
consecutive steps is pruned; the winner is not recomputed (pruned chains keep their vote).
Stop with the winner once it has been the same for ``T + 1`` consecutive steps, when every
chain is finished or pruned, or after ``max_steps`` steps.

Differences from ``parallel_probe`` (= SCOUT's ``ParallelESTPruningBurstMajorityOnActiveBranches``):
pruned chains keep voting, the pruning gate counts only chains still being probed, no
``probe_burst``, and running out of branches at the start gives no answer.  ``K``,
``eps_inter`` and ``eps_intra`` are accepted for config compatibility and never used.
"""

from __future__ import annotations

import jax.numpy as jnp

from autotts_jax.controllers.parallel_probe import initial_state
from autotts_jax.engine.env import NO_ANSWER
from autotts_jax.engine.protocol import Controller

DEFAULTS = {
    "num_chains": 4, "K": 1000, "T": 3, "eps_inter": 5, "eps_intra": 5, "max_steps": 100,
    "prune_patience": 8, "warm_up": 10,
}


def _params(config):
    p = {k: int(config[k]) for k in ("num_chains", "T", "max_steps", "prune_patience", "warm_up")}
    if p["num_chains"] < 1:
        raise ValueError(f"pp_prune_vote: num_chains must be >= 1, got {p['num_chains']}")
    return p


def init(obs, params, fx):
    obs = fx.probe_new(obs, params["num_chains"])
    obs = fx.stop(obs, NO_ANSWER, "exhausted", when=obs.opened < params["num_chains"])
    obs = fx.stop(obs, NO_ANSWER, "max_steps", when=params["max_steps"] < 1)
    return obs, initial_state(obs)


def step(obs, cs, params, fx):
    obs, _ = fx.advance(obs, jnp.where(obs.alive, 1, 0))
    win, _, _ = fx.vote(obs.latest, obs.is_open)  # every chain votes, pruned ones included

    alive = obs.alive  # still being probed after this step's probe
    check = (cs["step"] >= params["warm_up"]) & (jnp.sum(alive, dtype=jnp.int32) > 1)
    track = check & alive
    off = jnp.where(track, jnp.where(obs.latest != win, cs["off"] + 1, 0), cs["off"])
    obs = fx.prune(obs, track & (off >= params["prune_patience"]))

    stable = jnp.where(win == cs["prev"], cs["stable"] + 1, 0)
    obs = fx.stop(obs, win, "stable", when=stable >= params["T"])
    obs = fx.stop(obs, win, "all_resolved", when=~jnp.any(obs.alive))
    n = cs["step"] + 1
    obs = fx.stop(obs, win, "max_steps", when=n >= params["max_steps"])
    return obs, {"off": off, "stable": stable, "prev": win, "step": n}


PP_PRUNE_VOTE = Controller(
    name="pp_prune_vote",
    aliases=("ParallelESTPruning", "GreedySolver+ParallelESTPruning"),
    defaults=DEFAULTS,
    make_params=_params,
    max_slots=lambda c: int(c["num_chains"]),
    init=init,
    step=step,
    stop_reasons=("stable", "all_resolved", "max_steps", "exhausted"),
    trace_fields=lambda cs: {"stable": cs["stable"], "majority": cs["prev"], "step": cs["step"]},
    group_slots=True,
    doc=__doc__,
)
