"""The JAX engine against the pure-Python oracle, round by round and episode by episode.

The property tests draw random synthetic stores (1-4 questions with 1-12 branches each, probe
lists of 1-10 answers from a tiny alphabet so that ties and agreement are both common, branch
tokens on both sides of ``freq * L``, final answers that never occur as probes, gold answers
that no branch reaches) and random configs of every registered controller that names an
oracle twin (``tests/registry.py``: the built-ins and the test-only ones, each drawn from its
entry's ``config_space``), and require that the engine and the oracle agree on every
(config, seed, question) episode, under both cost models:

* in lockstep: the engine's trace (``simulate(..., trace=True)``) and the oracle's round rows
  (``OracleQuestion.round_rows``) give the same tokens, opened slots, ended slots and
  sequential tokens after every round, so a divergence names its first round;
* in the end: answer id, correctness, total tokens, sequential tokens (critical path, and the
  per-branch "max_branch" accounting) and stop reason.

Shapes are fixed across examples (4 questions after padding, 16 branches x 16 probes x 64 ids,
16 slots, a pool of 64, 4 configs x seeds 0-2 x 4 questions = one chunk of 48 episodes), so
each (controller, cost model) compiles once.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from registry import WITH_ORACLE, config_strategy, oracle_twin

import autotts_jax.engine  # noqa: F401  (enables float64)
from autotts_jax.controllers import get_controller
from autotts_jax.engine import env as E
from autotts_jax.engine.protocol import Controller
from autotts_jax.engine.simulate import permutation, simulate
from autotts_jax.oracle import OracleQuestion, RoundRow, evaluate_oracle
from autotts_jax.store.hdf5 import pack_arrays
from autotts_jax.store.load import from_arrays
from autotts_jax.store.upstream import Branch, QuestionRecord, UpstreamFile

N_QUESTIONS = 4  # stores are padded to this many questions (fixed shapes)
MAX_BRANCHES = 12
MAX_PROBES = 10
SLOTS = 16
POOL = 64
PAD = {"min_branches": 16, "min_depth": 16, "min_vocab": 64}
SEEDS = (0, 1, 2)
N_CONFIGS = 4  # configs per example (fixed: the params arrays are [N_CONFIGS] long)
COST_MODELS = ("reference", "corrected")
CHUNK = N_CONFIGS * len(SEEDS) * N_QUESTIONS  # episodes per compiled call: one chunk each

PROBES = "abcd"  # probe answers
FINALS = "abcdxy"  # "x" and "y" are final answers that never appear as probes
GOLDS = "abxz"  # "z" is never any branch's answer

# A deeper search: ENGINE_ORACLE_EXAMPLES=500 pytest tests/test_engine_vs_oracle.py
SETTINGS = settings(
    max_examples=int(os.environ.get("ENGINE_ORACLE_EXAMPLES", "30")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- synthetic stores ---------------------------------------------------------------------------


@st.composite
def branches_st(draw, freq: int) -> Branch:
    n = draw(st.integers(1, MAX_PROBES))
    probes = tuple(draw(st.lists(st.sampled_from(PROBES), min_size=n, max_size=n)))
    final = draw(st.one_of(st.just(probes[-1]), st.sampled_from(FINALS)))
    # around freq * L: below it (probing to the end costs freq * L > bt), equal, or above
    noise = draw(st.one_of(st.integers(-2 * freq, 2 * freq), st.just(0)))
    return Branch(probes, max(0, freq * n + noise), final)


@st.composite
def upstream_st(draw) -> UpstreamFile:
    freq = draw(st.one_of(st.sampled_from([5, 100, 500]), st.integers(5, 500)))
    n_q = draw(st.integers(1, N_QUESTIONS))
    questions = []
    for i in range(n_q):
        n_b = draw(st.integers(1, MAX_BRANCHES))
        branches = tuple(draw(branches_st(freq)) for _ in range(n_b))
        gold = draw(st.sampled_from(GOLDS))
        questions.append(QuestionRecord(f"q{i}", gold, freq, (), branches))
    return UpstreamFile(path="synthetic", sha256="", probe_freq=freq, questions=tuple(questions))


def store_arrays(src: UpstreamFile) -> dict[str, np.ndarray]:
    """Packed arrays, padded to ``N_QUESTIONS`` questions with copies of question 0."""
    arrays = pack_arrays(src)
    n_q = len(src.questions)
    if n_q < N_QUESTIONS:
        fill = [0] * (N_QUESTIONS - n_q)
        for key in ("probe_answer", "n_probes", "branch_tokens", "final_answer", "n_branches",
                    "is_correct"):
            arrays[key] = np.concatenate([arrays[key], arrays[key][fill]])
    return arrays


# -- engine and oracle, round by round ----------------------------------------------------------


def engine_rows(trace: dict, rounds: int, at: tuple) -> list[tuple[int, RoundRow]]:
    """``(round, row)`` of every round of the engine's episode ``at`` (config, seed, question)."""
    return [(r, RoundRow(*(int(trace[k][(*at, r)])
                           for k in ("tokens", "opened", "finished", "seq_tokens"))))
            for r in range(rounds)]


