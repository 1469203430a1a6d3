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


COMMANDS: dict[str, Callable[[], None]] = {"parity": parity}
