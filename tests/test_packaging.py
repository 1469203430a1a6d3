"""What an install carries and where the commands look: the package list and package data of
``pyproject.toml`` against the tree, the stores' location override, the compilation cache's
directory rules, and the console/log-file split of the messages.  (``.ci/run`` builds a real
wheel and runs it outside the checkout.)"""

from __future__ import annotations

import fnmatch
import logging
import os
import platform
import subprocess
import sys
import tomllib
from pathlib import Path

import jax
import pytest
from conftest import REPO_ROOT

from autotts_jax.errors import AutoTTSError
from autotts_jax.experiments import paths
from autotts_jax.utils import jaxcache, logs

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
_SCRIPT = Path(sys.executable).with_name("autotts-jax")
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "autotts_jax.cli"]
SMALL = ["controller=sc", "data.model=Qwen3-8B", "data.benchmark=aime24", "evaluation.seeds=2",
         "evaluation.workers=1", "output.progress=false", "output.table=false"]


def test_every_subpackage_is_listed() -> None:
    """The package list is explicit (because of the conf/ and trajectories/ mapping): a new
    subpackage missing from it would be absent from every non-editable install."""
    setuptools = PYPROJECT["tool"]["setuptools"]
    mapped = setuptools["package-dir"]
    assert mapped == {"autotts_jax.conf": "conf", "autotts_jax.trajectories": "trajectories"}
    found = {
        ".".join(p.parent.relative_to(REPO_ROOT).parts)
        for p in (REPO_ROOT / "autotts_jax").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert set(setuptools["packages"]) == found | set(mapped)


@pytest.mark.parametrize("package", ["autotts_jax.conf", "autotts_jax.trajectories"])
def test_package_data_covers_the_shipped_files(package: str) -> None:
    root = REPO_ROOT / PYPROJECT["tool"]["setuptools"]["package-dir"][package]
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"][package]
    files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    assert files
    # setuptools' "**/" also matches files at the top of the package
    missed = [f for f in files if not any(
        fnmatch.fnmatch(f, pat) or fnmatch.fnmatch(f, pat.removeprefix("**/")) for pat in patterns
    )]
    assert missed == []
    if package == "autotts_jax.trajectories":
        assert sum(f.endswith(".h5") for f in files) == 12


def test_shipped_locations_resolve_in_a_checkout() -> None:
    assert (paths.CONF_DIR / "evaluate.yaml").is_file()
    assert (paths.SHIPPED_TRAJECTORIES / "Qwen3-8B" / "aime24.h5").is_file()
    assert paths.check_conf_dir() == paths.CONF_DIR


def test_trajectories_env_var(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(paths.TRAJECTORIES_ENV, str(tmp_path))
    assert paths.default_trajectories() == tmp_path
    monkeypatch.setenv(paths.TRAJECTORIES_ENV, "  ")
    assert paths.default_trajectories() == paths.SHIPPED_TRAJECTORIES
    with pytest.raises(AutoTTSError, match=paths.TRAJECTORIES_ENV):
        paths.check_trajectories(tmp_path / "missing")


def test_missing_stores_named_by_the_env_var_are_one_error_line(tmp_path: Path) -> None:
    env = {**os.environ, paths.TRAJECTORIES_ENV: str(tmp_path / "nowhere")}
    proc = subprocess.run([*CLI, "evaluate", *SMALL, f"hydra.run.dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert "nowhere: trajectories directory not found" in proc.stderr
    assert "AUTOTTS_JAX_TRAJECTORIES" in proc.stderr


# --------------------------------------------------------------------------- cache


def test_cache_dir_rules(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(jaxcache.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    default = jaxcache.resolve_cache_dir()
    assert default.parent == tmp_path / "xdg" / "autotts-jax" / "jax"
    assert default.name.startswith(platform.machine())
    monkeypatch.setenv(jaxcache.CACHE_ENV, str(tmp_path / "env"))
    assert jaxcache.resolve_cache_dir().parent == tmp_path / "env"
    assert jaxcache.resolve_cache_dir(str(tmp_path / "cfg")).parent == tmp_path / "cfg"
    assert jaxcache.resolve_cache_dir("off") is None
    monkeypatch.setenv(jaxcache.CACHE_ENV, "OFF")
    assert jaxcache.resolve_cache_dir() is None
    assert jaxcache.resolve_cache_dir("") is None
    # the config value wins over the environment
    assert jaxcache.resolve_cache_dir(str(tmp_path / "cfg")).parent == tmp_path / "cfg"


def test_unwritable_cache_dir_is_a_warning_not_a_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with caplog.at_level(logging.WARNING, logger="autotts_jax"):
        assert jaxcache.enable(str(blocker / "cache")) is None
    assert "compilation cache off" in caplog.text


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="checks the CPU fallback warning")
def test_cache_is_filled_then_reused_and_gpu_request_warns_on_cpu(tmp_path: Path) -> None:
    """Two processes on one cache directory: the first writes entries, the second adds none
    (it loads them); ``device=gpu`` on a CPU-only JAX is one warning line, not a failure.  The
    run directory's log file holds what the console showed."""
    cache = tmp_path / "cache"

    def run(name: str, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*CLI, "evaluate", *SMALL, f"jax_cache={cache}", f"hydra.run.dir={tmp_path / name}",
             *extra], capture_output=True, text=True, timeout=600)

    first = run("a")
    assert first.returncode == 0, first.stderr
    entries = sorted(p.name for p in cache.rglob("*-cache"))
    assert entries
    second = run("b", "device=gpu")
    assert second.returncode == 0, second.stderr
    assert sorted(p.name for p in cache.rglob("*-cache")) == entries
    assert second.stderr.count("\n") == 1
    assert second.stderr.startswith("warning: a GPU was requested (device=gpu) but JAX runs "
                                    "on the CPU")
    console = second.stdout.splitlines()
    assert console[0].startswith(f"jax {jax.__version__}: backend cpu")
    log = (tmp_path / "b" / "evaluate.log").read_text()
    assert "[autotts_jax.evaluate][INFO] - " + console[0] in log
    assert "[autotts_jax.evaluate][WARNING] - warning: a GPU was requested" in log
    assert "evaluate: 7 rows from 1 jobs" in console[-1] and console[-1] in log


# --------------------------------------------------------------------------- console


def test_console_splits_info_and_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    before = list(root.handlers), root.level
    try:
        logs.console()
        logs.console()  # idempotent
        log = logging.getLogger("autotts_jax.test")
        log.info("plain %s", "info")
        log.warning("a warning")
        logging.getLogger("somelib").info("not shown")
        out, err = capsys.readouterr()
        assert out == "plain info\n" and err == "a warning\n"
    finally:
        for h in list(root.handlers):
            if h not in before[0]:
                root.removeHandler(h)
        root.setLevel(before[1])
