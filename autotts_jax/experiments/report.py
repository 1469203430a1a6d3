"""``autotts-jax report``: the paper-style main table, the headline, a cell-by-cell comparison
with the paper's Table 1, the Pareto fronts and the scaling plots, from results rows.

The paper's figures (``paper_table1.csv`` beside this module: Table 1 of the AutoTTS paper,
accuracy in percent and tokens in thousands per question, both at 1 dp) ship with the package.
A cell (model, benchmark, method) is *reproduced* when our accuracy and tokens, printed the way
the paper prints them (``100 * n_correct / episodes`` and ``(total_tokens // episodes) / 1000``
at 1 dp), equal the paper's.  Known slips of the paper (``PAPER_SLIPS``, ``PAPER_NOTES`` of
:mod:`autotts_jax.experiments.parity`) are reported as such.

**Headline.**  As in the paper: for each backbone, held-out tokens (mean over aime25 and
hmmt25) of AutoTTS (CMC, beta 0.5) against SC@64, ``1 - cmc / sc``, averaged over backbones,
beside the two methods' mean held-out accuracies.  A stricter companion is computed too: per
backbone, the cheapest CMC beta whose held-out accuracy reaches SC@64's.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autotts_jax.errors import AutoTTSError
from autotts_jax.experiments.parity import PAPER_NOTES, PAPER_SLIPS
from autotts_jax.experiments.results import match_key, ordered
from autotts_jax.store.split import HELD_OUT_BENCHMARKS, SEARCH_BENCHMARK
from autotts_jax.utils.atomic import atomic_write_text

PAPER_TABLE = Path(__file__).with_name("paper_table1.csv")
PAPER_SEEDS = 100
SC64 = ("sc", {"max_samples": 64})
CMC_HEADLINE = ("cmc", {"beta": 0.5})


@dataclass(frozen=True)
class PaperCell:
    model: str
    dataset: str
    label: str  # the paper's row label, e.g. "SC@64", "AutoTTS(b=0.5)"
    method: str  # canonical controller name
    config: dict[str, Any]  # full config
    accuracy: str  # as printed, 1 dp
    tokens_k: str  # as printed, 1 dp


def display_label(label: str) -> str:
    return label.replace("AutoTTS(b=", "AutoTTS β=").rstrip(")") if "(b=" in label else label


def paper_cells(path: Path = PAPER_TABLE) -> list[PaperCell]:
    from autotts_jax.controllers import get_controller

    cells = []
    with path.open(newline="", encoding="utf-8") as f:
        for raw in csv.DictReader(f):
            controller = get_controller(raw["method"])
            cells.append(PaperCell(
                raw["model"], raw["dataset"], raw["paper_label"], controller.name,
                controller.config(json.loads(raw["config"])),
                f"{float(raw['paper_acc_pct_1dp']):.1f}", f"{float(raw['paper_tokens_k_1dp']):.1f}",
            ))
    return cells


def paper_configs(cells: Sequence[PaperCell] | None = None):
    """``extra(model, dataset, controller)`` for :func:`evaluate.plan`: the Table-1 settings."""
    cells = paper_cells() if cells is None else cells
    by: dict[tuple[str, str, str], list[dict]] = {}
    for c in cells:
        by.setdefault((c.model, c.dataset, c.method), []).append(c.config)
    return lambda model, dataset, method: by.get((model, dataset, method), [])


# --------------------------------------------------------------------------- lookups


def _index(rows: Sequence[Mapping[str, Any]]) -> dict[tuple, Mapping[str, Any]]:
    out: dict[tuple, Mapping[str, Any]] = {}
    for r in rows:
        out.setdefault((r["model"], r["dataset"], *match_key(r["method"], r["config"])), r)
    return out


def _find(index, model: str, dataset: str, method: str, config: Mapping[str, Any]):
    from autotts_jax.controllers import get_controller

    full = get_controller(method).config(config)
    return index.get((model, dataset, *match_key(method, full)))


def printed(row: Mapping[str, Any]) -> tuple[str, str]:
    """(accuracy, tokens in thousands) as the paper prints them: 1 dp, tokens truncated."""
    n = int(row["episodes"])
    if row.get("total_tokens"):  # the exact integers are there
        acc, tokens = 100 * int(row["n_correct"]) / n, int(row["total_tokens"]) // n
    else:
        acc, tokens = float(row["accuracy"]), int(row["avg_tokens"])
    return f"{acc:.1f}", f"{tokens / 1000:.1f}"


# --------------------------------------------------------------------------- main table


def main_table(rows: Sequence[Mapping[str, Any]], cells: Sequence[PaperCell]) -> list[dict]:
    """One row per paper cell: ours beside the paper's figure, with a status."""
    index = _index(rows)
    out = []
    for c in cells:
        r = _find(index, c.model, c.dataset, c.method, c.config)
        key = (c.model, c.method)
        base = {
            "model": c.model, "dataset": c.dataset, "method": c.method,
            "label": display_label(c.label), "config": json.dumps(c.config, sort_keys=True),
            "paper_accuracy": c.accuracy, "paper_tokens_k": c.tokens_k,
        }
        if r is None:
            out.append({**base, "status": "missing", "note": "not in the results"})
            continue
        acc, tok = printed(r)
        ok = acc == c.accuracy and tok == c.tokens_k
        note = ""
        if ok:
            status = "reproduced"
            note = PAPER_NOTES.get(key, "")
        elif key in PAPER_SLIPS:
            status, note = "not reproduced (paper slip)", PAPER_SLIPS[key]
        else:
            status = "not reproduced"
        paper_note = note
        if int(r.get("seeds") or 0) not in (0, PAPER_SEEDS):
            extra = f"evaluated with {r['seeds']} seeds; the paper uses {PAPER_SEEDS}"
            note = f"{note}; {extra}" if note else extra
        out.append({
            **base,
            "beta": "" if r.get("beta") is None else r["beta"],
            "accuracy": round(float(r["accuracy"]), 4),
            "acc_ci_low": _round(r.get("acc_ci_low")), "acc_ci_high": _round(r.get("acc_ci_high")),
            "avg_tokens": round(float(r["avg_tokens"]), 2),
            "avg_seq_tokens": _round(r.get("avg_seq_tokens"), 2),
            "episodes": int(r["episodes"]),
            "accuracy_1dp": acc, "tokens_k_1dp": tok,
            "status": status, "note": note, "paper_note": paper_note,
        })
    return out


