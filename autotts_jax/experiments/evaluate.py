"""``autotts-jax evaluate``: controllers x betas on (model, benchmark) stores, one simulate call
per (model, benchmark, controller) with all of that controller's configs and seeds.

The parts: :mod:`~autotts_jax.experiments.plan` (the jobs, validated before anything runs, and
how a beta becomes a config), :mod:`~autotts_jax.experiments.jobs` (one job: its simulate call
and result rows), :mod:`~autotts_jax.experiments.pool` (jobs over worker processes),
:mod:`~autotts_jax.experiments.progress` and :mod:`~autotts_jax.experiments.table` (what the
command shows).  This module composes them (:func:`run`) and is where callers find them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from autotts_jax.errors import AutoTTSError
from autotts_jax.experiments.jobs import cached_store, evaluate_job, job_rows
from autotts_jax.experiments.plan import (
    Job,
    Point,
    check_beta,
    controller_points,
    grid_index,
    plan,
    select_stores,
)
from autotts_jax.experiments.pool import bundles, resolve_workers, run_pool
from autotts_jax.experiments.progress import progress_bar
from autotts_jax.experiments.table import format_table

__all__ = [
    "Job", "Point", "bundles", "check_beta", "controller_points", "evaluate_job",
    "format_table", "grid_index", "job_rows", "plan", "resolve_workers", "run", "run_meta",
    "select_stores",
]


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
    bar = progress_bar(jobs, progress)
    out: list[list[dict[str, Any]]] = [[] for _ in jobs]
    try:
        if workers == 1:
            for i, job in enumerate(jobs):
                bar.set_description(job.name)
                out[i] = evaluate_job(job, cached_store(job.path), seeds, boot, cost_model,
                                      keep_episodes)
                bar.update(1)
        else:
            run_pool(jobs, out, bundles(jobs, workers, len(seeds)), bar,
                     (seeds, boot, cost_model, keep_episodes))
    finally:
        bar.close()
    return [r for rows in out for r in rows]


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
