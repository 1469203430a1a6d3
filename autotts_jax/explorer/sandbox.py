"""Running candidate code in a separate, limited process (the parent side).

:func:`run_candidate` copies the search split's stores into a fresh private directory, writes
the candidate and a request there, and starts ``python -m autotts_jax.explorer.worker DIR`` in
its own session (process group) with a scrubbed environment (no API keys; ``HOME`` and
``TMPDIR`` pointing into the private directory).  Limits:

* ``wall_s`` -- wall clock for the whole run, JIT compilation included;
* ``load_s`` -- for running the module and making params for every beta (catches an endless
  loop in module code, ``make_params`` or ``max_slots``);
* ``trace_s`` -- for tracing ``init`` and ``step`` (catches a Python loop that never ends at
  trace time without waiting for ``wall_s``);
* ``cpu_s`` (``RLIMIT_CPU``) and ``memory_mb`` (``RLIMIT_AS``), set by the child on itself.

On a limit the whole process group is killed (``SIGKILL``).  Whatever happens, the result is
an :class:`Outcome`; nothing here raises because of a candidate.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autotts_jax.explorer.metrics import FIELDS
from autotts_jax.explorer.split import SearchSplit

_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "PYTHONPATH", "VIRTUAL_ENV", "LD_LIBRARY_PATH",
             "SYSTEMROOT")
_ENV_PREFIXES = ("JAX_", "XLA_", "CUDA_", "NVIDIA_", "TPU_")


@dataclass(frozen=True)
class Limits:
    wall_s: float = 900.0
    load_s: float = 60.0
    trace_s: float = 120.0
    cpu_s: int = 3600
    memory_mb: int = 8192


@dataclass
class Outcome:
    ok: bool
    stage: str  # where it failed: load, trace, conformance, eval, timeout, memory, cpu, ...
    reason: str  # feedback text ("" when ok)
    arrays: dict[str, np.ndarray] | None = None  # [stores, configs, seeds, questions]
    stop_reasons: tuple[str, ...] = ()
    needs: list[int] = field(default_factory=list)
    traces: list[dict[str, Any]] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)
    denied: list[str] = field(default_factory=list)
    timing: dict[str, Any] = field(default_factory=dict)
    log_tail: str = ""
    name: str = ""  # the controller's name


def _child_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k in _ENV_KEEP or k.startswith(_ENV_PREFIXES)}
    env.update(HOME=str(home), TMPDIR=str(home), PYTHONHASHSEED="0",
               PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    return env


def _tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def _read_phase(home: Path) -> tuple[str, float | None]:
    try:
        p = json.loads((home / "phase").read_text())
        return str(p["phase"]), float(p["time"])
    except (OSError, ValueError, KeyError):
        return "start", None


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


_PHASE_HINT = {
    "start": "the sandbox did not start in time (is the machine overloaded?)",
    "load": "running the module, make_params or max_slots does not finish (an endless loop?)",
    "trace": "tracing init/step does not finish (a Python loop that never ends at trace time?)",
}


def run_candidate(
    source: str,
    split: SearchSplit,
    *,
    betas: Sequence[float],
    seeds: Sequence[int],
    cost_model: str = "reference",
    max_rounds: int = 1024,
    pool_size: int = 128,
    max_branch: int = 64,
    sc64: np.ndarray | None = None,
    limits: Limits = Limits(),
    conformance: bool = True,
    determinism: bool = True,
    n_traces: int = 2,
    trace_rows: int = 24,
    keep_dir: Path | None = None,
) -> Outcome:
    """Validate and evaluate ``source`` in the sandbox; see the module docstring."""
    home = Path(tempfile.mkdtemp(prefix="autotts-sandbox-")).resolve()
    try:
        stores = split.private_copy(home)
        (home / "candidate.py").write_text(source, encoding="utf-8")
        if sc64 is not None:
            np.save(home / "sc64.npy", np.asarray(sc64))
        request = {
            "stores": [p.name for p in stores], "betas": [float(b) for b in betas],
            "seeds": [int(s) for s in seeds], "cost_model": cost_model,
            "max_rounds": int(max_rounds), "pool_size": int(pool_size),
            "max_branch": int(max_branch), "sc64": "sc64.npy" if sc64 is not None else None,
            "memory_mb": int(limits.memory_mb), "cpu_s": int(limits.cpu_s),
            "conformance": bool(conformance), "determinism": bool(determinism),
            "n_traces": int(n_traces), "trace_rows": int(trace_rows),
            "forbidden": [str(split.root)],
        }
        (home / "request.json").write_text(json.dumps(request))
        return _supervise(home, limits)
    finally:
        if keep_dir is not None:
            shutil.copytree(home, keep_dir, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.h5"))
        shutil.rmtree(home, ignore_errors=True)


def _supervise(home: Path, limits: Limits) -> Outcome:
    log = home / "worker.log"
    t_start = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "autotts_jax.explorer.worker", str(home)],
            cwd=home, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=_child_env(home), start_new_session=True,
        )
        killed: str | None = None
        try:
            while proc.poll() is None:
                time.sleep(0.1)
                now = time.monotonic()
                phase, since = _read_phase(home)
                in_phase = (time.time() - since) if since is not None else now - t_start
                limit = {"load": limits.load_s, "trace": limits.trace_s}.get(phase)
                if now - t_start > limits.wall_s:
                    killed = (f"timeout: exceeded the wall-clock limit of {limits.wall_s:g}s "
                              f"(JIT compilation included) in phase '{phase}'")
                elif limit is not None and in_phase > limit:
                    killed = (f"timeout: phase '{phase}' exceeded its limit of {limit:g}s: "
                              f"{_PHASE_HINT[phase]}")
                if killed:
                    _kill(proc)
                    break
        except BaseException:
            _kill(proc)
            raise
    wall = time.monotonic() - t_start
    tail = _tail(log)
    if killed:
        return Outcome(False, "timeout", killed + "; the process group was killed",
                       timing={"wall": wall}, log_tail=tail)
    result_path = home / "result.json"
    if not result_path.is_file():
        rc = proc.returncode
        if rc is not None and rc < 0 and -rc == signal.SIGXCPU:
            reason = f"cpu: exceeded the CPU-time limit of {limits.cpu_s}s"
            stage = "cpu"
        elif any(w in tail for w in ("RESOURCE_EXHAUSTED", "bad_alloc", "MemoryError",
                                     "Cannot allocate memory", "out of memory")):
            stage, reason = "memory", f"memory: exceeded the memory limit of {limits.memory_mb} MiB"
        else:
            stage = "crash"
            sig = f"signal {-rc}" if rc is not None and rc < 0 else f"exit status {rc}"
            reason = f"crash: the sandbox process died ({sig}) without a result"
        return Outcome(False, stage, reason + (f"\n{tail}" if tail else ""),
                       timing={"wall": wall}, log_tail=tail)
    res = json.loads(result_path.read_text())
    timing = dict(res.get("timing") or {})
    timing["wall"] = wall
    common = dict(opened=list(res.get("opened") or []), denied=list(res.get("denied") or []),
                  timing=timing, log_tail=tail)
    if not res.get("ok"):
        stage = str(res.get("stage") or "error")
        if stage == "memory":
            text = (f"memory: exceeded the memory limit of {limits.memory_mb} MiB "
                    f"({res.get('error', '')[:300]})")
        else:
            text = f"{stage}: {res.get('error', '')}"
            tb = str(res.get("traceback") or "").strip()
            if tb and tb not in text:
                text += "\n" + tb
        return Outcome(False, stage, text, **common)
    with np.load(home / "episodes.npz") as z:
        arrays = {f: np.asarray(z[f]) for f in FIELDS}
    return Outcome(True, "ok", "", arrays=arrays, stop_reasons=tuple(res["stop_reasons"]),
                   needs=list(res["needs"]), traces=list(res.get("traces") or []),
                   name=str(res.get("name") or ""), **common)
