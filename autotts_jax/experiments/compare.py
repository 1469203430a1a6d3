"""``autotts-jax compare``: paired bootstrap comparisons of controllers on the same stores.

Every listed controller is replayed on every selected store with the same shuffle seeds (one
simulate call per store and controller, as ``evaluate``), keeping the per-episode outcomes; then
the *first* controller is compared with each of the others (``difference = first - other``)
by :mod:`autotts_jax.experiments.paired`, per store, per backbone (pooled over its benchmarks)
and pooled over every store.

A controller is compared at one config, its *point*: ``controller.<name>.betas`` when it holds
exactly one beta, else beta 0.5 for a controller that takes beta natively (CMC, module files) and
beta 1 (the largest grid point: SC@64, ASC-64, ESC-64, PP-64) for the grid baselines.  Its
*curve* (``matched_budget``, ``token_ratio``) is its whole grid plus the point.  The search
score's budget anchors (SC@4 and SC@64 tokens per store) are evaluated too when SC's curve does
not already hold them.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autotts_jax.errors import AutoTTSError
from autotts_jax.experiments import evaluate as ev
from autotts_jax.experiments import paired
from autotts_jax.experiments.metrics import FLOOR_READS
from autotts_jax.experiments.results import config_key
from autotts_jax.store.split import HELD_OUT_BENCHMARKS, SEARCH_BENCHMARK

CAVEAT = (f"A controller picked as the best of many candidates on the search split "
          f"({SEARCH_BENCHMARK}) looks better there than it is: its search-split difference "
          f"is optimistic. The held-out split ({', '.join(HELD_OUT_BENCHMARKS)}) is the test.")
COLUMNS = (
    "metric", "a", "b", "store", "model", "benchmark", "a_config", "b_config", "a_value",
    "b_value", "difference", "ci_low", "ci_high", "p_above_zero", "unpaired_ci_low",
    "unpaired_ci_high", "a_ci_low", "a_ci_high", "b_ci_low", "b_ci_high", "defined",
    "n_stores", "n_questions", "n_seeds", "n_resamples", "bootstrap_seed", "level",
)


@dataclass
class Side:
    """One compared controller: its key (as listed), compared config and jobs."""

    key: str
    point: ev.Point
    jobs: list[ev.Job]


def _controller_config(name: str, group: Mapping[str, Any]) -> dict[str, Any]:
    if name in group:
        return dict(group[name])
    if name.endswith(".py"):
        from omegaconf import OmegaConf

        from autotts_jax.experiments.paths import CONF_DIR

        if not Path(name).is_file():
            raise AutoTTSError(f"controllers: {name}: no such controller module file")
        ccfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "controller" / "module.yaml"))
        return {**ccfg, "name": name, "label": Path(name).stem}
    raise AutoTTSError(f"controllers: unknown controller {name!r}; known: "
                       f"{', '.join(group)}, or a controller module file (.py)")


def point_beta(key: str, ccfg: Mapping[str, Any]) -> float:
    """The beta a controller is compared at (see the module docstring)."""
    betas = ccfg.get("betas")
    if betas is None:
        return 0.5 if str(ccfg.get("grid_param") or "beta") == "beta" else 1.0
    if isinstance(betas, int | float | str):
        betas = [betas]
    if len(betas) != 1:
        raise AutoTTSError(f"controller.{key}.betas: compare takes one beta per controller, "
                           f"got {list(betas)}")
    return ev.check_beta(betas[0], f"controller.{key}")


def plan(conf: Mapping[str, Any]) -> tuple[list[Side], list[ev.Job]]:
    """The compared controllers and the SC anchor jobs (empty when a compared SC has them)."""
    names = [str(n) for n in conf.get("controllers") or []]
    if len(names) < 2:
        raise AutoTTSError("controllers: give two or more (controllers=[cmc,sc])")
    if len(set(names)) != len(names):
        raise AutoTTSError(f"controllers: listed twice: {names}")
    metrics = list(conf.get("metrics") or [])
    unknown = [m for m in metrics if m not in paired.METRICS]
    if not metrics or unknown:
        raise AutoTTSError(f"metrics: choose from {', '.join(paired.METRICS)}; got {metrics}")
    group = conf.get("controller") or {}
    sides = []
    for name in names:
        ccfg = _controller_config(name, group)
        beta = point_beta(name, ccfg)
        _, (point,) = ev.controller_points(name, {**ccfg, "extra": []}, [beta])
        jobs = ev.plan({"controller": {name: {**ccfg, "betas": None}}, "data": conf["data"]},
                       extra=lambda m, d, c, p=point: [p.config])
        sides.append(Side(name, point, jobs))
    anchors: list[ev.Job] = []
    if "matched_budget" in metrics and not any(_has_anchors(s) for s in sides):
        sc = {"name": "sc", "label": "SC", "grid_param": "max_samples",
              "grid": [FLOOR_READS, 64]}
        anchors = ev.plan({"controller": {"sc": sc}, "data": conf["data"]})
    return sides, anchors


def _anchor_configs() -> tuple[str, str]:
    from autotts_jax.controllers import get_controller

    sc = get_controller("sc")
    return (config_key(sc.config({"max_samples": FLOOR_READS})),
            config_key(sc.config({"max_samples": 64})))


def _has_anchors(side: Side) -> bool:
    keys = set(_anchor_configs())
    return all(j.controller.name == "sc" and keys <= {config_key(p.config) for p in j.points}
               for j in side.jobs)


def _store(job: ev.Job) -> str:
    return f"{job.model}/{job.dataset}"


def run(conf: Mapping[str, Any], *, progress: bool = True
        ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, float]]:
    """Evaluate, then compare: ``(comparison rows, evaluate's result rows, seconds spent
    evaluating and bootstrapping)``."""
    sides, anchor_jobs = plan(conf)
    evaluation = dict(conf["evaluation"])
    jobs = [j for s in sides for j in s.jobs] + anchor_jobs
    t0 = time.perf_counter()
    rows = ev.run(jobs, evaluation, progress=progress, keep_episodes=True)
    t1 = time.perf_counter()
    by_job, i = [], 0
    for j in jobs:
        by_job.append(rows[i:i + len(j.points)])
        i += len(j.points)
    curves: list[dict[str, paired.Curve]] = []
    for n, s in enumerate(sides):
        first = sum(len(x.jobs) for x in sides[:n])
        curves.append({_store(j): curve(by_job[first + m], s.point.config)
                       for m, j in enumerate(s.jobs)})
    stores = list(curves[0])
    out = pair_rows(
        {s.key: c for s, c in zip(sides, curves, strict=True)},
        {s.key: {st: config_key(s.point.config) for st in stores} for s in sides},
        [(sides[0].key, other.key) for other in sides[1:]], pools_for(stores, "pooled"),
        evaluation["bootstrap"], metrics=conf["metrics"], anchors=anchors_from_rows(rows))
    for r in rows:
        r.pop("outcomes", None)
    seconds = {"evaluate": t1 - t0, "bootstrap": time.perf_counter() - t1}
    return out, rows, seconds


def curve(rows: Sequence[Mapping[str, Any]], point: Mapping[str, Any]) -> paired.Curve:
    """The curve of one controller on one store from its result rows (each with per-episode
    ``outcomes``, see :func:`evaluate.evaluate_job`); ``point`` is the compared config."""
    keys = [config_key(r["config"]) for r in rows]
    if config_key(point) not in keys:
        raise AutoTTSError(f"config {config_key(point)} was not evaluated")
    return paired.Curve(np.stack([r["outcomes"]["correct"] for r in rows]),
                        np.stack([r["outcomes"]["tokens"] for r in rows]),
                        keys.index(config_key(point)))


def anchors_from_rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Per store, the search score's budget anchors: SC@4's and SC@64's mean tokens."""
    low_key, high_key = _anchor_configs()
    found: dict[str, dict[str, float]] = {}
    for r in rows:
        if r["method"] == "sc" and config_key(r["config"]) in (low_key, high_key):
            side = "low" if config_key(r["config"]) == low_key else "high"
            found.setdefault(f"{r['model']}/{r['dataset']}", {})[side] = float(r["avg_tokens"])
    return {st: a for st, a in found.items() if len(a) == 2}


