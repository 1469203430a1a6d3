"""SCOUT's solver + strategy combinations: the JAX controllers they map onto against the
pure-Python SCOUT oracle (``autotts_jax.oracle.scout``), episode by episode.

The property tests draw random synthetic stores (1-4 questions with 1-12 branches, probe lists
of 1-10 answers over a tiny alphabet so that streaks, ties and disagreement are all common,
branch tokens on both sides of ``freq * L``, final answers that may differ from the last
probe) and random SCOUT configs ``{"solver": {...}, "strategy": {...}}`` (arguments may be
missing, so SCOUT's defaults are used).  Each config is mapped onto a controller with
:func:`autotts_jax.controllers.scout.scout_controller` -- the mapping ``autotts-jax parity``
uses -- and the engine must agree with the oracle on every (config, seed, question) episode:
answer, correctness, total tokens and both sequential accountings (the engine's critical path
and SCOUT's per-branch ``max_branch``), plus the stop reason for the SCOUT-specific
controllers.

SCOUT's Burst controller (= ``parallel_probe``) gives no answer when the branches run out at
initialisation while AutoTTS's ``Parallel_Probe`` continues with fewer chains; its examples
therefore keep ``num_chains`` at most the number of branches of every question.

Shapes are fixed across examples (4 questions, 16 branches x 16 probes x 64 ids, 16 slots, a
pool of 64, 4 configs, seeds 0-2), so each (controller, cost model) compiles once.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from registry import value_strategy

import autotts_jax.engine  # noqa: F401  (enables float64)
from autotts_jax.controllers import get_controller
from autotts_jax.controllers.scout import COMBINATIONS, scout_controller
from autotts_jax.engine.simulate import permutation, simulate
from autotts_jax.oracle import OracleQuestion, evaluate_oracle
from autotts_jax.oracle.scout import make_solver
from autotts_jax.store.hdf5 import pack_arrays
from autotts_jax.store.load import from_arrays
from autotts_jax.store.upstream import Branch, QuestionRecord, UpstreamFile

N_QUESTIONS = 4
MAX_BRANCHES = 12
MAX_PROBES = 10
SLOTS = 16
POOL = 64
PAD = {"min_branches": 16, "min_depth": 16, "min_vocab": 64}
SEEDS = (0, 1, 2)
N_CONFIGS = 4
PROBES = "abc"
FINALS = "abcx"
GOLDS = "abz"

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- synthetic stores ---------------------------------------------------------------------------


@st.composite
def branch_st(draw, freq: int) -> Branch:
    n = draw(st.integers(1, MAX_PROBES))
    # runs of equal answers, so that convergence streaks happen
    probes: list[str] = []
    while len(probes) < n:
        probes += [draw(st.sampled_from(PROBES))] * draw(st.integers(1, 4))
    probes = probes[:n]
    final = draw(st.one_of(st.just(probes[-1]), st.sampled_from(FINALS)))
    noise = draw(st.one_of(st.integers(-2 * freq, 2 * freq), st.just(0)))
    return Branch(tuple(probes), max(0, freq * n + noise), final)


@st.composite
def store_st(draw, min_branches: int = 1) -> UpstreamFile:
    freq = draw(st.sampled_from([5, 100, 500]))
    questions = []
    for i in range(draw(st.integers(1, N_QUESTIONS))):
        n_b = draw(st.integers(min_branches, MAX_BRANCHES))
        branches = tuple(draw(branch_st(freq)) for _ in range(n_b))
        questions.append(QuestionRecord(f"q{i}", draw(st.sampled_from(GOLDS)), freq, (), branches))
    return UpstreamFile(path="synthetic", sha256="", probe_freq=freq, questions=tuple(questions))


def store_arrays(src: UpstreamFile) -> dict[str, np.ndarray]:
    """Packed arrays, padded to ``N_QUESTIONS`` questions with copies of question 0."""
    arrays = pack_arrays(src)
    fill = [0] * (N_QUESTIONS - len(src.questions))
    if fill:
        for key in ("probe_answer", "n_probes", "branch_tokens", "final_answer", "n_branches",
                    "is_correct"):
            arrays[key] = np.concatenate([arrays[key], arrays[key][fill]])
    return arrays


# -- SCOUT configs --------------------------------------------------------------------------------

CONVERGENCE_ST = st.fixed_dictionaries({}, optional={
    "n": st.integers(1, 5), "warmup_steps": st.integers(0, 3), "probe_burst": st.integers(1, 3),
})
BY_NAME = {name: key for key, (name, _) in COMBINATIONS.items()}
# SCOUT's Burst controller gives no answer when the branches run out at initialisation (the
# one difference to AutoTTS's Parallel_Probe, see autotts_jax.controllers.scout): its stores
# have at least this many branches and its configs open at most as many chains.
BURST = "ParallelESTPruningBurstMajorityOnActiveBranches"
BURST_CHAINS = 8


def nested(solver, strategy):
    return st.fixed_dictionaries({"solver": solver, "strategy": strategy})


def scout_configs(solver: str, strategy: str) -> st.SearchStrategy:
    """SCOUT configs ``{"solver": {...}, "strategy": {...}}`` of one combination, drawn from
    the controller's config space under SCOUT's argument names; every argument may be missing
    (SCOUT's or the controller's default applies)."""
    name, keys = COMBINATIONS[(solver, strategy)]
    space = get_controller(name).config_space
    parts: dict[str, dict] = {"solver": {}, "strategy": {}}
    for key, path in keys.items():
        part, arg = path.split(".")
        if key in space:
            parts[part][arg] = value_strategy(space[key])
    required = {}
    if strategy == BURST:
        required["num_chains"] = st.integers(1, BURST_CHAINS)
        parts["strategy"].pop("num_chains")
    configs = nested(st.fixed_dictionaries({}, optional=parts["solver"]),
                     st.fixed_dictionaries(required, optional=parts["strategy"]))
    return configs.filter(lambda config: scout_accepts(solver, strategy, config))


def scout_accepts(solver: str, strategy: str, config) -> bool:
    """Whether SCOUT's constructors take ``config`` (Burst rejects ``probe_burst`` 0, which
    the controller accepts)."""
    try:
        make_solver(solver, strategy, config)
    except ValueError:
        return False
    return True


def compare(name, arrays, freq, configs, cost_model, n_q, seeds=SEEDS):
    """Assert engine == SCOUT oracle for every (config, seed, question) episode."""
    solver, strategy = BY_NAME[name]
    mapped = [scout_controller(solver, strategy, c) for c in configs]
    assert {c.name for c, _ in mapped} == {name}
    eps = simulate(
        get_controller(name), from_arrays(arrays, freq, **PAD), [m for _, m in mapped], seeds,
        cost_model=cost_model, slots=SLOTS, pool_size=POOL,
    )
    for c, config in enumerate(configs):
        ref = evaluate_oracle(
            arrays, freq, lambda config=config: make_solver(solver, strategy, config), seeds,
            range(n_q), cost_model=cost_model,
        )
        got = {
            "answer": eps.answer[c, :, :n_q],
            "correct": eps.correct[c, :, :n_q],
            "tokens": eps.tokens[c, :, :n_q],
            "seq_tokens": eps.seq("critical_path")[c, :, :n_q],
            "seq_tokens_max_branch": eps.seq("max_branch")[c, :, :n_q],
        }
        if strategy != "FullReadStrategy":  # SCOUT's own SC / ASC / ESC loops name stops apart
            got["stop_reason"] = np.asarray(eps.stop_reasons, dtype=object)[
                eps.stop_reason[c, :, :n_q]]
        for field, value in got.items():
            bad = np.argwhere(np.asarray(value != ref[field]))
            if bad.size:
                s, q = bad[0]
                raise AssertionError(
                    f"{name} {config} ({cost_model}): {field} differs at seed {seeds[s]}, "
                    f"question {q}: engine {value[s, q]!r}, oracle {ref[field][s, q]!r}\n"
                    "engine: " + ", ".join(f"{k}={v[s, q]!r}" for k, v in got.items())
                    + "\noracle: " + ", ".join(f"{k}={ref[k][s, q]!r}" for k in got)
                )
    return eps


# The corrected cost model of the SCOUT-only controllers is covered by the engine-vs-oracle
# tests (their registry twins are SCOUT's solvers); SCOUT itself has the reference one only.
@pytest.mark.parametrize(("solver", "strategy"), list(COMBINATIONS),
                         ids=[f"{a}+{b}" for a, b in COMBINATIONS])
def test_scout_combination_matches_oracle(solver, strategy):
    name = COMBINATIONS[(solver, strategy)][0]
    min_branches = BURST_CHAINS if strategy == BURST else 1

    @SETTINGS
    @given(src=store_st(min_branches),
           configs=st.lists(scout_configs(solver, strategy), min_size=N_CONFIGS,
                            max_size=N_CONFIGS))
    def check(src, configs):
        compare(name, store_arrays(src), src.probe_freq, configs, "reference",
                len(src.questions))

    check()


@SETTINGS
@given(src=store_st(), config=nested(
    st.fixed_dictionaries({"n": st.integers(1, 14)}), CONVERGENCE_ST))
def test_lockstep_majority_equals_scouts_sequential_loop(src, config):
    """SCOUT draws convergence samples one after another; the oracle (like the engine) runs
    them in lock step.  Answers, costs and SCOUT's sequential tokens are the same."""
    arrays = store_arrays(src)
    out = [
        evaluate_oracle(arrays, src.probe_freq, lambda lock=lock: make_solver(
            "MajorityVoteSolver", "ConvergenceProbeStrategy", config, lockstep=lock), SEEDS,
            range(len(src.questions)))
        for lock in (True, False)
    ]
    for field in ("answer", "tokens", "seq_tokens_max_branch", "stop_reason"):
        np.testing.assert_array_equal(out[0][field], out[1][field])


