"""Running candidate code in a separate, limited process (the parent side).

:func:`run_candidate` writes *stripped* copies of the search split's stores (replay arrays
without the answer key, :mod:`autotts_jax.store.stripped`) into a fresh private directory,
with the candidate and a request, and starts ``python -m autotts_jax.explorer.worker DIR`` in
its own session (process group) with a scrubbed environment (no API keys; ``HOME`` and
``TMPDIR`` pointing into the private directory).  The sandbox returns answer ids; they are
scored here.  A second run replays the candidate on counterfactual stores (non-interference,
:mod:`autotts_jax.engine.noninterference`); a third traces the episodes picked here.
:func:`replay_untrusted` is the plain replay (held-out evaluation, ``evaluate
controller=module``).  Limits:

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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from autotts_jax.engine import noninterference as NI
from autotts_jax.explorer.digest import pick_episodes, rescore_traces
from autotts_jax.explorer.metrics import FIELDS
from autotts_jax.explorer.split import SearchSplit
from autotts_jax.store.stripped import save_stripped, score

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


def _in_sandbox(source: str, datas: Sequence[Any], request: dict[str, Any], limits: Limits,
                keep_dir: Path | None = None) -> tuple[Outcome, dict[str, np.ndarray] | None]:
    """One sandbox run: a fresh private directory with stripped copies of ``datas``
    (``store_<i>.npz``: no answer key, a decoy drawn afresh), the candidate and ``request``;
    the outcome and the episode arrays it wrote (``[stores, configs, seeds, questions(,
    slots)]``), if any."""
    home = Path(tempfile.mkdtemp(prefix="autotts-sandbox-")).resolve()
    decoy = int.from_bytes(os.urandom(4), "little")
    try:
        names = [save_stripped(d, home / f"store_{i}.npz", decoy + i).name
                 for i, d in enumerate(datas)]
        (home / "candidate.py").write_text(source, encoding="utf-8")
        request = {**request, "stores": names, "memory_mb": int(limits.memory_mb),
                   "cpu_s": int(limits.cpu_s)}
        (home / "request.json").write_text(json.dumps(request))
        outcome = _supervise(home, limits)
        arrays = None
        if outcome.ok and (home / "episodes.npz").is_file():
            with np.load(home / "episodes.npz", allow_pickle=False) as z:
                arrays = {f: np.asarray(z[f]) for f in z.files}
        return outcome, arrays
    finally:
        if keep_dir is not None:
            shutil.copytree(home, keep_dir, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.h5", "*.npz"))
        shutil.rmtree(home, ignore_errors=True)


def _score(arrays: dict[str, np.ndarray], datas: Sequence[Any]) -> dict[str, np.ndarray]:
    """``arrays`` with ``correct`` judged here, against the real stores."""
    correct = np.stack([score(arrays["answer"][i], d) for i, d in enumerate(datas)])
    return {**arrays, "correct": correct}


def replay_untrusted(source: str, datas: Sequence[Any], configs: Sequence[dict] | None = None,
                     *, betas: Sequence[float] | None = None, seeds: Sequence[int],
                     cost_model: str = "reference", max_rounds: int = 1024,
                     pool_size: int = 128, max_branch: int = 64, limits: Limits = Limits(),
                     ledger: bool = False) -> Outcome:
    """Replay controller ``source`` on ``datas`` in the sandbox (stripped stores) and score
    its answers here.  ``betas`` for a beta-only controller, else ``configs``."""
    request = {"mode": "replay", "seeds": [int(s) for s in seeds], "cost_model": cost_model,
               "max_rounds": int(max_rounds), "pool_size": int(pool_size),
               "max_branch": int(max_branch), "ledger": bool(ledger),
               "betas": None if betas is None else [float(b) for b in betas],
               "configs": None if configs is None else [dict(c) for c in configs]}
    outcome, arrays = _in_sandbox(source, datas, request, limits)
    if outcome.ok and arrays is not None:
        outcome.arrays = _score(arrays, datas)
    return outcome


def _non_interference(source: str, datas: Sequence[Any], arrays: dict[str, np.ndarray],
                      request: dict[str, Any], limits: Limits, seed: int) -> str | None:
    """Replay the candidate in a second sandbox on counterfactual stores (see
    :mod:`autotts_jax.engine.noninterference`); ``None`` when nothing changed."""
    seeds = request["seeds"]
    cfs, relabels = [], []
    for i, data in enumerate(datas):
        seen = NI.revealed(arrays["slot_depth"][i], arrays["slot_end"][i], arrays["branches"][i],
                           seeds, np.asarray(data.n_branches), data.probe_answer.shape[1])
        cf, relabel = NI.counterfactual(data, seen, seed + i, int(request["pool_size"]))
        cfs.append(cf)
        relabels.append(relabel)
    outcome, again = _in_sandbox(source, cfs, {**request, "mode": "replay", "ledger": True},
                                 limits)
    if not outcome.ok or again is None:
        return (f"the replay on counterfactual stores failed where the first succeeded "
                f"({outcome.stage}): {outcome.reason[:300]}")
    for i in range(len(datas)):
        first = {k: v[i] for k, v in arrays.items()}
        second = {k: v[i] for k, v in again.items()}
        problem = NI.compare(first, second, relabels[i])
        if problem is not None:
            return f"store {i}: {problem}"
    return None


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
    non_interference: bool = True,
    n_traces: int = 2,
    trace_rows: int = 24,
    keep_dir: Path | None = None,
    datas: Sequence[Any] | None = None,
    seed: int = 0,
) -> Outcome:
    """Validate and evaluate ``source`` in the sandbox; see the module docstring.

    Up to three sandbox runs, each in a fresh process and directory: the evaluation (with
    conformance and determinism checks), the non-interference replay on counterfactual
    stores, and the execution traces of the episodes picked here (which needs correctness,
    so it cannot be picked in the sandbox).  ``datas`` are the split's loaded stores (loaded
    here when not given); ``seed`` seeds the counterfactual stores.
    """
    if datas is None:
        datas = [split.load(m).data for m in split.models]
    request = {
        "mode": "evaluate", "betas": [float(b) for b in betas],
        "seeds": [int(s) for s in seeds], "cost_model": cost_model,
        "max_rounds": int(max_rounds), "pool_size": int(pool_size),
        "max_branch": int(max_branch), "conformance": bool(conformance),
        "determinism": bool(determinism), "forbidden": [str(split.root)],
    }
    outcome, arrays = _in_sandbox(source, datas, request, limits, keep_dir)
    if not outcome.ok:
        return outcome
    arrays = _score(arrays, datas)
    if non_interference:
        t0 = time.monotonic()
        problem = _non_interference(source, datas, arrays, request, limits, seed)
        outcome.timing["non_interference"] = time.monotonic() - t0
        if problem is not None:
            return replace(outcome, ok=False, stage="non_interference",
                           reason=f"non-interference: {problem}")
    traces: list[dict[str, Any]] = []
    if n_traces > 0 and sc64 is not None:
        t0 = time.monotonic()
        picks = pick_episodes(arrays, sc64, betas, n_traces)
        traced, _ = _in_sandbox(source, datas, {**request, "mode": "trace", "picks": picks,
                                                "trace_rows": int(trace_rows)}, limits)
        if traced.ok:
            traces = rescore_traces(traced.traces, datas, int(trace_rows))
        outcome.timing["traces"] = time.monotonic() - t0
    fields = {f: arrays[f] for f in FIELDS}
    return replace(outcome, arrays=fields, traces=traces)


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
    return Outcome(True, "ok", "", stop_reasons=tuple(res.get("stop_reasons") or ()),
                   needs=list(res["needs"]), traces=list(res.get("traces") or []),
                   name=str(res.get("name") or ""), **common)
