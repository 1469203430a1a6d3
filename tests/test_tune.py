"""The engine's tuner (explorer/tune.py), the evolve explorer's islands and random baseline,
and the family's length-weighted vote -- each against an independent computation."""

from __future__ import annotations

import json
from dataclasses import asdict

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autotts_jax.engine.env import NO_ANSWER
from autotts_jax.explorer import evolve as EV
from autotts_jax.explorer import family as F
from autotts_jax.explorer import tune as T

BETAS = [0.0, 0.5, 1.0]


def _synthetic(target: np.ndarray):
    """A score peaked at ``target`` (in the tuner's unit coordinates), with the search's
    fields; schedules that put ``n_init``'s slope at its top are declared non-monotone."""
    _, lo, hi = T.gene_ranges()

    def score(genomes):
        out = []
        for g in genomes:
            u = (T._to_unit(g, lo, hi) - target)
            out.append({"score": 100.0 - 100.0 * float(np.mean(u ** 2)),
                        "mean_tokens": 1.0, "monotone": g["n_init"][1] < hi[1] - 1e-9})
        return out

    return score


def test_cem_climbs_a_synthetic_score_and_beats_random_search_at_equal_evaluations():
    _, lo, hi = T.gene_ranges()
    start = F.CMC_GENOME
    gaps = []
    for seed in range(4):
        target = np.clip(T._to_unit(start, lo, hi)
                         + np.random.default_rng(100 + seed).normal(0, 0.15, len(lo)), 0, 1)
        score = _synthetic(target)
        res = {}
        for strategy in ("cem", "random"):
            s = T.TuneSettings(population=16, generations=4, elite=4, seeds=1,
                               strategy=strategy)
            res[strategy] = T.tune_all([start], lambda g: g, score,
                                       [np.random.default_rng(seed)], s)[0]
        cem = res["cem"]
        assert cem["untuned_score_low"] == pytest.approx(score([start])[0]["score"])
        assert cem["per_generation"] == sorted(cem["per_generation"])  # the best is kept
        assert cem["score_low"] > cem["untuned_score_low"]
        assert cem["genome"]["abandon"] == start["abandon"]  # switches are not tuned
        gaps.append(cem["score_low"] - res["random"]["score_low"])
    assert min(gaps) > 0, gaps


def test_tuner_is_reproducible_and_never_returns_a_non_monotone_schedule():
    _, lo, hi = T.gene_ranges()
    score = _synthetic(np.ones(len(lo)))  # the peak is where spending is not monotone
    s = T.TuneSettings(population=8, generations=3, elite=2, seeds=1)
    a = T.tune_all([F.CMC_GENOME], lambda g: g, score, [np.random.default_rng(7)], s)[0]
    b = T.tune_all([F.CMC_GENOME], lambda g: g, score, [np.random.default_rng(7)], s)[0]
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert score([a["genome"]])[0]["monotone"]
    assert a["evaluations"] == 24


def test_tune_all_batches_every_candidate_of_a_generation_in_one_call():
    calls = []
    score = _synthetic(np.full(len(T.gene_ranges()[1]), 0.5))

    def evaluate(genomes):
        calls.append(len(genomes))
        return genomes

    s = T.TuneSettings(population=5, generations=3, elite=2)
    genomes = [F.CMC_GENOME, {**F.CMC_GENOME, "burst": 0}]
    T.tune_all(genomes, evaluate, score, [np.random.default_rng(i) for i in range(2)], s)
    assert calls == [10, 10, 10]


def test_tuning_betas_keep_the_ends_of_the_grid():
    grid = [round(0.1 * i, 1) for i in range(11)]
    assert T.tuning_betas(grid, 2) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert T.tuning_betas(grid, 3) == [0.0, 0.3, 0.6, 0.9, 1.0]
    assert T.tuning_betas(grid, 1) == grid
    with pytest.raises(ValueError, match="strategy"):
        T.TuneSettings.of({"strategy": "adam"})


def _records(genomes, scores):
    return [{"id": f"r0000c{i:02d}", "round": 0, "candidate": i, "status": "accepted",
             "genome": g, "score": s, "mean_tokens": 1.0}
            for i, (g, s) in enumerate(zip(genomes, scores, strict=True))]


def test_islands_keep_one_elite_per_structure_and_children_are_new():
    rng = np.random.default_rng(0)
    a = EV._round4(F.CMC_GENOME)
    b = EV.mutate(a, rng, 0.1, 0.0)  # same structure, other schedules
    c = EV._round4(EV.flip_switches(a, rng, 1))  # another structure
    recs = _records([a, b, c], [63.0, 63.5, 62.0])
    elites = EV.elites(recs)
    assert [x["id"] for x in elites] == ["r0000c01", "r0000c02"]
    cfg = asdict(__import__("autotts_jax.explorer.config", fromlist=["x"]).EvolveExplorerConfig())
    kids, note = EV.propose_generation(cfg, 3, 1, 8, recs, BETAS)
    seen = {EV.signature(g, BETAS) for g in (a, b, c)}
    assert len({EV.signature(k, BETAS) for k in kids} | seen) == len(kids) + 3
    assert set(note["islands"]) == {"r0000c01", "r0000c02"}
    assert any(EV.structure_of(k) not in {EV.structure_of(a), EV.structure_of(c)} for k in kids)
    again, _ = EV.propose_generation(cfg, 3, 1, 8, recs, BETAS)
    assert again == kids
    for k in kids:
        F.check_genome(k)


