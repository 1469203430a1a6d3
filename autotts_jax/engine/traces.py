"""Execution traces: the round-by-round record of one episode, for humans and for prompts.

Tracing is a static flag of the compiled replay (``simulate(..., trace=True)``), so the
untraced path that sweeps use is compiled without any of it.  A trace row holds, per round:
what was done (branches opened / read / advanced / pruned), the branch counts, the pool
winner with its vote share and confidence, tokens so far (total and sequential), whether the
episode stopped and why, plus the controller's own fields (e.g. CMC's EMA and delta).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from autotts_jax.engine.protocol import Controller
from autotts_jax.engine.simulate import DEFAULT_MAX_ROUNDS, simulate
from autotts_jax.store.load import ReplayData


@dataclass(frozen=True)
class EpisodeTrace:
    controller: str
    config: dict[str, Any]
    seed: int
    question: int
    answer: int
    correct: bool
    tokens: int
    seq_tokens: int
    stop_reason: str
    rows: list[dict[str, Any]]

    def to_json(self) -> str:
        """Compact JSON: one object with the episode summary and a list of round rows."""
        return json.dumps(
            {
                "controller": self.controller, "config": self.config, "seed": self.seed,
                "question": self.question, "answer": self.answer, "correct": self.correct,
                "tokens": self.tokens, "seq_tokens": self.seq_tokens,
                "stop_reason": self.stop_reason, "rounds": self.rows,
            },
            separators=(",", ":"),
        )

    def to_text(self, max_rows: int | None = 40) -> str:
        """A fixed-width table, eliding the middle of long episodes."""
        head = (f"{self.controller} {json.dumps(self.config, sort_keys=True)} seed={self.seed} "
                f"q={self.question}: answer {self.answer} "
                f"({'correct' if self.correct else 'wrong'}), {self.tokens} tokens "
                f"({self.seq_tokens} sequential), stop: {self.stop_reason}")
        extra = [k for k in (self.rows[0] if self.rows else {}) if k.startswith("c.")]
        cols = ["round", "action", "active", "finished", "pruned", "pool_size", "winner",
                "share", "confidence", "tokens", *extra]
        lines = [head, "  ".join(f"{c:>10}" for c in cols)]
        rows = self.rows
        if max_rows is not None and len(rows) > max_rows:
            half = max_rows // 2
            rows = [*rows[:half], None, *rows[-half:]]
        for r in rows:
            if r is None:
                lines.append(f"{'...':>10}")
                continue
            cells = []
            for c in cols:
                v = r[c]
                cells.append(f"{v:>10.4f}" if isinstance(v, float) else f"{v!s:>10}")
            lines.append("  ".join(cells))
        return "\n".join(lines)


def _action(row: Mapping[str, Any]) -> str:
    parts = []
    if row["read_new"]:
        parts.append(f"read{row['read_new']}")
    probed_new = row["opened_new"] - row["read_new"]
    if probed_new:
        parts.append(f"open{probed_new}")
    advanced = row["advanced"] - probed_new
    if advanced > 0:
        parts.append(f"adv{advanced}")
    if row["pruned_new"]:
        parts.append(f"prune{row['pruned_new']}")
    if row["done"]:
        parts.append("stop")
    return "+".join(parts) or "-"


def _plain(v: Any) -> Any:
    v = np.asarray(v)
    if v.dtype == bool:
        return bool(v)
    if np.issubdtype(v.dtype, np.integer):
        return int(v)
    return round(float(v), 6)


def trace_episode(
    controller: Controller,
    data: ReplayData,
    config: Mapping[str, Any],
    seed: int,
    question: int,
    *,
    cost_model: str = "reference",
    pool_size: int = 128,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
) -> EpisodeTrace:
    """Replay one (config, seed) with tracing and return question ``question``'s record."""
    eps, buf = simulate(
        controller, data, [config], [seed], cost_model=cost_model, pool_size=pool_size,
        max_rounds=max_rounds, trace=True,
    )
    n_rounds = int(eps.rounds[0, 0, question])
    reasons = eps.stop_reasons
    rows = []
    for r in range(n_rounds):
        row = {k: _plain(v[0, 0, question, r]) for k, v in buf.items()}
        row["stop_reason"] = reasons[row["stop_reason"]] if row["done"] else ""
        row["share"] = round(row["winner_votes"] / row["pool_size"], 4) if row["pool_size"] else 0.0
        row["action"] = _action(row)
        rows.append(row)
    return EpisodeTrace(
        controller=controller.name,
        config=dict(controller.config(config)),
        seed=int(seed),
        question=int(question),
        answer=int(eps.answer[0, 0, question]),
        correct=bool(eps.correct[0, 0, question]),
        tokens=int(eps.tokens[0, 0, question]),
        seq_tokens=int(eps.seq_tokens[0, 0, question]),
        stop_reason=reasons[int(eps.stop_reason[0, 0, question])],
        rows=rows,
    )
