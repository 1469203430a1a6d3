"""The conformance harness every controller must pass, hand-written or LLM-written.

:func:`check_controller` replays a controller on a small store and raises
:class:`~autotts_jax.errors.AutoTTSError` naming the first problem it finds:

1. the configs are accepted (known keys, valid values, a positive ``max_slots``) and the
   stop reasons are distinct names (``round_cap`` is reserved);
2. ``simulate`` traces, compiles and runs it under ``jit`` (no Python control flow on traced
   values, a loop state of fixed structure, shapes and dtypes, declared stop reasons only);
3. it is deterministic: two identical runs give identical episodes;
4. batching does not change results: every config run alone (its copies fill the batch) and
   the whole batch in reverse order (configs and seeds) give the same episodes as the batch.
   All these runs have the same shapes, so they cost no recompilation, but every episode
   shares its vmapped chunk with other episodes at another position;
5. every episode stops by itself (stop reason ``round_cap`` means it never called ``fx.stop``);
6. answers are ``-1`` or an answer id of the question (a final or probe answer of one of its
   branches), and one the controller was shown: an answer of a branch it opened (slots below
   ``branches``); ``correct`` agrees with the store;
7. it opens no more branches than the question has, than the slot axis holds, and than its
   config declares (``max_slots``; a controller that opens more would depend on the padding);
8. its token counts are consistent with the branches it opened (slots ``j < branches``, with
   ``bt_j`` the branch's tokens, ``L_j`` its probe count and ``f`` the probe interval):

   * lower bound, both cost models: ``tokens >= sum_j min(f, bt_j)``.  Opening a slot costs at
     least that (a full read ``bt``, ``probe_new`` ``f``, or ``min(f, bt)`` corrected), so a
     smaller count means the controller edited the episode state instead of paying through
     the effects;
   * ``"corrected"`` cost model: ``tokens <= sum_j bt_j``.  Valid for every controller: a
     branch is never charged more than its tokens, re-probing a finished branch is free;
   * ``"reference"`` cost model: a branch probed to its end costs ``max(f * L_j, bt_j)``
     (upstream's accounting, QUIRK 2), so ``tokens <= sum_j max(f * L_j, bt_j)`` -- but only
     for controllers that never re-probe a finished branch.  Each ``fx.probe_more`` on a
     finished branch charges its remainder ``max(0, bt_j - f * L_j)`` *again* (QUIRK 1), any
     number of times per round, so no a-priori bound exists for a controller that does that.
     No published controller does; by default re-probing (visible as tokens above the bound)
     is reported as a failure, and ``allow_reprobe=True`` skips this one bound;
   * sequential tokens: ``0 <= seq_tokens <= tokens`` (a round costs its largest per-slot
     charge, which is at most the round's total).
9. non-interference: the episodes are replayed on a counterfactual store that differs from
   the first only in what no episode observed (later probes, lengths and final answers of
   branches not read to the end, unopened branches, answer ids; see
   :mod:`autotts_jax.engine.noninterference`) and must make the same decisions.  The replay
   runs in a spawned process when the controller pickles by reference (a module-level
   ``Controller`` of an importable module), else in this process (``isolated`` says which).

The default store is :func:`random_store`: a few questions with 1 to 16 branches (so branch
exhaustion happens), probe lists of 1 to 12 answers from a small alphabet, final answers that
are never probed, branch tokens on both sides of ``f * L``, and a question whose gold answer
no branch reaches.
"""

from __future__ import annotations

import atexit
import multiprocessing
import pickle
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import jax
import numpy as np

from autotts_jax.engine import noninterference as NI
from autotts_jax.engine.invariants import FIELDS, check_store
from autotts_jax.engine.protocol import ROUND_CAP, Controller, ProtocolError
from autotts_jax.engine.simulate import Episodes, simulate
from autotts_jax.errors import AutoTTSError
from autotts_jax.store.load import ReplayData, bucket, from_arrays

DEFAULT_SEEDS = (0, 1, 2)


