"""The spread of a discovery run over seeds, and search against chance, in one table.

    python benchmarks/discover_spread.py runs/evolve-s0 runs/evolve-s1 runs/evolve-s2 \
        runs/random-s0 [--target-accuracy 47.1] [--budget 331.3]

Each argument is the ``out`` directory of a finished ``autotts-jax discover`` run (with its
``heldout/`` evaluation).  Per run the table gives what was searched (strategy, seed,
candidates), what was selected on the search split (its 10-seed and confirmation scores next
to CMC's), and how the selected controller did on the held-out split: mean accuracy and
tokens per question over the eight held-out stores at beta 0.5, the paired difference in
accuracy and in matched-budget score against CMC beta 0.5 (95 % paired bootstrap interval and
the share of resamples above zero, from ``heldout/discovered_paired.csv``), and the best
accuracy at a budget of at most ``--budget`` thousand tokens per question.  That last column
picks the beta by the held-out *tokens* alone (the largest beta whose mean cost stays within
the budget), never by accuracy, so it is a choice a deployment could make.

It also prints, from each run's ``index.jsonl``, the score of each structure's untuned proposal
next to its tuned schedule (the engine's tuning), and the wall time of the run (``--log``).
Why a script and not a command: it only reads run directories; it computes nothing the runs
did not already write.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

POOL = "held-out"  # discovered_paired.csv's pool over the whole held-out split


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def mean_curve(results: list[dict[str, str]], method: str) -> dict[float, tuple[float, float]]:
    """beta -> (mean accuracy %, mean tokens per question) over the stores of ``method``."""
    by: dict[float, list[tuple[float, float]]] = {}
    for r in results:
        if r["method"] == method and r.get("beta") not in (None, ""):
            by.setdefault(round(float(r["beta"]), 6), []).append(
                (float(r["accuracy"]), float(r["avg_tokens"])))
    stores = max((len(v) for v in by.values()), default=0)
    return {b: (sum(a for a, _ in v) / len(v), sum(t for _, t in v) / len(v))
            for b, v in sorted(by.items()) if len(v) == stores}


def within_budget(curve: dict[float, tuple[float, float]], budget: float
                  ) -> tuple[float, float, float] | None:
    """(beta, accuracy, tokens) of the largest beta whose mean tokens stay within ``budget``."""
    ok = [(b, a, t) for b, (a, t) in curve.items() if t <= budget]
    return max(ok) if ok else None


def paired(run: Path, metric: str, other: str = "cmc") -> dict[str, str] | None:
    path = run / "heldout" / "discovered_paired.csv"
    if not path.is_file():
        return None
    for r in _rows(path):
        if r["metric"] == metric and r["b"] == other and r["store"] == POOL:
            return r
    return None


def _interval(r: dict[str, str] | None) -> str:
    if r is None:
        return "n/a"
    return (f"{float(r['difference']):+.2f} [{float(r['ci_low']):+.2f}, "
            f"{float(r['ci_high']):+.2f}], {float(r['p_above_zero']):.2f}")


def run_row(run: Path, budget: float) -> dict[str, str]:
    settings = json.loads((run / "run.json").read_text(encoding="utf-8"))
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    results = _rows(run / "heldout" / "results.csv")
    explorer = settings.get("explorer", {})
    best = summary.get("best") or {}
    confirmed = summary.get("confirmed") or {}
    disc = mean_curve(results, "discovered")
    cmc = mean_curve(results, "cmc")
    half = disc.get(0.5)
    cheap = within_budget(disc, budget)
    return {
        "run": run.name,
        "strategy": str(explorer.get("strategy", explorer.get("name", "?"))),
        "seed": str(settings.get("seed", "?")),
        "candidates": str(summary.get("candidates", "?")),
        "selected": str(best.get("id", "?")),
        "search score (10 seeds)": f"{float(best.get('score', 'nan')):.2f}",
        "confirmed (40 seeds) / CMC": (
            f"{float(best['confirmed_score']):.2f} / "
            f"{float(confirmed['cmc_confirmed_score']):.2f}"
            if "confirmed_score" in best and "cmc_confirmed_score" in confirmed else "n/a"),
        "held-out β=0.5: acc %, tokens k": (
            f"{half[0]:.2f}, {half[1] / 1000:.1f}" if half else "n/a"),
        "Δacc vs CMC β=0.5 [95 %], P(>0)": _interval(paired(run, "accuracy")),
        "Δscore vs CMC [95 %], P(>0)": _interval(paired(run, "matched_budget")),
        f"best β with ≤ {budget / 1000:.1f}k tokens: β, acc %, tokens k": (
            f"{cheap[0]:g}, {cheap[1]:.2f}, {cheap[2] / 1000:.1f}" if cheap else "none"),
        "CMC β=0.5: acc %, tokens k": (
            f"{cmc[0.5][0]:.2f}, {cmc[0.5][1] / 1000:.1f}" if 0.5 in cmc else "n/a"),
    }


def tuning_rows(run: Path) -> list[dict[str, str]]:
    """One row per accepted evolve candidate: its structure, the tuner's low-fidelity scores
    (4 seeds, 6 betas) of the proposal and of the tuned schedule, the full-fidelity scores
    (10 seeds, 11 betas) of both, and which one the run kept (a tuned schedule must also pass
    the checks and win at full fidelity)."""
    out = []
    for line in (run / "index.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec.get("status") != "accepted" or "untuned_score" not in rec:
            continue
        t = rec.get("tuning") or {}

        def num(v) -> str:
            return "n/a" if v is None else f"{float(v):.2f}"

        kept = str(t.get("kept", ""))
        if t.get("tuned_stage") not in (None, "ok"):
            kept += f" (tuned: {str(t['tuned_stage']).split(':')[0]})"
        out.append({
            "run": run.name, "id": rec["id"], "structure": str(rec.get("structure")),
            "low fidelity: untuned → tuned": (
                f"{num(t.get('untuned_score_low'))} → {num(t.get('score_low'))}"),
            # None: the proposal's spending was not monotone in beta (it would be rejected)
            "full: untuned": ("not monotone" if rec["untuned_score"] is None
                              else num(rec["untuned_score"])),
            "full: tuned": num(t.get("tuned_score")),
            "kept": kept,
        })
    return out


def markdown(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "(none)"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--budget", type=float, default=331.3,
                    help="budget in thousands of tokens per question (default: CMC β=0.5's)")
    ap.add_argument("--tuning", action="store_true", help="also print the tuned-vs-untuned rows")
    args = ap.parse_args(argv)
    rows = []
    for run in args.runs:
        try:
            rows.append(run_row(run, args.budget * 1000))
        except (OSError, KeyError, ValueError) as e:
            print(f"discover_spread: {run}: {e}", file=sys.stderr)
            return 1
    print(markdown(rows))
    if args.tuning:
        print()
        print(markdown([t for run in args.runs for t in tuning_rows(run)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
