"""Paired bootstrap comparisons of two controllers replayed on the same stores.

Two controllers replayed on one store with the same shuffle seeds see the same (seed, question)
episodes: seed ``s`` orders question ``q``'s branches the same way for both.  Most of the
variation of an accuracy estimate comes from *which* questions were asked (a 30-question
benchmark gives intervals of about ±12 to ±15 points), and that variation is shared by
the two controllers.  Resampling the pair together cancels it, so the difference is known far
more tightly than two separate intervals suggest.

**Resampling scheme** (two-stage, nested).  Each of ``samples`` resamples of a store draws its
``Q`` questions with replacement and then, for each drawn question separately, its ``N`` seeds
with replacement: episode ``(s, q)`` gets a weight (how often it was drawn) in a ``[B, N, Q]``
array, and every mean over episodes becomes one matrix product of the per-episode values with
the weights.  The two controllers of a pair use the *same* weights (paired); the *unpaired*
interval, for contrast, gives the second controller independent weights.  Draws come from
numpy's PCG64 seeded with ``(seed, store stream, side)``, the stream derived from the store's
name (CRC-32 of ``model/benchmark``), so a store's draws do not depend on which other stores
are compared; one store's draws serve every pair compared on it.  (``jax.random``, which the
unpaired :mod:`bootstrap` uses, takes about half a second per store for the ``B x Q x N``
seed draws on a CPU; PCG64 a few milliseconds.)  Pooled figures (over a backbone's
benchmarks, or over every store) average the per-store statistics of each resample: questions
are resampled within each store, stores are fixed (``token_ratio`` pools the curves instead,
see below).

**Metrics** (each the first controller ``a`` minus the second ``b``):

* ``accuracy``: accuracy (%) of ``a`` at its compared config minus ``b``'s at its one;
* ``matched_budget``: the explorer's search score (accuracy at matched budget over each
  controller's whole beta curve, :mod:`autotts_jax.experiments.metrics`) of ``a`` minus ``b``'s.
  The budget grid (log-spaced from SC@4's to SC@64's mean tokens on the store) is fixed at its
  full-data value; the curves are resampled;
* ``token_ratio``: tokens of the cheapest config of ``a``'s curve whose accuracy reaches ``b``'s
  accuracy at its compared config, divided by ``b``'s tokens there, **minus 1** (``-0.6`` = 60 %
  fewer tokens; above zero = ``a`` needs more tokens).  When no config of ``a`` reaches it, the
  ratio is infinite (``a`` cannot match within its curve); such resamples count as above zero
  and ``defined`` gives the share of resamples where it is finite.  Pooled: the ratio on the
  pool's mean curve (each config's accuracy and tokens averaged over the stores, as the
  README's "mean over backbones" figures), so one store where ``a`` falls just short does not
  make the pooled ratio infinite.

**Interval.**  The percentile interval at ``level`` from order statistics: with
``k = ceil(B (1 - level) / 2)``, the ``k``-th smallest and the ``k``-th largest of the ``B``
resampled differences (no interpolation, so infinite ratios are handled).  ``p_above_zero`` is
the share of resamples whose difference is > 0.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from autotts_jax.experiments import metrics as M

METRICS = ("accuracy", "matched_budget", "token_ratio")


@dataclass(frozen=True)
class Curve:
    """One controller on one store: per-episode outcomes of each of its configs.

    ``correct`` and ``tokens`` are ``[configs, seeds, questions]`` (``Episodes.correct`` and
    ``Episodes.tokens``); ``point`` is the index of the compared config (the ``accuracy`` and
    ``token_ratio`` metrics use it, ``matched_budget`` uses every config).
    """

    correct: np.ndarray
    tokens: np.ndarray
    point: int

    def __post_init__(self) -> None:
        if self.correct.ndim != 3 or self.correct.shape != self.tokens.shape:
            raise ValueError("Curve: correct and tokens must be equal [configs, seeds, "
                             f"questions] arrays, got {self.correct.shape} and "
                             f"{self.tokens.shape}")
        if not 0 <= self.point < self.correct.shape[0]:
            raise ValueError(f"Curve: point {self.point} is not one of its "
                             f"{self.correct.shape[0]} configs")


def store_stream(store: str) -> int:
    """The draw stream of a store: CRC-32 of its name, stable across runs and selections."""
    return zlib.crc32(store.encode("utf-8")) & 0x7FFFFFFF


def draws(n_seeds: int, n_questions: int, samples: int, seed: int, stream: int, side: int = 0
          ) -> tuple[np.ndarray, np.ndarray]:
    """The nested draws of one store: question indices ``[B, Q]`` and, per drawn question,
    seed indices ``[B, Q, N]``.  ``side`` 1 gives independent draws (the unpaired contrast)."""
    if n_questions < 1 or n_seeds < 1:
        raise ValueError("paired bootstrap: no episodes to resample")
    if samples < 1:
        raise ValueError(f"paired bootstrap: samples must be >= 1, got {samples}")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(
        [int(seed), int(stream), int(side)])))
    q_idx = rng.integers(0, n_questions, (samples, n_questions), dtype=np.int64)
    s_idx = rng.integers(0, n_seeds, (samples, n_questions, n_seeds), dtype=np.int64)
    return q_idx, s_idx


def weights(q_idx: np.ndarray, s_idx: np.ndarray, n_seeds: int, n_questions: int) -> np.ndarray:
    """``[B, N, Q]`` float64: how often episode (seed, question) was drawn in each resample."""
    b = s_idx.shape[0]
    flat = s_idx * n_questions
    flat += q_idx[:, :, None]
    flat += (np.arange(b) * (n_seeds * n_questions))[:, None, None]
    counts = np.bincount(flat.ravel(), minlength=b * n_seeds * n_questions)
    return counts.reshape(b, n_seeds, n_questions).astype(np.float64)


@dataclass(frozen=True)
class _Resampled:
    """A curve's accuracy (%) and mean tokens per config under each resample, ``[C, B]``."""

    accuracy: np.ndarray
    tokens: np.ndarray
    point: int


