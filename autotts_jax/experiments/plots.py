"""Accuracy-token scaling plots (matplotlib, saved, never shown).

One figure per (model, benchmark): every controller's configs as a line over its budget knob
(a single config as a point with its interval), the bootstrap interval of accuracy as a band,
the Pareto front over all controllers as a dashed step line, and the paper's Table-1 settings
ringed.  ``scaling_overview`` puts all (model, benchmark) panels in one grid.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from autotts_jax.errors import AutoTTSError
from autotts_jax.experiments.results import match_key, ordered
from autotts_jax.store.split import HELD_OUT_BENCHMARKS, SEARCH_BENCHMARK

STYLE = {  # method -> (colour, marker)
    "sc": ("#4c72b0", "o"),
    "asc": ("#dd8452", "s"),
    "esc": ("#55a868", "^"),
    "parallel_probe": ("#8172b3", "D"),
    "cmc": ("#c44e52", "*"),
}
_FALLBACK = ("#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd")
_ORDER = ("sc", "asc", "esc", "parallel_probe", "cmc")
_SPLIT = {SEARCH_BENCHMARK: "search split", **dict.fromkeys(HELD_OUT_BENCHMARKS, "held out")}


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise AutoTTSError(
            "plots need matplotlib: pip install 'autotts-jax[plots]' (or pip install matplotlib)"
        ) from None
    matplotlib.use("Agg")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # font-cache notices
    import matplotlib.pyplot as plt

    return plt


def _key(r: Mapping[str, Any]) -> tuple:
    return (r["model"], r["dataset"], *match_key(r["method"], r["config"]))


def _methods(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    seen = list(dict.fromkeys(r["method"] for r in rows))
    return [m for m in _ORDER if m in seen] + [m for m in seen if m not in _ORDER]


def _style(method: str, i: int) -> tuple[str, str]:
    return STYLE.get(method, (_FALLBACK[i % len(_FALLBACK)], "P"))


def _draw(ax, rows, *, front, highlight, log_tokens, bands, methods):
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for i, method in enumerate(methods):
        pts = {}
        for r in rows:
            if r["method"] == method:
                pts.setdefault(_key(r), r)
        if not pts:
            continue
        pts = sorted(pts.values(), key=lambda r: r["avg_tokens"])
        colour, marker = _style(method, i)
        x = [r["avg_tokens"] / 1000 for r in pts]
        y = [r["accuracy"] for r in pts]
        lo = [r.get("acc_ci_low", math.nan) for r in pts]
        hi = [r.get("acc_ci_high", math.nan) for r in pts]
        label = pts[0].get("label") or method
        size = 9 if marker == "*" else 5.5
        band = ("all" in bands or method in bands) and not any(
            math.isnan(v) for v in lo + hi)
        if len(pts) > 1:
            ax.plot(x, y, color=colour, marker=marker, ms=size, lw=1.6, label=label, zorder=3)
            if band:
                ax.fill_between(x, lo, hi, color=colour, alpha=0.12, lw=0, zorder=1)
                for edge in (lo, hi):
                    ax.plot(x, edge, color=colour, lw=0.7, ls=":", alpha=0.8, zorder=1)
        else:
            err = None
            if not (math.isnan(lo[0]) or math.isnan(hi[0])):
                err = [[y[0] - lo[0]], [hi[0] - y[0]]]
            ax.errorbar(x, y, yerr=err, color=colour, marker=marker, ms=size + 1, ls="none",
                        capsize=3, label=label, zorder=3)
        ring = [(a, b) for a, b, r in zip(x, y, pts, strict=True) if _key(r) in highlight]
        if ring:
            ax.plot(*zip(*ring, strict=True), ls="none", marker="o", ms=13, mfc="none",
                    mec="black", mew=1.0, zorder=4)
    fr = sorted((r for r in front if r["method"] in methods), key=lambda r: r["avg_tokens"])
    if len(fr) > 1:
        ax.step([r["avg_tokens"] / 1000 for r in fr], [r["accuracy"] for r in fr],
                where="post", color="0.25", ls="--", lw=1.0, zorder=2)
    if log_tokens:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(True, which="minor", alpha=0.1)


def _legend_extras(ax, highlight_any: bool, front_any: bool):
    from matplotlib.lines import Line2D

    handles = []
    if front_any:
        handles.append(Line2D([], [], color="0.25", ls="--", lw=1.0, label="Pareto front"))
    if highlight_any:
        handles.append(Line2D([], [], ls="none", marker="o", ms=11, mfc="none", mec="black",
                              label="paper Table-1 setting"))
    return handles


def _xlabel(log_tokens: bool) -> str:
    return ("Average total tokens per question (thousands" +
            (", log scale)" if log_tokens else ")"))


def _subtitle(rows: Sequence[Mapping[str, Any]], bands: Sequence[str]) -> str:
    seeds = sorted({int(r.get("seeds") or 0) for r in rows} - {0})
    q = {int(r["episodes"]) // max(1, int(r.get("seeds") or 1)) for r in rows}
    level = sorted({float(r.get("ci_level") or math.nan) for r in rows})
    parts = []
    if seeds and len(q) == 1:
        parts.append(f"{'/'.join(map(str, seeds))} shuffle seeds × {q.pop()} questions")
    shown = [r.get("label") or r["method"] for r in
             {r["method"]: r for r in rows if "all" in bands or r["method"] in bands}.values()]
    if shown and level and not math.isnan(level[0]):
        parts.append(f"bands: {100 * level[0]:g}% bootstrap CI over questions, for "
                     f"{' and '.join(shown)}")
    return "; ".join(parts)


def write_scaling_plots(
    rows: Sequence[Mapping[str, Any]], out: str | Path, *, front: Iterable[Mapping] = (),
    highlight: set | frozenset = frozenset(), formats: Sequence[str] = ("png", "svg"),
    log_tokens: bool = True, bands: Sequence[str] = ("sc", "cmc"),
) -> list[Path]:
    """``scaling_<model>_<dataset>.<fmt>`` per (model, dataset), and ``scaling_overview``."""
    plt = _pyplot()
    bands = tuple(bands)
    bad = [f for f in formats if f not in ("png", "svg", "pdf")]
    if bad:
        raise AutoTTSError(f"plots.formats: unsupported {bad}; use png, svg or pdf")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    front = list(front)
    methods = _methods(rows)
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["dataset"]), []).append(r)
    models = ordered([m for m, _ in groups], [])
    datasets = ordered([d for _, d in groups], [SEARCH_BENCHMARK, *HELD_OUT_BENCHMARKS])
    written: list[Path] = []

    def save(fig, stem: str):
        for fmt in formats:
            path = out / f"{stem}.{fmt}"
            tmp = path.with_name(f".{path.name}.tmp")
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
            tmp.replace(path)
            written.append(path)
        plt.close(fig)

    for (model, dataset), rs in sorted(groups.items(), key=lambda kv: (
            models.index(kv[0][0]), datasets.index(kv[0][1]))):
        fig, ax = plt.subplots(figsize=(8.8, 4.8))
        fr = [r for r in front if (r["model"], r["dataset"]) == (model, dataset)]
        _draw(ax, rs, front=fr, highlight=highlight, log_tokens=log_tokens, bands=bands,
              methods=methods)
        split = _SPLIT.get(dataset)
        ax.set_title(f"{model} on {dataset}" + (f" ({split})" if split else ""), fontsize=12)
        sub = _subtitle(rs, bands)
        if sub:
            ax.text(0.5, 1.005, sub, transform=ax.transAxes, ha="center", va="bottom",
                    fontsize=8, color="0.35")
            ax.set_title(ax.get_title(), fontsize=12, pad=14)
        ax.set_xlabel(_xlabel(log_tokens))
        ax.set_ylabel("Accuracy (%)")
        handles, _ = ax.get_legend_handles_labels()
        hl = any(_key(r) in highlight for r in rs)
        handles += _legend_extras(ax, hl, len(fr) > 1)
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9,
                  frameon=False)
        save(fig, f"scaling_{model}_{dataset}")

    if len(groups) > 1:
        nr, nc = len(models), len(datasets)
        fig, axes = plt.subplots(nr, nc, figsize=(4.6 * nc, 3.4 * nr), squeeze=False)
        for i, m in enumerate(models):
            for j, d in enumerate(datasets):
                ax = axes[i][j]
                rs = groups.get((m, d))
                if not rs:
                    ax.set_axis_off()
                    continue
                fr = [r for r in front if (r["model"], r["dataset"]) == (m, d)]
                _draw(ax, rs, front=fr, highlight=highlight, log_tokens=log_tokens,
                      bands=bands, methods=methods)
                ax.set_title(f"{m} · {d}", fontsize=10)
                if i == nr - 1:
                    ax.set_xlabel("tokens / question (k" + (", log)" if log_tokens else ")"),
                                  fontsize=9)
                if j == 0:
                    ax.set_ylabel("Accuracy (%)", fontsize=9)
        handles, labels = [], []
        for ax in axes.flat:
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        handles += _legend_extras(None, bool(highlight), bool(front))
        sub = _subtitle(rows, bands)
        fig.suptitle("Accuracy vs tokens per question" + (f"  ({sub})" if sub else ""),
                     y=0.995, fontsize=11)
        fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 7),
                   fontsize=9, frameon=False, bbox_to_anchor=(0.5, 0.975))
        fig.tight_layout(rect=(0, 0, 1, 0.955))
        save(fig, "scaling_overview")
    return written
