"""The functional replay environment: one episode's state and the effects that change it.

An *episode* is one question replayed under one shuffle order.  Its branches are handed out
in *slots* ``0, 1, 2, ...`` (slot ``j`` holds original branch ``perm[j]``), exactly as the
upstream ``Question`` hands out its shuffled branch list.  Every effect below is a pure function
``EnvState -> EnvState`` over fixed-shape arrays, vectorised over slots; ``vmap`` adds the
episode axis.  Effects reproduce the upstream token accounting bit for bit, quirks included;
each quirk is marked ``QUIRK`` where it is reproduced (see ``docs`` in the README, "Metrics").

Cost models (a static switch):

* ``"reference"`` (default) -- upstream's accounting.  Probing charges ``probe_freq`` per
  interval; the call that finds a branch exhausted charges ``max(0, bt - freq * L)``, so driving
  a branch to completion by probing costs ``max(freq * L, bt)`` (QUIRK 2), and probing an
  already finished branch charges that remainder *again* (QUIRK 1).  A full read costs ``bt``.
* ``"corrected"`` -- a branch never costs more than its tokens: after ``d`` probes it has been
  charged ``min(freq * d, bt)``, completion brings it to exactly ``bt``, re-probing is free.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp

from autotts_jax.store.load import ReplayData

Array = jax.Array

NO_ANSWER = -1  # the id of "no answer" (upstream ``None``)
_NEVER = 2**31 - 1  # pool_first of an answer that never completed
COST_MODELS = ("reference", "corrected")
ORDER_SPAN = 256  # completion-order keys of one pool insertion lie in [0, ORDER_SPAN * S)


class _SlotViews:
    """Views over the slot fields that the engine's state and the controller's observation
    share (``opened``, ``depth``, ``finished``, ``read``, ``pruned``, ``cost``)."""

    @property
    def n_slots(self) -> int:
        """Static: how many slots the controller may open (the slot axis)."""
        return self.depth.shape[0]

    @property
    def slots(self) -> Array:
        """(S,) int32 slot indices."""
        return jnp.arange(self.n_slots, dtype=jnp.int32)

    @property
    def is_open(self) -> Array:
        """(S,) bool: slots opened so far."""
        return self.slots < self.opened

    @property
    def alive(self) -> Array:
        """(S,) bool: opened, not finished, not read in full, not pruned."""
        return self.is_open & ~self.finished & ~self.read & ~self.pruned

    @property
    def total_tokens(self) -> Array:
        """() int32 tokens charged so far."""
        return jnp.sum(self.cost, dtype=jnp.int32)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class EnvState(_SlotViews):
    """Everything about one episode.  ``S`` = slots the controller may open (static)."""

    question: Array  # () int32 question index into ReplayData
    branch: Array  # (S,) int32 original branch of each slot (-1 beyond the question's branches)
    n_avail: Array  # () int32 slots that hold a real branch: min(n_branches[q], S)
    n_probes: Array  # (S,) int32 probes L of each slot's branch
    tokens: Array  # (S,) int32 total tokens bt of each slot's branch
    final: Array  # (S,) int32 final answer id of each slot's branch
    opened: Array  # () int32 slots handed out so far (upstream ``next``)
    depth: Array  # (S,) int32 explore cursor: probes consumed
    cost: Array  # (S,) int32 tokens charged to each slot (upstream ``cost_per_branch``)
    finished: Array  # (S,) bool explore has reported the branch finished
    read: Array  # (S,) bool the slot was consumed by a full read
    latest: Array  # (S,) int32 latest answer id seen on the slot (-1 none)
    pruned: Array  # (S,) bool the controller gave the slot up (pruned / abandoned)
    pool_count: Array  # (P,) int32 completed answers: votes per final-answer id
    pool_first: Array  # (P,) int32 order key of each answer's first completion
    pool_size: Array  # () int32 number of completed answers in the pool
    events: Array  # () int32 running counter that orders pool insertions
    seq_tokens: Array  # () int32 critical-path tokens (see simulate)
    rounds: Array  # () int32 controller rounds run
    done: Array  # () bool
    answer: Array  # () int32 the episode's answer id (-1 none)
    stop_reason: Array  # () int32 index into the controller's ``stop_reasons``



# What a controller may see: the parts of ``EnvState`` a live controller has paid for.  The
# per-episode constants (question, the branches behind the slots, their lengths, probe counts
# and final answers) and the engine's bookkeeping stay on the engine's side.
OBSERVED_FIELDS = (
    "opened", "depth", "cost", "finished", "read", "latest", "pruned", "pool_count",
    "pool_first", "pool_size", "seq_tokens", "rounds", "done", "answer", "stop_reason",
)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Observation(_SlotViews):
    """What a controller knows about its episode: exactly what a live controller could have
    paid for at this point.  ``S`` = slots the controller may open, ``P`` = pool size.

    Per opened slot: its probe answers up to its current depth (``latest`` is the newest),
    the tokens charged so far, whether it finished, was read in full or was pruned, and its
    final answer once it finished or was read (``final``).  The completed-answer pool and the
    episode's counters.  Nothing about slots not yet opened, nothing beyond a branch's
    current depth (its length, later probes, its final answer), no gold answer, no
    correctness.  Slots not yet opened read as zeros / ``-1``.
    """

    opened: Array  # () int32 slots opened so far (slots 0 .. opened-1)
    depth: Array  # (S,) int32 intervals explored on each slot (probes seen)
    cost: Array  # (S,) int32 tokens charged to each slot
    finished: Array  # (S,) bool exploring reached the branch's end
    read: Array  # (S,) bool the slot was read in full (``fx.full_read``)
    latest: Array  # (S,) int32 newest answer seen on the slot (probe or final; -1 none)
    pruned: Array  # (S,) bool the controller gave the slot up
    pool_count: Array  # (P,) int32 completed answers: votes per answer id
    pool_first: Array  # (P,) int32 completion-order key of each answer's first vote
    pool_size: Array  # () int32 completed answers in the pool
    seq_tokens: Array  # () int32 critical-path tokens so far
    rounds: Array  # () int32 rounds run so far
    done: Array  # () bool the episode has stopped
    answer: Array  # () int32 the answer given at the stop (-1 none)
    stop_reason: Array  # () int32 index into the controller's stop reasons

    @property
    def final(self) -> Array:
        """(S,) int32: the final answer of slots that finished or were read, else -1."""
        return jnp.where(self.finished | self.read, self.latest, NO_ANSWER)


def observe(env: EnvState) -> Observation:
    """The controller's view of ``env`` (see :class:`Observation`)."""
    return Observation(**{f: getattr(env, f) for f in OBSERVED_FIELDS})


