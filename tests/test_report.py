"""``autotts-jax report``: main table (md + csv) beside the paper's figures, headline, Pareto
front and one scaling PNG per (model, benchmark), from results files or evaluated on the spot."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from autotts_jax.experiments import evaluate as ev
from autotts_jax.experiments import report as rep
from autotts_jax.experiments import results

_SCRIPT = Path(sys.executable).with_name("autotts-jax")
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "autotts_jax.cli"]
CONTRACT_COLUMNS = ("model", "dataset", "method", "config", "accuracy", "avg_tokens")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600)


def _controllers(*names: str) -> dict:
    from hydra import compose, initialize_config_dir

    from autotts_jax import apps  # noqa: F401  (registers the schemas)
    from autotts_jax.experiments.paths import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"controller=[{','.join(names)}]"])
    return {k: dict(v) for k, v in cfg.controller.items()}


def _evaluate(tmp_path: Path, *, models, benchmarks, controllers, seeds, betas=None,
              paper=True) -> Path:
    conf = {
        "data": {"model": list(models), "benchmark": list(benchmarks),
                 "trajectories": str(Path(__file__).resolve().parents[1] / "trajectories")},
        "controller": _controllers(*controllers), "betas": betas,
    }
    evaluation = {"seeds": seeds, "cost_model": "reference",
                  "bootstrap": {"samples": 200, "seed": 0, "level": 0.95}}
    jobs = ev.plan(conf, extra=rep.paper_configs() if paper else None)
    rows = ev.run(jobs, evaluation, progress=False)
    results.write(tmp_path, "results", rows, {"seeds": seeds})
    return tmp_path / "results.json"


@pytest.fixture(scope="module")
def small_results(tmp_path_factory) -> Path:
    """Qwen3-8B on all three benchmarks: SC, ESC (grids + Table-1 settings) and CMC at
    beta 0.5 / 1.0, 3 seeds."""
    tmp = tmp_path_factory.mktemp("results")
    _evaluate(tmp, models=["Qwen3-8B"], benchmarks=["aime24", "aime25", "hmmt25"],
              controllers=["sc", "esc"], seeds=3)
    a = results.read(tmp / "results.json")
    _evaluate(tmp, models=["Qwen3-8B"], benchmarks=["aime24", "aime25", "hmmt25"],
              controllers=["cmc"], seeds=3, betas=[0.5, 1.0])
    b = results.read(tmp / "results.json")
    results.write(tmp, "results", a + b)
    return tmp / "results.csv"


def test_report_from_a_results_file(small_results: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    proc = run_cli("report", f"results=[{small_results}]", f"out={out}",
                   "plots.formats=[png]")
    assert proc.returncode == 0, proc.stderr
    assert (out / "main_table.md").is_file()
    with (out / "main_table.csv").open(newline="") as f:
        table = list(csv.DictReader(f))
    assert set(CONTRACT_COLUMNS) <= set(table[0])
    assert {"paper_accuracy", "paper_tokens_k", "status"} <= set(table[0])
    # the paper's cells of the stores in the results: SC@64, ESC-64, CMC 0.5 / 1.0 are there
    # (ASC and Parallel-Probe were not evaluated)
    assert len(table) == 3 * 6
    by = {(r["dataset"], r["label"]): r for r in table}
    assert by[("aime25", "SC@64")]["paper_accuracy"] == "76.7"
    assert by[("aime25", "ASC")]["status"] == "missing"
    assert "3 seeds" in by[("aime25", "SC@64")]["note"]
    for d in ("aime24", "aime25", "hmmt25"):
        assert (out / f"scaling_Qwen3-8B_{d}.png").stat().st_size > 10_000
        assert not (out / f"scaling_Qwen3-8B_{d}.svg").exists()
    assert (out / "scaling_overview.png").is_file()
    md = (out / "main_table.md").read_text()
    assert "| Qwen3-8B | SC@64 |" in md and "fewer tokens than SC@64" in md
    with (out / "pareto.csv").open(newline="") as f:
        front = list(csv.DictReader(f))
    assert {r["dataset"] for r in front} == {"aime24", "aime25", "hmmt25"}
    summary = json.loads((out / "summary.json").read_text())
    assert 0 < summary["headline"]["saved_pct"] < 100
    assert "Headline: AutoTTS (CMC β=0.5) uses" in proc.stdout


def test_report_reads_directories_and_rejects_bad_files(small_results: Path,
                                                          tmp_path: Path) -> None:
    rows = results.read_all([small_results.parent])
    assert len(rows) == len(results.read(small_results))
    bad = tmp_path / "bad.csv"
    bad.write_text("model,dataset,acc\nQwen3-8B,aime24,80\n")
    proc = run_cli("report", f"results=[{bad}]", f"out={tmp_path / 'rep'}")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.strip().count("\n") == 0
    assert "not a results file" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "rep" / "main_table.md").exists()
    for text, message in [("{}", "not a results file"), ("[1, 2", "invalid JSON")]:
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        proc = run_cli("report", f"results=[{bad}]", f"out={tmp_path / 'rep'}")
        assert proc.returncode == 2 and message in proc.stderr
    proc = run_cli("report", f"results=[{tmp_path / 'nothing.json'}]", f"out={tmp_path / 'r'}")
    assert proc.returncode == 2 and "no such results file" in proc.stderr


def test_report_evaluates_when_no_results_are_given(tmp_path: Path) -> None:
    out = tmp_path / "rep"
    proc = run_cli("report", f"out={out}", "data.model=Qwen3-8B", "data.benchmark=aime24",
                   "controller=[sc,asc]", "evaluation.seeds=2", "output.progress=false")
    assert proc.returncode == 0, proc.stderr
    for name in ("main_table.md", "main_table.csv", "scaling_Qwen3-8B_aime24.png",
                 "scaling_Qwen3-8B_aime24.svg", "results.csv", "results.json", "pareto.csv"):
        assert (out / name).is_file(), name
    assert "total wall time" in proc.stdout


def test_sc64_cell_reproduces_the_paper(tmp_path: Path) -> None:
    """100 seeds, as the paper: SC@64 on Qwen3-8B / aime25 prints 76.7 / 1124.4k."""
    path = _evaluate(tmp_path, models=["Qwen3-8B"], benchmarks=["aime25"],
                     controllers=["sc"], seeds=100, betas=[1.0])
    rows = results.read(path)
    cells = [c for c in rep.paper_cells() if (c.model, c.dataset) == ("Qwen3-8B", "aime25")]
    table = {t["label"]: t for t in rep.main_table(rows, cells)}
    assert table["SC@64"]["status"] == "reproduced"
    assert (table["SC@64"]["accuracy_1dp"], table["SC@64"]["tokens_k_1dp"]) == ("76.7", "1124.4")
    assert table["ASC"]["status"] == "missing"


def _row(model, dataset, method, config, acc, tokens, beta=None):
    return {"model": model, "dataset": dataset, "method": method, "label": method,
            "config": config, "beta": beta, "accuracy": acc, "avg_tokens": tokens,
            "episodes": 3000, "seeds": 100, "n_correct": 0, "total_tokens": 0}


def test_headline_is_computed_from_the_rows() -> None:
    rows = []
    for m, sc_tok, cmc_tok in [("A", 1000.0, 300.0), ("B", 800.0, 400.0)]:
        for d in ("aime25", "hmmt25"):
            rows.append(_row(m, d, "sc", {"max_samples": 64}, 50.0, sc_tok))
            rows.append(_row(m, d, "cmc", {"beta": 0.5}, 49.0, cmc_tok, 0.5))
            rows.append(_row(m, d, "cmc", {"beta": 1.0}, 51.0, cmc_tok * 1.5, 1.0))
    rows.append(_row("A", "aime24", "sc", {"max_samples": 64}, 90.0, 10.0))  # search: ignored
    h = rep.headline(rows)
    assert h["backbones"]["A"]["saved_pct"] == pytest.approx(70.0)
    assert h["backbones"]["B"]["saved_pct"] == pytest.approx(50.0)
    assert h["saved_pct"] == pytest.approx(60.0)
    assert h["sc64_accuracy"] == pytest.approx(50.0) and h["cmc_accuracy"] == pytest.approx(49.0)
    # matched accuracy: beta 0.5 falls short (49 < 50), beta 1.0 reaches it
    assert h["backbones"]["A"]["matched_beta"] == 1.0
    assert h["backbones"]["A"]["matched_saved_pct"] == pytest.approx(55.0)
    assert "60.00% fewer tokens than SC@64" in rep.headline_text(h)
    assert rep.headline([r for r in rows if r["method"] == "sc"]) is None


def test_pareto_front() -> None:
    rows = [
        _row("A", "d", "x", {"n": 1}, 50.0, 10.0),
        _row("A", "d", "x", {"n": 2}, 49.0, 20.0),  # dominated
        _row("A", "d", "y", {"n": 1}, 60.0, 30.0),
        _row("A", "d", "y", {"n": 2}, 60.0, 40.0),  # equal accuracy, more tokens
        _row("A", "d", "z", {"n": 1}, 70.0, 35.0),
    ]
    front = rep.pareto(rows)
    assert [(r["method"], r["config"]["n"]) for r in front] == [("x", 1), ("y", 1), ("z", 1)]


def test_report_without_matplotlib_writes_the_tables_and_warns(
    small_results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A plain ``pip install`` has no matplotlib: the report is the tables, and the missing
    plots are one warning, not a failed run."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # find_spec() -> None
    out = tmp_path / "rep"
    with caplog.at_level(logging.WARNING, logger="autotts_jax"):
        done = rep.write_report(results.read_all([small_results]), out)
    assert (out / "main_table.md").is_file() and (out / "pareto.csv").is_file()
    assert not list(out.glob("scaling_*"))
    assert "no plots: matplotlib is not installed" in caplog.text
    assert done["counts"]
