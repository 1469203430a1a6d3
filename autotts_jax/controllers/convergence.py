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

from typing import NamedTuple

import jax
import jax.numpy as jnp

from autotts_jax.engine.env import NO_ANSWER, Observation
from autotts_jax.engine.protocol import Controller, Effects, Range


class Params(NamedTuple):
    """SCOUT's strategy arguments and defaults, plus the number of samples."""

    solver_n: int = 16  # () int32 samples (branches) voted on; 1 for ``convergence``
    n: int = 3  # () int32 equal answers in a row that make a sample
    warmup_steps: int = 0  # () int32 triggers before a streak may count
    probe_burst: int = 1  # () int32 probe calls per trigger


class State(NamedTuple):
    running: jax.Array  # (S,) bool still being probed
    last: jax.Array  # (S,) int32 answer of the previous trigger
    streak: jax.Array  # (S,) int32 equal answers in a row
    triggers: jax.Array  # () int32 triggers made (the same for every running branch)


_STRATEGY_SPACE = {"n": Range(1, 5), "warmup_steps": Range(0, 3), "probe_burst": Range(1, 3)}


def _make_params(config, name: str, solver_n: int) -> Params:
    p = Params(solver_n=solver_n, n=int(config["n"]), warmup_steps=int(config["warmup_steps"]),
               probe_burst=int(config["probe_burst"]))
    if p.n < 1 or p.warmup_steps < 0 or p.probe_burst < 1 or p.solver_n < 1:
        raise ValueError(
            f"{name}: need n >= 1, warmup_steps >= 0, probe_burst >= 1, solver_n >= 1; got "
            f"{p.n}, {p.warmup_steps}, {p.probe_burst}, {p.solver_n}"
        )
    return p


def _open(obs: Observation, params: Params, fx: Effects) -> tuple[Observation, State]:
    """Round 0: open ``solver_n`` branches by one probe each."""
    obs = fx.probe_new(obs, params.solver_n)
    running = obs.is_open & ~obs.finished & (params.n > 1)
    return obs, State(running=running, last=obs.latest,
                      streak=jnp.ones(obs.n_slots, jnp.int32),
                      triggers=jnp.zeros((), jnp.int32))


def _trigger(obs: Observation, cstate: State, params: Params, fx: Effects
             ) -> tuple[Observation, State, jax.Array]:
    """One trigger on every running branch; returns the new state and who converged."""
    running = cstate.running
    obs, _ = fx.advance(obs, jnp.where(running, params.probe_burst, 0))
    cur = obs.latest
    streak = jnp.where(running, jnp.where(cur == cstate.last, cstate.streak + 1, 1),
                       cstate.streak)
    triggers = cstate.triggers + 1
    converged = running & (triggers >= params.warmup_steps) & (streak >= params.n)
    still = running & ~converged & ~obs.finished
    return obs, State(running=still, last=jnp.where(running, cur, cstate.last), streak=streak,
                      triggers=triggers), converged


def trace_fields(cstate: State) -> dict:
    return {"triggers": cstate.triggers, "running": jnp.sum(cstate.running),
            "streak": jnp.max(cstate.streak)}


# -- one chain ------------------------------------------------------------------------------


def _single_init(obs: Observation, params: Params, fx: Effects) -> tuple[Observation, State]:
    obs, cstate = _open(obs, params, fx)
    obs = fx.stop(obs, NO_ANSWER, "no_branches", when=obs.opened == 0)
    obs = fx.stop(obs, obs.latest[0], "converged", when=~cstate.running[0])
    return obs, cstate


def _single_step(obs: Observation, cstate: State, params: Params, fx: Effects
                 ) -> tuple[Observation, State]:
    obs, cstate, converged = _trigger(obs, cstate, params, fx)
    obs = fx.stop(obs, obs.latest[0], "converged", when=converged[0])
    obs = fx.stop(obs, obs.latest[0], "branch_end", when=~cstate.running[0])
    return obs, cstate


CONVERGENCE = Controller(
    name="convergence",
    aliases=("Convergence", "ConvergenceProbe", "ConvergenceProbeStrategy",
             "GreedySolver+ConvergenceProbeStrategy"),
    defaults={"n": 3, "warmup_steps": 0, "probe_burst": 1},
    make_params=lambda config: _make_params(config, "convergence", 1),
    max_slots=lambda c: 1,
    init=_single_init,
    step=_single_step,
    stop_reasons=("converged", "branch_end", "no_branches"),
    trace_fields=trace_fields,
    oracle="autotts_jax.oracle.scout:convergence",
    config_space=_STRATEGY_SPACE,
    examples=({"n": 2, "probe_burst": 2},),
    doc=__doc__,
)


# -- majority vote over convergence-probed chains -------------------------------------------


def _sc_vote(obs: Observation, cstate: State, params: Params, fx: Effects) -> Observation:
    when = ~jnp.any(cstate.running)
    answer = fx.vote(obs.latest, obs.is_open)[0]
    obs = fx.stop(obs, answer, "exhausted", when=when & (obs.opened < params.solver_n))
    return fx.stop(obs, answer, "max_samples", when=when)


def _sc_init(obs: Observation, params: Params, fx: Effects) -> tuple[Observation, State]:
    obs, cstate = _open(obs, params, fx)
    return _sc_vote(obs, cstate, params, fx), cstate


def _sc_step(obs: Observation, cstate: State, params: Params, fx: Effects
             ) -> tuple[Observation, State]:
    obs, cstate, _ = _trigger(obs, cstate, params, fx)
    return _sc_vote(obs, cstate, params, fx), cstate


SC_CONVERGENCE = Controller(
    name="sc_convergence",
    aliases=("SC+SAC", "SCConvergence", "MajorityVoteSolver+ConvergenceProbeStrategy"),
    defaults=Params(),
    make_params=lambda config: _make_params(config, "sc_convergence",
                                            int(config["solver_n"])),
    max_slots=lambda c: int(c["solver_n"]),
    init=_sc_init,
    step=_sc_step,
    stop_reasons=("max_samples", "exhausted"),
    trace_fields=trace_fields,
    oracle="autotts_jax.oracle.scout:sc_convergence",
    config_space={"solver_n": Range(1, 20), **_STRATEGY_SPACE},
    examples=({"solver_n": 5, "n": 2, "warmup_steps": 1},),
    doc=__doc__,
)
