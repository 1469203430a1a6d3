"""The on-disk history of a discovery run: one folder per round and candidate, an index.

Layout of a run directory ``DIR``::

    DIR/run.json                 what the run is (explorer, seeds, betas, ...): checked on resume
    DIR/index.jsonl              one line per finished candidate, sorted by (round, candidate)
    DIR/baselines.json           the baselines' search-split curves and scores
    DIR/rounds/r0003/c01/
        prompt.md                the prompt the proposer saw
        response.txt             its raw response (evolve: the genome)
        candidate.py             the module extracted from the response
        validation.json          every check's outcome, sandbox timings, files opened
        metrics.json             search-split metrics per backbone and beta, score, position
        digest.md                diagnostics from episodes and traces (accepted candidates)
        episodes.npz             per-episode arrays (accepted candidates)
        record.json              the index line; written last, it marks the candidate done
    DIR/best_controller.py       the selected controller, an ordinary controller module
    DIR/heldout/                 the held-out evaluation (tables, plots, results)

Every file is written atomically (temporary name, then rename).  A candidate is *done* when
its ``record.json`` exists; ``index.jsonl`` is rebuilt from all records after each one, so a
kill at any moment loses at most the candidate in progress -- and not its proposer response,
which resume reuses instead of asking again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from autotts_jax.errors import AutoTTSError
from autotts_jax.utils.atomic import atomic_write_bytes, atomic_write_text


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=False, default=_plain) + "\n"


def _plain(v: Any):
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


class History:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # ------------------------------------------------------------------ run identity
    @property
    def run_file(self) -> Path:
        return self.root / "run.json"

    def exists(self) -> bool:
        return self.run_file.is_file() or (self.root / "rounds").is_dir()

    def start(self, spec: Mapping[str, Any], resume: bool) -> None:
        """Create the run, or check that ``spec`` matches the run being resumed."""
        if self.exists():
            if not resume:
                raise AutoTTSError(
                    f"out={self.root} already holds a discovery run: pass resume=true to "
                    "continue it, or choose another out"
                )
            if not self.run_file.is_file():
                raise AutoTTSError(f"{self.root}: resume: run.json is missing")
            old = json.loads(self.run_file.read_text())
            diff = sorted(k for k in set(old) | set(spec)
                          if k != "rounds" and old.get(k) != spec.get(k))
            if diff:
                detail = "; ".join(f"{k}: {old.get(k)!r} -> {spec.get(k)!r}" for k in diff)
                raise AutoTTSError(f"{self.root}: resume with different settings ({detail})")
            if old.get("rounds") != spec.get("rounds"):
                atomic_write_text(self.run_file, _json(dict(spec)))
            self.rebuild_index()
            return
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.run_file, _json(dict(spec)))

    # ------------------------------------------------------------------ candidates
    def cand_dir(self, r: int, c: int) -> Path:
        return self.root / "rounds" / f"r{r:04d}" / f"c{c:02d}"

    def write(self, r: int, c: int, name: str, content: str | bytes | Mapping) -> Path:
        path = self.cand_dir(r, c) / name
        if isinstance(content, bytes):
            return atomic_write_bytes(path, content)
        if not isinstance(content, str):
            content = _json(content)
        return atomic_write_text(path, content)

    def write_arrays(self, r: int, c: int, name: str, arrays: Mapping[str, np.ndarray]) -> Path:
        import io

        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        return atomic_write_bytes(self.cand_dir(r, c) / name, buf.getvalue())

    def read_arrays(self, r: int, c: int, name: str) -> dict[str, np.ndarray] | None:
        path = self.cand_dir(r, c) / name
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in z.files}

    def read(self, r: int, c: int, name: str) -> str | None:
        path = self.cand_dir(r, c) / name
        return path.read_text(encoding="utf-8") if path.is_file() else None

    def record(self, r: int, c: int) -> dict[str, Any] | None:
        text = self.read(r, c, "record.json")
        return json.loads(text) if text else None

    def commit(self, record: Mapping[str, Any]) -> None:
        """Mark a candidate done (its ``record.json``), then rebuild the index."""
        self.write(int(record["round"]), int(record["candidate"]), "record.json", record)
        self.rebuild_index()

    def records(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted((self.root / "rounds").glob("r*/c*/record.json")):
            out.append(json.loads(path.read_text()))
        out.sort(key=lambda rec: (int(rec["round"]), int(rec["candidate"])))
        return out

    def rebuild_index(self) -> None:
        lines = [json.dumps(rec, sort_keys=False, default=_plain) for rec in self.records()]
        atomic_write_text(self.root / "index.jsonl", "".join(line + "\n" for line in lines))

    # ------------------------------------------------------------------ run-level files
    def write_file(self, name: str, content: str | Mapping) -> Path:
        if not isinstance(content, str):
            content = _json(content)
        return atomic_write_text(self.root / name, content)

    def read_json(self, name: str) -> Any:
        path = self.root / name
        return json.loads(path.read_text()) if path.is_file() else None
