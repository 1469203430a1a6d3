"""The upstream AutoTTS replay environment, re-written imperatively over the packed store.

This is the *test oracle*: a deliberately plain, one-episode-at-a-time Python copy of the
environment described in ``REFERENCE_SEMANTICS.md`` §1.2-1.4 (``Branch`` / ``Question`` in the
upstream ``data_loader.py``).  The JAX engine is checked against it episode by episode, and it
is checked against the published numbers, so it keeps every upstream quirk that can change a
number:

* a branch that has run out of probes is not updated by ``explore``, so each repeat call charges
  the remainder ``max(0, bt - freq*L)`` again (reference cost model);
* a full read (``get_new_branch_final_answer``) charges exactly ``bt`` and does not move the
  branch's probe cursor;
* ``probe_more(i)`` accepts ``i == next`` (the not yet opened slot), the upstream off-by-one;
* the three calls raise different errors past the end (IndexError / ValueError).

Answers are the store's interned integer ids instead of strings (equality is all that matters
upstream, and ids are equal iff the strings are).  ``None`` still means "no answer".

Sequential tokens are our addition (upstream reports 0): the controller marks round boundaries
with :meth:`OracleQuestion.new_round`; a round costs the largest charge any single slot received
in it, and the episode's sequential cost is the sum over rounds.  This models branches of one
round running in parallel and rounds running one after another.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

COST_MODELS = ("reference", "corrected")


def permutation(seed: int, n: int) -> list[int]:
    """The upstream shuffle of ``n`` branches for ``seed`` (CPython Mersenne Twister).

    Upstream shuffles the branch list of every question with a fresh ``random.Random(seed)``,
    so slot ``j`` of an episode holds original branch ``permutation(seed, n)[j]``, and all
    questions with the same branch count share the permutation.  A JAX PRNG cannot reproduce
    this; the engine must use these precomputed permutations.
    """
    p = list(range(n))
    random.Random(seed).shuffle(p)
    return p


@dataclass(frozen=True)
class QuestionView:
    """One question's branches as plain Python values (fast to index from pure Python).

    ``probes[b]`` are the answer ids after each probe interval of branch ``b`` (original file
    order), ``tokens[b]`` its total tokens, ``finals[b]`` its final answer id, and
    ``correct`` the set of answer ids equal to the gold answer.
    """

    probes: tuple[tuple[int, ...], ...]
    tokens: tuple[int, ...]
    finals: tuple[int, ...]
    correct: frozenset[int]

    @property
    def n_branches(self) -> int:
        return len(self.tokens)

    def is_correct(self, answer: int | None) -> bool:
        """Upstream compares the answer string with the gold string; ``None`` never matches."""
        return answer is not None and answer in self.correct


def _field(arrays, name: str) -> np.ndarray:
    if isinstance(arrays, Mapping):
        return np.asarray(arrays[name])
    return np.asarray(getattr(arrays, name))


def n_questions(arrays) -> int:
    """Number of questions in store arrays (a dict or an object with array attributes)."""
    return len(_field(arrays, "n_branches"))


def question_view(arrays, q_index: int) -> QuestionView:
    """Extract question ``q_index`` from store arrays.

    ``arrays`` is the dict returned by :func:`autotts_jax.store.hdf5.read_store_arrays` or any
    object with the same fields as attributes (e.g. :class:`autotts_jax.store.ReplayData`, whose
    extra padding is cut off here using ``n_branches`` and ``n_probes``).
    """
    n_b = int(_field(arrays, "n_branches")[q_index])
    n_probes = _field(arrays, "n_probes")[q_index, :n_b]
    probe_answer = _field(arrays, "probe_answer")[q_index, :n_b]
    probes = tuple(
        tuple(int(a) for a in probe_answer[b, : int(n_probes[b])]) for b in range(n_b)
    )
    tokens = tuple(int(t) for t in _field(arrays, "branch_tokens")[q_index, :n_b])
    finals = tuple(int(f) for f in _field(arrays, "final_answer")[q_index, :n_b])
    correct = frozenset(int(v) for v in np.flatnonzero(_field(arrays, "is_correct")[q_index]))
    return QuestionView(probes, tokens, finals, correct)


class RoundRow(NamedTuple):
    """The episode after one round, in quantities the engine's trace also records."""

    tokens: int  # tokens charged so far
    opened: int  # slots handed out so far (``next``)
    ended: int  # slots read in full or explored to their end
    seq_tokens: int  # sequential tokens so far


