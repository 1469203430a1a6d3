"""The held-out evaluation of a discovered controller -- run only after the loop has finished.

The selected controller (``DIR/best_controller.py``) and the baselines are evaluated on the
held-out split (aime25 and hmmt25, every search backbone) with the ``evaluation`` settings
(100 shuffle seeds, as upstream), through the same code as ``autotts-jax evaluate``.  Written
to ``DIR/heldout/``:

* ``results.csv`` / ``results.json`` -- the tidy rows, readable by ``autotts-jax report``;
* everything ``report`` writes from them (``main_table.md``/``.csv``, ``pareto.csv``,
  ``scaling_*.png``/``.svg``, ``summary.json``), the discovered controller drawn beside the
  baselines in the plots;
* ``heldout_table.md`` / ``.csv`` -- the discovered controller at beta 0.5 and 1 next to CMC
  and each baseline at its largest budget, per backbone and held-out benchmark, and every
  method's held-out score (accuracy at matched budget, as on the search split);
* ``discovered_paired.csv`` and a section of ``heldout_table.md`` -- paired bootstrap
  intervals of the discovered controller against CMC (beta 0.5) and SC@64: accuracy
  difference, matched-budget score difference and token ratio, per store, per backbone and
  over the split, with the number of candidates it was selected from.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autotts_jax.errors import AutoTTSError
from autotts_jax.experiments import metrics as M
from autotts_jax.store.split import HELD_OUT_BENCHMARKS
from autotts_jax.utils.atomic import atomic_write_text

DISCOVERED = "discovered"


def _headline_rows(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, float]]:
    """(method, label, beta) of the table's rows: beta-native methods at 0.5 and 1, grid
    baselines at their largest grid point (beta 1)."""
    out: list[tuple[str, str, float]] = []
    seen = set()
    for r in rows:
        key = (r["method"], r.get("label") or r["method"])
        if key in seen:
            continue
        seen.add(key)
        native = "beta" in (r.get("config") or {})
        for b in ((0.5, 1.0) if native else (1.0,)):
            out.append((key[0], key[1], b))
    order = {"sc": 0, "asc": 1, "esc": 2, "parallel_probe": 3, "cmc": 4, DISCOVERED: 5}
    out.sort(key=lambda x: (order.get(x[0], 4.5), x[2]))
    return out


def _find(rows, model, dataset, method, beta):
    for r in rows:
        if (r["model"], r["dataset"], r["method"]) == (model, dataset, method) and (
                r.get("beta") is not None and abs(float(r["beta"]) - beta) < 1e-9):
            return r
    return None


def heldout_scores(rows: Sequence[Mapping[str, Any]], floor_reads: int = M.FLOOR_READS
                   ) -> dict[str, float]:
    """Per method: accuracy at matched budget on the held-out stores, as on the search split
    (needs SC@floor_reads and SC@64 rows)."""
    stores = sorted({(r["model"], r["dataset"]) for r in rows})
    anchors = {}
    for m, d in stores:
        sc = {int(r["config"]["max_samples"]): r for r in rows
              if (r["model"], r["dataset"], r["method"]) == (m, d, "sc")}
        if floor_reads in sc and 64 in sc:
            anchors[(m, d)] = {"low": sc[floor_reads]["avg_tokens"],
                               "high": sc[64]["avg_tokens"]}
    if not anchors:
        return {}
    scores: dict[str, list[float]] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        for key, anchor in anchors.items():
            pts = [(float(r["avg_tokens"]), float(r["accuracy"])) for r in rows
                   if (r["model"], r["dataset"], r["method"]) == (*key, method)]
            if pts:
                scores.setdefault(method, []).append(
                    float(np.mean([M.frontier(pts, t) for t in M.budgets(anchor)])))
    return {k: round(float(np.mean(v)), 3) for k, v in scores.items()}


def heldout_table(rows: Sequence[Mapping[str, Any]]) -> tuple[str, str, list[dict]]:
    """(markdown, csv, table rows) of the discovered controller against the baselines."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    datasets = [d for d in HELD_OUT_BENCHMARKS if any(r["dataset"] == d for r in rows)]
    heads = _headline_rows(rows)
    table = []
    for m in [*models, "mean"]:
        for method, label, beta in heads:
            row: dict[str, Any] = {"model": m, "method": method, "label": label, "beta": beta}
            accs, toks = [], []
            for d in datasets:
                cells = ([_find(rows, mm, d, method, beta) for mm in models] if m == "mean"
                         else [_find(rows, m, d, method, beta)])
                if any(c is None for c in cells):
                    continue
                row[f"{d}_accuracy"] = float(np.mean([c["accuracy"] for c in cells]))
                row[f"{d}_tokens"] = float(np.mean([c["avg_tokens"] for c in cells]))
                accs.append(row[f"{d}_accuracy"])
                toks.append(row[f"{d}_tokens"])
            if len(accs) == len(datasets) and accs:
                row["heldout_accuracy"] = float(np.mean(accs))
                row["heldout_tokens"] = float(np.mean(toks))
                table.append(row)
    scores = heldout_scores(rows)
    md = ["# Discovered controller vs baselines on the held-out split", "",
          f"Accuracy (%) and average total tokens per question, {', '.join(datasets)}; "
          "'mean' rows average the backbones.  Baselines at their largest budget "
          "(beta 1 = the last grid point), beta-native controllers at beta 0.5 and 1.", ""]
    hdr = ["Model", "Method", "beta"]
    for d in datasets:
        hdr += [f"{d} acc", f"{d} tokens"]
    hdr += ["held-out acc", "held-out tokens"]
    md += ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for t in table:
        cells = [t["model"], t["label"], f"{t['beta']:g}"]
        for d in datasets:
            cells += [f"{t[f'{d}_accuracy']:.1f}", f"{t[f'{d}_tokens'] / 1000:.1f}k"]
        cells += [f"{t['heldout_accuracy']:.1f}", f"{t['heldout_tokens'] / 1000:.1f}k"]
        md.append("| " + " | ".join(cells) + " |")
    if scores:
        labels = {r["method"]: r.get("label") or r["method"] for r in rows}
        md += ["", "Held-out score (accuracy at matched budget over each method's whole curve, "
               f"budgets log-spaced from SC@{M.FLOOR_READS} to SC@64 per store, mean over "
               "stores):", ""]
        for method, s in sorted(scores.items(), key=lambda kv: -kv[1]):
            md.append(f"- {labels.get(method, method)}: {s:.2f}")
    cols = ["model", "method", "label", "beta"]
    for d in datasets:
        cols += [f"{d}_accuracy", f"{d}_tokens"]
    cols += ["heldout_accuracy", "heldout_tokens"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for t in table:
        w.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in t.items()})
    return "\n".join(md) + "\n", buf.getvalue(), table


