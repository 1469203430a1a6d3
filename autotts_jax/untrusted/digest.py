"""Diagnostics distilled from a candidate's episodes and execution traces, for the next prompt.

* how often each stop reason fired, per beta (summed over the search backbones);
* *premature stops*: episodes where the candidate answered wrong while the majority of 64
  full reads (SC@64, same seed and question) was right, per beta -- and the one of them that
  spent the fewest tokens, traced round by round;
* the episode that burnt the most tokens at the largest beta, traced round by round;
* the questions where it wastes the most tokens relative to SC@64's accuracy.

:func:`pick_episodes` chooses the episodes to trace (on the trusted side: it needs
correctness); :func:`trace_many` traces them where the candidate's code may run (a sandbox
child on stripped stores, or in process for the trusted evolve family) and
:func:`rescore_traces` judges the sandbox's traced answers; :func:`render` writes the text
from the episode arrays and the traced rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def chunk_size(n_episodes: int, limit: int = 4096) -> int:
    """Episodes per compiled chunk: at most ``limit``, split evenly, a multiple of 64 (so the
    last chunk carries little padding)."""
    n_chunks = max(1, -(-int(n_episodes) // limit))
    per = -(-int(n_episodes) // n_chunks)
    return min(limit, -(-per // 64) * 64)


def _mid(betas: Sequence[float]) -> int:
    return int(np.argmin([abs(b - 0.5) for b in betas]))


def pick_episodes(arrays: Mapping[str, np.ndarray], sc64_correct: np.ndarray,
                  betas: Sequence[float], n: int = 2) -> list[dict[str, Any]]:
    """Up to ``n`` episodes worth tracing: ``{"kind", "store", "config", "seed_index",
    "question"}``.  ``sc64_correct`` is ``[stores, seeds, questions]``."""
    picks: list[dict[str, Any]] = []
    if n <= 0:
        return picks
    correct = arrays["correct"].astype(bool)  # [S, C, N, Q]
    tokens = arrays["tokens"]
    c = _mid(betas)
    bad = ~correct[:, c] & sc64_correct.astype(bool)  # [S, N, Q]
    if bad.any():
        t = np.where(bad, tokens[:, c], np.iinfo(np.int64).max)
        s, ni, q = np.unravel_index(int(np.argmin(t)), t.shape)
        picks.append({"kind": "premature_stop", "store": int(s), "config": c,
                      "seed_index": int(ni), "question": int(q)})
    if len(picks) < n:
        last = len(betas) - 1
        s, ni, q = np.unravel_index(int(np.argmax(tokens[:, last])), tokens[:, last].shape)
        picks.append({"kind": "most_tokens", "store": int(s), "config": last,
                      "seed_index": int(ni), "question": int(q)})
    return picks[:n]


def stop_reason_table(summaries: Sequence[Sequence[Mapping[str, Any]]], betas: Sequence[float]
                      ) -> str:
    reasons: list[str] = []
    for per_store in summaries:
        for row in per_store:
            for r in row["stop_reasons"]:
                if r not in reasons:
                    reasons.append(r)
    lines = ["| beta | " + " | ".join(reasons) + " |", "|---|" + "---|" * len(reasons)]
    for c, b in enumerate(betas):
        total = sum(per_store[c]["episodes"] for per_store in summaries)
        cells = []
        for r in reasons:
            k = sum(per_store[c]["stop_reasons"].get(r, 0) for per_store in summaries)
            cells.append(f"{100.0 * k / total:.0f}%")
        lines.append(f"| {b:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render(arrays: Mapping[str, np.ndarray], summaries, sc64_correct: np.ndarray,
           models: Sequence[str], betas: Sequence[float], traces: Sequence[Mapping[str, Any]],
           ) -> str:
    """Markdown digest of one candidate (see the module docstring)."""
    correct = arrays["correct"].astype(bool)
    tokens = arrays["tokens"]
    sc = sc64_correct.astype(bool)
    lines = ["#### How episodes ended (share of episodes, all search backbones)", "",
             stop_reason_table(summaries, betas), ""]
    lines += ["#### Premature stops: wrong where the majority of 64 full reads is right", "",
              "| beta | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for c, b in enumerate(betas):
        cells = []
        for s in range(len(models)):
            bad = ~correct[s, c] & sc[s]
            better = (correct[s, c] & ~sc[s]).mean()
            cells.append(f"{100.0 * bad.mean():.1f}% ({100.0 * better:.1f}% the other way)")
        lines.append(f"| {b:g} | " + " | ".join(cells) + " |")
    lines.append("")
    last = len(betas) - 1
    lines += [f"#### Questions with the most tokens at beta {betas[last]:g} (mean over seeds)", ""]
    for s, m in enumerate(models):
        per_q = tokens[s, last].mean(axis=0)
        acc_q = correct[s, last].mean(axis=0)
        sc_q = sc[s].mean(axis=0)
        top = np.argsort(-per_q)[:3]
        items = ", ".join(f"q{q}: {per_q[q] / 1000:.0f}k tokens, acc {100 * acc_q[q]:.0f}% "
                          f"(SC@64 {100 * sc_q[q]:.0f}%)" for q in top)
        lines.append(f"- {m}: {items}")
    lines.append("")
    for t in traces:
        what = ("Premature stop (wrong, while SC@64 is right), the cheapest such episode"
                if t["kind"] == "premature_stop" else "The episode with the most tokens")
        lines += [f"#### {what}: {models[t['store']]}, beta {betas[t['config']]:g}, "
                  f"seed {t['seed']}, question {t['question']}", "", "```", t["text"], "```", ""]
    return "\n".join(lines)


def trace_many(controller, data, picks: Sequence[Mapping[str, Any]], configs, seeds,
               *, cost_model: str, pool_size: int, max_rounds: int, max_rows: int = 24,
               name: str | None = None) -> list[dict[str, Any]]:
    """Trace the picked episodes of one store and render them as text.

    Like :func:`autotts_jax.engine.traces.trace_episode`, but with a chunk of one seed's
    questions (``trace_episode`` pads its 30 episodes to the default 4096-episode chunk, whose
    per-round trace buffers cost ~0.5 GB and tens of seconds).
    """
    from autotts_jax.engine.simulate import simulate
    from autotts_jax.engine.traces import EpisodeTrace, _action, _plain

    out = []
    n_q = int(data.probe_answer.shape[0])
    for p in picks:
        config, seed, q = configs[p["config"]], int(seeds[p["seed_index"]]), int(p["question"])
        eps, buf = simulate(controller, data, [config], [seed], cost_model=cost_model,
                            pool_size=pool_size, max_rounds=max_rounds, trace=True,
                            chunk_size=n_q)
        reasons = eps.stop_reasons
        rows = []
        for r in range(int(eps.rounds[0, 0, q])):
            row = {k: _plain(v[0, 0, q, r]) for k, v in buf.items()}
            row["stop_reason"] = reasons[row["stop_reason"]] if row["done"] else ""
            row["share"] = (round(row["winner_votes"] / row["pool_size"], 4)
                            if row["pool_size"] else 0.0)
            row["action"] = _action(row)
            rows.append(row)
        trace = EpisodeTrace(
            controller=name or controller.name,
            config={"beta": config["beta"]} if "beta" in config else dict(config), seed=seed,
            question=q, answer=int(eps.answer[0, 0, q]), correct=bool(eps.correct[0, 0, q]),
            tokens=int(eps.tokens[0, 0, q]), seq_tokens=int(eps.seq_tokens[0, 0, q]),
            stop_reason=reasons[int(eps.stop_reason[0, 0, q])], rows=rows,
        )
        out.append({**p, "seed": seed, "text": trace.to_text(max_rows=max_rows),
                    "episode": dataclasses.asdict(trace)})
    return out


def rescore_traces(traces: Sequence[Mapping[str, Any]], datas, max_rows: int = 24
                   ) -> list[dict[str, Any]]:
    """Traces made on stripped stores (no answer key: every episode reads as wrong), with
    each episode's correctness judged against the real stores ``datas`` and the text
    rendered again."""
    from autotts_jax.engine.traces import EpisodeTrace
    from autotts_jax.store.stripped import score

    out = []
    for t in traces:
        ep = dict(t["episode"])
        data = datas[int(t["store"])]
        answers = np.full(int(np.asarray(data.is_correct).shape[0]), -1)
        answers[int(ep["question"])] = int(ep["answer"])
        ep["correct"] = bool(score(answers, data)[int(ep["question"])])
        out.append({**t, "episode": ep,
                    "text": EpisodeTrace(**ep).to_text(max_rows=max_rows)})
    return out