def changes(rows: list[tuple[int, RoundRow]]) -> list[tuple[int, RoundRow]]:
    """The rounds after which something changed.  Either side may have rounds that change
    nothing the other records (the engine's opening round of SC / ASC / ESC makes no call;
    an oracle round may only re-probe a finished branch for 0 tokens), so lockstep compares
    the sequences of changes, each tagged with the round it happened in."""
    out, last = [], RoundRow(0, 0, 0, 0)
    for r, row in rows:
        if row != last:
            out.append((r, row))
            last = row
    return out


def first_divergence(engine: list[tuple[int, RoundRow]], oracle: list[RoundRow]) -> str | None:
    """``None`` when both episodes go through the same states; else a sentence naming the
    first round after which they differ (in the engine's numbering, round 0 = ``init``)."""
    mine = changes(engine)
    ref = changes(list(enumerate(oracle)))
    for i in range(max(len(mine), len(ref))):
        (r, got), (k, want) = (mine[i] if i < len(mine) else (None, None),
                               ref[i] if i < len(ref) else (None, None))
        if got != want:
            where = (f"engine round {r}" if r is not None
                     else f"after the engine's last round {mine[-1][0] if mine else 0}")
            return (f"first differing round: {where} (oracle round {k}): "
                    f"engine {got}, oracle {want}")
    return None


def run_engine(controller: Controller, data, configs, seeds=SEEDS, cost_model="reference"):
    return simulate(controller, data, configs, seeds, cost_model=cost_model, slots=SLOTS,
                    pool_size=POOL, chunk_size=CHUNK, trace=True)


def compare(controller: Controller, arrays, freq, configs, cost_model, n_q, seeds=SEEDS):
    """Assert engine == oracle for every (config, seed, question) episode: first round by
    round, then the episode's results."""
    name = controller.name
    data = from_arrays(arrays, freq, **PAD)
    eps, trace = run_engine(controller, data, configs, seeds, cost_model)
    for c, config in enumerate(configs):
        ref = evaluate_oracle(arrays, freq, oracle_twin(controller, config), seeds, range(n_q),
                              cost_model=cost_model, trace=True)
        for s, q in np.ndindex(len(seeds), n_q):
            problem = first_divergence(
                engine_rows(trace, int(eps.rounds[c, s, q]), (c, s, q)), ref["trace"][s, q])
            if problem:
                raise AssertionError(f"{name} {config} ({cost_model}), seed {seeds[s]}, "
                                     f"question {q}: {problem}")
        got = {
            "answer": eps.answer[c, :, :n_q],
            "correct": eps.correct[c, :, :n_q],
            "tokens": eps.tokens[c, :, :n_q],
            "seq_tokens": eps.seq_tokens[c, :, :n_q],
            "seq_tokens_max_branch": eps.seq_tokens_max_branch[c, :, :n_q],
            "stop_reason": np.asarray(eps.stop_reasons, dtype=object)[eps.stop_reason[c, :, :n_q]],
        }
        if currently_in_test_context():  # see --hypothesis-show-statistics
            for reason in np.unique(got["stop_reason"]):
                event(f"stop: {reason}")
            if (eps.branches[c, :, :n_q] >= arrays["n_branches"][:n_q]).any():
                event("some episode opened every branch")
            if (got["answer"] < 0).any():
                event("some episode had no answer")
        for field, value in got.items():
            want = ref[field]
            bad = np.argwhere(np.asarray(value != want))
            if bad.size:
                s, q = bad[0]
                raise AssertionError(
                    f"{name} {config} ({cost_model}): {field} differs at seed {seeds[s]}, "
                    f"question {q}: engine {value[s, q]!r}, oracle {want[s, q]!r}\n"
                    f"engine: " + ", ".join(f"{k}={v[s, q]!r}" for k, v in got.items())
                    + "\noracle: " + ", ".join(f"{k}={ref[k][s, q]!r}" for k in got)
                )
    return eps


