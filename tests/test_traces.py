"""Execution traces: consistent with the untraced replay, and renderable."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TRAJECTORIES_DIR as TRAJECTORIES

import autotts_jax.engine  # noqa: F401  (enables float64)
from autotts_jax.controllers import ASC, CMC, ESC, PARALLEL_PROBE, SC
from autotts_jax.engine import simulate
from autotts_jax.engine.traces import trace_episode
from autotts_jax.store import load

CASES = [
    (SC, {"max_samples": 8}),
    (ASC, {"max_samples": 16, "threshold": 0.95}),
    (ESC, {"max_samples": 16, "window_size": 4}),
    (PARALLEL_PROBE, {"num_chains": 8, "T": 5, "prune_patience": 3, "warm_up": 4}),
    (CMC, {"beta": 0.5}),
]


@pytest.fixture(scope="module")
def data():
    return load(TRAJECTORIES / "Qwen3-8B" / "aime24.h5")


@pytest.mark.parametrize(("controller", "config"), CASES, ids=[c.name for c, _ in CASES])
def test_trace_agrees_with_untraced_replay(data, controller, config):
    seed = 3
    plain = simulate(controller, data, [config], [seed])
    traced, buf = simulate(controller, data, [config], [seed], trace=True)
    for field in ("answer", "tokens", "seq_tokens", "rounds", "stop_reason"):
        np.testing.assert_array_equal(getattr(plain, field), getattr(traced, field))
    for q in (0, 7, 29):
        t = trace_episode(controller, data, config, seed, q)
        assert len(t.rows) == int(plain.rounds[0, 0, q])
        last = t.rows[-1]
        assert last["done"] and last["stop_reason"] == t.stop_reason
        assert t.stop_reason == plain.stop_reasons[int(plain.stop_reason[0, 0, q])]
        assert last["tokens"] == t.tokens == int(plain.tokens[0, 0, q])
        assert last["seq_tokens"] == t.seq_tokens
        tokens = [r["tokens"] for r in t.rows]
        assert tokens == sorted(tokens)  # tokens never decrease
        assert not any(r["done"] for r in t.rows[:-1])
        decoded = json.loads(t.to_json())
        assert decoded["stop_reason"] == t.stop_reason and len(decoded["rounds"]) == len(t.rows)
        assert t.stop_reason in t.to_text()


def test_cmc_trace_exposes_ema_and_delta(data):
    t = trace_episode(CMC, data, {"beta": 1.0}, 0, 5)
    assert {"c.ema", "c.delta"} <= set(t.rows[0])
    if t.stop_reason == "ema_gate":
        assert t.rows[-1]["c.ema"] >= 0.97
