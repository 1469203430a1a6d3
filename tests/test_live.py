"""Live runs against the deterministic fake server on 127.0.0.1: replay predicts deployment.

The fake model gives every (question, branch) the same text whenever it is asked, so a store
collected from it holds exactly what a live run will be served.  Every built-in controller run
live must then agree with its replay on that store, episode by episode, when the replay puts
branch ``j`` in slot ``j`` (the live run starts branches in that order).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from explorer_cases import VALID

from autotts_jax.cli import main
from autotts_jax.collect import CollectSettings, Connection, collect, load_problems
from autotts_jax.collect.answers import normalize_math
from autotts_jax.collect.client import CompletionClient
from autotts_jax.collect.fake_server import FakeServer
from autotts_jax.controllers import BUILTIN, get_controller
from autotts_jax.engine.protocol import Controller, ProtocolError
from autotts_jax.engine.simulate import simulate
from autotts_jax.live.episode import AnswerCapacityError, LiveQuestion, run_episode
from autotts_jax.store.load import load_store

PROBLEMS = [
    {"question": "Live question one?", "answer": "17"},
    {"question": "Live question two?", "answer": "42"},
    {"question": "Live question three?", "answer": "5"},
]
SETTINGS = CollectSettings(model="fake-model", branches=12, probe_freq=8, max_tokens=96,
                           max_probes=10)
SETTING_ARGS = ["--branches", "12", "--probe-freq", "8", "--max-tokens", "96",
                "--max-probes", "10"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory):
    """(fake server, problem file, problems, collected store path) shared by the module."""
    root = tmp_path_factory.mktemp("live")
    path = root / "livebench.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS), encoding="utf-8")
    problems = load_problems(path)
    with FakeServer() as srv:
        store = root / "fake-model" / "livebench.h5"
        collect(SETTINGS, Connection(srv.url, concurrency=4, backoff=0.001), problems, store,
                progress=None)
        yield srv, path, problems, store


def _live(controller: Controller, bench, cost_model: str) -> list:
    srv, _, problems, _ = bench
    client = CompletionClient(srv.url, "fake-model", backoff=0.001)
    with ThreadPoolExecutor(4) as pool:
        return [run_episode(controller, controller.config(), LiveQuestion(
                    client, SETTINGS, p.question, normalize_math(p.answer), i, pool),
                    cost_model=cost_model)
                for i, p in enumerate(problems.problems)]


def _replay(controller: Controller, store_path: Path, cost_model: str) -> list[tuple]:
    store = load_store(store_path)
    n_q, n_b = store.data.probe_answer.shape[:2]
    eps = simulate(controller, store.data, [controller.config()], cost_model=cost_model,
                   orders=np.tile(np.arange(n_b, dtype=np.int32), (1, n_q, 1)))
    out = []
    for q in range(n_q):
        a = int(eps.answer[0, 0, q])
        out.append((str(store.meta.vocab[q][a]) if a >= 0 else None, bool(eps.correct[0, 0, q]),
                    int(eps.tokens[0, 0, q]), int(eps.seq_tokens[0, 0, q]),
                    int(eps.rounds[0, 0, q]), eps.stop_reasons[int(eps.stop_reason[0, 0, q])],
                    int(eps.branches[0, 0, q])))
    return out


def _as_tuple(ep) -> tuple:
    return (ep.answer, ep.correct, ep.tokens, ep.seq_tokens, ep.rounds, ep.stop_reason,
            ep.branches)


@pytest.mark.parametrize("name", [c.name for c in BUILTIN])
def test_live_run_equals_replay(bench, name: str) -> None:
    controller = get_controller(name)
    live = _live(controller, bench, "reference")
    assert [_as_tuple(ep) for ep in live] == _replay(controller, bench[3], "reference")
    # a live run never generates more than the collected branches hold
    store_tokens = load_store(bench[3]).data.branch_tokens.sum(axis=1)
    assert all(ep.cost.gen_tokens <= store_tokens[q] for q, ep in enumerate(live))


def test_corrected_cost_is_the_servers_completion_tokens(bench) -> None:
    """Under the corrected cost model a live episode is charged exactly the generation
    tokens the server reported: nothing is generated that the controller did not pay for."""
    controller = get_controller("cmc")
    live = _live(controller, bench, "corrected")
    assert [_as_tuple(ep) for ep in live] == _replay(controller, bench[3], "corrected")
    assert [ep.tokens for ep in live] == [ep.cost.gen_tokens for ep in live]
    assert any(ep.cost.probe_requests for ep in live)


def _rows(out: Path) -> list[dict]:
    with (out / "results.csv").open(newline="") as f:
        return [{k: v for k, v in r.items() if k != "wall_s"} for r in csv.DictReader(f)]


def test_run_live_writes_results_resumes_and_continues_journals(
        bench, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    srv, problem_file, problems, store = bench
    args = ["run-live", "--controller", "cmc", "--beta", "0.5", "--base-url", srv.url,
            "--model", "fake-model", "--problems", str(problem_file), *SETTING_ARGS,
            "--backoff", "0.001", "--retries", "0", "-q"]
    before = srv.served
    assert main([*args, "-o", str(tmp_path / "a"), "--store", str(store),
                 "--replay-seeds", "2"]) == 0
    n_requests = srv.served - before
    rows = _rows(tmp_path / "a")
    assert [r["question"] for r in rows] == ["0", "1", "2"]
    assert list(csv.DictReader((tmp_path / "a" / "results.csv").open()).fieldnames[:8]) == [
        "question", "answer", "correct", "tokens", "seq_tokens", "rounds", "stop_reason",
        "wall_s"]
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["questions"] == 3
    assert summary["server"]["requests"] == n_requests
    assert summary["server"]["avg_prompt_tokens"] > 0
    assert summary["replay"]["same_order"] == {
        **summary["replay"]["same_order"], "questions": 3, "identical": 3}
    assert "3/3 questions identical" in capsys.readouterr().out

    # the same command again: every question is finished, no request is sent
    served = srv.served
    assert main([*args, "-o", str(tmp_path / "a")]) == 0
    assert srv.served == served
    assert _rows(tmp_path / "a") == rows

    # a run cut short by an outage keeps its journals; the resume sends only what is missing
    srv.down_after = srv.served + n_requests // 2
    try:
        assert main([*args, "-o", str(tmp_path / "b")]) == 2
    finally:
        srv.down_after = None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "resume" in err[0]
    assert list((tmp_path / "b" / "questions").glob("*.journal.jsonl"))
    assert main([*args, "-o", str(tmp_path / "b")]) == 0
    assert srv.served - served == n_requests
    assert _rows(tmp_path / "b") == rows
    assert not list((tmp_path / "b" / "questions").glob("*.journal.jsonl"))


@pytest.mark.parametrize("extra, message", [
    (["--controller", "nope"], "unknown controller"),
    (["--controller", "cmc", "--config", "typo=1"], "unknown parameter"),
    (["--controller", "cmc", "--config", "beta"], "expected key=value"),
    (["--controller", "cmc", "--store", "missing.h5"], "no such store"),
    (["--controller", "cmc", "--problems", "missing.jsonl"], "no such file"),
    (["--controller", "cmc", "--question-concurrency", "0"], "at least 1"),
])
def test_bad_input_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     extra: list[str], message: str) -> None:
    # nothing listens on port 9: a request would fail, but none is sent
    code = main(["run-live", "--base-url", "http://127.0.0.1:9/v1", "--model", "fake-model",
                 "-o", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_answer_capacity_is_a_clear_error(bench) -> None:
    srv, _, problems, _ = bench
    p = problems.problems[0]
    with ThreadPoolExecutor(2) as pool:
        live = LiveQuestion(CompletionClient(srv.url, "fake-model"), SETTINGS, p.question, "17",
                            0, pool, capacity=1)
        with pytest.raises(AnswerCapacityError, match="more than 1 distinct answers"):
            run_episode(get_controller("sc"), {"max_samples": 12}, live, pool_size=1)


def test_stale_observation_is_refused_before_any_request(bench) -> None:
    srv, _, problems, _ = bench

    def init(obs, params, fx):
        fx.probe_new(obs, 1)
        return fx.probe_new(obs, 1), {}  # the stale observation

    sc = get_controller("sc")
    bad = Controller(name="stale", aliases=(), defaults={}, make_params=lambda c: {},
                     max_slots=lambda c: 8, init=init, step=sc.step, stop_reasons=("x",))
    p = problems.problems[0]
    with ThreadPoolExecutor(2) as pool:
        live = LiveQuestion(CompletionClient(srv.url, "fake-model"), SETTINGS, p.question, "17",
                            0, pool)
        with pytest.raises(ProtocolError, match="stale"):
            run_episode(bad, {}, live)
    assert len(live.branches) == 1  # the first probe_new ran, the stale one sent nothing
    assert live.cost.gen_requests == 1


def test_controller_module_file_runs_live_as_replayed(bench, tmp_path: Path) -> None:
    """A controller written once as a module file (as ``discover`` exports them) runs live
    unchanged, and its replay in the live branch order agrees question by question."""
    srv, problem_file, _, store = bench
    module = tmp_path / "adaptive_reads.py"
    module.write_text(VALID, encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run-live", "--controller", str(module), "--config", "beta=0.3",
                 "--base-url", srv.url, "--model", "fake-model", "--problems",
                 str(problem_file), *SETTING_ARGS, "--store", str(store), "--replay-seeds", "1",
                 "-q", "-o", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["controller"] == "adaptive_reads"
    assert summary["config"] == {"beta": 0.3}
    assert summary["replay"]["same_order"]["identical"] == 3


def test_saved_trajectories_are_the_collected_branches(bench, tmp_path: Path) -> None:
    """SC reads every branch to its end; with --save-trajectories its full reads probe every
    interval, so the saved store holds exactly what ``collect`` collected."""
    from autotts_jax.store.hdf5 import read_store_arrays, unpack_records

    srv, problem_file, _, store = bench
    saved = tmp_path / "saved.h5"
    assert main(["run-live", "--controller", "sc", "--base-url", srv.url, "--model",
                 "fake-model", "--problems", str(problem_file), *SETTING_ARGS, "-q",
                 "--save-trajectories", str(saved), "-o", str(tmp_path / "out")]) == 0

    def records(path: Path) -> list[dict]:
        arrays, attrs = read_store_arrays(path)
        return unpack_records(arrays, int(attrs["probe_freq"]))

    assert records(saved) == records(store)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["trajectories"]["branches"] == 3 * SETTINGS.branches


def test_simulate_orders_are_the_seeds_shuffles_when_equal(bench) -> None:
    from autotts_jax.engine.simulate import permutation_table

    data = load_store(bench[3]).data
    asc = get_controller("asc")
    seeds = [3, 11]
    by_seed = simulate(asc, data, [asc.config()], seeds)
    table = permutation_table(seeds, np.asarray(data.n_branches), data.probe_answer.shape[1])
    by_order = simulate(asc, data, [asc.config()], orders=table)
    for field in ("answer", "tokens", "seq_tokens", "rounds", "stop_reason"):
        np.testing.assert_array_equal(getattr(by_order, field), getattr(by_seed, field))
    # the orders decide: the default seeds (0, 1) shuffle otherwise
    assert not np.array_equal(simulate(asc, data, [asc.config()], [0, 1]).tokens,
                              by_order.tokens)
    with pytest.raises(ValueError, match="questions"):
        simulate(asc, data, [asc.config()], orders=table[:, :1])


def test_killed_run_resumes_without_repeating_requests(bench, tmp_path: Path) -> None:
    """SIGKILL while requests are in flight: the resume sends only what was never answered."""
    srv, problem_file, _, _ = bench
    args = ["run-live", "--controller", "cmc", "--base-url", srv.url, "--model", "fake-model",
            "--problems", str(problem_file), *SETTING_ARGS, "--backoff", "0.001", "-q",
            "--concurrency", "2"]
    before = srv.served
    assert main([*args, "-o", str(tmp_path / "clean")]) == 0
    n_requests = srv.served - before
    out = tmp_path / "killed"
    srv.hold_after = srv.served + n_requests // 2
    proc = subprocess.Popen([sys.executable, "-m", "autotts_jax.cli", *args, "-o", str(out)],
                            env={**os.environ, "JAX_PLATFORMS": "cpu"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while srv.held < 1:  # a request of the run waits on the server
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never reached the hold"
            time.sleep(0.01)
        time.sleep(0.2)  # the other request slot: at the hold, or its reply journalled
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        srv.release()
    assert srv.served - before == n_requests + n_requests // 2
    assert list((out / "questions").glob("*.journal.jsonl"))
    assert main([*args, "-o", str(out)]) == 0
    # at most the replies still on their way to the journal (one per request slot) again
    assert 2 * n_requests <= srv.served - before <= 2 * n_requests + 2
    assert _rows(out) == _rows(tmp_path / "clean")
