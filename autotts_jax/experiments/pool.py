"""Jobs spread over worker processes: how many processes, which jobs each runs (grouped by
controller, so that each compiles few), and the spawned pool that runs them.

Every job is still one simulate call in one process, so the rows are the same whatever the
number of workers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from autotts_jax.errors import AutoTTSError
from autotts_jax.experiments.jobs import cached_store, evaluate_job
from autotts_jax.experiments.plan import TRUSTED_PREFIX, Job, Point

# Relative cost of one episode, for scheduling the slowest jobs first over worker processes.
_COST = {"cmc": 8.0, "parallel_probe": 4.0, "asc": 1.0, "sc": 0.3, "esc": 0.3}


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
        done.append((i, evaluate_job(job, cached_store(path), seeds, boot, cost_model,
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


def run_pool(jobs: Sequence[Job], out: list, parts: list[list[int]], bar, common: tuple
             ) -> None:
    """Run ``parts`` (job indices per worker, :func:`bundles`) in spawned processes, filling
    ``out[i]`` with job ``i``'s rows and advancing ``bar`` as jobs finish."""
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
