"""The checkpoint journal: an append-only JSONL log of one question's answered requests.

Each line is appended and flushed before the next request of that branch is sent, so a killed
collection loses at most the requests in flight.  Reading drops a last line cut short by the
kill and refuses any other damage.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from autotts_jax.errors import AutoTTSError


class Journal:
    """Append-only JSONL log of answered requests of one question."""

    def __init__(self, path: Path):
        self.path = path
        self._fh = None
        self._lock = threading.Lock()

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        blob = self.path.read_bytes()
        events, good_end, pos = [], 0, 0
        while pos < len(blob):
            nl = blob.find(b"\n", pos)
            if nl == -1:
                break  # a line cut short by a kill: dropped below
            try:
                events.append(json.loads(blob[pos:nl]))
            except (json.JSONDecodeError, UnicodeDecodeError):
                if blob.find(b"\n", nl + 1) != -1 or nl + 1 < len(blob):
                    raise AutoTTSError(
                        f"{self.path}: byte {pos}: corrupt journal line (not a torn last line); "
                        "delete this file to collect the question again"
                    ) from None
                break
            pos = good_end = nl + 1
        if good_end != len(blob):
            os.truncate(self.path, good_end)
        return events

    def append(self, event: dict) -> None:
        line = json.dumps(event, ensure_ascii=False) + "\n"
        with self._lock:
            if self._fh is None:
                self._fh = open(self.path, "a", encoding="utf-8")
            self._fh.write(line)
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
