"""``autotts-jax evaluate``: the results files, the beta -> config mapping, the bootstrap, and
one clear error (no traceback) for each kind of bad input."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from autotts_jax.errors import AutoTTSError
from autotts_jax.experiments import evaluate as ev
from autotts_jax.experiments import results
from autotts_jax.experiments.bootstrap import accuracy_ci

_SCRIPT = Path(sys.executable).with_name("autotts-jax")  # the installed console script
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "autotts_jax.cli"]
SMALL = ["data.model=Qwen3-8B", "data.benchmark=aime24", "evaluation.seeds=3",
         "evaluation.workers=1", "output.progress=false"]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_evaluate_writes_results_csv_and_json(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli("evaluate", "controller=[sc,esc]", *SMALL, f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr
    with (out / "results.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(results.COLUMNS)
    assert [r["method"] for r in rows] == ["sc"] * 7 + ["esc"] * 3
    sc64 = rows[6]
    assert json.loads(sc64["config"]) == {"max_samples": 64}
    assert float(sc64["beta"]) == 1.0 and sc64["episodes"] == "90" and sc64["seeds"] == "3"
    assert float(sc64["acc_ci_low"]) <= float(sc64["accuracy"]) <= float(sc64["acc_ci_high"])
    assert float(sc64["avg_seq_tokens"]) < float(sc64["avg_tokens"])
    body = json.loads((out / "results.json").read_text())
    assert body["format"] == results.FORMAT and body["columns"] == list(results.COLUMNS)
    assert len(body["rows"]) == 10 and body["meta"]["seeds"] == 3
    assert results.read(out / "results.json") == results.read(out / "results.csv")
    # the printed table
    assert "max_samples=64" in proc.stdout and "evaluate: 10 rows from 2 jobs" in proc.stdout


def _copy_store(root: Path, model: str, bench: str, trajectories_dir: Path) -> None:
    (root / model).mkdir(parents=True, exist_ok=True)
    shutil.copy(trajectories_dir / model / f"{bench}.h5", root / model / f"{bench}.h5")


BAD = {
    "unknown controller": (["controller=nope"], "controller/nope"),
    "unknown model": (["data.model=Qwen3-99B"], "unknown model 'Qwen3-99B'"),
    "unknown benchmark": (["data.benchmark=gsm8k"], "unknown benchmark 'gsm8k'"),
    "beta above 1": (["controller=cmc", "betas=[0.5,1.5]"], "beta 1.5 is outside [0, 1]"),
    "beta below 0": (["controller=cmc", "controller.cmc.betas=[-0.1]"],
                     "beta -0.1 is outside [0, 1]"),
    "no trajectories dir": (["data.trajectories=/nonexistent/trajectories"],
                            "trajectories directory not found"),
    "typo in a key": (["evaluation.sedes=3"], "sedes"),
    "zero seeds": (["evaluation.seeds=0"], "evaluation.seeds must be >= 1"),
    "unknown controller parameter": (["controller=asc", "+controller.asc.params.treshold=0.9"],
                                     "unknown parameter"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_clear_error(case: str, tmp_path: Path) -> None:
    overrides, message = BAD[case]
    smalls = [s for s in SMALL if s.split("=")[0] not in {o.split("=")[0] for o in overrides}]
    proc = run_cli("evaluate", *smalls, *overrides, f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    if case not in ("unknown controller", "typo in a key"):  # those are Hydra's own messages
        assert proc.returncode == 2
        assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ")
    assert not (tmp_path / "run" / "results.csv").exists()


def test_missing_trajectories_file(tmp_path: Path, trajectories_dir: Path) -> None:
    root = tmp_path / "traj"
    _copy_store(root, "Qwen3-8B", "aime24", trajectories_dir)
    _copy_store(root, "Qwen3-4B", "aime25", trajectories_dir)
    proc = run_cli("evaluate", "controller=sc", "data.model=[Qwen3-8B,Qwen3-4B]",
                   "data.benchmark=aime24", f"data.trajectories={root}",
                   f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.strip().count("\n") == 0
    assert "no trajectories file for model 'Qwen3-4B', benchmark 'aime24'" in proc.stderr


# --------------------------------------------------------------------------- in process


def test_beta_maps_to_grid_positions() -> None:
    grid = [1, 4, 8, 16, 32, 64]
    assert [ev.grid_index(i / 5, 6) for i in range(6)] == [0, 1, 2, 3, 4, 5]
    assert ev.grid_index(0.5, 6) == 3  # 2.5 rounds up
    assert ev.grid_index(0.49, 6) == 2
    ccfg = {"name": "asc", "params": {"threshold": 0.95}, "grid_param": "max_samples",
            "grid": grid, "betas": None}
    controller, points = ev.controller_points("asc", ccfg)
    assert controller.name == "asc"
    assert [p.config["max_samples"] for p in points] == grid
    assert [p.beta for p in points] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert all(p.config["threshold"] == 0.95 for p in points)
    _, points = ev.controller_points("asc", ccfg, betas=[0.0, 1.0])
    assert [(p.config["max_samples"], p.beta) for p in points] == [(1, 0.0), (64, 1.0)]
    cmc = {"name": "cmc", "grid_param": "beta", "grid": [0.0, 0.5, 1.0], "betas": [0.25]}
    _, points = ev.controller_points("cmc", cmc)
    assert [(p.config, p.beta) for p in points] == [({"beta": 0.25}, 0.25)]
    with pytest.raises(AutoTTSError, match="outside"):
        ev.controller_points("cmc", {**cmc, "betas": [2]})
    with pytest.raises(AutoTTSError, match="no parameter"):
        ev.controller_points("asc", {**ccfg, "grid_param": "beta"})


def test_bootstrap_is_seeded_and_contains_the_estimate() -> None:
    rng = np.random.default_rng(1)
    correct = rng.random((4, 5, 30)) < np.linspace(0.1, 0.9, 4)[:, None, None]
    a = accuracy_ci(correct, samples=500, seed=7)
    b = accuracy_ci(correct, samples=500, seed=7)
    c = accuracy_ci(correct, samples=500, seed=8)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[1], c[1])
    point, low, high = a
    np.testing.assert_allclose(point, 100 * correct.mean(axis=(1, 2)))
    assert np.all(low <= point) and np.all(point <= high) and np.all(low < high)
    # a narrower level gives a narrower interval; constant data a zero-width one
    _, low80, high80 = accuracy_ci(correct, samples=500, seed=7, level=0.8)
    assert np.all(high80 - low80 <= high - low)
    p, lo, hi = accuracy_ci(np.ones((1, 3, 10), bool), samples=50, seed=0)
    assert p[0] == lo[0] == hi[0] == 100.0
    with pytest.raises(ValueError):
        accuracy_ci(correct, level=1.5)


def _jobs(controllers: list[str], trajectories_dir: Path) -> list[ev.Job]:
    grids = {"sc": ("max_samples", [1, 64]), "esc": ("max_samples", [16, 64]),
             "cmc": ("beta", [0.0, 1.0])}
    conf = {
        "data": {"model": "Qwen3-8B", "benchmark": ["aime24", "aime25"],
                 "trajectories": str(trajectories_dir)},
        "controller": {c: {"name": c, "grid_param": grids[c][0], "grid": grids[c][1]}
                       for c in controllers},
    }
    return ev.plan(conf)


def test_worker_processes_give_the_same_rows(trajectories_dir: Path) -> None:
    jobs = _jobs(["sc", "esc"], trajectories_dir)
    evaluation = {"seeds": 2, "cost_model": "reference",
                  "bootstrap": {"samples": 100, "seed": 3, "level": 0.9}}
    one = ev.run(jobs, {**evaluation, "workers": 1}, progress=False)
    two = ev.run(jobs, {**evaluation, "workers": 2}, progress=False)
    strip = [{k: v for k, v in r.items() if k != "wall_time_s"} for r in one]
    assert strip == [{k: v for k, v in r.items() if k != "wall_time_s"} for r in two]
    assert [r["method"] for r in one] == ["sc", "sc", "esc", "esc"] * 2


def test_jobs_are_bundled_by_controller(trajectories_dir: Path) -> None:
    jobs = _jobs(["sc", "esc", "cmc"], trajectories_dir)  # 2 stores x 3 controllers
    names = [j.controller.name for j in jobs]
    two = ev.bundles(jobs, 2, 100)
    assert sorted(i for b in two for i in b) == list(range(6))
    assert {names[i] for i in two[0]} == {"cmc"}  # the costliest controller alone
    four = ev.bundles(jobs, 4, 100)
    assert len(four) == 4 and sum(len(b) for b in four) == 6
    assert all(len({names[i] for i in b}) == 1 for b in four)
    assert ev.resolve_workers(0, jobs, 2) == 1  # small work: no worker processes
    assert ev.resolve_workers(3, jobs, 2) == 3
    with pytest.raises(AutoTTSError, match="workers"):
        ev.resolve_workers(-1, jobs, 2)