def _materialize(env: EnvState, x: Array) -> Array:
    """``x`` computed once, as its own array, instead of inside every consumer.

    XLA fuses cheap elementwise chains into every consumer.  A per-episode decision (an EMA
    gate, a widening rule: dozens of operations) that feeds ``(S,)`` updates is then recomputed
    for each of the ``S`` slots, and a per-slot value shared by several fields (the explore
    calls feed depth, cost, finished and latest) once per field.  XLA does not duplicate an
    integer division by a non-constant divisor, so dividing by a 1 it cannot prove constant
    makes the value a fusion boundary.  On the CMC beta grid (XLA:CPU) the four boundaries
    below cut the replay time by about a quarter.  Exact for every integer (truncating
    division by 1); booleans go through int32.
    """
    one = jnp.minimum(jnp.maximum(env.n_avail, 1), 1)
    if x.dtype == jnp.bool_:
        return jax.lax.div(x.astype(jnp.int32), one) != 0
    return jax.lax.div(x, one.astype(x.dtype))


def reset(data: ReplayData, question: Array, perm: Array, pool_size: int) -> EnvState:
    """A fresh episode of ``question`` whose slots hold branches ``perm`` (shape ``(S,)``)."""
    n_slots = perm.shape[0]
    n_avail = jnp.minimum(data.n_branches[question], n_slots).astype(jnp.int32)
    valid = jnp.arange(n_slots, dtype=jnp.int32) < n_avail
    branch = jnp.where(valid, perm, -1).astype(jnp.int32)
    b = jnp.maximum(branch, 0)
    zeros_i = jnp.zeros(n_slots, jnp.int32)
    zeros_b = jnp.zeros(n_slots, bool)
    i32 = jnp.int32
    return EnvState(
        question=jnp.asarray(question, i32),
        branch=branch,
        n_avail=n_avail,
        n_probes=jnp.where(valid, data.n_probes[question, b], 0),
        tokens=jnp.where(valid, data.branch_tokens[question, b], 0),
        final=jnp.where(valid, data.final_answer[question, b], NO_ANSWER),
        opened=jnp.zeros((), i32),
        depth=zeros_i,
        cost=zeros_i,
        finished=zeros_b,
        read=zeros_b,
        latest=jnp.full(n_slots, NO_ANSWER, i32),
        pruned=zeros_b,
        pool_count=jnp.zeros(pool_size, i32),
        pool_first=jnp.full(pool_size, _NEVER, i32),
        pool_size=jnp.zeros((), i32),
        events=jnp.zeros((), i32),
        seq_tokens=jnp.zeros((), i32),
        rounds=jnp.zeros((), i32),
        done=jnp.zeros((), bool),
        answer=jnp.full((), NO_ANSWER, i32),
        stop_reason=jnp.zeros((), i32),
    )