def random_store(seed: int = 0, branches: Sequence[int] = (16, 9, 3, 1), freq: int = 100,
                 ) -> ReplayData:
    """A small random store: one question per entry of ``branches`` (its branch count).

    Answer ids: 0-3 are final answers, 4-5 only ever appear as probes, 3 is never probed.
    Question 0's gold answer is id 0; the last question's gold answer is no answer at all.
    """
    rng = np.random.default_rng(seed)
    n_q, n_b, n_k, n_v = len(branches), max(branches), 12, 6
    probe_answer = np.full((n_q, n_b, n_k), -1, np.int32)
    n_probes = np.zeros((n_q, n_b), np.int32)
    tokens = np.zeros((n_q, n_b), np.int32)
    final = np.full((n_q, n_b), -1, np.int32)
    is_correct = np.zeros((n_q, n_v), bool)
    for q, nb in enumerate(branches):
        for b in range(nb):
            n = int(rng.integers(1, n_k + 1))
            probes = rng.choice([0, 1, 2, 4, 5], size=n, p=[0.4, 0.25, 0.15, 0.1, 0.1])
            probe_answer[q, b, :n] = probes
            n_probes[q, b] = n
            final[q, b] = probes[-1] if probes[-1] < 3 and rng.random() < 0.7 else rng.integers(4)
            tokens[q, b] = max(0, freq * n + int(rng.integers(-2 * freq, 2 * freq + 1)))
        if q < n_q - 1:
            is_correct[q, int(rng.integers(3)) if q else 0] = True
    arrays = {
        "probe_answer": probe_answer, "n_probes": n_probes, "branch_tokens": tokens,
        "final_answer": final, "n_branches": np.asarray(branches, np.int32),
        "is_correct": is_correct,
    }
    return from_arrays(arrays, freq, min_branches=16, min_depth=16, min_vocab=64)


