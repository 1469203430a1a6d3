"""``autotts-jax compare``: the command-line contract, the figures against ``evaluate``'s rows
and the explorer's held-out score, module-file controllers and configuration errors."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from explorer_cases import VALID
from test_report import run_cli

from autotts_jax.errors import AutoTTSError
from autotts_jax.experiments import compare as cmp
from autotts_jax.experiments import results

CONTRACT = ("metric", "difference", "ci_low", "ci_high", "p_above_zero")


def _conf(tmp_path: Path, **over) -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from autotts_jax import apps  # noqa: F401  (registers the schemas)
    from autotts_jax.experiments.paths import CONF_DIR

    overrides = [f"{k}={v}" for k, v in over.items()] + [f"out={tmp_path}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("compare", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


def test_compare_cli_writes_the_contract_files(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    proc = run_cli("compare", "controllers=[cmc,sc]", "data=heldout", f"out={out}",
                   "data.model=Qwen3-8B", "evaluation.seeds=3",
                   "evaluation.bootstrap.samples=100", "progress=false")
    assert proc.returncode == 0, proc.stderr
    assert "100 resamples from seed 0" in proc.stdout and "held-out split" in proc.stdout
    with (out / "compare.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert set(CONTRACT) <= set(rows[0])
    # one row per (pair, store or pooled) and metric: 2 stores + pooled, 3 metrics
    assert len(rows) == 9
    assert {r["store"] for r in rows} == {"Qwen3-8B/aime25", "Qwen3-8B/hmmt25", "pooled"}
    assert {(r["a"], r["b"]) for r in rows} == {("cmc", "sc")}
    assert all(int(r["n_resamples"]) == 100 and int(r["n_seeds"]) == 3 for r in rows)
    assert (out / "compare.md").is_file()

    # the compared configs are CMC beta 0.5 and SC@64; accuracies are evaluate's
    evaluated = results.read(out / "results.csv")
    acc = {(r["dataset"], r["method"], json.dumps(r["config"], sort_keys=True)): r
           for r in evaluated}
    for r in rows:
        assert json.loads(r["a_config"]) == {"beta": 0.5}
        assert json.loads(r["b_config"]) == {"max_samples": 64}
        if r["metric"] == "accuracy" and r["store"] != "pooled":
            bench = r["store"].split("/")[1]
            a = acc[(bench, "cmc", r["a_config"])]["accuracy"]
            b = acc[(bench, "sc", r["b_config"])]["accuracy"]
            assert float(r["a_value"]) == pytest.approx(a, abs=1e-6)
            assert float(r["difference"]) == pytest.approx(a - b, abs=1e-6)
            assert float(r["ci_low"]) <= float(r["difference"]) <= float(r["ci_high"])
    # the pooled matched-budget values are the explorer's held-out scores of these rows
    from autotts_jax.explorer.heldout import heldout_scores

    scores = heldout_scores(evaluated)
    pooled = next(r for r in rows if r["metric"] == "matched_budget" and r["store"] == "pooled")
    assert float(pooled["a_value"]) == pytest.approx(scores["cmc"], abs=1e-3)
    assert float(pooled["b_value"]) == pytest.approx(scores["sc"], abs=1e-3)


def test_module_files_and_pools(tmp_path: Path) -> None:
    module = tmp_path / "reads.py"
    module.write_text(VALID)
    conf = _conf(tmp_path, controllers=f"[{module},asc]", metrics="[accuracy,token_ratio]",
                 **{"data.model": "[Qwen3-0.6B,Qwen3-1.7B]", "data.benchmark": "aime25",
                    "evaluation.seeds": 2, "evaluation.bootstrap.samples": 50,
                    "controller.asc.betas": "[0.4]", "evaluation.workers": 1})
    rows, evaluated, _ = cmp.run(conf, progress=False)
    assert {r["store"] for r in rows} == {"Qwen3-0.6B/aime25", "Qwen3-1.7B/aime25", "pooled"}
    assert all(r["a"] == str(module) and r["b"] == "asc" for r in rows)
    assert {json.loads(r["b_config"])["max_samples"] for r in rows} == {8}  # beta 0.4 -> ASC-8
    assert {json.loads(r["a_config"])["beta"] for r in rows} == {0.5}
    assert not any("outcomes" in r for r in evaluated)
    # no SC anchors are needed without matched_budget
    assert {r["method"] for r in evaluated} == {"adaptive_reads", "asc"}
    ratio = [r for r in rows if r["metric"] == "token_ratio"]
    assert all(r["difference"] > -1 or math.isinf(r["difference"]) for r in ratio)


@pytest.mark.parametrize(("over", "message"), [
    ({"controllers": "[cmc]"}, "two or more"),
    ({"controllers": "[cmc,cmc]"}, "twice"),
    ({"controllers": "[cmc,nope]"}, "unknown controller 'nope'"),
    ({"controllers": "[cmc,missing.py]"}, "no such controller module"),
    ({"metrics": "[accuracy,speed]"}, "metrics"),
    ({"controller.cmc.betas": "[0.5,1.0]"}, "one beta"),
])
def test_configuration_errors(tmp_path: Path, over: dict, message: str) -> None:
    with pytest.raises(AutoTTSError, match=message):
        cmp.plan(_conf(tmp_path, **over))


def test_report_pairs_autotts_with_each_baseline(tmp_path: Path) -> None:
    from test_report import _controllers

    from autotts_jax.experiments import evaluate as ev
    from autotts_jax.experiments import report as rep

    conf = {"data": {"model": ["Qwen3-8B"], "benchmark": ["aime24", "aime25", "hmmt25"],
                     "trajectories": str(Path(__file__).resolve().parents[1] / "trajectories")},
            "controller": _controllers("sc", "cmc"), "betas": [1.0]}
    boot = {"samples": 100, "seed": 0, "level": 0.95}
    jobs = ev.plan(conf, extra=rep.paper_configs())
    rows = ev.run(jobs, {"seeds": 3, "cost_model": "reference", "bootstrap": boot,
                         "workers": 1}, progress=False, keep_episodes=True)
    done = rep.write_report(rows, tmp_path, {"formats": ["png"]}, boot)
    with (tmp_path / "paired.csv").open(newline="") as f:
        prows = list(csv.DictReader(f))
    assert {(r["a"], r["b"]) for r in prows} == {("AutoTTS β=0.5", "SC@64"),
                                                 ("AutoTTS β=1.0", "SC@64")}
    assert {r["store"] for r in prows} == {"Qwen3-8B/aime24", "Qwen3-8B/aime25",
                                           "Qwen3-8B/hmmt25", "held-out"}
    acc = {(r["dataset"], r["method"], json.dumps(r["config"], sort_keys=True)): r["accuracy"]
           for r in rows}
    for r in prows:
        assert set(CONTRACT) <= set(r) and r["metric"] == "accuracy"
        if r["store"] != "held-out":
            bench = r["store"].split("/")[1]
            want = acc[(bench, "cmc", r["a_config"])] - acc[(bench, "sc", r["b_config"])]
            assert float(r["difference"]) == pytest.approx(want, abs=1e-6)
    held = [r for r in prows if r["store"] == "held-out"]
    assert [h["a"] for h in done["paired"] if h["store"] == "held-out"] == [h["a"] for h in held]
    text = (tmp_path / "main_table.md").read_text()
    assert "## Paired comparisons: AutoTTS vs each baseline" in text
    assert "100 paired bootstrap resamples" in text
    # without per-episode outcomes (rows read from a results file) the section says why
    plain = [{k: v for k, v in r.items() if k != "outcomes"} for r in rows]
    rep.write_report(plain, tmp_path / "plain", {"formats": ["png"]}, boot)
    assert not (tmp_path / "plain" / "paired.csv").exists()
    assert "results files do not store" in (tmp_path / "plain" / "main_table.md").read_text()


def test_discover_heldout_pairs_the_discovered_controller(tmp_path: Path) -> None:
    import numpy as np

    from autotts_jax.explorer import heldout

    rng = np.random.default_rng(0)

    def row(model, dataset, method, config, beta, p, tokens):
        correct = rng.random((5, 12)) < p
        return {"model": model, "dataset": dataset, "method": method, "config": config,
                "beta": beta, "accuracy": 100 * correct.mean(), "avg_tokens": float(tokens),
                "outcomes": {"correct": correct, "tokens": np.full((5, 12), tokens)}}

    rows = []
    for d in ("aime25", "hmmt25"):
        rows += [row("M", d, "discovered", {"beta": b}, b, 0.3 + 0.3 * b, 1000 + 4000 * b)
                 for b in (0.0, 0.5, 1.0)]
        rows += [row("M", d, "cmc", {"beta": 0.5}, 0.5, 0.45, 3500),
                 row("M", d, "sc", {"max_samples": 4}, None, 0.3, 2000),
                 row("M", d, "sc", {"max_samples": 64}, None, 0.5, 20000)]
    boot = {"samples": 200, "seed": 1, "level": 0.9}
    prows = heldout.paired_rows(rows, boot)
    assert {(r["a"], r["b"]) for r in prows} == {("discovered", "cmc"), ("discovered", "sc")}
    assert {r["store"] for r in prows} == {"M/aime25", "M/hmmt25", "held-out"}
    assert {r["metric"] for r in prows} == {"accuracy", "matched_budget", "token_ratio"}
    for r in prows:
        if r["metric"] == "accuracy" and r["store"] != "held-out":
            d = r["store"].split("/")[1]
            mine = next(x for x in rows if (x["dataset"], x["method"], x["beta"])
                        == (d, "discovered", 0.5))
            other = next(x for x in rows if x["dataset"] == d and x["method"] == r["b"]
                         and json.dumps(x["config"], sort_keys=True) == r["b_config"])
            assert r["difference"] == pytest.approx(mine["accuracy"] - other["accuracy"])
    (tmp_path / "index.jsonl").write_text("{}\n" * 7)
    md = heldout.paired_md(prows, heldout._candidates_tried(tmp_path))
    assert "the best of 7 candidates" in md and "200 paired bootstrap resamples" in md
    assert heldout.paired_rows([{k: v for k, v in r.items() if k != "outcomes"}
                                for r in rows], boot) == []