# -- the property test --------------------------------------------------------------------------


@pytest.mark.parametrize("cost_model", COST_MODELS)
@pytest.mark.parametrize("controller", WITH_ORACLE, ids=lambda c: c.name)
@SETTINGS
@given(src=upstream_st(), draw=st.data())
def test_engine_matches_oracle(controller, cost_model, src, draw):
    configs = draw.draw(
        st.lists(config_strategy(controller), min_size=N_CONFIGS, max_size=N_CONFIGS),
        label="configs",
    )
    arrays = store_arrays(src)
    compare(controller, arrays, src.probe_freq, configs, cost_model, len(src.questions))


# -- deterministic examples ---------------------------------------------------------------------


def slot_arrays(slots_per_q, seed=0, n_vocab=8, correct=()):
    """Store arrays whose branches land in the given *slot* order under ``seed``.

    ``slots_per_q[q][j] = (probe_ids, tokens, final_id)`` is what slot ``j`` of question ``q``
    holds; the branch is stored at original index ``permutation(seed, n)[j]``.
    """
    n_q = len(slots_per_q)
    n_b = max(len(s) for s in slots_per_q)
    n_k = max(len(p) for s in slots_per_q for p, _, _ in s)
    probe_answer = np.full((n_q, n_b, n_k), -1, np.int32)
    n_probes = np.zeros((n_q, n_b), np.int32)
    tokens = np.zeros((n_q, n_b), np.int32)
    final = np.full((n_q, n_b), -1, np.int32)
    for q, content in enumerate(slots_per_q):
        perm = permutation(seed, len(content))
        for j, (probes, bt, fin) in enumerate(content):
            b = perm[j]
            probe_answer[q, b, : len(probes)] = probes
            n_probes[q, b] = len(probes)
            tokens[q, b] = bt
            final[q, b] = fin
    is_correct = np.zeros((n_q, n_vocab), bool)
    for q, a in correct:
        is_correct[q, a] = True
    return {
        "probe_answer": probe_answer,
        "n_probes": n_probes,
        "branch_tokens": tokens,
        "final_answer": final,
        "n_branches": np.array([len(s) for s in slots_per_q], np.int32),
        "is_correct": is_correct,
    }


def one_episode(name, arrays, freq, config, seed=0, cost_model="reference", question=0):
    """Engine episode (``config``, ``seed``, ``question``), checked against the oracle.

    Runs with the property test's shapes (4 questions, 4 configs, seeds 0-2) so that nothing
    recompiles.
    """
    n_q = len(arrays["n_branches"])
    padded = {k: v.copy() for k, v in arrays.items()}
    fill = [0] * (N_QUESTIONS - n_q)
    for key, value in arrays.items():
        padded[key] = np.concatenate([value, value[fill]])
    eps = compare(get_controller(name), padded, freq, [config] * N_CONFIGS, cost_model, n_q)
    s = SEEDS.index(seed)
    return {
        "answer": int(eps.answer[0, s, question]),
        "tokens": int(eps.tokens[0, s, question]),
        "seq_tokens": int(eps.seq_tokens[0, s, question]),
        "reason": eps.stop_reasons[eps.stop_reason[0, s, question]],
    }


A, B, C = 1, 2, 3


@pytest.mark.parametrize("seed", [0, 2])
def test_sc_and_asc_ties_go_to_the_earliest_read(seed):
    # reads in slot order: B, A, A, B -> tie 2:2, B was read first (B > A as an id, too)
    slots = [([B], 100, B), ([A], 200, A), ([A], 300, A), ([B], 400, B)]
    arrays = slot_arrays([slots], seed)
    assert one_episode("sc", arrays, 100, {"max_samples": 4}, seed)["answer"] == B
    asc = one_episode("asc", arrays, 100, {"max_samples": 4, "threshold": 2.0}, seed)
    assert (asc["answer"], asc["reason"]) == (B, "max_samples")
    # the mirror image: A first
    slots = [([A], 100, A), ([B], 200, B), ([B], 300, B), ([A], 400, A)]
    arrays = slot_arrays([slots], seed)
    assert one_episode("sc", arrays, 100, {"max_samples": 4}, seed)["answer"] == A
    assert one_episode("asc", arrays, 100, {"max_samples": 4, "threshold": 2.0}, seed)[
        "answer"] == A


