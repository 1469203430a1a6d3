"""The short human table ``evaluate`` prints (the files hold the full rows)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from autotts_jax.errors import AutoTTSError


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
