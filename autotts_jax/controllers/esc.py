"""ESC -- early-stopping self-consistency (upstream ``ESCMethod``).

Read windows of ``window_size`` branches in full, one window per round (its reads run in
parallel); stop at the first unanimous window and answer its common answer, otherwise after
``max_samples // window_size`` windows answer the majority of everything read.
"""

from __future__ import annotations

import jax.numpy as jnp

from autotts_jax.engine.env import NO_ANSWER
from autotts_jax.engine.protocol import Controller
from autotts_jax.engine.votes import pool_majority


def _params(config):
    n, w = int(config["max_samples"]), int(config["window_size"])
    if n < 1 or w < 1:
        raise ValueError(f"esc: max_samples and window_size must be >= 1, got {n}, {w}")
    return {"window_size": w, "n_windows": n // w}


def init(env, params, fx):
    # max_samples < window_size leaves no window at all: upstream returns majority([]) = None.
    env = fx.stop(env, NO_ANSWER, "max_samples", when=params["n_windows"] < 1)
    return env, {"windows": jnp.zeros((), jnp.int32)}


def step(env, cstate, params, fx):
    start = env.opened
    env = fx.full_read(env, params["window_size"])
    in_window = (env.slots >= start) & (env.slots < env.opened)
    first = env.final[jnp.minimum(start, env.final.shape[0] - 1)]
    unanimous = jnp.all(jnp.where(in_window, env.final == first, True))
    read_any = env.opened > start
    windows = cstate["windows"] + 1
    env = fx.stop(env, pool_majority(env), "exhausted", when=~read_any)
    env = fx.stop(env, first, "unanimous_window", when=unanimous)
    # A short window means the branches ran out (as SC / ASC / the oracle report it).
    short = env.opened - start < params["window_size"]
    env = fx.stop(env, pool_majority(env), "exhausted", when=short)
    env = fx.stop(env, pool_majority(env), "max_samples", when=windows >= params["n_windows"])
    return env, {"windows": windows}


ESC = Controller(
    name="esc",
    aliases=("ESC", "ESCMethod"),
    defaults={"max_samples": 32, "window_size": 5},
    make_params=_params,
    max_slots=lambda c: (int(c["max_samples"]) // int(c["window_size"]))
    * int(c["window_size"]),
    init=init,
    step=step,
    stop_reasons=("unanimous_window", "max_samples", "exhausted"),
    trace_fields=lambda cs: {"windows": cs["windows"]},
    seq_window=lambda p: p["window_size"],  # max_branch accounting: windows run in sequence
    doc=__doc__,
)
