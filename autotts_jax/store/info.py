"""``autotts-jax info``: a human summary of one packed store.

The oracle figures (pass@1, majority of all branches, pass@N) are what a user checks first to
see whether a store is sane: they bound what any controller can reach on it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from autotts_jax.store.hdf5 import read_store_arrays


def majority_id(ids: list[int]) -> int:
    """Most common id; ties go to the earliest first occurrence (as ``Counter.most_common``)."""
    return Counter(ids).most_common(1)[0][0]


def summarize(path: str | Path) -> dict[str, object]:
    a, attrs = read_store_arrays(path)
    n_q = a["probe_answer"].shape[0]
    n_b = a["n_branches"]
    real = np.arange(a["n_probes"].shape[1])[None, :] < n_b[:, None]
    fin_correct = np.take_along_axis(a["is_correct"], np.maximum(a["final_answer"], 0), axis=1)
    fin_correct &= real
    pass1 = float(np.mean(fin_correct.sum(1) / n_b))
    maj = float(np.mean([
        a["is_correct"][q, majority_id(list(a["final_answer"][q, : n_b[q]]))] for q in range(n_q)
    ]))
    pass_all = float(np.mean(fin_correct.any(1)))
    depth = a["n_probes"][real]
    tokens = a["branch_tokens"][real]
    return {
        "file": str(path),
        "model": attrs["model"],
        "benchmark": attrs["benchmark"],
        "questions": n_q,
        "branches": int(n_b.max()) if n_b.min() == n_b.max() else f"{n_b.min()}..{n_b.max()}",
        "probe_freq": int(attrs["probe_freq"]),
        "equivalence": _equivalence(attrs),
        "probe_depth": _dist(depth),
        "branch_tokens": _dist(tokens),
        "final_vocab_max": int(a["n_final_vocab"].max()),
        "vocab_max": int(a["n_vocab"].max()),
        "pass@1": 100 * pass1,
        f"maj@{int(n_b.max())}": 100 * maj,
        f"pass@{int(n_b.max())}": 100 * pass_all,
        "source_sha256": attrs.get("source_sha256", ""),
        "schema_version": int(attrs["schema_version"]),
    }


def _equivalence(attrs: dict[str, object]) -> str:
    """``exact`` (answers are strings; no attribute) or e.g. ``math (math-verify 0.9.0)``."""
    mode = str(attrs.get("equivalence", "exact"))
    verifier = attrs.get("equivalence_verifier")
    return f"{mode} ({verifier})" if verifier else mode


def _dist(x: np.ndarray) -> dict[str, float]:
    return {
        "min": float(x.min()),
        "median": float(np.median(x)),
        "mean": float(x.mean()),
        "max": float(x.max()),
    }


def format_summary(s: dict[str, object]) -> str:
    lines = [f"{s['file']}  ({s['model']} / {s['benchmark']}, schema v{s['schema_version']})"]
    for key, value in s.items():
        if key in ("file", "model", "benchmark", "schema_version"):
            continue
        if isinstance(value, dict):
            value = "  ".join(f"{k} {v:,.0f}" for k, v in value.items())
        elif isinstance(value, float):
            value = f"{value:.1f}%"
        lines.append(f"  {key:<16} {value}")
    return "\n".join(lines)