# -- deterministic examples -----------------------------------------------------------------------

A, B, C, X = 1, 2, 3, 4
F = 100


def slot_arrays(slots_per_q, seed=0, n_vocab=8, correct=()):
    """Store arrays whose slot ``j`` (under ``seed``) holds ``slots_per_q[q][j] = (probe_ids,
    tokens, final_id)``."""
    n_q = len(slots_per_q)
    n_b = max(len(s) for s in slots_per_q)
    n_k = max(len(p) for s in slots_per_q for p, _, _ in s)
    arrays = {
        "probe_answer": np.full((n_q, n_b, n_k), -1, np.int32),
        "n_probes": np.zeros((n_q, n_b), np.int32),
        "branch_tokens": np.zeros((n_q, n_b), np.int32),
        "final_answer": np.full((n_q, n_b), -1, np.int32),
        "n_branches": np.array([len(s) for s in slots_per_q], np.int32),
        "is_correct": np.zeros((n_q, n_vocab), bool),
    }
    for q, content in enumerate(slots_per_q):
        perm = permutation(seed, len(content))
        for j, (probes, bt, fin) in enumerate(content):
            b = perm[j]
            arrays["probe_answer"][q, b, : len(probes)] = probes
            arrays["n_probes"][q, b] = len(probes)
            arrays["branch_tokens"][q, b] = bt
            arrays["final_answer"][q, b] = fin
    for q, a in correct:
        arrays["is_correct"][q, a] = True
    return arrays


