"""Containment of candidate code by the operating system (bubblewrap), the fallback without it,
and the rejection text a candidate controls (bounded, secrets redacted)."""

from __future__ import annotations

import json
import os
import secrets
import socket
import tempfile
from pathlib import Path

import pytest
from conftest import REPO_ROOT, SHARED_DIR, TRAJECTORIES_DIR

from autotts_jax.errors import AutoTTSError
from autotts_jax.store.split import SearchSplit
from autotts_jax.untrusted import sandbox as S
from autotts_jax.untrusted.sandbox import Limits, redact, resolve_containment, run_candidate

QUICK = dict(betas=[0.0, 1.0], seeds=[0], conformance=False, determinism=False, n_traces=0,
             limits=Limits(wall_s=120, load_s=30, trace_s=30))


def _bwrap_problem() -> str | None:
    try:
        resolve_containment("bwrap")
    except AutoTTSError as exc:
        return str(exc)
    return None


needs_bwrap = pytest.mark.skipif(
    _bwrap_problem() is not None,
    reason=f"bubblewrap containment unavailable here ({_bwrap_problem()}); .ci/run installs it")


@pytest.fixture(scope="module")
def split():
    return SearchSplit(TRAJECTORIES_DIR)


# --------------------------------------------------------------------------- modes


def test_containment_modes_and_the_single_fallback_warning(monkeypatch, capsys):
    with pytest.raises(AutoTTSError, match="not one of auto, bwrap, none"):
        resolve_containment("docker")
    assert resolve_containment("none") == "rlimits-only"
    monkeypatch.setattr(S, "_bwrap_problem", lambda: "bubblewrap (bwrap) is not installed")
    monkeypatch.setattr(S, "_WARNED", {})
    with pytest.raises(AutoTTSError, match="containment=bwrap: bubblewrap .* not installed"):
        resolve_containment("bwrap")
    assert resolve_containment("auto") == "rlimits-only"
    assert resolve_containment("auto") == "rlimits-only"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: bubblewrap (bwrap) is not installed")
    assert "rlimits-only" in err[0]


def test_run_json_records_the_containment(monkeypatch):
    from autotts_jax.explorer.config import default_conf
    from autotts_jax.explorer.loop import run_spec

    conf = default_conf(explorer={"name": "command", "command": "true"},
                        sandbox={"containment": "none"})
    assert run_spec(conf, ["m"])["containment"] == "rlimits-only"
    assert run_spec(default_conf(), ["m"])["containment"] == "in-process"  # evolve
    monkeypatch.setattr(S, "_bwrap_problem", lambda: None)
    conf["sandbox"]["containment"] = "auto"
    assert run_spec(conf, ["m"])["containment"] == "bwrap"


def test_rlimits_only_mode_still_runs_and_says_so(split):
    out = run_candidate("raise RuntimeError('plain failure')\n", split, containment="none",
                        **QUICK)
    assert out.containment == "rlimits-only"
    assert not out.ok and out.stage == "load"
    assert out.reason.startswith("load: RuntimeError: plain failure")


# --------------------------------------------------------------------------- text


def test_redact_environment_values_and_key_shapes(monkeypatch):
    monkeypatch.setenv("SOME_TOKEN", "correct-horse-battery")
    text = ("a correct-horse-battery b sk-abcdefghijklmnop c ghp_0123456789abcdefABCDEF "
            "d hf_abcdefghijklmnopqrstu e AKIAABCDEFGHIJKLMNOP f Bearer abc.def-ghi_jkl "
            "g " + "0123456789abcdef" * 3 + " short=abc")
    out = redact(text)
    for leaked in ("correct-horse-battery", "sk-abcdefghijklmnop", "ghp_0123", "hf_abcdef",
                   "AKIAABCD", "abc.def-ghi_jkl", "0123456789abcdef0123"):
        assert leaked not in out, (leaked, out)
    assert out.count("[redacted]") == 7 and out.endswith("short=abc")
    assert redact("value xyz", secrets=["xyz"]) == "value [redacted]"


