"""The progress line of ``collect``."""

from __future__ import annotations

import threading
import time
from typing import TextIO


class Progress:
    """Branches, questions, requests and tokens so far; redrawn in place on a terminal, a line
    every 30 s otherwise (a log file), never when ``stream`` is None."""

    def __init__(self, total: int, done: int, questions: int, q_done: int,
                 stream: TextIO | None):
        self.total, self.done, self.questions, self.q_done = total, done, questions, q_done
        self.requests = 0
        self.tokens = 0
        self.stream = stream
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self.t0 = time.monotonic()
        self._last = 0.0
        self._lock = threading.Lock()

    def update(self, *, requests: int = 0, tokens: int = 0, branch: int = 0,
               question: int = 0) -> None:
        with self._lock:
            self.requests += requests
            self.tokens += tokens
            self.done += branch
            self.q_done += question
            self._render(final=False)

    def _render(self, final: bool) -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        if not final and now - self._last < (0.2 if self.tty else 30.0):
            return
        self._last = now
        width = 24
        filled = width * self.done // max(self.total, 1)
        line = (
            f"collect [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} branches, "
            f"{self.q_done}/{self.questions} questions, {self.requests} requests, "
            f"{self.tokens:,} tokens, {now - self.t0:.0f}s"
        )
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K" + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        with self._lock:
            self._render(final=True)
