"""SC@N -- self-consistency: read N branches in full, answer with their majority.

Upstream has no SC class; its published SC@64 equals ``ASCMethod(max_samples=64,
threshold=2.0)`` (never confident, so all 64 are read).  Here it is one round: the N reads run
in parallel, so sequential tokens are the longest of them.
"""

from __future__ import annotations

from typing import NamedTuple

from autotts_jax.engine.env import Observation
from autotts_jax.engine.protocol import Controller, Effects, Range
from autotts_jax.engine.votes import pool_majority


class Params(NamedTuple):
    """SC's one knob; the config is the params."""

    max_samples: int = 64  # () int32 branches read in full


def make_params(config) -> Params:
    p = Params(max_samples=int(config["max_samples"]))
    if p.max_samples < 1:
        raise ValueError(f"sc: max_samples must be >= 1, got {p.max_samples}")
    return p


def init(obs: Observation, params: Params, fx: Effects) -> tuple[Observation, tuple]:
    return obs, ()  # no state: everything SC needs is in the pool


def step(obs: Observation, cstate: tuple, params: Params, fx: Effects
         ) -> tuple[Observation, tuple]:
    obs = fx.full_read(obs, params.max_samples)
    exhausted = obs.opened < params.max_samples
    obs = fx.stop(obs, pool_majority(obs), "exhausted", when=exhausted)
    obs = fx.stop(obs, pool_majority(obs), "max_samples")
    return obs, cstate


SC = Controller(
    name="sc",
    aliases=("SC", "MajorityVote", "MajorityVoteMethod"),
    defaults=Params(),
    make_params=make_params,
    max_slots=lambda c: int(c["max_samples"]),
    init=init,
    step=step,
    stop_reasons=("max_samples", "exhausted"),
    oracle="autotts_jax.oracle.controllers:SC",
    config_space={"max_samples": Range(1, 20)},
    examples=({"max_samples": 5},),
    doc=__doc__,
)
