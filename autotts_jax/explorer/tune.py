"""The engine tunes a candidate's knobs: a batched search over its beta schedules.

A structure (which rules a controller follows) and its numbers (thresholds, patience, burst
sizes, and how each moves with ``beta``) are different problems.  An LLM or the evolve
explorer proposes structure; the numbers are found here, by replay, on the search split only.

A schedule is ``value = intercept + slope * beta`` per knob (:mod:`autotts_jax.explorer.family`).
The tuner is the cross-entropy method over the genes ``(intercept, slope)`` in coordinates
normalised to each gene's range:

* generation 0 holds the untuned schedule itself and ``population - 1`` Gaussian samples
  around it (``sigma`` times each range); later generations sample around the mean of the
  ``elite`` best so far, with their spread (never below ``min_sigma``), and always re-enter the
  incumbent, so the best never gets lost to noise in the sampler;
* every generation -- ``population`` schedules x the beta grid -- is **one vmapped
  ``simulate`` call per search backbone**, on ``seeds`` shuffle seeds (low fidelity: the caller
  re-scores the winner on all seeds);
* a schedule whose spending is not monotone in beta cannot win (it would be rejected).

Why not a gradient method (an evolution-strategy gradient with an Adam update): most knobs are
integers rounded from the schedule and the score is a step function of them, so a gradient
estimate is mostly zero or noise at the population sizes a 2-core machine affords; CEM's
elite refit needs no step size and degrades gracefully to a random search.  ``strategy:
random`` draws every schedule uniformly from the ranges instead, with the same number of
evaluations: the baseline that says whether the tuner beats chance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from autotts_jax.experiments import metrics as M
from autotts_jax.explorer import family as F


@dataclass(frozen=True)
class TuneSettings:
    """How hard the engine tunes each candidate (``tune`` in the discover config)."""

    population: int = 12  # schedules per generation (one simulate call per backbone)
    generations: int = 3  # 0: no tuning
    elite: int = 3  # best schedules the next generation is sampled around
    seeds: int = 4  # low-fidelity shuffle seeds (the first ones of the run's seeds)
    beta_stride: int = 2  # tune on every beta_stride-th beta of the grid (and the last)
    sigma: float = 0.15  # first generation's spread, as a fraction of each gene's range
    min_sigma: float = 0.02
    strategy: str = "cem"  # cem | random

    @classmethod
    def of(cls, cfg: Mapping[str, Any] | None) -> TuneSettings:
        cfg = dict(cfg or {})
        known = {k: cfg[k] for k in cls.__dataclass_fields__ if k in cfg}
        out = cls(**known)
        if out.strategy not in ("cem", "random"):
            raise ValueError(f"tune.strategy must be cem or random, got {out.strategy!r}")
        if out.population < 2 or out.generations < 0 or not 1 <= out.elite <= out.population:
            raise ValueError("tune: need population >= 2, generations >= 0 and "
                             "1 <= elite <= population")
        return out

    @property
    def evaluations(self) -> int:
        """Schedules replayed per tuned candidate (each over the whole beta grid)."""
        return self.population * self.generations


def tuning_betas(betas: Sequence[float], stride: int) -> list[float]:
    """Every ``stride``-th beta of the grid, always ending with its last (largest) beta."""
    out = [float(b) for b in list(betas)[::max(1, int(stride))]]
    if out[-1] != float(betas[-1]):
        out.append(float(betas[-1]))
    return out


Space = Mapping[str, tuple]  # knob -> (kind, low, high, slope sign), as family.KNOBS


def gene_ranges(space: Space | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Gene names (``knob.a``, ``knob.s``) and their bounds: intercepts within the knob's
    range, slopes within plus or minus its span on the side its sign allows."""
    names, lo, hi = [], [], []
    for k, (_, klo, khi, sign) in (F.KNOBS if space is None else space).items():
        span = float(khi) - float(klo)
        slo, shi = (0.0, span) if sign > 0 else (-span, 0.0) if sign < 0 else (-span, span)
        names += [f"{k}.a", f"{k}.s"]
        lo += [float(klo), slo]
        hi += [float(khi), shi]
    return names, np.asarray(lo, float), np.asarray(hi, float)


