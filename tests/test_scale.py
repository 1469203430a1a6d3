"""Scale properties of the replay: no recompiles when only values change, chunking and
multi-device sharding give results identical to one pass on one device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
from conftest import REPO_ROOT, TRAJECTORIES_DIR

import autotts_jax.engine  # noqa: F401
from autotts_jax.controllers import ASC, CMC, PARALLEL_PROBE
from autotts_jax.engine import simulate
from autotts_jax.engine.scheduler import TRACE_COUNT
from autotts_jax.store import load

FIELDS = ("answer", "correct", "tokens", "seq_tokens", "branches", "rounds", "stop_reason")


def _same(a, b):
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)


def test_no_recompile_for_new_betas_seeds_and_backbones():
    d8 = load(TRAJECTORIES_DIR / "Qwen3-8B" / "aime24.h5")
    d06 = load(TRAJECTORIES_DIR / "Qwen3-0.6B" / "hmmt25.h5")
    assert d8.shape == d06.shape  # buckets make the backbones share one shape
    simulate(CMC, d8, [{"beta": 0.5}], seeds=range(2), chunk_size=64)
    before = TRACE_COUNT[CMC.name]
    simulate(CMC, d8, [{"beta": 0.0}, {"beta": 1.0}], seeds=range(2), chunk_size=64)
    simulate(CMC, d8, [{"beta": 0.37}], seeds=[11, 12], chunk_size=64)
    simulate(CMC, d06, [{"beta": 0.9}, {"beta": 0.1}, {"beta": 0.6}], seeds=range(3),
             chunk_size=64)
    assert TRACE_COUNT[CMC.name] == before


def test_no_recompile_for_another_batch_size():
    """The queue is always ``chunk_size`` long (padding is never started), so 30 episodes and
    630 episodes share one program."""
    d8 = load(TRAJECTORIES_DIR / "Qwen3-8B" / "aime24.h5")
    simulate(CMC, d8, [{"beta": 0.5}], seeds=[0], chunk_size=512)
    before = TRACE_COUNT[CMC.name]
    simulate(CMC, d8, [{"beta": b / 6} for b in range(7)], seeds=range(3), chunk_size=512)
    assert TRACE_COUNT[CMC.name] == before


def test_chunking_is_invisible():
    data = load(TRAJECTORIES_DIR / "Qwen3-4B" / "aime24.h5")
    cfgs = [{"num_chains": 8, "T": 5, "prune_patience": 3, "warm_up": 4},
            {"num_chains": 4, "T": 40, "prune_patience": 7, "warm_up": 15}]
    whole = simulate(PARALLEL_PROBE, data, cfgs, seeds=range(4), chunk_size=4096)
    for size in (7, 64, 100):
        _same(whole, simulate(PARALLEL_PROBE, data, cfgs, seeds=range(4), chunk_size=size))


def test_slot_groups_match_one_pass_at_the_largest_slot_count():
    """Parallel-Probe runs each slot bucket of a num_chains sweep separately (group_slots);
    the merged episodes, in config order, equal one pass with every config at 64 slots."""
    data = load(TRAJECTORIES_DIR / "Qwen3-1.7B" / "aime25.h5")
    pp = {"T": 12, "prune_patience": 4, "warm_up": 5}
    cfgs = [{"num_chains": n, **pp} for n in (16, 3, 64, 9, 1, 40)]
    grouped = simulate(PARALLEL_PROBE, data, cfgs, seeds=range(3))
    _same(grouped, simulate(PARALLEL_PROBE, data, cfgs, seeds=range(3), slots=64))
    np.testing.assert_array_equal(grouped.seq_tokens_max_branch,
                                  simulate(PARALLEL_PROBE, data, cfgs, seeds=range(3),
                                           slots=64).seq_tokens_max_branch)
    assert grouped.branches.max(axis=(1, 2)).tolist() == [16, 3, 64, 9, 1, 40]


_SHARDED = textwrap.dedent("""
    import json, sys
    import jax
    import autotts_jax.engine
    from autotts_jax.controllers import get_controller
    from autotts_jax.engine import simulate
    from autotts_jax.store import load
    assert jax.device_count() == 4, jax.devices()
    data = load(sys.argv[1])
    out = {}
    for name, cfgs in (("cmc", [{"beta": 0.3}, {"beta": 0.8}]),
                       ("asc", [{"max_samples": 16, "threshold": 0.95}])):
        c = get_controller(name)
        for devices in (1, 4):
            e = simulate(c, data, cfgs, seeds=range(3), chunk_size=13, devices=devices)
            out[f"{name}/{devices}"] = {f: getattr(e, f).tolist() for f in
                ("answer", "tokens", "seq_tokens", "rounds", "stop_reason")}
    print(json.dumps(out))
""")


def test_four_emulated_devices_match_one(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    script = tmp_path / "sharded.py"
    script.write_text(_SHARDED)
    proc = subprocess.run(
        [sys.executable, str(script), str(TRAJECTORIES_DIR / "Qwen3-8B" / "aime25.h5")],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["cmc/1"] == out["cmc/4"]
    assert out["asc/1"] == out["asc/4"]
    # and the single-device result equals this process's (default-chunk) run
    data = load(TRAJECTORIES_DIR / "Qwen3-8B" / "aime25.h5")
    e = simulate(ASC, data, [{"max_samples": 16, "threshold": 0.95}], seeds=range(3))
    assert e.tokens.tolist() == out["asc/1"]["tokens"]
