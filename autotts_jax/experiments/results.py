"""The tidy results file that ``evaluate`` writes and ``report`` reads.

One row per (model, dataset, method, config); the same rows as CSV (``config`` as JSON, an
empty ``beta`` for configs off the beta grid) and as JSON
(``{"format": "autotts-jax results", "version": 1, "columns": [...], "rows": [...]}``).

Columns:

* ``model``, ``dataset``; ``method`` (canonical controller name: sc, asc, esc,
  parallel_probe, cmc), ``upstream`` (the upstream class name), ``label`` (display name);
* ``config``: the full controller config (defaults filled in); ``beta``: the beta it was
  evaluated at, or empty;
* ``accuracy`` (percent, mean over seeds x questions), ``acc_ci_low`` / ``acc_ci_high``
  (bootstrap interval over questions, percent) at ``ci_level`` with ``bootstrap_samples``
  resamples from ``bootstrap_seed``;
* ``avg_tokens`` (mean total tokens per episode), ``avg_seq_tokens`` (mean sequential,
  critical-path tokens per episode);
* ``episodes`` (= ``seeds`` x questions), ``seeds``, ``n_correct``, ``total_tokens`` (exact
  integers, so published figures can be re-derived: upstream prints ``total_tokens //
  episodes``);
* ``cost_model``; ``wall_time_s``: wall time of the one simulate call that evaluated this
  row's (model, dataset, method) group, compilation included.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from autotts_jax.errors import AutoTTSError

FORMAT = "autotts-jax results"
VERSION = 1

_STR = ("model", "dataset", "method", "upstream", "label", "cost_model")
_INT = ("episodes", "seeds", "n_correct", "total_tokens", "bootstrap_samples", "bootstrap_seed")
_FLOAT = ("accuracy", "acc_ci_low", "acc_ci_high", "avg_tokens", "avg_seq_tokens", "ci_level",
          "wall_time_s")
COLUMNS = (
    "model", "dataset", "method", "upstream", "label", "config", "beta",
    "accuracy", "acc_ci_low", "acc_ci_high", "avg_tokens", "avg_seq_tokens",
    "episodes", "seeds", "n_correct", "total_tokens",
    "ci_level", "bootstrap_samples", "bootstrap_seed", "cost_model", "wall_time_s",
)
# What a results file must have; the other columns are filled with defaults when absent.
REQUIRED = ("model", "dataset", "method", "config", "accuracy", "avg_tokens", "episodes")


def config_key(config: Mapping[str, Any]) -> str:
    """Canonical JSON of a config (sorted keys): equal configs give equal keys."""
    return json.dumps(dict(config), sort_keys=True)


def match_key(method: str, config: Mapping[str, Any]) -> tuple:
    """Config identity for matching: numbers compare by value (``64 == 64.0``)."""
    def norm(v):
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v

    return (method, tuple(sorted((k, norm(v)) for k, v in config.items())))


def ordered(values: Sequence[str], preferred: Sequence[str]) -> list[str]:
    """``values`` without repeats: the ``preferred`` ones first in that order, then the rest
    in order of appearance (tables and plots list backbones and benchmarks this way)."""
    seen = list(dict.fromkeys(values))
    return [v for v in preferred if v in seen] + [v for v in seen if v not in preferred]


def _fail(where: str, msg: str) -> AutoTTSError:
    return AutoTTSError(f"{where}: {msg}")


def check_row(raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validate one row (from CSV strings or JSON values) and return it typed."""
    missing = [c for c in REQUIRED if c not in raw or raw[c] in (None, "")]
    if missing:
        raise _fail(where, f"missing {', '.join(missing)}")
    row: dict[str, Any] = {}
    for c in _STR:
        row[c] = str(raw.get(c) or "")
    config = raw["config"]
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError as exc:
            raise _fail(where, f"config is not JSON ({exc.msg})") from None
    if not isinstance(config, dict):
        raise _fail(where, "config must be a JSON object")
    row["config"] = config
    beta = raw.get("beta")
    try:
        row["beta"] = None if beta in (None, "") else float(beta)
        for c in _FLOAT:
            v = raw.get(c)
            row[c] = math.nan if v in (None, "") else float(v)
        for c in _INT:
            v = raw.get(c)
            row[c] = 0 if v in (None, "") else int(float(v))
    except (TypeError, ValueError) as exc:
        raise _fail(where, f"not a number ({exc})") from None
    if not 0.0 <= row["accuracy"] <= 100.0:
        raise _fail(where, f"accuracy {row['accuracy']} is not a percentage")
    if row["episodes"] < 1:
        raise _fail(where, "episodes must be >= 1")
    if not row["label"]:
        row["label"] = row["method"]
    return row


