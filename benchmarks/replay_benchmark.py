"""Replay throughput: JAX engine vs the pure-Python oracle, measured side by side in one run.

Measures, per controller: compile time (first call minus a warm call of the same shape), warm
wall time and episodes per second versus batch size (batch grows by adding shuffle seeds and
configs), the published 28-config grid per (model, benchmark) cold and warm, peak RSS, and the
oracle's episodes per second on a subset of the same episodes.  Writes a markdown table with
the hardware, JAX version and backend.

    python benchmarks/replay_benchmark.py --out benchmarks/RESULTS.md
    python benchmarks/replay_benchmark.py --quick        # a smoke run in well under a minute
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

import jax

import autotts_jax.engine  # noqa: F401  (float64)
from autotts_jax.controllers import ASC, CMC, ESC, PARALLEL_PROBE
from autotts_jax.engine import simulate
from autotts_jax.store import load
from autotts_jax.store.hdf5 import read_store_arrays

REPO = Path(__file__).resolve().parents[1]
TRAJ = REPO / "trajectories"
PP = {"T": 40, "prune_patience": 7, "warm_up": 15}
GRID = {
    ASC: [{"max_samples": n, "threshold": 0.95} for n in (1, 4, 8, 16, 32, 64)],
    ESC: [{"max_samples": n, "window_size": 8} for n in (16, 32, 64)],
    PARALLEL_PROBE: [{"num_chains": n, **PP} for n in (1, 4, 8, 16, 32, 64)],
    CMC: [{"beta": b / 10} for b in range(11)],
}
MODELS = ("Qwen3-0.6B", "Qwen3-1.7B", "Qwen3-4B", "Qwen3-8B")
BENCHES = ("aime24", "aime25", "hmmt25")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def grid_time(data) -> float:
    total = 0.0
    for c, cfgs in GRID.items():
        _, t = timed(lambda c=c, cfgs=cfgs: simulate(c, data, cfgs))
        total += t
    return total


def oracle_rate(controller_name: str, cfg: dict, n_seeds: int) -> float:
    """Oracle episodes per second on Qwen3-8B/aime24 (seeds 0..n_seeds-1, all questions)."""
    from autotts_jax.oracle import controllers as oc
    from autotts_jax.oracle.evaluate import evaluate_oracle

    arrays, attrs = read_store_arrays(TRAJ / "Qwen3-8B" / "aime24.h5")
    make = {
        "asc": lambda: oc.ASCMethod(**cfg),
        "esc": lambda: oc.ESCMethod(**cfg),
        "parallel_probe": lambda: oc.Parallel_Probe(**cfg),
        "cmc": lambda: oc.OptimalController(config=cfg),
    }[controller_name]
    _, t = timed(lambda: evaluate_oracle(arrays, int(attrs["probe_freq"]), make,
                                         seeds=range(n_seeds)))
    return n_seeds * 30 / t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="write the markdown table here")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--max-episodes", type=int, default=300_000,
                    help="largest batch per controller (10^6 and more on a GPU)")
    ap.add_argument("--chunk-size", type=int, default=None)
    args = ap.parse_args()
    kw = {"chunk_size": args.chunk_size} if args.chunk_size else {}
    d8 = load(TRAJ / "Qwen3-8B" / "aime24.h5")
    lines: list[str] = []
    dev = jax.devices()[0]
    lines += [
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
        "| controller | configs | seeds | episodes | first call s | warm s | compile s "
        "| episodes/s | oracle episodes/s | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    seeds_list = (10, 100) if args.quick else (100, 1000, 10000)
    for c, cfgs in GRID.items():
        big = cfgs[-1]
        o_rate = oracle_rate(c.name, big, 2 if args.quick else 5)
        for n_seeds in seeds_list:
            for n_cfg in (1, len(cfgs)):
                use = [big] if n_cfg == 1 else cfgs
                n_ep = len(use) * n_seeds * 30
                if n_ep > args.max_episodes:
                    continue
                seeds = range(n_seeds)
                def run(c=c, use=use, seeds=seeds):
                    return simulate(c, d8, use, seeds, **kw)

                _, first = timed(run)
                _, warm = timed(run)
                rate = n_ep / warm
                lines.append(
                    f"| {c.name} {'(largest config)' if n_cfg == 1 else '(grid)'} | {len(use)} "
                    f"| {n_seeds} | {n_ep:,} | {first:.2f} | {warm:.2f} "
                    f"| {max(first - warm, 0):.2f} | {rate:,.0f} "
                    f"| {o_rate:,.0f} | {rate / o_rate:,.0f}x |"
                )
                print(lines[-1], flush=True)
    lines += [
        "",
        "Oracle figures: the pure-Python oracle (upstream-style imperative API, no trace "
        "recording) on the largest config of the grid, measured in this run.",
        "",
        "## The published 28-config grid (ASC x6, ESC x3, Parallel-Probe x6, CMC x11; "
        "100 seeds x 30 questions each)",
        "",
        "| model | benchmark | wall s |",
        "|---|---|---|",
    ]
    t_all0 = time.perf_counter()
    pairs = [("Qwen3-8B", "aime24")] if args.quick else [(m, b) for m in MODELS for b in BENCHES]
    for m, b in pairs:
        data = load(TRAJ / m / f"{b}.h5")
        t = grid_time(data)
        lines.append(f"| {m} | {b} | {t:.2f} |")
        print(lines[-1], flush=True)
    t_all = time.perf_counter() - t_all0
    warm8 = grid_time(d8)
    lines += [
        "",
        f"- all {len(pairs)} pairs, compilation included (the first pair pays it): "
        f"{t_all:.1f} s",
        f"- Qwen3-8B / aime24 again, warm: {warm8:.2f} s",
        f"- peak RSS of this process: {peak_rss_mb():,.0f} MB",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        from autotts_jax.utils.atomic import atomic_write_text

        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
