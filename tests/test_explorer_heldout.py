"""Held-out discipline, enforced in code: the discovery loop reads the search split only.
Also: the evolve explorer (CMC's genome reproduces CMC; proposals are deterministic)."""

from __future__ import annotations

import sys
from dataclasses import asdict

import h5py
import pytest
from conftest import TRAJECTORIES_DIR
from explorer_cases import read_index, use_jax_cache

from autotts_jax.explorer import evolve as EV
from autotts_jax.explorer import family as F
from autotts_jax.explorer.config import EvolveExplorerConfig, default_conf
from autotts_jax.explorer.loop import run_loop
from autotts_jax.store.split import (
    HeldOutAccessError,
    SearchSplit,
    held_out_guard,
    is_held_out_path,
)

BETAS = [0.0, 0.5, 1.0]
_AUDIT = {"on": False, "paths": []}


@pytest.fixture(autouse=True, scope="module")
def _jax_cache():
    with pytest.MonkeyPatch.context() as mp:
        use_jax_cache(mp)
        yield


def _audit(event, args):
    if _AUDIT["on"] and event == "open" and args and isinstance(args[0], str | bytes):
        _AUDIT["paths"].append(str(args[0]))


sys.addaudithook(_audit)


def test_search_split_refuses_held_out_benchmarks():
    split = SearchSplit(TRAJECTORIES_DIR)
    assert split.models == ("Qwen3-0.6B", "Qwen3-1.7B", "Qwen3-4B", "Qwen3-8B")
    assert all(p.name == "aime24.h5" for p in split.paths())
    for b in ("aime25", "hmmt25"):
        with pytest.raises(HeldOutAccessError, match="held out"):
            split.path("Qwen3-8B", b)
    held = TRAJECTORIES_DIR / "Qwen3-8B" / "aime25.h5"
    assert is_held_out_path(held) and not is_held_out_path(split.path("Qwen3-8B"))
    with held_out_guard(), pytest.raises(HeldOutAccessError):
        open(held, "rb")
    with open(held, "rb"):  # outside the loop it is an ordinary file
        pass


def test_evolve_loop_reads_only_the_search_split_and_reproduces_cmc(tmp_path, monkeypatch):
    h5_opened = []
    real = h5py.File

    def recording(name, *args, **kwargs):
        h5_opened.append(str(name))
        return real(name, *args, **kwargs)

    monkeypatch.setattr(h5py, "File", recording)
    out = tmp_path / "run"
    cmc = {"name": "cmc", "label": "AutoTTS (CMC)", "grid_param": "beta", "grid": BETAS}
    # Without the tuner, round 0's first genome is CMC's own (with tuning, see test_tune.py).
    explorer = {**asdict(EvolveExplorerConfig()), "confirm_top": 0}
    conf = default_conf(out=str(out), rounds=2, candidates=2, seeds=1, betas=BETAS,
                        controller={"cmc": cmc}, heldout={"enabled": False},
                        prompt={"traces": 0}, explorer=explorer, tune={"generations": 0})
    _AUDIT.update(on=True, paths=[])
    try:
        summary = run_loop(conf, log=lambda _: None)
    finally:
        _AUDIT["on"] = False
    opened = h5_opened + _AUDIT["paths"]
    assert any(p.endswith("aime24.h5") for p in h5_opened)  # the recorder sees the stores
    assert not [p for p in opened if is_held_out_path(p)]
    assert summary["candidates"] == 4
    index = read_index(out)
    # Round 0, candidate 0 is CMC's genome: its search curve is CMC's, episode for episode.
    assert index[0]["genome"] == EV._round4(F.CMC_GENOME)
    baseline = __import__("json").loads((out / "baselines.json").read_text())
    cmc_curve = baseline["baselines"]["cmc"]["curve"]
    for m, pts in index[0]["search"].items():
        for p, q in zip(pts, cmc_curve[m], strict=True):
            assert (p["accuracy"], p["avg_tokens"]) == (q["accuracy"], q["avg_tokens"])
    assert index[0]["score"] == baseline["baselines"]["cmc"]["score"]
    # Proposals are a function of (seed, round, history): the same genomes again.
    again, _ = EV.propose_generation(conf["explorer"], 0, 1, 2, index[:2], BETAS)
    assert again == [r["genome"] for r in index[2:]]
    assert again != [r["genome"] for r in index[:2]]
    # Generated modules bake the genome into an ordinary beta-only controller.
    src = (out / "rounds/r0001/c01/candidate.py").read_text()
    assert 'name="evolved_r0001c01"' in src and "GENOME = {" in src
    ctrl = F.make_controller(index[3]["genome"])
    for b in BETAS:
        fam = F.FAMILY.make_params(F.family_configs(index[3]["genome"], [b])[0])
        assert ctrl.make_params({"beta": b}) == fam
    # A finished run resumed does nothing.
    before = (out / "index.jsonl").read_text()
    run_loop({**conf, "resume": True}, log=lambda _: None)
    assert (out / "index.jsonl").read_text() == before


def test_genomes_keep_spending_monotone():
    import numpy as np

    rng = np.random.default_rng(0)
    g = F.CMC_GENOME
    for _ in range(50):
        g = EV.mutate(g, rng, 0.3, 0.5)
        F.check_genome(g)  # slopes keep CMC's signs
        lo, hi = F.schedule(g, 0.0), F.schedule(g, 1.0)
        for k, (_, _, _, sign) in F.KNOBS.items():
            assert (hi[k] - lo[k]) * sign >= 0, k
