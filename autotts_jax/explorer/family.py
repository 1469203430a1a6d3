"""The parametric controller family that the ``evolve`` explorer searches: a generalised CMC.

A *genome* fixes how one scalar ``beta`` in [0, 1] drives every knob, plus a few structural
switches.  Each knob is linear in beta, ``value = intercept + slope * beta`` (computed in
Python float64, then rounded -- integers with Python's half-to-even ``round``, floats to 4 dp,
exactly as CMC's schedule), and clipped to the knob's bounds.  Slopes keep CMC's signs, so every
knob moves in the same direction as in CMC when beta rises (spending rises with beta).

Switches (0/1 or a small int):

* ``abandon``: abandon branches that keep disagreeing with the pool winner (CMC: on);
* ``burst``: give branches aligned with the winner ``burst_aligned`` intervals per round
  instead of one (CMC: on);
* ``widen_rule``: 0 widens while confidence is low *and not rising* (CMC); 1 widens whenever
  confidence is low;
* ``gate_rule``: 0 stops on the EMA of the pool confidence with the momentum condition (CMC);
  1 stops on the raw pool confidence (no EMA, no momentum);
* ``consensus``: also stop as soon as every live branch's latest answer agrees with the pool
  winner (after warm-up, with at least ``min_complete`` completed answers);
* ``vote_rule``: 0 answers with the pool majority (CMC); 1 answers with a *length-weighted*
  vote over the finished branches, each weighing ``depth ** -vote_gamma`` (its length in probe
  intervals, which a live controller knows once the branch ends: shorter reasoning is more
  often right); 2 also uses that weighted winner inside the loop (alignment, abandonment,
  consensus) while the gate keeps counting votes;
* ``settle``: settle-on-stable-probe votes.  A live branch whose probe answer has stayed the
  same for ``settle_k`` observations in a row counts as a vote for it, next to the completed
  answers, in the pool winner and its confidence (the gate can then fire before branches
  finish); 0 counts completed answers only (CMC).

:data:`CMC_GENOME` reproduces CMC episode for episode (tested).  The family is one
:class:`Controller` whose config carries the genome (``family_controller``), so a population of
genomes x betas is one vmapped ``simulate`` call; :func:`make_controller` bakes one genome into
an ordinary beta-only controller, which is what an evolved candidate's module exports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from autotts_jax.controllers.cmc import _WINDOW, _abandon, _probe_order
from autotts_jax.controllers.cmc import finish as _cmc_finish
from autotts_jax.engine.env import NO_ANSWER
from autotts_jax.engine.protocol import Controller
from autotts_jax.engine.votes import confidence, pool_stats

MAX_BRANCH = 64
MAX_OUTER = 500
WINDOW = _WINDOW  # EMA window capacity (CMC's): T_ema <= WINDOW

# knob: (kind, lower bound, upper bound, slope sign).  Bounds of integer knobs are CMC's
# floors (``max(2, ...)``) and the 64-branch ceiling; the sign is CMC's slope sign (0: free,
# for knobs that do not set how much is spent).
KNOBS: dict[str, tuple[str, float, float, int]] = {
    "n_init": ("int", 2, 16, +1),
    "max_branch_use": ("int", 2, MAX_BRANCH, +1),
    "warm_up": ("int", 2, 32, +1),
    "abandon_patience": ("int", 3, 40, +1),
    "T_ema": ("int", 2, WINDOW, +1),
    "ema_alpha": ("float", 0.05, 1.0, -1),
    "conf_thr": ("float", 0.5, 0.999, +1),
    "delta_slack": ("float", 0.0, 0.2, -1),
    "burst_aligned": ("int", 1, 8, +1),
    "widen_burst": ("int", 1, 16, +1),
    "trend_thr": ("float", -0.1, 0.2, -1),
    "min_complete": ("int", 2, 32, +1),
    "vote_gamma": ("float", 0.0, 4.0, 0),
    "settle_k": ("int", 2, 12, +1),
}
# switch: number of values
SWITCHES: dict[str, int] = {
    "abandon": 2, "burst": 2, "widen_rule": 2, "gate_rule": 2, "consensus": 2, "vote_rule": 3,
    "settle": 2,
}

CMC_GENOME: dict[str, Any] = {
    "n_init": [2, 6], "max_branch_use": [4, 60], "warm_up": [2, 8],
    "abandon_patience": [3, 9], "T_ema": [2, 6], "ema_alpha": [0.70, -0.40],
    "conf_thr": [0.85, 0.12], "delta_slack": [0.04, -0.03], "burst_aligned": [1, 2],
    "widen_burst": [1, 3], "trend_thr": [0.04, -0.03], "min_complete": [2, 3],
    "vote_gamma": [1.0, 0.0], "settle_k": [4, 4],
    "abandon": 1, "burst": 1, "widen_rule": 0, "gate_rule": 0, "consensus": 0, "vote_rule": 0,
    "settle": 0,
}
STOP_REASONS = ("ema_gate", "consensus", "all_resolved", "max_outer", "no_branches")


def check_genome(genome: Mapping[str, Any]) -> dict[str, Any]:
    """A validated copy of ``genome`` (every knob ``[intercept, slope]``, every switch)."""
    missing = sorted((set(KNOBS) | set(SWITCHES)) - set(genome))
    extra = sorted(set(genome) - set(KNOBS) - set(SWITCHES))
    if missing or extra:
        raise ValueError(f"genome: missing {missing}, unknown {extra}")
    out: dict[str, Any] = {}
    for k, (_, _, _, sign) in KNOBS.items():
        a, s = (float(v) for v in genome[k])
        if sign and s * sign < 0:
            raise ValueError(f"genome: slope of {k} must have sign {sign:+d} (spending rises "
                             f"with beta), got {s}")
        out[k] = [a, s]
    for k, n in SWITCHES.items():
        v = int(genome[k])
        if not 0 <= v < n:
            raise ValueError(f"genome: switch {k} must be in [0, {n}), got {v}")
        out[k] = v
    return out


def schedule(genome: Mapping[str, Any], beta: float) -> dict[str, Any]:
    """Knob values at ``beta`` (Python float64 and ``round``, like CMC's schedule)."""
    b = min(1.0, max(0.0, float(beta)))
    p: dict[str, Any] = {}
    for k, (kind, lo, hi, _) in KNOBS.items():
        a, s = genome[k]
        v = a + s * b
        if kind == "int":
            p[k] = int(min(hi, max(lo, round(v))))
        else:
            p[k] = float(min(hi, max(lo, round(v, 4))))
    # Never open more branches up front than the branch budget allows (CMC: always true).
    p["n_init"] = min(p["n_init"], p["max_branch_use"])
    for k in SWITCHES:
        p[k] = int(genome[k])
    return p


def init(obs, p, fx):
    """CMC's opening (``n_init`` branches) and a state with CMC's fields."""
    obs = fx.probe_new(obs, p["n_init"])
    obs = fx.stop(obs, NO_ANSWER, "no_branches", when=obs.opened == 0)
    n = obs.n_slots
    return obs, {
        "ema": jnp.zeros((), jnp.float64),  # () float64 EMA of the pool confidence
        "window": jnp.zeros(WINDOW, jnp.float64),  # (WINDOW,) float64 EMA i rounds ago
        "filled": jnp.zeros((), jnp.int32),  # () int32 entries in the window (<= T_ema)
        "delta": jnp.zeros((), jnp.float64),  # () float64 EMA now minus T_ema rounds ago
        "disagree": jnp.zeros(n, jnp.int32),  # (S,) int32 consecutive rounds off the winner
        "probes": jnp.zeros(n, jnp.int32),  # (S,) int32 probe calls made after opening
        "stable": jnp.where(obs.latest != NO_ANSWER, 1, 0).astype(jnp.int32),  # (S,) int32
        # observations in a row with the same probe answer
        "rounds": jnp.zeros((), jnp.int32),  # () int32 rounds run
    }


def weighted_winner(obs, gamma):
    """The answer with the largest total weight ``depth ** -gamma`` over finished (or read)
    branches; ties go to the answer completed first; -1 when nothing finished.

    ``gamma = 0`` weighs every finished branch 1 (a plain majority over the same branches).
    """
    done = obs.finished | obs.read
    depth = jnp.maximum(obs.depth, 1).astype(jnp.float64)
    w = jnp.where(done, depth ** (-gamma), 0.0)
    size = obs.pool_count.shape[0]
    total = jnp.zeros(size, jnp.float64).at[jnp.where(done, obs.final, size)].add(
        w, mode="drop")
    top = jnp.max(total)
    key = jnp.where((total >= top) & (total > 0), obs.pool_first, jnp.iinfo(jnp.int32).max)
    winner = jax.lax.argmin(key, 0, jnp.int32)
    return jnp.where(top > 0, winner, NO_ANSWER).astype(jnp.int32)


def settled_stats(obs, settled):
    """(winner, confidence) of the completed answers plus one vote per ``settled`` live
    branch for its latest probe answer.  Ties go to the answer completed first, then to a
    settled-only answer of the lowest slot.  Label-free: settled-only answers are counted
    slot against slot, never by their id."""
    size = obs.pool_count.shape[0]
    in_pool = obs.pool_count > 0
    extra = jnp.zeros(size, jnp.int32).at[jnp.where(settled, obs.latest, size)].add(
        1, mode="drop")
    pool_total = jnp.where(in_pool, obs.pool_count + extra, 0)
    looked_up = jnp.where(obs.latest < size, obs.pool_count[jnp.clip(obs.latest, 0, size - 1)],
                          0)
    only = settled & (obs.latest != NO_ANSWER) & (looked_up == 0)
    same = (obs.latest[:, None] == obs.latest[None, :]) & only[None, :]
    slot_total = jnp.where(only, jnp.sum(same, axis=1, dtype=jnp.int32), 0)
    top_pool, top_slot = jnp.max(pool_total), jnp.max(slot_total)
    top1 = jnp.maximum(top_pool, top_slot)
    never = jnp.iinfo(jnp.int32).max
    pool_winner = jax.lax.argmin(jnp.where(in_pool & (pool_total == top1), obs.pool_first,
                                           never), 0, jnp.int32)
    slot = jax.lax.argmax(slot_total == top1, 0, jnp.int32)
    winner = jnp.where(top_pool == top1, pool_winner, obs.latest[slot])
    winner = jnp.where(top1 > 0, winner, NO_ANSWER).astype(jnp.int32)
    ids = jnp.arange(size, dtype=jnp.int32)
    top2 = jnp.maximum(jnp.max(jnp.where(ids == winner, 0, pool_total)),
                       jnp.max(jnp.where(obs.latest == winner, 0, slot_total)))
    return winner, confidence(top1, top2)


def _settled(obs, stable, p):
    return (p["settle"] == 1) & obs.alive & ~obs.finished & (stable >= p["settle_k"])


def _winner(obs, stable, p):
    """Pool majority and its confidence (with settled branches' votes under ``settle``);
    under ``vote_rule`` 2 the length-weighted winner."""
    winner, _, _, conf = pool_stats(obs)
    s_winner, s_conf = settled_stats(obs, _settled(obs, stable, p))
    settle = p["settle"] == 1
    winner = jnp.where(settle, s_winner, winner)
    conf = jnp.where(settle, s_conf, conf)
    weighted = weighted_winner(obs, p["vote_gamma"])
    return jnp.where((p["vote_rule"] == 2) & (weighted != NO_ANSWER), weighted, winner), conf


def step(obs, cstate, p, fx):
    alpha = p["ema_alpha"]
    winner, conf = _winner(obs, cstate["stable"], p)
    warm = cstate["rounds"] >= p["warm_up"]

    # EMA update #1 appends to the window (the oldest entry falls out beyond T_ema).
    ema = (1.0 - alpha) * cstate["ema"] + alpha * conf
    window = jnp.roll(cstate["window"], 1).at[0].set(ema)
    filled = jnp.minimum(cstate["filled"] + 1, p["T_ema"])

    # Abandonment (switchable): most persistent disagreement first, keeping two alive.
    gate_on = warm & (winner != NO_ANSWER)
    alive = obs.alive
    disagree = jnp.where(gate_on & alive,
                         jnp.where(obs.latest != winner, cstate["disagree"] + 1, 0),
                         cstate["disagree"])
    cand = gate_on & alive & (disagree >= p["abandon_patience"]) & (p["abandon"] == 1)
    obs = fx.prune(obs, _abandon(cand, disagree, jnp.sum(alive, dtype=jnp.int32)))

    # Probe: aligned branches get a burst (switchable), served in descending probe count.
    alive = obs.alive
    aligned = gate_on & (obs.latest == winner)
    burst = jnp.where(p["burst"] == 1, p["burst_aligned"], 1)
    calls = jnp.where(alive, jnp.where(aligned, burst, 1), 0)
    before = obs.latest
    obs, made = fx.advance(obs, calls, order=_probe_order(cstate["probes"], calls.shape[0]))
    probes = cstate["probes"] + made
    stable = jnp.where(made > 0, jnp.where((obs.latest == before) & (before != NO_ANSWER),
                                           cstate["stable"] + 1, 1), cstate["stable"])

    # EMA update #2 on the post-probe pool overwrites this round's entry.
    winner, conf = _winner(obs, stable, p)
    ema = (1.0 - alpha) * ema + alpha * conf
    window = window.at[0].set(ema)
    oldest = window[jnp.maximum(filled - 1, 0)]
    delta = jnp.where(filled >= 2, ema - oldest, 0.0)

    raw = p["gate_rule"] == 1
    level = jnp.where(raw, conf, ema)
    steady = raw | (delta >= -p["delta_slack"])
    enough = warm & (obs.pool_size >= p["min_complete"])
    obs = fx.stop(obs, winner, "ema_gate", when=enough & (level >= p["conf_thr"]) & steady)
    alive = obs.alive
    agree = jnp.any(alive) & jnp.all(jnp.where(alive, obs.latest == winner, True))
    consensus = (p["consensus"] == 1) & enough & (winner != NO_ANSWER) & agree
    obs = fx.stop(obs, winner, "consensus", when=consensus)
    obs = fx.stop(obs, winner, "all_resolved", when=~jnp.any(obs.alive))

    # Widen while confidence is low (and, under widen_rule 0, not rising).
    spawned = obs.opened
    cap = jnp.minimum(p["max_branch_use"], MAX_BRANCH)
    trend_ok = (p["widen_rule"] == 1) | (delta <= p["trend_thr"])
    widen = ((spawned < cap) & trend_ok & (cstate["rounds"] >= jnp.maximum(1, p["warm_up"] // 2))
             & (level < p["conf_thr"]))
    n_new = jnp.where(widen & ~obs.done, jnp.minimum(p["widen_burst"], cap - spawned), 0)
    obs = fx.probe_new(obs, n_new)
    stable = jnp.where((stable == 0) & (obs.latest != NO_ANSWER), 1, stable)

    n = cstate["rounds"] + 1
    obs = fx.stop(obs, winner, "max_outer", when=n >= MAX_OUTER)
    return obs, {
        "ema": ema, "window": window, "filled": filled, "delta": delta,
        "disagree": disagree, "probes": probes, "stable": stable, "rounds": n,
    }


def finish(obs, cstate, p, fx):
    """CMC's answer (the pool majority, or its fallback), or under ``vote_rule`` >= 1 the
    length-weighted vote of the finished branches when any finished."""
    weighted = weighted_winner(obs, p["vote_gamma"])
    cmc = _cmc_finish(obs, cstate, p, fx)
    return jnp.where((p["vote_rule"] >= 1) & (weighted != NO_ANSWER), weighted, cmc)


def _trace_fields(cstate):
    return {"ema": cstate["ema"], "delta": cstate["delta"], "rounds": cstate["rounds"]}


def _flat(genome: Mapping[str, Any]) -> dict[str, Any]:
    """Genome as flat scalar config keys (``n_init.a``, ``n_init.s``, switches)."""
    out: dict[str, Any] = {}
    for k in KNOBS:
        out[f"{k}.a"], out[f"{k}.s"] = (float(v) for v in genome[k])
    for k in SWITCHES:
        out[k] = int(genome[k])
    return out


def _unflat(config: Mapping[str, Any]) -> dict[str, Any]:
    g: dict[str, Any] = {k: [config[f"{k}.a"], config[f"{k}.s"]] for k in KNOBS}
    g.update({k: config[k] for k in SWITCHES})
    return g


def _family_params(config: Mapping[str, Any]) -> dict[str, Any]:
    return schedule(check_genome(_unflat(config)), config["beta"])


def _family_slots(config: Mapping[str, Any]) -> int:
    return schedule(_unflat(config), config["beta"])["max_branch_use"]


# One controller for the whole family: a config is a genome plus beta.
FAMILY = Controller(
    name="gcmc_family",
    aliases=(),
    defaults={"beta": 0.5, **_flat(CMC_GENOME)},
    make_params=_family_params,
    max_slots=_family_slots,
    init=init,
    step=step,
    stop_reasons=STOP_REASONS,
    trace_fields=_trace_fields,
    finish=finish,
    doc=__doc__,
)


def family_configs(genome: Mapping[str, Any], betas) -> list[dict[str, Any]]:
    """Configs of :data:`FAMILY` for one genome over a beta grid."""
    flat = _flat(check_genome(genome))
    return [{**flat, "beta": float(b)} for b in betas]


def make_controller(genome: Mapping[str, Any], name: str = "gcmc") -> Controller:
    """An ordinary beta-only controller with ``genome`` baked in (what evolved modules export)."""
    g = check_genome(genome)
    return Controller(
        name=name,
        aliases=(),
        defaults={"beta": 0.5},
        make_params=lambda config: schedule(g, config["beta"]),
        max_slots=lambda config: schedule(g, config["beta"])["max_branch_use"],
        init=init,
        step=step,
        stop_reasons=STOP_REASONS,
        trace_fields=_trace_fields,
        finish=finish,
        doc=f"Generalised CMC with genome {g}.",
    )