def one(name, slots, config, cost_model="reference"):
    """Episode (seed 0, question 0) of the engine, checked against the oracle first.  The
    question and the config are repeated to the property tests' shapes (no recompilation)."""
    arrays = slot_arrays([slots] * N_QUESTIONS)
    eps = compare(name, arrays, F, [config] * N_CONFIGS, cost_model, 1)
    return {
        "answer": int(eps.answer[0, 0, 0]),
        "tokens": int(eps.tokens[0, 0, 0]),
        "seq": int(eps.seq_tokens[0, 0, 0]),
        "seq_max_branch": int(eps.seq_tokens_max_branch[0, 0, 0]),
        "reason": eps.stop_reasons[eps.stop_reason[0, 0, 0]],
    }


def conv(**strategy):
    return {"solver": {}, "strategy": strategy}


def test_convergence_probe_examples():
    # x = A B B B C: the first run of three ends at probe 3 -> answer B after 4 probes
    out = one("convergence", [([A, B, B, B, C], 900, C)], conv(n=3))
    assert out == {"answer": B, "tokens": 4 * F, "seq": 4 * F, "seq_max_branch": 4 * F,
                   "reason": "converged"}
    # the streak is completed by the final answer (j* = L): final answer, full-branch cost
    out = one("convergence", [([A, B, B], 450, B)], conv(n=3))
    assert (out["answer"], out["tokens"], out["reason"]) == (B, 450, "converged")
    # never three in a row: the branch ends, its final answer is the sample
    out = one("convergence", [([A, B, A], 250, C)], conv(n=3))
    assert (out["answer"], out["tokens"], out["reason"]) == (C, 3 * F, "branch_end")
    # n = 1: the opening probe is the sample
    out = one("convergence", [([A, B, B], 300, B)], conv(n=1))
    assert (out["answer"], out["tokens"]) == (A, F)
    # warm-up: the streak of 2 is reached at trigger 1 but only counts from trigger 3
    out = one("convergence", [([A, A, B, B, B, C], 600, C)], conv(n=2, warmup_steps=3))
    assert (out["answer"], out["tokens"]) == (B, 4 * F)
    # bursts of 2: triggers end on probes 3, 5, 7 (B, B, B) -> streak 3 after trigger 3
    out = one("convergence", [([A, A, B, C, B, C, B], 700, B)], conv(n=3, probe_burst=2))
    assert (out["answer"], out["tokens"]) == (B, 7 * F)


