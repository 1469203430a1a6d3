"""Bad input to ``pack``, ``unpack`` and ``info``: one clear line, exit 2, no output left.

Each case goes through the real CLI entry point :func:`autotts_jax.cli.main` and checks that

* the exit status is 2 and nothing is printed on stdout;
* stderr is exactly one line, ``error: <file>: <problem>``, naming the file and the problem
  (the missing key, the field, ``probe_freq``, ``schema_version``, ...);
* the output location holds no file at all: no store, no JSON, no temporary leftovers.

Subprocess runs of the installed ``autotts-jax`` command are in ``test_cli_store.py``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import pytest
from conftest import TRAJECTORIES_DIR, UPSTREAM_DIR, files_under, requires_shared

from autotts_jax.cli import main
from autotts_jax.errors import AutoTTSError
from autotts_jax.store import pack


def assert_one_error_line(capsys, rc: int, *needles: str) -> str:
    captured = capsys.readouterr()
    assert rc == 2, f"exit status {rc}, stderr: {captured.err!r}"
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, f"expected one error line, got {captured.err!r}"
    line = lines[0]
    assert line.startswith("error: "), line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def _set(rec_path: tuple, value) -> Callable[[list[dict]], None]:
    """Mutation: set ``records[i][k]...`` (given as a path tuple) to ``value``."""

    def mutate(records: list[dict]) -> None:
        obj = records
        for key in rec_path[:-1]:
            obj = obj[key]
        obj[rec_path[-1]] = value

    return mutate


def _pop(rec_path: tuple) -> Callable[[list[dict]], None]:
    def mutate(records: list[dict]) -> None:
        obj = records
        for key in rec_path[:-1]:
            obj = obj[key]
        obj.pop(rec_path[-1])

    return mutate


def _append(rec_path: tuple, value) -> Callable[[list[dict]], None]:
    def mutate(records: list[dict]) -> None:
        obj = records
        for key in rec_path:
            obj = obj[key]
        obj.append(value)

    return mutate


# id -> (mutation of the tiny records, substrings the error line must contain)
BAD_RECORDS: dict[str, tuple[Callable[[list[dict]], None], tuple[str, ...]]] = {
    # missing keys
    **{
        f"missing-{key}": (_pop((1, key)), ("question 1", f"missing key '{key}'"))
        for key in ("question", "gold_answer", "probe_freq", "each_branch", "final_answers_trace")
    },
    # wrong types
    "question-not-str": (_set((0, "question"), 5), ("question 0.question", "expected a string")),
    "gold-not-str": (_set((1, "gold_answer"), 7), ("question 1.gold_answer", "expected a string")),
    "probe_freq-str": (_set((0, "probe_freq"), "1000"),
                       ("question 0.probe_freq", "expected an integer", "str")),
    "probe_freq-zero": (_set((0, "probe_freq"), 0), ("question 0.probe_freq", "positive")),
    "each_branch-dict": (_set((0, "each_branch"), {"a": 1}),
                         ("question 0.each_branch", "non-empty list")),
    "each_branch-empty": (_set((0, "each_branch"), []),
                          ("question 0.each_branch", "non-empty list")),
    "trace-str": (_set((0, "final_answers_trace"), "1"),
                  ("question 0.final_answers_trace", "list of strings")),
    "trace-item-int": (_set((0, "final_answers_trace", 1), 2),
                       ("question 0.final_answers_trace[1]", "expected a string")),
    "record-not-object": (_set((1,), ["q"]), ("question 1", "expected an object, got list")),
    "probes-not-list": (_set((0, "each_branch", 0, 0), "1"),
                        ("question 0.each_branch[0][0]", "list of probe answers")),
    "probe-item-int": (_set((0, "each_branch", 2, 0, 1), 2),
                       ("question 0.each_branch[2][0][1]", "expected a string, got int")),
    "final-answer-int": (_set((0, "each_branch", 1, 2), 2),
                         ("question 0.each_branch[1][2] (final_answer)", "expected a string")),
    "branch-not-list": (_set((0, "each_branch", 1), "x"),
                        ("question 0.each_branch[1]", "[probe_list, branch_tokens, final_answer]")),
    "question-nul": (_set((0, "question"), "a\x00b"), ("question 0.question", "NUL")),
    "gold-surrogate": (_set((1, "gold_answer"), "\ud800"),
                       ("question 1.gold_answer", "not valid Unicode")),
    # a branch triple of the wrong length
    "triple-short": (_pop((0, "each_branch", 1, 2)),
                     ("question 0.each_branch[1]", "[probe_list, branch_tokens, final_answer]",
                      "got a list of 2")),
    "triple-long": (_append((1, "each_branch", 0), "extra"),
                    ("question 1.each_branch[0]", "got a list of 4")),
    # empty probe lists
    "empty-probes": (_set((1, "each_branch", 0, 0), []),
                     ("question 1.each_branch[0][0]", "empty probe list")),
    # non-integer token counts
    **{
        f"tokens-{name}": (
            _set((0, "each_branch", 2, 1), value),
            ("question 0.each_branch[2][1] (branch_tokens)", "expected an integer", typename),
        )
        for name, value, typename in (
            ("float", 2600.5, "float"),
            ("integral-float", 2600.0, "float"),
            ("str", "2600", "str"),
            ("bool", True, "bool"),
            ("null", None, "NoneType"),
            ("list", [2600], "list"),
        )
    },
    "tokens-negative": (_set((0, "each_branch", 0, 1), -1),
                        ("question 0.each_branch[0][1] (branch_tokens)", "negative")),
    "tokens-too-large": (_set((0, "each_branch", 0, 1), 2**31),
                         ("question 0.each_branch[0][1] (branch_tokens)", "int32")),
    # mixed probe_freq inside one file
    "mixed-probe_freq": (_set((1, "probe_freq"), 500),
                         ("probe_freq", "mixed", "question 1 has 500")),
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_pack_bad_records(case, make_upstream, tmp_path, capsys):
    mutate, needles = BAD_RECORDS[case]
    src = make_upstream(mutate)
    out = tmp_path / "out"
    rc = main(["pack", str(src), str(out)])
    assert_one_error_line(capsys, rc, f"error: {src}: ", *needles)
    assert files_under(out) == []
    # the same failure into a single .h5 output
    single = tmp_path / "single" / "x.h5"
    rc = main(["pack", str(src), str(single)])
    assert_one_error_line(capsys, rc, str(src))
    assert files_under(single.parent) == []
    # and through the Python API: the same message as an AutoTTSError
    with pytest.raises(AutoTTSError, match="^" + str(src).replace("\\", "\\\\")):
        pack(src, out)
    assert files_under(out) == []


# id -> (raw file content, substrings)
BAD_JSON: dict[str, tuple[str | bytes, tuple[str, ...]]] = {
    "truncated": ('[{"question": "q", "gold_answer": "1", "probe_f', ("not valid JSON",)),
    "truncated-mid-list": ('[{"question": "q", "each_branch": [[["1"], 20', ("not valid JSON",)),
    "trailing-garbage": ('[] x', ("not valid JSON",)),
    "empty-file": ("", ("not valid JSON",)),
    "binary": (b"\x89HDF\r\n\x1a\n\x00\x00\xff\xfe", ("not valid JSON",)),
    "not-utf8": (b'["\xff\xfe\xfa"]', ("not valid JSON",)),
    "top-level-object": ('{"question": "q"}', ("expected a non-empty JSON list",)),
    "top-level-empty-list": ("[]", ("expected a non-empty JSON list",)),
}


@pytest.mark.parametrize("case", sorted(BAD_JSON))
def test_pack_corrupt_json(case, make_upstream, tmp_path, capsys):
    raw, needles = BAD_JSON[case]
    src = make_upstream(raw=raw)
    out = tmp_path / "out"
    rc = main(["pack", str(src), str(out)])
    assert_one_error_line(capsys, rc, f"error: {src}: ", *needles)
    assert files_under(out) == []


@requires_shared
def test_pack_truncated_upstream_file(make_upstream, tmp_path, capsys):
    """A real upstream file cut off half way (an interrupted download)."""
    blob = (UPSTREAM_DIR / "Qwen3-8B" / "aime24.json").read_bytes()
    src = make_upstream(raw=blob[: len(blob) // 2], model="Qwen3-8B", benchmark="aime24")
    rc = main(["pack", str(src), str(tmp_path / "out")])
    assert_one_error_line(capsys, rc, str(src), "not valid JSON")
    assert files_under(tmp_path / "out") == []


def test_pack_tree_with_one_bad_file_writes_nothing(make_upstream, tmp_path, capsys):
    """Every input is validated before the first store is written."""
    root = tmp_path / "tree"
    make_upstream(root=root, model="A", benchmark="good1")
    bad = make_upstream(_pop((0, "gold_answer")), root=root, model="B", benchmark="bad")
    make_upstream(root=root, model="C", benchmark="good2")
    out = tmp_path / "out"
    rc = main(["pack", str(root), str(out)])
    assert_one_error_line(capsys, rc, f"error: {bad}: ", "missing key 'gold_answer'")
    assert files_under(out) == []


def test_pack_existing_output_untouched_on_error(make_upstream, tmp_path, capsys):
    """A failed re-pack leaves the previous store as it was."""
    out = tmp_path / "store.h5"
    pack(make_upstream(), out)
    before = out.read_bytes()
    bad = make_upstream(_set((1, "probe_freq"), 250), benchmark="bad")
    rc = main(["pack", str(bad), str(out)])
    assert_one_error_line(capsys, rc, str(bad), "probe_freq")
    assert out.read_bytes() == before
    assert files_under(tmp_path / "store.h5") == [out]


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_pack_nonexistent_input(kind, tmp_path, capsys):
    src = tmp_path / ("missing.json" if kind == "file" else "missing_dir")
    out = tmp_path / "out"
    rc = main(["pack", str(src), str(out)])
    assert_one_error_line(capsys, rc, f"error: {src}: ", "no such file or directory")
    assert files_under(out) == []


def test_pack_directory_without_json(tmp_path, capsys):
    src = tmp_path / "empty_tree"
    (src / "model").mkdir(parents=True)
    (src / "model" / "notes.txt").write_text("not replay data")
    out = tmp_path / "out"
    rc = main(["pack", str(src), str(out)])
    assert_one_error_line(capsys, rc, f"error: {src}: ", "no <model>/<benchmark>.json")
    assert files_under(out) == []


# ------------------------------------------------------------------------- bad HDF5 stores

PACKED = TRAJECTORIES_DIR / "Qwen3-8B" / "aime24.h5"


def _copy_store(tmp_path: Path, name: str = "store.h5") -> Path:
    dst = tmp_path / "bad" / name
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PACKED, dst)
    return dst


def _with_attr(value) -> Callable[[Path], Path]:
    def make(tmp_path: Path) -> Path:
        path = _copy_store(tmp_path)
        with h5py.File(path, "r+") as f:
            if value is None:
                del f.attrs["schema_version"]
            else:
                f.attrs["schema_version"] = value
        return path

    return make


def _truncated(tmp_path: Path) -> Path:
    path = _copy_store(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _corrupt_chunk(tmp_path: Path) -> Path:
    """Flip bytes inside the compressed data: the header opens, a dataset read fails."""
    path = _copy_store(tmp_path)
    with h5py.File(path, "r") as f:
        offset = f["probe_answer"].id.get_chunk_info(0).byte_offset
    data = bytearray(path.read_bytes())
    for i in range(offset, offset + 200):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def _not_hdf5(tmp_path: Path) -> Path:
    path = tmp_path / "bad" / "store.h5"
    path.parent.mkdir(parents=True)
    path.write_text('[{"question": "this is JSON, not HDF5"}]')
    return path


def _missing_dataset(tmp_path: Path) -> Path:
    path = _copy_store(tmp_path)
    with h5py.File(path, "r+") as f:
        del f["is_correct"]
    return path


def _nonexistent(tmp_path: Path) -> Path:
    return tmp_path / "bad" / "nowhere.h5"


# id -> (make the bad store in tmp_path, substrings)
BAD_STORES: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "schema-version-2": (_with_attr(2), ("schema_version 2", "not supported", "reads 1")),
    "schema-version-0": (_with_attr(0), ("schema_version 0", "not supported")),
    "schema-version-str": (_with_attr("1"), ("schema_version", "not an integer")),
    "schema-version-missing": (_with_attr(None), ("'schema_version' missing",)),
    "truncated": (_truncated, ("not a readable HDF5 file", "truncated")),
    "corrupt-chunk": (_corrupt_chunk, ("dataset 'probe_answer'", "unreadable")),
    "not-hdf5": (_not_hdf5, ("not a readable HDF5 file",)),
    "missing-dataset": (_missing_dataset, ("dataset 'is_correct' missing",)),
    "nonexistent": (_nonexistent, ("no such file",)),
}


@pytest.mark.parametrize("case", sorted(BAD_STORES))
def test_info_bad_store(case, tmp_path, capsys):
    make, needles = BAD_STORES[case]
    path = make(tmp_path)
    rc = main(["info", str(path)])
    assert_one_error_line(capsys, rc, f"error: {path}: ", *needles)


@pytest.mark.parametrize("case", sorted(BAD_STORES))
def test_unpack_bad_store_writes_nothing(case, tmp_path, capsys):
    make, needles = BAD_STORES[case]
    path = make(tmp_path)
    out = tmp_path / "out" / "unpacked.json"
    rc = main(["unpack", str(path), str(out)])
    assert_one_error_line(capsys, rc, f"error: {path}: ", *needles)
    assert files_under(out.parent) == []


def test_load_bad_store_raises(tmp_path):
    import autotts_jax

    path = _with_attr(2)(tmp_path)
    with pytest.raises(AutoTTSError, match="schema_version 2"):
        autotts_jax.load(path)
