"""Hydra multirun sweeps: through the submitit launcher on this machine (``submitit_local``,
the same code path as SLURM), and the shipped SLURM launcher config composes."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from autotts_jax.experiments import results

_SCRIPT = Path(sys.executable).with_name("autotts-jax")
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "autotts_jax.cli"]

pytest.importorskip(
    "hydra_plugins.hydra_submitit_launcher",
    reason="hydra-submitit-launcher is not installed (pip install -e '.[test]' installs it)",
)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600)


def test_multirun_with_the_submitit_local_launcher(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "evaluate", "-m", "controller=sc,esc", "data.model=Qwen3-8B", "data.benchmark=aime24",
        "evaluation.seeds=2", "output.progress=false", "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    methods = {}
    for job in ("0", "1"):
        with (sweep / job / "results.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        methods[job] = {r["method"] for r in rows}
        assert (sweep / job / "results.json").is_file()
        # each job's log file records the run: the backend first, the summary last
        log = (sweep / job / "evaluate.log").read_text().splitlines()
        assert "[autotts_jax.evaluate][INFO] - jax " in log[0] and "backend" in log[0]
        assert any(f"evaluate: {len(rows)} rows from 1 jobs" in ln for ln in log)
    assert methods == {"0": {"sc"}, "1": {"esc"}}
    assert any((sweep / ".submitit").iterdir())  # the jobs went through submitit
    # the report reads a whole sweep directory
    rows = results.read_all([sweep])
    assert {r["method"] for r in rows} == {"sc", "esc"}
    out = tmp_path / "rep"
    proc = run_cli("report", f"results=[{sweep}]", f"out={out}", "plots.formats=[png]")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "main_table.csv").is_file() and (out / "scaling_Qwen3-8B_aime24.png").is_file()


def test_slurm_launcher_config_composes() -> None:
    proc = run_cli("evaluate", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                   "--cfg", "hydra", "-p", "hydra.launcher")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "SlurmLauncher" in out
    assert "gpus_per_node: 1" in out and "partition: gpu" in out


def test_local_submitit_launcher_config_composes() -> None:
    proc = run_cli("evaluate", "hydra/launcher=local", "--cfg", "hydra", "-p", "hydra.launcher")
    assert proc.returncode == 0, proc.stderr
    assert "submitit_launcher.LocalLauncher" in proc.stdout and "gpus_per_node: 0" in proc.stdout