def test_sc_convergence_votes_in_slot_order_and_counts_branches_in_parallel():
    slots = [([A, B, B], 300, B), ([A, A, C], 300, C), ([C, C, C], 300, C), ([B, B], 200, B)]
    config = {"solver": {"n": 4}, "strategy": {"n": 2}}
    out = one("sc_convergence", slots, config)
    # samples: B (3 probes), A (2), C (2), B (2) -> B 2, A 1, C 1
    assert out["answer"] == B and out["reason"] == "max_samples"
    assert out["tokens"] == 9 * F
    assert out["seq_max_branch"] == 3 * F  # SCOUT: the largest branch
    assert out["seq"] == 3 * F  # lock step: rounds cost F each
    # a 1:1 tie goes to the earlier slot
    out = one("sc_convergence", slots[1:3], {"solver": {"n": 2}, "strategy": {"n": 2}})
    assert out["answer"] == A
    # more samples than branches: the missing ones are dropped
    out = one("sc_convergence", slots, {"solver": {"n": 6}, "strategy": {"n": 2}})
    assert (out["answer"], out["reason"]) == (B, "exhausted")


def test_pp_prune_vote_keeps_pruned_votes():
    # warm_up 0, patience 1, T 1.  Step 0: s0 B, s1 A, s2 A -> A; s0 is pruned (frozen at B).
    # Step 1: s1 A, s2 B -> votes B, A, B -> B (Parallel-Probe: A, B tie -> A); s1 pruned.
    # Step 2: s2 B -> votes B, A, B -> B again: stable.
    slots = [([B, B, C, C, C, C], 600, C), ([A, A, A, A, A, A], 600, A),
             ([A, A, B, B, B, B], 600, B)]
    strategy = {"num_chains": 3, "T": 1, "prune_patience": 1, "warm_up": 0}
    out = one("pp_prune_vote", slots, {"solver": {}, "strategy": strategy})
    assert (out["answer"], out["reason"]) == (B, "stable")
    assert out["tokens"] == (2 + 3 + 4) * F and out["seq_max_branch"] == 4 * F
    pp = one("parallel_probe", slots, {"solver": {}, "strategy": strategy})
    assert (pp["answer"], pp["reason"]) == (A, "stable")


def test_pp_prune_vote_gate_counts_running_chains_only():
    # s0 finishes at step 0, s1 keeps running off the (tied) winner A.  Parallel-Probe counts
    # the finished chain in its gate and prunes s1 at once; ParallelESTPruning has one running
    # chain, never prunes, and probes s1 to its end.
    slots = [([A], 100, A), ([B, B, B, B], 400, B)]
    strategy = {"num_chains": 2, "T": 10, "prune_patience": 1, "warm_up": 0}
    out = one("pp_prune_vote", slots, {"solver": {}, "strategy": strategy})
    assert (out["answer"], out["tokens"], out["reason"]) == (A, 100 + 400, "all_resolved")
    pp = one("parallel_probe", slots, {"solver": {}, "strategy": strategy})
    assert (pp["answer"], pp["tokens"], pp["reason"]) == (A, 100 + 2 * F, "all_resolved")


def test_pp_prune_vote_without_enough_branches_has_no_answer():
    slots = [([A, A], 200, A), ([A, A], 200, A)]
    out = one("pp_prune_vote", slots, {"solver": {}, "strategy": {"num_chains": 3}})
    assert (out["answer"], out["tokens"], out["reason"]) == (-1, 2 * F, "exhausted")


