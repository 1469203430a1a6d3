"""ASC -- adaptive self-consistency (upstream ``ASCMethod``).

Read one branch in full per round; after each read (from the second on), stop as soon as the
beta-majority confidence of the reads so far is *strictly* above ``threshold``; after
``max_samples`` reads answer with their majority (ties: earliest first occurrence in read
order).  One read per round makes the sequential tokens the sum of the reads.
"""

from __future__ import annotations

from typing import NamedTuple

from autotts_jax.engine.env import Observation
from autotts_jax.engine.protocol import Controller, Effects, Range
from autotts_jax.engine.votes import pool_stats


class Params(NamedTuple):
    """``ASCMethod``'s arguments and defaults; the config is the params."""

    max_samples: int = 40  # () int32 branches read at most
    threshold: float = 0.95  # () float64 stop once the confidence is strictly above it


def make_params(config) -> Params:
    p = Params(max_samples=int(config["max_samples"]), threshold=float(config["threshold"]))
    if p.max_samples < 1:
        raise ValueError(f"asc: max_samples must be >= 1, got {p.max_samples}")
    return p


def init(obs: Observation, params: Params, fx: Effects) -> tuple[Observation, tuple]:
    return obs, ()  # no state: the reads so far are the pool


def step(obs: Observation, cstate: tuple, params: Params, fx: Effects
         ) -> tuple[Observation, tuple]:
    before = obs.opened
    obs = fx.full_read(obs, 1)
    winner, _, _, conf = pool_stats(obs)
    exhausted = obs.opened == before
    obs = fx.stop(obs, winner, "exhausted", when=exhausted)
    confident = (obs.pool_size >= 2) & (conf > params.threshold)
    obs = fx.stop(obs, winner, "confident", when=confident)
    obs = fx.stop(obs, winner, "max_samples", when=obs.opened >= params.max_samples)
    return obs, cstate


ASC = Controller(
    name="asc",
    aliases=("ASC", "ASCMethod"),
    defaults=Params(),
    make_params=make_params,
    max_slots=lambda c: int(c["max_samples"]),
    init=init,
    step=step,
    stop_reasons=("confident", "max_samples", "exhausted"),
    oracle="autotts_jax.oracle.controllers:ASCMethod",
    config_space={
        "max_samples": Range(1, 20),
        # confidences of small vote counts (0.75, 0.875, 0.9375), 2.0: never confident
        "threshold": Range(0.0, 1.0, (0.0, 0.5, 0.75, 0.8, 0.875, 0.9, 0.9375, 0.95, 0.97,
                                      1.0, 2.0)),
    },
    examples=({"max_samples": 8, "threshold": 0.8},),
    doc=__doc__,
)
