"""One live episode: a controller drives a real OpenAI-compatible server, one question at a time.

**Live effects = fetch what the effect needs, then apply the same pure effect.**  A
:class:`LiveQuestion` is a growing one-question store: the branches started so far (slot ``j``
holds the ``j``-th branch started, so replaying a collected store with the identity order
reproduces the run), each as far as it was generated and probed.  :class:`LiveEffects` is the
replay :class:`~autotts_jax.engine.protocol.Effects` with one step in front of every effect:
work out from the episode state which branches the effect will read and how deep, send the
missing requests (concurrently across branches, sequentially within one), rebuild the
question's :class:`~autotts_jax.store.load.ReplayData` and the episode's per-slot constants from
what is now known, and only then apply the unchanged function of :mod:`autotts_jax.engine.env`.
Accounting, pool order, stop reasons and rounds are therefore those of replay by construction;
the requests are those of ``collect`` (:func:`~autotts_jax.collect.branch.next_event`).

What each effect fetches (``d`` = the slot's depth, ``c`` = its explore calls):

* ``probe_new`` -- starts the new branches: one interval and its probe each;
* ``advance`` / ``probe_more`` -- each explored slot up to ``d + c`` intervals with their
  probes, or to its end if it ends sooner.  A branch is never generated beyond what the
  effect consumes, so pruning needs no request: an abandoned branch simply gets no more;
* ``full_read`` -- the new branches to their end; only the last interval is probed (its
  answer is the final answer), since a slot read in full is never explored;
* ``prune``, ``stop`` -- nothing.

A branch that has not ended is published with ``n_probes`` = its generated intervals; since
every effect first generates ``d + c`` of them, no explore call can mistake that for the end.

The controller runs eagerly (no ``jit``, concrete arrays), so a question costs host time per
round; the server's generation time dominates on a real model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from autotts_jax.collect.answers import get_normalizer
from autotts_jax.collect.branch import BranchState, next_event
from autotts_jax.collect.client import CompletionClient
from autotts_jax.collect.journal import Journal
from autotts_jax.collect.settings import CollectSettings
from autotts_jax.engine import env as E
from autotts_jax.engine.protocol import (
    Controller,
    Effects,
    ProtocolError,
    finish_episode,
    play_round,
)
from autotts_jax.engine.simulate import DEFAULT_MAX_ROUNDS, stack_params
from autotts_jax.errors import AutoTTSError
from autotts_jax.store.load import ReplayData, bucket

DEFAULT_POOL_SIZE = 128  # as simulate: answer ids that may enter the pool lie below this
_WARM_UP_ROUNDS = 4  # init and a few steps see every operation of a round


class Stopped(Exception):
    """The run is stopping (another question failed): no further request is sent."""


class AnswerCapacityError(AutoTTSError):
    """A question produced more distinct answers than the controller's answer-id capacity."""


@dataclass
class QuestionCost:
    """What one question cost on the server, request by request."""

    gen_requests: int = 0
    probe_requests: int = 0
    gen_tokens: int = 0  # usage.completion_tokens of generation requests
    probe_tokens: int = 0  # usage.completion_tokens of probe requests
    prompt_tokens: int = 0  # usage.prompt_tokens of every request (re-sent prefixes)

    def add(self, event: Mapping[str, Any]) -> None:
        if event["e"] == "gen":
            self.gen_requests += 1
            self.gen_tokens += int(event["tokens"])
        elif event["via"] not in ("completion", "skipped"):
            self.probe_requests += 1
            self.probe_tokens += int(event["tokens"])
        self.prompt_tokens += int(event.get("prompt_tokens", 0))


