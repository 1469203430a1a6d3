"""Running candidate code in a separate, limited process (the parent side).

:func:`run_candidate` writes *stripped* copies of the search split's stores (replay arrays
without the answer key, :mod:`autotts_jax.store.stripped`) into a fresh private directory,
with the candidate and a request, and starts ``python -m autotts_jax.untrusted.worker DIR`` in
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

**Containment by the operating system.**  The static checks (:mod:`.static`) are a linter and
the worker's audit hook is only a tripwire: both run in, or can be reached from, the
candidate's own interpreter.  The boundary is the process itself.  With bubblewrap (``bwrap``)
installed and namespaces available (``containment="auto"`` or ``"bwrap"``), the worker runs in

* a mount namespace that shows only the system directories (``/usr``, ``/lib*``, the dynamic
  loader's files in ``/etc``), the Python installation and virtualenv (read-only), the
  ``autotts_jax`` package directory (read-only, at its own path), a fresh ``/proc`` and
  ``/dev``, a small private ``/tmp`` (tmpfs) and the private directory (read-write): not the
  checkout, its trajectories, the user's home, ``shared/`` or other temporary directories;
* its own network namespace (no interface but a loopback that nothing listens on), PID
  namespace (it cannot see or signal the discovery process, nor read its ``environ``), IPC and
  UTS namespaces, with ``--die-with-parent`` and ``--new-session``;
* an environment holding only what Python and JAX need (``PATH``, locale, ``HOME`` and
  ``TMPDIR`` = the private directory, ``PYTHONHASHSEED``, ``JAX_*``/``XLA_*``); JAX runs on the
  CPU there (no accelerator device nodes are visible);
* with no capabilities; when the discovery process runs as root, the worker drops to the
  unprivileged ``nobody`` user before any candidate code runs (root is exempt from
  ``RLIMIT_NPROC``), so it cannot write to the read-only bind mounts' underlying files either.

Without bwrap, or where namespaces are unavailable (``"auto"`` falls back with one warning
line; ``"none"`` asks for it), the worker runs as today with resource limits, the scrubbed
environment and the audit hook only (``rlimits-only``).  The mode used is
:attr:`Outcome.containment` and goes into the run's ``run.json``.

Resource limits in both modes: ``RLIMIT_AS`` (``memory_mb``), ``RLIMIT_CPU`` (``cpu_s``),
``RLIMIT_FSIZE`` (``fsize_mb``) and, when the worker runs as ``nobody``, ``RLIMIT_NPROC``
(``nproc``).

**Feedback is candidate-controlled text.**  Every reason, log tail and refusal the parent
returns is cut to a fixed length and :func:`redact`-ed: values of the discovery process's
environment (8 characters or more) and anything shaped like an API key are replaced, so that a
candidate cannot use the rejection reason (which feeds the next prompt) to carry out a secret.
The files the worker leaves are read as regular files only, without following symbolic links
(:func:`_read_private`): the candidate can write there, and this process can read more.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from autotts_jax.engine import noninterference as NI
from autotts_jax.engine.invariants import FIELDS
from autotts_jax.errors import AutoTTSError
from autotts_jax.store.split import SearchSplit
from autotts_jax.store.stripped import save_stripped, score
from autotts_jax.untrusted.digest import pick_episodes, rescore_traces

_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "PYTHONPATH", "VIRTUAL_ENV", "LD_LIBRARY_PATH",
             "SYSTEMROOT")
_ENV_PREFIXES = ("JAX_", "XLA_", "CUDA_", "NVIDIA_", "TPU_")
# Under bwrap only what Python and JAX need: nothing else is mounted for the others to point at.
_BWRAP_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "LC_CTYPE")
_BWRAP_ENV_PREFIXES = ("JAX_", "XLA_")

CONTAINMENTS = ("auto", "bwrap", "none")
# The unprivileged user a root discovery process hands the worker to (see module docstring).
NOBODY = 65534

REASON_CHARS = 600  # the error text of a rejection
TRACEBACK_CHARS = 1200  # the candidate's frames of its traceback, kept from the end
LOG_CHARS = 2000  # the worker's log tail
REDACTED = "[redacted]"
# Shapes of credentials that may sit in files a candidate can read even when the environment
# it was given holds none: OpenAI/Anthropic-style ``sk-``, GitHub, Hugging Face, AWS, Slack,
# Google API keys, bearer tokens, and long unbroken hex or base64 runs.
_KEY_PATTERNS = re.compile(
    r"sk-[A-Za-z0-9_\-]{8,}|gh[pousr]_[A-Za-z0-9]{16,}|github_pat_[A-Za-z0-9_]{16,}"
    r"|hf_[A-Za-z0-9]{16,}|AKIA[0-9A-Z]{16}|xox[abposr]-[A-Za-z0-9-]{8,}|AIza[0-9A-Za-z_\-]{30,}"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=\-]{8,}|\b[0-9a-fA-F]{32,}\b|[A-Za-z0-9+/]{40,}={0,2}"
)
_SECRET_MIN = 8


@dataclass(frozen=True)
class Limits:
    wall_s: float = 900.0
    load_s: float = 60.0
    trace_s: float = 120.0
    cpu_s: int = 3600
    memory_mb: int = 8192
    fsize_mb: int = 1024  # RLIMIT_FSIZE: the largest file the worker may write
    # RLIMIT_NPROC of the sandbox user (threads count: XLA starts a few per core); 0: automatic,
    # 256 + 4 per CPU.  Set when the worker has a user of its own (a root discovery process
    # under bwrap hands it to ``nobody``); for any other user it would count all their
    # processes.
    nproc: int = 0


def limits_of(conf: Mapping[str, Any]) -> Limits:
    """The :class:`Limits` of a discover config's ``sandbox`` group."""
    s = conf["sandbox"]
    return Limits(wall_s=float(s["wall_s"]), load_s=float(s["load_s"]),
                  trace_s=float(s["trace_s"]), cpu_s=int(s["cpu_s"]),
                  memory_mb=int(s["memory_mb"]), fsize_mb=int(s.get("fsize_mb", 1024)),
                  nproc=int(s.get("nproc", 0)))


