"""SC@N -- self-consistency: read N branches in full, answer with their majority.

Upstream has no SC class; its published SC@64 equals ``ASCMethod(max_samples=64,
threshold=2.0)`` (never confident, so all 64 are read).  Here it is one round: the N reads run
in parallel, so sequential tokens are the longest of them.
"""

from __future__ import annotations

from autotts_jax.engine.protocol import Controller
from autotts_jax.engine.votes import pool_majority


def _params(config):
    n = int(config["max_samples"])
    if n < 1:
        raise ValueError(f"sc: max_samples must be >= 1, got {n}")
    return {"max_samples": n}


def init(obs, params, fx):
    return obs, ()


def step(obs, cstate, params, fx):
    obs = fx.full_read(obs, params["max_samples"])
    reason_exhausted = obs.opened < params["max_samples"]
    obs = fx.stop(obs, pool_majority(obs), "exhausted", when=reason_exhausted)
    obs = fx.stop(obs, pool_majority(obs), "max_samples")
    return obs, cstate


SC = Controller(
    name="sc",
    aliases=("SC", "MajorityVote", "MajorityVoteMethod"),
    defaults={"max_samples": 64},
    make_params=_params,
    max_slots=lambda c: int(c["max_samples"]),
    init=init,
    step=step,
    stop_reasons=("max_samples", "exhausted"),
    doc=__doc__,
)