def _add_to_pool(env: EnvState, completed: Array, answers: Array, order: Array) -> EnvState:
    """Append ``answers[completed]`` to the pool, in ascending ``order``.

    ``order`` holds one key per slot in ``[0, ORDER_SPAN * S)``; only the relative order of
    completions within this call matters.  The pool is a count vector; ``pool_first`` keeps the
    order key of each answer's first completion, so that ties go to the answer completed first
    (``Counter.most_common``).
    """
    pool = env.pool_count.shape[0]
    n_slots = completed.shape[0]
    idx = jnp.where(completed, answers, pool)  # pool = out of range -> dropped
    key = (env.events + order).astype(jnp.int32)
    count = env.pool_count.at[idx].add(1, mode="drop")
    first = env.pool_first.at[idx].min(key, mode="drop")
    return replace(
        env,
        pool_count=count,
        pool_first=first,
        pool_size=env.pool_size + jnp.sum(completed, dtype=jnp.int32),
        events=env.events + ORDER_SPAN * n_slots,
    )


def full_read(env: EnvState, n: Array) -> EnvState:
    """Read the next ``n`` unopened slots in full (upstream ``get_new_branch_final_answer``).

    Each read charges exactly ``bt`` and returns the final answer, which enters the pool in
    slot order.  The slot's explore cursor is not touched (as upstream).  Requests beyond the
    available branches are dropped (upstream raises and the ``_safe_`` helper returns None).
    """
    slots = env.slots
    end = _materialize(env, jnp.minimum(env.opened + jnp.maximum(n, 0), env.n_avail))
    new = (slots >= env.opened) & (slots < end)
    env = replace(
        env,
        opened=jnp.maximum(end, env.opened),
        cost=env.cost + jnp.where(new, env.tokens, 0),
        read=env.read | new,
        latest=jnp.where(new, env.final, env.latest),
    )
    return _add_to_pool(env, new, env.final, slots)


def _explore(
    env: EnvState, data: ReplayData, calls: Array, cost_model: str
) -> tuple[EnvState, Array]:
    """``calls[s]`` upstream ``explore`` calls on each slot, stopping at the finishing call.

    Returns the new state and the calls actually made per slot.  A slot that is already
    finished makes no call (every published controller checks ``finished`` first).
    """
    calls = jnp.where(env.finished, 0, jnp.maximum(calls, 0))
    calls = _materialize(env, calls)  # shared by depth, cost, finished, latest
    left = env.n_probes - env.depth  # probes still unread
    k = jnp.minimum(calls, left)  # probe calls that return an intermediate answer
    finishing = calls > left  # one more call discovers the end
    depth = env.depth + k
    bt, f = env.tokens, data.probe_freq
    if cost_model == "reference":
        charge = f * k + jnp.where(finishing, jnp.maximum(0, bt - f * env.n_probes), 0)
    else:
        before = jnp.minimum(f * env.depth, bt)
        charge = jnp.where(finishing, bt - before, jnp.minimum(f * depth, bt) - before)
    # One gather per slot per round (materialising each episode's [S, K] slice instead would
    # cost E x S x K memory under vmap).  Slots that read no probe all load element 0: the
    # gather runs for every slot, but only the few that advance miss the cache.
    _, n_b, n_k = data.probe_answer.shape
    row = (env.question * n_b + jnp.maximum(env.branch, 0)) * n_k
    at = jnp.where(k > 0, row + jnp.maximum(depth - 1, 0), 0)
    probe = data.probe_answer.reshape(-1)[at]
    latest = jnp.where(finishing, env.final, jnp.where(k > 0, probe, env.latest))
    made = k + finishing.astype(jnp.int32)
    return (
        replace(
            env,
            depth=depth,
            cost=env.cost + charge,
            finished=env.finished | finishing,
            latest=latest,
        ),
        made,
    )


