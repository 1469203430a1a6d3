"""Where the shipped things are: the repository's ``conf/`` and ``trajectories/``."""

from __future__ import annotations

from pathlib import Path

from autotts_jax.errors import AutoTTSError

REPO_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = REPO_ROOT / "conf"
TRAJECTORIES = REPO_ROOT / "trajectories"


def store_path(trajectories: str | Path, model: str, benchmark: str) -> Path:
    """``<trajectories>/<model>/<benchmark>.h5``, with a clear error if it is missing."""
    path = Path(trajectories) / model / f"{benchmark}.h5"
    if not path.is_file():
        raise AutoTTSError(
            f"{path}: no trajectories file for model {model!r}, benchmark {benchmark!r}"
        )
    return path
