"""Hydra entry points of the experiment commands.

Each command is a ``hydra.main`` application over the repository's ``conf/``; the CLI passes
the user's overrides through ``sys.argv``.  User mistakes raise :class:`AutoTTSError`, which is
printed as one ``error:`` line with exit status 2 instead of a traceback.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from autotts_jax.errors import AutoTTSError
from autotts_jax.experiments import config as _config
from autotts_jax.experiments.paths import CONF_DIR, TRAJECTORIES

_config.register()
# Hydra configures logging at INFO; JAX's backend probing ("Unable to initialize backend
# 'tpu'") is noise for our users.
logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
if not OmegaConf.has_resolver("autotts.trajectories"):
    OmegaConf.register_new_resolver("autotts.trajectories", lambda: str(TRAJECTORIES))


def _user_errors(fn: Callable[[DictConfig], int]) -> Callable[[DictConfig], int]:
    @functools.wraps(fn)
    def wrapped(cfg: DictConfig) -> int:
        try:
            return fn(cfg)
        except (AutoTTSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)

    return wrapped


def _app(config_name: str):
    def deco(fn):
        return hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base="1.3")(
            _user_errors(fn)
        )

    return deco


@_app("parity")
def parity(cfg: DictConfig) -> int:
    from autotts_jax.experiments.parity import format_row, run_parity, write_rows

    t0 = time.perf_counter()
    kind, rows, timings = run_parity(
        cfg.reference, cfg.trajectories, range(cfg.seeds), cost_model=cfg.cost_model
    )
    for row in rows:
        print(format_row(kind, row))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    out = Path(cfg.out) / "parity.csv"
    write_rows(out, rows)
    failed = counts.get("MISMATCH", 0) + counts.get("UNSUPPORTED", 0)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"parity: {len(rows)} rows ({summary}) in {time.perf_counter() - t0:.1f}s; "
          f"details in {out}")
    if failed:
        print(f"parity: FAILED ({failed} rows do not match)", file=sys.stderr)
        sys.exit(1)
    return 0


def _plain(cfg: DictConfig) -> dict:
    """The resolved config as plain Python (``None`` where a value is missing)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)


@_app("evaluate")
def evaluate(cfg: DictConfig) -> int:
    from autotts_jax.experiments import evaluate as ev
    from autotts_jax.experiments import results

    t0 = time.perf_counter()
    conf = _plain(cfg)
    jobs = ev.plan(conf)
    rows = ev.run(jobs, conf["evaluation"], progress=conf["output"]["progress"])
    seconds = time.perf_counter() - t0
    paths = results.write(conf["output"]["dir"], conf["output"]["name"], rows,
                          ev.run_meta(conf, seconds))
    if conf["output"]["table"]:
        print(ev.format_table(rows))
    print(f"evaluate: {len(rows)} rows from {len(jobs)} jobs in {seconds:.1f}s; "
          f"wrote {paths[0]} and {paths[1]}")
    return 0


@_app("report")
def report(cfg: DictConfig) -> int:
    from autotts_jax.experiments import evaluate as ev
    from autotts_jax.experiments import report as rep
    from autotts_jax.experiments import results

    t0 = time.perf_counter()
    conf = _plain(cfg)
    if not conf.get("out"):
        raise AutoTTSError("out: give the report directory (out=DIR)")
    if conf["results"]:
        rows = results.read_all(conf["results"])
        print(f"report: {len(rows)} rows from {', '.join(map(str, conf['results']))}")
    else:
        jobs = ev.plan(conf, extra=rep.paper_configs())
        print(f"report: no results given; evaluating {len(jobs)} (model, benchmark, "
              f"controller) jobs on {conf['data']['trajectories']} "
              f"({conf['evaluation']['seeds']} seeds)", flush=True)
        rows = ev.run(jobs, conf["evaluation"], progress=conf["output"]["progress"],
                      keep_episodes=True)
        seconds = time.perf_counter() - t0
        paths = results.write(conf["out"], "results", rows, ev.run_meta(conf, seconds))
        print(f"report: evaluated {len(rows)} rows in {seconds:.1f}s; wrote {paths[0]}")
    t1 = time.perf_counter()
    done = rep.write_report(rows, conf["out"], conf["plots"], conf["evaluation"]["bootstrap"])
    print("Headline: " + rep.headline_text(done["headline"]))
    for r in done["paired"]:
        if r["store"] == "held-out":
            print(f"paired, held-out: {r['a']} − {r['b']}: {r['difference']:+.2f} points "
                  f"[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}], P(>0) {r['p_above_zero']:.3f}")
    counts = ", ".join(f"{n} {s}" for s, n in sorted(done["counts"].items()))
    print(f"paper Table 1: {counts} (of {len(done['table'])} cells)")
    paired_csv = "paired.csv, " if done["paired"] else ""
    print(f"report: wrote {len(done['files'])} files to {conf['out']} "
          f"(main_table.md, main_table.csv, pareto.csv, {paired_csv}scaling_*.png/svg) in "
          f"{time.perf_counter() - t1:.1f}s; total wall time {time.perf_counter() - t0:.1f}s")
    return 0


@_app("compare")
def compare(cfg: DictConfig) -> int:
    from autotts_jax.experiments import compare as cmp
    from autotts_jax.experiments import evaluate as ev
    from autotts_jax.experiments import results
    from autotts_jax.utils.atomic import atomic_write_text

    t0 = time.perf_counter()
    conf = _plain(cfg)
    if not conf.get("out"):
        raise AutoTTSError("out: give the output directory (out=DIR)")
    rows, evaluated, parts = cmp.run(conf, progress=conf["progress"])
    seconds = time.perf_counter() - t0
    out = Path(conf["out"])
    results.write(out, "results", evaluated, ev.run_meta(conf, seconds))
    head = cmp.preamble(rows, conf)
    timing = (f"Wall time {seconds:.1f}s: evaluating {len(evaluated)} configs "
              f"{parts['evaluate']:.1f}s, bootstrap {parts['bootstrap']:.1f}s.")
    atomic_write_text(out / "compare.csv", cmp.to_csv(rows))
    atomic_write_text(out / "compare.md", "# Paired comparisons\n\n" + head + "\n"
                      + cmp.table(rows, markdown=True) + "\n" + timing + "\n")
    print(head)
    print(cmp.table(rows))
    print(f"compare: {len(rows)} rows; {timing} Wrote {out / 'compare.csv'}, "
          f"{out / 'compare.md'} and {out / 'results.csv'} (evaluate's rows, unpaired "
          "intervals)")
    return 0


@_app("discover")
def discover(cfg: DictConfig) -> int:
    from autotts_jax.explorer.loop import discover as run_discover

    run_discover(_plain(cfg))
    return 0


COMMANDS: dict[str, Callable[[], None]] = {
    "parity": parity, "evaluate": evaluate, "report": report, "compare": compare,
    "discover": discover,
}
