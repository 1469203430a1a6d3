"""The ``command`` backend (an agent CLI: prompt on stdin, answer on stdout), a two-round run
with history feedback, export, and the held-out evaluation at the end."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from explorer_cases import VALID, fenced, read_index, use_jax_cache

from autotts_jax.cli import main
from autotts_jax.explorer import load_controller_module
from autotts_jax.explorer.proposers import CommandProposer, ProposerError

BETTER = VALID.replace("round(0.8 + 0.19 * b, 4)", "round(0.7 + 0.29 * b, 4)")

AGENT = textwrap.dedent('''\
    import json, os, sys
    prompt = sys.stdin.read()
    r, c = int(os.environ["AUTOTTS_ROUND"]), int(os.environ["AUTOTTS_CANDIDATE"])
    log = os.path.join(os.environ["AGENT_LOG"], f"prompt_{r}_{c}.md")
    open(log, "w").write(prompt)
    replies = json.load(open(os.environ["AGENT_REPLIES"]))
    reply = replies[f"{r},{c}"]
    if reply is None:
        print("agent crashed: out of credits", file=sys.stderr)
        sys.exit(3)
    print(reply)
''')


@pytest.fixture(autouse=True, scope="module")
def _jax_cache():
    with pytest.MonkeyPatch.context() as mp:
        use_jax_cache(mp)
        yield


def test_command_backend_two_rounds_with_feedback_and_held_out(tmp_path, monkeypatch, capsys):
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    replies = {"0,0": fenced(VALID), "0,1": None, "1,0": fenced(BETTER),
               "1,1": "I would rather not write code today."}
    (tmp_path / "replies.json").write_text(json.dumps(replies))
    logs = tmp_path / "logs"
    logs.mkdir()
    monkeypatch.setenv("AGENT_LOG", str(logs))
    monkeypatch.setenv("AGENT_REPLIES", str(tmp_path / "replies.json"))
    out = tmp_path / "run"
    rc = main(["discover", "explorer=command", f"explorer.command={sys.executable} {agent}",
               "rounds=2", "candidates=2", f"out={out}", "seeds=1", "betas=[0.0,0.5,1.0]",
               "controller=[sc]", "sandbox.conformance=false", "prompt.traces=1",
               "evaluation.seeds=1", "evaluation.bootstrap.samples=20",
               "heldout.betas=[0.0,0.5,1.0]", "plots.formats=[png]"])
    assert rc == 0
    index = read_index(out)
    assert [(r["id"], r["status"], r["stage"]) for r in index] == [
        ("r0000c00", "accepted", "ok"), ("r0000c01", "rejected", "proposer"),
        ("r0001c00", "accepted", "ok"), ("r0001c01", "rejected", "response")]
    assert "command exited with status 3: agent crashed: out of credits" in index[1]["reason"]
    assert "no Python code block" in index[3]["reason"]
    # Round 1's prompt carries round 0's history: the accepted curve, its digest and source,
    # and the rejection reason.
    p1 = (logs / "prompt_1_0.md").read_text()
    assert "#1: r0000c00 (adaptive_reads)" in p1 and "Premature stops" in p1
    assert "r0000c01 (proposer)" in p1 and "out of credits" in p1
    assert "```python\n" + VALID.rstrip() in p1
    assert (logs / "prompt_1_0.md").read_text() == (out / "rounds/r0001/c00/prompt.md").read_text()
    # Selection, export and the held-out evaluation.
    best = max((r for r in index if r["status"] == "accepted"),
               key=lambda r: (r["score"], -r["mean_tokens"]))
    header = (out / "best_controller.py").read_text().splitlines()[0]
    assert best["id"] in header
    controller = load_controller_module(out / "best_controller.py")
    assert controller.name == "adaptive_reads"
    held = out / "heldout"
    table = (held / "heldout_table.md").read_text()
    assert f"Discovered ({best['id']})" in table and "| SC |" in table
    rows = json.loads((held / "results.json").read_text())["rows"]
    assert {r["dataset"] for r in rows} == {"aime25", "hmmt25"}
    found = {(r["model"], r["dataset"], r["beta"]) for r in rows if r["method"] == "discovered"}
    assert len(found) == 4 * 2 * 3
    assert (held / "main_table.md").is_file() and list(held.glob("scaling_*.png"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best"]["id"] == best["id"] and "discovered" in summary["heldout"]["scores"]
    text = capsys.readouterr().out
    assert "Discovered controller vs baselines on the held-out split" in text


def test_exported_controller_evaluates_like_a_baseline(tmp_path):
    from autotts_jax.engine.check import check_controller

    path = tmp_path / "ctrl.py"
    path.write_text(VALID)
    controller = load_controller_module(path)
    check_controller(controller, configs=[{"beta": 0.0}, {"beta": 1.0}])
    assert np.isclose(controller.make_params({"beta": 1.0})["threshold"], 0.99)
    # ... and through `evaluate`, beside a built-in, in one process and over worker processes
    runs = []
    for workers in (1, 2):
        out = tmp_path / f"eval{workers}"
        rc = main(["evaluate", "controller=[sc,module]", f"controller.module.name={path}",
                   "controller.module.betas=[0.0,1.0]", "controller.sc.betas=[1.0]",
                   "data.model=Qwen3-8B", "data.benchmark=aime24", "evaluation.seeds=2",
                   f"evaluation.workers={workers}", "output.progress=false",
                   f"hydra.run.dir={out}"])
        assert rc in (None, 0)
        rows = json.loads((out / "results.json").read_text())["rows"]
        assert [(r["method"], r["beta"]) for r in rows] == [
            ("sc", 1.0), ("adaptive_reads", 0.0), ("adaptive_reads", 1.0)]
        runs.append(rows)
    strip = [[{k: v for k, v in r.items() if k != "wall_time_s"} for r in rows] for rows in runs]
    assert strip[0] == strip[1]
    reads = {r["beta"]: r for r in runs[0] if r["method"] == "adaptive_reads"}
    assert reads[0.0]["avg_tokens"] < reads[1.0]["avg_tokens"]


def test_command_timeout_and_bad_modules(tmp_path):
    p = CommandProposer({"command": "sleep 30", "timeout_s": 1})
    with pytest.raises(ProposerError, match="timed out after 1s"):
        p.propose("x", round=0, candidate=0, seed=0)
    p = CommandProposer({"command": "cat"})  # echoes the prompt back
    assert p.propose("hello", round=0, candidate=0, seed=0) == "hello"
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nCONTROLLER = None\n")
    from autotts_jax.errors import AutoTTSError

    with pytest.raises(AutoTTSError, match="fails the static checks"):
        load_controller_module(bad)
    bad.write_text("X = 1\nCONTROLLER = X\n")
    with pytest.raises(AutoTTSError, match="must define CONTROLLER = Controller"):
        load_controller_module(bad)


def test_the_agent_directory_holds_the_prompt_only():
    p = CommandProposer({"command": "ls -A; cat prompt.md"})
    assert p.propose("THE PROMPT", round=0, candidate=0, seed=0) == "prompt.md\nTHE PROMPT"


# An agent that reports what it can reach: the prompt, the search stores, the held-out stores,
# shared/, the checkout, the user's home, and whether it can write to a store.
PROBE_AGENT = r'''
for name in prompt.md "$P_SEARCH" "$P_HELDOUT" "$P_SHARED" "$P_README" "$P_HOMEFILE"; do
  if [ -r "$name" ]; then echo "sees $name"; else echo "hidden $name"; fi
done
if [ -d "$P_SHARED_PARENT/shared" ]; then echo "sees shared dir"; else echo "hidden shared dir"; fi
if ( : >> "$P_SEARCH" ) 2>/dev/null; then echo "store writable"; else echo "store read-only"; fi
echo "key ${OPENAI_API_KEY:-none}"
echo "cwd $(pwd)"
'''


def _bwrap_problem() -> str | None:
    from autotts_jax.errors import AutoTTSError
    from autotts_jax.untrusted.sandbox import resolve_containment

    try:
        resolve_containment("bwrap")
    except AutoTTSError as exc:
        return str(exc)
    return None


@pytest.mark.skipif(_bwrap_problem() is not None,
                    reason=f"bubblewrap unavailable here ({_bwrap_problem()}); .ci/run "
                           "installs it")
def test_isolated_agent_sees_the_prompt_and_the_search_stores_only(tmp_path, monkeypatch):
    from conftest import REPO_ROOT, SHARED_DIR, TRAJECTORIES_DIR

    from autotts_jax.store.split import SearchSplit

    split = SearchSplit(TRAJECTORIES_DIR)
    home_file = Path.home() / ".autotts-agent-probe"
    home_file.write_text("private")
    env = {"P_SEARCH": split.path(split.models[0]),
           "P_HELDOUT": TRAJECTORIES_DIR.resolve() / split.models[0] / "aime25.h5",
           "P_SHARED": SHARED_DIR, "P_SHARED_PARENT": SHARED_DIR.parent,
           "P_README": REPO_ROOT / "README.md", "P_HOMEFILE": home_file,
           "OPENAI_API_KEY": "sk-agent-needs-its-key"}
    for k, v in env.items():
        monkeypatch.setenv(k, str(v))
    try:
        plain = CommandProposer({"command": PROBE_AGENT}).propose(
            "x", round=0, candidate=0, seed=0)
        isolated = CommandProposer({"command": PROBE_AGENT, "isolate": True},
                                   split.paths()).propose("x", round=0, candidate=0, seed=0)
    finally:
        home_file.unlink()
    # Without isolation the agent reaches what the user reaches.
    assert f"sees {env['P_HELDOUT']}" in plain and f"sees {home_file}" in plain
    lines = isolated.splitlines()
    assert "sees prompt.md" in lines
    assert f"sees {env['P_SEARCH']}" in lines
    for hidden in ("P_HELDOUT", "P_SHARED", "P_README"):
        assert f"hidden {env[hidden]}" in lines, (hidden, isolated)
    assert f"hidden {home_file}" in lines
    assert "hidden shared dir" in lines
    assert "store read-only" in lines
    assert "key sk-agent-needs-its-key" in lines  # the environment is passed through
