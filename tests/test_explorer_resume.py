"""``resume=true`` after a ``kill -9`` mid-round: nothing lost, nothing duplicated; no forced
resume; recorded responses are reused instead of asking the proposer again."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from explorer_cases import FORBIDDEN_IMPORT, SYNTAX_ERROR, VALID, fenced, read_index, use_jax_cache

from autotts_jax.errors import AutoTTSError
from autotts_jax.explorer.config import default_conf
from autotts_jax.explorer.loop import run_loop

AGENT = textwrap.dedent('''\
    import json, os, sys, time
    sys.stdin.read()
    r, c = int(os.environ["AUTOTTS_ROUND"]), int(os.environ["AUTOTTS_CANDIDATE"])
    marker = os.environ["AGENT_MARKER"]
    if (r, c) == (0, 1) and not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(300)  # the test kills the run while this candidate is in progress
    replies = json.load(open(os.environ["AGENT_REPLIES"]))
    print(replies[f"{r},{c}"])
''')

QUICK = ["seeds=1", "betas=[0.0,0.5,1.0]", "controller=[sc]", "heldout.enabled=false",
         "sandbox.conformance=false", "prompt.traces=0", "prompt.examples=false"]


@pytest.fixture(autouse=True, scope="module")
def _jax_cache():
    with pytest.MonkeyPatch.context() as mp:
        use_jax_cache(mp)
        yield


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "autotts_jax.cli", "discover", *args]


def test_kill_9_mid_round_then_resume(tmp_path):
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    replies = {"0,0": fenced(VALID), "0,1": fenced(SYNTAX_ERROR),
               "1,0": fenced(FORBIDDEN_IMPORT), "1,1": "no code"}
    (tmp_path / "replies.json").write_text(json.dumps(replies))
    marker = tmp_path / "agent.pid"
    env = dict(os.environ, AGENT_MARKER=str(marker),
               AGENT_REPLIES=str(tmp_path / "replies.json"))
    out = tmp_path / "run"
    args = ["explorer=command", f"explorer.command={sys.executable} {agent}", "rounds=2",
            "candidates=2", f"out={out}", *QUICK]
    proc = subprocess.Popen(_cli(*args), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the run never reached candidate r0000c01"
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # kill -9 the whole run
        proc.wait()
        try:
            os.kill(int(marker.read_text() or 0), signal.SIGKILL)  # the sleeping agent
        except (ValueError, ProcessLookupError, FileNotFoundError):
            pass
    before = read_index(out)
    assert [r["id"] for r in before] == ["r0000c00"]
    first = (out / "rounds/r0000/c00/record.json").read_text()
    assert (out / "rounds/r0000/c01/prompt.md").is_file()  # in progress, not committed
    assert not (out / "rounds/r0000/c01/record.json").exists()

    # Not resuming refuses to touch the run; resuming with other settings too.
    again = subprocess.run(_cli(*args), env=env, capture_output=True, text=True)
    assert again.returncode == 2 and "already holds a discovery run" in again.stderr
    other = subprocess.run(_cli(*[a if a != "seeds=1" else "seeds=2" for a in args],
                                "resume=true"), env=env, capture_output=True, text=True)
    assert other.returncode == 2 and "resume with different settings" in other.stderr

    done = subprocess.run(_cli(*args, "resume=true"), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    index = read_index(out)
    ids = [r["id"] for r in index]
    assert ids == ["r0000c00", "r0000c01", "r0001c00", "r0001c01"]  # none lost or repeated
    assert (out / "rounds/r0000/c00/record.json").read_text() == first  # untouched
    assert [r["stage"] for r in index] == ["ok", "static", "static", "response"]
    assert index[0] == before[0]

    # Same seeds + the same recorded responses = the same run (the replay backend).
    out2 = tmp_path / "replayed"
    replay = subprocess.run(_cli("explorer=replay", f"explorer.from_dir={out}", "rounds=2",
                                 "candidates=2", f"out={out2}", *QUICK),
                            env=env, capture_output=True, text=True)
    assert replay.returncode == 0, replay.stdout + replay.stderr

    def strip(recs):
        return [{k: v for k, v in r.items() if k not in ("seconds", "backend")} for r in recs]

    assert strip(read_index(out2)) == strip(index)
    for name in ("candidate.py", "metrics.json", "digest.md"):
        assert (out2 / "rounds/r0000/c00" / name).read_text() == (
            out / "rounds/r0000/c00" / name).read_text()


def test_resume_reuses_a_recorded_response(tmp_path):
    """A response recorded before a crash is used as is: the proposer is not asked again."""
    out = tmp_path / "run"
    conf = default_conf(out=str(out), rounds=1, candidates=1, seeds=1, betas=[0.0, 1.0],
                        controller={}, explorer={"name": "command", "command": "false"},
                        heldout={"enabled": False}, prompt={"traces": 0, "examples": False})
    (out / "rounds/r0000/c00").mkdir(parents=True)
    with pytest.raises(AutoTTSError, match="run.json is missing"):
        run_loop({**conf, "resume": True}, log=lambda _: None)
    # A first run whose proposer fails ("false" exits 1): recorded, not retried on resume.
    shutil.rmtree(out)
    summary = run_loop(conf, log=lambda _: None)
    assert summary["rejected"] == 1
    rec = read_index(out)[0]
    assert rec["stage"] == "proposer" and "exited with status 1" in rec["reason"]
    # Simulate a crash after the response of a new round was written but before its record.
    conf2 = {**conf, "rounds": 2, "resume": True}
    (out / "rounds/r0001/c00").mkdir(parents=True)
    (out / "rounds/r0001/c00/response.txt").write_text(fenced(SYNTAX_ERROR))
    run_loop(conf2, log=lambda _: None)  # "false" would fail if it were asked
    recs = read_index(out)
    assert [r["id"] for r in recs] == ["r0000c00", "r0001c00"]
    assert recs[1]["stage"] == "static" and "syntax error" in recs[1]["reason"]
