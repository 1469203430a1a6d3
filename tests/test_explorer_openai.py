"""A full discovery run against an OpenAI-compatible server on 127.0.0.1 with canned replies:
every bad candidate is rejected with a useful reason and the run completes."""

from __future__ import annotations

import json

import pytest
from conftest import TRAJECTORIES_DIR
from explorer_cases import (
    FORBIDDEN_IMPORT,
    OUT_OF_RANGE,
    SYNTAX_ERROR,
    TRACE_LOOP,
    VALID,
    ChatServer,
    fenced,
    read_index,
    use_jax_cache,
)

from autotts_jax.cli import main
from autotts_jax.explorer import load_controller_module
from autotts_jax.explorer.proposers import extract_code

QUICK = ["seeds=1", "betas=[0.0,0.5,1.0]", "controller=[sc]", "heldout.enabled=false",
         "sandbox.conformance=false", "sandbox.trace_s=5", "prompt.traces=0",
         "prompt.examples=false"]


@pytest.fixture(autouse=True, scope="module")
def _jax_cache():
    with pytest.MonkeyPatch.context() as mp:
        use_jax_cache(mp)
        yield


def test_discovery_run_against_a_local_chat_server(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AUTOTTS_TEST_KEY", "sk-test-123")
    replies = [fenced(VALID), fenced(SYNTAX_ERROR), fenced(FORBIDDEN_IMPORT),
               fenced(TRACE_LOOP), fenced(OUT_OF_RANGE)]
    out = tmp_path / "run"
    with ChatServer(replies, fail_first=1) as server:
        rc = main(["discover", "explorer=openai", f"explorer.base_url={server.url}",
                   "explorer.model=test-model", "explorer.api_key_env=AUTOTTS_TEST_KEY",
                   "explorer.backoff_s=0.01", "explorer.seed=7", "rounds=1", "candidates=5",
                   f"out={out}", *QUICK])
    assert rc == 0
    index = read_index(out)
    assert [(r["round"], r["candidate"]) for r in index] == [(0, c) for c in range(5)]
    status = [(r["status"], r["stage"]) for r in index]
    assert status == [("accepted", "ok"), ("rejected", "static"), ("rejected", "static"),
                      ("rejected", "timeout"), ("rejected", "invariant")], status
    ok = index[0]
    assert ok["name"] == "adaptive_reads" and ok["reason"] == ""
    assert set(ok["search"]) == {"Qwen3-0.6B", "Qwen3-1.7B", "Qwen3-4B", "Qwen3-8B"}
    assert [p["beta"] for p in ok["search"]["Qwen3-8B"]] == [0.0, 0.5, 1.0]
    assert ok["score"] > 0 and 0 < ok["peak_accuracy"] <= 100
    assert "syntax error at line" in index[1]["reason"]
    assert "import of 'os' is not allowed" in index[2]["reason"]
    assert "phase 'trace'" in index[3]["reason"] and "killed" in index[3]["reason"]
    assert "out of range" in index[4]["reason"]
    # The requests: model, per-candidate seeds, the key from the environment, the prompt.
    assert len(server.requests) == 5  # the 503 was retried, not counted
    assert [r["seed"] for r in server.requests] == [7, 8, 9, 10, 11]
    assert all(r["model"] == "test-model" for r in server.requests)
    assert all(h.get("Authorization") == "Bearer sk-test-123" for h in server.headers)
    prompt = server.requests[0]["messages"][-1]["content"]
    assert "## The controller protocol" in prompt and "Score = accuracy at matched budget" in prompt
    assert "aime25" not in prompt and "hmmt25" not in prompt
    # History on disk: every file of every candidate, and the exported best controller.
    c0 = out / "rounds" / "r0000" / "c00"
    for name in ("prompt.md", "response.txt", "candidate.py", "validation.json", "metrics.json",
                 "digest.md", "episodes.npz", "record.json"):
        assert (c0 / name).is_file(), name
    assert (c0 / "candidate.py").read_text() == VALID
    # The sandbox child opened no held-out file and nothing under trajectories/.
    seen = json.loads((c0 / "validation.json").read_text())["sandbox"]["opened"]
    root = str(TRAJECTORIES_DIR.resolve())
    assert not [p for p in seen if p.startswith(root) or "aime25" in p or "hmmt25" in p]
    bad = json.loads((out / "rounds" / "r0000" / "c03" / "validation.json").read_text())
    assert bad["sandbox"]["stage"] == "timeout"
    best = load_controller_module(out / "best_controller.py")
    assert best.name == "adaptive_reads" and dict(best.defaults) == {"beta": 0.5}
    text = capsys.readouterr().out
    assert "r0000c00 accepted" in text and "r0000c04 rejected (invariant)" in text


def test_extract_code_from_chat_replies():
    assert extract_code(fenced(VALID)) == VALID
    two = "```python\nx = 1\n```\nand the module:\n```py\n" + VALID + "```"
    assert extract_code(two) == VALID
    assert extract_code(VALID) == VALID  # unfenced, but a module
    assert extract_code("I cannot help with that.") is None


def test_unreachable_endpoint_is_a_rejection_not_a_crash(tmp_path):
    from autotts_jax.explorer.proposers import OpenAIProposer, ProposerError

    p = OpenAIProposer({"base_url": "http://127.0.0.1:9/v1", "model": "m", "retries": 1,
                        "backoff_s": 0.01, "timeout_s": 2})
    with pytest.raises(ProposerError, match="no reply after 2 attempts"):
        p.propose("hi", round=0, candidate=0, seed=0)
    with ChatServer([""]) as server:  # an empty message is malformed, not retried forever
        p = OpenAIProposer({"base_url": server.url, "model": "m", "retries": 0})
        with pytest.raises(ProposerError, match="malformed reply"):
            p.propose("hi", round=0, candidate=0, seed=0)


@pytest.mark.parametrize("overrides, message", [
    (["explorer=openai"], "explorer.base_url is required with explorer=openai"),
    (["explorer=openai", "explorer.base_url=localhost:8000", "explorer.model=m"],
     "explorer.base_url must be an http(s) URL"),
    (["explorer=command"], "explorer.command is required with explorer=command"),
])
def test_missing_backend_settings_fail_before_any_work(overrides, message, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        main(["discover", *overrides, f"out={out}"])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (out / "run.json").exists() and not (out / "index.jsonl").exists()
