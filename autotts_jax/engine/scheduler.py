"""How a queue of episodes is run: compiled chunks, refilled lanes, devices and slot groups.

The episode logic lives in :mod:`.episode_step`; this module only decides *when* each episode
is stepped and *where*.  Results never depend on the schedule: chunk size, lane count, refill
threshold and device count change speed and memory, not a single episode.

- **Chunks.** The flat queue runs ``chunk_size`` episodes per device per compiled call (the
  last chunk padded), which bounds memory for any batch and keeps every input shaped by the
  chunk alone, so new configs, seeds, batch sizes or stores of the same padded shape reuse one
  compiled program (``TRACE_COUNT`` lets tests check it).
- **Lane refill.** Within a chunk, ``lanes`` episodes run side by side and a lane that stops
  takes the next queued episode (:func:`chunk_refill`), instead of waiting for the slowest
  episode of the batch.
- **Sharding.** With several devices each chunk is split over a 1-D mesh of the episode axis.
- **Slot groups.** A controller with ``group_slots`` runs configs that need few slots at a
  smaller slot count (:func:`slot_groups`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from autotts_jax.engine import episode_step as S
from autotts_jax.engine.protocol import Controller
from autotts_jax.store.load import ReplayData, bucket

# Times a chunk runner was traced, per controller name: tests assert that new configs, seeds
# and stores of the same padded shape reuse the compiled program (a max-traces guard).
TRACE_COUNT: dict[str, int] = {}


def _select_lanes(keep: jax.Array, old, new):
    """Per-lane ``where`` over a batched pytree: lane i keeps ``old`` where ``keep[i]``."""
    def pick(a, b):
        return jnp.where(keep.reshape(keep.shape + (1,) * (a.ndim - 1)), a, b)

    return jax.tree.map(pick, old, new)


def chunk(controller, data, params, perm, question, valid, *, pool_size, cost_model,
          max_rounds, trace, ledger=False):
    """One chunk of flat episodes: episode i replays ``question[i]`` with slot order
    ``perm[i]`` under ``params`` (a pytree of per-episode scalars).  ``valid`` marks the real
    episodes (a prefix); this traced path runs the padding too (it copies a real episode).

    Every input is shaped by the chunk alone, never by how many configs or seeds the caller
    asked for, so one compiled program serves every sweep of a controller.
    """
    del valid
    TRACE_COUNT[controller.name] = TRACE_COUNT.get(controller.name, 0) + 1
    run = functools.partial(
        S.episode, controller, data, pool_size=pool_size, cost_model=cost_model,
        max_rounds=max_rounds, trace=trace, ledger=ledger,
    )
    return jax.vmap(run)(params, perm, question)


def chunk_refill(controller, data, params, perm, question, valid, *, pool_size, cost_model,
                 max_rounds, lanes, refill_every, ledger=False):
    """A queue of episodes run on ``lanes`` vmapped lanes that are refilled as episodes stop.

    A plain ``vmap`` of per-episode while-loops runs every episode for as many rounds as the
    slowest one in the batch; on the public data that is 2.5-5x more rounds than the mean
    (CMC: mean ~28, max ~117).  Here one while-loop steps all lanes; once at least
    ``refill_every`` lanes have stopped (a scalar condition, so ``lax.cond`` really skips the
    work otherwise), their results are written out and they start the next queued episodes.
    Results are identical to the one-loop-per-episode path; only the schedule differs.

    ``valid`` marks the real episodes, a prefix of the queue (a traced count, so a short last
    chunk reuses the compiled program): the padding behind them is never started.
    """
    TRACE_COUNT[controller.name] = TRACE_COUNT.get(controller.name, 0) + 1
    n_q = question.shape[0]  # queue length (static); ep == n_q marks an empty lane
    n_valid = jnp.sum(valid, dtype=jnp.int32)
    lanes = min(lanes, n_q)
    take = lambda tree, idx: jax.tree.map(lambda v: v[idx], tree)  # noqa: E731
    start = jax.vmap(functools.partial(
        S.start, controller, data, pool_size=pool_size, cost_model=cost_model))
    step = jax.vmap(functools.partial(
        S.step, controller, data, cost_model=cost_model, max_rounds=max_rounds))
    outputs = jax.vmap(functools.partial(S.outputs, controller, data, cost_model=cost_model,
                                         ledger=ledger))

    def launch(ep):
        """Start episode ``ep[i]`` on lane i (lanes with ``ep >= n_valid`` stay empty, done)."""
        idx = jnp.minimum(ep, n_q - 1)
        _, env, cs = start(take(params, idx), perm[idx], question[idx])
        return replace(env, done=env.done | (ep >= n_valid)), cs

    # The loop starts from empty lanes (lane_ep == n_q): its first harvest launches the first
    # episodes, so the opening round is compiled once, inside the loop, not also before it.
    lane_ep = jnp.full(lanes, n_q, jnp.int32)
    shapes = jax.eval_shape(launch, lane_ep)
    env, cs = jax.tree.map(lambda t: jnp.zeros(t.shape, t.dtype), shapes)
    env = replace(env, done=jnp.ones(lanes, bool))
    template = jax.eval_shape(lambda: outputs(env, cs, take(params, lane_ep % n_q),
                                              question[lane_ep % n_q]))
    out = jax.tree.map(lambda t: jnp.zeros((n_q + 1, *t.shape[1:]), t.dtype), template)

    def stopped(env, lane_ep):
        return (env.done | (env.rounds >= max_rounds)) & (lane_ep < n_valid)

    def harvest(carry):
        env, cs, lane_ep, nxt, out = carry
        fin = stopped(env, lane_ep)
        free = fin | (lane_ep >= n_valid)
        idx = jnp.minimum(lane_ep, n_q - 1)
        res = outputs(env, cs, take(params, idx), question[idx])
        dest = jnp.where(fin, lane_ep, n_q)  # row n_q is a sink for lanes with nothing to write
        out = jax.tree.map(lambda o, r: o.at[dest].set(r), out, res)
        new_ep = nxt + jnp.cumsum(free, dtype=jnp.int32) - 1
        new_ep = jnp.where(free, jnp.where(new_ep < n_valid, new_ep, n_q), lane_ep)
        new_env, new_cs = launch(new_ep)
        env, cs = _select_lanes(~free, (env, cs), (new_env, new_cs))
        nxt = jnp.minimum(nxt + jnp.sum(free, dtype=jnp.int32), n_valid)
        return env, cs, new_ep, nxt, out

    def body(carry):
        env, cs, lane_ep, nxt, out = carry
        env, cs = step(env, cs, take(params, jnp.minimum(lane_ep, n_q - 1)))
        fin = stopped(env, lane_ep)
        n_fin = jnp.sum(fin, dtype=jnp.int32)
        running = jnp.sum(~fin & (lane_ep < n_valid), dtype=jnp.int32)
        go = (n_fin >= refill_every) | ((running == 0) & ((n_fin > 0) | (nxt < n_valid)))
        return jax.lax.cond(go, harvest, lambda c: c, (env, cs, lane_ep, nxt, out))

    def cond(carry):
        _, _, lane_ep, nxt, _ = carry
        return jnp.any(lane_ep < n_valid) | (nxt < n_valid)

    carry = (env, cs, lane_ep, jnp.zeros((), jnp.int32), out)
    *_, out = jax.lax.while_loop(cond, body, carry)
    return jax.tree.map(lambda o: o[:n_q], out)


@functools.lru_cache(maxsize=64)
def compiled(fn, n_devices: int, controller: Controller, static: tuple):
    """``fn`` (a chunk runner) compiled once per (controller, static settings, devices).

    With several devices the chunk runs under ``shard_map`` over a 1-D mesh of the episode
    axis: each device runs its own while-loop on its shard, with no cross-device sync per
    round; the store is replicated.
    """
    body = functools.partial(fn, controller, **dict(static))
    if n_devices == 1:
        return jax.jit(body)
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    mesh = Mesh(np.array(jax.devices()[:n_devices]), ("episodes",))
    sharded = jax.shard_map(
        body, mesh=mesh,
        in_specs=(P(), P("episodes"), P("episodes"), P("episodes"), P("episodes")),
        out_specs=P("episodes"),
        # Episodes never communicate; skip the varying-axis typing of the while-loop carry.
        check_vma=False,
    )
    return jax.jit(sharded)


def slot_groups(needs: Sequence[int]) -> dict[int, list[int]]:
    """Config indices by the slot count they run at (``group_slots``): configs that need at
    most a quarter of the largest bucket run together at their own largest bucket, the rest at
    the largest.  Two groups at most, so a sweep compiles at most two programs; on
    Parallel-Probe's num_chains grid (1 ... 64) this keeps nearly all of the gain of one
    group per bucket at half the compilation."""
    top = max(needs)
    small = [i for i, n in enumerate(needs) if 4 * n <= top]
    if not small:
        return {top: list(range(len(needs)))}
    return {max(needs[i] for i in small): small,
            top: [i for i, n in enumerate(needs) if 4 * n > top]}


def run_queue(
    controller: Controller,
    data: ReplayData,
    params: Any,
    perms: np.ndarray,
    cfg: np.ndarray,
    seed: np.ndarray,
    question: np.ndarray,
    *,
    pool_size: int,
    cost_model: str,
    max_rounds: int,
    trace: bool,
    ledger: bool,
    chunk_size: int,
    lanes: int,
    n_devices: int,
) -> dict[str, np.ndarray]:
    """Run the flat queue of episodes ``(cfg[i], seed[i], question[i])`` in compiled chunks.

    ``params`` is a pytree of ``[C]`` arrays indexed by ``cfg``; ``perms`` is ``[N, Q, slots]``
    indexed by ``(seed, question)``.  Returns each output field as a host array
    ``[episodes, ...]`` in queue order.
    """
    n_ep, slots = cfg.size, perms.shape[2]
    static = dict(pool_size=pool_size, cost_model=cost_model, max_rounds=max_rounds)
    if ledger:
        static["ledger"] = True
    if trace:
        # Every queued episode runs here, padding included: small batches get a small chunk
        # (a power of two, so at most log2(chunk_size) shapes).
        per_device = min(chunk_size, bucket(-(-n_ep // n_devices), 8))
        fn, static = chunk, {**static, "trace": True}
    else:
        # Padding is never started, so the queue is always ``chunk_size`` long: one compiled
        # program per (controller, slot count) serves every batch size.
        per_device = chunk_size
        lanes = min(lanes, per_device)
        fn, static = chunk_refill, {**static, "lanes": lanes,
                                    "refill_every": max(1, lanes // 8)}
    width = per_device * n_devices
    run = compiled(fn, n_devices, controller, tuple(sorted(static.items())))
    outs = []
    for first in range(0, n_ep, width):
        idx = np.arange(first, first + width)
        valid = idx < n_ep
        idx = np.where(valid, idx, first)  # pad the last chunk with copies of a real episode
        chunk_perm = np.zeros((width, slots), np.int32)
        chunk_perm[valid] = perms[seed[idx[valid]], question[idx[valid]]]
        if trace:
            chunk_perm[~valid] = chunk_perm[0]
        chunk_params = jax.tree.map(lambda v, rows=cfg[idx]: v[rows], params)
        outs.append(run(data, chunk_params, chunk_perm, question[idx], valid))
    return jax.tree.map(lambda *xs: np.concatenate(xs)[:n_ep], *jax.device_get(outs))
