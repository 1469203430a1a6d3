"""Records from the files people hold: Parquet, and the on-disk formats of Hugging Face datasets.

``collect --problems`` and ``import-hf`` read JSON and JSONL themselves (unchanged); everything
else comes through :func:`read_table`, which accepts

* a ``.parquet`` file, or an ``.arrow`` file (Arrow IPC stream or file, as ``datasets`` writes);
* a ``Dataset.save_to_disk`` folder (``state.json`` and its ``data-*.arrow`` files) or a
  ``DatasetDict.save_to_disk`` folder (``dataset_dict.json``, one sub-folder per split);
* a dataset repository as the hub tools leave it: the hub cache entry
  (``~/.cache/huggingface/hub/datasets--<owner>--<name>``, whose ``refs/main`` names the
  snapshot to read), one of its ``snapshots/<revision>`` folders, or a ``--local-dir`` copy; its
  ``.parquet``, ``.arrow``, ``.jsonl`` and ``.json`` files are grouped into splits by the hub's
  naming convention (``data/test-00000-of-00001.parquet``, ``test.jsonl``, ``test/...``; other
  files are ``train``).  A repository with several configurations is read by passing the
  configuration's own folder.

Everything is read from disk with pyarrow (the ``[hf]`` extra); nothing here uses the network.
A folder with several splits needs ``--split``.  Each record comes with the data file it was
read from and its row, so that a bad value is reported as ``<file>: row <n>: ...``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autotts_jax.errors import AutoTTSError

JsonReader = Callable[[Path, bytes], list[tuple[str, object]]]

_DATA_SUFFIXES = (".parquet", ".arrow", ".jsonl", ".json")
_SPLIT_WORDS = ("train", "test", "validation", "valid", "dev", "eval")


@dataclass(frozen=True)
class Table:
    """Records of one dataset (or one split of it), in order."""

    name: str  # dataset name, e.g. the folder name or 'MATH-500' from 'datasets--o--MATH-500'
    records: list[tuple[Path, str, object]]  # (data file, 'row n' or 'line n', record)
    sha256: str  # of the data files read (paths relative to the dataset, and their bytes)


def is_table(path: Path) -> bool:
    """Whether ``path`` is read by :func:`read_table` (JSON and JSONL files are not)."""
    return path.is_dir() or path.suffix in (".parquet", ".arrow")


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.ipc
        import pyarrow.parquet
    except ImportError:
        raise AutoTTSError(
            "reading Parquet and Hugging Face datasets needs pyarrow: "
            "pip install 'autotts-jax[hf]'"
        ) from None
    return pyarrow


def _rows(path: Path) -> list[tuple[str, object]]:
    pa = _pyarrow()
    try:
        if path.suffix == ".parquet":
            table = pa.parquet.read_table(path)
        else:
            try:
                with pa.memory_map(str(path)) as source:
                    table = pa.ipc.open_stream(source).read_all()
            except pa.ArrowInvalid:
                with pa.memory_map(str(path)) as source:
                    table = pa.ipc.open_file(source).read_all()
    except (pa.ArrowException, OSError) as exc:
        kind = "Parquet" if path.suffix == ".parquet" else "Arrow"
        raise AutoTTSError(f"{path}: not a readable {kind} file ({_one_line(exc)})") from None
    return [(f"row {i}", rec) for i, rec in enumerate(table.to_pylist())]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _load_json(path: Path, what: str) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AutoTTSError(f"{path}: not a readable {what} ({_one_line(exc)})") from None


def _saved_dataset(folder: Path) -> list[Path]:
    """The data files of a ``Dataset.save_to_disk`` folder, in order."""
    state = _load_json(folder / "state.json", "datasets state.json")
    files = state.get("_data_files") if isinstance(state, dict) else None
    if not isinstance(files, list) or not all(
        isinstance(f, dict) and isinstance(f.get("filename"), str) for f in files
    ):
        raise AutoTTSError(f"{folder / 'state.json'}: _data_files: expected a list of filenames")
    paths = [folder / f["filename"] for f in files]
    for p in paths:
        if not p.is_file():
            raise AutoTTSError(f"{p}: no such file (listed in {folder / 'state.json'})")
    return paths


def _pick_split(where: Path, splits: dict[str, object], split: str | None) -> str:
    if split is not None:
        if split not in splits:
            raise AutoTTSError(f"{where}: no split {split!r}; it has {', '.join(splits)}")
        return split
    if len(splits) != 1:
        raise AutoTTSError(f"{where}: several splits ({', '.join(splits)}); pass --split")
    return next(iter(splits))


def _split_of(rel: Path) -> str:
    """The hub's convention: a split word in the file name, else in a folder name, else train."""
    word = re.split(r"[-_.]", rel.name, maxsplit=1)[0].lower()
    if word in _SPLIT_WORDS:
        return word
    for part in reversed(rel.parts[:-1]):
        if part.lower() in _SPLIT_WORDS:
            return part.lower()
    return "train"


