"""Non-interference: a controller's results may depend only on what its episodes observed.

The observation boundary (:class:`~autotts_jax.engine.env.Observation`) says what a controller
may see; this module checks that it *behaves* that way, without reading its code.  A replay
with ``ledger=True`` records, for every episode and slot, how deep the slot was explored and
whether its end was seen.  Folded over all episodes (:func:`revealed`), that gives, for every
(question, branch) of the store, the part any episode observed.  :func:`counterfactual` then
builds a store that agrees with the original on exactly that part and differs everywhere
else:

* probe answers beyond the deepest point any episode reached are redrawn;
* a branch whose end no episode reached gets a new length (probe count and tokens, never
  shorter than what was observed) and a new final answer, unless a full read showed them;
* branches no episode opened are redrawn entirely;
* answer ids are relabelled by a random permutation per question (final answers first, as
  the store requires), so ids carry no information either -- not even whether some unseen
  branch ends with an answer;
* the gold answer is redrawn among the question's answers.

Replaying the same episodes on the counterfactual store (:func:`compare`) must give the same
decisions: the same tokens, sequential tokens, branches, rounds, stop reasons, per-slot
ledger, and the same answers once mapped back through the relabelling.  A controller that
reads what no episode paid for -- later probes, the length or final answer of an unread
branch, an unopened slot, an id's position in the vocabulary -- almost surely changes some
episode and is reported with the first one that differs.

The replay on the counterfactual store should run in a *separate process* (the explorer runs
it in a second sandbox; :func:`autotts_jax.engine.check.check_controller` in a spawned
process when the controller can be pickled by reference): a controller that kept the
original data from the first replay could otherwise answer from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from autotts_jax.engine.simulate import Episodes, permutation_table
from autotts_jax.store.load import ReplayData

FIELDS = ("tokens", "seq_tokens", "branches", "rounds", "stop_reason")
READ, EXPLORED = 1, 2  # bits of ``Episodes.slot_end``


@dataclass(frozen=True)
class Revealed:
    """What the episodes of one replay observed, per (question, branch) of the store."""

    depth: np.ndarray  # (Q, B) int32 deepest probe index any episode explored (0: none)
    read: np.ndarray  # (Q, B) bool some episode read the branch in full (final, tokens seen)
    explored: np.ndarray  # (Q, B) bool some episode explored it to its end (all seen)


def revealed(slot_depth: np.ndarray, slot_end: np.ndarray, branches: np.ndarray, seeds,
             n_branches: np.ndarray, n_b: int) -> Revealed:
    """Fold a ledger replay (``simulate(..., ledger=True)``: ``slot_depth``/``slot_end``
    ``[C, N, Q, S]``, ``branches`` ``[C, N, Q]``) into a :class:`Revealed`."""
    n_conf, n_seed, n_q, n_slots = slot_depth.shape
    perms = permutation_table(list(seeds), np.asarray(n_branches), n_slots)  # [N, Q, S]
    branch = np.broadcast_to(perms[None], (n_conf, n_seed, n_q, n_slots))
    question = np.broadcast_to(np.arange(n_q)[None, None, :, None], branch.shape)
    opened = np.arange(n_slots)[None, None, None, :] < np.asarray(branches)[..., None]
    real = opened & (branch >= 0)
    q, b = question[real], branch[real]
    depth = np.zeros((n_q, n_b), np.int32)
    np.maximum.at(depth, (q, b), np.asarray(slot_depth)[real].astype(np.int32))
    end = np.asarray(slot_end)[real].astype(np.int32)
    read = np.zeros((n_q, n_b), bool)
    explored = np.zeros((n_q, n_b), bool)
    np.logical_or.at(read, (q, b), (end & READ) > 0)
    np.logical_or.at(explored, (q, b), (end & EXPLORED) > 0)
    return Revealed(depth, read, explored)


def counterfactual(data: ReplayData, seen: Revealed, seed: int, pool_size: int
                   ) -> tuple[ReplayData, np.ndarray]:
    """A store equal to ``data`` on what ``seen`` covers and redrawn everywhere else
    (relabelled), with a redrawn gold answer.

    Returns the store and ``relabel`` (Q, V) int32: answer id ``v`` of question ``q`` in
    ``data`` is id ``relabel[q, v]`` in the new store.  ``pool_size`` bounds the number of
    distinct final answers per question (the engine's pool).
    """
    rng = np.random.default_rng(seed)
    probes = np.array(data.probe_answer, copy=True)
    n_probes = np.array(data.n_probes, copy=True)
    tokens = np.array(data.branch_tokens, copy=True)
    final = np.array(data.final_answer, copy=True)
    is_correct = np.asarray(data.is_correct)
    n_q, _, n_k = probes.shape
    n_v = is_correct.shape[1]
    f = int(data.probe_freq)
    relabel = np.tile(np.arange(n_v, dtype=np.int32), (n_q, 1))
    new_probes = np.full_like(probes, -1)
    new_final = np.full_like(final, -1)
    new_correct = np.zeros_like(is_correct)
    for q in range(n_q):
        nb = int(data.n_branches[q])
        used = np.unique(np.concatenate([probes[q, :nb].ravel(), final[q, :nb]]))
        used = used[used >= 0]
        finals_now = set(final[q, :nb].tolist())
        for b in range(nb):
            d = int(seen.depth[q, b])
            if seen.explored[q, b]:
                continue  # everything about it was seen
            if not seen.read[q, b]:
                length = int(rng.integers(max(d, 1), n_k + 1))
                # Corrected accounting charges min(f * d, tokens): tokens below f * d were
                # seen through the cost and stay.
                if tokens[q, b] >= f * d:
                    tokens[q, b] = f * length + int(rng.integers(0, f))
                n_probes[q, b] = length
                # A new final answer from the question's answers, keeping the pool bound.
                pick = used if len(finals_now) < pool_size else np.array(sorted(finals_now))
                final[q, b] = int(rng.choice(pick))
                finals_now.add(int(final[q, b]))
            length = int(n_probes[q, b])
            probes[q, b, d:] = -1
            if length > d:
                probes[q, b, d:length] = rng.choice(used, size=length - d)
        # Relabel: the new final answers first (a random order), then every other id.
        fin = np.unique(final[q, :nb])
        rest = np.setdiff1d(np.arange(n_v), fin)
        relabel[q, fin] = rng.permutation(len(fin))
        relabel[q, rest] = len(fin) + rng.permutation(len(rest))
        real = probes[q] >= 0
        new_probes[q][real] = relabel[q, probes[q][real]]
        new_final[q, :nb] = relabel[q, final[q, :nb]]
        # The gold answer is redrawn too: no controller may see it.
        n_gold = int(is_correct[q].sum())
        if n_gold:
            new_correct[q, rng.choice(relabel[q, used], size=min(n_gold, len(used)),
                                      replace=False)] = True
    out = ReplayData(
        probe_answer=new_probes, n_probes=n_probes, branch_tokens=tokens,
        final_answer=new_final, n_branches=np.asarray(data.n_branches),
        is_correct=new_correct, probe_freq=np.asarray(data.probe_freq),
    )
    return out, relabel


def episode_arrays(eps: Episodes) -> dict[str, np.ndarray]:
    """The fields :func:`compare` reads, from :class:`Episodes`."""
    names = ("answer", *FIELDS, "slot_depth", "slot_end")
    return {f: np.asarray(getattr(eps, f)) for f in names if getattr(eps, f) is not None}


def compare(first: Mapping[str, np.ndarray], second: Mapping[str, np.ndarray],
            relabel: np.ndarray) -> str | None:
    """``None`` if the replay on the counterfactual store made the same decisions as the
    first (answers mapped back through ``relabel``), else one line naming the first episode
    and what differed.  Both are ``{field: [C, N, Q(, S)]}`` of one store."""
    n_q = first["answer"].shape[2]
    back = np.full((n_q, relabel.shape[1] + 1), -1, np.int64)  # new id -> old id; -1 -> -1
    for q in range(n_q):
        back[q, relabel[q]] = np.arange(relabel.shape[1])
    n_v = relabel.shape[1]
    q_idx = np.broadcast_to(np.arange(n_q)[None, None, :], second["answer"].shape)
    # Ids outside the vocabulary are no answer of the question; the invariants reject them
    # later, here they only need to agree with each other (all become -2).
    a, b = np.asarray(first["answer"]), np.asarray(second["answer"])
    a = np.where((a >= -1) & (a < n_v), a, -2)
    inside = (b >= -1) & (b < n_v)
    mapped = np.where(inside, back[q_idx, np.where(inside, b, -1)], -2)  # -1 -> the -1 column
    diffs = {"answer": a != mapped}
    for name in FIELDS:
        diffs[name] = np.asarray(first[name]) != np.asarray(second[name])
    for name in ("slot_depth", "slot_end"):
        if name in first and name in second:
            a, b = np.asarray(first[name]), np.asarray(second[name])
            width = min(a.shape[-1], b.shape[-1])
            diffs[name] = np.any(a[..., :width] != b[..., :width], axis=-1)
    bad = np.zeros(first["answer"].shape, bool)
    for d in diffs.values():
        bad |= d
    if not bad.any():
        return None
    c, s, q = (int(i) for i in np.argwhere(bad)[0])
    what = [name for name, d in diffs.items() if d[c, s, q]]
    detail = ""
    if "answer" in what:
        detail = f": answer {int(first['answer'][c, s, q])} became {int(mapped[c, s, q])}"
    elif "tokens" in what:
        detail = (f": tokens {int(first['tokens'][c, s, q])} became "
                  f"{int(second['tokens'][c, s, q])}")
    return (f"{int(bad.sum())} of {bad.size} episodes changed ({', '.join(what)} first, in "
            f"config {c}, seed index {s}, question {q}{detail}) when only information that "
            f"no episode had observed was altered (probe answers beyond the depth reached, "
            f"lengths and final answers of branches not read to the end, unopened branches, "
            f"answer ids): the controller reads what it did not pay for")
