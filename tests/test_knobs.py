"""Declared knobs (engine/knobs.py) and the engine tuning an LLM candidate's KNOBS in the
sandbox (explorer/loop.py ``_tune_module``)."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
from conftest import TRAJECTORIES_DIR
from explorer_cases import TUNABLE, VALID, use_jax_cache

from autotts_jax.controllers.cmc import schedule as cmc_schedule
from autotts_jax.engine.knobs import Knob, check_knobs, knob_values, parse_knobs, with_knobs
from autotts_jax.engine.static import check_source

CMC_KNOBS = {
    "n_init": Knob("int", 2, 64, 1, 2, 6), "max_branch_use": Knob("int", 1, 64, 1, 4, 60),
    "warm_up": Knob("int", 2, 64, 1, 2, 8), "abandon_patience": Knob("int", 3, 64, 1, 3, 9),
    "T_ema": Knob("int", 2, 64, 1, 2, 6), "ema_alpha": Knob("float", 0, 1, -1, 0.70, -0.40),
    "conf_thr": Knob("float", 0, 1, 1, 0.85, 0.12),
    "delta_slack": Knob("float", 0, 1, -1, 0.04, -0.03),
    "burst_aligned": Knob("int", 1, 64, 1, 1, 2), "widen_burst": Knob("int", 1, 64, 1, 1, 3),
    "trend_thr": Knob("float", 0, 1, -1, 0.04, -0.03),
    "min_complete": Knob("int", 2, 64, 1, 2, 3),
}


def test_knob_values_round_like_cmcs_own_schedule():
    for b in np.linspace(0, 1, 101):
        assert knob_values(CMC_KNOBS, float(b)) == cmc_schedule(float(b)), b


def test_knobs_parse_and_rewrite_without_running_the_module():
    knobs = parse_knobs(TUNABLE)
    assert knobs == {"max_reads": Knob("int", 2, 64, 1, 2, 62),
                     "threshold": Knob("float", 0.5, 0.999, 1, 0.8, 0.19)}
    assert parse_knobs(VALID) is None
    tuned = {**knobs, "threshold": knobs["threshold"]._replace(intercept=0.9, slope=0.05)}
    src = with_knobs(TUNABLE, tuned)
    assert parse_knobs(src) == tuned and check_source(src).ok
    assert src.replace("0.9, 0.05", "0.8, 0.19").count("KNOBS") == TUNABLE.count("KNOBS")
    ns: dict = {}
    exec(compile(src, "tuned.py", "exec"), ns)  # the rewritten module is an ordinary module
    assert ns["CONTROLLER"].make_params({"beta": 1.0}) == {"max_reads": 64, "threshold": 0.95}


@pytest.mark.parametrize(("table", "message"), [
    ("KNOBS = make()", "literal dict"),
    ("KNOBS = {1: Knob('int', 1, 2, 1, 1, 0)}", "string literals"),
    ("KNOBS = {'a': Knob('int', 1, 2, 1, 1)}", "six positional"),
    ("KNOBS = {'a': Knob('int', 1, 2, 1, 1, slope=0)}", "six positional"),
    ("KNOBS = {'a': Knob('int', 1, 2, 1, 1, x)}", "malformed"),
    ("KNOBS = {'a': Knob('int', 3, 2, 1, 1, 0)}", "below high"),
    ("KNOBS = {'a': Knob('int', 1, 2, 1, 1, -1)}", "against direction"),
    ("KNOBS = {'a': Knob('bool', 1, 2, 1, 1, 0)}", "kind"),
])
def test_malformed_knob_tables_are_named(table, message):
    with pytest.raises(ValueError, match=message):
        parse_knobs(table + "\n")


def test_check_knobs_rejects_non_knobs():
    with pytest.raises(ValueError, match="non-empty"):
        check_knobs({})
    with pytest.raises(ValueError, match="must be a Knob"):
        check_knobs({"a": (1, 2)})


@pytest.fixture(scope="module")
def ctx():
    from autotts_jax.explorer.context import compute_baselines, load_context
    from autotts_jax.store.split import SearchSplit

    with pytest.MonkeyPatch.context() as mp:
        use_jax_cache(mp)
        c = load_context(SearchSplit(TRAJECTORIES_DIR), seeds=range(1), betas=[0.0, 0.5, 1.0],
                         cost_model="reference", max_rounds=1024, max_branch=64)
        cmc = {"name": "cmc", "label": "AutoTTS (CMC)", "grid_param": "beta",
               "grid": [0.0, 0.5, 1.0]}
        compute_baselines(c, {"cmc": cmc}, log=lambda *_: None)
        yield c


def _conf(tmp_path, **tune):
    from autotts_jax.explorer.config import CommandExplorerConfig, default_conf

    return default_conf(out=str(tmp_path / "run"), seeds=1, betas=[0.0, 0.5, 1.0],
                        explorer={**asdict(CommandExplorerConfig()), "command": "true"},
                        tune={"population": 3, "generations": 2, "seeds": 1, "elite": 2,
                              "beta_stride": 1, **tune})


def test_an_llm_candidates_knobs_are_tuned_in_the_sandbox_and_written_back(ctx, tmp_path,
                                                                           monkeypatch):
    from autotts_jax.explorer import loop as L
    from autotts_jax.explorer.history import History

    use_jax_cache(monkeypatch)
    conf = _conf(tmp_path)
    history = History(tmp_path / "run")
    rec = L._evaluate_source(ctx, conf, history, 0, 0, TUNABLE, "command", {}, lambda _: None)
    assert rec["status"] == "accepted", rec["reason"]
    t = rec["tuning"]
    assert t["status"] == "tuned" and t["evaluations"] == 6 and len(t["per_generation"]) == 2
    assert t["declared"] == {"max_reads": [2.0, 62.0], "threshold": [0.8, 0.19]}
    assert set(t["sensitivity"]) == {"max_reads", "threshold"}
    assert rec["untuned_score_low"] == t["untuned_score_low"] <= t["score_low"]
    written = history.read(0, 0, "candidate.py")
    if t["tuned"] != t["declared"]:
        assert history.read(0, 0, "candidate_untuned.py") == TUNABLE
        assert {k: [v.intercept, v.slope] for k, v in parse_knobs(written).items()} == t["tuned"]
    # The untuned module declares nothing: no tuning, nothing rewritten.
    rec2 = L._evaluate_source(ctx, conf, history, 0, 1, VALID, "command", {}, lambda _: None)
    assert rec2["status"] == "accepted" and "tuning" not in rec2
    # The next prompt: the tuning, which knobs mattered, the paired comparison with CMC, and
    # (for a later candidate of the same round) the round's earlier results.
    from autotts_jax.explorer.prompt import render

    text = render(ctx=ctx, records=[rec], this_round=[rec2], history=history, round_index=1,
                  limits=L.limits_of(conf), max_rounds=77, tuning=L.tune_settings(conf))
    assert f"Tuning (cem, 6 schedules on 1 seeds): low-fidelity score {t['untuned_score_low']}" \
        in text
    assert "Knobs that mattered" in text and "declared -> tuned: max_reads [2.0, 62.0] ->" in text
    assert "Paired against AutoTTS (CMC)" in text and "| mean over backbones |" in text
    assert "## This round so far (round 1)" in text and "* r0000c01 (adaptive_reads): " \
        "accepted" in text
    assert "after 77 rounds is cut off" in text and "KNOBS = {" in text
    for m in ctx.models:
        a = ctx.anchors[m]
        assert f"| {m} | {a['low'] / 1000:.1f}k | {a['high'] / 1000:.1f}k |" in text
    assert "k=1: running / = final / correct / wrong when 2 agree" in text


def test_tuning_a_module_whose_knobs_do_not_run_fails_softly(ctx, tmp_path, monkeypatch):
    from autotts_jax.explorer import loop as L
    from autotts_jax.explorer.tune import TuneSettings

    use_jax_cache(monkeypatch)
    broken = TUNABLE.replace("return knob_values(KNOBS, config[\"beta\"])",
                             "return knob_values(KNOBS, config[\"beta\"]) | {\"x\": 1 / 0}")
    conf = _conf(tmp_path)
    res, tuned = L._tune_module(ctx, conf, TuneSettings.of(conf["tune"]), broken, 0, 0)
    assert res["status"] == "failed" and "ZeroDivisionError" in res["reason"] and tuned is None
    res, tuned = L._tune_module(ctx, conf, TuneSettings.of(conf["tune"]),
                                TUNABLE.replace("KNOBS = {", "KNOBS = dict(**{", 1), 0, 0)
    assert res["status"].startswith("not tuned") and tuned is None
