"""The escape half of the red-team corpus: every attack module in this folder, run through the
real sandbox.

Each module is a candidate written as an attacker would write it (its header says what it
attempts), with a payload that is observable if it succeeds: a marker file at a path outside
the sandbox (``@MARKER@``, replaced by a path under the test's temporary directory, plus fixed
paths in /tmp, the home and the checkout), a secret of this process's environment in the
rejection reason, the content of a credentials file of the user's (``@SECRET_FILE@``), a
connection to a listener of this test (``@PORT@``), a surviving process.

Every module is checked twice: with the static checks on (the linter's verdict; a module it
passes goes on to the sandbox, as in the discovery loop) and with the static checks bypassed,
straight into :func:`run_candidate`, which proves that the operating-system layer holds on its
own.  A module the linter passes is run once and serves both.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import tempfile
from pathlib import Path

import pytest
from conftest import TRAJECTORIES_DIR

import autotts_jax
from autotts_jax.engine.static import check_source
from autotts_jax.store.split import SearchSplit
from autotts_jax.untrusted.sandbox import Limits, resolve_containment, run_candidate

HERE = Path(__file__).parent
ATTACKS = sorted(p.stem for p in HERE.glob("*.py") if not p.name.startswith("test_"))
PKG = Path(autotts_jax.__file__).resolve().parent
FIXED_MARKERS = (Path("/tmp/autotts-redteam-marker.txt"),
                 Path.home() / "autotts-redteam-marker.txt",
                 PKG / "redteam_marker.txt", PKG.parent / "redteam_marker.txt")
TYPING_SYS = "importing 'sys' from 'typing' is not allowed"

# attack -> (what the linter says first; None: it passes the linter), (sandbox stage, reason
# pattern).  The sandbox expectations hold with bwrap containment.
EXPECTED: dict[str, tuple[str | None, str, str]] = {
    "closure_wrapped": ("use of 'getattr' is not allowed", "load",
                        r"sandbox: os\.system is not allowed"),
    "ctypes_libc": (TYPING_SYS, "load", r"hooked: sandbox: ctypes\.dlopen is not allowed"),
    "dataclasses_builtins_exec": ("importing 'builtins' from 'dataclasses' is not allowed",
                                  "load", r"sandbox: writing \S+ is not allowed"),
    # The bomb ends either when the worker's own fork fails (RLIMIT_NPROC) and it reports, or
    # at the load-phase limit, or when a forked copy reported and the rest do not exit: each
    # of these kills the whole PID namespace.  Which comes first depends on the machine.
    "fork_bomb": (TYPING_SYS, "load|timeout",
                  r"BlockingIOError|Resource temporarily unavailable|phase '(load|done)' "
                  r"exceeded its limit.*process group was killed"),
    "frame_walk_unhook": (TYPING_SYS, "load",
                          r"marker: \[Errno 2\] No such file or directory.*environ: \[Errno 13\] "
                          r"Permission denied: '/proc/1/environ'"),
    "gc_subprocess": (TYPING_SYS, "load", r"shell: 1 .*cannot create directory"),
    "h5py_heldout": (TYPING_SYS, "load", r"held-out: .*FileNotFoundError.*No such file"),
    "heldout_abspath": (TYPING_SYS, "load",
                        r"hooked: sandbox: opening \S+aime25\.h5 is not allowed.*unhooked: "
                        r"\[Errno 2\] No such file or directory"),
    "huge_allocation": (None, "memory", r"memory: exceeded the memory limit of 3000 MiB"),
    "import_loop": (None, "timeout", r"phase 'load' exceeded its limit of 3s.*process group "
                                     r"was killed"),
    "match_globals": ("the class pattern keyword '__globals__' reads a private or forbidden "
                      "attribute", "load", r"sandbox: writing \S+ is not allowed"),
    "network_loopback": (TYPING_SYS, "load", r"network: ConnectionRefusedError"),
    "numpy_dump": ("attribute 'dump' is not allowed", "load",
                   r"sandbox: writing \S+ is not allowed"),
    "pickle_reduce": (TYPING_SYS, "load", r"sandbox: os\.system is not allowed"),
    "proc_environ_unhooked": (TYPING_SYS, "load",
                              r"environ: \[\(1, \"\[Errno 13\] Permission denied: "
                              r"'/proc/1/environ'"),
    "proc_parent_environ": (TYPING_SYS, "load",
                            r"sandbox: opening /proc/1/environ is not allowed"),
    "pure_callback_alias": ("use of 'vars' is not allowed", "load",
                            r"CpuCallback error.*sandbox: writing \S+ is not allowed"),
    "signal_parent": (TYPING_SYS, "load", r"signals: \['1: \[Errno 1\] Operation not permitted"),
    "symlink_result": (TYPING_SYS, "crash",
                       r"crash: unreadable or malformed result \(\[Errno 40\] Too many levels "
                       r"of symbolic links"),
    "trace_loop": (None, "timeout", r"phase 'trace' exceeded its limit of 3s.*process group "
                                    r"was killed"),
    "typing_sys_system": (TYPING_SYS, "load", r"sandbox: os\.system is not allowed"),
    "weakref_finalizer": (TYPING_SYS, "load", r"RuntimeError: finalizer armed"),
    "write_outside": (TYPING_SYS, "load",
                      r"redteam_marker\.txt: \[Errno 30\] Read-only file system.*"
                      r"/tmp/autotts-redteam-marker\.txt: \[Errno 13\] Permission denied"),
}
LIMITS = Limits(wall_s=60, load_s=3, trace_s=3, cpu_s=30, memory_mb=3000,
                nproc=64 + 4 * (os.cpu_count() or 1))


def _bwrap_problem() -> str | None:
    try:
        resolve_containment("bwrap")
    except Exception as exc:  # noqa: BLE001
        return str(exc)
    return None


pytestmark = pytest.mark.skipif(
    _bwrap_problem() is not None,
    reason=f"bubblewrap containment unavailable here ({_bwrap_problem()}); .ci/run installs it")


def test_the_corpus_is_complete():
    assert len(ATTACKS) >= 15
    assert sorted(EXPECTED) == ATTACKS
    for name in ATTACKS:
        assert (HERE / f"{name}.py").read_text().startswith("# Attempts: ")


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            found.append(f"{p.name}: {cmd[:200]}")
    return found


def _descendants() -> list[str]:
    parent: dict[int, int] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            parent[int(p.name)] = int(fields[1])
    me, out = os.getpid(), []
    for pid in parent:
        seen, q = set(), pid
        while q in parent and q not in seen and q > 1:
            seen.add(q)
            q = parent[q]
            if q == me:
                out.append(str(pid))
                break
    return out


@pytest.fixture(scope="module")
def split():
    return SearchSplit(TRAJECTORIES_DIR)


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_is_contained(name, split, tmp_path, monkeypatch):
    secret = "sk-redteam-" + secrets.token_hex(16)
    plain_secret = "plain-" + secrets.token_hex(8)  # not key-shaped: caught as an env value
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("AUTOTTS_REDTEAM_TOKEN", plain_secret)
    sandboxes = tmp_path / "sandboxes"
    sandboxes.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(sandboxes))
    for m in FIXED_MARKERS:
        m.unlink(missing_ok=True)
    marker = tmp_path / "outside" / "marker.txt"
    marker.parent.mkdir()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.setblocking(False)
    # A credentials file of the user's (outside the sandbox), neither in the environment nor
    # shaped like a key: only not reading it keeps it out of the reason.
    file_secret = "token-in-a-file-" + secrets.token_hex(8)
    secret_file = tmp_path / "credentials"
    secret_file.write_text(f'{{"ok": false, "stage": "load", "error": "{file_secret}"}}')
    source = ((HERE / f"{name}.py").read_text().replace("@MARKER@", str(marker))
              .replace("@PORT@", str(listener.getsockname()[1]))
              .replace("@SECRET_FILE@", str(secret_file)))
    lint, stage, pattern = EXPECTED[name]

    report = check_source(source)
    if lint is None:
        assert report.ok, report.message()
    else:
        assert not report.ok and lint in report.problems[0], report.message()

    out = run_candidate(source, split, betas=[0.0, 1.0], seeds=[0], conformance=False,
                        determinism=False, n_traces=0, limits=LIMITS, containment="bwrap")
    try:
        conn, _ = listener.accept()
        conn.close()
        connected = True
    except BlockingIOError:
        connected = False
    finally:
        listener.close()

    assert out.containment == "bwrap"
    assert not out.ok
    assert re.fullmatch(stage, out.stage), (out.stage, out.reason)
    assert out.reason.startswith(f"{out.stage}: ")
    assert re.search(pattern, out.reason, re.S), out.reason
    everything = "\n".join([out.reason, out.log_tail, *out.denied, *out.opened])
    assert secret not in everything and plain_secret not in everything
    assert file_secret not in everything
    assert not marker.exists()
    assert not [m for m in FIXED_MARKERS if m.exists()]
    assert not connected
    assert not _descendants()
    assert not _processes_mentioning(str(sandboxes))