def _resample(curves: Mapping[str, Curve], w: np.ndarray) -> dict[str, _Resampled]:
    """Every curve of a store under the weights ``w`` ``[B, N, Q]``: one matrix product for
    all of them, so the weights are read once."""
    names = list(curves)
    sizes = [curves[k].correct.shape[0] for k in names]
    n, q = w.shape[1:]
    x = np.concatenate([curves[k].correct.reshape(c, -1) for k, c in zip(names, sizes,
                                                                         strict=True)]
                       + [curves[k].tokens.reshape(c, -1) for k, c in zip(names, sizes,
                                                                          strict=True)]
                       ).astype(np.float64)  # [2 * configs, N*Q]
    sums = (w.reshape(w.shape[0], -1) @ x.T).T  # [2 * configs, B], exact integer sums
    total = float(n * q)  # every resample draws N*Q episodes
    hits, tokens = np.split(sums, 2)
    out, start = {}, 0
    for k, c in zip(names, sizes, strict=True):
        out[k] = _Resampled(100.0 * hits[start:start + c] / total,
                            tokens[start:start + c] / total, curves[k].point)
        start += c
    return out


def _score(r: _Resampled, anchor: Mapping[str, float]) -> np.ndarray:
    """The explorer's accuracy-at-matched-budget score of each resample's curve."""
    grid = M.budgets(anchor)
    out = np.empty(r.accuracy.shape[1])
    for b in range(out.size):
        pts = list(zip(r.tokens[:, b].tolist(), r.accuracy[:, b].tolist(), strict=True))
        out[b] = np.mean([M.frontier(pts, t) for t in grid])
    return out


def _values(metric: str, a: _Resampled, b: _Resampled, anchor: Mapping[str, float] | None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a's value, b's value, difference), each ``[B]``."""
    if metric == "accuracy":
        va, vb = a.accuracy[a.point], b.accuracy[b.point]
        return va, vb, va - vb
    if metric == "matched_budget":
        if anchor is None:
            raise ValueError("matched_budget needs the store's SC@4 / SC@64 token anchor")
        va, vb = _score(a, anchor), _score(b, anchor)
        return va, vb, va - vb
    if metric == "token_ratio":
        reach = a.accuracy >= b.accuracy[b.point][None, :]
        va = np.where(reach, a.tokens, np.inf).min(axis=0)
        vb = b.tokens[b.point]
        return va, vb, va / vb - 1.0
    raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")


def interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval from order statistics (see the module docstring)."""
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    v = np.sort(np.asarray(values, dtype=np.float64))
    k = max(1, math.ceil(round(v.size * (1.0 - float(level)) / 2.0, 9)))
    return float(v[k - 1]), float(v[v.size - k])


