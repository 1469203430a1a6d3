"""The results of a replay: :class:`Episodes`, one row per config x seed x question.

Host-side numpy only, so a results object can be pickled, merged and summarised without a
device, and the summary arithmetic is upstream's (accuracy at 2 dp, integer token totals).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

SEQ_ACCOUNTINGS = ("critical_path", "max_branch")


@dataclass(frozen=True)
class Episodes:
    """Per-episode results, each of shape ``[configs, seeds, questions]``."""

    answer: np.ndarray  # int32 answer id, -1 = no answer
    correct: np.ndarray  # bool
    tokens: np.ndarray  # int64 total tokens charged
    seq_tokens: np.ndarray  # int64 sequential (critical-path) tokens
    branches: np.ndarray  # int32 branches opened
    rounds: np.ndarray  # int32 controller rounds including the opening round
    stop_reason: np.ndarray  # int32 index into ``stop_reasons``
    stop_reasons: tuple[str, ...]
    # int64 per-branch (SCOUT) sequential tokens: largest per-slot total (per seq_window)
    seq_tokens_max_branch: np.ndarray | None = None
    # With ``ledger=True``: what each episode saw of each slot, ``[configs, seeds, questions,
    # slots]``: probes explored (int32) and how its end was seen (int8: +1 read in full,
    # +2 explored to the end).  The non-interference check builds its counterfactual from it.
    slot_depth: np.ndarray | None = None
    slot_end: np.ndarray | None = None

    @classmethod
    def from_outputs(cls, out: Mapping[str, np.ndarray],
                     stop_reasons: tuple[str, ...]) -> Episodes:
        """From the per-episode outputs of the compiled replay, already shaped ``[C, N, Q]``
        (token counts are accumulated in int32 on device and widened here for sums)."""
        return cls(
            answer=out["answer"],
            correct=out["correct"],
            tokens=out["tokens"].astype(np.int64),
            seq_tokens=out["seq_tokens"].astype(np.int64),
            seq_tokens_max_branch=out["seq_tokens_max_branch"].astype(np.int64),
            branches=out["branches"],
            rounds=out["rounds"],
            stop_reason=out["stop_reason"],
            stop_reasons=stop_reasons,
            slot_depth=out.get("slot_depth"),
            slot_end=out.get("slot_end"),
        )

    def seq(self, accounting: str = "critical_path") -> np.ndarray:
        """Per-episode sequential tokens under ``accounting`` (see ``SEQ_ACCOUNTINGS``)."""
        if accounting == "critical_path":
            return self.seq_tokens
        if accounting == "max_branch" and self.seq_tokens_max_branch is not None:
            return self.seq_tokens_max_branch
        raise ValueError(f"seq accounting must be one of {SEQ_ACCOUNTINGS}, got {accounting!r}")

    def summary(self, c: int) -> dict[str, Any]:
        """Upstream-exact aggregate of config ``c`` (accuracy at 2 dp, integer token total)."""
        n = int(self.correct[c].size)
        k = int(self.correct[c].sum())
        t = int(self.tokens[c].sum())
        st = int(self.seq_tokens[c].sum())
        reasons = np.bincount(self.stop_reason[c].ravel(), minlength=len(self.stop_reasons))
        return {
            "episodes": n,
            "n_correct": k,
            "total_tokens": t,
            "accuracy": round(100 * k / n, 2),
            "avg_tokens": t / n,
            "avg_tokens_int": t // n,
            "avg_seq_tokens": st / n,
            **self._max_branch_summary(c, n),
            "avg_branches": float(self.branches[c].mean()),
            "avg_rounds": float(self.rounds[c].mean()),
            "stop_reasons": {
                r: int(x) for r, x in zip(self.stop_reasons, reasons, strict=True) if x
            },
        }

    def _max_branch_summary(self, c: int, n: int) -> dict[str, Any]:
        if self.seq_tokens_max_branch is None:
            return {}
        s = int(self.seq_tokens_max_branch[c].sum())
        return {"seq_tokens_max_branch": s, "avg_seq_tokens_max_branch": s / n,
                "avg_seq_tokens_max_branch_int": s // n}


def merge_groups(parts: Mapping[int, Episodes], groups: Mapping[int, list[int]],
                 n_conf: int) -> Episodes:
    """Episodes of config groups (``groups[b]``: original config indices) in config order."""
    first = next(iter(parts.values()))
    merged = {}
    for f in fields(Episodes):
        ref = getattr(first, f.name)
        if f.name == "stop_reasons" or ref is None:
            continue
        # Per-slot ledger fields: the smaller group's slot axis is padded (never opened: 0).
        width = max(getattr(p, f.name).shape[3:] for p in parts.values())
        full = np.zeros((n_conf, *ref.shape[1:3], *width), ref.dtype)
        for b, idx in groups.items():
            part = getattr(parts[b], f.name)
            if part.ndim == 4:
                full[idx, :, :, : part.shape[3]] = part
            else:
                full[idx] = part
        merged[f.name] = full
    return Episodes(stop_reasons=first.stop_reasons, **merged)
