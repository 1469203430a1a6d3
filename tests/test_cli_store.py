"""The installed ``autotts-jax`` command, run as a user runs it (a subprocess).

The in-process cases of every bad input are in ``test_store_errors.py``; here a few of them go
through the real console script to prove the exit status, the single stderr line and the
absence of output hold outside pytest's capture too.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
from conftest import REPO_ROOT, STORES, TRAJECTORIES_DIR, UPSTREAM_DIR, files_under, requires_shared


def _command() -> list[str]:
    """The ``autotts-jax`` console script of the running interpreter's environment."""
    beside = Path(sys.executable).parent / "autotts-jax"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("autotts-jax")
    if found is None:
        pytest.fail("the autotts-jax command is not installed (pip install -e .)")
    return [found]


def run(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_command(), *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def assert_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_info_prints_published_figures():
    proc = run("info", "trajectories/Qwen3-8B/aime24.h5")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "Qwen3-8B / aime24" in proc.stdout
    assert re.search(r"^\s*pass@1\s+75\.7%$", proc.stdout, re.M), proc.stdout
    assert re.search(r"^\s*maj@128\s+80\.0%$", proc.stdout, re.M), proc.stdout


def test_info_all_shipped_stores_json():
    paths = [f"trajectories/{s}.h5" for s in STORES]
    proc = run("info", "--json", *paths)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["model"], r["benchmark"]) for r in rows] == [tuple(s.split("/")) for s in STORES]
    assert all(r["schema_version"] == 1 and r["questions"] == 30 for r in rows)


def test_pack_missing_key_subprocess(make_upstream, tmp_path):
    def drop_gold(records):
        del records[0]["gold_answer"]

    src = make_upstream(drop_gold)
    out = tmp_path / "out"
    proc = run("pack", str(src), str(out))
    assert_error(proc, f"error: {src}: ", "question 0", "missing key 'gold_answer'")
    assert files_under(out) == []


def test_pack_mixed_probe_freq_subprocess(make_upstream, tmp_path):
    def mix(records):
        records[1]["probe_freq"] = 500

    src = make_upstream(mix)
    out = tmp_path / "out.h5"
    proc = run("pack", str(src), str(out))
    assert_error(proc, str(src), "probe_freq", "mixed")
    assert files_under(tmp_path / "out.h5") == []
    assert [p.name for p in files_under(tmp_path)] == [src.name]


def test_pack_truncated_json_subprocess(make_upstream, tmp_path):
    src = make_upstream(raw='[{"question": "q", "each_branch": [[["1"], 20')
    proc = run("pack", str(src), str(tmp_path / "out"))
    assert_error(proc, str(src), "not valid JSON")
    assert files_under(tmp_path / "out") == []


def test_pack_nonexistent_path_subprocess(tmp_path):
    proc = run("pack", str(tmp_path / "nope"), str(tmp_path / "out"))
    assert_error(proc, str(tmp_path / "nope"), "no such file or directory")
    assert files_under(tmp_path / "out") == []


def test_info_other_schema_version_subprocess(tmp_path):
    store = tmp_path / "v2.h5"
    shutil.copyfile(TRAJECTORIES_DIR / "Qwen3-8B" / "aime24.h5", store)
    with h5py.File(store, "r+") as f:
        f.attrs["schema_version"] = 2
    proc = run("info", str(store))
    assert_error(proc, f"error: {store}: ", "schema_version 2", "not supported")
    out = tmp_path / "out" / "v2.json"
    proc = run("unpack", str(store), str(out))
    assert_error(proc, str(store), "schema_version")
    assert files_under(out.parent) == []


def test_pack_then_unpack_subprocess(make_upstream, tmp_path):
    src = make_upstream()
    out = tmp_path / "store.h5"
    proc = run("pack", str(src), str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"wrote {out}")
    back = tmp_path / "back.json"
    proc = run("unpack", str(out), str(back))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(back.read_text(encoding="utf-8")) == json.loads(src.read_text("utf-8"))


@requires_shared
def test_pack_upstream_tree_subprocess_matches_committed(tmp_path):
    """``autotts-jax pack ../shared/upstream_replay trajectories``, as the README says, into a
    scratch directory: the same twelve files, byte for byte."""
    out = tmp_path / "trajectories"
    proc = run("pack", str(UPSTREAM_DIR), str(out))
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == len(STORES)
    for store in STORES:
        rel = f"{store}.h5"
        assert (out / rel).read_bytes() == (TRAJECTORIES_DIR / rel).read_bytes(), rel
    assert len(files_under(out)) == len(STORES)