@dataclass(frozen=True)
class StoreStats:
    """One metric of one pair on one store (or pool): full-data values and per-resample
    arrays."""

    a_value: float
    b_value: float
    difference: float
    paired: np.ndarray  # [B] resampled differences, same draws for a and b
    unpaired: np.ndarray  # [B] with independent draws for b
    a_boot: np.ndarray  # [B] a's own value
    b_boot: np.ndarray  # [B] b's own value (same draws as a)


@dataclass(frozen=True)
class _Replays:
    """A pair's curves on one store (or averaged over a pool): on the full data, under the
    shared draws, and b's under independent draws."""

    full_a: _Resampled
    full_b: _Resampled
    a: _Resampled
    b: _Resampled
    b_other: _Resampled
    anchor: Mapping[str, float] | None


@dataclass(frozen=True)
class _Views:
    """One curve on one store: on the full data, under the shared draws, under the
    independent draws."""

    full: _Resampled
    shared: _Resampled
    other: _Resampled


def _store_views(curves: Mapping[str, Curve], store: str, samples: int, seed: int
                 ) -> dict[str, _Views]:
    """Every curve of one store under the same draws (computed once for all pairs)."""
    shapes = {c.correct.shape[1:] for c in curves.values()}
    if len(shapes) != 1:
        raise ValueError(f"{store}: the controllers were replayed on different episodes "
                         f"({' vs '.join(map(str, sorted(shapes)))} seeds x questions)")
    ((n, q),) = shapes
    stream = store_stream(store)
    full = _resample(curves, np.ones((1, n, q)))
    shared = _resample(curves, weights(*draws(n, q, samples, seed, stream), n, q))
    other = _resample(curves, weights(*draws(n, q, samples, seed, stream, side=1), n, q))
    return {k: _Views(full[k], shared[k], other[k]) for k in curves}


def _pair(a: _Views, b: _Views, anchor: Mapping[str, float] | None) -> _Replays:
    return _Replays(a.full, b.full, a.shared, b.shared, b.other, anchor)


def _mean_curves(replays: Sequence[_Replays]) -> _Replays:
    """The pool's mean curve: accuracy and tokens of each config averaged over the stores,
    resample by resample (the stores must share their configs)."""
    def mean(name: str) -> _Resampled:
        rs = [getattr(r, name) for r in replays]
        if len({(x.accuracy.shape, x.point) for x in rs}) != 1:
            raise ValueError("pooled token_ratio: the stores' curves have different configs")
        return _Resampled(np.mean([x.accuracy for x in rs], axis=0),
                          np.mean([x.tokens for x in rs], axis=0), rs[0].point)

    return _Replays(mean("full_a"), mean("full_b"), mean("a"), mean("b"), mean("b_other"), None)


def _stats(metric: str, r: _Replays) -> StoreStats:
    va, vb, d = _values(metric, r.full_a, r.full_b, r.anchor)
    boot_a, boot_b, paired = _values(metric, r.a, r.b, r.anchor)
    _, _, unpaired = _values(metric, r.a, r.b_other, r.anchor)
    return StoreStats(float(va[0]), float(vb[0]), float(d[0]), paired, unpaired, boot_a, boot_b)


def store_stats(a: Curve, b: Curve, store: str, metrics: Sequence[str], *, samples: int,
                seed: int, anchor: Mapping[str, float] | None = None
                ) -> dict[str, StoreStats]:
    """Every metric of ``a`` against ``b`` on one store (``store`` names the draw stream)."""
    v = _store_views({"a": a, "b": b}, store, samples, seed)
    r = _pair(v["a"], v["b"], anchor)
    return {metric: _stats(metric, r) for metric in metrics}