def _nproc(limits: Limits) -> int:
    return int(limits.nproc) if limits.nproc > 0 else 256 + 4 * (os.cpu_count() or 1)


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
    containment: str = ""  # "bwrap" or "rlimits-only": how the worker was contained


def _child_env(home: Path, bwrap: bool = False) -> dict[str, str]:
    keep, prefixes = (_BWRAP_ENV_KEEP, _BWRAP_ENV_PREFIXES) if bwrap else (_ENV_KEEP,
                                                                          _ENV_PREFIXES)
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith(prefixes)}
    env.update(HOME=str(home), TMPDIR=str(home), PYTHONHASHSEED="0",
               PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    if bwrap:
        env["JAX_PLATFORMS"] = "cpu"  # no accelerator device nodes are mounted
    # Never the user's own cache, which the candidate could write: see _sandbox_cache.
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    return env


# --------------------------------------------------------------------------- secrets


def _secrets() -> list[str]:
    """Values of this process's environment long enough to be worth hiding, longest first."""
    vals = {v for v in os.environ.values() if len(v) >= _SECRET_MIN}
    return sorted(vals, key=len, reverse=True)


def redact(text: str, secrets: Sequence[str] | None = None) -> str:
    """``text`` with every secret value and every key-shaped string replaced by ``[redacted]``.

    ``secrets`` defaults to the values (of 8 characters or more) of this process's environment:
    whatever the candidate printed or raised may quote what it read, and the reason is shown to
    the next proposer.  The key patterns catch credentials read from elsewhere (files).
    """
    if not text:
        return text
    for v in (_secrets() if secrets is None else secrets):
        if v in text:
            text = text.replace(v, REDACTED)
    return _KEY_PATTERNS.sub(REDACTED, text)


def _bound(text: str, n: int, keep: str = "head") -> str:
    if len(text) <= n:
        return text
    cut = len(text) - n
    if keep == "tail":
        return f"[{cut} characters cut]..." + text[-n:]
    return text[:n] + f"...[{cut} characters cut]"


def _clean(text: str, n: int, keep: str = "head") -> str:
    # Redact before cutting (a cut must not split a secret into unrecognisable halves), and
    # again after (the cut marker cannot form one, but the order costs nothing).
    return redact(_bound(redact(text), n, keep))


# --------------------------------------------------------------------------- containment

_WARNED: dict[str, bool] = {}


@functools.cache
def _bwrap_problem() -> str | None:
    """Why bwrap cannot contain the worker here (``None`` when it can)."""
    exe = shutil.which("bwrap")
    if exe is None:
        return "bubblewrap (bwrap) is not installed"
    probe = [exe, *_namespace_flags(), "--ro-bind", "/", "/", "--proc", "/proc",
             "--dev", "/dev", "true"]
    try:
        res = subprocess.run(probe, stdin=subprocess.DEVNULL, capture_output=True,
                             timeout=30, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not be started ({exc})"
    if res.returncode != 0:
        err = res.stderr.decode("utf-8", "replace").strip().splitlines()
        return f"bwrap cannot create namespaces here ({err[-1] if err else res.returncode})"
    return None


def resolve_containment(requested: str = "auto") -> str:
    """The containment mode for ``requested`` (``auto``, ``bwrap``, ``none``): ``"bwrap"`` or
    ``"rlimits-only"``.  ``bwrap`` raises when bubblewrap cannot be used; ``auto`` falls back
    with one warning line on stderr per process."""
    if requested not in CONTAINMENTS:
        raise AutoTTSError(f"sandbox.containment: {requested!r} is not one of "
                           f"{', '.join(CONTAINMENTS)}")
    if requested == "none":
        return "rlimits-only"
    problem = _bwrap_problem()
    if problem is None:
        return "bwrap"
    if requested == "bwrap":
        raise AutoTTSError(f"sandbox.containment=bwrap: {problem}")
    if not _WARNED.get("fallback"):
        _WARNED["fallback"] = True
        print(f"warning: {problem}; candidate code runs with resource limits and an audit hook "
              "only (sandbox.containment=rlimits-only)", file=sys.stderr, flush=True)
    return "rlimits-only"


def _namespace_flags() -> list[str]:
    # As root, no user namespace: the worker keeps CAP_SETUID/CAP_SETGID only, to become
    # ``nobody`` itself (a user namespace would map it back to root, exempt from RLIMIT_NPROC).
    # Unprivileged, bwrap needs a user namespace and drops every capability on its own.
    if os.geteuid() == 0:
        return ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                "--unshare-cgroup-try", "--cap-drop", "ALL",
                "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    return ["--unshare-all"]


def system_mounts() -> list[str]:
    """Read-only binds of the system directories (symlinks such as ``/lib -> usr/lib`` are
    recreated as symlinks) and of the dynamic loader's configuration."""
    args = ["--ro-bind", "/usr", "/usr"]
    for d in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    # Debian's system Python links its sitecustomize into /etc/python3.X.
    py_etc = f"/etc/python{sys.version_info.major}.{sys.version_info.minor}"
    for f in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
              py_etc):
        args += ["--ro-bind-try", f, f]
    return args


def _python_dirs() -> list[str]:
    """Directories the worker's interpreter reads: the installation, the virtualenv, every
    site-packages directory holding a package the worker imports, and ``autotts_jax`` itself
    (an editable install keeps it inside the checkout: only the package directory is bound)."""
    import autotts_jax

    dirs = {sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix,
            str(Path(autotts_jax.__file__).resolve().parent)}
    for name in ("jax", "jaxlib", "numpy", "h5py", "ml_dtypes", "opt_einsum", "scipy"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            dirs.add(str(Path(spec.origin).resolve().parents[1]))
    real = sorted({os.path.realpath(d) for d in dirs} | dirs)
    # Drop directories already inside another bound one.
    out: list[str] = []
    for d in real:
        if os.path.isdir(d) and not any(d.startswith(o.rstrip("/") + "/") for o in out):
            out.append(d)
    return out


def _sandbox_cache(run_as: int | None) -> str | None:
    """A compilation cache only sandboxes use, beside the user's ``JAX_COMPILATION_CACHE_DIR``:
    a candidate may write it, so no trusted process reads what it holds."""
    base = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if not base:
        return None
    path = Path(base).resolve().with_name(Path(base).name + "-sandbox")
    try:
        path.mkdir(parents=True, exist_ok=True)
        if run_as is not None:
            os.chown(path, run_as, run_as)
    except OSError:
        return None
    return str(path)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _bwrap_command(home: Path, env: dict[str, str], cache: str | None) -> list[str]:
    argv = [shutil.which("bwrap") or "bwrap", *_namespace_flags(), "--die-with-parent",
            "--new-session", "--clearenv"]
    for k, v in sorted(env.items()):
        argv += ["--setenv", k, v]
    argv += system_mounts()
    argv += ["--proc", "/proc", "--dev", "/dev", "--size", str(64 << 20), "--tmpfs", "/tmp"]
    # CPU topology for XLA's thread pools (read-only; nothing of the user's lives there).
    argv += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
    dirs = _python_dirs()
    # bwrap creates the missing parents of a mount point as 0700 directories owned by root,
    # which ``nobody`` could not cross: create them first, searchable (after the /tmp tmpfs,
    # which would hide them; not inside a read-only mount, where they exist already).
    ro = ["/usr", *dirs]
    parents = sorted({str(a) for d in [*dirs, str(home), cache or "/"]
                      for a in Path(d).parents
                      if str(a) != "/" and not any(_inside(str(a), r) for r in ro)}, key=len)
    for a in parents:
        argv += ["--perms", "0755", "--dir", a]
    for d in dirs:
        argv += ["--ro-bind", d, d]
    # A regular (non-editable) install ships the stores inside the package: hide them, held-out
    # ones included, behind an empty directory.
    import autotts_jax

    shipped = Path(autotts_jax.__file__).resolve().parent / "trajectories"
    if shipped.is_dir():
        argv += ["--tmpfs", str(shipped)]
    argv += ["--bind", str(home), str(home)]
    if cache is not None:
        argv += ["--bind", cache, cache, "--setenv", "JAX_COMPILATION_CACHE_DIR", cache]
    argv += ["--chdir", str(home), "--", sys.executable, "-m", "autotts_jax.untrusted.worker",
             str(home)]
    return argv


def _read_private(path: Path, limit: int, *, last: bool = False) -> bytes:
    """At most ``limit`` bytes (the last ones with ``last``) of a file in the private directory.

    The candidate can write there: it may have replaced the file with a symlink to one of the
    user's files (which this process, not the sandbox, would read), with a FIFO (which would
    block), or made it huge.  Only a regular file is read, without following links."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path.name} is not a regular file")
        if st.st_size > limit and not last:
            raise OSError(f"{path.name} is larger than {limit} bytes")
        if last:
            os.lseek(fd, max(0, st.st_size - limit), os.SEEK_SET)
        chunks, left = [], limit
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _tail(path: Path, n: int = 15) -> str:
    try:  # the candidate may have printed gigabytes
        lines = _read_private(path, 64 * 1024, last=True).decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return _clean("\n".join(lines[-n:]), LOG_CHARS, keep="tail")


def _read_phase(home: Path) -> tuple[str, float | None]:
    try:
        p = json.loads(_read_private(home / "phase", 4096))
        phase = str(p["phase"])  # written by the worker, so possibly by the candidate
        return (phase if re.fullmatch(r"[a-z_]{1,20}", phase) else "?"), float(p["time"])
    except (OSError, ValueError, KeyError, TypeError):
        return "start", None


def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out.append(int(p.name))
    return out


def _kill(proc: subprocess.Popen) -> None:
    """Kill the worker and everything it started; return when they are gone.

    Under bwrap, ``proc`` is bwrap, whose child is the PID namespace's init: killing that
    child makes the kernel kill every process in the namespace (forks, daemons that left the
    process group), and bwrap exits once they are reaped.  Then (and in ``rlimits-only`` mode
    only this) the process group is killed."""
    for child in _children(proc.pid):
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


_DONE_GRACE_S = 15.0  # from the worker's last word to its exit

_PHASE_HINT = {
    "start": "the sandbox did not start in time (is the machine overloaded?)",
    "load": "running the module, make_params or max_slots does not finish (an endless loop?)",
    "trace": "tracing init/step does not finish (a Python loop that never ends at trace time?)",
    "done": "the worker reported its result but did not exit (processes left running?)",
}


def _in_sandbox(source: str, datas: Sequence[Any], request: dict[str, Any], limits: Limits,
                keep_dir: Path | None = None, mode: str = "auto",
                forbidden: Sequence[str] = (), shared_cache: bool = True
                ) -> tuple[Outcome, dict[str, np.ndarray] | None]:
    """One sandbox run: a fresh private directory with stripped copies of ``datas``
    (``store_<i>.npz``: no answer key, a decoy drawn afresh), the candidate and ``request``;
    the outcome and the episode arrays it wrote (``[stores, configs, seeds, questions(,
    slots)]``), if any.  ``mode`` is a containment mode (``auto`` is resolved here)."""
    mode = resolve_containment(mode) if mode == "auto" else mode
    run_as = NOBODY if mode == "bwrap" and os.geteuid() == 0 else None
    home = Path(tempfile.mkdtemp(prefix="autotts-sandbox-")).resolve()
    decoy = int.from_bytes(os.urandom(4), "little")
    try:
        names = [save_stripped(d, home / f"store_{i}.npz", decoy + i).name
                 for i, d in enumerate(datas)]
        (home / "candidate.py").write_text(source, encoding="utf-8")
        request = {
            **request, "stores": names, "memory_mb": int(limits.memory_mb),
            "cpu_s": int(limits.cpu_s),
            # /proc: the discovery process's environ and command line (rlimits-only mode).
            "forbidden": [*forbidden, "/proc"],
            "fsize_mb": int(limits.fsize_mb),
            # Only for a user of its own: RLIMIT_NPROC counts every process of the real user.
            "nproc": _nproc(limits) if run_as is not None else 0,
            "run_as": run_as,
        }
        (home / "request.json").write_text(json.dumps(request))
        if run_as is not None:
            # The worker becomes ``nobody``: it writes its results into ``home``; the stores
            # and the request stay root's (readable, not writable).
            os.chown(home, run_as, run_as)
            # bwrap runs as root without capabilities (no CAP_DAC_OVERRIDE): it needs the
            # search permission to enter; nobody else may list the directory.
            os.chmod(home, 0o711)
        outcome = _supervise(home, limits, mode, run_as, shared_cache)
        outcome.containment = mode
        arrays = None
        if outcome.ok:
            try:
                raw = _read_private(home / "episodes.npz", 1 << 30)
                with np.load(io.BytesIO(raw), allow_pickle=False) as z:
                    arrays = {f: np.asarray(z[f]) for f in z.files}
            except (OSError, ValueError) as exc:
                if request.get("mode") != "trace":
                    return replace(outcome, ok=False, stage="crash",
                                   reason=f"crash: unreadable or malformed episodes "
                                          f"({_clean(str(exc), 200)})"), None
        return outcome, arrays
    finally:
        if keep_dir is not None:
            # symlinks=True: links the candidate left are copied as links, not followed.
            shutil.copytree(home, keep_dir, dirs_exist_ok=True, symlinks=True,
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
                     ledger: bool = False, containment: str = "auto") -> Outcome:
    """Replay controller ``source`` on ``datas`` in the sandbox (stripped stores) and score
    its answers here.  ``betas`` for a beta-only controller, else ``configs``."""
    request = {"mode": "replay", "seeds": [int(s) for s in seeds], "cost_model": cost_model,
               "max_rounds": int(max_rounds), "pool_size": int(pool_size),
               "max_branch": int(max_branch), "ledger": bool(ledger),
               "betas": None if betas is None else [float(b) for b in betas],
               "configs": None if configs is None else [dict(c) for c in configs]}
    outcome, arrays = _in_sandbox(source, datas, request, limits, mode=containment)
    if outcome.ok and arrays is not None:
        outcome.arrays = _score(arrays, datas)
    return outcome


def tune_untrusted(source: str, datas: Sequence[Any], schedules: Sequence[Mapping[str, Any]],
                   *, betas: Sequence[float], seeds: Sequence[int], cost_model: str = "reference",
                   max_rounds: int = 1024, pool_size: int = 128, max_branch: int = 64,
                   limits: Limits = Limits(), containment: str = "auto") -> Outcome:
    """Replay candidate ``source`` with each of ``schedules`` (``{knob: [intercept, slope]}``
    for knobs of its ``KNOBS`` table) x ``betas`` in one sandbox run, scored here.  The arrays
    are ``[stores, schedules * betas, seeds, questions]``, schedule-major."""
    request = {"mode": "tune", "seeds": [int(s) for s in seeds], "cost_model": cost_model,
               "max_rounds": int(max_rounds), "pool_size": int(pool_size),
               "max_branch": int(max_branch), "ledger": False,
               "betas": [float(b) for b in betas],
               "schedules": [{k: [float(v[0]), float(v[1])] for k, v in s.items()}
                             for s in schedules]}
    outcome, arrays = _in_sandbox(source, datas, request, limits, mode=containment)
    if outcome.ok and arrays is not None:
        outcome.arrays = _score(arrays, datas)
    return outcome


def _non_interference(source: str, datas: Sequence[Any], arrays: dict[str, np.ndarray],
                      request: dict[str, Any], limits: Limits, seed: int,
                      mode: str = "auto") -> str | None:
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
                                 limits, mode=mode, shared_cache=False)
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
    containment: str = "auto",
) -> Outcome:
    """Validate and evaluate ``source`` in the sandbox; see the module docstring.

    Up to three sandbox runs, each in a fresh process and directory: the evaluation (with
    conformance and determinism checks), the non-interference replay on counterfactual
    stores, and the execution traces of the episodes picked here (which needs correctness,
    so it cannot be picked in the sandbox).  ``datas`` are the split's loaded stores (loaded
    here when not given); ``seed`` seeds the counterfactual stores.  ``containment`` is
    ``auto`` (bwrap when it works here, else resource limits only, with one warning),
    ``bwrap`` (raise :class:`AutoTTSError` when it cannot be used) or ``none``.
    """
    mode = resolve_containment(containment)
    if datas is None:
        datas = [split.load(m).data for m in split.models]
    request = {
        "mode": "evaluate", "betas": [float(b) for b in betas],
        "seeds": [int(s) for s in seeds], "cost_model": cost_model,
        "max_rounds": int(max_rounds), "pool_size": int(pool_size),
        "max_branch": int(max_branch), "conformance": bool(conformance),
        "determinism": bool(determinism),
    }
    outcome, arrays = _in_sandbox(source, datas, request, limits, keep_dir, mode,
                                  forbidden=[str(split.root)])
    if not outcome.ok:
        return outcome
    arrays = _score(arrays, datas)
    if non_interference:
        t0 = time.monotonic()
        problem = _non_interference(source, datas, arrays, request, limits, seed, mode)
        outcome.timing["non_interference"] = time.monotonic() - t0
        if problem is not None:
            return replace(outcome, ok=False, stage="non_interference",
                           reason=f"non-interference: {problem}")
    traces: list[dict[str, Any]] = []
    if n_traces > 0 and sc64 is not None:
        t0 = time.monotonic()
        picks = pick_episodes(arrays, sc64, betas, n_traces)
        traced, _ = _in_sandbox(source, datas, {**request, "mode": "trace", "picks": picks,
                                                "trace_rows": int(trace_rows)}, limits,
                                    mode=mode)
        if traced.ok:
            traces = rescore_traces(traced.traces, datas, int(trace_rows))
        outcome.timing["traces"] = time.monotonic() - t0
    fields = {f: arrays[f] for f in FIELDS}
    return replace(outcome, arrays=fields, traces=traces)


def _supervise(home: Path, limits: Limits, mode: str, run_as: int | None,
               shared_cache: bool = True) -> Outcome:
    """Run the worker, apply the wall-clock limits, and turn what it left into an Outcome
    whose text is bounded and redacted."""
    out = _run_worker(home, limits, mode, run_as, shared_cache)
    out.reason = _clean_reason(out.reason)
    out.denied = [_clean(d, 300) for d in out.denied[:50]]
    out.opened = [redact(o) for o in out.opened]
    out.name = _clean(out.name, 80)
    out.stop_reasons = tuple(_clean(r, 80) for r in out.stop_reasons)
    return out


def _clean_reason(text: str) -> str:
    """The reason's first part (the error) and its traceback, each cut to a fixed length."""
    head, sep, rest = text.partition("\n")
    head = _clean(head, REASON_CHARS)
    return head + (sep + _clean(rest, TRACEBACK_CHARS, keep="tail") if rest else "")


def _signal_of(rc: int | None, mode: str) -> int | None:
    if rc is None:
        return None
    if rc < 0:
        return -rc
    if mode == "bwrap" and rc > 128:  # bwrap exits with 128 + the signal that killed the worker
        return rc - 128
    return None


def _run_worker(home: Path, limits: Limits, mode: str, run_as: int | None,
                shared_cache: bool = True) -> Outcome:
    """``shared_cache=False``: no compilation cache at all, for a run whose results must not
    come from executables an earlier candidate could have written (the non-interference
    replay: a candidate must not be able to plant its first run's outputs for the second)."""
    log = home / "worker.log"
    t_start = time.monotonic()
    cache = _sandbox_cache(run_as) if shared_cache else None
    if mode == "bwrap":
        env = _child_env(home, bwrap=True)
        # bwrap itself gets the scrubbed environment too: inside the PID namespace it is
        # process 1, whose /proc/1/environ the candidate can read.
        argv = _bwrap_command(home, env, cache)
    else:
        env = _child_env(home)
        if cache is not None:
            env["JAX_COMPILATION_CACHE_DIR"] = cache
        argv = [sys.executable, "-m", "autotts_jax.untrusted.worker", str(home)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=home, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=env, start_new_session=True,
        )
        killed: str | None = None
        try:
            while proc.poll() is None:
                time.sleep(0.1)
                now = time.monotonic()
                phase, since = _read_phase(home)
                in_phase = (time.time() - since) if since is not None else now - t_start
                limit = {"load": limits.load_s, "trace": limits.trace_s,
                         "done": _DONE_GRACE_S}.get(phase)
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
        sig = _signal_of(rc, mode)
        if sig == signal.SIGXCPU:
            reason = f"cpu: exceeded the CPU-time limit of {limits.cpu_s}s"
            stage = "cpu"
        elif sig == signal.SIGXFSZ:
            stage, reason = "disk", f"disk: wrote a file over the limit of {limits.fsize_mb} MiB"
        elif any(w in tail for w in ("RESOURCE_EXHAUSTED", "bad_alloc", "MemoryError",
                                     "Cannot allocate memory", "out of memory")):
            stage, reason = "memory", f"memory: exceeded the memory limit of {limits.memory_mb} MiB"
        else:
            stage = "crash"
            how = f"signal {sig}" if sig is not None else f"exit status {rc}"
            reason = f"crash: the sandbox process died ({how}) without a result"
        return Outcome(False, stage, reason + (f"\n{tail}" if tail else ""),
                       timing={"wall": wall}, log_tail=tail)
    try:
        return _from_result(home, limits, wall, tail)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # the candidate may have written it
        return Outcome(False, "crash", f"crash: unreadable or malformed result ({exc})",
                       timing={"wall": wall}, log_tail=tail)


def _numbers(value: Any) -> Any:
    """``value`` if it is a number or a list of numbers (timings), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list) and all(isinstance(v, int | float) and not isinstance(v, bool)
                                       for v in value):
        return [float(v) for v in value]
    return None


def _from_result(home: Path, limits: Limits, wall: float, tail: str) -> Outcome:
    res = json.loads(_read_private(home / "result.json", 64 << 20))
    if not isinstance(res, dict):
        raise ValueError("result.json does not hold an object")
    raw = res.get("timing") if isinstance(res.get("timing"), dict) else {}
    timing: dict[str, Any] = {}
    for k, v in raw.items():
        if (num := _numbers(v)) is not None:
            timing[str(k)[:40]] = num
    timing["wall"] = wall
    common = dict(opened=[str(o) for o in list(res.get("opened") or [])[:2000]],
                  denied=[str(d) for d in list(res.get("denied") or [])[:50]],
                  timing=timing, log_tail=tail)
    if not res.get("ok"):
        stage = str(res.get("stage") or "error")
        if not re.fullmatch(r"[a-z_]{1,20}", stage):
            stage = "error"
        if stage == "memory":
            text = (f"memory: exceeded the memory limit of {limits.memory_mb} MiB "
                    f"({str(res.get('error', ''))[:300]})")
        else:
            # One line of error (the traceback goes after the first newline).
            error = " ".join(str(res.get("error", "")).split())
            text = f"{stage}: {error}"
            tb = str(res.get("traceback") or "").strip()
            if tb and tb not in text:
                text += "\n" + tb
        return Outcome(False, stage, text, **common)
    return Outcome(True, "ok", "", stop_reasons=tuple(str(r) for r in
                                                      res.get("stop_reasons") or ()),
                   needs=[int(n) for n in res["needs"]], traces=list(res.get("traces") or []),
                   name=str(res.get("name") or ""), **common)
