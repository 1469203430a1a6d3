"""Hydra entry points of the commands configured by Hydra: the experiments and ``discover``.

Each command is a ``hydra.main`` application over the shipped ``conf/``; the CLI passes the
user's overrides through ``sys.argv``.  Before a command simulates anything it turns on JAX's
persistent compilation cache (``jax_cache``) and logs which backend and devices JAX sees
(``device``).  Messages go through :mod:`logging` (logger ``autotts_jax.<command>``), so that
Hydra's per-run log file records them; the console shows the bare text.  User mistakes raise
:class:`AutoTTSError`, which is logged as one ``error:`` line on stderr with exit status 2
instead of a traceback.

It sits above both the experiments and the explorer (it registers the config schemas of both and
starts either), so that neither of them needs to know the other's configuration.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from autotts_jax.errors import AutoTTSError
from autotts_jax.experiments import config as experiments_config
from autotts_jax.experiments.paths import check_conf_dir, default_trajectories
from autotts_jax.explorer import config as explorer_config

experiments_config.register(ConfigStore.instance())
explorer_config.register(ConfigStore.instance())  # discover_schema and the explorer group
if not OmegaConf.has_resolver("autotts.trajectories"):
    OmegaConf.register_new_resolver("autotts.trajectories", lambda: str(default_trajectories()))

DEVICES = ("auto", "cpu", "gpu")


def _requested_gpus() -> str | None:
    """Which launcher setting asked for a GPU (``hydra.launcher.gpus_per_node=1``), if any."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    launcher = HydraConfig.get().get("launcher") or {}
    for key in ("gpus_per_node", "gpus_per_task"):
        value = launcher.get(key)
        if isinstance(value, int) and value > 0:
            return f"hydra.launcher.{key}={value}"
    return None


def setup_runtime(cfg: DictConfig, log: logging.Logger) -> None:
    """Apply ``device`` and ``jax_cache``, then log the backend and devices JAX sees, with one
    warning line when a GPU was asked for (``device=gpu`` or the launcher's GPUs) and JAX runs
    on the CPU (typically: no CUDA-enabled jaxlib in the job's environment)."""
    import jax

    from autotts_jax.utils import jaxcache

    device = str(cfg.get("device", "auto"))
    if device not in DEVICES:
        raise AutoTTSError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"  # worker processes inherit it
        jax.config.update("jax_platforms", "cpu")
    cache = jaxcache.enable(cfg.get("jax_cache"))
    backend = jax.default_backend()
    devices = jax.devices()
    kinds = sorted({d.device_kind for d in devices})
    log.info("jax %s: backend %s, %d device(s) (%s); compilation cache %s",
             jax.__version__, backend, len(devices), ", ".join(kinds), cache or "off")
    asked = "device=gpu" if device == "gpu" else _requested_gpus()
    if asked and backend == "cpu":
        log.warning("warning: a GPU was requested (%s) but JAX runs on the CPU; install a "
                    "CUDA-enabled JAX in this environment (pip install 'autotts-jax[cuda13]')",
                    asked)


def _user_errors(fn: Callable[[DictConfig], int]) -> Callable[[DictConfig], int]:
    @functools.wraps(fn)
    def wrapped(cfg: DictConfig) -> int:
        try:
            return fn(cfg)
        except (AutoTTSError, ValueError) as exc:
            logging.getLogger(f"autotts_jax.{fn.__name__}").error("error: %s", exc)
            sys.exit(2)

    return wrapped


def _app(config_name: str):
    def deco(fn):
        try:
            conf_dir = check_conf_dir()
        except AutoTTSError as exc:  # a broken install: Hydra's own message names no remedy
            message = str(exc)

            def broken() -> int:
                raise AutoTTSError(message)

            return functools.wraps(fn)(broken)
        return hydra.main(config_path=str(conf_dir), config_name=config_name,
                          version_base="1.3")(_user_errors(fn))

    return deco


@_app("parity")
def parity(cfg: DictConfig) -> int:
    from autotts_jax.experiments.parity import format_row, run_parity, write_rows

    log = logging.getLogger("autotts_jax.parity")
    t0 = time.perf_counter()
    setup_runtime(cfg, log)
    kind, rows, timings = run_parity(
        cfg.reference, cfg.trajectories, range(cfg.seeds), cost_model=cfg.cost_model
    )
    for row in rows:
        log.info(format_row(kind, row))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    out = Path(cfg.out) / "parity.csv"
    write_rows(out, rows)
    failed = counts.get("MISMATCH", 0) + counts.get("UNSUPPORTED", 0)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    log.info("parity: %d rows (%s) in %.1fs; details in %s",
             len(rows), summary, time.perf_counter() - t0, out)
    if failed:
        log.error("parity: FAILED (%d rows do not match)", failed)
        sys.exit(1)
    return 0


