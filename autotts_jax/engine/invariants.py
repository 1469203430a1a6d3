"""Invariants every controller's episodes must satisfy, checked on the host, vectorised over
a store's episodes.  :func:`autotts_jax.engine.check.check_controller` and the explorer (every
candidate's search-split results) both use :func:`check_store`.

For every episode (config, seed, question):

* the stop reason is one of the controller's, and not the round cap (every episode must stop
  by itself, calling ``fx.stop``);
* it opened no more branches than the question has and than its config's ``max_slots``
  (capped at ``max_branch`` when given);
* the answer is ``-1`` (no answer) or an answer id of the question (a final or probe answer
  of one of its branches), and one it was shown: an answer of a branch it opened;
* ``correct`` agrees with the store's ``is_correct`` table;
* its tokens lie between the least its opened branches cost (``sum min(f, bt)``) and the
  branch budget: every opened branch driven to its end (``sum max(f * L, bt)``; ``sum bt``
  under the corrected cost model), so nothing is free and nothing is charged twice.  Under
  the reference cost model re-probing a finished branch charges its remainder again
  (upstream QUIRK 1); ``allow_reprobe`` skips that one bound;
* ``0 <= seq_tokens <= tokens``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from autotts_jax.engine.protocol import ROUND_CAP
from autotts_jax.engine.simulate import permutation_table

# The per-episode result arrays of :class:`~autotts_jax.engine.simulate.Episodes` that the
# invariants read, that the sandbox ships back and that scoring summarises.
FIELDS = ("answer", "correct", "tokens", "seq_tokens", "branches", "rounds", "stop_reason")
_MAX_EXAMPLES = 3


def _answers_table(data, n_v: int) -> np.ndarray:
    """``[Q, B, n_v]`` bool: answer id v occurs (as a probe or final answer) on branch b."""
    probes = np.asarray(data.probe_answer)
    finals = np.asarray(data.final_answer)
    n_q, n_b, _ = probes.shape
    has = np.zeros((n_q, n_b, n_v + 1), bool)
    qi, bi, _ = np.indices(probes.shape)
    ids = np.where(probes >= 0, probes, n_v)
    has[qi.ravel(), bi.ravel(), np.minimum(ids.ravel(), n_v)] = True
    qf, bf = np.indices(finals.shape)
    fid = np.where(finals >= 0, finals, n_v)
    has[qf.ravel(), bf.ravel(), np.minimum(fid.ravel(), n_v)] = True
    return has[:, :, :n_v]


def check_store(arrays: Mapping[str, np.ndarray], data, seeds: Sequence[int],
                slots_need: Sequence[int], *, cost_model: str, stop_reasons: Sequence[str],
                max_branch: int | None = None, label: str = "",
                betas: Sequence[float] | None = None,
                configs: Sequence[Mapping[str, Any]] | None = None,
                allow_reprobe: bool = False) -> list[str]:
    """Problems with one store's episodes (``arrays[f]``: ``[configs, seeds, questions]``),
    at most a few examples of each kind, in episode order (the first problem is the first
    one a loop over configs, seeds and questions would meet).  Episodes are named by
    ``label`` (the store), ``betas`` or ``configs`` (the config axis), seed and question."""
    found: list[tuple[int, int, int, int, str]] = []  # (config, seed, question, kind, text)
    more: list[str] = []
    kinds = itertools.count()  # each report() call is one kind of problem, in check order

    def where(c, n, q) -> str:
        parts = [label] if label else []
        if betas is not None:
            parts.append(f"beta {betas[c]:g}")
        elif configs is not None:
            parts.append(f"config {dict(configs[c])}")
        return ", ".join([*parts, f"seed {seeds[n]}", f"question {q}"])

    def report(mask, what):
        idx = np.argwhere(mask)
        kind = next(kinds)
        for c, n, q in idx[:_MAX_EXAMPLES]:
            found.append((int(c), int(n), int(q), kind, f"{what(c, n, q)} ({where(c, n, q)})"))
        if len(idx) > _MAX_EXAMPLES:
            more.append(f"... {len(idx) - _MAX_EXAMPLES} more episodes like that"
                        + (f" on {label}" if label else ""))

    answer = arrays["answer"].astype(np.int64)
    branches = arrays["branches"].astype(np.int64)
    tokens = arrays["tokens"].astype(np.int64)
    seq = arrays["seq_tokens"].astype(np.int64)
    reason = np.asarray(arrays["stop_reason"]).astype(np.int64)
    n_c, n_n, n_q = answer.shape

    report((reason < 0) | (reason >= len(stop_reasons)), lambda c, n, q: f"stop reason index "
           f"{reason[c, n, q]} out of range")
    capped = np.isin(reason, [i for i, r in enumerate(stop_reasons) if r == ROUND_CAP])
    report(capped, lambda c, n, q: "an episode never stopped: it hit the round cap (every "
           "episode must call fx.stop)")

    n_branch = np.asarray(data.n_branches)
    slots = int(np.asarray(data.probe_answer).shape[1])
    can = np.minimum(n_branch, slots)[None, None, :]
    report((branches < 0) | (branches > can), lambda c, n, q: f"opened {branches[c, n, q]} "
           f"branches, but only {can[0, 0, q]} can be opened")
    need = np.asarray(slots_need)[:, None, None]
    if max_branch is not None:
        need = np.minimum(need, max_branch)
    report(branches > need, lambda c, n, q: f"opened {branches[c, n, q]} branches, more than "
           f"its max_slots ({need[c, 0, 0]})")

    perms = permutation_table(list(seeds), n_branch, slots)  # [N, Q, S] original branch
    valid_slot = perms >= 0
    b = np.maximum(perms, 0)
    opened = np.clip(branches, 0, slots)

    # Answers: -1, or an answer id of the question shown on a branch it opened.
    n_v = int(max(np.asarray(data.probe_answer).max(), np.asarray(data.final_answer).max())) + 1
    has = _answers_table(data, n_v)  # [Q, B, V]
    a = np.clip(answer, 0, n_v - 1)
    of_question = has.any(axis=1)[np.arange(n_q)[None, None, :], a]
    bad_id = (answer < -1) | (answer >= n_v) | ((answer >= 0) & ~of_question)
    report(bad_id, lambda c, n, q: f"answer {answer[c, n, q]} is not an answer id of the "
           "question (nor -1 for no answer): out of range")
    shown = np.zeros_like(answer, dtype=bool)
    for n in range(n_n):
        seen = has[np.arange(n_q)[:, None], b[n]] & valid_slot[n][:, :, None]  # [Q, S, V]
        any_seen = seen.any(axis=1)
        first = np.where(any_seen, seen.argmax(axis=1), slots + 1)  # [Q, V] first slot
        shown[:, n, :] = first[np.arange(n_q)[None, :], a[:, n, :]] < opened[:, n, :]
    report((answer >= 0) & ~bad_id & ~shown, lambda c, n, q: f"answer {answer[c, n, q]} was "
           "never shown to it: no branch it opened has that answer (it must not read "
           "unopened slots)")
    table = np.asarray(data.is_correct)
    want = (answer >= 0) & ~bad_id & table[np.arange(n_q)[None, None, :],
                                           np.clip(answer, 0, table.shape[1] - 1)]
    report(arrays["correct"].astype(bool) != want,
           lambda c, n, q: "the correct flag disagrees with the store")

    qidx = np.arange(n_q)[None, :, None]
    bt = np.where(valid_slot, np.asarray(data.branch_tokens)[qidx, b], 0).astype(np.int64)
    n_pr = np.where(valid_slot, np.asarray(data.n_probes)[qidx, b], 0).astype(np.int64)
    f = int(data.probe_freq)
    zero = np.zeros((n_n, n_q, 1), np.int64)
    low = np.concatenate([zero, np.cumsum(np.minimum(f, bt), axis=2)], axis=2)
    top = bt if cost_model == "corrected" else np.maximum(f * n_pr, bt)
    high = np.concatenate([zero, np.cumsum(top, axis=2)], axis=2)
    ni = np.arange(n_n)[None, :, None]
    qi = np.arange(n_q)[None, None, :]
    lo, hi = low[ni, qi, opened], high[ni, qi, opened]
    report(tokens < lo, lambda c, n, q: f"{cost_model} tokens {tokens[c, n, q]} are below "
           f"{lo[c, n, q]}, the least its {opened[c, n, q]} opened branches cost: it changed "
           "the episode state without paying through the effects")
    if cost_model == "corrected":
        report(tokens > hi, lambda c, n, q: f"corrected tokens {tokens[c, n, q]} exceed "
               f"{hi[c, n, q]}, the tokens of its {opened[c, n, q]} opened branches")
    elif not allow_reprobe:
        report(tokens > hi, lambda c, n, q: f"reference tokens {tokens[c, n, q]} exceed "
               f"{hi[c, n, q]}, the cost of driving its {opened[c, n, q]} opened branches to "
               "the end: it re-probes finished branches (each call re-charges their "
               "remainder, upstream QUIRK 1)")
    report((seq < 0) | (seq > tokens), lambda c, n, q: f"sequential tokens {seq[c, n, q]} not "
           f"in [0, tokens = {tokens[c, n, q]}]")
    return [text for *_, text in sorted(found)] + more
