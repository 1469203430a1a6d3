"""Console logging shared by the Hydra commands (``conf/hydra/job_logging/autotts.yaml``) and
the plain ones (``pack``, ``info``, ``collect``, ...).

Messages are logged, not printed, so that each Hydra run's log file (``<run dir>/<command>.log``)
records what the console showed.  On the console a message is its bare text, as a print would
show it: INFO on stdout, WARNING and above on stderr (so an ``error: ...`` line stays the only
line on stderr of a failed command).
"""

from __future__ import annotations

import logging
import sys

PACKAGE_LOGGER = "autotts_jax"


class BelowWarning(logging.Filter):
    """Passes records below WARNING (the stdout handler's half of the split)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


class StdStreamHandler(logging.StreamHandler):
    """A handler on whatever ``sys.stdout``/``sys.stderr`` is when a record is emitted (not
    when the handler was made), so that redirections made later (pytest's capture,
    ``contextlib.redirect_stdout``) see the messages, and a stream closed since (a finished
    capture) is never written to.  Hydra's job logging uses it too
    (``conf/hydra/job_logging/autotts.yaml``)."""

    def __init__(self, name: str = "stderr") -> None:
        if name not in ("stdout", "stderr"):
            raise ValueError(f"StdStreamHandler: name must be stdout or stderr, got {name!r}")
        self._std = name
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return getattr(sys, self._std)

    @stream.setter
    def stream(self, value) -> None:
        pass


def console() -> None:
    """For commands that Hydra does not run: bare messages, INFO to stdout and WARNING and up
    to stderr, for this package's loggers (other libraries' at WARNING)."""
    root = logging.getLogger()
    if any(isinstance(h, StdStreamHandler) for h in root.handlers):
        return
    out = StdStreamHandler("stdout")
    out.addFilter(BelowWarning())
    err = StdStreamHandler("stderr")
    err.setLevel(logging.WARNING)
    for h in (out, err):
        h.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(h)
    root.setLevel(logging.WARNING)
    logging.getLogger(PACKAGE_LOGGER).setLevel(logging.INFO)