class OracleBranch:
    """One trajectory, explored ``freq`` tokens at a time (upstream ``Branch``).

    ``charged`` is the branch's own running cost and ``pos`` its probe cursor.  Both only move
    while probes remain; see :meth:`explore` for what happens after that.
    """

    def __init__(
        self,
        probes: Sequence[int],
        tokens: int,
        final: int,
        cost_model: str = "reference",
    ) -> None:
        if cost_model not in COST_MODELS:
            raise ValueError(f"cost_model must be one of {COST_MODELS}, got {cost_model!r}")
        self.probes = probes
        self.tokens = int(tokens)
        self.final = final
        self.cost_model = cost_model
        self.charged = 0
        self.pos = 0

    def explore(self, freq: int = 500) -> tuple[int, int, bool]:
        """Advance one probe interval; return ``(answer, charge, finished)``.

        Reference model (upstream): while probes remain, return the next probe answer and charge
        ``freq``.  Once they are exhausted, return the final answer with charge
        ``max(0, bt - charged)`` and ``finished=True`` *without updating the branch*, so every
        later call charges that remainder again.  Driving a branch to its end therefore costs
        ``max(freq*L, bt)``, which can exceed the ``bt`` of a full read.

        Corrected model: the cumulative charge after ``d`` probes is ``min(freq*d, bt)``, the
        finishing call brings it to exactly ``bt``, and re-probing a finished branch is free.
        """
        if self.pos < len(self.probes):
            answer = self.probes[self.pos]
            self.pos += 1
            if self.cost_model == "reference":
                charge = freq
            else:
                charge = min(freq * self.pos, self.tokens) - self.charged
            self.charged += charge
            return answer, charge, False
        if self.cost_model == "reference":
            # The quirk: neither ``charged`` nor ``pos`` changes here.
            return self.final, max(0, self.tokens - self.charged), True
        charge = self.tokens - self.charged
        self.charged = self.tokens
        return self.final, charge, True


