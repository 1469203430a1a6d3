"""ESC -- early-stopping self-consistency (upstream ``ESCMethod``).

Read windows of ``window_size`` branches in full, one window per round (its reads run in
parallel); stop at the first unanimous window and answer its common answer, otherwise after
``max_samples // window_size`` windows answer the majority of everything read.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from autotts_jax.engine.env import NO_ANSWER, Observation
from autotts_jax.engine.protocol import Controller, Effects, Range
from autotts_jax.engine.votes import pool_majority


class Params(NamedTuple):
    """Made from the config ``{"max_samples", "window_size"}`` (upstream's arguments)."""

    window_size: int  # () int32 branches read per window (one round)
    n_windows: int  # () int32 windows at most: max_samples // window_size


class State(NamedTuple):
    windows: jax.Array  # () int32 windows read so far


def make_params(config) -> Params:
    n, w = int(config["max_samples"]), int(config["window_size"])
    if n < 1 or w < 1:
        raise ValueError(f"esc: max_samples and window_size must be >= 1, got {n}, {w}")
    return Params(window_size=w, n_windows=n // w)


def init(obs: Observation, params: Params, fx: Effects) -> tuple[Observation, State]:
    # max_samples < window_size leaves no window at all: upstream returns majority([]) = None.
    obs = fx.stop(obs, NO_ANSWER, "max_samples", when=params.n_windows < 1)
    return obs, State(windows=jnp.zeros((), jnp.int32))


def step(obs: Observation, cstate: State, params: Params, fx: Effects
         ) -> tuple[Observation, State]:
    start = obs.opened
    obs = fx.full_read(obs, params.window_size)
    in_window = (obs.slots >= start) & (obs.slots < obs.opened)
    first = obs.final[jnp.minimum(start, obs.final.shape[0] - 1)]
    unanimous = jnp.all(jnp.where(in_window, obs.final == first, True))
    read_any = obs.opened > start
    windows = cstate.windows + 1
    obs = fx.stop(obs, pool_majority(obs), "exhausted", when=~read_any)
    obs = fx.stop(obs, first, "unanimous_window", when=unanimous)
    # A short window means the branches ran out (as SC / ASC / the oracle report it).
    short = obs.opened - start < params.window_size
    obs = fx.stop(obs, pool_majority(obs), "exhausted", when=short)
    obs = fx.stop(obs, pool_majority(obs), "max_samples", when=windows >= params.n_windows)
    return obs, State(windows=windows)


ESC = Controller(
    name="esc",
    aliases=("ESC", "ESCMethod"),
    defaults={"max_samples": 32, "window_size": 5},
    make_params=make_params,
    max_slots=lambda c: (int(c["max_samples"]) // int(c["window_size"]))
    * int(c["window_size"]),
    init=init,
    step=step,
    stop_reasons=("unanimous_window", "max_samples", "exhausted"),
    trace_fields=lambda cstate: {"windows": cstate.windows},
    seq_window=lambda params: params.window_size,  # max_branch accounting: windows in sequence
    oracle="autotts_jax.oracle.controllers:ESCMethod",
    config_space={"max_samples": Range(1, 20), "window_size": Range(1, 8)},
    examples=({"max_samples": 12, "window_size": 4},),
    doc=__doc__,
)
