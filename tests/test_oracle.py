"""Tests of the pure-Python oracle (``autotts_jax.oracle``) against REFERENCE_SEMANTICS.md.

Unit tests use tiny hand-made questions; the parity tests replay the packed Qwen3-8B aime24
store against the published upstream numbers in ``shared/reference`` (skipped when that
folder, which sits beside the checkout, is absent).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from autotts_jax.oracle import (
    SC,
    ASCMethod,
    ESCMethod,
    OptimalController,
    OracleBranch,
    OracleQuestion,
    Parallel_Probe,
    QuestionView,
    cmc_schedule,
    conf,
    evaluate_oracle,
    majority,
    permutation,
    question_view,
    vote_stats,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"
REFERENCE_CSV = SHARED / "reference" / "aime24_upstream_results.csv"
STORE_8B = REPO / "trajectories" / "Qwen3-8B" / "aime24.h5"

needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"reference figures not available ({SHARED} does not exist)"
)


def view(branches, correct=(0,)) -> QuestionView:
    """A question from ``[(probes, tokens, final), ...]`` in original branch order."""
    return QuestionView(
        probes=tuple(tuple(p) for p, _, _ in branches),
        tokens=tuple(t for _, t, _ in branches),
        finals=tuple(f for _, _, f in branches),
        correct=frozenset(correct),
    )


# -- helpers ------------------------------------------------------------------------------------


def test_permutation_seed0_matches_upstream():
    p = permutation(0, 128)
    assert p[:5] == [48, 43, 108, 72, 29]
    assert sorted(p) == list(range(128))
    assert permutation(1, 128) != p


def test_majority_ties_go_to_earliest_first_occurrence():
    assert majority([]) is None
    assert majority([3, 1, 1, 3]) == 3
    assert majority([1, 3, 3, 1]) == 1
    assert majority([5, 2, 2]) == 2
    assert vote_stats([7, 4, 4, 7, 9]) == (7, 2, 2, 5)
    assert vote_stats([4, 4]) == (4, 2, 0, 2)
    assert vote_stats([]) == (None, 0, 0, 0)


def test_conf_examples():
    assert conf(0, 0) == 0.0 and conf(0, 5) == 0.0
    assert conf(2, 0) == pytest.approx(0.875)
    assert conf(3, 0) == pytest.approx(0.9375)
    assert conf(4, 0) == pytest.approx(0.96875)
    assert conf(6, 1) == pytest.approx(0.9648, abs=1e-4)
    assert conf(7, 2) == pytest.approx(0.9453, abs=1e-4)
    assert conf(9, 3) == pytest.approx(0.9539, abs=1e-4)
    assert conf(7, 7) == 0.5000000000000001  # SciPy's value, not the exact 1/2


def test_asc_stopping_counts_at_095():
    smallest = [next(t1 for t1 in range(1, 40) if conf(t1, t2) > 0.95) for t2 in range(16)]
    assert smallest == [4, 6, 8, 9, 11, 12, 14, 15, 17, 18, 19, 21, 22, 23, 25, 26]


# n_init max_br warm_up abandon T_ema alpha conf_thr delta_slack burst widen trend min_complete
CMC_TABLE = {
    0.0: (2, 4, 2, 3, 2, 0.70, 0.850, 0.040, 1, 1, 0.040, 2),
    0.1: (3, 10, 3, 4, 3, 0.66, 0.862, 0.037, 1, 1, 0.037, 2),
    0.2: (3, 16, 4, 5, 3, 0.62, 0.874, 0.034, 1, 2, 0.034, 3),
    0.3: (4, 22, 4, 6, 4, 0.58, 0.886, 0.031, 2, 2, 0.031, 3),
    0.4: (4, 28, 5, 7, 4, 0.54, 0.898, 0.028, 2, 2, 0.028, 3),
    0.5: (5, 34, 6, 8, 5, 0.50, 0.910, 0.025, 2, 2, 0.025, 4),
    0.6: (6, 40, 7, 8, 6, 0.46, 0.922, 0.022, 2, 3, 0.022, 4),
    0.7: (6, 46, 8, 9, 6, 0.42, 0.934, 0.019, 2, 3, 0.019, 4),
    0.8: (7, 52, 8, 10, 7, 0.38, 0.946, 0.016, 3, 3, 0.016, 4),
    0.9: (7, 58, 9, 11, 7, 0.34, 0.958, 0.013, 3, 4, 0.013, 5),
    1.0: (8, 64, 10, 12, 8, 0.30, 0.970, 0.010, 3, 4, 0.010, 5),
}
CMC_KEYS = ("n_init", "max_branch_use", "warm_up", "abandon_patience", "T_ema", "ema_alpha",
            "conf_thr", "delta_slack", "burst_aligned", "widen_burst", "trend_thr",
            "min_complete")


@pytest.mark.parametrize("beta", sorted(CMC_TABLE))
def test_cmc_schedule_matches_reference_table(beta):
    s = cmc_schedule(beta)
    assert tuple(s[k] for k in CMC_KEYS) == CMC_TABLE[beta]
    for k in CMC_KEYS:
        assert isinstance(s[k], int) == isinstance(CMC_TABLE[beta][CMC_KEYS.index(k)], int)


def test_cmc_schedule_clips_and_defaults():
    assert cmc_schedule(-1.0) == cmc_schedule(0.0) | {"beta": 0.0}
    assert cmc_schedule(7.0)["max_branch_use"] == 64
    assert OptimalController().beta == 0.5
    assert OptimalController(config={}).n_init == 5


# -- environment --------------------------------------------------------------------------------


def test_branch_reference_quirk_recharges_remainder():
    b = OracleBranch([5, 6], tokens=1300, final=7)
    assert b.explore(500) == (5, 500, False)
    assert b.explore(500) == (6, 500, False)
    assert b.explore(500) == (7, 300, True)
    assert b.explore(500) == (7, 300, True)  # not updated: the remainder is charged again
    assert (b.charged, b.pos) == (1000, 2)
    short = OracleBranch([5, 6], tokens=800, final=7)  # 500*L > bt: probing costs max(500L, bt)
    assert [short.explore(500)[1] for _ in range(3)] == [500, 500, 0]


def test_branch_corrected_cost_model():
    b = OracleBranch([5, 6], tokens=1300, final=7, cost_model="corrected")
    assert [b.explore(500)[1] for _ in range(4)] == [500, 500, 300, 0]
    short = OracleBranch([5, 6, 6], tokens=800, final=6, cost_model="corrected")
    assert [short.explore(500)[1] for _ in range(5)] == [500, 300, 0, 0, 0]
    with pytest.raises(ValueError):
        OracleBranch([1], 1, 1, cost_model="other")


def _three_branch_question(**kw) -> OracleQuestion:
    v = view([([10, 0], 900, 0), ([11], 400, 1), ([12, 12, 2], 1700, 2)], correct=(2,))
    return OracleQuestion(v, perm=[2, 0, 1], **kw)


def test_full_read_charges_bt_and_leaves_the_probe_cursor():
    q = _three_branch_question()
    assert q.get_new_branch_final_answer() == 2  # slot 0 = original branch 2
    assert (q.cost, q.cost_per_branch, q.next) == (1700, [1700, 0, 0], 1)
    assert q.probe_more(0) == (12, False)  # probing a fully read slot starts from probe 0
    assert q.cost == 2200
    q.get_new_branch_final_answer()
    q.get_new_branch_final_answer()
    with pytest.raises(IndexError):
        q.get_new_branch_final_answer()
    assert q.cost == 1700 + 500 + 900 + 400


def test_probe_new_and_probe_more_errors_and_off_by_one():
    q = _three_branch_question()
    assert q.probe_new() == (12, 0, False)
    with pytest.raises(ValueError):
        q.probe_more(2)  # i > next
    assert q.probe_more(1) == (10, False)  # i == next is accepted (upstream off by one)
    assert q.cost_per_branch == [500, 500, 0] and q.next == 1
    assert sum(q.get_cost_per_branch_active()) != q.cost  # outside the active prefix
    assert q.probe_new() == (0, 1, False)  # continues the branch probe_more started
    assert q.probe_new() == (11, 2, False)
    assert q.probe_more(2) == (1, True)
    assert q.probe_more(-1) == (1, True)  # negative i indexes from the end
    with pytest.raises(ValueError):
        q.probe_new()
    with pytest.raises(IndexError):
        q.probe_more(3)  # i == n_branches == next
    assert q.get_seq_and_total_tokens()[1] == q.cost == sum(q.cost_per_branch)


def test_rounds_and_sequential_tokens():
    q = _three_branch_question()
    q.new_round()  # empty rounds are not counted
    for _ in range(3):
        q.probe_new()
    q.new_round()
    assert (q.seq_tokens(), q.rounds_used) == (500, 1)
    q.probe_more(0)
    q.probe_more(2)  # finishing call charges 0 (500 * 1 > 400)
    assert q.seq_tokens() == 1000 and q.rounds_used == 2
    q.new_round()
    assert q.get_seq_and_total_tokens() == (1000, 2000)


def test_question_view_from_store_arrays():
    arrays = {
        "probe_answer": np.array([[[0, 1, -1], [1, -1, -1]]], dtype=np.int16),
        "n_probes": np.array([[2, 1]]),
        "branch_tokens": np.array([[1000, 300]]),
        "final_answer": np.array([[1, 1]]),
        "n_branches": np.array([2]),
        "is_correct": np.array([[False, True, False]]),
    }
    v = question_view(arrays, 0)
    assert v == view([([0, 1], 1000, 1), ([1], 300, 1)], correct=(1,))
    q = OracleQuestion(arrays, 0, [1, 0])
    assert q.get_new_branch_final_answer() == 1 and q.cost == 300


# -- controllers --------------------------------------------------------------------------------


def test_asc_esc_sc_small_cases():
    v = view([([a], 100 + a, a) for a in (1, 2, 2, 1, 1, 1, 1)], correct=(1,))
    asc = ASCMethod(max_samples=7)
    q = OracleQuestion(v)
    assert asc.solve(q) == 1 and asc.stop_reason == "max_samples" and asc.rounds == 7
    assert q.seq_tokens() == q.cost  # one read per round
    q = OracleQuestion(v)
    assert ASCMethod(max_samples=10).solve(q) == 1 and q.next == 7
    assert ASCMethod(max_samples=1).solve(OracleQuestion(v)) == 1
    esc = ESCMethod(max_samples=8, window_size=3)
    q = OracleQuestion(v)
    assert esc.solve(q) == 1 and esc.stop_reason == "unanimous_window" and esc.rounds == 2
    assert q.seq_tokens() == 102 + 101
    sc = SC(max_samples=4)
    q = OracleQuestion(v)
    assert sc.solve(q) == 1 and sc.stop_reason == "max_samples" and q.seq_tokens() == 102
    assert SC(max_samples=3).solve(OracleQuestion(v)) == 2
    with pytest.raises(ValueError):
        ESCMethod(max_samples=0)


def test_controllers_on_an_empty_pool():
    q = OracleQuestion(view([]))
    for c in (SC(), ASCMethod(), ESCMethod(), Parallel_Probe(), OptimalController()):
        assert c.solve(q) is None and c.rounds == 0


def test_cost_mismatch_is_detected():
    class ProbesUnopened:
        def solve(self, q):
            q.probe_more(q.next)
            return None

    arrays = {
        "probe_answer": np.array([[[0], [0]]]), "n_probes": np.array([[1, 1]]),
        "branch_tokens": np.array([[600, 600]]), "final_answer": np.array([[0, 0]]),
        "n_branches": np.array([2]), "is_correct": np.array([[True]]),
    }
    with pytest.raises(RuntimeError, match="Token cost mismatch"):
        evaluate_oracle(arrays, 500, ProbesUnopened, seeds=[0])


# -- the real data ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store_8b():
    from autotts_jax.store.hdf5 import read_store_arrays

    arrays, attrs = read_store_arrays(STORE_8B)
    return arrays, int(attrs["probe_freq"])


def test_sc_equals_its_two_upstream_spellings(store_8b):
    arrays, freq = store_8b
    seeds = range(10)
    sc = evaluate_oracle(arrays, freq, lambda: SC(64), seeds=seeds)
    for make in (lambda: ASCMethod(64, threshold=2.0), lambda: ESCMethod(64, 64)):
        other = evaluate_oracle(arrays, freq, make, seeds=seeds)
        assert np.array_equal(other["answer"], sc["answer"])
        assert np.array_equal(other["tokens"], sc["tokens"])


def test_rounds_match_the_environment_and_stop_reasons_are_known(store_8b):
    arrays, freq = store_8b
    cases = [
        (lambda: ASCMethod(16), {"confident", "max_samples"}),
        (lambda: ESCMethod(32, 8), {"unanimous_window", "max_samples"}),
        (lambda: Parallel_Probe(8, T=40, prune_patience=7, warm_up=15), {"stable",
                                                                          "all_resolved"}),
        (lambda: OptimalController({"beta": 0.5}), {"ema_gate", "all_resolved"}),
    ]
    perm = permutation(3, 128)
    for make, reasons in cases:
        c = make()
        for qi in range(0, 30, 3):
            q = OracleQuestion(arrays, qi, perm, probe_freq=freq)
            c.solve(q)
            assert c.stop_reason in reasons
            assert c.rounds == q.rounds_used
            assert 0 < q.seq_tokens() <= q.cost


def test_corrected_cost_model_never_charges_more(store_8b):
    arrays, freq = store_8b
    make = lambda: Parallel_Probe(4, T=40, prune_patience=7, warm_up=15)  # noqa: E731
    ref = evaluate_oracle(arrays, freq, make, seeds=range(5))
    cor = evaluate_oracle(arrays, freq, make, seeds=range(5), cost_model="corrected")
    assert np.array_equal(ref["answer"], cor["answer"])
    assert np.all(cor["tokens"] <= ref["tokens"])


PARITY_ROWS = [
    ("ASCMethod", {"max_samples": 1, "threshold": 0.95}),
    ("ASCMethod", {"max_samples": 4, "threshold": 0.95}),
    ("ESCMethod", {"max_samples": 16, "window_size": 8}),
    ("Parallel_Probe", {"num_chains": 1}),
    ("Parallel_Probe", {"num_chains": 4}),
    ("OptimalController", {"beta": 0.0}),
]
_PP_GRID = {"K": 5, "T": 40, "eps_inter": 5.0, "eps_intra": 5.0, "prune_patience": 7,
            "warm_up": 15, "probe_burst": 1, "max_steps": 100}


def _reference_row(method: str, config: dict) -> dict:
    for row in csv.DictReader(open(REFERENCE_CSV)):
        if (row["model"], row["dataset"], row["method"]) == ("Qwen3-8B", "aime24", method):
            if json.loads(row["config"]) == config:
                return row
    raise LookupError(f"no reference row for {method} {config}")


@needs_shared
@pytest.mark.parametrize(("method", "config"), PARITY_ROWS,
                         ids=[f"{m}-{next(iter(c.values()))}" for m, c in PARITY_ROWS])
def test_parity_with_published_qwen3_8b_aime24(store_8b, method, config):
    arrays, freq = store_8b
    if method == "Parallel_Probe":
        config = _PP_GRID | config
    ref = _reference_row(method, config)
    cls = {"ASCMethod": ASCMethod, "ESCMethod": ESCMethod, "Parallel_Probe": Parallel_Probe}
    if method == "OptimalController":
        res = evaluate_oracle(arrays, freq, lambda: OptimalController(config=config))
    else:
        res = evaluate_oracle(arrays, freq, lambda: cls[method](**config))
    assert res["n_episodes"] == 3000
    assert res["acc"] == float(ref["acc"])
    assert abs(res["avg_cost_int"] - int(ref["avg_cost"])) <= 1