def space_of_knobs(knobs: Mapping[str, Any]) -> tuple[dict[str, tuple], dict[str, list[float]]]:
    """A module's ``KNOBS`` (:class:`~autotts_jax.engine.knobs.Knob`) as a tuning space and
    its declared schedules as the start genome."""
    space = {k: (v.kind, float(v.low), float(v.high), int(v.direction)) for k, v in knobs.items()}
    start = {k: [float(v.intercept), float(v.slope)] for k, v in knobs.items()}
    return space, start


def _to_unit(genome: Mapping[str, Any], lo: np.ndarray, hi: np.ndarray,
             space: Space | None = None) -> np.ndarray:
    x = np.asarray([float(v) for k in (F.KNOBS if space is None else space) for v in genome[k]],
                   float)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def _from_unit(u: np.ndarray, fixed: Mapping[str, Any], lo: np.ndarray, hi: np.ndarray,
               space: Space | None = None) -> dict[str, Any]:
    x = lo + np.clip(u, 0.0, 1.0) * (hi - lo)
    g: dict[str, Any] = {k: [round(float(x[2 * i]), 4), round(float(x[2 * i + 1]), 4)]
                         for i, k in enumerate(F.KNOBS if space is None else space)}
    g.update({k: int(v) for k, v in fixed.items()})
    return g


def score_population(results: Sequence[Mapping[str, np.ndarray]], models: Sequence[str],
                     betas: Sequence[float], anchors: Mapping[str, Mapping[str, float]],
                     tolerance: float) -> list[dict[str, Any]]:
    """Search score and monotonicity of each genome's ``[stores, betas, seeds, q]`` arrays."""
    out = []
    for arrays in results:
        acc = 100.0 * arrays["correct"].mean(axis=(2, 3))
        tok = arrays["tokens"].mean(axis=(2, 3))
        curve = {m: [{"beta": float(b), "accuracy": float(acc[s, i]),
                      "avg_tokens": float(tok[s, i])} for i, b in enumerate(betas)]
                 for s, m in enumerate(models)}
        scored = M.score_curves(curve, anchors)
        mono = M.monotone_problem(scored["mean_curve"], tolerance)
        out.append({"score": scored["score"], "mean_tokens": scored["mean_tokens"],
                    "monotone": mono is None})
    return out


