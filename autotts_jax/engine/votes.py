"""Votes and the beta-majority confidence, with the reference's exact tie-breaking.

Upstream votes with ``Counter(list).most_common``: the winner has the highest count and ties go
to the answer whose *first occurrence* in the list is earliest.  The list order is part of the
semantics: read order for ASC/ESC/SC, completion order for CMC's pool, spawn (slot) order for
Parallel-Probe's vote over active branches.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from autotts_jax.engine.env import NO_ANSWER, EnvState

Array = "jax.Array"
_MAX_VOTES = 256
_PAIRWISE_MAX_SLOTS = 32  # vote(): pairwise counting up to here, scatter beyond


@functools.lru_cache(maxsize=1)
def confidence_table() -> np.ndarray:
    """``CONF[t1, t2] = 1 - scipy.stats.beta.cdf(0.5, t1 + 1, t2 + 1)`` in float64.

    Parity needs SciPy's values, not the exact dyadic rational: they differ by up to 7 ulp in
    hundreds of cells, and CMC's EMA compares them against thresholds.
    """
    from scipy.stats import beta

    t = np.arange(_MAX_VOTES + 1, dtype=np.float64)
    table = 1.0 - beta.cdf(0.5, t[:, None] + 1.0, t[None, :] + 1.0)
    table[0, :] = 0.0  # upstream: conf = 0 when top1 <= 0
    return table.astype(np.float64)


def confidence(top1: Array, top2: Array) -> Array:
    """P[p > 1/2] under Beta(top1 + 1, top2 + 1); 0 when ``top1 <= 0``.  float64."""
    table = jnp.asarray(confidence_table())
    t1 = jnp.clip(top1, 0, _MAX_VOTES)
    t2 = jnp.clip(top2, 0, _MAX_VOTES)
    return jnp.where(top1 > 0, table[t1, t2], 0.0)


def pool_stats(env: EnvState) -> tuple[Array, Array, Array, Array]:
    """(winner, top1, top2, confidence) of the completed-answer pool.

    ``winner`` is ``-1`` (no answer) for an empty pool.  Ties go to the answer completed first.
    """
    count, first = env.pool_count, env.pool_first
    top1 = jnp.max(count)
    winner = jax.lax.argmin(jnp.where(count == top1, first, jnp.iinfo(jnp.int32).max), 0,
                            jnp.int32)
    winner = jnp.where(top1 > 0, winner, NO_ANSWER).astype(jnp.int32)
    top2 = jnp.max(jnp.where(jnp.arange(count.shape[0], dtype=jnp.int32) == winner, 0, count))
    return winner, top1, top2, confidence(top1, top2)


def vote(answers: Array, mask: Array, vocab: int) -> tuple[Array, Array, Array]:
    """(winner, top1, top2) of ``answers[mask]`` taken in array order; winner -1 if empty.

    Ids must lie in ``[0, vocab)`` (pass the store's vocabulary size,
    ``data.is_correct.shape[1]``).  The winner is the answer of the first slot whose answer has
    the top count, i.e. the top answer occurring earliest; ``top2`` is the largest count of
    any other answer.

    Two exact ways to count, chosen by the static slot count: up to 32 slots, pairwise
    ``[S, S]`` equality; beyond, a scatter-add into a ``[vocab]`` vector.  On XLA:CPU at 1024
    episodes the pairwise count is 3-8x faster at S = 16 and 32 and 3x slower at S = 64
    (``benchmarks/``, Parallel-Probe's slot groups).
    """
    n_slots = answers.shape[0]
    if n_slots <= _PAIRWISE_MAX_SLOTS:
        same = (answers[:, None] == answers[None, :]) & mask[None, :]
        per_slot = jnp.where(mask, jnp.sum(same, axis=1, dtype=jnp.int32), 0)
    else:
        idx = jnp.where(mask, answers, vocab)
        counts = jnp.zeros(vocab, jnp.int32).at[idx].add(1, mode="drop")
        per_slot = jnp.where(mask, counts[jnp.clip(answers, 0, vocab - 1)], 0)
    top1 = jnp.max(per_slot)
    pos = jax.lax.argmax(per_slot == top1, 0, jnp.int32)
    winner = jnp.where(top1 > 0, answers[pos], NO_ANSWER).astype(jnp.int32)
    top2 = jnp.max(jnp.where(answers != winner, per_slot, 0))
    return winner, top1, top2


def pool_majority(env: EnvState) -> Array:
    return pool_stats(env)[0]
