"""Where the shipped things are: the Hydra configs (``conf/``) and the packed stores
(``trajectories/``).

Both live at the top of the repository and are installed inside the package as
``autotts_jax/conf`` and ``autotts_jax/trajectories`` (``pyproject.toml`` maps them), so each
is looked up in two places: inside the installed package first (a wheel, ``pip install .``,
``pip install git+URL``), then at the top of the checkout the package was imported from (an
editable install, or ``PYTHONPATH=checkout``).

The stores can be put elsewhere (a shared file system on a cluster, or a set of your own):
``data.trajectories=DIR`` (``trajectories=DIR`` for ``parity``) on the command line, or the
environment variable ``AUTOTTS_JAX_TRAJECTORIES`` for every command at once.
"""

from __future__ import annotations

import os
from pathlib import Path

from autotts_jax.errors import AutoTTSError

PACKAGE_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = PACKAGE_DIR.parent
TRAJECTORIES_ENV = "AUTOTTS_JAX_TRAJECTORIES"


def _shipped(name: str) -> Path:
    """``autotts_jax/<name>`` when installed there, else ``<checkout>/<name>``; the checkout
    path also when neither exists, so that error messages name the expected place."""
    inside = PACKAGE_DIR / name
    return inside if inside.is_dir() else REPO_ROOT / name


CONF_DIR = _shipped("conf")
SHIPPED_TRAJECTORIES = _shipped("trajectories")


def default_trajectories() -> Path:
    """The stores' directory when the config does not name one: ``$AUTOTTS_JAX_TRAJECTORIES``
    if set (and not empty), else the shipped stores."""
    env = os.environ.get(TRAJECTORIES_ENV, "").strip()
    return Path(env).expanduser() if env else SHIPPED_TRAJECTORIES


TRAJECTORIES = default_trajectories()


def check_trajectories(trajectories: str | Path) -> Path:
    """``trajectories`` as a directory, or the one-line error that says how to point at one."""
    root = Path(trajectories)
    if not root.is_dir():
        raise AutoTTSError(
            f"{root}: trajectories directory not found; pass data.trajectories=DIR "
            f"(trajectories=DIR for parity) or set {TRAJECTORIES_ENV}=DIR"
        )
    return root


def check_conf_dir() -> Path:
    """The Hydra config directory, or the one-line error that says the install is broken
    (Hydra's own message, "Primary config directory not found", names no remedy)."""
    if not (CONF_DIR / "evaluate.yaml").is_file():
        raise AutoTTSError(
            f"{CONF_DIR}: the autotts-jax configs are missing; reinstall the package "
            "(pip install autotts-jax from a wheel, a git URL or a checkout)"
        )
    return CONF_DIR


def store_path(trajectories: str | Path, model: str, benchmark: str) -> Path:
    """``<trajectories>/<model>/<benchmark>.h5``, with a clear error if it is missing."""
    path = check_trajectories(trajectories) / model / f"{benchmark}.h5"
    if not path.is_file():
        raise AutoTTSError(
            f"{path}: no trajectories file for model {model!r}, benchmark {benchmark!r}"
        )
    return path