def paired_rows(rows: Sequence[Mapping[str, Any]], bootstrap: Mapping[str, Any]
                ) -> list[dict[str, Any]]:
    """The discovered controller (beta 0.5, its whole curve) against CMC (beta 0.5) and SC@64:
    paired bootstrap rows (:mod:`autotts_jax.experiments.compare` columns) per store, per
    backbone and over the held-out split.  Needs the rows' per-episode ``outcomes``."""
    from autotts_jax.experiments import compare

    def is_point(r: Mapping[str, Any]) -> bool:
        if r["method"] == "sc":
            return int(r["config"].get("max_samples", 0)) == 64
        return r.get("beta") is not None and abs(float(r["beta"]) - 0.5) < 1e-9

    by: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    for r in rows:
        if "outcomes" in r and r["method"] in (DISCOVERED, "cmc", "sc"):
            by.setdefault(r["method"], {}).setdefault(f"{r['model']}/{r['dataset']}",
                                                      []).append(r)
    curves: dict[str, dict[str, Any]] = {}
    configs: dict[str, dict[str, str]] = {}
    for method, stores in by.items():
        for store, rs in stores.items():
            point = next((r for r in rs if is_point(r)), None)
            if point is not None:
                curves.setdefault(method, {})[store] = compare.curve(rs, point["config"])
                configs.setdefault(method, {})[store] = json.dumps(point["config"],
                                                                   sort_keys=True)
    pairs = [(DISCOVERED, m) for m in ("cmc", "sc") if DISCOVERED in curves and m in curves]
    if not pairs:
        return []
    return compare.pair_rows(curves, configs, pairs,
                             compare.pools_for(list(curves[DISCOVERED]), "held-out"),
                             bootstrap, anchors=compare.anchors_from_rows(rows))


def _candidates_tried(run_dir: Path) -> int | None:
    """How many candidates the run's history holds (``index.jsonl``, one line each)."""
    index = run_dir / "index.jsonl"
    if not index.is_file():
        return None
    return sum(1 for line in index.read_text(encoding="utf-8").splitlines() if line.strip())


def paired_md(prows: Sequence[Mapping[str, Any]], tried: int | None) -> str:
    """The held-out table's section on the paired comparisons."""
    from autotts_jax.experiments import compare

    if not prows:
        return ""
    r0 = prows[0]
    many = f"the best of {tried} candidates" if tried else "the best candidate"
    return "\n".join([
        "", "## Paired comparisons on the held-out split", "",
        f"The discovered controller is {many} on the search split, so its search-split "
        "score is optimistic; this held-out split is the test. Differences are discovered − "
        f"other on the same (seed, question) episodes: {r0['n_resamples']} paired bootstrap "
        f"resamples from seed {r0['bootstrap_seed']}, {100 * float(r0['level']):g} % "
        "percentile intervals (see `autotts-jax compare`). Also in "
        "`discovered_paired.csv`.", "",
        compare.table(prows, markdown=True),
    ])