def to_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        out = []
        for c in COLUMNS:
            v = r.get(c)
            if c == "config":
                v = config_key(v)
            elif v is None or (isinstance(v, float) and math.isnan(v)):
                v = ""
            out.append(v)
        writer.writerow(out)
    return buf.getvalue()


def to_json(rows: Iterable[Mapping[str, Any]], meta: Mapping[str, Any] | None = None) -> str:
    def clean(v):
        return None if isinstance(v, float) and math.isnan(v) else v

    body = {
        "format": FORMAT,
        "version": VERSION,
        "meta": dict(meta or {}),
        "columns": list(COLUMNS),
        "rows": [{c: clean(r.get(c)) for c in COLUMNS} for r in rows],
    }
    return json.dumps(body, indent=1) + "\n"


def write(directory: str | Path, name: str, rows: list[dict], meta: Mapping | None = None
          ) -> tuple[Path, Path]:
    """``<directory>/<name>.csv`` and ``.json``, each written atomically."""
    from autotts_jax.utils.atomic import atomic_write_text

    directory = Path(directory)
    csv_path = atomic_write_text(directory / f"{name}.csv", to_csv(rows))
    json_path = atomic_write_text(directory / f"{name}.json", to_json(rows, meta))
    return csv_path, json_path


def _read_json(path: Path) -> list[dict]:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(str(path), f"not a results file (invalid JSON: {exc})") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise _fail(str(path), f"not a results file (no \"format\": \"{FORMAT}\")")
    if body.get("version") != VERSION:
        raise _fail(str(path), f"results version {body.get('version')!r}, expected {VERSION}")
    rows = body.get("rows")
    if not isinstance(rows, list):
        raise _fail(str(path), "not a results file (\"rows\" is not a list)")
    return [check_row(r if isinstance(r, dict) else {}, f"{path}: row {i + 1}")
            for i, r in enumerate(rows)]


def _read_csv(path: Path) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _fail(str(path), "not a results file (not UTF-8 text)") from None
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise _fail(str(path), f"not a results file (missing columns {', '.join(missing)}; "
                               f"expected the columns of autotts-jax evaluate)")
    return [check_row(r, f"{path}: line {i}") for i, r in enumerate(reader, start=2)]


def _is_results_json(path: Path) -> bool:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(body, dict) and body.get("format") == FORMAT


def find(path: str | Path) -> list[Path]:
    """Results files at ``path``: the file itself, or every results JSON below a directory
    (falling back to ``results*.csv`` where a directory holds no JSON results)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise AutoTTSError(f"{path}: no such results file or directory")
    found = sorted(p for p in path.rglob("*.json") if _is_results_json(p))
    if not found:
        found = sorted(path.rglob("results*.csv"))
    if not found:
        raise AutoTTSError(f"{path}: no results files (results.json / results.csv) below it")
    return found


def read(path: str | Path) -> list[dict]:
    """Rows of one results file (``.json`` or ``.csv``), validated."""
    path = Path(path)
    if not path.is_file():
        raise AutoTTSError(f"{path}: no such results file")
    if path.suffix.lower() == ".json":
        rows = _read_json(path)
    elif path.suffix.lower() == ".csv":
        rows = _read_csv(path)
    else:
        raise _fail(str(path), "not a results file (expected .json or .csv)")
    if not rows:
        raise _fail(str(path), "results file has no rows")
    return rows


def read_all(paths: Iterable[str | Path]) -> list[dict]:
    """Rows of every results file at ``paths`` (files or directories); a row repeated in a
    later file (same model, dataset, method, config and beta) replaces the earlier one."""
    merged: dict[tuple, dict] = {}
    for p in paths:
        for f in find(p):
            for r in read(f):
                key = (r["model"], r["dataset"], r["method"], config_key(r["config"]), r["beta"])
                merged[key] = r
    if not merged:
        raise AutoTTSError("no results rows found")
    return list(merged.values())
