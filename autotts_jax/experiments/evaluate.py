"""``autotts-jax evaluate``: controllers x betas on (model, benchmark) stores, one simulate call
per (model, benchmark, controller) with all of that controller's configs and seeds.

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
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autotts_jax.engine.loader import UntrustedModule
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


# --------------------------------------------------------------------------- plan and run


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


def _check_evaluation(evaluation: Mapping[str, Any]) -> tuple[list[int], dict[str, Any]]:
    from autotts_jax.engine.env import COST_MODELS

    seeds = int(evaluation["seeds"])
    if seeds < 1:
        raise AutoTTSError(f"evaluation.seeds must be >= 1, got {seeds}")
    if evaluation["cost_model"] not in COST_MODELS:
        raise AutoTTSError(
            f"evaluation.cost_model must be one of {', '.join(COST_MODELS)}, "
            f"got {evaluation['cost_model']!r}"
        )
    boot = dict(evaluation["bootstrap"])
    if int(boot["samples"]) < 1:
        raise AutoTTSError(f"evaluation.bootstrap.samples must be >= 1, got {boot['samples']}")
    if not 0.0 < float(boot["level"]) < 1.0:
        raise AutoTTSError(f"evaluation.bootstrap.level must be in (0, 1), got {boot['level']}")
    return list(range(seeds)), boot


# Relative cost of one episode, for scheduling the slowest jobs first over worker processes.
_COST = {"cmc": 8.0, "parallel_probe": 4.0, "asc": 1.0, "sc": 0.3, "esc": 0.3}


def _unique_configs(job: Job) -> tuple[list[dict], dict[str, int]]:
    configs: list[dict] = []
    index: dict[str, int] = {}
    for p in job.points:
        k = config_key(p.config)
        if k not in index:
            index[k] = len(configs)
            configs.append(p.config)
    return configs, index


def evaluate_job(job: Job, store, seeds: list[int], boot: Mapping[str, Any],
                 cost_model: str, keep_episodes: bool = False) -> list[dict[str, Any]]:
    """One simulate call over all of ``job``'s configs and seeds -> its result rows.

    With ``keep_episodes`` each row also carries ``outcomes``: ``{"correct", "tokens"}``
    arrays ``[seeds, questions]`` of that config, for paired comparisons (results files do
    not store them)."""
    import autotts_jax.engine  # noqa: F401  (float64)
    from autotts_jax.engine import simulate
    from autotts_jax.store import bucket

    configs, _ = _unique_configs(job)
    t0 = time.perf_counter()
    if isinstance(job.controller, UntrustedModule):
        return _evaluate_untrusted(job, store, configs, seeds, boot, cost_model, keep_episodes)
    eps = simulate(
        job.controller, store.data, configs, seeds, cost_model=cost_model,
        pool_size=bucket(store.meta.n_final_vocab, 128),
    )
    return job_rows(job, eps, seeds, boot, cost_model, time.perf_counter() - t0,
                    keep_episodes=keep_episodes)


def _evaluate_untrusted(job: Job, store, configs, seeds, boot, cost_model, keep_episodes):
    """An untrusted module file: replayed in the sandbox, scored here."""
    from autotts_jax.engine.simulate import Episodes
    from autotts_jax.store import bucket
    from autotts_jax.untrusted.sandbox import replay_untrusted

    t0 = time.perf_counter()
    out = replay_untrusted(job.controller.source, [store.data], configs, seeds=seeds,
                           cost_model=cost_model,
                           pool_size=bucket(store.meta.n_final_vocab, 128))
    if not out.ok:
        raise AutoTTSError(f"{job.controller.path}: the sandboxed replay failed "
                           f"({out.stage}): {out.reason[:500]}")
    eps = Episodes(**{f: v[0] for f, v in out.arrays.items()},
                   stop_reasons=tuple(out.stop_reasons))
    return job_rows(job, eps, seeds, boot, cost_model, time.perf_counter() - t0,
                    method=out.name or job.controller.name, keep_episodes=keep_episodes)


def job_rows(job: Job, eps, seeds: list[int], boot: Mapping[str, Any], cost_model: str,
             wall: float, method: str | None = None, keep_episodes: bool = False
             ) -> list[dict[str, Any]]:
    """Result rows of ``job`` from its episodes (one config per unique point, in order);
    ``keep_episodes``: see :func:`evaluate_job`."""
    from autotts_jax.experiments.bootstrap import accuracy_ci

    _, index = _unique_configs(job)
    _, low, high = accuracy_ci(
        eps.correct, samples=int(boot["samples"]), seed=int(boot["seed"]),
        level=float(boot["level"]),
    )
    rows = []
    for p in job.points:
        i = index[config_key(p.config)]
        s = eps.summary(i)
        rows.append({
            "model": job.model, "dataset": job.dataset,
            "method": method or job.controller.name, "upstream": job.upstream,
            "label": job.label, "config": p.config, "beta": p.beta,
            "accuracy": 100.0 * s["n_correct"] / s["episodes"],
            "acc_ci_low": float(low[i]), "acc_ci_high": float(high[i]),
            "avg_tokens": s["avg_tokens"], "avg_seq_tokens": s["avg_seq_tokens"],
            "episodes": s["episodes"], "seeds": len(seeds),
            "n_correct": s["n_correct"], "total_tokens": s["total_tokens"],
            "ci_level": float(boot["level"]), "bootstrap_samples": int(boot["samples"]),
            "bootstrap_seed": int(boot["seed"]), "cost_model": cost_model,
            "wall_time_s": round(wall, 3),
        })
        if keep_episodes:
            rows[-1]["outcomes"] = {"correct": np.asarray(eps.correct[i]),
                                    "tokens": np.asarray(eps.tokens[i])}
    return rows


_STORE: dict[Path, Any] = {}  # one loaded store per process (jobs come grouped by store)


def _store(path: Path):
    from autotts_jax.store import load_store

    if path not in _STORE:
        _STORE.clear()
        _STORE[path] = load_store(path)
    return _STORE[path]


_PROGRESS = None  # worker processes: queue of finished job indices


def _init_worker(queue, cache_dir: str | None) -> None:
    """Worker-process set-up: the progress queue, and the parent's compilation cache (a
    spawned process starts from JAX's defaults)."""
    global _PROGRESS
    _PROGRESS = queue
    if cache_dir:
        from autotts_jax.utils import jaxcache

        jaxcache.configure(cache_dir)


