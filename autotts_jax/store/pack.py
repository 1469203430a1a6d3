"""``autotts-jax pack``: upstream replay JSON (a file or a ``<model>/<benchmark>.json`` tree)
into one HDF5 store per (model, benchmark).

Every input is parsed and validated before the first output is written, so a bad file in a
tree leaves no output at all; each output is written to a temporary name and renamed.
"""

from __future__ import annotations

from pathlib import Path

from autotts_jax.errors import AutoTTSError
from autotts_jax.store.equivalence import EXACT
from autotts_jax.store.hdf5 import write_store
from autotts_jax.store.upstream import UpstreamFile, read_upstream


def discover_inputs(src: Path) -> list[tuple[Path, str, str]]:
    """(json path, model, benchmark) for a file or a ``<model>/<benchmark>.json`` tree."""
    if src.is_file():
        return [(src, src.parent.name, src.stem)]
    if not src.is_dir():
        raise AutoTTSError(f"{src}: no such file or directory")
    found = sorted(src.glob("*/*.json"))
    if not found:
        raise AutoTTSError(f"{src}: no <model>/<benchmark>.json files found")
    return [(p, p.parent.name, p.stem) for p in found]


def output_path(out: Path, model: str, benchmark: str, single: bool) -> Path:
    if single and out.suffix in (".h5", ".hdf5"):
        return out
    return out / model / f"{benchmark}.h5"


def pack(src: str | Path, out: str | Path, *, equivalence: str = EXACT) -> list[Path]:
    """Pack ``src`` into ``out``; returns the written paths.

    ``src`` a file and ``out`` ending in ``.h5``: one file.  Otherwise ``out`` is a directory
    and receives ``<model>/<benchmark>.h5`` for each input.  ``equivalence`` is the answer
    equivalence of :mod:`autotts_jax.store.equivalence` (``exact`` by default).
    """
    src, out = Path(src), Path(out)
    inputs = discover_inputs(src)
    parsed: list[tuple[UpstreamFile, str, str]] = [
        (read_upstream(path), model, bench) for path, model, bench in inputs
    ]
    single = src.is_file()
    return [
        write_store(up, output_path(out, model, bench, single), model, bench,
                    equivalence=equivalence)
        for up, model, bench in parsed
    ]