class OracleQuestion:
    """One episode: one question's branches in the shuffled order of one seed (``Question``).

    ``perm[j]`` is the original branch in slot ``j``.  ``next`` counts the slots handed out so
    far (by full reads or ``probe_new``); ``cost`` and ``cost_per_branch`` (indexed by slot)
    accumulate every charge.
    """

    def __init__(
        self,
        arrays_or_question_view,
        q_index: int | None = None,
        perm: Sequence[int] | None = None,
        *,
        probe_freq: int = 500,
        cost_model: str = "reference",
    ) -> None:
        if cost_model not in COST_MODELS:
            raise ValueError(f"cost_model must be one of {COST_MODELS}, got {cost_model!r}")
        if isinstance(arrays_or_question_view, QuestionView):
            view = arrays_or_question_view
        else:
            if q_index is None:
                raise ValueError("q_index is required when passing store arrays")
            view = question_view(arrays_or_question_view, q_index)
        n = view.n_branches
        perm = list(range(n)) if perm is None else [int(p) for p in perm]
        if sorted(perm) != list(range(n)):
            raise ValueError(f"perm must be a permutation of range({n})")
        self.view = view
        self.perm = perm
        self.probe_freq = int(probe_freq)
        self.cost_model = cost_model
        self.n_branches = n
        self.cost = 0
        self.cost_per_branch = [0] * n
        self.next = 0
        # Branch objects are created when a slot is first touched (most episodes touch few).
        self._branches: list[OracleBranch | None] = [None] * n
        # Round bookkeeping for sequential tokens (our addition).
        self._round_charge: dict[int, int] = {}
        self._round_active = False
        self._closed_seq = 0
        self._closed_rounds = 0
        self._ended: set[int] = set()  # slots read in full or explored to their end
        self._rows: list[RoundRow] = []

    # -- internals -------------------------------------------------------------------------

    def _branch(self, slot: int) -> OracleBranch:
        b = self._branches[slot]
        if b is None:
            o = self.perm[slot]
            b = OracleBranch(
                self.view.probes[o], self.view.tokens[o], self.view.finals[o], self.cost_model
            )
            self._branches[slot] = b
        return b

    def _charge(self, slot: int, charge: int) -> None:
        self.cost += charge
        self.cost_per_branch[slot] += charge
        self._round_charge[slot] = self._round_charge.get(slot, 0) + charge
        self._round_active = True

    # -- upstream API ----------------------------------------------------------------------

    def get_new_branch_final_answer(self) -> int:
        """Full read of the next slot: charge exactly ``bt``; the probe cursor is untouched.

        Raises IndexError (not ValueError, unlike the probing calls) past the last branch.
        """
        if self.next >= self.n_branches:
            raise IndexError("no more branches")
        slot = self.next
        o = self.perm[slot]
        self.next += 1
        self._charge(slot, self.view.tokens[o])
        self._ended.add(slot)
        return self.view.finals[o]

    def probe_new(self) -> tuple[int, int, bool]:
        """Open the next slot by one probe interval; return ``(answer, slot, finished)``."""
        if self.next >= self.n_branches:
            raise ValueError("no more branches")
        slot = self.next
        answer, charge, finished = self._branch(slot).explore(self.probe_freq)
        self._charge(slot, charge)
        self.next += 1
        if finished:
            self._ended.add(slot)
        return answer, slot, finished

    def probe_more(self, i: int) -> tuple[int, bool]:
        """Advance slot ``i`` by one interval; return ``(answer, finished)``.

        Upstream checks ``i <= next`` (off by one: the unopened slot ``next`` is accepted and
        its charge lands outside the active prefix, which the evaluator later reports as a
        cost mismatch).  ``i > next`` is a ValueError; ``i == n_branches`` an IndexError from
        list indexing; a negative ``i`` indexes from the end, as a Python list would.
        """
        if i > self.next:
            raise ValueError(f"branch {i} has not been opened (next is {self.next})")
        slot = range(self.n_branches)[i]  # IndexError exactly where list indexing raises
        answer, charge, finished = self._branch(slot).explore(self.probe_freq)
        self._charge(slot, charge)
        if finished:
            self._ended.add(slot)
        return answer, finished

    def get_seq_and_total_tokens(self) -> tuple[int, int]:
        """``(sequential, total)`` tokens.  Upstream's sequential value is a constant 0; ours is
        :meth:`seq_tokens`.  The total is the sum over the active prefix, as upstream."""
        return self.seq_tokens(), sum(self.cost_per_branch[: self.next])

    def get_cost_per_branch_active(self) -> list[int]:
        return self.cost_per_branch[: self.next]

    # -- rounds (our addition) -------------------------------------------------------------

    def new_round(self) -> None:
        """Close the current round.  A round in which no call was made is not counted."""
        if self._round_active:
            self._closed_seq += max(self._round_charge.values(), default=0)
            self._closed_rounds += 1
            self._rows.append(self._row(self._closed_seq))
        self._round_charge = {}
        self._round_active = False

    def _row(self, seq_tokens: int) -> RoundRow:
        return RoundRow(tokens=self.cost, opened=self.next, ended=len(self._ended),
                        seq_tokens=seq_tokens)

    def round_rows(self) -> list[RoundRow]:
        """The episode round by round: the state after each round in which a call was made
        (the open one included), for lockstep comparisons with the engine's trace."""
        if not self._round_active:
            return list(self._rows)
        return [*self._rows, self._row(self.seq_tokens())]

    def seq_tokens(self) -> int:
        """Sum over rounds (the open one included) of the largest per-slot charge in it."""
        return self._closed_seq + max(self._round_charge.values(), default=0)

    def seq_tokens_max_branch(self, window: int | None = None) -> int:
        """SCOUT's sequential tokens: the largest per-slot total of the opened slots; with
        ``window``, the opened slots are cut into consecutive windows of that many and the
        window maxima are summed (SCOUT's ESC).  SCOUT asserts that the windows are full; a
        short last window (branches ran out) counts as a window here."""
        active = self.cost_per_branch[: self.next]
        w = max(1, len(active) if window is None else int(window))  # no slot opened: 0
        return sum(max(active[i : i + w]) for i in range(0, len(active), w))

    @property
    def rounds_used(self) -> int:
        """Rounds in which at least one environment call was made (the open one included)."""
        return self._closed_rounds + int(self._round_active)