def pool(stats: Sequence[StoreStats]) -> StoreStats:
    """The mean over stores of each statistic, resample by resample."""
    def mean(name: str):
        return np.mean([getattr(s, name) for s in stats], axis=0)

    return StoreStats(float(mean("a_value")), float(mean("b_value")), float(mean("difference")),
                      mean("paired"), mean("unpaired"), mean("a_boot"), mean("b_boot"))


def summarize(stats: StoreStats, level: float) -> dict[str, Any]:
    """The row fields of one statistic: difference, intervals, share above zero."""
    lo, hi = interval(stats.paired, level)
    ulo, uhi = interval(stats.unpaired, level)
    alo, ahi = interval(stats.a_boot, level)
    blo, bhi = interval(stats.b_boot, level)
    return {
        "a_value": stats.a_value, "b_value": stats.b_value,
        "difference": stats.difference, "ci_low": lo, "ci_high": hi,
        "p_above_zero": float(np.mean(stats.paired > 0)),
        "unpaired_ci_low": ulo, "unpaired_ci_high": uhi,
        "a_ci_low": alo, "a_ci_high": ahi, "b_ci_low": blo, "b_ci_high": bhi,
        "defined": float(np.mean(np.isfinite(stats.paired))),
    }


def compare_pairs(curves: Mapping[str, Mapping[str, Curve]],
                  pairs: Sequence[tuple[str, str]], *, metrics: Sequence[str] = METRICS,
                  anchors: Mapping[str, Mapping[str, float]] | None = None,
                  pools: Mapping[str, Sequence[str]] | None = None,
                  samples: int = 1000, seed: int = 0, level: float = 0.95
                  ) -> list[dict[str, Any]]:
    """Rows of each pair ``(a, b)`` per store and per pool.

    ``curves[name]`` maps a store name (``model/benchmark``) to that controller's curve on it;
    every store's draws are made once and shared by all pairs.  ``anchors[store]`` is
    ``{"low": SC@4 tokens, "high": SC@64 tokens}`` (needed for ``matched_budget``); ``pools``
    maps a pool's name to the stores it averages.  Each row: ``a``, ``b``, ``store``,
    ``metric``, ``n_stores``, ``n_questions``, ``n_seeds`` and the fields of
    :func:`summarize`.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; known: {', '.join(METRICS)}")
    anchors = anchors or {}
    used = list(dict.fromkeys(k for p in pairs for k in p))
    views = {}
    for s in dict.fromkeys(s for k in used for s in curves[k]):
        here = {k: curves[k][s] for k in used if s in curves[k]}
        if any(a in here and b in here for a, b in pairs):
            views[s] = _store_views(here, s, samples, seed)
    rows: list[dict[str, Any]] = []
    for a, b in pairs:
        stores = [s for s in views if s in curves[a] and s in curves[b]]
        if not stores:
            raise ValueError(f"paired bootstrap: {a} and {b} share no store")
        replays = {s: _pair(views[s][a], views[s][b], anchors.get(s)) for s in stores}
        per = {s: {m: _stats(m, r) for m in metrics} for s, r in replays.items()}

        def emit(name: str, members: Sequence[str], a=a, b=b, per=per, replays=replays) -> None:
            n_q = sum(curves[a][s].correct.shape[2] for s in members)
            for metric in metrics:
                if len(members) == 1:
                    st = per[members[0]][metric]
                elif metric == "token_ratio":
                    st = _stats(metric, _mean_curves([replays[s] for s in members]))
                else:
                    st = pool([per[s][metric] for s in members])
                rows.append({"a": a, "b": b, "store": name, "metric": metric,
                             "n_stores": len(members), "n_questions": n_q,
                             "n_seeds": int(curves[a][members[0]].correct.shape[1]),
                             **summarize(st, level)})

        for s in stores:
            emit(s, [s])
        for name, members in (pools or {}).items():
            members = [s for s in members if s in per]
            if members:
                emit(name, members)
    return rows


def compare_pair(a: Mapping[str, Curve], b: Mapping[str, Curve], **kwargs: Any
                 ) -> list[dict[str, Any]]:
    """:func:`compare_pairs` for one pair, named ``a`` and ``b`` in the rows."""
    return compare_pairs({"a": a, "b": b}, [("a", "b")], **kwargs)
