"""Held-out discipline, in code: the discovery loop only ever sees the search split.

* :class:`SearchSplit` is the only way the loop reaches replay data.  It resolves
  ``<trajectories>/<model>/aime24.h5`` and raises :class:`HeldOutAccessError` for any other
  benchmark, so a held-out store cannot be opened through it by mistake.
* Candidate code never runs in the discovery process.  The sandbox child gets a private
  temporary directory holding *copies* of the four search stores under opaque names, and an
  audit hook there refuses to open anything under the real ``trajectories/`` directory (see
  :mod:`autotts_jax.untrusted.worker`): nothing held out is next to what it can read.
* :func:`held_out_guard` additionally makes every Python-level ``open`` of a held-out file in
  the discovery process raise while the loop runs (HDF5 files are opened by the C library and
  are covered by :class:`SearchSplit` instead).

Only :mod:`autotts_jax.explorer.heldout`, run after the loop has finished, reads aime25/hmmt25.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from autotts_jax.errors import AutoTTSError

SEARCH_BENCHMARK = "aime24"
HELD_OUT_BENCHMARKS = ("aime25", "hmmt25")


class HeldOutAccessError(AutoTTSError):
    """Something in the discovery loop tried to reach a held-out store."""


class SearchSplit:
    """A read-only view of a trajectories directory restricted to the search split."""

    def __init__(self, trajectories: str | Path, models: str | Sequence[str] = "all") -> None:
        self.root = Path(trajectories).resolve()
        if not self.root.is_dir():
            raise AutoTTSError(f"{self.root}: trajectories directory not found")
        found = sorted(d.name for d in self.root.iterdir()
                       if (d / f"{SEARCH_BENCHMARK}.h5").is_file())
        if isinstance(models, str):
            models = found if models == "all" else [models]
        models = [str(m) for m in models]
        unknown = [m for m in models if m not in found]
        if unknown:
            raise AutoTTSError(f"search.models: no {SEARCH_BENCHMARK} store for {unknown} under "
                               f"{self.root}; available: {', '.join(found) or 'none'}")
        if not models:
            raise AutoTTSError(f"{self.root}: no <model>/{SEARCH_BENCHMARK}.h5 store found")
        self.models: tuple[str, ...] = tuple(models)
        self.benchmark = SEARCH_BENCHMARK

    def path(self, model: str, benchmark: str = SEARCH_BENCHMARK) -> Path:
        if benchmark != SEARCH_BENCHMARK:
            raise HeldOutAccessError(
                f"the discovery loop may only read the search split ({SEARCH_BENCHMARK}); "
                f"{benchmark!r} is held out"
            )
        if model not in self.models:
            raise AutoTTSError(f"model {model!r} is not in the search split {self.models}")
        return self.root / model / f"{SEARCH_BENCHMARK}.h5"

    def paths(self) -> list[Path]:
        return [self.path(m) for m in self.models]

    def load(self, model: str):
        from autotts_jax.store import load_store

        return load_store(self.path(model))

    def private_copy(self, dest: str | Path) -> list[Path]:
        """Copy the search stores to ``dest/store_<i>.h5`` (opaque names) and return them."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        out = []
        for i, src in enumerate(self.paths()):
            target = dest / f"store_{i}.h5"
            shutil.copyfile(src, target)
            out.append(target)
        return out


def is_held_out_path(path: str | Path) -> bool:
    """Whether ``path`` names a held-out store or replay file (``aime25``/``hmmt25``)."""
    name = Path(str(path)).name
    return any(name in (f"{b}.h5", f"{b}.json") for b in HELD_OUT_BENCHMARKS)


_GUARD = {"active": 0, "installed": False}


def _audit(event: str, args: tuple) -> None:
    if not _GUARD["active"] or event != "open" or not args:
        return
    path = args[0]
    if isinstance(path, str | bytes | Path) and is_held_out_path(
            path.decode() if isinstance(path, bytes) else path):
        raise HeldOutAccessError(f"held-out file {path!r} opened during the discovery loop")


@contextlib.contextmanager
def held_out_guard() -> Iterator[None]:
    """While active, a Python-level ``open`` of a held-out file raises HeldOutAccessError."""
    if not _GUARD["installed"]:
        sys.addaudithook(_audit)
        _GUARD["installed"] = True
    _GUARD["active"] += 1
    try:
        yield
    finally:
        _GUARD["active"] -= 1
