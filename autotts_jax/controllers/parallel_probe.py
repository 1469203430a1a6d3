"""Parallel-Probe (upstream ``Parallel_Probe``): many chains probed in lock step, pruned when
they keep disagreeing with the majority, stopped when the majority is stable.

Round 0 opens ``num_chains`` chains by one interval.  Every later round advances each
unpruned, unfinished chain by ``probe_burst`` intervals, then votes over the latest answers of
all unpruned chains (finished ones keep voting with their final answer; ties go to the
earliest-spawned chain).  From step ``warm_up`` on, a chain off the winner for
``prune_patience`` consecutive steps is pruned.  Stop when the winner has been unchanged for
``T`` further steps, or when every chain is finished or pruned.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from autotts_jax.engine.env import NO_ANSWER, Observation
from autotts_jax.engine.protocol import Controller, Effects, Range


class Params(NamedTuple):
    """``Parallel_Probe``'s arguments and defaults; the config is the params."""

    num_chains: int = 64  # () int32 chains opened in round 0
    K: int = 5  # () int32 stored by upstream, never used
    T: int = 14  # () int32 stop once the winner was unchanged for T further steps
    eps_inter: float = 5.0  # () float64 stored by upstream, never used
    eps_intra: float = 5.0  # () float64 stored by upstream, never used
    prune_patience: int = 8  # () int32 steps off the winner before a chain is pruned
    warm_up: int = 10  # () int32 steps before pruning starts
    probe_burst: int = 1  # () int32 intervals per chain and step
    max_steps: int = 100  # () int32 steps at most


class State(NamedTuple):
    """Shared with SCOUT's pruning variant (``pp_prune_vote``)."""

    off: jax.Array  # (S,) int32 consecutive steps each chain was off the winner
    stable: jax.Array  # () int32 consecutive steps the winner stayed the same
    prev: jax.Array  # () int32 the previous step's winner (-1 none)
    n_steps: jax.Array  # () int32 steps run


def make_params(config) -> Params:
    p = Params(
        num_chains=int(config["num_chains"]), K=int(config["K"]), T=int(config["T"]),
        eps_inter=float(config["eps_inter"]), eps_intra=float(config["eps_intra"]),
        prune_patience=int(config["prune_patience"]), warm_up=int(config["warm_up"]),
        probe_burst=int(config["probe_burst"]), max_steps=int(config["max_steps"]),
    )
    if p.num_chains < 1:
        raise ValueError(f"parallel_probe: num_chains must be >= 1, got {p.num_chains}")
    return p


def initial_state(obs: Observation) -> State:
    """The state after the opening round: no step run, no winner yet."""
    return State(off=jnp.zeros(obs.n_slots, jnp.int32), stable=jnp.zeros((), jnp.int32),
                 prev=jnp.full((), NO_ANSWER, jnp.int32), n_steps=jnp.zeros((), jnp.int32))


def init(obs: Observation, params: Params, fx: Effects) -> tuple[Observation, State]:
    obs = fx.probe_new(obs, params.num_chains)
    obs = fx.stop(obs, NO_ANSWER, "no_branches", when=obs.opened == 0)
    # max_steps < 1: upstream's step loop never runs and it returns None (``prev``).
    obs = fx.stop(obs, NO_ANSWER, "max_steps", when=params.max_steps < 1)
    return obs, initial_state(obs)


def step(obs: Observation, cstate: State, params: Params, fx: Effects
         ) -> tuple[Observation, State]:
    unfinished = obs.is_open & ~obs.pruned & ~obs.finished
    obs, _ = fx.advance(obs, jnp.where(unfinished, params.probe_burst, 0))
    active = obs.is_open & ~obs.pruned
    win, _, _ = fx.vote(obs.latest, active)

    check = (cstate.n_steps >= params.warm_up) & (jnp.sum(active, dtype=jnp.int32) > 1)
    track = check & active & ~obs.finished
    off = jnp.where(track, jnp.where(obs.latest != win, cstate.off + 1, 0), cstate.off)
    cut = track & (off >= params.prune_patience)
    obs = fx.prune(obs, cut)
    active = active & ~cut
    obs = fx.stop(obs, cstate.prev, "all_pruned", when=~jnp.any(active))
    win = jnp.where(jnp.any(cut), fx.vote(obs.latest, active)[0], win)

    stable = jnp.where(win == cstate.prev, cstate.stable + 1, 0)
    obs = fx.stop(obs, win, "stable", when=stable >= params.T)
    resolved = jnp.all(~obs.is_open | obs.finished | obs.pruned)
    obs = fx.stop(obs, win, "all_resolved", when=resolved)
    n_steps = cstate.n_steps + 1
    obs = fx.stop(obs, win, "max_steps", when=n_steps >= params.max_steps)
    return obs, State(off=off, stable=stable, prev=win, n_steps=n_steps)


def trace_fields(cstate: State) -> dict:
    return {"stable": cstate.stable, "majority": cstate.prev, "n_steps": cstate.n_steps}


PARALLEL_PROBE = Controller(
    name="parallel_probe",
    aliases=("Parallel_Probe", "ParallelProbe", "PP", "pp"),
    defaults=Params(),
    make_params=make_params,
    max_slots=lambda c: int(c["num_chains"]),
    init=init,
    step=step,
    stop_reasons=("stable", "all_resolved", "max_steps", "all_pruned", "no_branches"),
    trace_fields=trace_fields,
    group_slots=True,
    oracle="autotts_jax.oracle.controllers:Parallel_Probe",
    config_space={"num_chains": Range(1, 20), "T": Range(0, 4), "prune_patience": Range(0, 4),
                  "warm_up": Range(0, 4), "probe_burst": Range(0, 3),
                  "max_steps": Range(0, 12, (100,))},
    examples=({"num_chains": 6, "T": 2, "prune_patience": 1, "warm_up": 1},),
    doc=__doc__,
)