class Tuner:
    """Ask/tell CEM (or random search) over one genome's schedules, its switches fixed.

    ``ask()`` gives the next generation's genomes, ``tell(scores)`` takes their
    ``{"score", "mean_tokens", "monotone"}``.  The caller batches the asks of many tuners into
    one replay, so a round of candidates costs ``generations`` vmapped calls per backbone.
    """

    def __init__(self, genome: Mapping[str, Any], rng: np.random.Generator,
                 settings: TuneSettings, space: Space | None = None) -> None:
        self._space = F.KNOBS if space is None else space
        self._names, self._lo, self._hi = gene_ranges(self._space)
        self._structure = {k: genome[k] for k in genome if k not in self._space}
        self._start = _to_unit(genome, self._lo, self._hi, self._space)
        self._mean = self._start.copy()
        self._sigma = np.full_like(self._start, settings.sigma)
        self._rng = rng
        self.settings = settings
        self._seen: list[tuple[float, float, np.ndarray, dict]] = []
        self._units: list[np.ndarray] = []
        self.generation = 0
        self.untuned: dict[str, Any] | None = None
        self.per_generation: list[float | None] = []

    @property
    def done(self) -> bool:
        return self.generation >= self.settings.generations

    def ask(self) -> list[dict[str, Any]]:
        st, rng = self.settings, self._rng
        if st.strategy == "random":
            units = [rng.random(self._start.shape) for _ in range(st.population)]
        else:
            units = [np.clip(self._mean + self._sigma * rng.standard_normal(self._start.shape),
                             0.0, 1.0) for _ in range(st.population)]
        if self.generation == 0:
            units[0] = self._start
        elif st.strategy == "cem":
            units[0] = self._seen[0][2]
        self._units = units
        return [_from_unit(u, self._structure, self._lo, self._hi, self._space) for u in units]

    def tell(self, genomes: Sequence[Mapping[str, Any]],
             scores: Sequence[Mapping[str, Any]]) -> None:
        for u, g, s in zip(self._units, genomes, scores, strict=True):
            value = float(s["score"]) if s["monotone"] else -np.inf
            self._seen.append((value, float(s["mean_tokens"]), u, dict(g)))
        if self.generation == 0:
            self.untuned = {**scores[0], "genome": dict(genomes[0])}
        self._seen.sort(key=lambda x: (-x[0], x[1]))
        best = self._seen[0][0]
        self.per_generation.append(round(best, 4) if np.isfinite(best) else None)
        if self.settings.strategy == "cem":
            elite = np.stack([x[2] for x in self._seen[:self.settings.elite]])
            self._mean = elite.mean(axis=0)
            self._sigma = np.maximum(elite.std(axis=0), self.settings.min_sigma)
        self.generation += 1

    def sensitivity(self) -> dict[str, float]:
        """Which knobs mattered: per knob, the least-squares effect on the score (points) of
        moving its intercept and slope across their whole ranges, summed in absolute value,
        fitted over every schedule the tuner replayed (non-monotone ones left out)."""
        rows = [(x[2], x[0]) for x in self._seen if np.isfinite(x[0])]
        if len(rows) < 3:
            return {}
        u = np.stack([r[0] for r in rows])
        y = np.asarray([r[1] for r in rows])
        design = np.column_stack([u - u.mean(axis=0), np.ones(len(rows))])
        coef = np.linalg.lstsq(design, y - y.mean(), rcond=None)[0][:-1]
        out = {k: round(float(abs(coef[2 * i]) + abs(coef[2 * i + 1])), 3)
               for i, k in enumerate(self._space)}
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def result(self) -> dict[str, Any]:
        """The best genome (the untuned one when nothing monotone beat it) and the record."""
        value, _, _, best = self._seen[0]
        if not np.isfinite(value):
            best = self.untuned["genome"]
        return {"genome": best, "score_low": round(value, 4) if np.isfinite(value) else None,
                "sensitivity": self.sensitivity(),
                "untuned_score_low": self.untuned["score"] if self.untuned["monotone"] else None,
                "per_generation": self.per_generation,
                "evaluations": self.settings.evaluations, "strategy": self.settings.strategy,
                "seeds": self.settings.seeds, "beta_stride": self.settings.beta_stride}


def tune_all(genomes: Sequence[Mapping[str, Any]], evaluate, score,
             rngs: Sequence[np.random.Generator], settings: TuneSettings,
             space: Space | None = None) -> list[dict[str, Any]]:
    """Tune every genome; each generation of all of them is one ``evaluate`` call.

    ``evaluate(genomes)`` replays genomes at low fidelity (arrays per genome); ``score``
    turns those into ``{"score", "mean_tokens", "monotone"}`` per genome.
    """
    tuners = [Tuner(g, rng, settings, space) for g, rng in zip(genomes, rngs, strict=True)]
    for _ in range(settings.generations):
        asks = [t.ask() for t in tuners]
        flat = [g for a in asks for g in a]
        scores = score(evaluate(flat))
        i = 0
        for t, a in zip(tuners, asks, strict=True):
            t.tell(a, scores[i:i + len(a)])
            i += len(a)
    return [t.result() for t in tuners]
