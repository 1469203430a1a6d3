"""Problems and raw probe records from Parquet and Hugging Face datasets on disk (offline).

Every dataset here is built locally: Parquet with pyarrow, ``save_to_disk`` folders with the
``datasets`` library itself, and the hub cache layout (``refs/main``, ``snapshots/<rev>``
holding links into ``blobs/``) by hand, as ``hf download`` leaves it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import files_under, tiny_records
from test_collect_hf import RAW_NAME, to_raw

from autotts_jax.cli import main
from autotts_jax.collect.collector import collect
from autotts_jax.collect.fake_server import FakeServer
from autotts_jax.collect.hf_import import import_hf, read_hf_raw
from autotts_jax.collect.problems import load_problems
from autotts_jax.collect.settings import CollectSettings
from autotts_jax.errors import AutoTTSError
from autotts_jax.store.hdf5 import read_store_arrays

pa = pytest.importorskip("pyarrow", reason="pyarrow (the [hf] extra) is not installed")
pq = pytest.importorskip("pyarrow.parquet")

ROWS = [
    {"problem": "What is one half as a fraction?", "solution": r"\frac{1}{2}", "level": 1},
    {"problem": "What is 6 times 7?", "solution": "42", "level": 2},
]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def write_parquet(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def hub_cache(root: Path, name: str, files: dict[str, list[dict]]) -> Path:
    """``datasets--org--<name>`` as the hub cache holds it: snapshot files link into blobs."""
    entry = root / f"datasets--org--{name}"
    rev = "0123456789abcdef0123456789abcdef01234567"
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(rev)
    (entry / "blobs").mkdir()
    for i, (rel, rows) in enumerate(files.items()):
        blob = entry / "blobs" / f"blob{i}"
        if rel.endswith(".parquet"):
            write_parquet(blob, rows)
        else:
            blob.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        link = entry / "snapshots" / rev / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (entry / "snapshots" / rev / "README.md").write_text("# a dataset card\n")
    return entry


def expect(rows: list[dict]) -> list[tuple[str, str]]:
    return [(r["problem"], r["solution"]) for r in rows]


def pairs(ps) -> list[tuple[str, str]]:
    return [(p.question, p.answer) for p in ps.problems]


def test_parquet_problems_with_named_fields(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "math-mini.parquet", ROWS)
    ps = load_problems(path, question_field="problem", answer_field="solution")
    assert ps.name == "math-mini" and pairs(ps) == expect(ROWS)
    # the defaults still apply: 'problem' is a default question key, 'solution' is not
    with pytest.raises(AutoTTSError) as err:
        load_problems(path)
    assert str(err.value) == f"{path}: row 0: missing key 'answer' or 'gold_answer'"


def test_save_to_disk_dataset_and_dataset_dict(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(ROWS)
    ds.save_to_disk(str(tmp_path / "one"))
    ps = load_problems(tmp_path / "one", question_field="problem", answer_field="solution")
    assert ps.name == "one" and pairs(ps) == expect(ROWS)

    both = datasets.DatasetDict({"train": ds, "test": datasets.Dataset.from_list(ROWS[1:])})
    both.save_to_disk(str(tmp_path / "both"))
    ps = load_problems(tmp_path / "both", question_field="problem", answer_field="solution",
                       split="test")
    assert pairs(ps) == expect(ROWS[1:])
    with pytest.raises(AutoTTSError, match=r"both: several splits \(train, test\); pass --split"):
        load_problems(tmp_path / "both", question_field="problem", answer_field="solution")
    with pytest.raises(AutoTTSError, match=r"both: no split 'dev'; it has train, test"):
        load_problems(tmp_path / "both", split="dev")


def test_hub_cache_layout(tmp_path: Path) -> None:
    train = [{"problem": "Train question?", "solution": "1"}]
    entry = hub_cache(tmp_path, "MATH-mini", {
        "data/test-00000-of-00001.parquet": ROWS,
        "data/train-00000-of-00001.parquet": train,
    })
    kw = {"question_field": "problem", "answer_field": "solution"}
    ps = load_problems(entry, split="test", **kw)
    assert ps.name == "MATH-mini" and pairs(ps) == expect(ROWS)
    assert pairs(load_problems(entry, split="train", **kw)) == expect(train)
    snapshot = next((entry / "snapshots").iterdir())
    assert pairs(load_problems(snapshot, split="test", **kw)) == expect(ROWS)
    with pytest.raises(AutoTTSError, match="several splits"):
        load_problems(entry, **kw)
    # a JSONL repository with one split needs no --split
    jsonl = hub_cache(tmp_path, "jsonl-set", {"test.jsonl": ROWS})
    assert pairs(load_problems(jsonl, **kw)) == expect(ROWS)


def test_same_problems_from_every_format_give_the_same_digest(tmp_path: Path) -> None:
    """The checkpoint is tied to the problems, not to the file format they came in."""
    rows = [{"question": r["problem"], "answer": r["solution"]} for r in ROWS]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    parquet = write_parquet(tmp_path / "p.parquet", rows)
    assert load_problems(jsonl).sha256 == load_problems(parquet).sha256


BAD_PROBLEMS = [
    ([{"problem": "q", "solution": None}], "row 0.solution: expected a string, got NoneType"),
    ([{"problem": "q", "solution": "1"}, {"problem": "", "solution": "2"}],
     "row 1.problem: empty"),
    ([{"problem": "q", "other": "1"}], "row 0: missing key 'solution'"),
]


@pytest.mark.parametrize(("rows", "message"), BAD_PROBLEMS, ids=[m for _, m in BAD_PROBLEMS])
def test_bad_problem_rows_are_one_line_and_no_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: list[dict], message: str
) -> None:
    path = write_parquet(tmp_path / "bad.parquet", rows)
    out = tmp_path / "out" / "s.h5"
    code = main(["collect", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "-o",
                 str(out), "--problems", str(path), "--question-field", "problem",
                 "--answer-field", "solution", "-q"])
    assert code == 2
    assert capsys.readouterr().err == f"error: {path}: {message}\n"
    assert files_under(tmp_path / "out") == []


def test_unreadable_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(AutoTTSError, match=r"broken.parquet: not a readable Parquet file \("):
        load_problems(broken)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AutoTTSError, match="empty: no data files"):
        load_problems(empty)
    plain = tmp_path / "p.jsonl"
    plain.write_text('{"question": "q", "answer": "1"}\n', encoding="utf-8")
    with pytest.raises(AutoTTSError, match="--split applies to dataset folders only"):
        load_problems(plain, split="test")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    good = tmp_path / "good.parquet"
    good.write_bytes(b"")
    assert main(["import-hf", str(good), str(tmp_path / "o.h5"), "--model", "M",
                 "--benchmark", "B", "--probe-freq", "5"]) == 2
    assert capsys.readouterr().err == (
        "error: reading Parquet and Hugging Face datasets needs pyarrow: "
        "pip install 'autotts-jax[hf]'\n")
    assert not (tmp_path / "o.h5").exists()


def raw_rows() -> list[dict]:
    return to_raw(tiny_records())


def test_import_hf_parquet_matches_json(tmp_path: Path) -> None:
    raw = raw_rows()
    src_json = tmp_path / "json" / RAW_NAME
    src_json.parent.mkdir()
    src_json.write_text(json.dumps(raw), encoding="utf-8")
    src_pq = write_parquet(tmp_path / "pq" / RAW_NAME.replace(".jsonl", ".parquet"), raw)
    (a,) = import_hf([src_json], tmp_path / "a")
    (b,) = import_hf([src_pq], tmp_path / "b")
    ours, attrs = read_store_arrays(b)
    theirs, _ = read_store_arrays(a)
    assert (attrs["model"], attrs["benchmark"], attrs["probe_freq"]) == ("TinyModel", "tiny", 1000)
    for name in theirs:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)


def test_import_hf_save_to_disk_folder_and_fields(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    raw = raw_rows()
    for r in raw:
        r["prompt"] = r.pop("question")
        r["target"] = r.pop("gold_answer")
    folder = tmp_path / "Tiny-1.5B__tiny__fr1000"
    datasets.Dataset.from_list(raw).save_to_disk(str(folder))
    up = read_hf_raw(folder, question_field="prompt", answer_field="target")
    assert up.probe_freq == 1000
    assert [q.question for q in up.questions] == [r["prompt"] for r in raw]
    (out,) = import_hf([folder], tmp_path / "out", question_field="prompt",
                       answer_field="target")
    assert out == tmp_path / "out" / "Tiny-1.5B" / "tiny.h5"


def test_import_hf_bad_row_names_the_data_file(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    raw = raw_rows()
    raw[1]["branch_tokens"][0] = -3
    entry = hub_cache(tmp_path, "raw", {"data/test-00000-of-00001.parquet": raw})
    out = tmp_path / "out"
    assert main(["import-hf", str(entry), str(out), "--model", "M", "--benchmark", "B"]) == 2
    data = next((entry / "snapshots").iterdir()) / "data" / "test-00000-of-00001.parquet"
    assert capsys.readouterr().err == (
        f"error: {data}: row 1: branch_tokens[0]: token count -3 out of range [0, 2^31)\n")
    assert files_under(out) == []


def test_collect_from_parquet_with_math_equivalence(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Gold answers written differently from what the fake model answers (17, 42, 5): with
    exact equality nothing is ever correct, with math equality the same collection is."""
    pytest.importorskip("math_verify")
    rows = [{"q": "Fake question one?", "a": "17.0"},
            {"q": "Fake question two?", "a": r"\frac{84}{2}"},
            {"q": "Fake question three?", "a": r"\text{5}"}]
    path = write_parquet(tmp_path / "fakebench.parquet", rows)
    settings = CollectSettings(model="fake-model", branches=4, probe_freq=8, max_tokens=36,
                               max_probes=6, normalize="none")
    problems = load_problems(path, question_field="q", answer_field="a")
    with FakeServer() as srv:
        from autotts_jax.collect.settings import Connection

        conn = Connection(srv.url, concurrency=3, timeout=5.0, retries=4, backoff=0.001)
        collect(settings, conn, problems, tmp_path / "exact.h5", progress=None)
        assert main(["collect", "--base-url", srv.url, "--model", "fake-model", "-o",
                     str(tmp_path / "math.h5"), "--problems", str(path), "--question-field",
                     "q", "--answer-field", "a", "--normalize", "none", "-n", "4",
                     "--probe-freq", "8", "--max-tokens", "36", "--max-probes", "6",
                     "--backoff", "0.001", "-q", "--equivalence", "math"]) == 0
    stores = {mode: read_store_arrays(tmp_path / f"{mode}.h5") for mode in ("exact", "math")}
    (exact, e_attrs), (math, m_attrs) = stores["exact"], stores["math"]
    assert not exact["is_correct"].any() and "equivalence" not in e_attrs
    assert m_attrs["equivalence"] == "math"
    # the answers are distinct strings already: the same ids, now judged by value
    np.testing.assert_array_equal(exact["final_answer"], math["final_answer"])
    for q, gold in enumerate(["17", "42", "5"]):
        words = list(math["vocab"][q][: math["n_vocab"][q]])
        assert [w for w, ok in zip(words, math["is_correct"][q], strict=False) if ok] == [gold]


def test_damaged_dataset_folders(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "saved"
    datasets.Dataset.from_list(ROWS).save_to_disk(str(folder))
    (folder / "state.json").write_text('{"_data_files": "data.arrow"}')
    with pytest.raises(AutoTTSError, match=r"state.json: _data_files: expected a list"):
        load_problems(folder)
    (folder / "state.json").write_text('{"_data_files": [{"filename": "gone.arrow"}]}')
    with pytest.raises(AutoTTSError, match=r"saved/gone.arrow: no such file \(listed in "):
        load_problems(folder)
    entry = hub_cache(tmp_path, "moved", {"test.jsonl": ROWS})
    (entry / "refs" / "main").write_text("feedface")
    with pytest.raises(AutoTTSError, match=r"refs/main: names snapshot 'feedface'"):
        load_problems(entry)
    arrow = tmp_path / "bad.arrow"
    arrow.write_bytes(b"not arrow at all")
    with pytest.raises(AutoTTSError, match=r"bad.arrow: not a readable Arrow file \("):
        load_problems(arrow)
