"""Whole-process start-up: what a fresh ``autotts-jax`` process costs, without the persistent
compilation cache, with an empty one (cold) and with a filled one (warm), side by side in one
run.

Measures, each as a new process timed from outside (wall seconds):

* ``parity`` on 3 configurations of Qwen3-8B / aime24 (ASC-64, Parallel-Probe-64, CMC
  beta = 0.5; rows of ``shared/reference/aime24_upstream_results.csv``);
* ``evaluate`` of every controller's grid on one store (Qwen3-8B / aime24, 100 seeds);
* ``report`` (all twelve stores, the paper's table and the plots; ``--skip-report`` leaves it
  out);
* the pieces of the start-up: the interpreter, ``import jax``, JAX's backend initialisation,
  ``import scipy.stats``, and importing the Hydra applications.

Each command runs with ``jax_cache=off`` (not ``report``: too long), then with a new empty
cache directory (cold), then ``--warm`` more times on that directory (warm; the best and the
worst are reported).  Writes a
markdown report::

    python benchmarks/startup_benchmark.py --out benchmarks/STARTUP.md
    python benchmarks/startup_benchmark.py --skip-report --warm 1   # a few minutes
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference" / "aime24_upstream_results.csv"
# The upstream code on the same 3-config run, measured side by side with ours on the machine
# these benchmarks were first run on (that code is not part of this repository).
UPSTREAM_PARITY_S = 68.3
THREE = {  # (method, config key that picks the row, its value)
    ("ASCMethod", "max_samples", 64),
    ("Parallel_Probe", "num_chains", 64),
    ("OptimalController", "beta", 0.5),
}


def three_config_csv(reference: Path, out: Path) -> Path:
    """The 3 rows of ``reference`` (Qwen3-8B / aime24) that the parity run re-evaluates."""
    import json

    with reference.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if r["model"] == "Qwen3-8B" and r["dataset"] == "aime24"
                and any(r["method"] == m and json.loads(r["config"]).get(k) == v
                        for m, k, v in THREE)]
        fields = reader.fieldnames or []
    if len(rows) != len(THREE):
        raise SystemExit(f"{reference}: expected {len(THREE)} rows, found {len(rows)}")
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return out


def cli() -> list[str]:
    script = Path(sys.executable).with_name("autotts-jax")
    return [str(script)] if script.exists() else [sys.executable, "-m", "autotts_jax.cli"]


def wall(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Seconds for ``cmd`` as a new process; fails loudly if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds


def median_wall(code: str, env: dict[str, str], n: int = 3) -> float:
    return statistics.median(
        wall([sys.executable, "-c", code], REPO, env) for _ in range(n)
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="write the markdown report here")
    ap.add_argument("--reference", type=Path, default=REFERENCE,
                    help="upstream results CSV with the 3 parity rows (default: %(default)s)")
    ap.add_argument("--warm", type=int, default=2, help="warm runs per command")
    ap.add_argument("--skip-report", action="store_true", help="leave out `report`")
    args = ap.parse_args()

    import jax

    load_start = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="autotts-startup-"))
    try:
        env = {**os.environ, "AUTOTTS_JAX_CACHE_DIR": str(work / "cache")}
        csv_path = three_config_csv(args.reference, work / "three.csv")
        commands = {
            "parity, 3 configs": ["parity", f"reference={csv_path}"],
            "evaluate, one store (5 grids, 100 seeds)": [
                "evaluate", "data.model=Qwen3-8B", "data.benchmark=aime24",
                "output.progress=false", "output.table=false"],
        }
        if not args.skip_report:
            commands["report (12 stores)"] = ["report", "output.progress=false"]
        pieces = {
            "python -c pass": "pass",
            "import jax": "import jax",
            "import jax; jax.devices() (backend init)": "import jax; jax.devices()",
            "import scipy.stats (the engine's CONF table)": "import scipy.stats",
            "import autotts_jax.apps (jax, Hydra, configs)":
                "import autotts_jax.apps",
        }
        piece_s = {name: median_wall(code, env) for name, code in pieces.items()}
        for name, s in piece_s.items():
            print(f"{name}: {s:.2f} s", flush=True)

        results: dict[str, dict] = {}
        for name, argv in commands.items():
            run = 0

            def once(extra: list[str], argv: list[str] = argv) -> float:
                nonlocal run
                run += 1
                out = work / "runs" / f"{argv[0]}{run}"
                target = f"out={out}" if argv[0] == "report" else f"hydra.run.dir={out}"
                return wall([*cli(), *argv, target, *extra], work, env)

            # `report` is long: its uncached run is left out (cold is that plus the writes)
            off = once(["jax_cache=off"]) if argv[0] != "report" else None
            shutil.rmtree(work / "cache", ignore_errors=True)
            cold = once([])
            warm = [once([]) for _ in range(args.warm)]
            results[name] = {"off": off, "cold": cold, "warm": warm}
            print(f"{name}: off {off or 0:.1f} s, cold {cold:.1f} s, warm "
                  f"{', '.join(f'{w:.1f}' for w in warm)} s", flush=True)
        cache_mb = sum(p.stat().st_size for p in (work / "cache").rglob("*")
                       if p.is_file()) / 1e6
    finally:
        shutil.rmtree(work, ignore_errors=True)

    lines = [
        "# Start-up benchmark",
        "",
        f"- host: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; 1-minute load average {load_start:.1f} at the "
        f"start, {os.getloadavg()[0]:.1f} at the end (other work on the machine slows every "
        "figure alike)",
        f"- JAX {jax.__version__}, backend `{jax.default_backend()}`",
        f"- command: `{' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}`",
        "",
        "Each figure is one new process timed from outside (wall seconds, start to exit). "
        "`cache off`: `jax_cache=off`; `cold`: the persistent compilation cache starts empty "
        "(the run fills it); `warm`: later runs on the filled cache (best / worst of "
        f"{args.warm}).",
        "",
        "| command | cache off s | cold s | warm s (best / worst) | off / warm |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        warm, off = r["warm"], r["off"]
        lines.append(f"| {name} | {'-' if off is None else f'{off:.1f}'} | {r['cold']:.1f} "
                     f"| {min(warm):.1f} / {max(warm):.1f} "
                     f"| {'-' if off is None else f'{off / min(warm):.1f}x'} |")
    parity = results["parity, 3 configs"]
    lines += [
        "",
        f"- cache size after the last command's runs: {cache_mb:.1f} MB",
        f"- the 3-config parity run: upstream's code took {UPSTREAM_PARITY_S} s whole-process "
        "(their figure, measured on the 2-core machine these benchmarks were first run on; "
        "upstream's code is not in this repository); ours here: "
        f"{UPSTREAM_PARITY_S / min(parity['warm']):.1f}x faster warm, "
        f"{UPSTREAM_PARITY_S / parity['cold']:.1f}x cold, "
        f"{UPSTREAM_PARITY_S / parity['off']:.1f}x without the cache",
        "",
        "## Pieces of the start-up (median of 3 new processes)",
        "",
        "| what | wall s |",
        "|---|---|",
        *[f"| `{name}` | {s:.2f} |" for name, s in piece_s.items()],
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
