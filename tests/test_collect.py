"""``autotts-jax collect`` against a deterministic OpenAI-compatible server on 127.0.0.1.

The expected store is computed independently by :func:`reference`: a plain sequential loop
over the fake model's pure reply function, following the documented collection semantics.
All traffic stays on 127.0.0.1; every wait in these tests has a deadline.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from autotts_jax.cli import main
from autotts_jax.collect import (
    NO_ANSWER,
    CollectSettings,
    Connection,
    answer_from,
    collect,
    cost_estimate,
    find_boxed,
    find_last_number,
    load_problems,
)
from autotts_jax.collect.answers import normalize_math
from autotts_jax.collect.branch import request_seed
from autotts_jax.collect.fake_server import FAILURES, FakeServer, fake_completion
from autotts_jax.errors import AutoTTSError
from autotts_jax.store.hdf5 import read_store_arrays, unpack_records

REPO = Path(__file__).resolve().parents[1]
PROBLEMS = [
    {"question": "Fake question one?", "answer": "17"},
    {"problem": "Fake question two?", "gold_answer": 42},
    {"question": "Fake question three?", "answer": "$5$"},
]
SETTINGS = CollectSettings(model="fake-model", branches=4, probe_freq=8, max_tokens=36,
                           max_probes=6)
# ends branches at 4 intervals (32 tokens) before max_tokens does
CAPPED = CollectSettings(**{**SETTINGS.__dict__, "max_probes": 4})


def reference(settings: CollectSettings, problems) -> tuple[list[dict], int, int]:
    """(upstream records, generation requests, probe requests) of an uninterrupted run."""
    records, n_gen, n_probe = [], 0, 0
    for qi, p in enumerate(problems):
        prompt = settings.prompt(p.question)
        branches = []
        for b in range(settings.branches):
            text, tokens, probes = "", 0, []
            while True:
                k = len(probes)
                ask = min(settings.probe_freq, settings.max_tokens - tokens)
                seed = request_seed(settings.seed, qi, b, k, "gen")
                chunk, finish, n = fake_completion(prompt + text, ask, seed)
                n_gen += 1
                text, tokens = text + chunk, tokens + n
                ended = (finish != "length" or n < ask or tokens >= settings.max_tokens
                         or k + 1 >= settings.max_probes)
                boxed = find_boxed(text) if ended and finish != "length" else None
                if boxed is not None:
                    probes.append(normalize_math(boxed))
                else:
                    seed = request_seed(settings.seed, qi, b, k, "probe")
                    reply, _, _ = fake_completion(
                        prompt + text + settings.probe_suffix, settings.probe_max_tokens, seed
                    )
                    n_probe += 1
                    probes.append(answer_from(settings.probe_suffix + reply,
                                              settings.extractor, settings.normalize))
                if ended:
                    break
            branches.append([probes, tokens, probes[-1]])
        records.append({
            "question": p.question,
            "final_answers_trace": [br[2] for br in branches],
            "each_branch": branches,
            "gold_answer": normalize_math(p.answer),
            "probe_freq": settings.probe_freq,
        })
    return records, n_gen, n_probe


@pytest.fixture
def problem_file(tmp_path: Path) -> Path:
    path = tmp_path / "fakebench.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS), encoding="utf-8")
    return path


def store_records(path: Path) -> list[dict]:
    arrays, attrs = read_store_arrays(path)
    return unpack_records(arrays, int(attrs["probe_freq"]))


def fast(url: str, **kw) -> Connection:
    return Connection(url, **{"concurrency": 3, "timeout": 5.0, "retries": 4,
                              "backoff": 0.001, **kw})


def test_reference_exercises_every_path(problem_file: Path) -> None:
    """The fake model and settings cover the cases the collector must get right."""
    records, n_gen, n_probe = reference(SETTINGS, load_problems(problem_file).problems)
    branches = [br for r in records for br in r["each_branch"]]
    assert 1 in [len(br[0]) for br in branches]  # the model stopped in the first interval
    assert [len(br[0]) for br in branches if br[1] == 36] == [5]  # max_tokens: 8+8+8+8+4
    capped, _, _ = reference(CAPPED, load_problems(problem_file).problems)
    assert 32 in [br[1] for r in capped for br in r["each_branch"] if len(br[0]) == 4]
    assert any(NO_ANSWER in br[0] for br in branches)  # a probe reply without an answer
    assert n_probe < n_gen  # some finals were read from the completion, without a probe
    assert len({tuple(br[0]) for br in branches}) > 5  # branches differ (per-request seeds)


def test_collect_killed_midway_resumes_without_repeats(
    tmp_path: Path, problem_file: Path
) -> None:
    problems = load_problems(problem_file)
    expected, n_gen, n_probe = reference(SETTINGS, problems.problems)
    out = tmp_path / "run" / "fake.h5"
    ckpt = tmp_path / "run" / "fake.h5.ckpt"
    args = ["collect", "--model", "fake-model", "--problems", str(problem_file),
            "-o", str(out), "--branches", "4", "--probe-freq", "8", "--max-tokens", "36",
            "--max-probes", "6", "--concurrency", "3", "--backoff", "0.001", "--timeout", "5",
            "-q"]
    with FakeServer() as srv:
        srv.hold_after = (n_gen + n_probe) // 3
        env = {**os.environ, "JAX_PLATFORMS": "cpu"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "autotts_jax.cli", *args, "--base-url", srv.url],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 30
            # all three workers waiting on the server: every earlier reply is journalled
            while srv.held < 3:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the collector never reached the hold"
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        first = dict(srv.counts)
        srv.release()
        assert not out.exists()
        journals = sorted(ckpt.glob("q*.journal.jsonl"))
        assert journals, "the killed run left no journal"
        assert first["served_gen"] + first["served_probe"] == (n_gen + n_probe) // 3
        # a line torn by the kill is dropped on resume
        with open(journals[0], "ab") as f:
            f.write(b'{"e": "gen", "b": 1, "k"')

        assert main([*args, "--base-url", srv.url]) == 0
        # requests answered before the kill were not sent again (a kill between a reply and
        # its journal line would repeat at most `concurrency` requests; here none was)
        assert srv.counts["served_gen"] == n_gen
        assert srv.counts["served_probe"] == n_probe
    assert store_records(out) == expected
    assert not list(ckpt.glob("q*.journal.jsonl"))
    assert sorted(p.name for p in ckpt.glob("q*.json")) == ["q00000.json", "q00001.json",
                                                           "q00002.json"]


def test_collected_store_runs_through_evaluate(tmp_path: Path, problem_file: Path) -> None:
    from autotts_jax import cli, load_store

    out = tmp_path / "traj" / "fake-model" / "fakebench.h5"
    with FakeServer() as srv:
        result = collect(SETTINGS, fast(srv.url), load_problems(problem_file), out,
                         progress=None)
    assert result.output == out
    store = load_store(out)
    assert (store.meta.model, store.meta.benchmark, store.meta.probe_freq) == (
        "fake-model", "fakebench", 8)
    assert list(store.meta.gold_answer) == ["17", "42", "5"]
    # the no-answer marker is a stored answer that is never correct
    arrays, _ = read_store_arrays(out)
    marker = arrays["vocab"] == NO_ANSWER
    assert marker.any()
    assert not (arrays["is_correct"] & marker).any()
    if "evaluate" in cli._HYDRA_HELP:
        run = tmp_path / "run"
        proc = subprocess.run(
            [sys.executable, "-m", "autotts_jax.cli", "evaluate", "controller=asc",
             "betas=[0.2]", f"data.trajectories={out.parent.parent}", "evaluation.seeds=3",
             "output.progress=false", f"hydra.run.dir={run}"],
            capture_output=True, text=True, cwd=REPO, timeout=300,
            # an unoptimised XLA build compiles faster; this only checks that it runs
            env={**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS":
                 "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"},
        )
        assert proc.returncode == 0, proc.stderr
        rows = list(csv.DictReader((run / "results.csv").open(newline="")))
        assert [(r["model"], r["dataset"], r["method"]) for r in rows] == [
            ("fake-model", "fakebench", "asc")]
        assert int(rows[0]["episodes"]) == 3 * 3
        assert 0 < float(rows[0]["avg_tokens"])
    else:  # the evaluate command is not there yet: replay the store directly
        from autotts_jax import load
        from autotts_jax.controllers import get_controller
        from autotts_jax.engine.simulate import simulate

        episodes = simulate(get_controller("asc"), load(out),
                            [{"max_samples": 4, "threshold": 0.95}], seeds=range(3))
        assert episodes.correct.shape == (1, 3, 3)
        assert np.all(episodes.tokens > 0)


def test_transient_failures_are_retried(tmp_path: Path, problem_file: Path) -> None:
    problems = load_problems(problem_file)
    expected, n_gen, n_probe = reference(CAPPED, problems.problems)
    out = tmp_path / "fake.h5"
    with FakeServer(fail_every=3, delay=1.5) as srv:
        result = collect(CAPPED, fast(srv.url, timeout=0.5, retries=6),
                         problems, out, progress=None)
        counts = dict(srv.counts)
    for kind in FAILURES:
        assert counts.get(kind, 0) > 0, f"no {kind!r} failure was injected"
    # (>=: on a starved machine a healthy reply may also miss the timeout and be re-sent)
    assert counts["served_gen"] >= n_gen and counts["served_probe"] >= n_probe
    assert result.stats["gen_requests"] == n_gen and result.stats["probe_requests"] == n_probe
    assert result.stats["client_retries"] >= sum(counts[k] for k in FAILURES)
    assert result.stats["client_timeout"] >= counts["timeout"]
    assert result.stats["client_http_500"] == counts["500"]
    assert result.stats["client_bad_json"] == counts["truncated"]
    assert store_records(out) == expected


def test_outage_keeps_collected_data_and_resumes(tmp_path: Path, problem_file: Path) -> None:
    problems = load_problems(problem_file)
    expected, n_gen, n_probe = reference(SETTINGS, problems.problems)
    out = tmp_path / "fake.h5"
    with FakeServer() as srv:
        srv.down_after = (n_gen + n_probe) // 2
        gave_up = r"gave up after 3 attempts; last: HTTP 500: .*server is down.*resume"
        with pytest.raises(AutoTTSError, match=gave_up):
            collect(SETTINGS, fast(srv.url, retries=2), problems, out, progress=None)
        assert not out.exists()
        assert srv.counts["served_gen"] + srv.counts["served_probe"] == (n_gen + n_probe) // 2
        srv.down_after = None
        collect(SETTINGS, fast(srv.url), problems, out, progress=None)
        assert srv.counts["served_gen"] == n_gen
        assert srv.counts["served_probe"] == n_probe
    assert store_records(out) == expected


def test_rejected_probe_is_no_answer_and_rejected_generation_stops(
    tmp_path: Path, problem_file: Path
) -> None:
    problems = load_problems(problem_file)
    with FakeServer() as srv:
        srv.reject_probes = True
        result = collect(SETTINGS, fast(srv.url), problems, tmp_path / "a.h5", progress=None)
        assert result.stats["rejected_probes"] == srv.counts["rejected"] > 0
        records = store_records(tmp_path / "a.h5")
        probes = [p for r in records for br in r["each_branch"] for p in br[0]]
        assert probes.count(NO_ANSWER) == result.stats["rejected_probes"]
        wrong = CollectSettings(**{**SETTINGS.__dict__, "model": "no-such-model"})
        with pytest.raises(AutoTTSError, match=r"HTTP 404 \(not retried\).*no-such-model"):
            collect(wrong, fast(srv.url), problems, tmp_path / "b.h5", progress=None)
        # not retried; the branches already in flight (at most `concurrency`) stop too
        assert 1 <= srv.counts["unknown_model"] <= 3


def test_resume_with_other_settings_is_refused(tmp_path: Path, problem_file: Path) -> None:
    problems = load_problems(problem_file, limit=1)
    with FakeServer() as srv:
        collect(SETTINGS, fast(srv.url), problems, tmp_path / "a.h5", progress=None)
        other = CollectSettings(**{**SETTINGS.__dict__, "branches": 5})
        with pytest.raises(AutoTTSError, match=r"other settings \(branches: 4 there, 5 here\)"):
            collect(other, fast(srv.url), problems, tmp_path / "a.h5", progress=None)
        # more questions on the same checkpoints: only the new one is collected
        before = srv.counts["served_gen"]
        collect(SETTINGS, fast(srv.url), load_problems(problem_file, limit=2),
                tmp_path / "a.h5", progress=None)
        _, n_one, _ = reference(SETTINGS, problems.problems)
        _, n_two, _ = reference(SETTINGS, load_problems(problem_file, limit=2).problems)
        assert srv.counts["served_gen"] - before == n_two - n_one


def test_cli_estimate_and_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = ["collect", "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
            "-o", str(tmp_path / "x.h5")]
    assert main([*args, "--estimate", "--branches", "16"]) == 0
    err = capsys.readouterr().err
    assert "5 questions x 16 branches, <= 33 intervals of 500 tokens" in err
    assert "at most 5,280 requests" in err  # 5 x 16 x 2 x 33
    assert cost_estimate(SETTINGS, 3) == {"branches": 12, "depth": 5, "max_requests": 120,
                                          "max_completion_tokens": 12 * (36 + 5 * 32)}
    assert main([*args, "--prompt-template", "no placeholder"]) == 2
    assert "no {question} placeholder" in capsys.readouterr().err
    assert main([*args, "--problems", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "1"}\n{"question": "q2"}\n')
    assert main([*args, "--problems", str(bad)]) == 2
    assert "bad.jsonl: line 2: missing key 'answer' or 'gold_answer'" in capsys.readouterr().err
    assert main([*args, "--extra-body", '{"seed": 3}']) == 2
    assert "may not set seed" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "boxed"),
    [
        ("so \\boxed{17}.", "17"),
        ("\\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{2} then \\boxed{3", "2"),  # an unclosed box does not count
        ("\\fbox{x+1}", "x+1"),
        ("answer \\boxed 5 done", "5"),
        ("\\boxed{\\text{(A) } 4}", "\\text{(A) } 4"),
        ("no box, 12 and 13", None),
    ],
)
def test_find_boxed(text: str, boxed: str | None) -> None:
    assert find_boxed(text) == boxed


def test_last_number_and_normalisation() -> None:
    assert find_last_number("first 3, then -1,024 apples") == "-1024"
    assert find_last_number("ratio 7 / 8") == "7/8"
    assert find_last_number("x3 and 2.50") == "2.50"
    assert find_last_number("no digits") is None
    assert normalize_math(" $\\boxed{\\dfrac{1}{2}}$. ") == "\\frac{1}{2}"
    assert normalize_math("x = 007") == "7"
    assert normalize_math("\\text{1,024}") == "1024"
    assert normalize_math("12.0") == "12"
    assert normalize_math("90^\\circ") == "90"
    assert normalize_math("\\left( 1, 2 \\right)") == "( 1, 2 )"
    suffix = "**Final Answer**\n\\boxed{"
    assert answer_from(suffix + "204} because", "boxed-or-last-number", "math") == "204"
    assert answer_from(suffix + "204", "boxed-or-last-number", "math") == "204"  # cut short
    assert answer_from(suffix + "I am not sure.", "boxed-or-last-number", "math") == NO_ANSWER
    assert answer_from(suffix + " }", "boxed", "math") == NO_ANSWER  # blank is no answer
    assert answer_from("the answer is 5", "boxed", "none") == NO_ANSWER
