"""The controller protocol: what a human or an LLM writes to get a replayable controller.

A controller is pure functions over fixed-shape arrays, plus host-side metadata::

    init(obs, params, fx) -> (obs, cstate)          # round 0: e.g. open the first branches
    step(obs, cstate, params, fx) -> (obs, cstate)  # one round; call fx.stop(...) to finish
    finish(obs, cstate, params, fx) -> answer       # optional, once after the stop

``obs`` is an :class:`~autotts_jax.engine.env.Observation`: what a live controller could have
paid for so far (opened slots up to their current depth, tokens charged, finished / read /
pruned flags, final answers of finished or read slots, the completed-answer pool, counters).
Nothing else about the episode is reachable: the replay data and the engine's state stay
behind ``fx``.  ``cstate`` is any pytree the controller keeps (counters, an EMA, per-slot
arrays of shape ``(S,)``), ``params`` any pytree of scalars (the built-ins use a NamedTuple,
a dict works as well) made on the host from the controller's config (or from one scalar
``beta`` through its schedule).  Inside ``init``/``step`` every leaf is a traced array: ints
become int32, floats float64, bools bool.

``fx`` is the episode's effect set.  An effect is the only way to change the episode: it takes
the newest observation and returns the next one, e.g. ``obs = fx.full_read(obs, 1)``.
Effects compose, so a round can advance, look at the new pool and widen -- no need to split
a decision over two rounds.  The engine keeps the episode's state itself: an effect applied
to anything but the observation the previous effect returned is an error, and so is a
``step`` that returns another observation (no forged state).  Effects are always applied when
called; make one conditional with its arguments (``n=0``, an all-false mask, ``when=``).

Rules that make a controller replayable (``simulate`` enforces the shapes, the sandbox the
rest): no Python control flow on traced values (use ``jnp.where`` / masks), no randomness
except from keys in ``cstate``, and every episode must eventually call ``fx.stop`` (a round cap
ends it otherwise, with stop reason ``round_cap`` and no answer).

*Rounds* are also the unit of the latency proxy: every branch touched in one round runs in
parallel, rounds run one after another (see ``simulate``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import jax.numpy as jnp

from autotts_jax.engine import env as E
from autotts_jax.errors import AutoTTSError
from autotts_jax.store.load import ReplayData

PyTree = Any  # params: a dict or NamedTuple of scalars (any pytree)
ROUND_CAP = "round_cap"


class ProtocolError(AutoTTSError):
    """A controller broke the protocol (a stale or forged observation, an unknown reason)."""


class Effects:
    """The effects a controller may apply to one episode.

    Built by the engine for each episode it traces; it holds the episode's full state and the
    replay data, neither of which the controller needs or may read.  Each effect advances the
    held state and hands back its observation.  Every effect returns an ``Observation``;
    ``advance`` also returns the explore calls made per slot, ``(S,) int32``.
    """

    __slots__ = ("_data", "_cost_model", "_env", "_obs", "stop_reasons")

    def __init__(self, data: ReplayData, cost_model: str, stop_reasons: tuple[str, ...],
                 env: E.EnvState) -> None:
        self._data = data
        self._cost_model = cost_model
        self.stop_reasons = stop_reasons
        self._env = env
        self._obs = E.observe(env)

    @property
    def observation(self) -> E.Observation:
        """The newest observation (what ``init``/``step`` receive and must return)."""
        return self._obs

    def _apply(self, obs: E.Observation, fn) -> E.Observation:
        if obs is not self._obs:
            raise ProtocolError(
                "an effect was applied to a stale or rebuilt observation: pass the "
                "observation the previous effect returned (effects cannot be undone or "
                "applied conditionally by selecting between observations; use n=0, a mask "
                "or when= instead)")
        self._env = fn(self._env)
        self._obs = E.observe(self._env)
        return self._obs

    def full_read(self, obs: E.Observation, n) -> E.Observation:
        """Read the next ``n`` unopened slots to the end: each costs its branch's tokens and
        its final answer enters the pool (in slot order).  Fewer open when branches run out."""
        return self._apply(obs, lambda e: E.full_read(e, jnp.asarray(n, jnp.int32)))

    def probe_new(self, obs: E.Observation, n) -> E.Observation:
        """Open the next ``n`` slots by one interval each (``probe_freq`` tokens): each shows
        its first probe answer in ``latest``."""
        return self._apply(obs, lambda e: E.probe_new(
            e, self._data, jnp.asarray(n, jnp.int32), self._cost_model))

    def advance(self, obs: E.Observation, calls, order=None) -> tuple[E.Observation, Any]:
        """Explore each opened, unpruned, unread slot by up to ``calls[s]`` intervals; a slot
        that reaches its end finishes and its final answer enters the pool (in ascending
        ``order``, default slot order).  Returns ``(obs, made)``: ``made[s]`` explore calls
        actually made (fewer when the branch finished)."""
        made = []

        def run(e):
            e, m = E.advance(e, self._data, jnp.asarray(calls, jnp.int32), order,
                             self._cost_model)
            made.append(m)
            return e

        return self._apply(obs, run), made[0]

    def probe_more(self, obs: E.Observation, mask) -> E.Observation:
        """One upstream ``probe_more`` on every masked opened slot (finished ones included:
        under the ``reference`` cost model that charges their remainder again)."""
        return self._apply(obs, lambda e: E.probe_more(e, self._data, mask, self._cost_model))

    def prune(self, obs: E.Observation, mask) -> E.Observation:
        """Give up the masked slots: they keep what they cost and are never advanced again."""
        return self._apply(obs, lambda e: E.prune(e, mask))

    def stop(self, obs: E.Observation, answer, reason: str, when=True) -> E.Observation:
        """Finish the episode with ``answer`` where ``when`` holds (the first stop wins)."""
        if reason not in self.stop_reasons:
            raise ProtocolError(f"unknown stop reason {reason!r}; declare it in stop_reasons")
        index = self.stop_reasons.index(reason)
        return self._apply(obs, lambda e: E.stop(e, answer, index, when))

    @property
    def vocab(self) -> int:
        """Static size of the answer-id space (probe answers included)."""
        return self._data.is_correct.shape[-1]

    def vote(self, answers, mask):
        """(winner, top1, top2) of ``answers[mask]`` in slot order (see ``votes.vote``)."""
        from autotts_jax.engine.votes import vote

        return vote(answers, mask, self.vocab)



def play_round(fx: Effects, call) -> tuple[E.EnvState, Any]:
    """Engine side: one round of ``call(obs, fx) -> (obs, cstate)`` (a controller's ``init``
    or ``step``) on the episode ``fx`` holds; returns the state after the effects it applied,
    with the round counted and its critical-path tokens (the largest per-slot charge) booked,
    and the new ``cstate``.  ``call`` must hand back the newest observation, so a controller
    cannot return a state it did not pay for.  ``fx`` may be any :class:`Effects` (replay or
    live)."""
    before = fx._env.cost
    obs, cstate = call(fx.observation, fx)
    if obs is not fx.observation:
        raise ProtocolError(
            "init/step must return the observation returned by the last effect they applied "
            "(or the one they received, if they applied none)")
    env = fx._env
    return replace(env, seq_tokens=env.seq_tokens + jnp.max(env.cost - before),
                   rounds=env.rounds + 1), cstate


def finish_episode(controller: Controller, fx: Effects, cstate, params) -> E.EnvState:
    """Engine side: the stopped episode ``fx`` holds, with ``controller.finish``'s answer
    (when it has one); ``finish`` may not apply effects."""
    if controller.finish is None:
        return fx._env
    obs = fx.observation
    answer = controller.finish(obs, cstate, params, fx)
    if fx.observation is not obs:
        raise ProtocolError("finish may not apply effects: it only chooses the answer")
    return replace(fx._env, answer=jnp.asarray(answer, jnp.int32).reshape(()))


class Range(NamedTuple):
    """Values of one config key for property tests: ``low`` to ``high`` (integers when both
    are ints, floats otherwise), and ``special`` values drawn as often as the range (the
    points where a rule flips: thresholds, ``0``, a default far outside the range)."""

    low: float
    high: float
    special: tuple = ()


@dataclass(frozen=True, eq=False)
class Controller:
    """A replayable controller.  Hashes by identity so it can be a static jit argument.

    Attributes:
        name: canonical name (``"asc"``).
        aliases: other accepted names, e.g. the upstream class name (``"ASCMethod"``).
        defaults: the upstream constructor defaults; a config overrides any of them.  A
            NamedTuple (e.g. ``Params()`` when the config *is* the params) is read as the
            dict of its fields.
        make_params: host-side ``config -> params`` (a pytree of Python numbers; validated
            here).
        max_slots: host-side ``config -> branches it may open`` (sizes the slot axis).
        init, step: the two pure functions described in the module docstring.
        stop_reasons: names of the ways an episode can end (``round_cap`` is added first).
        trace_fields: optional ``cstate -> {name: scalar}`` recorded per round in traces.
        finish: optional ``(obs, cstate, params, fx) -> answer`` run once after the episode
            stopped: the episode's answer (an int32 scalar; e.g. a fallback when the pool is
            empty).  Work done here is paid once per episode instead of once per round,
            which matters under ``vmap``.
        seq_window: optional ``params -> int`` for the per-branch ("max_branch", SCOUT)
            sequential accounting: the opened slots are cut into consecutive windows of this
            many slots that run one after another (ESC: ``window_size``).  Without it every
            opened slot runs in parallel and an episode costs its largest branch.
        group_slots: ``simulate`` runs the configs that need at most a quarter of the largest
            slot bucket as a second group at their own, smaller bucket instead of all at the
            largest one.  Worth it when per-round work grows with the slot count and a sweep
            spans very different ``max_slots`` (Parallel-Probe's ``num_chains`` grid 1 ... 64:
            about 1.3x less work); each group's bucket is compiled once.

    What the tests need to check a controller travels with it too, so that a new controller
    is tested by adding its entry (and its twin), never by editing a test:

        oracle: ``"module:callable"`` naming its twin in the pure-Python oracle, called as
            ``twin(**config)`` (the full config) to build an oracle controller (``solve(q)``,
            ``stop_reason``, ``rounds``).  A name, not the callable: the oracle imports
            nothing of the engine, and a controller module imports only what candidate code
            may import.
        config_space: ``{config key: Range}``, the configs the property tests draw (keys left
            out keep their default).
        examples: configs the conformance tests run besides the defaults.
    """

    name: str
    aliases: tuple[str, ...]
    defaults: Mapping[str, Any]
    make_params: Callable[[Mapping[str, Any]], PyTree]
    max_slots: Callable[[Mapping[str, Any]], int]
    init: Callable[..., tuple[E.Observation, Any]]
    step: Callable[..., tuple[E.Observation, Any]]
    stop_reasons: tuple[str, ...]
    trace_fields: Callable[[Any], dict] | None = None
    finish: Callable[..., Any] | None = None
    seq_window: Callable[[PyTree], Any] | None = None
    group_slots: bool = False
    oracle: str | None = None
    config_space: Mapping[str, Range] = field(default_factory=dict)
    examples: tuple[Mapping[str, Any], ...] = ()
    doc: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.defaults, tuple) and hasattr(self.defaults, "_asdict"):
            object.__setattr__(self, "defaults", dict(self.defaults._asdict()))

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
