"""ASC -- adaptive self-consistency (upstream ``ASCMethod``).

Read one branch in full per round; after each read (from the second on), stop as soon as the
beta-majority confidence of the reads so far is *strictly* above ``threshold``; after
``max_samples`` reads answer with their majority (ties: earliest first occurrence in read
order).  One read per round makes the sequential tokens the sum of the reads.
"""

from __future__ import annotations

from autotts_jax.engine.protocol import Controller
from autotts_jax.engine.votes import pool_stats


def _params(config):
    n = int(config["max_samples"])
    if n < 1:
        raise ValueError(f"asc: max_samples must be >= 1, got {n}")
    return {"max_samples": n, "threshold": float(config["threshold"])}


def init(obs, params, fx):
    return obs, ()


def step(obs, cstate, params, fx):
    before = obs.opened
    obs = fx.full_read(obs, 1)
    winner, _, _, conf = pool_stats(obs)
    exhausted = obs.opened == before
    obs = fx.stop(obs, winner, "exhausted", when=exhausted)
    confident = (obs.pool_size >= 2) & (conf > params["threshold"])
    obs = fx.stop(obs, winner, "confident", when=confident)
    obs = fx.stop(obs, winner, "max_samples", when=obs.opened >= params["max_samples"])
    return obs, cstate


ASC = Controller(
    name="asc",
    aliases=("ASC", "ASCMethod"),
    defaults={"max_samples": 40, "threshold": 0.95},
    make_params=_params,
    max_slots=lambda c: int(c["max_samples"]),
    init=init,
    step=step,
    stop_reasons=("confident", "max_samples", "exhausted"),
    doc=__doc__,
)
