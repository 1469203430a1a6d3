"""Float64 for the engine: the one process-wide switch, and exactly what it changes.

Parity with the published numbers needs float64 in CMC's confidence arithmetic: an EMA of
SciPy's beta-CDF values is compared against thresholds, and float32 flips some of those
comparisons.  Importing :mod:`autotts_jax.engine` calls :func:`enable_float64` once.

Why process-wide and not a scoped ``jax.enable_x64`` around each engine call: the engine is
entered from many places -- compiled replays, live runs that step controllers eagerly, the
controller checks, sandboxed workers, user code that calls ``controller.init`` directly -- and
a float constant or array created outside a scope is silently float32 inside it.  One switch
that every path shares cannot disagree with itself; a replay and a live run of the same
episode must take the same decisions.

What it changes for other JAX code in the same process (``tests/test_precision.py`` pins it):

- arrays built without an explicit dtype default to 64 bits: ``jnp.array(1.0)`` and
  ``jnp.zeros(3)`` are float64, ``jnp.arange(3)`` is int64, NumPy float64 inputs stay float64;
- explicit dtypes are kept: ``jnp.zeros(3, jnp.float32)`` is still float32, and float32
  inputs stay float32 through arithmetic with Python scalars (weak typing);
- nothing else: no other JAX option is touched, and the engine's own state is int32 with
  float64 only in confidence arithmetic (CMC's EMA, the confidence table).

Code that wants 32-bit defaults can run under ``with jax.enable_x64(False):`` (a thread-local
scope); :func:`~autotts_jax.engine.simulate.simulate` enters float64 itself, so replays keep
parity inside such a scope.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import jax

_P = ParamSpec("_P")
_R = TypeVar("_R")


def enable_float64() -> None:
    """Turn on JAX's x64 mode for the process (``jax_enable_x64``); idempotent."""
    jax.config.update("jax_enable_x64", True)


def float64(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """``fn`` run under ``jax.enable_x64(True)``: an engine entry point keeps float64 (and so
    parity and its compiled programs) even inside a caller's ``jax.enable_x64(False)`` scope."""

    @functools.wraps(fn)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return run