def _fail(controller: Controller, problem: str) -> AutoTTSError:
    return AutoTTSError(f"controller {controller.name!r} fails the conformance check: {problem}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _validate_static(controller: Controller, configs) -> list[int]:
    if not isinstance(controller, Controller):
        raise AutoTTSError(f"expected a Controller, got {type(controller).__name__}")
    reasons = controller.stop_reasons
    if not isinstance(reasons, tuple) or not all(isinstance(r, str) for r in reasons):
        raise _fail(controller, f"stop_reasons must be a tuple of names, got {reasons!r}")
    if ROUND_CAP in reasons or len(set(reasons)) != len(reasons):
        raise _fail(controller, f"stop_reasons must be distinct and must not contain "
                                f"{ROUND_CAP!r} (reserved), got {reasons!r}")
    if not configs:
        raise _fail(controller, "no configs to check")
    needs = []
    for config in configs:
        try:
            full = controller.config(config)
            controller.make_params(full)
            need = controller.max_slots(full)
        except Exception as exc:
            raise _fail(controller, f"config {dict(config)} is rejected: {_first_line(exc)}"
                        ) from exc
        if isinstance(need, bool) or not isinstance(need, int | np.integer) or need < 1:
            raise _fail(controller, f"max_slots({dict(config)}) must be a positive int, "
                                    f"got {need!r}")
        needs.append(int(need))
    return needs


def _run(controller, data, configs, seeds, what: str, **kw) -> Episodes:
    try:
        return simulate(controller, data, configs, seeds, **kw)
    except ProtocolError as exc:
        raise _fail(controller, str(exc)) from exc
    except AutoTTSError:
        raise
    except Exception as exc:
        raise _fail(controller, f"simulate failed under jit ({what}): {_first_line(exc)}"
                    ) from exc


def _index(eps: Episodes, index) -> dict[str, np.ndarray]:
    return {name: np.asarray(getattr(eps, name))[index] for name in FIELDS}


def _same(a: Episodes, b: Episodes | dict, index=np.s_[...]) -> str | None:
    """Name of the first field where ``a[index]`` and ``b`` differ, else None."""
    b = b if isinstance(b, dict) else _index(b, np.s_[...])
    for name in FIELDS:
        x, y = np.asarray(getattr(a, name))[index], b[name]
        if x.shape != y.shape or not np.array_equal(x, y):
            return name
    return None


def _check_episodes(controller, data, configs, seeds, eps: Episodes, needs, cost_model: str,
                    allow_reprobe: bool) -> None:
    """Checks 5 to 8: the result invariants (:mod:`autotts_jax.engine.invariants`)."""
    problems = check_store(_index(eps, np.s_[...]), data, seeds, needs, cost_model=cost_model,
                           stop_reasons=eps.stop_reasons, configs=configs,
                           allow_reprobe=allow_reprobe)
    if problems:
        raise _fail(controller, problems[0])


def check_controller(
    controller: Controller,
    data: ReplayData | None = None,
    configs: Sequence[Mapping[str, Any]] | None = None,
    *,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    allow_reprobe: bool = False,
    max_rounds: int | None = None,
    isolate: bool = True,
) -> None:
    """Raise :class:`AutoTTSError` naming the first way ``controller`` breaks the protocol.

    ``data`` defaults to :func:`random_store`, ``configs`` to the controller's defaults
    followed by its ``examples`` (pass several to exercise the config axis).  See the module
    docstring for the list of checks and for why the reference-model token bound needs
    ``allow_reprobe``.
    ``isolate=False`` runs the non-interference replay in this process (the sandbox, which
    runs its own second replay in a separate process, uses that).
    """
    if configs is None:
        configs = [{}, *getattr(controller, "examples", ())]
    configs = [dict(c) for c in configs]
    seeds = [int(s) for s in seeds]
    needs = _validate_static(controller, configs)
    if data is None:
        data = random_store()
    n_b = data.probe_answer.shape[1]
    slots = min(bucket(max(needs), 8), n_b)
    pool = bucket(int(np.asarray(data.final_answer).max()) + 1, 8)
    n_q = data.probe_answer.shape[0]
    kw = {"slots": slots, "pool_size": pool, "chunk_size": len(configs) * len(seeds) * n_q}
    if max_rounds is not None:
        kw["max_rounds"] = max_rounds

    eps = _run(controller, data, configs, seeds, "reference cost model", ledger=True, **kw)
    _check_episodes(controller, data, configs, seeds, eps, needs, "reference", allow_reprobe)
    again = _run(controller, data, configs, seeds, "second run", ledger=True, **kw)
    field = _same(eps, again)
    if field is not None:
        raise _fail(controller, f"not deterministic: two identical runs differ in {field}")
    problem = non_interference(controller, data, configs, seeds, eps, isolate=isolate, **kw)
    if problem is not None:
        raise _fail(controller, f"non-interference: {problem}")
    # Batching must not matter.  Every run below has the batch's shapes (no recompilation),
    # but each episode sits at another position of the vmapped chunk, next to other episodes.
    for c, config in enumerate(configs):  # one config at a time (copies fill the batch)
        alone = _run(controller, data, [config] * len(configs), seeds, "one config", **kw)
        for k in range(len(configs)):
            field = _same(eps, _index(alone, k), np.s_[c])
            if field is not None:
                raise _fail(controller, f"config {config} run alone differs from the batch in "
                                        f"{field}: episodes must not depend on each other")
    flipped = _run(controller, data, configs[::-1], seeds[::-1], "reversed batch", **kw)
    field = _same(eps, _index(flipped, np.s_[::-1, ::-1]))
    if field is not None:
        raise _fail(controller, f"the batch in reverse order (configs and seeds) differs in "
                                f"{field}: episodes must not depend on each other")
    eps = _run(controller, data, configs, seeds, "corrected cost model", cost_model="corrected",
               **kw)
    _check_episodes(controller, data, configs, seeds, eps, needs, "corrected", allow_reprobe)


_POOL: dict[str, ProcessPoolExecutor] = {}


def _spawned() -> ProcessPoolExecutor:
    """One spawned worker process per interpreter, reused (it pays JAX's import once)."""
    if "pool" not in _POOL:
        _POOL["pool"] = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        atexit.register(_POOL["pool"].shutdown, cancel_futures=True)
    return _POOL["pool"]


def _replay(controller: Controller, data: ReplayData, configs, seeds, kw) -> Episodes:
    import autotts_jax.engine  # noqa: F401  (float64, as in the parent)

    return simulate(controller, data, configs, seeds, ledger=True, **kw)


def non_interference(controller: Controller, data: ReplayData, configs, seeds,
                     eps: Episodes, *, isolate: bool = True, seed: int = 0, **kw
                     ) -> str | None:
    """Replay ``eps``'s episodes on a counterfactual of ``data`` (see
    :mod:`autotts_jax.engine.noninterference`); ``None`` when every decision is the same,
    else what differed.  ``eps`` must come from ``simulate(..., ledger=True, **kw)``."""
    seen = NI.revealed(eps.slot_depth, eps.slot_end, eps.branches, seeds,
                       np.asarray(data.n_branches), data.probe_answer.shape[1])
    cf, relabel = NI.counterfactual(data, seen, seed, int(kw.get("pool_size", 128)))
    cf_np = jax.tree.map(np.asarray, cf)
    other = None
    if isolate:
        try:
            pickle.dumps(controller)
        except Exception:  # a closure or a module loaded from a file: not by reference
            isolate = False
    try:
        if isolate:
            other = _spawned().submit(_replay, controller, cf_np, configs, seeds, kw).result()
        else:
            other = _replay(controller, cf_np, configs, seeds, kw)
    except AutoTTSError:
        raise
    except Exception as exc:
        return f"the replay on a counterfactual store failed: {_first_line(exc)}"
    return NI.compare(NI.episode_arrays(eps), NI.episode_arrays(other), relabel)