@dataclass
class LiveQuestion:
    """One question's live store: the branches started so far and the answers seen.

    ``stop`` (optional) makes every branch stop before its next request once set.
    ``probe_all`` probes every interval of a full read too (a complete store record, for
    saving the trajectories, at the price of the extra probe requests).
    ``journal`` (optional) records every answered request before the branch moves on; a
    question rebuilt from it (:meth:`restore`) serves those requests again without sending
    them, so a killed run resumes where it stopped.
    """

    client: CompletionClient | None  # None: serves restored branches only (sends nothing)
    settings: CollectSettings
    question: str
    gold: str
    index: int
    executor: Executor | None  # runs the branches of one effect concurrently
    capacity: int = DEFAULT_POOL_SIZE
    journal: Journal | None = None
    stop: threading.Event | None = None
    probe_all: bool = False
    branches: list[BranchState] = field(default_factory=list)
    words: list[str] = field(default_factory=list)
    cost: QuestionCost = field(default_factory=QuestionCost)
    _ids: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.normalize = get_normalizer(self.settings.normalize)
        self.prompt = self.settings.prompt(self.question)

    def restore(self, events: list[dict]) -> None:
        """Replay journalled events (in order) into the branches; raises ValueError if they
        do not fit."""
        for ev in events:
            b = int(ev["b"])
            while len(self.branches) <= b:
                self.branches.append(BranchState())
            self.branches[b].apply(ev, self.settings)
            self.cost.add(ev)  # paid for by this question, in an earlier run

    # -- fetching

    def _drive(self, b: int, depth: int | None) -> None:
        """Branch ``b`` up to ``depth`` probed intervals, or to its end (``None``: a full read,
        which sends no probe before the last interval)."""
        br = self.branches[b]
        while not br.complete and (depth is None or len(br.probes) < depth):
            if self.stop is not None and self.stop.is_set():
                raise Stopped
            if (depth is None and not self.probe_all and len(br.probes) < br.gens
                    and not br.ended):
                event = {"e": "probe", "b": b, "k": len(br.probes), "answer": None,
                         "via": "skipped", "tokens": 0}
            else:
                event = next_event(self.client, self.settings, self.normalize, self.prompt,
                                   self.index, b, br)
            if self.journal is not None:
                self.journal.append(event)
            br.apply(event, self.settings)
            with self._lock:
                self.cost.add(event)

    def fetch(self, targets: Mapping[int, int | None]) -> None:
        """Bring every branch ``b`` of ``targets`` to ``targets[b]`` probed intervals (``None``:
        to its end), starting branches as needed; the branches run concurrently."""
        while targets and len(self.branches) <= max(targets):
            self.branches.append(BranchState())
        targets = {b: d for b, d in targets.items() if not self.branches[b].complete}
        if not targets:
            return
        if self.client is None or self.executor is None:
            raise AutoTTSError(f"question {self.index}: no server to fetch branches from")
        futures = [self.executor.submit(self._drive, b, d) for b, d in sorted(targets.items())]
        for f in futures:
            f.result()

    # -- the store

    def _id(self, answer: str) -> int:
        if answer not in self._ids:
            if len(self.words) >= self.capacity:
                raise AnswerCapacityError(
                    f"question {self.index}: more than {self.capacity} distinct answers (the "
                    "answer-id capacity of the run); raise --answer-capacity")
            self._ids[answer] = len(self.words)
            self.words.append(answer)
        return self._ids[answer]

    def data(self) -> ReplayData:
        """The question as replay data (one question, padded like a loaded store).

        Answer ids are interned in order of first appearance; ids never decide a vote (ties go
        to the earliest occurrence), so they need not match a collected store's.
        """
        s = self.settings
        n_b = bucket(s.branches, 128)
        n_k = bucket(s.depth, 128)
        probe = np.full((1, n_b, n_k), -1, np.int32)
        n_probes = np.zeros((1, n_b), np.int32)
        tokens = np.zeros((1, n_b), np.int32)
        final = np.full((1, n_b), -1, np.int32)
        for b, br in enumerate(self.branches):
            ids = [E.NO_ANSWER if a is None else self._id(a) for a in br.probes]
            probe[0, b, : len(ids)] = ids
            n_probes[0, b] = len(ids)
            tokens[0, b] = br.tokens
            if br.complete:
                final[0, b] = ids[-1]
        correct = np.zeros((1, bucket(self.capacity, 1024)), bool)
        for i, w in enumerate(self.words):
            correct[0, i] = w == self.gold
        return ReplayData(probe_answer=probe, n_probes=n_probes, branch_tokens=tokens,
                          final_answer=final, n_branches=np.asarray([s.branches], np.int32),
                          is_correct=correct, probe_freq=np.asarray(s.probe_freq, np.int32))

    def record(self) -> dict:
        """The branches as generated: ``[probes, tokens, final]`` each (``final`` is None while
        a branch has not ended, a probe is None where a full read sent none)."""
        return {
            "question": self.question,
            "gold_answer": self.gold,
            "probe_freq": self.settings.probe_freq,
            "each_branch": [[br.probes, br.tokens, br.probes[-1] if br.complete else None]
                            for br in self.branches],
        }