def _snapshot(folder: Path) -> Path:
    """The snapshot folder of a hub cache entry: the one ``refs/main`` names, else the only one."""
    ref = folder / "refs" / "main"
    if ref.is_file():
        revision = ref.read_text(encoding="utf-8").strip()
        chosen = folder / "snapshots" / revision
        if not chosen.is_dir():
            raise AutoTTSError(f"{ref}: names snapshot {revision!r}, which is not in snapshots/")
        return chosen
    snapshots = sorted(p for p in (folder / "snapshots").iterdir() if p.is_dir())
    if len(snapshots) != 1:
        raise AutoTTSError(
            f"{folder}: {len(snapshots)} snapshots and no refs/main: pass one snapshots/<rev>"
        )
    return snapshots[0]


def _repository_files(folder: Path, split: str | None) -> list[Path]:
    found = sorted(
        p for p in folder.rglob("*")
        if p.suffix in _DATA_SUFFIXES and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not found:
        raise AutoTTSError(
            f"{folder}: no data files ({', '.join(_DATA_SUFFIXES)}) and no datasets "
            "state.json or dataset_dict.json"
        )
    by_split: dict[str, list[Path]] = {}
    for p in found:
        by_split.setdefault(_split_of(p.relative_to(folder)), []).append(p)
    return by_split[_pick_split(folder, by_split, split)]


def _dataset_name(path: Path) -> str:
    if path.parent.name == "snapshots" and path.parent.parent.name.startswith("datasets--"):
        path = path.parent.parent
    if path.name.startswith("datasets--"):
        return path.name.split("--", 2)[-1]
    return path.stem if path.is_file() else path.name


def _data_files(path: Path, split: str | None) -> tuple[Path, list[Path]]:
    """(the folder file names are relative to, the data files to read)."""
    if path.is_file():
        return path.parent, [path]
    if (path / "dataset_dict.json").is_file():
        info = _load_json(path / "dataset_dict.json", "datasets dataset_dict.json")
        splits = info.get("splits") if isinstance(info, dict) else None
        if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
            raise AutoTTSError(f"{path / 'dataset_dict.json'}: splits: expected a list of names")
        chosen = _pick_split(path, dict.fromkeys(splits), split)
        return path, _saved_dataset(path / chosen)
    if (path / "state.json").is_file():
        return path, _saved_dataset(path)
    if (path / "snapshots").is_dir():
        snap = _snapshot(path)
        return snap, _repository_files(snap, split)
    return path, _repository_files(path, split)


def read_table(path: Path, json_reader: JsonReader, *, split: str | None = None) -> Table:
    """Every record of the dataset at ``path`` (see the module docstring for what it may be).

    JSON and JSONL data files inside a repository are read by ``json_reader`` (the caller's
    own reader, so that they mean what they mean elsewhere).
    """
    if not path.exists():
        raise AutoTTSError(f"{path}: no such file or directory")
    root, files = _data_files(path, split)
    digest = hashlib.sha256()
    records: list[tuple[Path, str, object]] = []
    for f in files:
        blob = f.read_bytes()
        digest.update(f.relative_to(root).as_posix().encode("utf-8") + b"\0")
        digest.update(hashlib.sha256(blob).digest())
        rows = _rows(f) if f.suffix in (".parquet", ".arrow") else json_reader(f, blob)
        records.extend((f, where, rec) for where, rec in rows)
    if not records:
        raise AutoTTSError(f"{path}: no records")
    return Table(_dataset_name(path), records, digest.hexdigest())
