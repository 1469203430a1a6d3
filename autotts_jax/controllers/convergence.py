"""Convergence probing (SCOUT's ``ConvergenceProbeStrategy``), on one chain or under a
majority vote over many.

One *sample* is one new branch probed until its answer has been the same ``n`` times in a
row: ``probe_new`` gives the first answer (it counts towards the streak), then every
*trigger* makes up to ``probe_burst`` probe calls (stopping at the branch's end) and looks at
the last answer; the streak grows when it equals the previous trigger's answer and restarts
at 1 otherwise.  After trigger ``t`` (1-based) the sample is taken if ``t >= warmup_steps``
and the streak is at least ``n``; a branch that reaches its end first gives its final
answer.  With ``n <= 1`` the first probe is the sample.

* ``convergence`` (SCOUT ``GreedySolver + ConvergenceProbeStrategy``): one sample, the
  answer.  Round 0 is the ``probe_new``, every trigger one more round.
* ``sc_convergence`` (SCOUT ``MajorityVoteSolver(n=solver_n) + ConvergenceProbeStrategy``,
  the paper's "SC@64 + SAC"): ``solver_n`` samples on slots ``0..solver_n-1``, answer the
  majority of the samples in slot order (ties: the earliest slot).  SCOUT draws the samples
  one after another; samples are independent, so here they run in lock step (round ``r``
  gives every unconverged branch its ``r``-th trigger).  Answers and costs do not depend on
  that schedule; only the critical-path sequential tokens do.

Parameter names are SCOUT's: ``n``, ``warmup_steps``, ``probe_burst`` of the strategy, and
``solver_n`` (SCOUT's CSV column for the solver's ``n``) for the number of samples.  Past the
last branch a sample is missing (SCOUT: ``None``) and is left out of the vote.
"""

from __future__ import annotations

import jax.numpy as jnp

from autotts_jax.engine.env import NO_ANSWER
from autotts_jax.engine.protocol import Controller

STRATEGY_DEFAULTS = {"n": 3, "warmup_steps": 0, "probe_burst": 1}


def _strategy_params(config, name):
    p = {k: int(config[k]) for k in STRATEGY_DEFAULTS}
    if p["n"] < 1 or p["warmup_steps"] < 0 or p["probe_burst"] < 1:
        raise ValueError(
            f"{name}: need n >= 1, warmup_steps >= 0, probe_burst >= 1; got {p['n']}, "
            f"{p['warmup_steps']}, {p['probe_burst']}"
        )
    return p


def _open(obs, params, fx, samples):
    """Round 0: open ``samples`` branches by one probe each."""
    obs = fx.probe_new(obs, samples)
    running = obs.is_open & ~obs.finished & (params["n"] > 1)
    return obs, {
        "running": running,  # (S,) still being probed
        "last": obs.latest,  # (S,) answer of the previous trigger
        "streak": jnp.ones(obs.depth.shape, jnp.int32),  # (S,) equal answers in a row
        "t": jnp.zeros((), jnp.int32),  # triggers made (the same for every running branch)
    }


def _trigger(obs, cs, params, fx):
    """One trigger on every running branch; returns the new state and who converged."""
    running = cs["running"]
    obs, _ = fx.advance(obs, jnp.where(running, params["probe_burst"], 0))
    cur = obs.latest
    streak = jnp.where(running, jnp.where(cur == cs["last"], cs["streak"] + 1, 1), cs["streak"])
    t = cs["t"] + 1
    converged = running & (t >= params["warmup_steps"]) & (streak >= params["n"])
    still = running & ~converged & ~obs.finished
    cs = {"running": still, "last": jnp.where(running, cur, cs["last"]), "streak": streak,
          "t": t}
    return obs, cs, converged


# -- one chain ------------------------------------------------------------------------------


def _single_params(config):
    return _strategy_params(config, "convergence")


def _single_init(obs, params, fx):
    obs, cs = _open(obs, params, fx, 1)
    obs = fx.stop(obs, NO_ANSWER, "no_branches", when=obs.opened == 0)
    obs = fx.stop(obs, obs.latest[0], "converged", when=~cs["running"][0])
    return obs, cs


def _single_step(obs, cs, params, fx):
    obs, cs, converged = _trigger(obs, cs, params, fx)
    obs = fx.stop(obs, obs.latest[0], "converged", when=converged[0])
    obs = fx.stop(obs, obs.latest[0], "branch_end", when=~cs["running"][0])
    return obs, cs


def _trace(cs):
    return {"t": cs["t"], "running": jnp.sum(cs["running"]), "streak": jnp.max(cs["streak"])}


CONVERGENCE = Controller(
    name="convergence",
    aliases=("Convergence", "ConvergenceProbe", "ConvergenceProbeStrategy",
             "GreedySolver+ConvergenceProbeStrategy"),
    defaults=dict(STRATEGY_DEFAULTS),
    make_params=_single_params,
    max_slots=lambda c: 1,
    init=_single_init,
    step=_single_step,
    stop_reasons=("converged", "branch_end", "no_branches"),
    trace_fields=_trace,
    doc=__doc__,
)


# -- majority vote over convergence-probed chains -------------------------------------------


def _sc_params(config):
    p = _strategy_params(config, "sc_convergence")
    p["solver_n"] = int(config["solver_n"])
    if p["solver_n"] < 1:
        raise ValueError(f"sc_convergence: solver_n must be >= 1, got {p['solver_n']}")
    return p


def _sc_vote(obs, cs, params, fx):
    when = ~jnp.any(cs["running"])
    answer = fx.vote(obs.latest, obs.is_open)[0]
    obs = fx.stop(obs, answer, "exhausted", when=when & (obs.opened < params["solver_n"]))
    return fx.stop(obs, answer, "max_samples", when=when)


def _sc_init(obs, params, fx):
    obs, cs = _open(obs, params, fx, params["solver_n"])
    return _sc_vote(obs, cs, params, fx), cs


def _sc_step(obs, cs, params, fx):
    obs, cs, _ = _trigger(obs, cs, params, fx)
    return _sc_vote(obs, cs, params, fx), cs


SC_CONVERGENCE = Controller(
    name="sc_convergence",
    aliases=("SC+SAC", "SCConvergence", "MajorityVoteSolver+ConvergenceProbeStrategy"),
    defaults={"solver_n": 16, **STRATEGY_DEFAULTS},
    make_params=_sc_params,
    max_slots=lambda c: int(c["solver_n"]),
    init=_sc_init,
    step=_sc_step,
    stop_reasons=("max_samples", "exhausted"),
    trace_fields=_trace,
    doc=__doc__,
)
