"""``votes.vote`` against ``collections.Counter`` (upstream's tie-breaking), on random lists.

Both counting paths are covered: pairwise equality (up to 32 slots) and the scatter into the
vocabulary (beyond).  The expected values come from ``Counter.most_common`` on the masked list
in slot order, never from the code under test.
"""

from __future__ import annotations

from collections import Counter

import jax
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import autotts_jax.engine  # noqa: F401  (float64 mode, as everywhere in the engine)
from autotts_jax.engine.votes import _PAIRWISE_MAX_SLOTS, vote

VOCAB = 16
_vote = jax.jit(vote, static_argnames="vocab")


def _expected(answers: list[int], mask: list[bool]) -> tuple[int, int, int]:
    picked = [a for a, m in zip(answers, mask, strict=True) if m]
    if not picked:
        return -1, 0, 0
    ranked = Counter(picked).most_common()  # ties: first occurrence first
    return ranked[0][0], ranked[0][1], ranked[1][1] if len(ranked) > 1 else 0


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([4, 8, _PAIRWISE_MAX_SLOTS, 64]).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 5), min_size=n, max_size=n),  # few ids: many ties
        st.lists(st.booleans(), min_size=n, max_size=n),
    )))
def test_vote_matches_counter_most_common(case):
    answers, mask = case
    got = _vote(np.asarray(answers, np.int32), np.asarray(mask), vocab=VOCAB)
    assert tuple(int(x) for x in got) == _expected(answers, mask)


def test_both_counting_paths_are_exercised():
    assert 4 <= _PAIRWISE_MAX_SLOTS < 64