def pools_for(stores: Sequence[str], name: str) -> dict[str, list[str]]:
    """``<model>/<name>`` over each backbone's stores (when it has several, and not all) and
    ``<name>`` over every store (when there are several)."""
    pools: dict[str, list[str]] = {}
    for st in stores:
        pools.setdefault(f"{st.split('/')[0]}/{name}", []).append(st)
    pools = {p: m for p, m in pools.items() if 1 < len(m) < len(stores)}
    if len(stores) > 1:
        pools[name] = list(stores)
    return pools


def pair_rows(curves: Mapping[str, Mapping[str, paired.Curve]],
              configs: Mapping[str, Mapping[str, str]], pairs: Sequence[tuple[str, str]],
              pools: Mapping[str, Sequence[str]], boot: Mapping[str, Any], *,
              metrics: Sequence[str] = paired.METRICS,
              anchors: Mapping[str, Mapping[str, float]] | None = None
              ) -> list[dict[str, Any]]:
    """The :data:`COLUMNS` rows of each pair: the controllers' curves and compared configs
    (JSON) per store, the pools, the bootstrap settings (samples, seed, level)."""
    out = []
    for r in paired.compare_pairs(curves, pairs, metrics=metrics, anchors=anchors,
                                  pools=pools, samples=int(boot["samples"]),
                                  seed=int(boot["seed"]), level=float(boot["level"])):
        members = pools.get(r["store"], [r["store"]])

        def shared(by_store: Mapping[str, str], members=members) -> str:
            found = {by_store.get(m, "") for m in members}
            return found.pop() if len(found) == 1 else ""

        out.append({
            **r,
            "model": "+".join(dict.fromkeys(m.split("/")[0] for m in members)),
            "benchmark": "+".join(dict.fromkeys(m.split("/")[1] for m in members)),
            "a_config": shared(configs[r["a"]]), "b_config": shared(configs[r["b"]]),
            "n_resamples": int(boot["samples"]), "bootstrap_seed": int(boot["seed"]),
            "level": float(boot["level"]),
        })
    return out