def test_a_secret_the_candidate_was_given_never_reaches_the_reason(split, monkeypatch):
    key = "sk-test-" + secrets.token_hex(12)
    plain = "not-a-key-shape-" + secrets.token_hex(6)
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("AUTOTTS_SOME_PASSWORD", plain)
    source = (f"print('stdout: {key} {plain}')\n"
              f"raise RuntimeError('leak {key} {plain} ' + 'word ' * 20_000)\n")
    out = run_candidate(source, split, **QUICK)
    assert not out.ok and out.stage == "load"
    for text in (out.reason, out.log_tail):
        assert key not in text and plain not in text
    assert "leak [redacted] [redacted]" in out.reason
    assert "stdout: [redacted] [redacted]" in out.log_tail
    head, _, tb = out.reason.partition("\n")
    assert len(head) <= S.REASON_CHARS + 40 and head.endswith("characters cut]")
    assert len(tb) <= S.TRACEBACK_CHARS + 40
    assert len(out.log_tail) <= S.LOG_CHARS + 40


# --------------------------------------------------------------------------- bwrap

PROBE = '''\
import json
import os
import socket

paths = json.loads({paths!r})
seen = {{k: os.path.exists(v) for k, v in paths.items()}}
try:
    with open(paths["package_file"], "a"):
        pass
    seen["package_writable"] = True
except OSError:
    seen["package_writable"] = False
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=3).close()
    seen["network"] = True
except OSError:
    seen["network"] = False
allowed = {{"PATH", "LANG", "LC_ALL", "LC_CTYPE", "HOME", "TMPDIR", "PYTHONHASHSEED",
           "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PWD"}}
# TF_*/TPU_*: set by jaxlib itself when it is imported, not passed in.
seen["extra_env"] = [k for k in os.environ
                     if k not in allowed and not k.startswith(("JAX_", "XLA_", "TF_", "TPU_"))]
seen["pids"] = len([p for p in os.listdir("/proc") if p.isdigit()])
seen["ppid"] = os.getppid()
seen["uid"] = os.getuid()
seen["root"] = sorted(os.listdir("/"))
raise RuntimeError("PROBE" + json.dumps(seen).replace("[redacted]", "?"))
'''


@needs_bwrap
def test_bwrap_hides_the_checkout_home_shared_other_temp_dirs_and_the_network(split,
                                                                            monkeypatch):
    """Static checks bypassed and the audit hook left alone: only the OS decides what exists."""
    from autotts_jax.untrusted import worker

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-" + secrets.token_hex(12))
    other_tmp = Path(tempfile.mkdtemp(prefix="autotts-other-"))
    (other_tmp / "secret.txt").write_text("x")
    # The home itself may exist inside as the parent of a bound Python installation
    # (~/.pyenv): what must not show is what the user keeps there.
    home_file = Path.home() / f".autotts-test-{secrets.token_hex(4)}"
    home_file.write_text("x")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    paths = {
        "readme": str(REPO_ROOT / "README.md"), "tests": str(REPO_ROOT / "tests"),
        "conf": str(REPO_ROOT / "conf"),
        "trajectories": str(TRAJECTORIES_DIR / split.models[0] / "aime24.h5"),
        "held_out": str(TRAJECTORIES_DIR / split.models[0] / "aime25.h5"),
        "shared": str(SHARED_DIR.parent / "shared"), "home": str(home_file),
        "other_tmp": str(other_tmp / "secret.txt"),
        "package_file": str(Path(worker.__file__)),
    }
    source = PROBE.format(paths=json.dumps(paths), port=listener.getsockname()[1])
    # The probe goes straight in: the static checks would refuse its imports.
    try:
        out = run_candidate(source, split, containment="bwrap", **QUICK)
    finally:
        listener.close()
        (other_tmp / "secret.txt").unlink()
        other_tmp.rmdir()
        home_file.unlink()
    assert out.containment == "bwrap"
    assert not out.ok and out.stage == "load", out.reason
    seen = json.loads(out.reason.split("PROBE", 1)[1].split("\n", 1)[0])
    for hidden in ("readme", "tests", "conf", "trajectories", "held_out", "shared", "home",
                   "other_tmp"):
        assert seen[hidden] is False, (hidden, seen)
    assert seen["package_file"] is True and seen["package_writable"] is False
    assert seen["network"] is False
    assert seen["extra_env"] == []
    assert seen["ppid"] == 1 and seen["pids"] <= 3  # its own PID namespace
    if os.geteuid() == 0:
        assert seen["uid"] == S.NOBODY
    # The root holds the system directories and the parents of the bound directories only.
    bound_tops = {Path(d).parts[1] for d in S._python_dirs()}
    assert set(seen["root"]) <= {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc",
                                 "proc", "dev", "tmp", "sys", *bound_tops}, seen["root"]
