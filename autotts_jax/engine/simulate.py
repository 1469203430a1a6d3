"""Batched replay: one jitted call runs a controller over configs x shuffle seeds x questions.

Shuffle orders are CPython's: upstream builds ``random.Random(seed)`` per question and shuffles
the branch list, so every question of a seed gets the same permutation (for equal branch
counts).  A JAX PRNG cannot reproduce that, so permutations are computed on the host and passed
in as data.

**Sequential tokens** (the latency proxy upstream leaves at 0): within one controller round
every branch that is charged runs in parallel, and rounds run one after another, so an
episode's sequential tokens are the sum over rounds of the largest charge any single slot
received in that round.  SC@64 (one round of 64 full reads) costs its longest branch; ASC
(one read per round) costs the sum of its reads; ESC costs the sum over windows of each
window's longest branch.

The round cap (``max_rounds``, default 1024) guarantees termination: an episode still running
then ends with no answer and stop reason ``round_cap``.  The published controllers need at most
~140 rounds on the public data.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from autotts_jax.engine import env as E
from autotts_jax.engine.protocol import Controller, Effects
from autotts_jax.engine.votes import pool_stats
from autotts_jax.store.load import ReplayData, bucket

DEFAULT_SEEDS = tuple(range(100))
DEFAULT_MAX_ROUNDS = 1024


@functools.lru_cache(maxsize=4096)
def permutation(seed: int, n: int) -> tuple[int, ...]:
    """CPython ``random.Random(seed).shuffle(list(range(n)))`` -- upstream's branch order."""
    p = list(range(n))
    random.Random(seed).shuffle(p)
    return tuple(p)


def permutation_table(seeds: Sequence[int], n_branches: np.ndarray, slots: int) -> np.ndarray:
    """``[len(seeds), Q, slots]`` int32: slot j of episode (seed, q) holds branch ``[s, q, j]``."""
    out = np.full((len(seeds), len(n_branches), slots), -1, dtype=np.int32)
    for i, s in enumerate(seeds):
        for q, n in enumerate(n_branches):
            p = permutation(int(s), int(n))[:slots]
            out[i, q, : len(p)] = p
    return out


@dataclass(frozen=True)
class Episodes:
    """Per-episode results, each of shape ``[configs, seeds, questions]``."""

    answer: np.ndarray  # int32 answer id, -1 = no answer
    correct: np.ndarray  # bool
    tokens: np.ndarray  # int64 total tokens charged
    seq_tokens: np.ndarray  # int64 sequential (critical-path) tokens
    branches: np.ndarray  # int32 branches opened
    rounds: np.ndarray  # int32 controller rounds including the opening round
    stop_reason: np.ndarray  # int32 index into ``stop_reasons``
    stop_reasons: tuple[str, ...]

    def summary(self, c: int) -> dict[str, Any]:
        """Upstream-exact aggregate of config ``c`` (accuracy at 2 dp, integer token total)."""
        n = int(self.correct[c].size)
        k = int(self.correct[c].sum())
        t = int(self.tokens[c].sum())
        st = int(self.seq_tokens[c].sum())
        reasons = np.bincount(self.stop_reason[c].ravel(), minlength=len(self.stop_reasons))
        return {
            "episodes": n,
            "n_correct": k,
            "total_tokens": t,
            "accuracy": round(100 * k / n, 2),
            "avg_tokens": t / n,
            "avg_tokens_int": t // n,
            "avg_seq_tokens": st / n,
            "avg_branches": float(self.branches[c].mean()),
            "avg_rounds": float(self.rounds[c].mean()),
            "stop_reasons": {
                r: int(x) for r, x in zip(self.stop_reasons, reasons, strict=True) if x
            },
        }


def stack_params(controller: Controller, configs: Sequence[Mapping[str, Any]]) -> dict:
    """Host-side: configs -> a dict of ``[C]`` arrays (int32 / float64 / bool leaves)."""
    rows = [controller.make_params(controller.config(c)) for c in configs]
    keys = rows[0].keys()
    out = {}
    for k in keys:
        vals = [r[k] for r in rows]
        if all(isinstance(v, bool | np.bool_) for v in vals):
            out[k] = np.asarray(vals, dtype=bool)
        elif all(isinstance(v, int | np.integer) for v in vals):
            out[k] = np.asarray(vals, dtype=np.int32)
        else:
            out[k] = np.asarray(vals, dtype=np.float64)
    return out


def _select(done: jax.Array, old, new):
    return jax.tree.map(lambda a, b: jnp.where(done, a, b), old, new)


def _round(fn, env: E.EnvState, *args):
    """Run one round, then book its critical-path tokens and count it."""
    before = env.cost
    env, cstate = fn(env, *args)
    charge = env.cost - before
    return replace(
        env, seq_tokens=env.seq_tokens + jnp.max(charge), rounds=env.rounds + 1
    ), cstate


_TRACE_KEYS = (
    "round", "opened", "opened_new", "read_new", "advanced", "pruned_new", "active",
    "finished", "pruned", "pool_size", "winner", "winner_votes", "runner_up_votes",
    "confidence", "tokens", "seq_tokens", "done", "stop_reason",
)


def _trace_row(controller: Controller, prev: E.EnvState, env: E.EnvState, cstate) -> dict:
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