def advance(
    env: EnvState,
    data: ReplayData,
    calls: Array,
    order: Array | None = None,
    cost_model: str = "reference",
) -> tuple[EnvState, Array]:
    """Advance opened, unpruned slots by up to ``calls[s]`` intervals (upstream ``probe_more``
    in a ``for _ in range(n): if finished: break`` loop).

    Branches that finish enter the pool in ascending ``order`` (default: slot order; keys in
    ``[0, ORDER_SPAN * S)``); this is the completion order that majority ties depend on.
    Returns the state and the number of explore calls made per slot.
    """
    calls = jnp.where(env.is_open & ~env.pruned & ~env.read, calls, 0)
    was_finished = env.finished
    env, made = _explore(env, data, calls, cost_model)
    completed = env.finished & ~was_finished
    order = env.slots if order is None else order
    return _add_to_pool(env, completed, env.final, order), made


def probe_more(
    env: EnvState, data: ReplayData, mask: Array, cost_model: str = "reference"
) -> EnvState:
    """One upstream ``probe_more(i)`` on every masked, opened slot, finished ones included.

    QUIRK 1: on a finished branch upstream returns the final answer again and charges the
    remainder ``max(0, bt - freq * L)`` again (``"reference"``); ``"corrected"`` charges 0.
    Completions enter the pool in slot order.
    """
    mask = mask & env.is_open & ~env.read
    again = mask & env.finished
    if cost_model == "reference":
        f = data.probe_freq
        recharge = jnp.where(again, jnp.maximum(0, env.tokens - f * env.n_probes), 0)
        env = replace(env, cost=env.cost + recharge)
    env, _ = advance(env, data, mask.astype(jnp.int32), cost_model=cost_model)
    return env


def probe_new(
    env: EnvState, data: ReplayData, n: Array, cost_model: str = "reference"
) -> EnvState:
    """Open the next ``n`` slots by one interval each (upstream ``probe_new``).

    Every real branch has at least one probe (the store guarantees ``n_probes >= 1``), so the
    first explore call always returns probe 0 and never finishes the branch: no pool insertion
    is needed, which keeps widening cheap in controllers that call this every round.
    """
    slots = env.slots
    end = _materialize(env, jnp.minimum(env.opened + jnp.maximum(n, 0), env.n_avail))
    new = (slots >= env.opened) & (slots < end)
    f = data.probe_freq
    charge = f if cost_model == "reference" else jnp.minimum(f, env.tokens)
    first = data.probe_answer[env.question, jnp.maximum(env.branch, 0), 0]
    return replace(
        env,
        opened=jnp.maximum(end, env.opened),
        depth=jnp.where(new, 1, env.depth),
        cost=env.cost + jnp.where(new, charge, 0),
        latest=jnp.where(new, first, env.latest),
    )


def prune(env: EnvState, mask: Array) -> EnvState:
    """Give up slots: they keep the cost already charged and are never advanced again."""
    return replace(env, pruned=_materialize(env, env.pruned | (mask & env.is_open)))


def stop(env: EnvState, answer: Array, reason: int | Array, when: Array = True) -> EnvState:
    """Finish the episode with ``answer`` (only where ``when`` holds and not already done)."""
    now = _materialize(env, jnp.asarray(when) & ~env.done)
    answer = _materialize(env, jnp.asarray(answer, jnp.int32))
    return replace(
        env,
        done=env.done | now,
        answer=jnp.where(now, answer, env.answer).astype(jnp.int32),
        stop_reason=jnp.where(now, reason, env.stop_reason).astype(jnp.int32),
    )
