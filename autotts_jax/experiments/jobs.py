"""One job, one simulate call: a (model, benchmark, controller)'s configs and seeds replayed
together (an untrusted module file in the sandbox), and the result rows scored from them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from autotts_jax.engine.loader import UntrustedModule
from autotts_jax.errors import AutoTTSError
from autotts_jax.experiments.plan import Job, unique_configs
from autotts_jax.experiments.results import config_key


def evaluate_job(job: Job, store, seeds: list[int], boot: Mapping[str, Any],
                 cost_model: str, keep_episodes: bool = False) -> list[dict[str, Any]]:
    """One simulate call over all of ``job``'s configs and seeds -> its result rows.

    With ``keep_episodes`` each row also carries ``outcomes``: ``{"correct", "tokens"}``
    arrays ``[seeds, questions]`` of that config, for paired comparisons (results files do
    not store them)."""
    import autotts_jax.engine  # noqa: F401  (float64)
    from autotts_jax.engine import simulate
    from autotts_jax.store import bucket

    configs, _ = unique_configs(job)
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

    _, index = unique_configs(job)
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


_STORE: dict[Path, Any] = {}


def cached_store(path: Path):
    """The store at ``path``, loaded once per process (jobs come grouped by store)."""
    from autotts_jax.store import load_store

    if path not in _STORE:
        _STORE.clear()
        _STORE[path] = load_store(path)
    return _STORE[path]