def _round(v, nd: int = 4):
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), nd)


MAIN_COLUMNS = (
    "model", "dataset", "method", "label", "config", "beta", "accuracy", "acc_ci_low",
    "acc_ci_high", "avg_tokens", "avg_seq_tokens", "episodes", "accuracy_1dp", "tokens_k_1dp",
    "paper_accuracy", "paper_tokens_k", "status", "note",
)


def main_table_csv(table: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=MAIN_COLUMNS, lineterminator="\n", restval="")
    w.writeheader()
    for r in table:
        w.writerow({k: r.get(k, "") for k in MAIN_COLUMNS})
    return buf.getvalue()


# --------------------------------------------------------------------------- headline


def _held_out(index, model: str, method: str, config: Mapping[str, Any]):
    rs = [_find(index, model, d, method, config) for d in HELD_OUT_BENCHMARKS]
    if any(r is None for r in rs):
        return None
    return (sum(float(r["accuracy"]) for r in rs) / len(rs),
            sum(float(r["avg_tokens"]) for r in rs) / len(rs))


def headline(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Tokens saved by AutoTTS (CMC beta 0.5) vs SC@64 on the held-out benchmarks."""
    index = _index(rows)
    models = ordered([r["model"] for r in rows], [])
    per: dict[str, dict[str, Any]] = {}
    for m in models:
        sc = _held_out(index, m, *SC64)
        cmc = _held_out(index, m, *CMC_HEADLINE)
        if sc is None or cmc is None:
            continue
        entry: dict[str, Any] = {
            "sc64_accuracy": sc[0], "sc64_tokens": sc[1],
            "cmc_accuracy": cmc[0], "cmc_tokens": cmc[1],
            "saved_pct": 100.0 * (1.0 - cmc[1] / sc[1]),
        }
        # Stricter: the cheapest CMC beta whose held-out accuracy reaches SC@64's.
        betas = sorted({float(r["config"]["beta"]) for r in rows
                        if r["model"] == m and r["method"] == "cmc" and "beta" in r["config"]})
        best = None
        for b in betas:
            h = _held_out(index, m, "cmc", {"beta": b})
            if h is not None and h[0] >= sc[0] and (best is None or h[1] < best[2]):
                best = (b, h[0], h[1])
        if best is not None:
            entry["matched_beta"], entry["matched_accuracy"], entry["matched_tokens"] = best
            entry["matched_saved_pct"] = 100.0 * (1.0 - best[2] / sc[1])
        per[m] = entry
    if not per:
        return None
    n = len(per)
    out: dict[str, Any] = {
        "backbones": per,
        "saved_pct": sum(e["saved_pct"] for e in per.values()) / n,
        "sc64_accuracy": sum(e["sc64_accuracy"] for e in per.values()) / n,
        "cmc_accuracy": sum(e["cmc_accuracy"] for e in per.values()) / n,
        "paper_saved_pct": 69.5,
    }
    matched = [e for e in per.values() if "matched_saved_pct" in e]
    if matched:
        out["matched_saved_pct"] = sum(e["matched_saved_pct"] for e in matched) / len(matched)
        out["matched_backbones"] = len(matched)
    return out


def headline_text(h: Mapping[str, Any] | None) -> str:
    if h is None:
        return ("Not computable from these results (needs SC@64 and AutoTTS β=0.5 on "
                f"{' and '.join(HELD_OUT_BENCHMARKS)} for at least one backbone).")
    per = ", ".join(f"{m} {e['saved_pct']:.1f}%" for m, e in h["backbones"].items())
    text = (f"AutoTTS (CMC β=0.5) uses {h['saved_pct']:.2f}% fewer tokens than SC@64 on the "
            f"held-out benchmarks ({' and '.join(HELD_OUT_BENCHMARKS)}), mean over "
            f"{len(h['backbones'])} backbone(s) ({per}), at mean held-out accuracy "
            f"{h['cmc_accuracy']:.1f}% vs {h['sc64_accuracy']:.1f}% (paper: "
            f"{h['paper_saved_pct']}% fewer).")
    if "matched_saved_pct" in h:
        per_b = ", ".join(
            f"{m} β={e['matched_beta']:g} {e['matched_saved_pct']:.1f}%"
            for m, e in h["backbones"].items() if "matched_saved_pct" in e
        )
        text += (f" At strictly matched accuracy (cheapest β whose held-out accuracy reaches "
                 f"SC@64's): {h['matched_saved_pct']:.1f}% fewer tokens on average over "
                 f"{h['matched_backbones']} backbone(s) ({per_b}).")
    return text


# --------------------------------------------------------------------------- Pareto front


def pareto(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Per (model, dataset): the rows no other row beats on both accuracy and tokens."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["dataset"]), []).append(r)
    front = []
    for key in groups:
        best = -math.inf
        seen = set()
        for r in sorted(groups[key], key=lambda r: (r["avg_tokens"], -r["accuracy"])):
            k = match_key(r["method"], r["config"])
            if k in seen:
                continue
            seen.add(k)
            if r["accuracy"] > best:
                front.append(r)
                best = r["accuracy"]
    return front


def pareto_csv(front: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", "dataset", "method", "label", "config", "beta", "accuracy",
                "acc_ci_low", "acc_ci_high", "avg_tokens"])
    for r in front:
        w.writerow([r["model"], r["dataset"], r["method"], r.get("label", r["method"]),
                    json.dumps(r["config"], sort_keys=True),
                    "" if r.get("beta") is None else r["beta"], round(r["accuracy"], 4),
                    _round(r.get("acc_ci_low")), _round(r.get("acc_ci_high")),
                    round(r["avg_tokens"], 2)])
    return buf.getvalue()


# --------------------------------------------------------------------------- paired


def paired_rows(rows: Sequence[Mapping[str, Any]], cells: Sequence[PaperCell],
                bootstrap: Mapping[str, Any]) -> list[dict[str, Any]]:
    """AutoTTS (CMC at each of the paper's betas) against each baseline at the paper's
    setting: paired bootstrap intervals of the accuracy difference per store, per backbone
    over the held-out benchmarks and over every held-out store.  Needs the rows' per-episode
    ``outcomes`` (kept when the report evaluates; results files do not store them)."""
    from autotts_jax.experiments import compare

    index = _index(rows)
    curves: dict[str, dict[str, Any]] = {}
    configs: dict[str, dict[str, str]] = {}
    for c in cells:
        r = _find(index, c.model, c.dataset, c.method, c.config)
        if r is None or "outcomes" not in r:
            continue
        label = display_label(c.label)
        store = f"{c.model}/{c.dataset}"
        curves.setdefault(label, {})[store] = compare.curve([r], r["config"])
        configs.setdefault(label, {})[store] = json.dumps(c.config, sort_keys=True)
    methods = {display_label(c.label): c.method for c in cells}
    mine = [lab for lab in curves if methods[lab] == CMC_HEADLINE[0]]
    others = [lab for lab in curves if methods[lab] != CMC_HEADLINE[0]]
    pairs = [(a, b) for a in mine for b in others
             if any(s in curves[b] for s in curves[a])]
    if not pairs:
        return []
    held = [s for s in dict.fromkeys(s for c in curves.values() for s in c)
            if s.split("/")[1] in HELD_OUT_BENCHMARKS]
    return compare.pair_rows(curves, configs, pairs, compare.pools_for(held, "held-out"),
                             bootstrap, metrics=("accuracy",))


def paired_md(prows: Sequence[Mapping[str, Any]], have_outcomes: bool) -> str:
    """The report's section on the paired comparisons (or why there is none)."""
    from autotts_jax.experiments import compare

    lines = ["", "## Paired comparisons: AutoTTS vs each baseline", ""]
    if not have_outcomes:
        return "\n".join(lines + [
            "Not available: paired intervals need every episode's outcome, which results "
            "files do not store. Run `autotts-jax report` without `results=` (or "
            "`autotts-jax compare`) to get them.", ""])
    if not prows:
        return "\n".join(lines + [
            "No pair to compare: needs AutoTTS (CMC) and a baseline at the paper's settings "
            "on the same store.", ""])
    r0 = prows[0]
    lines += [
        "Accuracy difference (points, AutoTTS − baseline) at the paper's settings on the same "
        f"(seed, question) episodes: {r0['n_resamples']} paired bootstrap resamples from seed "
        f"{r0['bootstrap_seed']} (questions drawn with replacement, and for each drawn "
        "question its seeds), percentile intervals at "
        f"{100 * float(r0['level']):g} %. 'unpaired' resamples the baseline independently, "
        "as two separate intervals would. Written to `paired.csv`.", "",
        compare.table(prows, markdown=True, configs=False),
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- markdown


def _fmt_tok(v: float) -> str:
    return f"{v / 1000:.1f}k"


def main_table_md(table: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]],
                  head: Mapping[str, Any] | None) -> str:
    datasets = ordered([t["dataset"] for t in table], [SEARCH_BENCHMARK, *HELD_OUT_BENCHMARKS])
    models = ordered([t["model"] for t in table], [])
    labels = ordered([t["label"] for t in table], [])
    by = {(t["model"], t["label"], t["dataset"]): t for t in table}
    seeds = sorted({int(r.get("seeds") or 0) for r in rows} - {0})
    lines = [
        "# Main table (AutoTTS paper, Table 1), re-evaluated",
        "",
        "Accuracy (%) and average total tokens per question (thousands), "
        f"{'/'.join(map(str, seeds)) or '?'} shuffle seeds x every question "
        "(the paper: 100).  Held-out = mean of "
        f"{' and '.join(HELD_OUT_BENCHMARKS)}.  A cell that does not reproduce the paper "
        "shows the paper's figure in parentheses and is marked ✗.",
        "",
        "**Headline.** " + headline_text(head),
        "",
    ]
    notes = {(t["model"], t["method"]): t["paper_note"] for t in table if t.get("paper_note")}
    marks = {key: i + 1 for i, key in enumerate(notes)}
    hdr = ["Model", "Method"]
    for d in datasets:
        hdr += [f"{d} acc", f"{d} tokens"]
    has_heldout = all(d in datasets for d in HELD_OUT_BENCHMARKS)
    if has_heldout:
        hdr += ["held-out acc", "held-out tokens"]
    lines += ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for m in models:
        for lab in labels:
            cells = [by.get((m, lab, d)) for d in datasets]
            if all(c is None for c in cells):
                continue
            first = next(c for c in cells if c is not None)
            key = (m, first["method"])
            shown = f"{lab} [{marks[key]}]" if key in marks else lab
            row = [m, shown]
            for c in cells:
                if c is None or c["status"] == "missing":
                    row += ["—", "—"]
                    continue
                acc, tok = c["accuracy_1dp"], c["tokens_k_1dp"] + "k"
                if c["status"] != "reproduced":
                    acc = f"{acc} ({c['paper_accuracy']}) ✗" if acc != c["paper_accuracy"] else acc
                    if c["tokens_k_1dp"] != c["paper_tokens_k"]:
                        tok = f"{tok} ({c['paper_tokens_k']}k) ✗"
                row += [acc, tok]
            if has_heldout:
                ho = [by.get((m, lab, d)) for d in HELD_OUT_BENCHMARKS]
                if all(c is not None and c["status"] != "missing" for c in ho):
                    row += [f"{sum(c['accuracy'] for c in ho) / len(ho):.1f}",
                            _fmt_tok(sum(c["avg_tokens"] for c in ho) / len(ho))]
                else:
                    row += ["—", "—"]
            lines.append("| " + " | ".join(row) + " |")
    if notes:
        lines.append("")
        for key, note in notes.items():
            lines.append(f"[{marks[key]}] {key[0]} {key[1]}: {note}  ")
    counts: dict[str, int] = {}
    for t in table:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    lines += [
        "",
        "## Comparison with the paper, cell by cell",
        "",
        f"{counts.get('reproduced', 0)} of {len(table)} cells reproduced"
        + "".join(f"; {n} {s}" for s, n in sorted(counts.items()) if s != "reproduced") + ".",
        "",
    ]
    lines += ["| Model | Dataset | Method | Config | Ours acc | Paper acc | Ours tokens | "
              "Paper tokens | Status |", "|---|---|---|---|---|---|---|---|---|"]
    for t in table:
        lines.append(
            f"| {t['model']} | {t['dataset']} | {t['label']} | `{t['config']}` | "
            f"{t.get('accuracy_1dp', '—')} | {t['paper_accuracy']} | "
            f"{t.get('tokens_k_1dp', '—')}k | {t['paper_tokens_k']}k | {t['status']} |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- everything


def write_report(rows: Sequence[Mapping[str, Any]], out: str | Path,
                 plots: Mapping[str, Any] | None = None,
                 bootstrap: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the main table (md, csv), the Pareto fronts and the plots into ``out``; and,
    when the rows carry per-episode ``outcomes``, the paired comparisons (``paired.csv``,
    resampled as ``bootstrap``: samples, seed, level)."""
    from autotts_jax.experiments import compare
    from autotts_jax.experiments import plots as P

    if not rows:
        raise AutoTTSError("no results rows to report")
    plots = dict(plots or {})
    out = Path(out)
    present = {(r["model"], r["dataset"]) for r in rows}
    cells = [c for c in paper_cells() if (c.model, c.dataset) in present]
    table = main_table(rows, cells)
    head = headline(rows)
    front = pareto(rows)
    prows = paired_rows(rows, cells, {"samples": 1000, "seed": 0, "level": 0.95,
                                      **dict(bootstrap or {})})
    files = [
        atomic_write_text(out / "main_table.md",
                          main_table_md(table, rows, head)
                          + paired_md(prows, any("outcomes" in r for r in rows))),
        atomic_write_text(out / "main_table.csv", main_table_csv(table)),
        atomic_write_text(out / "pareto.csv", pareto_csv(front)),
    ]
    if prows:
        files.append(atomic_write_text(out / "paired.csv", compare.to_csv(prows)))
    highlight = {(c.model, c.dataset, *match_key(c.method, c.config)) for c in cells}
    if importlib.util.find_spec("matplotlib") is None:
        # The tables are the report; the plots are an extra (a plain `pip install` has no
        # matplotlib), so their absence is a warning, not a failed run.
        logging.getLogger("autotts_jax.report").warning(
            "warning: no plots: matplotlib is not installed (pip install 'autotts-jax[plots]')"
        )
    else:
        files += P.write_scaling_plots(
            rows, out, front=front, highlight=highlight,
            formats=tuple(plots.get("formats") or ("png", "svg")),
            log_tokens=bool(plots.get("log_tokens", True)),
            bands=tuple(plots.get("bands", ("sc", "cmc")) or ()),
        )
    counts: dict[str, int] = {}
    for t in table:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    pooled = [{k: r[k] for k in ("a", "b", "difference", "ci_low", "ci_high", "p_above_zero",
                                 "unpaired_ci_low", "unpaired_ci_high")}
              for r in prows if r["store"] == "held-out"]
    summary = {"headline": head, "paper_cells": counts, "paired_held_out": pooled,
               "files": [str(f) for f in files]}
    files.append(atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n"))
    return {"table": table, "headline": head, "counts": counts, "files": files,
            "paired": prows}