def _with_branches(env: E.EnvState, data: ReplayData) -> E.EnvState:
    """``env`` with its per-slot branch constants re-read from ``data`` (as ``E.reset``)."""
    valid = env.branch >= 0
    b = jnp.maximum(env.branch, 0)
    return replace(
        env,
        n_probes=jnp.where(valid, data.n_probes[0, b], 0),
        tokens=jnp.where(valid, data.branch_tokens[0, b], 0),
        final=jnp.where(valid, data.final_answer[0, b], E.NO_ANSWER),
    )


class LiveEffects(Effects):
    """:class:`Effects` whose effects first fetch from the server what they will read."""

    __slots__ = ("_live",)

    def __init__(self, live: LiveQuestion, cost_model: str, stop_reasons: tuple[str, ...],
                 env: E.EnvState) -> None:
        super().__init__(live.data(), cost_model, stop_reasons, env)
        self._live = live

    def _fetch(self, obs: E.Observation, targets: Mapping[int, int | None]) -> None:
        if obs is not self._obs:
            # the replay check, before any request is sent
            raise ProtocolError(
                "an effect was applied to a stale or rebuilt observation: pass the "
                "observation the previous effect returned")
        if targets:
            self._live.fetch(targets)
            self._data = self._live.data()
            self._env = _with_branches(self._env, self._data)

    def _new_slots(self, n) -> range:
        env = self._env
        opened, avail = int(env.opened), int(env.n_avail)
        return range(opened, min(opened + max(int(np.asarray(n)), 0), avail))

    def _explore_targets(self, calls) -> dict[int, int | None]:
        env = self._env
        live = np.asarray(env.is_open & ~env.pruned & ~env.read & ~env.finished)
        calls = np.where(live, np.maximum(np.asarray(calls), 0), 0)
        depth, branch = np.asarray(env.depth), np.asarray(env.branch)
        return {int(branch[s]): int(depth[s] + calls[s]) for s in np.flatnonzero(calls > 0)}

    def full_read(self, obs: E.Observation, n) -> E.Observation:
        self._fetch(obs, dict.fromkeys(self._new_slots(n)))
        return super().full_read(obs, n)

    def probe_new(self, obs: E.Observation, n) -> E.Observation:
        self._fetch(obs, dict.fromkeys(self._new_slots(n), 1))
        return super().probe_new(obs, n)

    def advance(self, obs: E.Observation, calls, order=None) -> tuple[E.Observation, Any]:
        self._fetch(obs, self._explore_targets(calls))
        return super().advance(obs, calls, order)

    def probe_more(self, obs: E.Observation, mask) -> E.Observation:
        self._fetch(obs, self._explore_targets(np.asarray(mask, np.int32)))
        return super().probe_more(obs, mask)


