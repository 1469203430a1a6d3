"""The float64 switch: exactly what importing the engine changes for other JAX code, and that
replays keep float64 (and so parity) inside a caller's ``jax.enable_x64(False)`` scope."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
from conftest import REPO_ROOT, TRAJECTORIES_DIR

import autotts_jax.engine  # noqa: F401  (float64, as everywhere in the engine)
from autotts_jax.controllers import CMC
from autotts_jax.engine import simulate
from autotts_jax.store import load

_IMPORT = textwrap.dedent("""
    import json
    import jax
    import jax.numpy as jnp

    def probe():
        return {
            "x64": bool(jax.config.jax_enable_x64),
            "float_literal": str(jnp.array(1.0).dtype),
            "zeros": str(jnp.zeros(3).dtype),
            "arange": str(jnp.arange(3).dtype),
            "explicit_f32": str(jnp.zeros(3, jnp.float32).dtype),
            "f32_times_scalar": str((jnp.ones(2, jnp.float32) * 2.0).dtype),
            "int_literal": str(jnp.array(1).dtype),
        }

    def options():
        return {k: repr(v) for k, v in jax.config.values.items()}

    before, opts = probe(), options()
    import autotts_jax
    after_package = probe()
    import autotts_jax.engine
    after, opts_after = probe(), options()
    changed = sorted(k for k in opts_after if opts_after[k] != opts.get(k))
    with jax.enable_x64(False):
        scoped = probe()
    print(json.dumps({"before": before, "package": after_package, "after": after,
                      "changed": changed, "scoped": scoped}))
""")


def test_importing_the_engine_changes_default_dtypes_and_nothing_else(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(_IMPORT)
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=REPO_ROOT, env={**env, "JAX_PLATFORMS": "cpu"}, timeout=300,
                          check=True)
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    bits32 = {"x64": False, "float_literal": "float32", "zeros": "float32", "arange": "int32",
              "explicit_f32": "float32", "f32_times_scalar": "float32", "int_literal": "int32"}
    assert got["before"] == bits32
    assert got["package"] == bits32  # the top-level package alone switches nothing
    assert got["after"] == {"x64": True, "float_literal": "float64", "zeros": "float64",
                            "arange": "int64", "explicit_f32": "float32",
                            "f32_times_scalar": "float32", "int_literal": "int64"}
    assert got["changed"] == ["jax_enable_x64"]
    assert got["scoped"] == bits32  # a thread-local scope gives user code 32-bit defaults


def test_replays_keep_float64_inside_a_32_bit_scope():
    data = load(TRAJECTORIES_DIR / "Qwen3-8B" / "aime24.h5")
    cfgs = [{"beta": 0.3}, {"beta": 0.9}]
    eps, trace = simulate(CMC, data, cfgs, seeds=[0], trace=True, max_rounds=160)
    with jax.enable_x64(False):
        eps32, trace32 = simulate(CMC, data, cfgs, seeds=[0], trace=True, max_rounds=160)
    assert trace["c.ema"].dtype == trace32["c.ema"].dtype == np.float64
    np.testing.assert_array_equal(trace["c.ema"], trace32["c.ema"])
    for f in ("answer", "tokens", "seq_tokens", "rounds", "stop_reason"):
        np.testing.assert_array_equal(getattr(eps, f), getattr(eps32, f), err_msg=f)
