"""One replayed episode: its opening round, its later rounds, its results and its trace rows.

Everything here is per episode and unbatched; the scheduler (:mod:`.scheduler`) vmaps it over
lanes or over a chunk.  Keeping the episode step apart from the schedule is what lets the
traced path (one while-loop per episode) and the lane-refill path (one while-loop for all
lanes) share every line of episode logic, so they cannot drift apart.

**Sequential tokens** (the latency proxy upstream leaves at 0): within one controller round
every branch that is charged runs in parallel, and rounds run one after another, so an
episode's sequential tokens are the sum over rounds of the largest charge any single slot
received in that round (``env.seq_tokens``, kept by the environment).  SC@64 (one round of 64
full reads) costs its longest branch; ASC (one read per round) costs the sum of its reads; ESC
costs the sum over windows of each window's longest branch.

A second, per-branch accounting (``"max_branch"``, the one of the SCOUT testbed) ignores the
schedule: every opened branch runs in parallel and an episode costs its largest per-slot total
(``env.cost``), except for controllers that declare ``seq_window`` (ESC): their opened slots
are cut into consecutive windows of that many slots, and the episode costs the sum over windows
of each window's largest branch.  :func:`outputs` computes it once the episode has stopped.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from autotts_jax.engine import env as E
from autotts_jax.engine.protocol import Controller, Effects, finish_episode, play_round
from autotts_jax.engine.votes import pool_stats
from autotts_jax.store.load import ReplayData


def select(done: jax.Array, old, new):
    """``old`` where ``done`` else ``new``, leaf by leaf (one episode: ``done`` is a scalar)."""
    return jax.tree.map(lambda a, b: jnp.where(done, a, b), old, new)


def play(controller: Controller, data: ReplayData, cost_model: str, env: E.EnvState, call):
    """One replayed round of ``call`` (see :func:`~autotts_jax.engine.protocol.play_round`)."""
    return play_round(Effects(data, cost_model, controller.all_stop_reasons, env), call)


def trace_row(controller: Controller, prev: E.EnvState, env: E.EnvState, cstate) -> dict:
    """The record of the round that took ``prev`` to ``env`` (``controller``'s own fields as
    ``c.<name>``); :mod:`~autotts_jax.engine.traces` turns rows into text and JSON."""
    winner, t1, t2, conf = pool_stats(env)
    row = {
        "round": env.rounds - 1,
        "opened": env.opened,
        "opened_new": env.opened - prev.opened,
        "read_new": jnp.sum(env.read & ~prev.read),
        "advanced": jnp.sum(env.depth != prev.depth) + jnp.sum(env.finished & ~prev.finished),
        "pruned_new": jnp.sum(env.pruned & ~prev.pruned),
        "active": jnp.sum(env.alive),
        "finished": jnp.sum(env.finished | env.read),
        "pruned": jnp.sum(env.pruned),
        "pool_size": env.pool_size,
        "winner": winner,
        "winner_votes": t1,
        "runner_up_votes": t2,
        "confidence": conf,
        "tokens": env.total_tokens,
        "seq_tokens": env.seq_tokens,
        "done": env.done,
        "stop_reason": env.stop_reason,
    }
    if controller.trace_fields is not None:
        row.update({f"c.{k}": v for k, v in controller.trace_fields(cstate).items()})
    return {k: jnp.asarray(v) for k, v in row.items()}


def start(controller, data, params, perm, question, *, pool_size, cost_model):
    """A fresh episode after its opening round: (state before init, env, cstate)."""
    env0 = E.reset(data, question, perm, pool_size)
    env, cstate = play(controller, data, cost_model, env0,
                       lambda obs, fx: controller.init(obs, params, fx))
    return env0, env, cstate


def step(controller, data, env, cstate, params, *, cost_model, max_rounds):
    """One round of a running episode; finished (or capped) episodes are left unchanged."""
    new_env, new_cstate = play(controller, data, cost_model, env,
                               lambda obs, fx: controller.step(obs, cstate, params, fx))
    hold = env.done | (env.rounds >= max_rounds)
    return select(hold, (env, cstate), (new_env, new_cstate))


def outputs(controller, data, env, cstate, params, question, *, cost_model, ledger=False):
    """Per-episode results of a stopped (or round-capped) episode."""
    env = finish_episode(controller, Effects(data, cost_model, controller.all_stop_reasons, env),
                         cstate, params)
    env = E.stop(env, E.NO_ANSWER, 0)  # round cap: no answer, reason index 0
    answer = env.answer
    n_slots = env.cost.shape[0]
    width = n_slots if controller.seq_window is None else controller.seq_window(params)
    window = env.slots // jnp.maximum(jnp.asarray(width, jnp.int32), 1)
    opened_cost = jnp.where(env.is_open, env.cost, 0)
    per_window = jnp.zeros(n_slots, jnp.int32).at[window].max(opened_cost)
    correct = jnp.where(
        answer >= 0, data.is_correct[question, jnp.maximum(answer, 0)], False
    )
    out = {
        "answer": answer,
        "correct": correct,
        "tokens": env.total_tokens,
        "seq_tokens": env.seq_tokens,
        "seq_tokens_max_branch": jnp.sum(per_window, dtype=jnp.int32),
        "branches": env.opened,
        "rounds": env.rounds,
        "stop_reason": env.stop_reason,
    }
    if ledger:
        out["slot_depth"] = env.depth
        out["slot_end"] = (env.read.astype(jnp.int8) + 2 * env.finished.astype(jnp.int8))
    return out


def episode(controller, data, params, perm, question, *, pool_size, cost_model, max_rounds,
            trace, ledger=False):
    """One episode as its own while-loop (the traced path: it records every round)."""
    env0, env, cstate = start(controller, data, params, perm, question, pool_size=pool_size,
                              cost_model=cost_model)

    def body(carry):
        env, cstate, buf = carry
        new_env, new_cstate = step(controller, data, env, cstate, params,
                                   cost_model=cost_model, max_rounds=max_rounds)
        if trace:
            row = trace_row(controller, env, new_env, new_cstate)
            buf = jax.tree.map(lambda b, v: b.at[env.rounds].set(v), buf, row)
        return new_env, new_cstate, buf

    def cond(carry):
        env = carry[0]
        return ~env.done & (env.rounds < max_rounds)

    buf = None
    if trace:
        first = trace_row(controller, env0, env, cstate)
        buf = jax.tree.map(
            lambda v: jnp.zeros((max_rounds + 1, *v.shape), v.dtype).at[0].set(v), first
        )
    env, cstate, buf = jax.lax.while_loop(cond, body, (env, cstate, buf))
    out = outputs(controller, data, env, cstate, params, question, cost_model=cost_model,
                  ledger=ledger)
    if trace:
        out["trace"] = buf
    return out
