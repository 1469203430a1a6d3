"""Unit tests of the pure effects of ``autotts_jax.engine.env`` on a tiny hand-made store.

Every expected number below is worked out by hand in the comments, from the rules of
REFERENCE_SEMANTICS.md §1.2-1.4 (reference cost model) and the corrected model (a branch never
costs more than its tokens ``bt``), never by calling the code under test.

The store (probe interval f = 100), in original branch order, and the slot order used by
every test (``PERM``: slot j holds branch PERM[j]):

=======  ==============  =====  =====  =========================================  ======
branch   probes          bt     final  note                                        slot
=======  ==============  =====  =====  =========================================  ======
b0       [1, 2]          350    2      bt > f*L = 200: remainder 150               1
b1       [3, 3, 1]       60     1      bt < f: corrected probing is capped at 60   3
b2       [0]             100    0      bt == f*L: remainder 0                      0
b3       [2, 0, 0, 0]    380    4      final 4 never probed; bt < f*L = 400        2
=======  ==============  =====  =====  =========================================  ======

Six slots: slots 4 and 5 hold no branch (the question has only four).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import autotts_jax.engine  # noqa: F401  (float64 mode, as everywhere in the engine)
from autotts_jax.engine import env as E
from autotts_jax.store.load import from_arrays

F = 100
S = 6
POOL = 8
PERM = np.array([2, 0, 3, 1, -1, -1], np.int32)
NOTHING = -1

full_read = jax.jit(E.full_read)
probe_new = jax.jit(E.probe_new, static_argnames="cost_model")
advance = jax.jit(E.advance, static_argnames="cost_model")
probe_more = jax.jit(E.probe_more, static_argnames="cost_model")
prune = jax.jit(E.prune)
stop = jax.jit(E.stop)


def _store():
    probes = [[1, 2], [3, 3, 1], [0], [2, 0, 0, 0]]
    probe_answer = np.full((1, 4, 4), -1, np.int32)
    for b, p in enumerate(probes):
        probe_answer[0, b, : len(p)] = p
    arrays = {
        "probe_answer": probe_answer,
        "n_probes": np.array([[2, 3, 1, 4]], np.int32),
        "branch_tokens": np.array([[350, 60, 100, 380]], np.int32),
        "final_answer": np.array([[2, 1, 0, 4]], np.int32),
        "n_branches": np.array([4], np.int32),
        "is_correct": np.array([[False, False, True, False, False]]),
    }
    return from_arrays(arrays, F, min_branches=8, min_depth=8, min_vocab=8)


DATA = _store()


def fresh() -> E.EnvState:
    return E.reset(DATA, np.int32(0), PERM, POOL)


def mask(*slots) -> np.ndarray:
    m = np.zeros(S, bool)
    m[list(slots)] = True
    return m


def vec(values) -> list[int]:
    return [int(v) for v in np.asarray(values)]


# -- reset ------------------------------------------------------------------------------------


def test_reset_lays_out_the_slots():
    env = fresh()
    assert vec(env.branch) == [2, 0, 3, 1, -1, -1]
    assert int(env.n_avail) == 4
    assert vec(env.n_probes) == [1, 2, 4, 3, 0, 0]
    assert vec(env.tokens) == [100, 350, 380, 60, 0, 0]
    assert vec(env.final) == [0, 2, 4, 1, -1, -1]
    assert int(env.opened) == 0 and int(env.total_tokens) == 0
    assert vec(env.latest) == [NOTHING] * S
    assert int(env.pool_size) == 0 and not bool(env.done) and int(env.answer) == NOTHING


# -- full_read --------------------------------------------------------------------------------


def test_full_read_charges_bt_and_pools_in_slot_order():
    env = full_read(fresh(), np.int32(2))  # slots 0, 1 = b2 (bt 100, final 0), b0 (350, 2)
    assert int(env.opened) == 2
    assert vec(env.cost) == [100, 350, 0, 0, 0, 0]
    assert vec(env.read) == [1, 1, 0, 0, 0, 0]
    assert vec(env.latest) == [0, 2, NOTHING, NOTHING, NOTHING, NOTHING]
    assert vec(env.depth) == [0] * S  # the explore cursor is not touched
    assert not np.asarray(env.finished).any()
    assert vec(env.pool_count[:5]) == [1, 0, 1, 0, 0] and int(env.pool_size) == 2
    assert int(env.pool_first[0]) < int(env.pool_first[2])  # read first, enters first
    assert vec(env.alive) == [0] * S  # read slots are not alive


def test_full_read_past_the_last_branch_is_dropped():
    env = full_read(fresh(), np.int32(10))  # only 4 branches: slots 0..3
    assert int(env.opened) == 4
    assert int(env.total_tokens) == 100 + 350 + 380 + 60  # 890
    assert vec(env.pool_count[:5]) == [1, 1, 1, 0, 1] and int(env.pool_size) == 4
    again = full_read(env, np.int32(1))  # upstream: IndexError -> None, nothing charged
    assert int(again.opened) == 4 and int(again.total_tokens) == 890
    assert int(again.pool_size) == 4
    for n in (0, -3):
        same = full_read(fresh(), np.int32(n))
        assert int(same.opened) == 0 and int(same.total_tokens) == 0


# -- probe_new --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cost_model, charges",
    [
        ("reference", [100, 100, 100, 100]),  # f per opening probe
        ("corrected", [100, 100, 100, 60]),  # min(f, bt): b1 has only 60 tokens
    ],
)
def test_probe_new_opens_by_one_interval(cost_model, charges):
    env = probe_new(fresh(), DATA, np.int32(4), cost_model=cost_model)
    assert int(env.opened) == 4
    assert vec(env.depth) == [1, 1, 1, 1, 0, 0]
    assert vec(env.cost) == charges + [0, 0]
    assert vec(env.latest) == [0, 1, 2, 3, NOTHING, NOTHING]  # probe 0 of b2, b0, b3, b1
    assert not np.asarray(env.finished).any()  # L >= 1: the first call never finishes
    assert int(env.pool_size) == 0
    assert vec(env.alive) == [1, 1, 1, 1, 0, 0]
    more = probe_new(env, DATA, np.int32(3), cost_model=cost_model)  # nothing left to open
    assert int(more.opened) == 4 and int(more.total_tokens) == sum(charges)


# -- advance ----------------------------------------------------------------------------------


def _opened(cost_model):
    return probe_new(fresh(), DATA, np.int32(4), cost_model=cost_model)


@pytest.mark.parametrize(
    "cost_model, charges",
    [
        # slot 0, b2 (L 1, depth 1): 3 calls -> only the finishing call: max(0, 100-100) = 0
        # slot 1, b0 (L 2): 1 call -> probe 2: f = 100
        # slot 2, b3 (L 4): 2 calls -> probes 2, 3: 2f = 200
        # slot 3, b1 (L 3, bt 60): 5 calls -> probes 2, 3, then finishing: 2f + max(0, 60-300)
        ("reference", [0, 100, 200, 200]),
        # corrected: cumulative min(f*d, bt); finishing brings the slot to exactly bt
        # slot 0: 100 - min(100, 100) = 0; slot 1: min(200, 350) - 100 = 100;
        # slot 2: min(300, 380) - 100 = 200; slot 3: 60 - min(100, 60) = 0
        ("corrected", [0, 100, 200, 0]),
    ],
)
def test_advance_bursts_stop_at_the_finishing_call(cost_model, charges):
    env = _opened(cost_model)
    before = vec(env.cost)
    env, made = advance(env, DATA, np.array([3, 1, 2, 5, 0, 0], np.int32), cost_model=cost_model)
    assert vec(made) == [1, 1, 2, 3, 0, 0]  # calls actually made: finishing call included
    assert [a - b for a, b in zip(vec(env.cost), before, strict=True)] == charges + [0, 0]
    assert vec(env.depth) == [1, 2, 3, 3, 0, 0]  # the finishing call does not move the cursor
    assert vec(env.finished) == [1, 0, 0, 1, 0, 0]
    # finished slots show their final answer, the others their latest probe
    assert vec(env.latest) == [0, 2, 0, 1, NOTHING, NOTHING]
    # completions (slot 0: answer 0, slot 3: answer 1) enter the pool in slot order
    assert vec(env.pool_count[:5]) == [1, 1, 0, 0, 0] and int(env.pool_size) == 2
    assert int(env.pool_first[0]) < int(env.pool_first[1])
    assert vec(env.alive) == [0, 1, 1, 0, 0, 0]


def test_advance_order_decides_the_completion_order():
    env = _opened("reference")
    calls = np.array([1, 0, 0, 3, 0, 0], np.int32)  # slots 0 and 3 both finish
    order = np.array([5, 1, 2, 0, 4, 3], np.int32)  # slot 3 before slot 0
    env, _ = advance(env, DATA, calls, order, cost_model="reference")
    assert int(env.pool_first[1]) < int(env.pool_first[0])  # answer 1 (slot 3) came first
    env2, _ = advance(_opened("reference"), DATA, calls, cost_model="reference")
    assert int(env2.pool_first[0]) < int(env2.pool_first[1])  # default: slot order


@pytest.mark.parametrize(
    "cost_model, total",
    [
        # a whole branch probed to the end costs max(f*L, bt) in the reference model:
        # b2 max(100, 100) + b0 max(200, 350) + b3 max(400, 380) + b1 max(300, 60) = 1150
        ("reference", 1150),
        # ... and exactly bt in the corrected model: 100 + 350 + 380 + 60 = 890
        ("corrected", 890),
    ],
)
def test_driving_every_branch_to_the_end(cost_model, total):
    env = _opened(cost_model)
    env, made = advance(env, DATA, np.full(S, 99, np.int32), cost_model=cost_model)
    assert vec(made) == [1, 2, 4, 3, 0, 0]  # L - 1 more probes + the finishing call
    assert vec(env.finished) == [1, 1, 1, 1, 0, 0]
    assert vec(env.latest) == [0, 2, 4, 1, NOTHING, NOTHING]  # the final answers
    assert int(env.total_tokens) == total
    assert int(env.pool_size) == 4
    # finished slots make no further call, in either model
    again, made = advance(env, DATA, np.full(S, 5, np.int32), cost_model=cost_model)
    assert vec(made) == [0] * S and int(again.total_tokens) == total


def test_advance_skips_read_pruned_and_unopened_slots():
    env = full_read(fresh(), np.int32(1))  # slot 0 read in full (100)
    env = probe_new(env, DATA, np.int32(2))  # slots 1, 2 opened (100 each)
    env = prune(env, mask(2))
    env, made = advance(env, DATA, np.full(S, 1, np.int32))
    assert vec(made) == [0, 1, 0, 0, 0, 0]  # only slot 1 is open, unread and unpruned
    assert vec(env.cost) == [100, 200, 100, 0, 0, 0]
    assert vec(env.depth) == [0, 2, 1, 0, 0, 0]


# -- probe_more -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cost_model, recharge",
    [
        ("reference", [0, 150]),  # QUIRK 1: max(0, bt - f*L) again: b2 0, b0 350 - 200
        ("corrected", [0, 0]),  # re-probing a finished branch is free
    ],
)
def test_probe_more_on_finished_branches_recharges_the_remainder(cost_model, recharge):
    env = _opened(cost_model)
    env, _ = advance(env, DATA, np.array([1, 2, 0, 0, 0, 0], np.int32), cost_model=cost_model)
    assert vec(env.finished)[:2] == [1, 1]  # slots 0 (b2) and 1 (b0) are finished
    cost = vec(env.cost)
    assert cost[:2] == [100, 350]  # probed to the end: max(f*L, bt) = bt for both here
    pool = vec(env.pool_count)
    for n in (1, 2):  # every repeat charges again
        env = probe_more(env, DATA, mask(0, 1), cost_model=cost_model)
        assert vec(env.cost)[:2] == [cost[0] + n * recharge[0], cost[1] + n * recharge[1]]
        assert vec(env.latest)[:2] == [0, 2]  # the final answer again
        assert vec(env.finished)[:2] == [1, 1]
        assert vec(env.pool_count) == pool  # no second vote


def test_probe_more_advances_unfinished_branches_by_one():
    env = _opened("reference")  # every slot at depth 1
    env = probe_more(env, DATA, mask(1, 2, 3))
    # b0 -> probe 2 (answer 2), b3 -> probe 2 (answer 0), b1 -> probe 2 (answer 3)
    assert vec(env.depth) == [1, 2, 2, 2, 0, 0]
    assert vec(env.cost) == [100, 200, 200, 200, 0, 0]
    assert vec(env.latest)[:4] == [0, 2, 0, 3]
    env = probe_more(env, DATA, mask(1))  # b0 exhausted: the finishing call, remainder 150
    assert bool(env.finished[1]) and int(env.cost[1]) == 350 and int(env.latest[1]) == 2
    assert vec(env.pool_count[:3]) == [0, 0, 1]


def test_probe_more_ignores_read_and_unopened_slots():
    # Deliberate deviations from upstream, which no published controller relies on:
    # upstream's probe_more on a fully read slot restarts its probes from 0 (and charges
    # again), and probe_more(next) probes the not-yet-opened slot (the off-by-one).
    env = full_read(fresh(), np.int32(1))
    env = probe_more(env, DATA, mask(0, 1, 4))
    assert vec(env.cost) == [100, 0, 0, 0, 0, 0]
    assert vec(env.depth) == [0] * S and int(env.opened) == 1


# -- prune and stop ---------------------------------------------------------------------------


def test_prune_keeps_the_cost_and_only_marks_open_slots():
    env = _opened("reference")
    env = prune(env, mask(1, 5))  # slot 5 is not open
    assert vec(env.pruned) == [0, 1, 0, 0, 0, 0]
    assert int(env.total_tokens) == 400  # pruned slots keep what they were charged
    assert vec(env.alive) == [1, 0, 1, 1, 0, 0]
    env = probe_more(env, DATA, mask(1))  # a pruned slot is never advanced again
    assert int(env.depth[1]) == 1 and int(env.total_tokens) == 400


def test_stop_first_call_wins():
    env = fresh()
    env = stop(env, np.int32(3), 1, False)  # when=False: no effect
    assert not bool(env.done) and int(env.answer) == NOTHING and int(env.stop_reason) == 0
    env = stop(env, np.int32(2), 2, True)
    assert bool(env.done) and int(env.answer) == 2 and int(env.stop_reason) == 2
    env = stop(env, np.int32(4), 3, True)  # already done: the first stop stands
    assert int(env.answer) == 2 and int(env.stop_reason) == 2
    env = stop(fresh(), np.int32(NOTHING), 1)  # no answer is a valid answer
    assert bool(env.done) and int(env.answer) == NOTHING and int(env.stop_reason) == 1
