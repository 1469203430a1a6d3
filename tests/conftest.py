"""Shared fixtures: where the checkout, the packed trajectories and ``shared/`` are, and a
factory for tiny synthetic upstream replay files.

``shared/`` (the upstream replay JSON and the published reference figures) sits beside the
checkout, not inside it, and may be absent on a user's machine.  Tests that need it carry the
``requires_shared`` marker and are skipped with a reason naming the missing folder.

When ``shared/`` is present, a skipped shared-data test is a failure of the run (exit status
1, listed at the end): otherwise a broken or incomplete ``shared/`` would pass silently with
the parity tests skipped.  A shared-data test is one with the ``requires_shared`` marker, one
that uses the ``shared_dir`` / ``upstream_dir`` fixtures, or one whose skip reason names the
``shared/`` folder.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"
UPSTREAM_DIR = SHARED_DIR / "upstream_replay"
TRAJECTORIES_DIR = REPO_ROOT / "trajectories"

MODELS = ("Qwen3-0.6B", "Qwen3-1.7B", "Qwen3-4B", "Qwen3-8B")
BENCHMARKS = ("aime24", "aime25", "hmmt25")
STORES = tuple(f"{m}/{b}" for m in MODELS for b in BENCHMARKS)

SHARED_MISSING_REASON = (
    f"upstream replay data not found at {UPSTREAM_DIR} "
    "(shared/ must sit beside the checkout to run this test)"
)

# ``@requires_shared`` (imported from here) and ``@pytest.mark.requires_shared`` are the same.
requires_shared = pytest.mark.requires_shared


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requires_shared: needs ../shared/upstream_replay; skipped when it is absent"
    )


_SHARED_FIXTURES = frozenset({"shared_dir", "upstream_dir"})
_shared_tests: set[str] = set()  # node ids of the collected shared-data tests
_shared_skips: list[str] = []  # "node id: reason" of those skipped (and of skips naming shared/)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "requires_shared" in item.keywords or _SHARED_FIXTURES & set(
            getattr(item, "fixturenames", ())
        ):
            _shared_tests.add(item.nodeid)
    if UPSTREAM_DIR.is_dir():
        return
    skip = pytest.mark.skip(reason=SHARED_MISSING_REASON)
    for item in items:
        if "requires_shared" in item.keywords:
            item.add_marker(skip)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not report.skipped:
        return
    reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
    if report.nodeid in _shared_tests or str(SHARED_DIR) in reason:
        _shared_skips.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if SHARED_DIR.is_dir() and _shared_skips and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if SHARED_DIR.is_dir() and _shared_skips:
        terminalreporter.section("shared-data tests skipped although shared/ is present", red=True)
        for line in _shared_skips:
            terminalreporter.line(line)
        terminalreporter.line(f"{SHARED_DIR} exists, so these must run: the run fails")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def trajectories_dir() -> Path:
    return TRAJECTORIES_DIR


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``shared/`` beside the checkout; skips the test when it is absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"shared/ not found at {SHARED_DIR} (it must sit beside the checkout)")
    return SHARED_DIR


@pytest.fixture(scope="session")
def upstream_dir() -> Path:
    """``shared/upstream_replay``; skips the test when it is absent."""
    if not UPSTREAM_DIR.is_dir():
        pytest.skip(SHARED_MISSING_REASON)
    return UPSTREAM_DIR


# A tiny upstream file: 2 questions, probe_freq 1000.  It exercises what the interning has to
# get right: a final answer that also appears as a probe, a probe-only answer ("3"), a trace
# answer that is no branch's answer ("9"), an empty trace, non-ASCII text, unequal branch
# counts and unequal probe depths.
TINY_RECORDS: list[dict] = [
    {
        "question": "What is 1 + 0? (tiny synthetic question, \u00e9\u00e8 \u2211)",
        "final_answers_trace": ["1", "2", "9"],
        "each_branch": [
            [["1", "1"], 2000, "1"],
            [["2"], 900, "2"],
            [["3", "2", "1"], 2600, "1"],
        ],
        "gold_answer": "1",
        "probe_freq": 1000,
    },
    {
        "question": "Second question",
        "final_answers_trace": [],
        "each_branch": [
            [["\\frac{1}{2}", "7", "7", "7"], 3500, "7"],
        ],
        "gold_answer": "7",
        "probe_freq": 1000,
    },
]


def tiny_records() -> list[dict]:
    """A fresh deep copy of :data:`TINY_RECORDS` (safe to mutate)."""
    return copy.deepcopy(TINY_RECORDS)


UpstreamFactory = Callable[..., Path]


@pytest.fixture
def make_upstream(tmp_path: Path) -> UpstreamFactory:
    """Write a synthetic upstream JSON file and return its path.

    ``make_upstream(mutate=None, *, model="TinyModel", benchmark="tiny", records=None,
    raw=None, root=tmp_path / "upstream")`` writes ``root/<model>/<benchmark>.json``:
    ``raw`` (str or bytes) verbatim if given, else ``records`` (default :data:`TINY_RECORDS`)
    after ``mutate(records)`` has edited them in place.
    """

    def factory(
        mutate: Callable[[list[dict]], object] | None = None,
        *,
        model: str = "TinyModel",
        benchmark: str = "tiny",
        records: list[dict] | None = None,
        raw: str | bytes | None = None,
        root: Path | None = None,
    ) -> Path:
        path = (root or tmp_path / "upstream") / model / f"{benchmark}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        if raw is not None:
            path.write_bytes(raw.encode("utf-8") if isinstance(raw, str) else raw)
            return path
        recs = copy.deepcopy(TINY_RECORDS if records is None else records)
        if mutate is not None:
            mutate(recs)
        try:
            path.write_text(json.dumps(recs, ensure_ascii=False), encoding="utf-8")
        except UnicodeEncodeError:  # a lone surrogate: only writable as a \ud800 escape
            path.write_text(json.dumps(recs), encoding="ascii")
        return path

    return factory


def files_under(path: Path) -> list[Path]:
    """Every file (hidden and temporary ones included) below ``path``; [] if it is absent."""
    if not path.exists():
        return []
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if not p.is_dir())
