"""Scoring candidates on the search split: accuracy first, then tokens.

Every candidate is evaluated over the beta grid on each search backbone, giving one
(avg tokens, accuracy) point per beta.  Its **score** is *accuracy at matched budget*:

* per backbone, the candidate's frontier ``F(t)`` = the best accuracy among its betas whose
  average tokens are ``<= t`` (0 when none is that cheap);
* ``F`` is averaged over :data:`N_BUDGETS` budgets spaced evenly in log tokens from the cost of
  :data:`FLOOR_READS` full reads (SC@4) to the cost of SC@64 on that backbone -- the area under
  the accuracy / log-token curve over the range where test-time scaling happens (a candidate
  gets no credit below its cheapest beta, and none for spending beyond SC@64);
* the score is the mean over backbones, in accuracy points (%).

So accuracy counts first (the score is an accuracy), and tokens decide *where* on the budget
axis it is reached: reaching SC@64's accuracy at a fifth of its tokens scores higher than
reaching it only at SC@64's budget.  Ties are broken by fewer mean tokens.  The same score is
computed for every baseline, so the history can say where a candidate stands.

A beta knob must be a spending knob: mean tokens (over backbones) must rise from the smallest
to the largest beta and never drop by more than ``tolerance`` between neighbouring betas
(:func:`monotone_problem`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from autotts_jax.engine.invariants import FIELDS  # noqa: F401 -- the arrays scored here

N_BUDGETS = 16
FLOOR_READS = 4  # the budget window starts at the cost of SC@FLOOR_READS


def summarize(arrays: Mapping[str, np.ndarray], stop_reasons: Sequence[str]) -> list[list[dict]]:
    """Per store, per config: accuracy, tokens, branches, rounds, stop-reason counts.

    ``arrays[f]`` has shape ``[stores, configs, seeds, questions]``.
    """
    out = []
    n_s, n_c = arrays["correct"].shape[:2]
    for s in range(n_s):
        rows = []
        for c in range(n_c):
            correct = arrays["correct"][s, c]
            n = int(correct.size)
            counts = np.bincount(arrays["stop_reason"][s, c].ravel(), minlength=len(stop_reasons))
            rows.append({
                "accuracy": round(100.0 * float(correct.sum()) / n, 4),
                "avg_tokens": round(float(arrays["tokens"][s, c].mean()), 2),
                "avg_seq_tokens": round(float(arrays["seq_tokens"][s, c].mean()), 2),
                "avg_branches": round(float(arrays["branches"][s, c].mean()), 3),
                "avg_rounds": round(float(arrays["rounds"][s, c].mean()), 3),
                "n_correct": int(correct.sum()),
                "episodes": n,
                "stop_reasons": {r: int(k) for r, k in zip(stop_reasons, counts, strict=False)
                                 if k},
            })
        out.append(rows)
    return out


def curves(summaries: Sequence[Sequence[Mapping[str, Any]]], models: Sequence[str],
           betas: Sequence[float]) -> dict[str, list[dict[str, float]]]:
    """``{model: [{beta, accuracy, avg_tokens, ...}, ...]}`` from :func:`summarize` output."""
    return {
        m: [{"beta": float(b), **{k: v for k, v in row.items()}} for b, row in
            zip(betas, summaries[i], strict=True)]
        for i, m in enumerate(models)
    }


def frontier(points: Sequence[tuple[float, float]], budget: float) -> float:
    """Best accuracy among ``(tokens, accuracy)`` points with tokens <= budget (0 if none)."""
    best = 0.0
    for t, a in points:
        if t <= budget and a > best:
            best = a
    return best


def budgets(anchor: Mapping[str, float], n: int = N_BUDGETS) -> np.ndarray:
    """Log-spaced budgets from ``anchor['low']`` (SC@4's tokens) to ``anchor['high']``
    (SC@64's tokens)."""
    return np.geomspace(float(anchor["low"]), float(anchor["high"]), n)


def score_curves(curve: Mapping[str, Sequence[Mapping[str, float]]],
                 anchors: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """Score (see the module docstring), per-backbone scores, peak accuracy and mean tokens."""
    per = {}
    for m, pts in curve.items():
        pairs = [(float(p["avg_tokens"]), float(p["accuracy"])) for p in pts]
        per[m] = float(np.mean([frontier(pairs, t) for t in budgets(anchors[m])]))
    models = list(curve)
    n_b = len(next(iter(curve.values())))
    mean_acc = [float(np.mean([curve[m][i]["accuracy"] for m in models])) for i in range(n_b)]
    mean_tok = [float(np.mean([curve[m][i]["avg_tokens"] for m in models])) for i in range(n_b)]
    peak = int(np.argmax(mean_acc))
    return {
        "score": round(float(np.mean(list(per.values()))), 4),
        "score_per_model": {m: round(v, 4) for m, v in per.items()},
        "peak_accuracy": round(mean_acc[peak], 4),
        "peak_beta": float(curve[models[0]][peak].get("beta", peak)),
        "tokens_at_peak": round(mean_tok[peak], 1),
        "mean_tokens": round(float(np.mean(mean_tok)), 1),
        "mean_curve": [{"beta": float(curve[models[0]][i].get("beta", i)),
                        "accuracy": round(mean_acc[i], 4), "avg_tokens": round(mean_tok[i], 1)}
                       for i in range(n_b)],
    }


def rank_key(record: Mapping[str, Any]) -> tuple:
    """Sort key: higher score first, then fewer mean tokens, then earlier."""
    return (-float(record.get("score", -1e9)), float(record.get("mean_tokens", 1e18)),
            int(record.get("round", 0)), int(record.get("candidate", 0)))


def monotone_problem(mean_curve: Sequence[Mapping[str, float]], tolerance: float) -> str | None:
    """Why mean tokens are not a spending knob over beta, or None if they are."""
    t = [float(p["avg_tokens"]) for p in mean_curve]
    if len(t) < 2:
        return None
    if not t[-1] > t[0]:
        return (f"spending does not rise with beta: mean tokens {t[0]:.0f} at beta "
                f"{mean_curve[0]['beta']:g} vs {t[-1]:.0f} at beta {mean_curve[-1]['beta']:g}")
    for i in range(1, len(t)):
        if t[i] < t[i - 1] * (1.0 - tolerance):
            return (f"spending is not monotone in beta: mean tokens drop from {t[i - 1]:.0f} "
                    f"(beta {mean_curve[i - 1]['beta']:g}) to {t[i]:.0f} (beta "
                    f"{mean_curve[i]['beta']:g}), more than the {100 * tolerance:g}% tolerance")
    return None


def position(curve: Mapping[str, Sequence[Mapping[str, float]]],
             references: Mapping[str, Mapping[str, Mapping[str, float]]]) -> list[dict]:
    """Where a candidate stands against reference points (e.g. SC@64, CMC beta 0.5).

    ``references[label][model] = {"accuracy", "avg_tokens"}``.  Per reference: the mean over
    backbones of the candidate's accuracy at the reference's budget minus the reference's
    accuracy, and the per-backbone token ratio at which the candidate first matches the
    reference's accuracy (None when it never does).
    """
    out = []
    for label, per_model in references.items():
        deltas, ratios = {}, {}
        for m, ref in per_model.items():
            if m not in curve:
                continue
            pairs = [(float(p["avg_tokens"]), float(p["accuracy"])) for p in curve[m]]
            deltas[m] = round(frontier(pairs, float(ref["avg_tokens"])) - float(ref["accuracy"]),
                              2)
            ok = [t for t, a in pairs if a >= float(ref["accuracy"])]
            ratios[m] = round(min(ok) / float(ref["avg_tokens"]), 3) if ok else None
        if deltas:
            out.append({"reference": label, "delta_at_budget": deltas,
                        "mean_delta": round(float(np.mean(list(deltas.values()))), 2),
                        "tokens_to_match": ratios})
    return out
