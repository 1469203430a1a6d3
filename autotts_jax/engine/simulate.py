"""Batched replay: a controller over configs x shuffle seeds x questions, in compiled chunks.

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

A second, per-branch accounting (``"max_branch"``, the one of the SCOUT testbed) ignores the
schedule: every opened branch runs in parallel and an episode costs its largest per-slot total
(``env.cost``), except for controllers that declare ``seq_window`` (ESC): their opened slots
are cut into consecutive windows of that many slots, and the episode costs the sum over windows
of each window's largest branch.  Both are returned (``Episodes.seq_tokens`` and
``Episodes.seq_tokens_max_branch``, or ``Episodes.seq(accounting)``); the critical path is the
default and the one tables and plots use.

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
from autotts_jax.engine.protocol import Controller, Effects, finish_episode, play_round
from autotts_jax.engine.votes import pool_stats
from autotts_jax.store.load import ReplayData, bucket

DEFAULT_SEEDS = tuple(range(100))
DEFAULT_MAX_ROUNDS = 1024
DEFAULT_CHUNK = 65536  # queued episodes per device per compiled call (bounds memory;
# one chunk holds a store's whole 33,000-episode CMC grid, so it pays one tail, not three)
DEFAULT_LANES = 1024  # episodes stepped side by side: keeps the loop state cache-sized
SEQ_ACCOUNTINGS = ("critical_path", "max_branch")


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
    # int64 per-branch (SCOUT) sequential tokens: largest per-slot total (per seq_window)
    seq_tokens_max_branch: np.ndarray | None = None
    # With ``ledger=True``: what each episode saw of each slot, ``[configs, seeds, questions,
    # slots]``: probes explored (int32) and how its end was seen (int8: +1 read in full,
    # +2 explored to the end).  The non-interference check builds its counterfactual from it.
    slot_depth: np.ndarray | None = None
    slot_end: np.ndarray | None = None

    def seq(self, accounting: str = "critical_path") -> np.ndarray:
        """Per-episode sequential tokens under ``accounting`` (see ``SEQ_ACCOUNTINGS``)."""
        if accounting == "critical_path":
            return self.seq_tokens
        if accounting == "max_branch" and self.seq_tokens_max_branch is not None:
            return self.seq_tokens_max_branch
        raise ValueError(f"seq accounting must be one of {SEQ_ACCOUNTINGS}, got {accounting!r}")

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
            **self._max_branch_summary(c, n),
            "avg_branches": float(self.branches[c].mean()),
            "avg_rounds": float(self.rounds[c].mean()),
            "stop_reasons": {
                r: int(x) for r, x in zip(self.stop_reasons, reasons, strict=True) if x
            },
        }

    def _max_branch_summary(self, c: int, n: int) -> dict[str, Any]:
        if self.seq_tokens_max_branch is None:
            return {}
        s = int(self.seq_tokens_max_branch[c].sum())
        return {"seq_tokens_max_branch": s, "avg_seq_tokens_max_branch": s / n,
                "avg_seq_tokens_max_branch_int": s // n}


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


def _select_lanes(keep: jax.Array, old, new):
    """Per-lane ``where`` over a batched pytree: lane i keeps ``old`` where ``keep[i]``."""
    def pick(a, b):
        return jnp.where(keep.reshape(keep.shape + (1,) * (a.ndim - 1)), a, b)

    return jax.tree.map(pick, old, new)


def _round(controller: Controller, data: ReplayData, cost_model: str, env: E.EnvState, call):
    """One replayed round of ``call`` (see :func:`~autotts_jax.engine.protocol.play_round`)."""
    return play_round(Effects(data, cost_model, controller.all_stop_reasons, env), call)


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


def _start(controller, data, params, perm, question, *, pool_size, cost_model):
    """A fresh episode after its opening round: (state before init, env, cstate)."""
    env0 = E.reset(data, question, perm, pool_size)
    env, cstate = _round(controller, data, cost_model, env0,
                         lambda obs, fx: controller.init(obs, params, fx))
    return env0, env, cstate


def _step(controller, data, env, cstate, params, *, cost_model, max_rounds):
    """One round of a running episode; finished (or capped) episodes are left unchanged."""
    new_env, new_cstate = _round(controller, data, cost_model, env,
                                 lambda obs, fx: controller.step(obs, cstate, params, fx))
    hold = env.done | (env.rounds >= max_rounds)
    return _select(hold, (env, cstate), (new_env, new_cstate))


def _outputs(controller, data, env, cstate, params, question, *, cost_model, ledger=False):
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


def _episode(controller, data, params, perm, question, *, pool_size, cost_model, max_rounds,
             trace, ledger=False):
    """One episode as its own while-loop (the traced path: it records every round)."""
    env0, env, cstate = _start(controller, data, params, perm, question, pool_size=pool_size,
                               cost_model=cost_model)

    def body(carry):
        env, cstate, buf = carry
        new_env, new_cstate = _step(controller, data, env, cstate, params,
                                    cost_model=cost_model, max_rounds=max_rounds)
        if trace:
            row = _trace_row(controller, env, new_env, new_cstate)
            buf = jax.tree.map(lambda b, v: b.at[env.rounds].set(v), buf, row)
        return new_env, new_cstate, buf

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
    out = _outputs(controller, data, env, cstate, params, question, cost_model=cost_model,
                   ledger=ledger)
    if trace:
        out["trace"] = buf
    return out


def _chunk(controller, data, params, perm, question, valid, *, pool_size, cost_model,
           max_rounds, trace, ledger=False):
    """One chunk of flat episodes: episode i replays ``question[i]`` with slot order
    ``perm[i]`` under ``params`` (a dict of per-episode scalars).  ``valid`` marks the real
    episodes (a prefix); this traced path runs the padding too (it copies a real episode).

    Every input is shaped by the chunk alone, never by how many configs or seeds the caller
    asked for, so one compiled program serves every sweep of a controller.
    """
    del valid
    TRACE_COUNT[controller.name] = TRACE_COUNT.get(controller.name, 0) + 1
    run = functools.partial(
        _episode, controller, data, pool_size=pool_size, cost_model=cost_model,
        max_rounds=max_rounds, trace=trace, ledger=ledger,
    )
    return jax.vmap(run)(params, perm, question)


def _chunk_refill(controller, data, params, perm, question, valid, *, pool_size, cost_model,
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
        _start, controller, data, pool_size=pool_size, cost_model=cost_model))
    step = jax.vmap(functools.partial(
        _step, controller, data, cost_model=cost_model, max_rounds=max_rounds))
    outputs = jax.vmap(functools.partial(_outputs, controller, data, cost_model=cost_model,
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


# Times ``_chunk`` was traced, per controller name: tests assert that new configs, seeds and
# stores of the same padded shape reuse the compiled program (a max-traces guard).
TRACE_COUNT: dict[str, int] = {}


@functools.lru_cache(maxsize=64)
def _compiled(fn, n_devices: int, controller: Controller, static: tuple):
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


def _slot_groups(needs: Sequence[int]) -> dict[int, list[int]]:
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


def _merge(parts: Mapping[int, Episodes], groups: Mapping[int, list[int]],
           n_conf: int) -> Episodes:
    """Episodes of config groups (``groups[b]``: original config indices) in config order."""
    first = next(iter(parts.values()))
    fields = {}
    for name in ("answer", "correct", "tokens", "seq_tokens", "seq_tokens_max_branch",
                 "branches", "rounds", "stop_reason", "slot_depth", "slot_end"):
        if getattr(first, name) is None:
            continue
        ref = getattr(first, name)
        # Per-slot ledger fields: the smaller group's slot axis is padded (never opened: 0).
        width = max(getattr(p, name).shape[3:] for p in parts.values())
        full = np.zeros((n_conf, *ref.shape[1:3], *width), ref.dtype)
        for b, idx in groups.items():
            part = getattr(parts[b], name)
            if part.ndim == 4:
                full[idx, :, :, : part.shape[3]] = part
            else:
                full[idx] = part
        fields[name] = full
    return Episodes(stop_reasons=first.stop_reasons, **fields)


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
    queued episode (see ``_chunk_refill``).  ``devices`` (default: all visible) shards each
    chunk over a 1-D mesh of the episode axis.

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
    groups = _slot_groups(needs) if slots is None and controller.group_slots and not trace else {}
    if len(groups) > 1:
        parts = {b: simulate(controller, data, [configs[i] for i in idx], seeds,
                             cost_model=cost_model, max_rounds=max_rounds, pool_size=pool_size,
                             slots=b, chunk_size=chunk_size, lanes=lanes, devices=devices,
                             ledger=ledger, orders=orders)
                 for b, idx in groups.items()}
        return _merge(parts, groups, len(configs))
    slots = slots or max(needs)
    params = stack_params(controller, configs)
    perms = permutation_table(seeds, np.asarray(data.n_branches), slots)
    if orders is not None:
        given = np.asarray(orders, np.int32)[:, :, :slots]
        if given.shape[1] != perms.shape[1]:
            raise ValueError(f"orders: {given.shape[1]} questions, the data has {perms.shape[1]}")
        perms = np.full_like(perms, -1)
        perms[:, :, : given.shape[2]] = given
    n_conf, n_seed, n_q = len(configs), len(seeds), perms.shape[1]
    cfg, seed, question = (
        a.ravel().astype(np.int32)
        for a in np.meshgrid(np.arange(n_conf), np.arange(n_seed), np.arange(n_q), indexing="ij")
    )
    n_dev = devices or jax.device_count()
    n_ep = cfg.size
    static = dict(pool_size=pool_size, cost_model=cost_model, max_rounds=max_rounds)
    if ledger:
        static["ledger"] = True
    if trace:
        # Every queued episode runs here, padding included: small batches get a small chunk
        # (a power of two, so at most log2(chunk_size) shapes).
        per_device = min(chunk_size, bucket(-(-n_ep // n_dev), 8))
        fn, static = _chunk, {**static, "trace": True}
    else:
        # Padding is never started, so the queue is always ``chunk_size`` long: one compiled
        # program per (controller, slot count) serves every batch size.
        per_device = chunk_size
        lanes = min(lanes, per_device)
        fn, static = _chunk_refill, {**static, "lanes": lanes, "refill_every": max(1, lanes // 8)}
    step = per_device * n_dev
    run = _compiled(fn, n_dev, controller, tuple(sorted(static.items())))
    outs = []
    for start in range(0, n_ep, step):
        idx = np.arange(start, start + step)
        valid = idx < n_ep
        idx = np.where(valid, idx, start)  # pad the last chunk with copies of a real episode
        chunk_perm = np.zeros((step, slots), np.int32)
        chunk_perm[valid] = perms[seed[idx[valid]], question[idx[valid]]]
        if trace:
            chunk_perm[~valid] = chunk_perm[0]
        chunk_params = {k: v[cfg[idx]] for k, v in params.items()}
        outs.append(run(data, chunk_params, chunk_perm, question[idx], valid))
    out = jax.tree.map(lambda *xs: np.concatenate(xs)[:n_ep], *jax.device_get(outs))
    out = jax.tree.map(lambda v: v.reshape(n_conf, n_seed, n_q, *v.shape[1:]), out)
    eps = Episodes(
        answer=out["answer"],
        correct=out["correct"],
        tokens=out["tokens"].astype(np.int64),
        seq_tokens=out["seq_tokens"].astype(np.int64),
        seq_tokens_max_branch=out["seq_tokens_max_branch"].astype(np.int64),
        branches=out["branches"],
        rounds=out["rounds"],
        stop_reason=out["stop_reason"],
        stop_reasons=controller.all_stop_reasons,
        slot_depth=out.get("slot_depth"),
        slot_end=out.get("slot_end"),
    )
    if trace:
        return eps, out["trace"]
    return eps
