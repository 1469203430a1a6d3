"""Parallel-Probe (upstream ``Parallel_Probe``): many chains probed in lock step, pruned when
they keep disagreeing with the majority, stopped when the majority is stable.

Round 0 opens ``num_chains`` chains by one interval.  Every later round advances each
unpruned, unfinished chain by ``probe_burst`` intervals, then votes over the latest answers of
all unpruned chains (finished ones keep voting with their final answer; ties go to the
earliest-spawned chain).  From step ``warm_up`` on, a chain off the winner for
``prune_patience`` consecutive steps is pruned.  Stop when the winner has been unchanged for
``T`` further steps, or when every chain is finished or pruned.

``K``, ``eps_inter`` and ``eps_intra`` are accepted for config compatibility; upstream stores
them and never uses them.
"""

from __future__ import annotations

import jax.numpy as jnp

from autotts_jax.engine.env import NO_ANSWER
from autotts_jax.engine.protocol import Controller

DEFAULTS = {
    "num_chains": 64, "K": 5, "T": 14, "eps_inter": 5.0, "eps_intra": 5.0,
    "prune_patience": 8, "warm_up": 10, "probe_burst": 1, "max_steps": 100,
}


def _params(config):
    p = {k: int(config[k]) for k in
         ("num_chains", "T", "prune_patience", "warm_up", "probe_burst", "max_steps")}
    if p["num_chains"] < 1:
        raise ValueError(f"parallel_probe: num_chains must be >= 1, got {p['num_chains']}")
    return p


def init(obs, params, fx):
    obs = fx.probe_new(obs, params["num_chains"])
    obs = fx.stop(obs, NO_ANSWER, "no_branches", when=obs.opened == 0)
    # max_steps < 1: upstream's step loop never runs and it returns None (``prev``).
    obs = fx.stop(obs, NO_ANSWER, "max_steps", when=params["max_steps"] < 1)
    return obs, initial_state(obs)


def initial_state(obs) -> dict:
    """The controller state after the opening round (shared with SCOUT's pruning variant)."""
    i32 = jnp.int32
    return {
        "off": jnp.zeros(obs.depth.shape, i32),  # (S,) consecutive steps off the winner
        "stable": jnp.zeros((), i32),
        "prev": jnp.full((), NO_ANSWER, i32),
        "step": jnp.zeros((), i32),
    }


def step(obs, cs, params, fx):
    unfinished = obs.is_open & ~obs.pruned & ~obs.finished
    obs, _ = fx.advance(obs, jnp.where(unfinished, params["probe_burst"], 0))
    active = obs.is_open & ~obs.pruned
    win, _, _ = fx.vote(obs.latest, active)

    check = (cs["step"] >= params["warm_up"]) & (jnp.sum(active, dtype=jnp.int32) > 1)
    track = check & active & ~obs.finished
    off = jnp.where(track, jnp.where(obs.latest != win, cs["off"] + 1, 0), cs["off"])
    cut = track & (off >= params["prune_patience"])
    obs = fx.prune(obs, cut)
    active = active & ~cut
    obs = fx.stop(obs, cs["prev"], "all_pruned", when=~jnp.any(active))
    win = jnp.where(jnp.any(cut), fx.vote(obs.latest, active)[0], win)

    stable = jnp.where(win == cs["prev"], cs["stable"] + 1, 0)
    obs = fx.stop(obs, win, "stable", when=stable >= params["T"])
    resolved = jnp.all(~obs.is_open | obs.finished | obs.pruned)
    obs = fx.stop(obs, win, "all_resolved", when=resolved)
    n = cs["step"] + 1
    obs = fx.stop(obs, win, "max_steps", when=n >= params["max_steps"])
    return obs, {"off": off, "stable": stable, "prev": win, "step": n}


PARALLEL_PROBE = Controller(
    name="parallel_probe",
    aliases=("Parallel_Probe", "ParallelProbe", "PP", "pp"),
    defaults=DEFAULTS,
    make_params=_params,
    max_slots=lambda c: int(c["num_chains"]),
    init=init,
    step=step,
    stop_reasons=("stable", "all_resolved", "max_steps", "all_pruned", "no_branches"),
    trace_fields=lambda cs: {"stable": cs["stable"], "majority": cs["prev"], "step": cs["step"]},
    group_slots=True,
    doc=__doc__,
)
