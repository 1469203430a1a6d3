"""SCOUT (the Parallel-Probe testbed, ``zhengkid/Parallel-Probe``) names -> our controllers.

SCOUT composes a *solver* (how samples are combined) with a *strategy* (how one sample is
obtained); its configs are ``{"solver": {...}, "strategy": {...}}`` with the constructor
arguments of each.  Every combination its driver runs is one controller here:

==================  ==================================================  ===================
solver              strategy                                            controller
==================  ==================================================  ===================
MajorityVoteSolver  FullReadStrategy                                    ``sc`` (SC@n)
ASCSolver           FullReadStrategy                                    ``asc``
ESCSolver           FullReadStrategy                                    ``esc``
GreedySolver        ConvergenceProbeStrategy                            ``convergence``
MajorityVoteSolver  ConvergenceProbeStrategy                            ``sc_convergence``
GreedySolver        ParallelESTPruning                                  ``pp_prune_vote``
GreedySolver        ParallelESTPruningBurstMajorityOnActiveBranches     ``parallel_probe``
==================  ==================================================  ===================

Missing arguments take SCOUT's constructor defaults (``MajorityVoteSolver(n=16)``,
``ASCSolver(n=40, threshold=0.95)``, ``ESCSolver(n=32, window_size=5)``; the strategies'
defaults are the controllers' defaults).  Two known differences, both only when a
configuration asks for more branches than a question has (no published row does): SCOUT's
Burst controller then gives no answer while ``parallel_probe`` (AutoTTS ``Parallel_Probe``)
continues with the chains it could open, and SCOUT's ESC then fails its sequential-token
assertion (the row is dropped) while ``esc`` counts the short last window as a window.

SCOUT's sequential tokens are the engine's ``max_branch`` accounting
(``Episodes.seq_tokens_max_branch``): the largest per-branch total, except ESC (the sum over
its windows of each window's largest branch).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from autotts_jax.engine.protocol import Controller

SOLVER_DEFAULTS: dict[str, dict[str, Any]] = {
    "GreedySolver": {},
    "MajorityVoteSolver": {"n": 16},
    "ASCSolver": {"n": 40, "threshold": 0.95},
    "ESCSolver": {"n": 32, "window_size": 5},
}

_Build = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]

# (solver, strategy) -> (controller name, (solver args, strategy args) -> controller config)
COMBINATIONS: dict[tuple[str, str], tuple[str, _Build]] = {
    ("MajorityVoteSolver", "FullReadStrategy"): ("sc", lambda s, t: {"max_samples": s["n"]}),
    ("ASCSolver", "FullReadStrategy"): (
        "asc", lambda s, t: {"max_samples": s["n"], "threshold": s["threshold"]}),
    ("ESCSolver", "FullReadStrategy"): (
        "esc", lambda s, t: {"max_samples": s["n"], "window_size": s["window_size"]}),
    ("GreedySolver", "ConvergenceProbeStrategy"): ("convergence", lambda s, t: dict(t)),
    ("MajorityVoteSolver", "ConvergenceProbeStrategy"): (
        "sc_convergence", lambda s, t: {"solver_n": s["n"], **t}),
    ("GreedySolver", "ParallelESTPruning"): ("pp_prune_vote", lambda s, t: dict(t)),
    ("GreedySolver", "ParallelESTPruningBurstMajorityOnActiveBranches"): (
        "parallel_probe", lambda s, t: dict(t)),
}


def scout_controller(
    solver: str, strategy: str, config: Mapping[str, Any] | None = None
) -> tuple[Controller, dict[str, Any]]:
    """The controller and its full config for a SCOUT ``(solver, strategy, config)``.

    ``config`` is ``{"solver": {...}, "strategy": {...}}`` (either part may be missing).
    Unknown combinations and unknown arguments raise ValueError.
    """
    from autotts_jax.controllers import get_controller

    key = (solver, strategy)
    if key not in COMBINATIONS:
        known = ", ".join(f"{a}+{b}" for a, b in COMBINATIONS)
        raise ValueError(f"SCOUT combination {solver}+{strategy} is not supported; known: {known}")
    config = dict(config or {})
    unknown = sorted(set(config) - {"solver", "strategy"})
    if unknown:
        raise ValueError(f"SCOUT config: unknown key(s) {unknown}; expected solver, strategy")
    s_args = dict(config.get("solver") or {})
    t_args = dict(config.get("strategy") or {})
    bad = sorted(set(s_args) - set(SOLVER_DEFAULTS[solver]))
    if bad:
        raise ValueError(f"{solver}: unknown argument(s) {bad}")
    if strategy == "FullReadStrategy" and t_args:
        raise ValueError(f"FullReadStrategy takes no arguments, got {sorted(t_args)}")
    name, build = COMBINATIONS[key]
    controller = get_controller(name)
    return controller, controller.config(build({**SOLVER_DEFAULTS[solver], **s_args}, t_args))
