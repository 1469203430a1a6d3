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

from collections.abc import Mapping
from typing import Any

from autotts_jax.engine.protocol import Controller

SOLVER_DEFAULTS: dict[str, dict[str, Any]] = {
    "GreedySolver": {},
    "MajorityVoteSolver": {"n": 16},
    "ASCSolver": {"n": 40, "threshold": 0.95},
    "ESCSolver": {"n": 32, "window_size": 5},
}

_CONVERGENCE = {"n": "strategy.n", "warmup_steps": "strategy.warmup_steps",
                "probe_burst": "strategy.probe_burst"}
_PARALLEL = {k: f"strategy.{k}" for k in ("num_chains", "K", "T", "eps_inter", "eps_intra",
                                          "prune_patience", "warm_up", "max_steps")}

# (solver, strategy) -> (controller name, {controller config key: "solver.<argument>" or
# "strategy.<argument>"}).  Plain data, so that the tests can draw SCOUT configs from the
# controller's own config space.
COMBINATIONS: dict[tuple[str, str], tuple[str, dict[str, str]]] = {
    ("MajorityVoteSolver", "FullReadStrategy"): ("sc", {"max_samples": "solver.n"}),
    ("ASCSolver", "FullReadStrategy"): (
        "asc", {"max_samples": "solver.n", "threshold": "solver.threshold"}),
    ("ESCSolver", "FullReadStrategy"): (
        "esc", {"max_samples": "solver.n", "window_size": "solver.window_size"}),
    ("GreedySolver", "ConvergenceProbeStrategy"): ("convergence", _CONVERGENCE),
    ("MajorityVoteSolver", "ConvergenceProbeStrategy"): (
        "sc_convergence", {"solver_n": "solver.n", **_CONVERGENCE}),
    ("GreedySolver", "ParallelESTPruning"): ("pp_prune_vote", _PARALLEL),
    ("GreedySolver", "ParallelESTPruningBurstMajorityOnActiveBranches"): (
        "parallel_probe", {**_PARALLEL, "probe_burst": "strategy.probe_burst"}),
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
    name, keys = COMBINATIONS[key]
    args = {"solver": {**SOLVER_DEFAULTS[solver], **s_args}, "strategy": t_args}
    known = {part: {path.split(".")[1] for path in keys.values() if path.startswith(part)}
             for part in args}
    for part, given, who in (("solver", s_args, solver), ("strategy", t_args, strategy)):
        bad = sorted(set(given) - known[part])
        if bad:
            raise ValueError(f"{who}: unknown argument(s) {bad}")
    config = {}
    for k, path in keys.items():
        part, arg = path.split(".")
        if arg in args[part]:  # a missing strategy argument keeps the controller's default
            config[k] = args[part][arg]
    controller = get_controller(name)
    return controller, controller.config(config)
