"""What the discovery loop knows about the search split: the stores, the anchors of the score
and the baselines' curves -- all computed on aime24 only, through :class:`SearchSplit`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autotts_jax.experiments import metrics as M
from autotts_jax.store.split import SearchSplit


@dataclass
class SearchContext:
    split: SearchSplit
    datas: list[Any]  # ReplayData per search backbone
    seeds: list[int]
    betas: list[float]
    cost_model: str
    max_rounds: int
    pool_size: int
    max_branch: int
    anchors: dict[str, dict[str, float]] = field(default_factory=dict)
    sc64_correct: np.ndarray | None = None  # [stores, seeds, questions]
    baselines: dict[str, Any] = field(default_factory=dict)
    # per baseline: "correct" / "tokens" [stores, configs, seeds, questions] (paired stats)
    baseline_episodes: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def models(self) -> tuple[str, ...]:
        return self.split.models

    @property
    def references(self) -> dict[str, dict[str, dict[str, float]]]:
        return {ref: per for b in self.baselines.values() for ref, per in b["references"].items()}

    def sim_kw(self) -> dict[str, Any]:
        return {"cost_model": self.cost_model, "max_rounds": self.max_rounds,
                "pool_size": self.pool_size}


def load_context(split: SearchSplit, *, seeds: Sequence[int], betas: Sequence[float],
                 cost_model: str, max_rounds: int, max_branch: int) -> SearchContext:
    from autotts_jax.store import bucket

    stores = [split.load(m) for m in split.models]
    pool = max(bucket(s.meta.n_final_vocab, 128) for s in stores)
    return SearchContext(split, [s.data for s in stores], [int(s) for s in seeds],
                         [float(b) for b in betas], cost_model, int(max_rounds), pool,
                         int(max_branch))


def _short(config: Mapping[str, Any], grid_param: str) -> str:
    v = config.get(grid_param)
    return f"{grid_param}={v:g}" if isinstance(v, float) else f"{grid_param}={v}"


def compute_baselines(ctx: SearchContext, controllers: Mapping[str, Mapping[str, Any]],
                      log=print, floor_reads: int = M.FLOOR_READS) -> dict[str, Any]:
    """SC anchors (SC@floor_reads and SC@64) and every configured baseline's curve and score on
    the search split."""
    from autotts_jax.controllers import SC
    from autotts_jax.engine.simulate import simulate
    from autotts_jax.experiments.evaluate import controller_points

    t0 = time.perf_counter()
    anchors, sc64 = {}, []
    for m, data in zip(ctx.models, ctx.datas, strict=True):
        eps = simulate(SC, data, [{"max_samples": int(floor_reads)}, {"max_samples": 64}],
                       ctx.seeds, **ctx.sim_kw())
        low, s64 = eps.summary(0), eps.summary(1)
        anchors[m] = {"low": low["avg_tokens"], "high": s64["avg_tokens"],
                      "floor_reads": int(floor_reads),
                      "sc64_accuracy": 100.0 * s64["n_correct"] / s64["episodes"]}
        sc64.append(np.asarray(eps.correct[1]))
    baselines: dict[str, Any] = {}
    for key, ccfg in controllers.items():
        controller, points = controller_points(key, ccfg)
        label = str(ccfg.get("label") or controller.name)
        grid_param = str(ccfg.get("grid_param") or "beta")
        configs = [p.config for p in points]
        summaries, episodes = [], []
        for data in ctx.datas:
            eps = simulate(controller, data, configs, ctx.seeds, **ctx.sim_kw())
            arrays = {f: np.asarray(getattr(eps, f))[None] for f in M.FIELDS}
            summaries.append(M.summarize(arrays, eps.stop_reasons)[0])
            episodes.append({f: arrays[f][0] for f in ("correct", "tokens")})
        ctx.baseline_episodes[key] = {f: np.stack([e[f] for e in episodes])
                                      for f in ("correct", "tokens")}
        curve = {
            m: [{"beta": p.beta, "config": p.config, **row}
                for p, row in zip(points, summaries[i], strict=True)]
            for i, m in enumerate(ctx.models)
        }
        scored = M.score_curves(curve, anchors)
        refs = {}
        picks = [len(points) - 1]
        if grid_param == "beta":
            mid = int(np.argmin([abs((p.beta or 0) - 0.5) for p in points]))
            picks = [mid, len(points) - 1]
        for i in dict.fromkeys(picks):
            name = f"{label} {_short(points[i].config, grid_param)}"
            refs[name] = {m: {"accuracy": curve[m][i]["accuracy"],
                              "avg_tokens": curve[m][i]["avg_tokens"]} for m in ctx.models}
        baselines[key] = {"label": label, "method": controller.name, "grid_param": grid_param,
                          "curve": curve, "score": scored["score"],
                          "score_per_model": scored["score_per_model"],
                          "peak_accuracy": scored["peak_accuracy"],
                          "mean_tokens": scored["mean_tokens"], "references": refs}
        log(f"discover: baseline {label}: search score {scored['score']:.2f} "
            f"(peak accuracy {scored['peak_accuracy']:.1f}%)")
    ctx.anchors = anchors
    ctx.sc64_correct = np.stack(sc64)
    ctx.baselines = baselines
    return {"anchors": anchors, "baselines": baselines,
            "seconds": round(time.perf_counter() - t0, 2)}


def restore_baselines(ctx: SearchContext, saved: Mapping[str, Any], sc64: np.ndarray,
                      episodes: Mapping[str, np.ndarray] | None = None) -> None:
    ctx.anchors = dict(saved["anchors"])
    ctx.baselines = dict(saved["baselines"])
    ctx.sc64_correct = np.asarray(sc64)
    ctx.baseline_episodes = {}
    for name, arr in (episodes or {}).items():
        key, f = name.rsplit(".", 1)
        ctx.baseline_episodes.setdefault(key, {})[f] = np.asarray(arr)


def _wrong_agreement(ans: np.ndarray, mask: np.ndarray, correct: np.ndarray) -> float | None:
    """Of all pairs of branches (of one question) giving the same answer, the share (%) whose
    shared answer is wrong."""
    pairs = wrong = 0
    for q in range(ans.shape[0]):
        vals, counts = np.unique(ans[q][mask[q]], return_counts=True)
        p = counts * (counts - 1) // 2
        pairs += int(p.sum())
        wrong += int(p[~correct[q, np.clip(vals, 0, correct.shape[1] - 1)]].sum())
    return round(100.0 * wrong / pairs, 1) if pairs else None


def probe_reliability(ctx: SearchContext, intervals: Sequence[int] = (1, 2, 4, 8, 16)
                      ) -> list[dict[str, Any]]:
    """How far early probe answers can be trusted, per search backbone and probe interval k:
    the share of branches still running at k, how often a branch's k-th probe answer is its
    final answer and is correct, and -- the trap -- when two branches of a question give the
    same k-th probe answer, how often that shared answer is wrong (next to the same figure for
    two agreeing final answers).  Aggregates over the search split only."""
    out = []
    for m, data in zip(ctx.models, ctx.datas, strict=True):
        probes = np.asarray(data.probe_answer)
        finals = np.asarray(data.final_answer)
        n_probes = np.asarray(data.n_probes)
        correct = np.asarray(data.is_correct)
        n_q = probes.shape[0]
        real = np.arange(probes.shape[1])[None, :] < np.asarray(data.n_branches)[:, None]

        row = {"model": m, "k": [],
               "final_wrong_when_agree": _wrong_agreement(finals, real, correct)}
        for k in intervals:
            running = real & (n_probes >= k)
            ans = probes[:, :, k - 1] if k - 1 < probes.shape[2] else np.full(finals.shape, -1)
            has = running & (ans >= 0)
            n = int(has.sum())
            q_idx = np.broadcast_to(np.arange(n_q)[:, None], ans.shape)
            ok = correct[q_idx, np.clip(ans, 0, correct.shape[1] - 1)] & has
            row["k"].append({
                "k": k, "running": round(100.0 * running.sum() / max(1, real.sum()), 1),
                "is_final": round(100.0 * ((ans == finals) & has).sum() / max(1, n), 1),
                "correct": round(100.0 * ok.sum() / max(1, n), 1),
                "wrong_when_agree": _wrong_agreement(ans, has, correct),
            })
        out.append(row)
    return out
