"""CMC -- the Confidence Momentum Controller discovered by AutoTTS (upstream r0004
``OptimalController``), driven by one knob ``beta`` in [0, 1].

Idea: keep an EMA of the pool's beta-majority confidence and stop when it is high *and* not
falling (momentum gate); widen (open more branches) only while confidence is low and not
rising; give aligned branches (agreeing with the pool winner) bursts of extra depth; abandon
branches that disagree for ``abandon_patience`` rounds, always keeping two alive.

One round of ``step`` is one upstream outer step: EMA update #1 on the pool as it stands,
abandonment, probing (served in descending probe count, completions entering the pool in that
order), EMA update #2 on the new pool (overwriting this round's window entry), the gate, and
widening.  All confidence arithmetic is float64 in upstream's operation order
``(1 - alpha) * ema + alpha * conf``: the gate compares the EMA against thresholds, and
parity with the published numbers needs every bit.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from autotts_jax.engine.env import NO_ANSWER, ORDER_SPAN, Observation
from autotts_jax.engine.protocol import Controller, Effects, Range
from autotts_jax.engine.votes import pool_stats

MAX_BRANCH = 64
MAX_OUTER = 500
_WINDOW = 16  # capacity of the EMA window; T_ema <= 8 for beta in [0, 1]
_MAX_PROBES = ORDER_SPAN - 1  # probe counts above this tie in the insertion order


def schedule(beta: float) -> dict[str, float | int]:
    """The upstream beta schedule, computed in Python float64 with ``round`` (half to even).

    Every knob is monotone in beta; spending (branches, patience, depth bursts) rises with it.
    """
    b = min(1.0, max(0.0, float(beta)))
    return {
        "n_init": max(2, round(2 + 6 * b)),
        "max_branch_use": min(MAX_BRANCH, round(4 + 60 * b)),
        "warm_up": max(2, round(2 + 8 * b)),
        "abandon_patience": max(3, round(3 + 9 * b)),
        "T_ema": max(2, round(2 + 6 * b)),
        "ema_alpha": round(0.70 - 0.40 * b, 4),
        "conf_thr": round(0.85 + 0.12 * b, 4),
        "delta_slack": round(0.04 - 0.03 * b, 4),
        "burst_aligned": max(1, round(1 + 2 * b)),
        "widen_burst": max(1, round(1 + 3 * b)),
        "trend_thr": round(0.04 - 0.03 * b, 4),
        "min_complete": max(2, round(2 + 3 * b)),
    }


class Params(NamedTuple):
    """The knobs at one beta (:func:`schedule`); the config is ``{"beta": ...}`` only."""

    n_init: int  # () int32 branches opened in round 0
    max_branch_use: int  # () int32 branches opened at most (<= MAX_BRANCH)
    warm_up: int  # () int32 steps before the gate, abandonment and bursts start
    abandon_patience: int  # () int32 steps off the winner before a branch is abandoned
    T_ema: int  # () int32 EMA entries the momentum looks back over (<= _WINDOW)
    ema_alpha: float  # () float64 weight of the newest confidence in the EMA
    conf_thr: float  # () float64 the gate's EMA threshold
    delta_slack: float  # () float64 how far the EMA may fall and still pass the gate
    burst_aligned: int  # () int32 intervals per step for branches agreeing with the winner
    widen_burst: int  # () int32 branches opened per widening step
    trend_thr: float  # () float64 widen only while the EMA rose at most this much
    min_complete: int  # () int32 completed answers the gate needs


class State(NamedTuple):
    ema: jax.Array  # () float64 EMA of the pool's confidence
    window: jax.Array  # (_WINDOW,) float64 window[i]: the EMA appended i steps ago
    filled: jax.Array  # () int32 entries in the window (<= T_ema)
    delta: jax.Array  # () float64 EMA now minus the oldest entry in the window
    disagree: jax.Array  # (S,) int32 consecutive steps each branch was off the winner
    probes: jax.Array  # (S,) int32 probe calls made on each branch after opening
    n_steps: jax.Array  # () int32 steps run (upstream's outer-loop counter)


def make_params(config) -> Params:
    p = Params(**schedule(config["beta"]))
    if p.T_ema > _WINDOW:
        raise ValueError(f"cmc: T_ema {p.T_ema} exceeds the window capacity {_WINDOW}")
    return p


def _abandon(cand, disagree, n_alive):
    """Upstream: sort candidates by -disagree (stable: ties keep spawn order) and abandon the
    first ``max(0, n_alive - 2)``.  Candidates are a subset of the alive branches, so at most
    the last two of that order survive.  Each candidate's key is unique (slot in the low
    digits), so two int32 max-reductions find them, instead of a per-episode sort or arg-max
    passes (both slow under vmap on CPU).
    """
    lowest = jnp.iinfo(jnp.int32).min
    slots = jnp.arange(cand.shape[0], dtype=jnp.int32)
    key = jnp.where(cand, -disagree * cand.shape[0] + slots, lowest)
    keep_n = jnp.maximum(0, jnp.sum(cand, dtype=jnp.int32) - jnp.maximum(0, n_alive - 2))
    last = jnp.max(key)
    second = jnp.max(jnp.where(key == last, lowest, key))
    keep = ((key == last) & (keep_n >= 1)) | ((key == second) & (keep_n >= 2))
    return cand & ~keep


def _probe_order(probes, n_slots):
    """Pool-insertion order key of upstream's probe loop: alive branches stably sorted by
    descending probe count.  Only the relative order matters, so the key itself serves."""
    slots = jnp.arange(n_slots, dtype=jnp.int32)
    return (_MAX_PROBES - jnp.minimum(probes, _MAX_PROBES)) * n_slots + slots


def init(obs: Observation, params: Params, fx: Effects) -> tuple[Observation, State]:
    obs = fx.probe_new(obs, params.n_init)
    obs = fx.stop(obs, NO_ANSWER, "no_branches", when=obs.opened == 0)
    zero, zeros = jnp.zeros((), jnp.int32), jnp.zeros(obs.n_slots, jnp.int32)
    return obs, State(ema=jnp.zeros((), jnp.float64), window=jnp.zeros(_WINDOW, jnp.float64),
                      filled=zero, delta=jnp.zeros((), jnp.float64), disagree=zeros,
                      probes=zeros, n_steps=zero)


def step(obs: Observation, cstate: State, params: Params, fx: Effects
         ) -> tuple[Observation, State]:
    alpha = params.ema_alpha
    winner, _, _, conf = pool_stats(obs)
    warm = cstate.n_steps >= params.warm_up

    # EMA update #1 appends to the window (oldest entry falls out beyond T_ema).
    ema = (1.0 - alpha) * cstate.ema + alpha * conf
    window = jnp.roll(cstate.window, 1).at[0].set(ema)
    filled = jnp.minimum(cstate.filled + 1, params.T_ema)

    # Abandonment: disagreeing branches, most persistent first, always keeping two alive.
    gate_on = warm & (winner != NO_ANSWER)
    alive = obs.alive
    disagree = jnp.where(gate_on & alive,
                         jnp.where(obs.latest != winner, cstate.disagree + 1, 0),
                         cstate.disagree)
    cand = gate_on & alive & (disagree >= params.abandon_patience)
    obs = fx.prune(obs, _abandon(cand, disagree, jnp.sum(alive, dtype=jnp.int32)))

    # Probe: aligned branches get a burst, served in descending probe count (stable).
    alive = obs.alive
    aligned = gate_on & (obs.latest == winner)
    calls = jnp.where(alive, jnp.where(aligned, params.burst_aligned, 1), 0)
    obs, made = fx.advance(obs, calls, order=_probe_order(cstate.probes, calls.shape[0]))
    probes = cstate.probes + made

    # EMA update #2 on the post-probe pool overwrites this round's entry.
    winner, _, _, conf = pool_stats(obs)
    ema = (1.0 - alpha) * ema + alpha * conf
    window = window.at[0].set(ema)
    oldest = window[jnp.maximum(filled - 1, 0)]
    delta = jnp.where(filled >= 2, ema - oldest, 0.0)

    gate = (warm & (obs.pool_size >= params.min_complete) & (ema >= params.conf_thr)
            & (delta >= -params.delta_slack))
    obs = fx.stop(obs, winner, "ema_gate", when=gate)
    obs = fx.stop(obs, winner, "all_resolved", when=~jnp.any(obs.alive))

    # Widen while confidence is low and not rising.
    spawned = obs.opened
    cap = jnp.minimum(params.max_branch_use, MAX_BRANCH)
    widen = ((spawned < cap) & (delta <= params.trend_thr)
             & (cstate.n_steps >= jnp.maximum(1, params.warm_up // 2)) & (ema < params.conf_thr))
    n_new = jnp.where(widen & ~obs.done, jnp.minimum(params.widen_burst, cap - spawned), 0)
    obs = fx.probe_new(obs, n_new)

    n_steps = cstate.n_steps + 1
    obs = fx.stop(obs, winner, "max_outer", when=n_steps >= MAX_OUTER)
    return obs, State(ema=ema, window=window, filled=filled, delta=delta, disagree=disagree,
                      probes=probes, n_steps=n_steps)


def finish(obs: Observation, cstate, params, fx: Effects) -> jax.Array:
    """Upstream's final answer after the loop: the pool majority, or -- if nothing completed --
    the majority of the latest answers of the branches not abandoned (spawn order)."""
    fallback = fx.vote(obs.latest, obs.is_open & ~obs.pruned)[0]
    looped_out = (obs.stop_reason == fx.stop_reasons.index("all_resolved")) | (
        obs.stop_reason == fx.stop_reasons.index("max_outer")
    )
    use = looped_out & (obs.answer == NO_ANSWER)
    return jnp.where(use, fallback, obs.answer)


CMC = Controller(
    name="cmc",
    aliases=("CMC", "OptimalController", "AutoTTS"),
    defaults={"beta": 0.5},
    make_params=make_params,
    # Always the 64-branch ceiling, whatever beta: a new beta must never change the compiled
    # shape (beta sweeps reuse one program); the unused slots are masked.
    max_slots=lambda c: MAX_BRANCH,
    init=init,
    step=step,
    stop_reasons=("ema_gate", "all_resolved", "max_outer", "no_branches"),
    trace_fields=lambda cstate: {"ema": cstate.ema, "delta": cstate.delta,
                                 "n_steps": cstate.n_steps},
    finish=finish,
    oracle="autotts_jax.oracle.controllers:cmc",
    config_space={"beta": Range(0.0, 1.0, (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9,
                                           1.0))},
    examples=({"beta": 0.0}, {"beta": 1.0}),
    doc=__doc__,
)
