"""Every controller the generic tests run -- the built-ins and the test-only ones -- and the
two things a registry entry tells them: its oracle twin and the configs to draw.

A test that loops over :data:`CONTROLLERS` (or :data:`WITH_ORACLE`) never names a controller,
so a new controller is tested by its entry alone.  Hypothesis stays here, on the test side:
an entry's ``config_space`` is plain data (:class:`~autotts_jax.engine.protocol.Range`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from controllers import TEST_ONLY
from hypothesis import strategies as st

from autotts_jax.controllers import BUILTIN
from autotts_jax.engine.protocol import Controller, Range

CONTROLLERS: tuple[Controller, ...] = BUILTIN + TEST_ONLY
WITH_ORACLE: tuple[Controller, ...] = tuple(c for c in CONTROLLERS if c.oracle)


def oracle_twin(controller: Controller, config: Mapping[str, Any]) -> Callable[[], Any]:
    """A factory of ``controller``'s oracle twin for ``config`` (its full config, defaults
    filled in), as :func:`~autotts_jax.oracle.evaluate_oracle` takes it."""
    module, _, name = controller.oracle.partition(":")
    twin = getattr(importlib.import_module(module), name)
    full = controller.config(config)
    return lambda: twin(**full)


def value_strategy(r: Range) -> st.SearchStrategy:
    ints = isinstance(r.low, int) and isinstance(r.high, int)
    span = st.integers(r.low, r.high) if ints else st.floats(float(r.low), float(r.high))
    return st.one_of(st.sampled_from(r.special), span) if r.special else span


def config_strategy(controller: Controller) -> st.SearchStrategy:
    """Configs of ``controller`` drawn from its ``config_space``."""
    return st.fixed_dictionaries(
        {k: value_strategy(r) for k, r in controller.config_space.items()})