def evaluate_heldout(conf: Mapping[str, Any], best_path: Path, best_id: str, log=print
                     ) -> dict[str, Any]:
    """Evaluate ``best_path`` and the baselines on the held-out split; write ``heldout/``."""
    from autotts_jax.engine.simulate import Episodes
    from autotts_jax.experiments import compare, results
    from autotts_jax.experiments import evaluate as ev
    from autotts_jax.experiments import report as rep
    from autotts_jax.store import bucket, load_store
    from autotts_jax.store.split import SearchSplit
    from autotts_jax.untrusted.sandbox import limits_of, replay_untrusted

    t0 = time.perf_counter()
    held = conf["heldout"]
    betas = [float(b) for b in held["betas"]]
    out = Path(conf["out"]) / "heldout"
    models = list(SearchSplit(conf["trajectories"], conf["search"]["models"]).models)
    baselines = {}
    for key, ccfg in (conf.get("controller") or {}).items():
        ccfg = dict(ccfg)
        if str(ccfg.get("grid_param") or "beta") == "beta":
            ccfg["betas"] = betas
        baselines[key] = ccfg
    data = {"model": models, "benchmark": list(HELD_OUT_BENCHMARKS),
            "trajectories": conf["trajectories"]}
    label = f"Discovered ({best_id})"
    points = [ev.Point({"beta": b}, b) for b in betas]
    jobs = ev.plan({"controller": baselines, "data": data},
                   extra=rep.paper_configs()) if baselines else []
    stores = ev.select_stores(data)
    log(f"discover: held-out evaluation: {len(jobs) + len(stores)} (model, benchmark, "
        f"controller) jobs, {conf['evaluation']['seeds']} seeds")
    progress = bool(held.get("progress", False))
    evaluation = dict(conf["evaluation"])
    seeds, boot = ev._check_evaluation(evaluation)
    rows = ev.run(jobs, evaluation, progress=progress, keep_episodes=True) if jobs else []
    # The discovered controller is candidate code: it runs in the sandbox, on stripped
    # copies of the held-out stores (given to this step only), and is scored here.
    loaded = [load_store(path) for _, _, path in stores]
    t_mine = time.perf_counter()
    outcome = replay_untrusted(
        best_path.read_text(encoding="utf-8"), [s.data for s in loaded], betas=betas,
        seeds=seeds, cost_model=str(evaluation["cost_model"]),
        pool_size=max(bucket(s.meta.n_final_vocab, 128) for s in loaded),
        limits=limits_of(conf))
    if not outcome.ok:
        raise AutoTTSError(f"discover: the best controller failed on the held-out split "
                           f"({outcome.stage}): {outcome.reason[:500]}")
    wall = (time.perf_counter() - t_mine) / max(1, len(stores))
    for i, (model, dataset, path) in enumerate(stores):
        eps = Episodes(**{f: outcome.arrays[f][i] for f in outcome.arrays},
                       stop_reasons=tuple(outcome.stop_reasons))
        job = ev.Job(model, dataset, path, None, label, DISCOVERED, list(points))
        rows += ev.job_rows(job, eps, seeds, boot, str(evaluation["cost_model"]), wall,
                            method=DISCOVERED, keep_episodes=True)
    seconds = time.perf_counter() - t0
    meta = {"discovered": best_id, "best_controller": str(best_path), "wall_time_s":
            round(seconds, 2), "seeds": int(conf["evaluation"]["seeds"]),
            "cost_model": str(conf["evaluation"]["cost_model"]),
            "bootstrap": dict(conf["evaluation"]["bootstrap"])}
    files = [str(p) for p in results.write(out, "results", rows, meta)]
    try:
        done = rep.write_report(rows, out, conf.get("plots") or {}, evaluation["bootstrap"])
        files += [str(f) for f in done["files"]]
    except AutoTTSError as exc:  # e.g. matplotlib missing: the tables still get written
        log(f"discover: report files skipped: {exc}")
    md, csv_text, table = heldout_table(rows)
    prows = paired_rows(rows, evaluation["bootstrap"])
    md += paired_md(prows, _candidates_tried(Path(conf["out"])))
    if prows:
        files.append(str(atomic_write_text(out / "discovered_paired.csv",
                                           compare.to_csv(prows))))
    files.append(str(atomic_write_text(out / "heldout_table.md", md)))
    files.append(str(atomic_write_text(out / "heldout_table.csv", csv_text)))
    log(md)
    log(f"discover: held-out evaluation in {seconds:.1f}s; wrote {len(files)} files to {out}")
    return {"dir": str(out), "seconds": round(seconds, 2), "scores": heldout_scores(rows),
            "table": table}