@dataclass(frozen=True)
class LiveEpisode:
    """The outcome of one live episode (replay's per-episode fields, answer as a string)."""

    answer: str | None
    correct: bool
    tokens: int
    seq_tokens: int
    rounds: int
    stop_reason: str
    branches: int
    wall_s: float
    cost: QuestionCost

    def row(self) -> dict[str, Any]:
        return {"answer": self.answer, "correct": self.correct, "tokens": self.tokens,
                "seq_tokens": self.seq_tokens, "rounds": self.rounds,
                "stop_reason": self.stop_reason, "branches": self.branches,
                "wall_s": round(self.wall_s, 3), **self.cost.__dict__}


def episode_slots(controller: Controller, config: Mapping[str, Any],
                  settings: CollectSettings) -> int:
    """The slot count ``simulate`` gives ``controller`` on a store of ``settings.branches``
    branches (the controller may depend on it, so live and replay must agree)."""
    need = bucket(controller.max_slots(controller.config(config)), 8)
    return min(need, bucket(settings.branches, 128))


def warm_up(controller: Controller, config: Mapping[str, Any], settings: CollectSettings, *,
            cost_model: str = "reference", pool_size: int = DEFAULT_POOL_SIZE) -> None:
    """Run one episode on a made-up question whose branches are all complete, sending nothing.

    JAX compiles every operation the first time it sees its shapes; a controller runs
    eagerly here, so the first questions of a run would otherwise report seconds of
    compilation as latency.
    """
    live = LiveQuestion(None, settings, "", "0", 0, None)
    for b in range(settings.branches):
        live.restore([{"e": "gen", "b": b, "k": 0, "text": "", "tokens": 1, "finish": "stop",
                       "max_tokens": settings.probe_freq},
                      {"e": "probe", "b": b, "k": 0, "answer": "0", "via": "completion"}])
    run_episode(controller, config, live, cost_model=cost_model, pool_size=pool_size,
                max_rounds=_WARM_UP_ROUNDS)


def run_episode(controller: Controller, config: Mapping[str, Any], live: LiveQuestion, *,
                cost_model: str = "reference", max_rounds: int = DEFAULT_MAX_ROUNDS,
                pool_size: int = DEFAULT_POOL_SIZE) -> LiveEpisode:
    """Run ``controller`` on ``live``'s question against the server, round by round.

    The same schedule as ``simulate``: ``init`` is round 0, ``step`` runs until the episode
    stops or ``max_rounds`` rounds ran, each round books the largest per-slot charge as its
    sequential tokens, then ``finish`` (if any) chooses the answer.
    """
    t0 = time.monotonic()
    params = jax.tree.map(lambda v: jnp.asarray(v[0]), stack_params(controller, [config]))
    slots = episode_slots(controller, config, live.settings)
    reasons = controller.all_stop_reasons
    env = E.reset(live.data(), jnp.int32(0), jnp.arange(slots, dtype=jnp.int32), pool_size)

    def play(env: E.EnvState, call) -> tuple[E.EnvState, Any]:
        return play_round(LiveEffects(live, cost_model, reasons, env), call)

    env, cstate = play(env, lambda obs, fx: controller.init(obs, params, fx))
    while not bool(env.done) and int(env.rounds) < max_rounds:
        env, cstate = play(env, lambda obs, fx, cs=cstate: controller.step(obs, cs, params, fx))
    data = live.data()
    env = finish_episode(controller, Effects(data, cost_model, reasons, env), cstate, params)
    env = E.stop(env, E.NO_ANSWER, 0)  # round cap: no answer, reason index 0
    answer = int(env.answer)
    return LiveEpisode(
        answer=live.words[answer] if answer >= 0 else None,
        correct=bool(answer >= 0 and bool(data.is_correct[0, answer])),
        tokens=int(env.total_tokens),
        seq_tokens=int(env.seq_tokens),
        rounds=int(env.rounds),
        stop_reason=reasons[int(env.stop_reason)],
        branches=int(env.opened),
        wall_s=time.monotonic() - t0,
        cost=live.cost,
    )
