"""The controller protocol: what a human or an LLM writes to get a replayable controller.

A controller is two pure functions over fixed-shape arrays, plus host-side metadata::

    init(env, params, fx) -> (env, cstate)          # round 0: e.g. open the first branches
    step(env, cstate, params, fx) -> (env, cstate)  # one round; call fx.stop(...) to finish

``env`` is the episode's :class:`~autotts_jax.engine.env.EnvState` (read it freely: ``opened``,
``latest``, ``finished``, ``pool_count``, ...), ``cstate`` is any pytree the controller keeps
(counters, an EMA, per-slot arrays of shape ``(S,)``), ``params`` is a dict of scalars made on
the host from the controller's config (or from one scalar ``beta`` through its schedule), and
``fx`` is the effect set bound to the replay data and the cost model.  Inside ``step`` an
effect is called like ``env = fx.full_read(env, 1)``; effects compose, so a round can advance,
look at the new pool, and widen -- there is no need to split a decision over two rounds.

Rules that make a controller replayable (``simulate`` enforces the shapes, the sandbox the
rest): no Python control flow on traced values (use ``jnp.where`` / masks), no randomness
except from keys in ``cstate``, and every episode must eventually call ``fx.stop`` (a round cap
ends it otherwise, with stop reason ``round_cap`` and no answer).

*Rounds* are also the unit of the latency proxy: every branch touched in one round runs in
parallel, rounds run one after another (see ``simulate``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax.numpy as jnp

from autotts_jax.engine import env as E
from autotts_jax.store.load import ReplayData

Params = dict[str, Any]
ROUND_CAP = "round_cap"


@dataclass(frozen=True)
class Effects:
    """The effects a controller may apply, bound to one store and one cost model."""

    data: ReplayData
    cost_model: str
    stop_reasons: tuple[str, ...]

    def full_read(self, env: E.EnvState, n) -> E.EnvState:
        return E.full_read(env, jnp.asarray(n, jnp.int32))

    def probe_new(self, env: E.EnvState, n) -> E.EnvState:
        return E.probe_new(env, self.data, jnp.asarray(n, jnp.int32), self.cost_model)

    def advance(self, env: E.EnvState, calls, order=None) -> tuple[E.EnvState, Any]:
        return E.advance(env, self.data, jnp.asarray(calls, jnp.int32), order, self.cost_model)

    def probe_more(self, env: E.EnvState, mask) -> E.EnvState:
        return E.probe_more(env, self.data, mask, self.cost_model)

    def prune(self, env: E.EnvState, mask) -> E.EnvState:
        return E.prune(env, mask)

    @property
    def vocab(self) -> int:
        """Static size of the answer-id space of the store (probe answers included)."""
        return self.data.is_correct.shape[-1]

    def vote(self, answers, mask):
        """(winner, top1, top2) of ``answers[mask]`` in slot order (see ``votes.vote``)."""
        from autotts_jax.engine.votes import vote

        return vote(answers, mask, self.vocab)

    def stop(self, env: E.EnvState, answer, reason: str, when=True) -> E.EnvState:
        if reason not in self.stop_reasons:
            raise ValueError(f"unknown stop reason {reason!r}; declare it in stop_reasons")
        return E.stop(env, answer, self.stop_reasons.index(reason), when)


@dataclass(frozen=True, eq=False)
class Controller:
    """A replayable controller.  Hashes by identity so it can be a static jit argument.

    Attributes:
        name: canonical name (``"asc"``).
        aliases: other accepted names, e.g. the upstream class name (``"ASCMethod"``).
        defaults: the upstream constructor defaults; a config overrides any of them.
        make_params: host-side ``config -> params`` (Python numbers; validated here).
        max_slots: host-side ``config -> branches it may open`` (sizes the slot axis).
        init, step: the two pure functions described in the module docstring.
        stop_reasons: names of the ways an episode can end (``round_cap`` is added first).
        trace_fields: optional ``cstate -> {name: scalar}`` recorded per round in traces.
        finish: optional ``(env, cstate, params, fx) -> env`` run once after the episode
            stopped, e.g. to choose a fallback answer.  Work done here is paid once per
            episode instead of once per round, which matters under ``vmap``.
        seq_window: optional ``params -> int`` for the per-branch ("max_branch", SCOUT)
            sequential accounting: the opened slots are cut into consecutive windows of this
            many slots that run one after another (ESC: ``window_size``).  Without it every
            opened slot runs in parallel and an episode costs its largest branch.
        group_slots: ``simulate`` runs the configs that need at most a quarter of the largest
            slot bucket as a second group at their own, smaller bucket instead of all at the
            largest one.  Worth it when per-round work grows with the slot count and a sweep
            spans very different ``max_slots`` (Parallel-Probe's ``num_chains`` grid 1 ... 64:
            about 1.3x less work); each group's bucket is compiled once.
    """

    name: str
    aliases: tuple[str, ...]
    defaults: Mapping[str, Any]
    make_params: Callable[[Mapping[str, Any]], Params]
    max_slots: Callable[[Mapping[str, Any]], int]
    init: Callable[..., tuple[E.EnvState, Any]]
    step: Callable[..., tuple[E.EnvState, Any]]
    stop_reasons: tuple[str, ...]
    trace_fields: Callable[[Any], dict] | None = None
    finish: Callable[..., E.EnvState] | None = None
    seq_window: Callable[[Params], Any] | None = None
    group_slots: bool = False
    doc: str = field(default="", repr=False)

    @property
    def all_stop_reasons(self) -> tuple[str, ...]:
        return (ROUND_CAP, *self.stop_reasons)

    def config(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults updated with ``overrides``; unknown keys are an error (typos fail loudly)."""
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self.defaults))
        if unknown:
            raise ValueError(
                f"{self.name}: unknown parameter(s) {unknown}; known: {sorted(self.defaults)}"
            )
        return {**self.defaults, **overrides}