def _plain(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain Python (``None`` where a value is missing)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)


@_app("evaluate")
def evaluate(cfg: DictConfig) -> int:
    from autotts_jax.experiments import evaluate as ev
    from autotts_jax.experiments import results

    log = logging.getLogger("autotts_jax.evaluate")
    t0 = time.perf_counter()
    setup_runtime(cfg, log)
    conf = _plain(cfg)
    jobs = ev.plan(conf)
    rows = ev.run(jobs, conf["evaluation"], progress=conf["output"]["progress"])
    seconds = time.perf_counter() - t0
    paths = results.write(conf["output"]["dir"], conf["output"]["name"], rows,
                          ev.run_meta(conf, seconds))
    if conf["output"]["table"]:
        log.info(ev.format_table(rows))
    log.info("evaluate: %d rows from %d jobs in %.1fs; wrote %s and %s",
             len(rows), len(jobs), seconds, paths[0], paths[1])
    return 0


@_app("report")
def report(cfg: DictConfig) -> int:
    from autotts_jax.experiments import evaluate as ev
    from autotts_jax.experiments import report as rep
    from autotts_jax.experiments import results

    log = logging.getLogger("autotts_jax.report")
    t0 = time.perf_counter()
    conf = _plain(cfg)
    if not conf.get("out"):
        raise AutoTTSError("out: give the report directory (out=DIR)")
    if conf["results"]:
        rows = results.read_all(conf["results"])
        log.info("report: %d rows from %s", len(rows), ", ".join(map(str, conf["results"])))
    else:
        setup_runtime(cfg, log)
        jobs = ev.plan(conf, extra=rep.paper_configs())
        log.info("report: no results given; evaluating %d (model, benchmark, controller) jobs "
                 "on %s (%d seeds)", len(jobs), conf["data"]["trajectories"],
                 conf["evaluation"]["seeds"])
        rows = ev.run(jobs, conf["evaluation"], progress=conf["output"]["progress"],
                      keep_episodes=True)
        seconds = time.perf_counter() - t0
        paths = results.write(conf["out"], "results", rows, ev.run_meta(conf, seconds))
        log.info("report: evaluated %d rows in %.1fs; wrote %s", len(rows), seconds, paths[0])
    t1 = time.perf_counter()
    done = rep.write_report(rows, conf["out"], conf["plots"], conf["evaluation"]["bootstrap"])
    log.info("Headline: %s", rep.headline_text(done["headline"]))
    for r in done["paired"]:
        if r["store"] == "held-out":
            log.info("paired, held-out: %s − %s: %+.2f points [%+.2f, %+.2f], P(>0) %.3f",
                     r["a"], r["b"], r["difference"], r["ci_low"], r["ci_high"],
                     r["p_above_zero"])
    counts = ", ".join(f"{n} {s}" for s, n in sorted(done["counts"].items()))
    log.info("paper Table 1: %s (of %d cells)", counts, len(done["table"]))
    n_plots = sum(Path(f).suffix in (".png", ".svg") for f in done["files"])
    paired_csv = "paired.csv, " if done["paired"] else ""
    log.info("report: wrote %d files to %s (main_table.md, main_table.csv, pareto.csv, %s"
             "summary.json, %d plot files) in %.1fs; total wall time %.1fs",
             len(done["files"]), conf["out"], paired_csv, n_plots, time.perf_counter() - t1,
             time.perf_counter() - t0)
    return 0


@_app("compare")
def compare(cfg: DictConfig) -> int:
    from autotts_jax.experiments import compare as cmp
    from autotts_jax.experiments import evaluate as ev
    from autotts_jax.experiments import results
    from autotts_jax.utils.atomic import atomic_write_text

    log = logging.getLogger("autotts_jax.compare")
    t0 = time.perf_counter()
    conf = _plain(cfg)
    if not conf.get("out"):
        raise AutoTTSError("out: give the output directory (out=DIR)")
    setup_runtime(cfg, log)
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
    log.info("%s", head)
    log.info("%s", cmp.table(rows))
    log.info("compare: %d rows; %s Wrote %s, %s and %s (evaluate's rows, unpaired intervals)",
             len(rows), timing, out / "compare.csv", out / "compare.md", out / "results.csv")
    return 0


@_app("discover")
def discover(cfg: DictConfig) -> int:
    from autotts_jax.explorer.loop import discover as run_discover

    setup_runtime(cfg, logging.getLogger("autotts_jax.discover"))
    run_discover(_plain(cfg))
    return 0


COMMANDS: dict[str, Callable[[], None]] = {
    "parity": parity, "evaluate": evaluate, "report": report, "compare": compare,
    "discover": discover,
}