def _episode(controller, data, params, perm, question, *, pool_size, cost_model, max_rounds,
             trace):
    fx = Effects(data, cost_model, controller.all_stop_reasons)
    env0 = E.reset(data, question, perm, pool_size)
    env, cstate = _round(lambda e: controller.init(e, params, fx), env0)

    def body(carry):
        env, cstate, buf = carry
        new_env, new_cstate = _round(lambda e: controller.step(e, cstate, params, fx), env)
        if trace:
            row = _trace_row(controller, env, new_env, new_cstate)
            buf = jax.tree.map(lambda b, v: b.at[env.rounds].set(v), buf, row)
        env, cstate = _select(env.done, (env, cstate), (new_env, new_cstate))
        return env, cstate, buf

    def cond(carry):
        env = carry[0]
        return ~env.done & (env.rounds < max_rounds)

    buf = None
    if trace:
        first = _trace_row(controller, env0, env, cstate)
        buf = jax.tree.map(
            lambda v: jnp.zeros((max_rounds + 1, *v.shape), v.dtype).at[0].set(v), first
        )
    env, cstate, buf = jax.lax.while_loop(cond, body, (env, cstate, buf))
    if controller.finish is not None:
        env = controller.finish(env, cstate, params, fx)
    env = E.stop(env, E.NO_ANSWER, 0)  # round cap: no answer, reason index 0
    answer = env.answer
    correct = jnp.where(
        answer >= 0, data.is_correct[question, jnp.maximum(answer, 0)], False
    )
    out = {
        "answer": answer,
        "correct": correct,
        "tokens": env.total_tokens,
        "seq_tokens": env.seq_tokens,
        "branches": env.opened,
        "rounds": env.rounds,
        "stop_reason": env.stop_reason,
    }
    if trace:
        out["trace"] = buf
    return out


@functools.partial(
    jax.jit,
    static_argnames=("controller", "pool_size", "cost_model", "max_rounds", "trace"),
)
def _simulate(controller, data, params, perms, *, pool_size, cost_model, max_rounds, trace):
    """params: dict of [C]; perms: [N, Q, S].  Returns dict of [C, N, Q] arrays."""
    n_q = perms.shape[1]
    questions = jnp.arange(n_q, dtype=jnp.int32)
    run = functools.partial(
        _episode, controller, data, pool_size=pool_size, cost_model=cost_model,
        max_rounds=max_rounds, trace=trace,
    )
    over_q = jax.vmap(run, in_axes=(None, 0, 0))
    over_seeds = jax.vmap(over_q, in_axes=(None, 0, None))
    over_configs = jax.vmap(over_seeds, in_axes=(0, None, None))
    return over_configs(params, perms, questions)


def _pad_configs(params: dict, n: int) -> dict:
    """Pad the config axis to ``n`` by repeating config 0 (keeps compiled shapes in buckets)."""
    return {k: np.concatenate([v, np.repeat(v[:1], n - len(v))]) for k, v in params.items()}


def simulate(
    controller: Controller,
    data: ReplayData,
    configs: Sequence[Mapping[str, Any]],
    seeds: Sequence[int] = DEFAULT_SEEDS,
    *,
    cost_model: str = "reference",
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    pool_size: int = 128,
    slots: int | None = None,
    trace: bool = False,
) -> Episodes | tuple[Episodes, dict]:
    """Replay ``controller`` for every config x seed x question of ``data`` in one call.

    ``pool_size`` must exceed every final-answer id (the public data needs <= 100).  ``slots``
    defaults to the controller's need, rounded up to a power of two (so configs of one
    controller share compiled code).  With ``trace=True`` also returns the per-round record
    (``[C, N, Q, max_rounds + 1]`` per field; row r is round r, valid while
    ``r < rounds``) -- meant for a few episodes, not for sweeps.
    """
    if cost_model not in E.COST_MODELS:
        raise ValueError(f"cost_model must be one of {E.COST_MODELS}, got {cost_model!r}")
    if not configs:
        raise ValueError("no configs to simulate")
    n_b = data.probe_answer.shape[1]
    need = max(controller.max_slots(controller.config(c)) for c in configs)
    slots = slots or min(bucket(need, 8), n_b)
    params = stack_params(controller, configs)
    n_conf = len(configs)
    params = _pad_configs(params, bucket(n_conf, 1))
    perms = permutation_table(list(seeds), np.asarray(data.n_branches), slots)
    out = _simulate(
        controller, data, params, perms, pool_size=pool_size, cost_model=cost_model,
        max_rounds=max_rounds, trace=trace,
    )
    out = jax.device_get(out)
    eps = Episodes(
        answer=out["answer"][:n_conf],
        correct=out["correct"][:n_conf],
        tokens=out["tokens"][:n_conf].astype(np.int64),
        seq_tokens=out["seq_tokens"][:n_conf].astype(np.int64),
        branches=out["branches"][:n_conf],
        rounds=out["rounds"][:n_conf],
        stop_reason=out["stop_reason"][:n_conf],
        stop_reasons=controller.all_stop_reasons,
    )
    if trace:
        return eps, {k: v[:n_conf] for k, v in out["trace"].items()}
    return eps