def test_random_strategy_draws_the_whole_family_reproducibly():
    cfg = {"strategy": "random"}
    kids, note = EV.propose_generation(cfg, 5, 0, 40, [], BETAS)
    assert kids[0] == EV._round4(F.CMC_GENOME) and note["strategy"] == "random"
    assert len({EV.structure_of(k) for k in kids}) > 20
    for k in kids:
        F.check_genome(k)
    assert EV.propose_generation(cfg, 5, 0, 40, [], BETAS)[0] == kids
    with pytest.raises(ValueError, match="strategy"):
        EV.propose_generation({"strategy": "grid"}, 5, 0, 2, [], BETAS)


class _Obs:
    """The fields of an Observation that ``weighted_winner`` reads."""

    def __init__(self, finished, read, depth, latest, pool_first, pool):
        self.finished, self.read = jnp.asarray(finished), jnp.asarray(read)
        self.depth, self.latest = jnp.asarray(depth, jnp.int32), jnp.asarray(latest, jnp.int32)
        self.pool_first = jnp.asarray(pool_first, jnp.int32)
        self.pool_count = jnp.zeros(pool, jnp.int32)

    @property
    def final(self):
        return jnp.where(self.finished | self.read, self.latest, NO_ANSWER)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12).flatmap(lambda s: st.tuples(
    st.lists(st.booleans(), min_size=s, max_size=s),
    st.lists(st.integers(1, 40), min_size=s, max_size=s),
    st.lists(st.integers(0, 5), min_size=s, max_size=s),
    st.permutations(list(range(8))),
    st.sampled_from([0.0, 0.5, 1.0, 2.5]))))
def test_weighted_winner_matches_a_python_vote(case):
    done, depth, answers, first, gamma = case
    obs = _Obs(done, [False] * len(done), depth, answers, first, 8)
    totals: dict[int, float] = {}
    for d, n, a in zip(done, depth, answers, strict=True):
        if d:
            totals[a] = totals.get(a, 0.0) + float(n) ** -gamma
    if not totals:
        expected = NO_ANSWER
    else:
        top = max(totals.values())
        expected = min((a for a, t in totals.items() if t >= top), key=lambda a: first[a])
    assert int(F.weighted_winner(obs, gamma)) == expected


def test_discover_tunes_every_genome_and_confirms_the_best(tmp_path):
    from explorer_cases import read_index

    from autotts_jax.explorer.config import EvolveExplorerConfig, default_conf
    from autotts_jax.explorer.loop import run_loop

    explorer = {**asdict(EvolveExplorerConfig()), "confirm_top": 2, "confirm_seeds": 2}
    out = tmp_path / "run"
    conf = default_conf(out=str(out), rounds=1, candidates=2, seeds=1, betas=BETAS,
                        controller={}, heldout={"enabled": False}, prompt={"traces": 0},
                        explorer=explorer,
                        tune={"population": 3, "generations": 2, "seeds": 1, "elite": 2})
    summary = run_loop(conf, log=lambda _: None)
    index = read_index(out)
    assert [r["untuned_genome"] for r in index][0] == EV._round4(F.CMC_GENOME)
    for r in index:
        assert r["status"] == "accepted"
        t = r["tuning"]
        assert (t["evaluations"], t["seeds"], t["strategy"]) == (6, 1, "cem")
        assert len(t["per_generation"]) == 2 and t["score_low"] >= t["untuned_score_low"]
        assert isinstance(r["untuned_score"], float) and r["structure"].startswith("abandon=")
        F.check_genome(r["genome"])
        # The tuned schedule is kept only when it also wins on every seed and beta.
        if t["kept"] == "tuned":
            assert r["score"] == t["tuned_score"] >= r["untuned_score"]
        else:
            assert r["genome"] == r["untuned_genome"] and r["score"] == r["untuned_score"]
            assert t["tuned_score"] is None or t["tuned_score"] < r["untuned_score"]
    confirmed = json.loads((out / "confirm.json").read_text())
    assert confirmed["seeds"] == 2 and len(confirmed["candidates"]) == 2
    assert summary["best"]["id"] == confirmed["best"]
    best = next(r for r in index if r["id"] == confirmed["best"])
    assert "GENOME = {" in (out / "best_controller.py").read_text()
    assert json.dumps(best["genome"]["n_init"]) in (out / "best_controller.py").read_text()
