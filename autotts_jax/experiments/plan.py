"""What an evaluation runs: its jobs, one per (model, benchmark, controller), each with the
controller's (config, beta) points, every name and value validated before anything runs.

Planning validates everything first (store names and files, controller names, parameters,
betas), so a configuration mistake fails in a second with one message instead of after minutes
of simulation.

**beta -> config.**  A controller's yaml gives ``grid_param`` and ``grid`` (smallest budget
first).  For a controller that takes beta natively (``grid_param: beta``, CMC) a beta is
passed as is.  For the baselines beta selects a grid point: ``grid[floor(beta * (n - 1) +
1/2)]`` for a grid of ``n`` values, so grid point ``i`` has beta ``i / (n - 1)`` (e.g. ASC's
grid 1, 4, 8, 16, 32, 64: beta 0 -> ASC-1, 0.2 -> ASC-4, ..., 1 -> ASC-64).  Without
``betas`` every grid point is evaluated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotts_jax.errors import AutoTTSError
from autotts_jax.experiments.results import config_key

ExtraConfigs = Callable[[str, str, str], list[dict[str, Any]]]


TRUSTED_PREFIX = "trusted:"  # Job.spec of a module file run in-process


@dataclass(frozen=True)
class Point:
    config: dict[str, Any]  # full config (defaults filled in)
    beta: float | None  # None: a config off the beta grid


@dataclass
class Job:
    """One (model, benchmark, controller): one simulate call."""

    model: str
    dataset: str
    path: Path
    controller: Any  # autotts_jax.engine.protocol.Controller
    label: str
    upstream: str
    points: list[Point] = field(default_factory=list)
    spec: str = ""  # what ``get_controller`` was given (a name, or a module path)

    @property
    def name(self) -> str:
        return f"{self.model}/{self.dataset} {self.controller.name}"


# --------------------------------------------------------------------------- stores


def available_stores(trajectories: str | Path) -> dict[str, list[str]]:
    """``{model: [benchmark, ...]}`` of the ``<model>/<benchmark>.h5`` files found."""
    from autotts_jax.experiments.paths import check_trajectories

    root = check_trajectories(trajectories)
    found = {
        d.name: sorted(p.stem for p in d.glob("*.h5"))
        for d in sorted(root.iterdir()) if d.is_dir()
    }
    found = {m: b for m, b in found.items() if b}
    if not found:
        raise AutoTTSError(f"{root}: no <model>/<benchmark>.h5 trajectories files in it")
    return found


def _names(value: Any, key: str) -> list[str] | None:
    """A name, a list of names, or ``all`` (None)."""
    if isinstance(value, str):
        value = [value]
    try:
        names = [str(v) for v in value]
    except TypeError:
        raise AutoTTSError(f"{key} must be a name, a list of names or 'all'") from None
    if not names:
        raise AutoTTSError(f"{key} is empty")
    return None if "all" in names else names


def select_stores(data: Mapping[str, Any]) -> list[tuple[str, str, Path]]:
    """``(model, benchmark, path)`` for the data config, every name checked."""
    from autotts_jax.experiments.paths import store_path

    stores = available_stores(data["trajectories"])
    models = _names(data["model"], "data.model")
    benchmarks = _names(data["benchmark"], "data.benchmark")
    known_b = sorted({b for bs in stores.values() for b in bs})
    for m in models or []:
        if m not in stores:
            raise AutoTTSError(f"unknown model {m!r} (data.model); known: {', '.join(stores)}")
    for b in benchmarks or []:
        if b not in known_b:
            raise AutoTTSError(
                f"unknown benchmark {b!r} (data.benchmark); known: {', '.join(known_b)}"
            )
    out = []
    for m in models or list(stores):
        for b in benchmarks or stores[m]:
            out.append((m, b, store_path(data["trajectories"], m, b)))
    return out


# --------------------------------------------------------------------------- controllers


def check_beta(beta: Any, where: str) -> float:
    try:
        b = float(beta)
    except (TypeError, ValueError):
        raise AutoTTSError(f"{where}: beta {beta!r} is not a number") from None
    if not (math.isfinite(b) and 0.0 <= b <= 1.0):
        raise AutoTTSError(f"{where}: beta {beta} is outside [0, 1]")
    return b


def grid_index(beta: float, n: int) -> int:
    """The grid position of ``beta`` on a grid of ``n`` values (nearest; halves round up)."""
    return min(n - 1, int(math.floor(beta * (n - 1) + 0.5)))


def controller_points(
    key: str, ccfg: Mapping[str, Any], betas: Sequence[float] | None = None
) -> tuple[Any, list[Point]]:
    """The controller of ``controller.<key>`` and its (config, beta) points, validated."""
    from autotts_jax.controllers import get_controller

    where = f"controller.{key}"
    controller = get_controller(str(ccfg["name"]), trusted=bool(ccfg.get("trusted", False)))
    params = dict(ccfg.get("params") or {})
    grid_param = str(ccfg.get("grid_param") or "beta")
    grid = list(ccfg.get("grid") or [])
    if grid_param not in controller.defaults:
        raise AutoTTSError(
            f"{where}.grid_param: {controller.name} has no parameter {grid_param!r}; "
            f"known: {', '.join(sorted(controller.defaults))}"
        )
    if not grid:
        raise AutoTTSError(f"{where}.grid is empty")
    native = grid_param == "beta"
    if native:
        grid = [check_beta(b, f"{where}.grid") for b in grid]
    n = len(grid)
    if betas is None:
        betas = ccfg.get("betas")
    if betas is None:
        chosen = [(grid[i], (round(i / (n - 1), 6) if n > 1 else 1.0)) for i in range(n)]
    else:
        if isinstance(betas, int | float | str):
            betas = [betas]
        chosen = []
        for b in betas:
            b = check_beta(b, where)
            chosen.append((b if native else grid[grid_index(b, n)], b))
        if not chosen:
            raise AutoTTSError(f"{where}: no betas to evaluate")

    def full(cfg: Mapping[str, Any]) -> dict[str, Any]:
        try:
            config = controller.config(cfg)
            controller.make_params(config)
        except (KeyError, TypeError, ValueError) as exc:
            raise AutoTTSError(f"{where}: {exc}") from None
        return config

    points = [Point(full({**params, grid_param: value}), beta) for value, beta in chosen]
    for extra in ccfg.get("extra") or []:
        points.append(Point(full({**params, **dict(extra)}), None))
    return controller, points


# --------------------------------------------------------------------------- plan


def plan(cfg: Mapping[str, Any], extra: ExtraConfigs | None = None) -> list[Job]:
    """Every job of an ``evaluate``/``report`` config; ``extra(model, dataset, controller)``
    may add configs (the report adds the paper's Table-1 settings)."""
    controllers = cfg.get("controller") or {}
    if not controllers:
        raise AutoTTSError("no controller selected (controller=cmc or controller=[asc,cmc])")
    stores = select_stores(cfg["data"])
    specs = []
    for key, ccfg in controllers.items():
        controller, points = controller_points(key, ccfg, cfg.get("betas"))
        label = str(ccfg.get("label") or controller.name)
        upstream = str(ccfg.get("upstream") or controller.name)
        spec = str(ccfg["name"])
        if bool(ccfg.get("trusted", False)) and spec.endswith(".py"):
            spec = TRUSTED_PREFIX + spec
        specs.append((controller, points, label, upstream, spec))
    jobs = []
    for model, dataset, path in stores:
        for controller, points, label, upstream, spec in specs:
            pts = list(points)
            if extra is not None:
                known = {config_key(p.config) for p in pts}
                for c in extra(model, dataset, controller.name):
                    full = controller.config(c)
                    if config_key(full) not in known:
                        known.add(config_key(full))
                        pts.append(Point(full, None))
            jobs.append(Job(model, dataset, path, controller, label, upstream, pts, spec))
    return jobs


def unique_configs(job: Job) -> tuple[list[dict], dict[str, int]]:
    """``job``'s distinct configs in order (one simulated config each), and the index of each
    config's key among them."""
    configs: list[dict] = []
    index: dict[str, int] = {}
    for p in job.points:
        k = config_key(p.config)
        if k not in index:
            index[k] = len(configs)
            configs.append(p.config)
    return configs, index