def _worker(bundle: list[tuple], seeds: list[int], boot: Mapping[str, Any],
            cost_model: str, keep_episodes: bool) -> list[tuple[int, list[dict[str, Any]]]]:
    """Worker-process entry: run a bundle of jobs, rebuilt from plain data (controllers hold
    lambdas, so they travel by name)."""
    from autotts_jax.controllers import get_controller

    done = []
    for i, (model, dataset, path, name, label, upstream, points) in bundle:
        trusted = name.startswith(TRUSTED_PREFIX)
        controller = get_controller(name.removeprefix(TRUSTED_PREFIX), trusted=trusted)
        job = Job(model, dataset, path, controller, label, upstream,
                  [Point(c, b) for c, b in points])
        done.append((i, evaluate_job(job, _store(path), seeds, boot, cost_model,
                                     keep_episodes)))
        if _PROGRESS is not None:
            _PROGRESS.put(i)
    return done


def _cost(job: Job, n_seeds: int) -> float:
    return _COST.get(job.controller.name, 4.0) * len(job.points) * n_seeds


# Below this estimated work (episode weights per question) one process is faster: every worker
# process pays its own start-up and compilations.
_PARALLEL_MIN_WORK = 2000.0


def resolve_workers(requested: int, jobs: Sequence[Job], n_seeds: int) -> int:
    """``evaluation.workers``; 0 (auto) = one process per CPU core, at most 4 and at most one
    per controller, when JAX runs on the CPU and the work is large enough to repay starting
    processes; else 1 (one process drives an accelerator best)."""
    requested = int(requested)
    if requested < 0:
        raise AutoTTSError(f"evaluation.workers must be >= 0, got {requested}")
    if requested == 0:
        if sum(_cost(j, n_seeds) for j in jobs) < _PARALLEL_MIN_WORK:
            return 1
        import jax

        if jax.default_backend() != "cpu":
            return 1
        cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                 else (os.cpu_count() or 1))
        requested = min(4, cores, len({j.controller.name for j in jobs}))
    return max(1, min(requested, len(jobs)))