def test_cmc_pool_ties_go_to_the_earliest_completion():
    # beta = 0: n_init 2, warm_up 2, no widening at step 0.  Slot 1 (B) completes at step 0,
    # slot 0 (A) at step 1; the pool [B, A] ties and B, completed first, wins -- although
    # slot 0 comes first in slot (spawn) order.
    f = 100
    slots = [([C, A], 150, A), ([C], 90, B)]
    arrays = slot_arrays([slots])
    out = one_episode("cmc", arrays, f, {"beta": 0.0})
    assert (out["answer"], out["reason"]) == (B, "all_resolved")
    # reference: slot 0 costs max(2f, 150) = 200, slot 1 max(f, 90) = 100
    assert out["tokens"] == 300
    # rounds: init (f, f) -> 100; step 0 (slot 0 probe f, slot 1 finishing 0) -> 100;
    # step 1 (slot 0 finishing: max(0, 150 - 200) = 0) -> 0
    assert out["seq_tokens"] == 200
    corrected = one_episode("cmc", arrays, f, {"beta": 0.0}, cost_model="corrected")
    assert corrected["tokens"] == 150 + 90


def test_parallel_probe_ties_go_to_the_earliest_spawned_chain():
    # T = 0: the winner of step 0 (second probes: slot 0 says B, slot 1 says A) is returned.
    config = {"num_chains": 2, "T": 0, "warm_up": 5}
    slots = [([C, B, B], 300, B), ([C, A, A], 300, A)]
    out = one_episode("parallel_probe", slot_arrays([slots]), 100, config)
    assert (out["answer"], out["reason"]) == (B, "stable")
    slots = [([C, A, A], 300, A), ([C, B, B], 300, B)]
    out = one_episode("parallel_probe", slot_arrays([slots]), 100, config)
    assert (out["answer"], out["reason"]) == (A, "stable")
    # seed 1 stores the branches in another order; the slot order still decides
    out = one_episode("parallel_probe", slot_arrays([slots], seed=1), 100, config, seed=1)
    assert out["answer"] == A


@pytest.mark.parametrize("cost_model", COST_MODELS)
def test_reprobe_quirk_matches_the_oracle(cost_model):
    f = 100
    # one branch: 2 probes, bt = 350 > 2f, so the remainder is 150
    arrays = slot_arrays([[([A, B], 350, C)]])
    data = from_arrays(arrays, f, **PAD)
    perm = np.full(SLOTS, -1, np.int32)
    perm[0] = 0
    env = E.reset(data, np.int32(0), perm, POOL)
    env = E.probe_new(env, data, np.int32(1), cost_model)
    oracle = OracleQuestion(arrays, 0, [0], probe_freq=f, cost_model=cost_model)
    oracle.probe_new()
    mask = np.arange(SLOTS) == 0
    seen = []
    for _ in range(4):  # probe 2, the finishing call, then two re-probes
        env = E.probe_more(env, data, mask, cost_model)
        ans, fin = oracle.probe_more(0)
        seen.append((int(env.latest[0]), bool(env.finished[0]), int(env.cost[0])))
        assert seen[-1] == (ans, fin, oracle.cost_per_branch[0])
    again = 150 if cost_model == "reference" else 0
    assert [c for _, _, c in seen] == [200, 350, 350 + again, 350 + 2 * again]
    # the branch completed once: one vote in the pool
    assert int(env.pool_count[C]) == 1 and int(env.pool_size) == 1


