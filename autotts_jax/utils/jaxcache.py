"""JAX's persistent compilation cache for the command-line tools.

A fresh process would otherwise pay every XLA compilation again (seconds per controller on a
CPU, more on a GPU), which dominates short commands and every job of a SLURM sweep.  With the
cache, the second process that runs the same controller on the same padded shapes loads the
compiled executable from disk instead.

Where: ``jax_cache=DIR`` on the command line, else ``$AUTOTTS_JAX_CACHE_DIR``, else
``$XDG_CACHE_HOME/autotts-jax/jax`` (``~/.cache/autotts-jax/jax``).  ``off`` (also ``none``,
``false``, ``0``) in either place turns the cache off.  Entries go under a subdirectory per
machine type and CPU feature set: XLA rejects a CPU executable compiled for another CPU, which
would otherwise happen when login and compute nodes share a home directory.

Concurrent jobs (a SLURM array writing to one cache on a shared file system) are safe: the
cache is given a size bound (:data:`MAX_BYTES`), which makes JAX's ``LRUCache``
(``jax/_src/lru_cache.py``) take a file lock (``filelock``, in the cache directory) around
every read and write, so no process reads a half-written entry and only one writes a key; a
reader that cannot get the lock in time, or finds an unreadable entry, gets a warning from JAX
and compiles afresh (``jax/_src/compiler.py``, ``_cache_read``); a cache error never fails the
run (``jax_raise_persistent_cache_errors`` stays off).  The bound also evicts the least
recently used entries.  Entries are keyed by the program, the compile options, the JAX/XLA
version and the devices, so a stale entry is never used for a different program.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
from pathlib import Path

CACHE_ENV = "AUTOTTS_JAX_CACHE_DIR"
OFF = frozenset({"off", "none", "false", "0", "no"})
# Eviction bound: a full report caches about 40 entries of under 1 MB each.
MAX_BYTES = 2 * 1024**3

log = logging.getLogger(__name__)


def _machine_tag() -> str:
    """``<arch>-<hash of the CPU feature flags>`` (just ``<arch>`` where /proc is absent)."""
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = line.split(":", 1)[-1].strip()
                    break
    except OSError:
        pass
    arch = platform.machine() or "unknown"
    if not flags:
        return arch
    return f"{arch}-{hashlib.sha256(flags.encode()).hexdigest()[:10]}"


def resolve_cache_dir(setting: str | None = None) -> Path | None:
    """The cache directory for ``setting`` (the ``jax_cache`` config value; empty or None
    means "not given"), or None when the cache is off."""
    value = (setting or "").strip() or os.environ.get(CACHE_ENV, "").strip()
    if value.lower() in OFF:
        return None
    if value:
        base = Path(value).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "autotts-jax" / "jax"
    return base / _machine_tag()


def enable(setting: str | None = None) -> Path | None:
    """Point JAX's persistent compilation cache at :func:`resolve_cache_dir` (every
    compilation is cached, however short) and return the directory; None if it is off or
    cannot be created (one warning line; the run goes on uncached).  Call it before the first
    compilation."""
    path = resolve_cache_dir(setting)
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("compilation cache off: cannot create %s (%s)", path, exc.strerror or exc)
        return None
    configure(path)
    return path


def configure(path: str | Path) -> None:
    """Use ``path`` (an existing directory) as JAX's persistent compilation cache, with the
    settings described above (worker processes get their parent's directory this way)."""
    import importlib.util

    import jax

    jax.config.update("jax_compilation_cache_dir", str(path))
    if importlib.util.find_spec("filelock") is not None:  # a dependency; absent only when the
        # package runs from a checkout on PYTHONPATH (JAX then writes without locks)
        jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    # The defaults skip programs that compile in under a second: most of ours on a CPU.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def current() -> str | None:
    """The cache directory this process uses, or None."""
    import jax

    return jax.config.jax_compilation_cache_dir