# --------------------------------------------------------------------------- output


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v)
                    for k, v in r.items()})
    return buf.getvalue()


_UNITS = {
    "accuracy": "accuracy difference, percentage points (a − b) at each controller's config",
    "matched_budget": "difference of the search score (accuracy at matched budget, points, "
                      "each controller's whole curve)",
    "token_ratio": "a's tokens to reach b's accuracy / b's tokens − 1 (−0.6 = 60 % fewer; "
                   "inf: a's curve never reaches it)",
}


def _num(v: float, metric: str) -> str:
    if not math.isfinite(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:+.3f}" if metric == "token_ratio" else f"{v:+.2f}"


def _value(v: float, metric: str) -> str:
    if not math.isfinite(v):
        return "inf"
    return f"{v / 1000:.1f}k" if metric == "token_ratio" else f"{v:.2f}"


def _config_text(config_json: str) -> str:
    return " ".join(f"{k}={v}" for k, v in json.loads(config_json).items()
                    if k in ("beta", "max_samples", "num_chains"))


def table(rows: Sequence[Mapping[str, Any]], *, markdown: bool = False,
          configs: bool = True) -> str:
    """The comparison rows as a table per (pair, metric); ``configs`` puts the compared
    configs in each title (off where a label stands for different configs per backbone)."""
    lines = []
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["a"], r["b"], r["metric"]), []).append(r)
    for (a, b, metric), rs in groups.items():
        level = int(round(100 * float(rs[0]["level"])))
        if configs:
            a = f"{a} ({_config_text(rs[0]['a_config'])})"
            b = f"{b} ({_config_text(rs[0]['b_config'])})"
        title = f"{a} vs {b} — {metric}: {_UNITS[metric]}"
        hdr = ["store", "a", "b", "difference", f"paired {level}% CI", "P(>0)",
               f"unpaired {level}% CI", f"a {level}% CI", f"b {level}% CI"]
        if metric == "token_ratio":
            hdr.append("defined")
        body = []
        for r in rs:
            cells = [r["store"], _value(r["a_value"], metric), _value(r["b_value"], metric),
                     _num(r["difference"], metric),
                     f"[{_num(r['ci_low'], metric)}, {_num(r['ci_high'], metric)}]",
                     f"{r['p_above_zero']:.3f}",
                     f"[{_num(r['unpaired_ci_low'], metric)}, "
                     f"{_num(r['unpaired_ci_high'], metric)}]",
                     f"[{_value(r['a_ci_low'], metric)}, {_value(r['a_ci_high'], metric)}]",
                     f"[{_value(r['b_ci_low'], metric)}, {_value(r['b_ci_high'], metric)}]"]
            if metric == "token_ratio":
                cells.append(f"{r['defined']:.3f}")
            body.append(cells)
        if markdown:
            lines += [f"### {title}", "", "| " + " | ".join(hdr) + " |",
                      "|" + "---|" * len(hdr)]
            lines += ["| " + " | ".join(c) + " |" for c in body]
        else:
            widths = [max(len(x) for x in col) for col in zip(hdr, *body, strict=True)]
            lines += [title, "  ".join(h.ljust(w) for h, w in zip(hdr, widths, strict=True))]
            lines += ["  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
                      for cells in body]
        lines.append("")
    return "\n".join(lines)


def preamble(rows: Sequence[Mapping[str, Any]], conf: Mapping[str, Any]) -> str:
    """What the figures are: resamples, seed, scheme, and the search/held-out caveat."""
    boot = conf["evaluation"]["bootstrap"]
    names = [str(n) for n in conf["controllers"]]
    benches = sorted({b for r in rows for b in r["benchmark"].split("+")})
    lines = [
        f"Paired bootstrap: {names[0]} against {', '.join(names[1:])} "
        f"(difference = {names[0]} − other), {int(boot['samples'])} resamples from seed "
        f"{int(boot['seed'])}, {100 * float(boot['level']):g} % percentile intervals; "
        f"{conf['evaluation']['seeds']} shuffle seeds; each resample draws the questions of "
        "every store with replacement and, for each drawn question, its seeds with "
        "replacement, the same draws for both controllers (paired). 'unpaired' gives the "
        "second controller independent draws; 'a'/'b' CI are each controller's own interval. "
        "Pooled rows average the stores' statistics per resample.",
        "",
    ]
    if SEARCH_BENCHMARK in benches:
        lines += ["Search split in these stores: " + CAVEAT, ""]
    else:
        lines += [CAVEAT, ""]
    return "\n".join(lines)