def test_sequential_tokens_sc_asc_esc():
    bts = [700, 300, 1200, 50, 400, 900, 100, 650]
    finals = [A, B, C, A, B, C, A, B]  # never unanimous, never confident
    slots = [([f], bt, f) for bt, f in zip(bts, finals, strict=True)]
    arrays = slot_arrays([slots])
    sc = one_episode("sc", arrays, 100, {"max_samples": 8})
    assert (sc["tokens"], sc["seq_tokens"]) == (sum(bts), max(bts))
    sc5 = one_episode("sc", arrays, 100, {"max_samples": 5})
    assert (sc5["tokens"], sc5["seq_tokens"]) == (sum(bts[:5]), max(bts[:5]))
    asc = one_episode("asc", arrays, 100, {"max_samples": 6, "threshold": 0.95})
    assert (asc["tokens"], asc["seq_tokens"]) == (sum(bts[:6]), sum(bts[:6]))
    esc = one_episode("esc", arrays, 100, {"max_samples": 8, "window_size": 3})
    windows = [bts[0:3], bts[3:6]]  # 8 // 3 = 2 windows
    assert esc["tokens"] == sum(bts[:6])
    assert esc["seq_tokens"] == sum(max(w) for w in windows)
    assert esc["reason"] == "max_samples"


def test_question_without_branches():
    """Nothing can be opened: PP and CMC stop with ``no_branches`` (upstream returns None from
    the place it returns when all are resolved); SC/ASC/ESC report ``exhausted``.  No answer,
    no tokens."""
    arrays = slot_arrays([[], [([A], 100, A)]])  # question 0 has no branch at all
    for name, config in [("parallel_probe", {"num_chains": 3}), ("cmc", {"beta": 0.5}),
                         ("sc", {"max_samples": 2}), ("asc", {"max_samples": 2}),
                         ("esc", {"max_samples": 4, "window_size": 2})]:
        out = one_episode(name, arrays, 100, config)
        assert (out["answer"], out["tokens"], out["seq_tokens"]) == (-1, 0, 0)
        want = "no_branches" if name in ("parallel_probe", "cmc") else "exhausted"
        assert out["reason"] == want, name


def test_esc_short_last_window_reports_exhausted():
    """Regression: 5 branches, windows of 3 -> the second window is short (2 reads), not
    unanimous.  The branches ran out, as the oracle says (the engine used to say max_samples)."""
    slots = [([A], 100, A), ([B], 100, B), ([A], 100, A), ([B], 100, B), ([A], 100, A)]
    out = one_episode("esc", slot_arrays([slots]), 100, {"max_samples": 6, "window_size": 3})
    assert (out["answer"], out["tokens"], out["reason"]) == (A, 500, "exhausted")
    # a short window that is unanimous still stops as unanimous
    slots = [([A], 100, A), ([B], 100, B), ([A], 100, A), ([B], 100, B), ([B], 100, B)]
    out = one_episode("esc", slot_arrays([slots]), 100, {"max_samples": 6, "window_size": 3})
    assert (out["answer"], out["reason"]) == (B, "unanimous_window")


def test_parallel_probe_with_no_steps_returns_none():
    """Regression: max_steps = 0 -> upstream's step loop never runs: the chains are opened
    (and paid for) and the answer is None (the engine used to run one step)."""
    slots = [([A, B], 300, B), ([C, A], 300, A)]
    out = one_episode("parallel_probe", slot_arrays([slots]), 100,
                      {"num_chains": 2, "max_steps": 0})
    assert out == {"answer": -1, "tokens": 200, "seq_tokens": 100, "reason": "max_steps"}


def test_a_divergence_names_its_first_round(monkeypatch):
    """Lockstep can fail, and says where: an oracle that charges one token too many on its
    fourth full read agrees with ASC's engine episode up to engine round 4 (round 0 is ASC's
    empty ``init``, so that is oracle round 3) and differs from there on."""
    bts = [700, 300, 1200, 50, 400, 900]
    slots = [([f], bt, f) for bt, f in zip(bts, [A, B, C, A, B, C], strict=True)]
    read = OracleQuestion.get_new_branch_final_answer

    def one_token_too_many(self):
        answer = read(self)
        if self.next == 4:
            self._charge(3, 1)
        return answer

    monkeypatch.setattr(OracleQuestion, "get_new_branch_final_answer", one_token_too_many)
    with pytest.raises(AssertionError) as info:
        one_episode("asc", slot_arrays([slots]), 100, {"max_samples": 6, "threshold": 2.0})
    message = str(info.value)
    assert "seed 0, question 0: first differing round: engine round 4 (oracle round 3)" in message
    want = RoundRow(tokens=sum(bts[:4]), opened=4, ended=4, seq_tokens=sum(bts[:4]))
    off = want._replace(tokens=want.tokens + 1, seq_tokens=want.seq_tokens + 1)
    assert f"engine {want}, oracle {off}" in message
