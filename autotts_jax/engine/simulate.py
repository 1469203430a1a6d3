"""Batched replay: a controller over configs x shuffle seeds x questions, in compiled chunks.

:func:`simulate` is a short composition of three parts with one job each (as brax composes its
episode, auto-reset and vmap wrappers): the episode step (:mod:`.episode_step`: rounds,
outputs, sequential-token accounting, trace rows), the scheduler (:mod:`.scheduler`: chunks,
lane refill, sharding, compile cache, slot groups) and the results type (:mod:`.results`:
:class:`Episodes` and its summaries).  What stays here is deciding what to replay: the
configs' parameters and the slot orders.

Shuffle orders are CPython's: upstream builds ``random.Random(seed)`` per question and shuffles
the branch list, so every question of a seed gets the same permutation (for equal branch
counts).  A JAX PRNG cannot reproduce that, so permutations are computed on the host and passed
in as data.

Sequential tokens are kept two ways (see :mod:`.episode_step`): the critical path over rounds
(``Episodes.seq_tokens``, the default that tables and plots use) and SCOUT's per-branch
accounting (``Episodes.seq_tokens_max_branch``); ``Episodes.seq(accounting)`` picks one.

The round cap (``max_rounds``, default 1024) guarantees termination: an episode still running
then ends with no answer and stop reason ``round_cap``.  The published controllers need at most
~140 rounds on the public data.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from autotts_jax.engine import env as E
from autotts_jax.engine.precision import float64
from autotts_jax.engine.protocol import Controller
from autotts_jax.engine.results import Episodes, merge_groups
from autotts_jax.engine.scheduler import run_queue, slot_groups
from autotts_jax.store.load import ReplayData, bucket

__all__ = ["DEFAULT_CHUNK", "DEFAULT_LANES", "DEFAULT_MAX_ROUNDS", "DEFAULT_SEEDS", "Episodes",
           "permutation", "permutation_table", "simulate", "stack_params"]

DEFAULT_SEEDS = tuple(range(100))
DEFAULT_MAX_ROUNDS = 1024
DEFAULT_CHUNK = 65536  # queued episodes per device per compiled call (bounds memory;
# one chunk holds a store's whole 33,000-episode CMC grid, so it pays one tail, not three)
DEFAULT_LANES = 1024  # episodes stepped side by side: keeps the loop state cache-sized


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


def slot_orders(seeds: Sequence[int], n_branches: np.ndarray, slots: int,
                orders: np.ndarray | None = None) -> np.ndarray:
    """``[N, Q, slots]`` int32 slot orders: the seeds' shuffles, or ``orders`` (``[N, Q, n]``,
    cut or padded with -1 to ``slots``) when a caller gives them explicitly."""
    perms = permutation_table(seeds, n_branches, slots)
    if orders is None:
        return perms
    given = np.asarray(orders, np.int32)[:, :, :slots]
    if given.shape[1] != perms.shape[1]:
        raise ValueError(f"orders: {given.shape[1]} questions, the data has {perms.shape[1]}")
    perms = np.full_like(perms, -1)
    perms[:, :, : given.shape[2]] = given
    return perms


def stack_params(controller: Controller, configs: Sequence[Mapping[str, Any]]) -> Any:
    """Host-side: configs -> ``make_params``'s pytree (a dict, a NamedTuple, ...) with one
    ``[C]`` array per leaf: int32 where every config gives an int, bool where every config
    gives a bool, float64 otherwise."""
    rows = [controller.make_params(controller.config(c)) for c in configs]
    shape = jax.tree.structure(rows[0])
    for c, row in zip(configs, rows, strict=True):
        if jax.tree.structure(row) != shape:
            raise ValueError(f"{controller.name}: make_params({dict(c)}) returned "
                             f"{jax.tree.structure(row)}, other configs {shape}")
    return jax.tree.map(_column, rows[0], *rows[1:])


def _column(*vals) -> np.ndarray:
    if all(isinstance(v, bool | np.bool_) for v in vals):
        return np.asarray(vals, dtype=bool)
    if all(isinstance(v, int | np.integer) for v in vals):
        return np.asarray(vals, dtype=np.int32)
    return np.asarray(vals, dtype=np.float64)


@float64
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
    chunk_size: int = DEFAULT_CHUNK,
    lanes: int = DEFAULT_LANES,
    devices: int | None = None,
    ledger: bool = False,
    orders: np.ndarray | None = None,
) -> Episodes | tuple[Episodes, dict]:
    """Replay ``controller`` for every config x seed x question of ``data``.

    Episodes are flattened and run in chunks of ``chunk_size`` per device through one compiled
    program (the last chunk is padded, its padding never started and discarded), so results do
    not depend on the chunk size or the number of devices, memory stays bounded for any batch,
    and new configs, seeds, batch sizes or stores of the same padded shape never recompile.
    Within a chunk, ``lanes`` episodes run side by side and a lane that stops takes the next
    queued episode (see :func:`.scheduler.chunk_refill`).  ``devices`` (default: all visible)
    shards each chunk over a 1-D mesh of the episode axis.

    ``pool_size`` must exceed every final-answer id (the public data needs <= 100).  ``slots``
    defaults to the controller's need rounded up to a power of two (for a controller with
    ``group_slots``, each config group gets its own bucket).  With ``trace=True`` also
    returns the per-round record (``[C, N, Q, max_rounds + 1]`` per field; row r is round r,
    valid while ``r < rounds``) -- meant for a few episodes, not for sweeps.  With
    ``ledger=True`` the episodes also carry what they saw of each slot (``slot_depth``,
    ``slot_end``; a separate compiled program).

    ``orders`` replaces the seeds' shuffles by explicit slot orders, ``[N, Q, n]`` int: slot
    ``j`` of episode ``(i, q)`` holds branch ``orders[i, q, j]`` (e.g. the order in which a
    live run started its branches); ``N`` takes the place of the seed axis.
    """
    if cost_model not in E.COST_MODELS:
        raise ValueError(f"cost_model must be one of {E.COST_MODELS}, got {cost_model!r}")
    if not configs:
        raise ValueError("no configs to simulate")
    seeds = list(seeds) if orders is None else list(range(len(orders)))
    data = jax.device_put(data)  # once, not once per chunk
    n_b = data.probe_answer.shape[1]
    needs = [min(bucket(controller.max_slots(controller.config(c)), 8), n_b) for c in configs]
    groups = slot_groups(needs) if slots is None and controller.group_slots and not trace else {}
    if len(groups) > 1:
        parts = {b: simulate(controller, data, [configs[i] for i in idx], seeds,
                             cost_model=cost_model, max_rounds=max_rounds, pool_size=pool_size,
                             slots=b, chunk_size=chunk_size, lanes=lanes, devices=devices,
                             ledger=ledger, orders=orders)
                 for b, idx in groups.items()}
        return merge_groups(parts, groups, len(configs))
    slots = slots or max(needs)
    params = stack_params(controller, configs)
    perms = slot_orders(seeds, np.asarray(data.n_branches), slots, orders)
    n_conf, n_seed, n_q = len(configs), len(seeds), perms.shape[1]
    cfg, seed, question = (
        a.ravel().astype(np.int32)
        for a in np.meshgrid(np.arange(n_conf), np.arange(n_seed), np.arange(n_q), indexing="ij")
    )
    out = run_queue(controller, data, params, perms, cfg, seed, question,
                    pool_size=pool_size, cost_model=cost_model, max_rounds=max_rounds,
                    trace=trace, ledger=ledger, chunk_size=chunk_size, lanes=lanes,
                    n_devices=devices or jax.device_count())
    out = jax.tree.map(lambda v: v.reshape(n_conf, n_seed, n_q, *v.shape[1:]), out)
    eps = Episodes.from_outputs(out, controller.all_stop_reasons)
    if trace:
        return eps, out["trace"]
    return eps