def test_max_branch_accounting_sc_asc_esc():
    bts = [700, 300, 1200, 50, 400, 900, 100, 650]
    finals = [A, B, C, A, B, C, A, B]  # never unanimous, never confident
    slots = [([f], bt, f) for bt, f in zip(bts, finals, strict=True)]
    sc = one("sc", slots, {"solver": {"n": 8}, "strategy": {}})
    assert (sc["seq"], sc["seq_max_branch"]) == (max(bts), max(bts))
    asc = one("asc", slots, {"solver": {"n": 6, "threshold": 0.95}, "strategy": {}})
    assert (asc["seq"], asc["seq_max_branch"]) == (sum(bts[:6]), max(bts[:6]))
    esc = one("esc", slots, {"solver": {"n": 8, "window_size": 3}, "strategy": {}})
    windows = max(bts[0:3]) + max(bts[3:6])
    assert (esc["seq"], esc["seq_max_branch"]) == (windows, windows)


def test_oracle_max_branch_windows():
    q = OracleQuestion(slot_arrays([[([A], bt, A) for bt in (5, 9, 2, 7, 1)]]), 0,
                       permutation(0, 5))
    assert q.seq_tokens_max_branch() == 0
    for _ in range(5):
        q.get_new_branch_final_answer()
    assert q.seq_tokens_max_branch() == 9
    assert q.seq_tokens_max_branch(2) == 9 + 7 + 1  # a short last window counts
    assert q.seq_tokens_max_branch(1) == q.cost


# -- the mapping and the parity command -----------------------------------------------------------


def test_scout_mapping():
    c, cfg = scout_controller("MajorityVoteSolver", "FullReadStrategy", {})
    assert (c.name, cfg) == ("sc", {"max_samples": 16})  # SCOUT's MajorityVoteSolver default
    c, cfg = scout_controller("ESCSolver", "FullReadStrategy", {"solver": {"n": 64}})
    assert (c.name, cfg) == ("esc", {"max_samples": 64, "window_size": 5})
    c, cfg = scout_controller("MajorityVoteSolver", "ConvergenceProbeStrategy",
                              {"solver": {"n": 64}, "strategy": {"n": 14}})
    assert (c.name, cfg) == ("sc_convergence",
                             {"solver_n": 64, "n": 14, "warmup_steps": 0, "probe_burst": 1})
    c, cfg = scout_controller("GreedySolver", "ParallelESTPruning", {})
    assert c.name == "pp_prune_vote" and cfg["K"] == 1000 and cfg["num_chains"] == 4
    for bad in [("ASCSolver", "ConvergenceProbeStrategy", {}),
                ("MajorityVoteSolver", "FullReadStrategy", {"solver": {"m": 3}}),
                ("GreedySolver", "ConvergenceProbeStrategy", {"strategy": {"burst": 3}}),
                ("GreedySolver", "ParallelESTPruning", {"strategy": {"probe_burst": 2}})]:
        with pytest.raises(ValueError):
            scout_controller(*bad)


def test_parity_reads_scout_csv(tmp_path, trajectories_dir):
    """The SCOUT file format end to end, on the cheapest published row (one branch) plus an
    unsupported combination; the row's exact totals are SCOUT_SEMANTICS.md §8's."""
    from autotts_jax.experiments.parity import format_row, run_parity

    ref = tmp_path / "scout.csv"
    with ref.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "dataset", "solver", "strategy", "config", "acc", "avg_cost",
                    "avg_seq_cost"])
        strategy = {"n": 14, "warmup_steps": 0, "probe_burst": 1}
        w.writerow(["Qwen3-8B", "aime24", "GreedySolver", "ConvergenceProbeStrategy",
                    json.dumps({"solver": {}, "strategy": strategy}), "70.97", "12068",
                    "12068"])
        w.writerow(["Qwen3-8B", "aime24", "ASCSolver", "ConvergenceProbeStrategy",
                    json.dumps({"solver": {}, "strategy": strategy}), "1", "1", "1"])
    kind, rows, _ = run_parity(ref, trajectories_dir, range(100))
    assert kind == "scout"
    assert [r.status for r in rows] == ["OK", "UNSUPPORTED"]
    assert rows[0].ours == {"acc": "70.97", "avg_cost": 12068, "avg_seq_cost": 12068,
                            "controller": "convergence"}
    assert "-> convergence" in format_row(kind, rows[0])
    assert "not supported" in rows[1].note
