"""First finished branch: open ``width`` branches by one interval, advance every one of them
by one interval per round, and answer with the final answer of the first branch that
finishes (ties in one round: the lowest slot).

A test-only controller: its entry and its twin (``first_finished_oracle.py``) are all it takes
for the generic engine-vs-oracle and conformance tests to run it.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from autotts_jax.engine.env import NO_ANSWER, Observation
from autotts_jax.engine.protocol import Controller, Effects, Range


class Params(NamedTuple):
    width: int = 4  # () int32 branches opened in round 0


def make_params(config) -> Params:
    p = Params(width=int(config["width"]))
    if p.width < 1:
        raise ValueError(f"first_finished: width must be >= 1, got {p.width}")
    return p


def init(obs: Observation, params: Params, fx: Effects) -> tuple[Observation, tuple]:
    obs = fx.probe_new(obs, params.width)
    return fx.stop(obs, NO_ANSWER, "no_branches", when=obs.opened == 0), ()


def step(obs: Observation, cstate: tuple, params: Params, fx: Effects
         ) -> tuple[Observation, tuple]:
    obs, _ = fx.advance(obs, jnp.where(obs.alive, 1, 0))
    finished = obs.is_open & obs.finished
    first = obs.latest[jnp.argmax(finished)]
    return fx.stop(obs, first, "finished", when=jnp.any(finished)), cstate


FIRST_FINISHED = Controller(
    name="first_finished",
    aliases=(),
    defaults=Params(),
    make_params=make_params,
    max_slots=lambda c: int(c["width"]),
    init=init,
    step=step,
    stop_reasons=("finished", "no_branches"),
    oracle="controllers.first_finished_oracle:FirstFinished",
    config_space={"width": Range(1, 6)},
    examples=({"width": 1},),
)
