"""Replay throughput on an accelerator (or any JAX backend): episodes per second versus batch
size, compile time and device memory for CMC, Parallel-Probe and ASC, a lane/chunk tuning
pass, and the published 28-config grid on every store.

Imports only the engine, the controllers and the store (no Hydra, no compilation cache), so it
runs from a checkout with ``PYTHONPATH`` set and nothing but JAX, numpy, scipy and h5py
installed; ``benchmarks/gpu_benchmark.sh OUTDIR`` does that and writes
``OUTDIR/RESULTS_GPU.md``.  The grid and timing helpers are those of
``replay_benchmark.py``; the CPU figures it compares with are read from ``RESULTS.md``.

    python benchmarks/gpu_benchmark.py --out RESULTS_GPU.md
    python benchmarks/gpu_benchmark.py --max-episodes 1e5 --grid-stores one   # CPU smoke run
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import replay_benchmark as rb  # noqa: E402  (grid, timed, grid_time, the fresh-process section)

QUESTIONS = 30  # per store
SIZES = (10**4, 10**5, 10**6, 10**7, 3 * 10**7)


def cpu_figures(path: Path = HERE / "RESULTS.md") -> dict[str, float]:
    """From the CPU benchmark's table: per controller, the warm episodes/s of its grid at the
    largest batch, and ``grid8`` the best warm 28-config grid time on Qwen3-8B / aime24."""
    out: dict[str, float] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        m = re.match(r"\| (\w+) \(grid\) \| \d+ \| \d+ \| ([\d,]+) \|.*\| ([\d,]+) \| [\d,]+ \|",
                     line)
        if m:
            out[m.group(1)] = float(m.group(3).replace(",", ""))  # rows grow: last = largest
        m = re.search(r"Qwen3-8B / aime24 again, warm, 3 runs: best ([\d.]+) s", line)
        if m:
            out["grid8"] = float(m.group(1))
    return out


def device_memory() -> dict[str, int] | None:
    """``memory_stats()`` of the first device (None where the backend has none, e.g. CPU)."""
    import jax

    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # some backends raise instead of returning None
        return None
    return stats or None


def gib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**30:.2f}"


def batch(controller, n_episodes: int) -> tuple[list[dict], int]:
    """The controller's grid configs and enough seeds for ``n_episodes`` (configs x seeds x
    30 questions; many configs keep the host-side seed permutations few)."""
    cfgs = rb.grid()[controller]
    return cfgs, max(1, math.ceil(n_episodes / (len(cfgs) * QUESTIONS)))


def tune(controller, data, n_episodes: int, lanes_list, chunks, deadline: float) -> list[dict]:
    """Warm episodes/s of ``controller`` at ``n_episodes`` for each (lanes, chunk_size)."""
    from autotts_jax.engine import simulate

    cfgs, n_seeds = batch(controller, n_episodes)
    rows = []
    for chunk in chunks:
        for lanes in lanes_list:
            if lanes > chunk or (rows and time.monotonic() > deadline):  # one at least
                continue
            def run(lanes=lanes, chunk=chunk):
                return simulate(controller, data, cfgs, range(n_seeds), lanes=lanes,
                                chunk_size=chunk)

            _, first = rb.timed(run)
            _, warm = rb.timed(run)
            n = len(cfgs) * n_seeds * QUESTIONS
            rows.append({"lanes": lanes, "chunk": chunk, "episodes": n, "first": first,
                         "warm": warm, "rate": n / warm})
            print(f"tune {controller.name}: lanes {lanes} chunk {chunk}: {n / warm:,.0f} "
                  f"episodes/s (first call {first:.1f} s)", flush=True)
    return rows


def sweep(controller, data, sizes, lanes: int, chunk: int, max_call_s: float,
          deadline: float) -> list[dict]:
    """First and warm call per batch size; a size is skipped when its warm call would exceed
    ``max_call_s`` at the last measured rate, or its two calls would end after ``deadline``."""
    from autotts_jax.engine import simulate

    rows: list[dict] = []
    for size in sizes:
        cfgs, n_seeds = batch(controller, size)
        n = len(cfgs) * n_seeds * QUESTIONS
        projected = n / rows[-1]["rate"] if rows else 0.0
        if projected > max_call_s:
            rows.append({"episodes": n, "skipped": f"projected {projected:.0f} s a call"})
            break
        if time.monotonic() + 2 * projected > deadline:
            rows.append({"episodes": n, "skipped": "time budget spent"})
            break
        def run(cfgs=cfgs, n_seeds=n_seeds):
            return simulate(controller, data, cfgs, range(n_seeds), lanes=lanes,
                            chunk_size=chunk)

        _, first = rb.timed(run)
        _, warm = rb.timed(run)
        mem = device_memory() or {}
        rows.append({"episodes": n, "configs": len(cfgs), "seeds": n_seeds, "first": first,
                     "warm": warm, "compile": max(first - warm, 0.0), "rate": n / warm,
                     "peak": mem.get("peak_bytes_in_use"), "limit": mem.get("bytes_limit")})
        print(f"{controller.name}: {n:,} episodes: first {first:.2f} s, warm {warm:.2f} s, "
              f"{n / warm:,.0f} episodes/s", flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="write the markdown table here")
    ap.add_argument("--max-episodes", type=float, default=3e7,
                    help="largest batch of the sweep (default 3e7; 1e5 for a CPU smoke run)")
    ap.add_argument("--max-call-s", type=float, default=60.0,
                    help="skip a batch size whose warm call would take longer (default 60)")
    ap.add_argument("--budget-s", type=float, default=390.0,
                    help="start no measurement that would end after this many seconds "
                         "(default 390, so that the run ends within 8 minutes)")
    ap.add_argument("--grid-stores", choices=("all", "one"), default="all",
                    help="the 28-config grid on all 12 stores (default) or on Qwen3-8B / "
                         "aime24 only (a CPU smoke run)")
    args = ap.parse_args()
    t_start = time.monotonic()
    deadline = t_start + args.budget_s

    import jax

    import autotts_jax.engine  # noqa: F401  (float64)
    from autotts_jax.controllers import ASC, CMC, PARALLEL_PROBE
    from autotts_jax.engine.simulate import DEFAULT_CHUNK, DEFAULT_LANES
    from autotts_jax.store import load

    dev = jax.devices()[0]
    d8 = load(rb.TRAJ / "Qwen3-8B" / "aime24.h5")
    max_ep = int(args.max_episodes)
    sizes = [s for s in SIZES if s <= max_ep] or [max_ep]

    # 1. The 28-config grid on every store, in a fresh process with the engine's defaults
    # (bounded work, so it goes first; the sections after it stop at their deadlines).
    pairs = rb._fresh("pairs", *(["--quick"] if args.grid_stores == "one" else []))
    left = deadline - time.monotonic()

    # 2. The lane count and chunk size (the engine's defaults suit a CPU's caches).
    tune_n = min(10**6, max_ep)
    lanes_list = sorted({DEFAULT_LANES, 4096, 16384, 65536})
    chunks = sorted({DEFAULT_CHUNK, 262144})
    if dev.platform == "cpu":  # a smoke run: only the defaults and one alternative
        lanes_list, chunks = [DEFAULT_LANES, 4096], [DEFAULT_CHUNK]
    tuned = tune(CMC, d8, tune_n, lanes_list, chunks, time.monotonic() + 0.3 * left)
    best = max(tuned, key=lambda r: r["rate"])
    lanes, chunk = best["lanes"], best["chunk"]

    # 3. Throughput versus batch size with the best setting, a third of what is left each.
    sweeps = {}
    for i, c in enumerate((CMC, PARALLEL_PROBE, ASC)):
        share = (deadline - time.monotonic()) / (3 - i)
        sweeps[c.name] = sweep(c, d8, sizes, lanes, chunk, args.max_call_s,
                               time.monotonic() + share)
    wall = time.monotonic() - t_start

    cpu = cpu_figures()
    mem = device_memory() or {}
    lines = [
        "# Replay benchmark on an accelerator",
        "",
        f"- device: `{dev.device_kind}` x {jax.device_count()} (backend "
        f"`{jax.default_backend()}`), host {platform.machine()} with {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, JAX {jax.__version__}",
        f"- command: `{' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}`; wall time "
        f"{wall:.0f} s",
        f"- device memory: peak {gib(mem.get('peak_bytes_in_use'))} GiB of "
        f"{gib(mem.get('bytes_limit'))} GiB (`memory_stats()`; n/a where the backend has none)",
        "- CPU figures: `benchmarks/RESULTS.md` (2-core x86, JAX on CPU)",
        "",
        f"## Lanes and chunk size (CMC grid, {tuned[0]['episodes']:,} episodes, warm)",
        "",
        f"Engine defaults: lanes {DEFAULT_LANES}, chunk {DEFAULT_CHUNK}. The best setting "
        "is used below.",
        "",
        "| lanes | chunk | first s | warm s | episodes/s |",
        "|---|---|---|---|---|",
        *[f"| {r['lanes']} | {r['chunk']} | {r['first']:.2f} | {r['warm']:.2f} "
          f"| {r['rate']:,.0f} |" for r in tuned],
        "",
        f"## Throughput versus batch size (Qwen3-8B / aime24; lanes {lanes}, chunk {chunk})",
        "",
        "Batch = the controller's grid configs x seeds x 30 questions. `first s` includes "
        "compilation (CMC's was paid in the tuning pass above); `compile s` = first - warm; "
        "peak memory is the device's peak so far; `x CPU`: against the CPU's warm rate for "
        "the same grid at its largest batch.",
        "",
        "| controller | episodes | configs | seeds | first s | warm s | compile s "
        "| episodes/s | x CPU | peak GiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in sweeps.items():
        for r in rows:
            if "skipped" in r:
                lines.append(f"| {name} | {r['episodes']:,} | skipped ({r['skipped']}) "
                             "| | | | | | | |")
                continue
            ratio = f"{r['rate'] / cpu[name]:.1f}x" if name in cpu else "n/a"
            lines.append(
                f"| {name} | {r['episodes']:,} | {r['configs']} | {r['seeds']} "
                f"| {r['first']:.2f} | {r['warm']:.2f} | {r['compile']:.2f} "
                f"| {r['rate']:,.0f} | {ratio} | {gib(r['peak'])} |")
    lines += ["", "## The published grid per store (28 configs, 100 seeds; engine defaults)",
              ""]
    lines += [
        "A fresh process evaluates the grid on every store in turn (the first store pays "
        "the compilation), then Qwen3-8B / aime24 three more times, warm.",
        "",
        "| model | benchmark | wall s |",
        "|---|---|---|",
        *[f"| {m} | {b} | {t:.2f} |" for m, b, t in pairs["rows"]],
        "",
        f"- {len(pairs['rows'])} store(s), compilation included: {pairs['total']:.1f} s",
        f"- Qwen3-8B / aime24 warm: best {pairs['warm8'][0]:.2f} s"
        + (f" (CPU: {cpu['grid8']:.2f} s, {cpu['grid8'] / pairs['warm8'][0]:.1f}x)"
           if "grid8" in cpu else ""),
    ]
    lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.out:
        sys.path.insert(0, str(HERE.parent))
        from autotts_jax.utils.atomic import atomic_write_text

        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
