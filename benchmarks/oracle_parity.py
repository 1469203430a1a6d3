"""Check the pure-Python oracle against every published upstream number.

* All rows of ``aime24_upstream_results.csv`` (4 models; ASCMethod, ESCMethod, Parallel_Probe,
  OptimalController): ``acc`` must equal at 2 dp and ``T // 3000`` must equal ``avg_cost``.
* The SC@64 rows of ``paper_table1.csv`` (3 datasets x 4 models): accuracy at 1 dp and tokens
  as the paper prints them, ``int(T/3000)/1000`` to 1 dp.

Usage::

    python benchmarks/oracle_parity.py [--reference-dir /work/shared/reference] [--workers 2]

The reference folder defaults to ``shared/reference`` beside the checkout.  Exit status 1 if
any row differs.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from multiprocessing import Pool
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autotts_jax.oracle import (  # noqa: E402
    SC,
    ASCMethod,
    ESCMethod,
    OptimalController,
    Parallel_Probe,
    evaluate_oracle,
)
from autotts_jax.store.hdf5 import read_store_arrays  # noqa: E402

CLASSES = {
    "SC": SC,
    "ASCMethod": ASCMethod,
    "ESCMethod": ESCMethod,
    "Parallel_Probe": Parallel_Probe,
    "OptimalController": OptimalController,
}
_ARRAYS: dict[tuple[str, str], tuple[dict, int]] = {}


def make_controller(method: str, config: dict):
    if method == "OptimalController":
        return OptimalController(config=config)
    return CLASSES[method](**config)


def _run(task: tuple[int, str, str, str, str]) -> tuple[int, dict]:
    """Worker: evaluate one row; arrays are cached per process."""
    i, model, dataset, method, config = task
    key = (model, dataset)
    if key not in _ARRAYS:
        arrays, attrs = read_store_arrays(ROOT / "trajectories" / model / f"{dataset}.h5")
        _ARRAYS[key] = (arrays, int(attrs["probe_freq"]))
    arrays, freq = _ARRAYS[key]
    cfg = json.loads(config)
    t0 = time.perf_counter()
    res = evaluate_oracle(arrays, freq, lambda: make_controller(method, cfg))
    out = {k: res[k] for k in ("acc", "avg_cost_int", "n_correct", "total_tokens", "n_episodes")}
    out["seconds"] = time.perf_counter() - t0
    return i, out


def _weight(method: str, config: str) -> float:
    """Rough run time, to start the slow rows first."""
    cfg = json.loads(config)
    if method == "Parallel_Probe":
        return cfg.get("num_chains", 64)
    if method == "OptimalController":
        return 10 + 60 * cfg.get("beta", 0.5)
    return 1


def _paper_tokens(avg_cost_int: int) -> str:
    return f"{avg_cost_int / 1000:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference-dir", type=Path, default=ROOT.parent / "shared" / "reference")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only-model", default=None, help="restrict to one model (quick check)")
    args = ap.parse_args(argv)

    upstream = list(csv.DictReader(open(args.reference_dir / "aime24_upstream_results.csv")))
    paper = [
        r for r in csv.DictReader(open(args.reference_dir / "paper_table1.csv"))
        if r["method"] == "SC"
    ]
    if args.only_model:
        upstream = [r for r in upstream if r["model"] == args.only_model]
        paper = [r for r in paper if r["model"] == args.only_model]
    rows = [("upstream", r) for r in upstream] + [("paper", r) for r in paper]
    tasks = [
        (i, r["model"], r["dataset"], r["method"], r["config"]) for i, (_, r) in enumerate(rows)
    ]
    tasks.sort(key=lambda t: -_weight(t[3], t[4]))

    t0 = time.perf_counter()
    results: dict[int, dict] = {}
    with Pool(args.workers) as pool:
        for n_done, (i, res) in enumerate(pool.imap_unordered(_run, tasks), 1):
            results[i] = res
            print(f"[{n_done}/{len(tasks)}] {time.perf_counter() - t0:7.1f}s", file=sys.stderr,
                  flush=True)

    n_match = {"upstream": 0, "paper": 0}
    n_rows = {"upstream": 0, "paper": 0}
    mismatches = []
    print(f"{'model':11} {'data':6} {'method':17} {'config':40} {'ours':>18} {'reference':>18}")
    for i, (kind, r) in enumerate(rows):
        res = results[i]
        cfg = json.loads(r["config"])
        short = ",".join(f"{k}={v}" for k, v in cfg.items()
                         if k in ("max_samples", "threshold", "window_size", "num_chains", "beta"))
        if kind == "upstream":
            ours = f"{res['acc']:.2f}/{res['avg_cost_int']}"
            ref = f"{float(r['acc']):.2f}/{int(r['avg_cost'])}"
        else:
            exact = 100 * res["n_correct"] / res["n_episodes"]
            ours = f"{exact:.1f}/{_paper_tokens(res['avg_cost_int'])}k"
            ref = f"{float(r['paper_acc_pct_1dp']):.1f}/{float(r['paper_tokens_k_1dp']):.1f}k"
        ok = ours == ref
        n_rows[kind] += 1
        n_match[kind] += ok
        flag = "" if ok else "  <-- MISMATCH"
        print(f"{r['model']:11} {r['dataset']:6} {r['method']:17} {short:40} {ours:>18} "
              f"{ref:>18}{flag}")
        if not ok:
            mismatches.append((kind, r["model"], r["dataset"], r["method"], short, ours, ref))

    print()
    print(f"aime24 upstream CSV rows matched (acc 2 dp, int cost): "
          f"{n_match['upstream']}/{n_rows['upstream']}")
    print(f"paper Table 1 SC@64 rows matched (acc 1 dp, tokens k 1 dp): "
          f"{n_match['paper']}/{n_rows['paper']}")
    print(f"wall time {time.perf_counter() - t0:.1f}s with {args.workers} workers")
    for m in mismatches:
        print("MISMATCH", *m)
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
