"""Invariants every candidate's search-split results must satisfy (checked on the host).

For every episode (store, beta, seed, question):

* the episode stopped by itself (not at the round cap);
* the answer is ``-1`` (no answer) or an answer of one of the branches the controller opened
  (so it is in the question's answer range and was shown to it);
* ``correct`` agrees with the store's ``is_correct`` table;
* it opened at most ``max_branch`` (64) branches and at most its config's ``max_slots``;
* its tokens lie between the least its opened branches cost (``sum min(f, bt)``) and the
  branch budget: every opened branch driven to its end (``sum max(f * L, bt)``; ``sum bt``
  under the corrected cost model), so nothing is free and nothing is charged twice;
* ``0 <= seq_tokens <= tokens``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

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


def check_store(arrays: dict[str, np.ndarray], data, seeds: Sequence[int], slots_need:
                Sequence[int], *, max_branch: int, cost_model: str, stop_reasons:
                Sequence[str], label: str, betas: Sequence[float]) -> list[str]:
    """Problems with one store's episodes (``arrays[f]``: ``[configs, seeds, questions]``)."""
    problems: list[str] = []

    def where(c, n, q) -> str:
        return f"{label}, beta {betas[c]:g}, seed {seeds[n]}, question {q}"

    def report(mask, what):
        idx = np.argwhere(mask)
        for c, n, q in idx[:_MAX_EXAMPLES]:
            problems.append(f"{what(c, n, q)} ({where(c, n, q)})")
        if len(idx) > _MAX_EXAMPLES:
            problems.append(f"... {len(idx) - _MAX_EXAMPLES} more episodes like that on {label}")

    answer = arrays["answer"].astype(np.int64)
    branches = arrays["branches"].astype(np.int64)
    tokens = arrays["tokens"].astype(np.int64)
    seq = arrays["seq_tokens"].astype(np.int64)
    reason = arrays["stop_reason"]
    n_c, n_n, n_q = answer.shape

    capped = reason == 0  # round_cap is stop reason 0
    if stop_reasons and stop_reasons[0] == "round_cap" and capped.any():
        report(capped, lambda c, n, q: "the episode never stopped (hit the round cap): every "
               "episode must call fx.stop")
    limit = np.minimum(np.asarray(slots_need)[:, None, None], max_branch)
    report(branches > limit, lambda c, n, q: f"opened {branches[c, n, q]} branches, more than "
           f"min(max_slots, {max_branch}) = {limit[c, 0, 0]}")
    report(branches < 0, lambda c, n, q: f"opened a negative number of branches "
           f"({branches[c, n, q]})")

    n_branch = np.asarray(data.n_branches)
    slots = int(np.asarray(data.probe_answer).shape[1])
    perms = permutation_table(list(seeds), n_branch, slots)  # [N, Q, S] original branch
    valid_slot = perms >= 0
    b = np.maximum(perms, 0)
    qidx = np.arange(n_q)[None, :, None]
    bt = np.where(valid_slot, np.asarray(data.branch_tokens)[qidx, b], 0).astype(np.int64)
    n_pr = np.where(valid_slot, np.asarray(data.n_probes)[qidx, b], 0).astype(np.int64)
    f = int(data.probe_freq)
    zero = np.zeros((n_n, n_q, 1), np.int64)
    low = np.concatenate([zero, np.cumsum(np.minimum(f, bt), axis=2)], axis=2)
    top = bt if cost_model == "corrected" else np.maximum(f * n_pr, bt)
    high = np.concatenate([zero, np.cumsum(top, axis=2)], axis=2)
    opened = np.clip(branches, 0, slots)
    ni = np.arange(n_n)[None, :, None]
    qi = np.arange(n_q)[None, None, :]
    lo, hi = low[ni, qi, opened], high[ni, qi, opened]
    report(tokens < lo, lambda c, n, q: f"{tokens[c, n, q]} tokens is less than its "
           f"{opened[c, n, q]} opened branches cost at least ({lo[c, n, q]}): it changed the "
           "episode state without paying through the effects")
    report(tokens > hi, lambda c, n, q: f"{tokens[c, n, q]} tokens exceeds the budget of its "
           f"{opened[c, n, q]} opened branches driven to the end ({hi[c, n, q]}): it re-probes "
           "finished branches (each call charges again)")
    report((seq < 0) | (seq > tokens), lambda c, n, q: f"sequential tokens {seq[c, n, q]} not "
           f"in [0, tokens={tokens[c, n, q]}]")

    # Answers: -1, or an answer of a branch it opened.
    n_v = int(max(np.asarray(data.probe_answer).max(), np.asarray(data.final_answer).max())) + 1
    has = _answers_table(data, n_v)  # [Q, B, V]
    bad_range = (answer < -1) | (answer >= n_v)
    report(bad_range, lambda c, n, q: f"answer id {answer[c, n, q]} is out of range (-1 for no "
           f"answer, or an answer id of the question below {n_v})")
    a = np.clip(answer, 0, n_v - 1)
    shown = np.zeros_like(answer, dtype=bool)
    for n in range(n_n):
        seen = has[np.arange(n_q)[:, None], b[n]] & valid_slot[n][:, :, None]  # [Q, S, V]
        any_seen = seen.any(axis=1)
        first = np.where(any_seen, seen.argmax(axis=1), slots + 1)  # [Q, V] first slot
        shown[:, n, :] = first[np.arange(n_q)[None, :], a[:, n, :]] < opened[:, n, :]
    bad_shown = (answer >= 0) & ~bad_range & ~shown
    report(bad_shown, lambda c, n, q: f"answer id {answer[c, n, q]} is not an answer of any "
           "branch it opened")
    table = np.asarray(data.is_correct)
    want = (answer >= 0) & ~bad_range & table[np.arange(n_q)[None, None, :],
                                              np.clip(answer, 0, table.shape[1] - 1)]
    report(arrays["correct"].astype(bool) != want,
           lambda c, n, q: "the correct flag disagrees with the store")
    return problems
