"""Replay throughput: JAX engine vs the pure-Python oracle, measured side by side in one run.

Measures, per controller: compile time (first call minus a warm call of the same shape), warm
wall time and episodes per second versus batch size (the batch grows by adding shuffle seeds
and configs, up to 10^6 episodes and more), and the oracle's episodes per second on the same
store in the same run; then the published grid per (model, benchmark), warm, and all twelve
stores in a fresh process with compilation included; the cost of float64 (a float32 run of
CMC in a fresh process, and how many episodes change); peak RSS.  Writes a markdown table with
the hardware, JAX version and backend.

    python benchmarks/replay_benchmark.py --out benchmarks/RESULTS.md
    python benchmarks/replay_benchmark.py --quick        # a smoke run in about a minute
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAJ = REPO / "trajectories"
MODELS = ("Qwen3-0.6B", "Qwen3-1.7B", "Qwen3-4B", "Qwen3-8B")
BENCHES = ("aime24", "aime25", "hmmt25")
PP = {"T": 40, "prune_patience": 7, "warm_up": 15}


def grid():
    """The published grid (ASC x6, ESC x3, Parallel-Probe x6, CMC x11: the 26 configs of the
    upstream results file) plus the paper table's SC@64 and ASC-40: 28 configs."""
    from autotts_jax.controllers import ASC, CMC, ESC, PARALLEL_PROBE, SC

    return {
        SC: [{"max_samples": 64}],
        ASC: [{"max_samples": n, "threshold": 0.95} for n in (1, 4, 8, 16, 32, 40, 64)],
        ESC: [{"max_samples": n, "window_size": 8} for n in (16, 32, 64)],
        PARALLEL_PROBE: [{"num_chains": n, **PP} for n in (1, 4, 8, 16, 32, 64)],
        CMC: [{"beta": b / 10} for b in range(11)],
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def grid_time(data) -> float:
    from autotts_jax.engine import simulate

    return sum(timed(lambda c=c, cfgs=cfgs: simulate(c, data, cfgs))[1]
               for c, cfgs in grid().items())


def oracle_rate(controller_name: str, cfg: dict, n_seeds: int) -> float:
    """Oracle episodes per second on Qwen3-8B/aime24 (seeds 0..n_seeds-1, all questions)."""
    from autotts_jax.oracle import controllers as oc
    from autotts_jax.oracle.evaluate import evaluate_oracle
    from autotts_jax.store.hdf5 import read_store_arrays

    arrays, attrs = read_store_arrays(TRAJ / "Qwen3-8B" / "aime24.h5")
    make = {
        "sc": lambda: oc.SC(**cfg),
        "asc": lambda: oc.ASCMethod(**cfg),
        "esc": lambda: oc.ESCMethod(**cfg),
        "parallel_probe": lambda: oc.Parallel_Probe(**cfg),
        "cmc": lambda: oc.OptimalController(config=cfg),
    }[controller_name]
    _, t = timed(lambda: evaluate_oracle(arrays, int(attrs["probe_freq"]), make,
                                         seeds=range(n_seeds)))
    return n_seeds * 30 / t


def section_pairs(quick: bool) -> dict:
    """Fresh process: the grid on every store, compilation included, then one store warm."""
    import autotts_jax.engine  # noqa: F401  (float64)
    from autotts_jax.store import load

    pairs = [("Qwen3-8B", "aime24")] if quick else [(m, b) for m in MODELS for b in BENCHES]
    rows = []
    t0 = time.perf_counter()
    for m, b in pairs:
        rows.append((m, b, grid_time(load(TRAJ / m / f"{b}.h5"))))
    total = time.perf_counter() - t0
    d8 = load(TRAJ / "Qwen3-8B" / "aime24.h5")
    warm = sorted(grid_time(d8) for _ in range(3))
    return {"rows": rows, "total": total, "warm8": warm, "rss": peak_rss_mb()}


def section_precision(mode: str) -> dict:
    """Fresh process: the CMC beta grid, 100 seeds, with float64 (as shipped) or float32."""
    import jax
    import numpy as np

    import autotts_jax.engine  # noqa: F401  (enables float64)

    if mode == "float32":
        jax.config.update("jax_enable_x64", False)
    from autotts_jax.controllers import CMC
    from autotts_jax.engine import simulate
    from autotts_jax.store import load

    if mode == "float32":
        simulate = simulate.__wrapped__  # without the float64 scope simulate enters itself
    data = load(TRAJ / "Qwen3-8B" / "aime24.h5")
    cfgs = grid()[CMC]
    simulate(CMC, data, cfgs)
    best = min(timed(lambda: simulate(CMC, data, cfgs))[1] for _ in range(3))
    eps = simulate(CMC, data, cfgs)
    np.savez(os.environ["BENCH_NPZ"], answer=eps.answer, tokens=eps.tokens)
    return {"warm": best}


def _fresh(section: str, *extra: str, env: dict | None = None) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--section", section, *extra],
                          capture_output=True, text=True, env={**os.environ, **(env or {})},
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"section {section} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="write the markdown table here")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--seeds", default=None,
                    help="comma-separated seed counts of the batch-size sweep "
                         "(default 100,1000,3100: up to 11 x 3100 x 30 = 1.02M CMC episodes)")
    ap.add_argument("--chunk-size", type=int, default=None)
    ap.add_argument("--section", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="float64", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.section == "pairs":
        print(json.dumps(section_pairs(args.quick)))
        return 0
    if args.section == "precision":
        print(json.dumps(section_precision(args.mode)))
        return 0

    import jax
    import numpy as np

    import autotts_jax.engine  # noqa: F401  (float64)
    from autotts_jax.engine import simulate
    from autotts_jax.store import load

    kw = {"chunk_size": args.chunk_size} if args.chunk_size else {}
    d8 = load(TRAJ / "Qwen3-8B" / "aime24.h5")
    dev = jax.devices()[0]
    lines = [
        "# Replay benchmark",
        "",
        f"- host: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        f"- JAX {jax.__version__}, backend `{jax.default_backend()}`, device `{dev.device_kind}`"
        f" x {jax.device_count()}",
        f"- command: `{' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}`",
        "",
        "## Throughput versus batch size (Qwen3-8B / aime24; batch = configs x seeds x 30)",
        "",
        "`first s` is the first call (compilation included), `warm s` a second identical call; "
        "the oracle is the pure-Python reimplementation of upstream's imperative replay, on the "
        "largest config of the grid, measured in this run.",
        "",
        "| controller | configs | seeds | episodes | first s | warm s | compile s "
        "| episodes/s | oracle episodes/s | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    seeds_list = ((10, 100) if args.quick else
                  tuple(int(s) for s in (args.seeds or "100,1000,3100").split(",")))
    for c, cfgs in grid().items():
        big = cfgs[-1]
        o_rate = oracle_rate(c.name, big, 2 if args.quick else 5)
        for n_seeds in seeds_list:
            for use in ([big], cfgs) if len(cfgs) > 1 else ([big],):
                n_ep = len(use) * n_seeds * 30
                def run(c=c, use=use, n_seeds=n_seeds):
                    return simulate(c, d8, use, range(n_seeds), **kw)

                _, first = timed(run)
                _, warm = timed(run)
                rate = n_ep / warm
                lines.append(
                    f"| {c.name} {'(largest config)' if len(use) == 1 else '(grid)'} "
                    f"| {len(use)} | {n_seeds} | {n_ep:,} | {first:.2f} | {warm:.2f} "
                    f"| {max(first - warm, 0):.2f} | {rate:,.0f} | {o_rate:,.0f} "
                    f"| {rate / o_rate:,.0f}x |"
                )
                print(lines[-1], flush=True)

    pairs = _fresh("pairs", *(["--quick"] if args.quick else []))
    n_cfg = sum(len(v) for v in grid().values())
    lines += [
        "",
        f"## The published grid per store ({n_cfg} configs: SC@64, ASC x7, ESC x3, "
        "Parallel-Probe x6, CMC x11; 100 seeds x 30 questions each)",
        "",
        "A fresh process evaluates the grid on every store in turn; the first store pays the "
        "compilation (the four backbones share compiled code), then Qwen3-8B / aime24 runs "
        "again warm, three times.",
        "",
        "| model | benchmark | wall s |",
        "|---|---|---|",
    ]
    lines += [f"| {m} | {b} | {t:.2f} |" for m, b, t in pairs["rows"]]
    lines += [
        "",
        f"- all {len(pairs['rows'])} stores, compilation included: {pairs['total']:.1f} s",
        f"- Qwen3-8B / aime24 again, warm, 3 runs: best {pairs['warm8'][0]:.2f} s, median "
        f"{pairs['warm8'][1]:.2f} s, worst {pairs['warm8'][2]:.2f} s",
        f"- peak RSS of that process: {pairs['rss']:,.0f} MB",
    ]
    print("\n".join(lines[-3:]), flush=True)

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        res = {}
        for mode in ("float64", "float32"):
            npz = os.path.join(tmp, f"{mode}.npz")
            res[mode] = _fresh("precision", "--mode", mode, env={"BENCH_NPZ": npz})
            res[mode]["arrays"] = dict(np.load(npz))
        a64, a32 = res["float64"]["arrays"], res["float32"]["arrays"]
        differ = int(np.sum((a64["answer"] != a32["answer"]) | (a64["tokens"] != a32["tokens"])))
        n = a64["answer"].size
    lines += [
        "",
        "## Float64",
        "",
        "Only CMC's confidence arithmetic is float64 (the beta-CDF table and the EMA compared "
        "against thresholds); every per-slot array is int32.  The CMC beta grid on Qwen3-8B / "
        "aime24 (100 seeds), each in a fresh process, best of 3 warm calls:",
        "",
        "| precision | warm s | episodes that differ from float64 |",
        "|---|---|---|",
        f"| float64 (shipped) | {res['float64']['warm']:.2f} | - |",
        f"| float32 (x64 off) | {res['float32']['warm']:.2f} | {differ:,} of {n:,} |",
        "",
        f"- peak RSS of the main process: {peak_rss_mb():,.0f} MB",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        sys.path.insert(0, str(REPO))
        from autotts_jax.utils.atomic import atomic_write_text

        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