def bundles(jobs: Sequence[Job], workers: int, n_seeds: int) -> list[list[int]]:
    """Split job indices over ``workers`` processes so that each compiles few controllers:
    jobs are grouped by controller, the costliest group is halved until there are enough
    groups, and groups go to the least-loaded worker, costliest first."""
    groups: dict[str, list[int]] = {}
    for i, j in enumerate(jobs):
        groups.setdefault(j.controller.name, []).append(i)
    parts = list(groups.values())

    def cost(part: list[int]) -> float:
        return sum(_cost(jobs[i], n_seeds) for i in part)

    while len(parts) < workers:
        parts.sort(key=cost)
        big = parts.pop()
        if len(big) < 2:
            parts.append(big)
            break
        parts += [big[: len(big) // 2], big[len(big) // 2:]]
    loads: list[list] = [[0.0, []] for _ in range(workers)]
    for part in sorted(parts, key=cost, reverse=True):
        slot = min(loads, key=lambda w: w[0])
        slot[0] += cost(part)
        slot[1].extend(part)
    return [sorted(w[1]) for w in loads if w[1]]


def run(
    jobs: Sequence[Job], evaluation: Mapping[str, Any], *, progress: bool = True,
    keep_episodes: bool = False,
) -> list[dict[str, Any]]:
    """Evaluate every job (one simulate call each); returns the tidy result rows, in job
    order.  With several workers (``evaluation.workers``) the jobs are split over that many
    processes; every job is still one simulate call, so the results are the same.
    ``keep_episodes``: see :func:`evaluate_job`."""
    seeds, boot = _check_evaluation(evaluation)
    cost_model = str(evaluation["cost_model"])
    workers = resolve_workers(evaluation.get("workers", 1), jobs, len(seeds))
    bar = _progress(jobs, progress)
    out: list[list[dict[str, Any]]] = [[] for _ in jobs]
    try:
        if workers == 1:
            for i, job in enumerate(jobs):
                bar.set_description(job.name)
                out[i] = evaluate_job(job, _store(job.path), seeds, boot, cost_model,
                                      keep_episodes)
                bar.update(1)
        else:
            _run_pool(jobs, out, bundles(jobs, workers, len(seeds)), bar,
                      (seeds, boot, cost_model, keep_episodes))
    finally:
        bar.close()
    return [r for rows in out for r in rows]


def _run_pool(jobs, out, parts, bar, common) -> None:
    import multiprocessing
    import queue as queue_mod
    from concurrent.futures import ProcessPoolExecutor, wait

    from autotts_jax.utils import jaxcache

    ctx = multiprocessing.get_context("spawn")  # never fork a process that runs XLA
    progress = ctx.Queue()
    bar.set_description(f"{len(parts)} worker processes")
    with ProcessPoolExecutor(max_workers=len(parts), mp_context=ctx, initializer=_init_worker,
                             initargs=(progress, jaxcache.current())) as pool:
        futures = []
        for part in parts:
            specs = [(i, (jobs[i].model, jobs[i].dataset, jobs[i].path,
                          jobs[i].spec or jobs[i].controller.name,
                          jobs[i].label, jobs[i].upstream,
                          [(p.config, p.beta) for p in jobs[i].points])) for i in part]
            futures.append(pool.submit(_worker, specs, *common))
        try:
            pending = set(futures)
            while pending:
                _, pending = wait(pending, timeout=0.5)
                while True:
                    try:
                        i = progress.get_nowait()
                    except queue_mod.Empty:
                        break
                    bar.set_description(f"{jobs[i].name} done")
                    bar.update(1)
            for fut in futures:
                for i, rows in fut.result():
                    out[i] = rows
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


class _NoBar:
    def set_description(self, _):
        pass

    def update(self, _):
        pass

    def close(self):
        pass


def _progress(jobs: Sequence[Job], enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=len(jobs), unit="job", dynamic_ncols=True, leave=True)


# --------------------------------------------------------------------------- printing


def short_config(row: Mapping[str, Any]) -> str:
    """The parameter that tells a row's configs apart (e.g. ``max_samples=64``)."""
    from autotts_jax.controllers import get_controller

    cfg = row["config"]
    try:
        defaults = get_controller(row["method"]).defaults
    except AutoTTSError:
        defaults = {}
    for k in ("beta", "max_samples", "num_chains"):
        if k in cfg:
            main = f"{k}={cfg[k]}"
            break
    else:
        main = ""
    rest = [f"{k}={v}" for k, v in sorted(cfg.items())
            if k not in ("beta", "max_samples", "num_chains") and defaults.get(k) != v]
    return " ".join([main, *rest]).strip()


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    head = (f"{'model':<11} {'dataset':<7} {'method':<15} {'beta':>4}  {'config':<32} "
            f"{'acc %':>6} {'CI':>13} {'tokens':>9} {'seq':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        beta = "" if r["beta"] is None else f"{r['beta']:.2f}"
        ci = f"[{r['acc_ci_low']:.1f}, {r['acc_ci_high']:.1f}]"
        lines.append(
            f"{r['model']:<11} {r['dataset']:<7} {r['method']:<15} {beta:>4}  "
            f"{short_config(r)[:32]:<32} {r['accuracy']:>6.2f} {ci:>13} "
            f"{r['avg_tokens'] / 1000:>8.1f}k {r['avg_seq_tokens'] / 1000:>7.1f}k"
        )
    return "\n".join(lines)


def run_meta(cfg: Mapping[str, Any], seconds: float) -> dict[str, Any]:
    """Provenance written beside the rows of a results JSON."""
    import jax

    from autotts_jax import __version__

    return {
        "autotts_jax": __version__,
        "jax": jax.__version__,
        "device": jax.devices()[0].device_kind,
        "seeds": int(cfg["evaluation"]["seeds"]),
        "cost_model": str(cfg["evaluation"]["cost_model"]),
        "bootstrap": dict(cfg["evaluation"]["bootstrap"]),
        "wall_time_s": round(seconds, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
