"""``autotts-jax import-hf``: raw released probe records (``probe_matrix_mxn``) -> HDF5."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import UPSTREAM_DIR, files_under, requires_shared, tiny_records

from autotts_jax.cli import main
from autotts_jax.collect import NO_ANSWER, import_hf, read_hf_raw
from autotts_jax.errors import AutoTTSError
from autotts_jax.store.hdf5 import read_store_arrays, unpack_records

RAW_NAME = "TinyModel__tiny__br3__bg9k__fr1000__0101_0000.jsonl"


def to_raw(records: list[dict], *, pad: bool = True) -> list[dict]:
    """Upstream records in the released raw layout: an m x n matrix padded with nulls."""
    out = []
    for r in records:
        rows = [list(br[0]) for br in r["each_branch"]]
        n = max(len(row) for row in rows)
        out.append({
            "question": r["question"],
            "gold_answer": r["gold_answer"],
            "probe_freq": r["probe_freq"],
            "probe_matrix_mxn": [row + [None] * (n - len(row)) if pad else row for row in rows],
            "branch_tokens": [br[1] for br in r["each_branch"]],
            "final_answers_trace": [br[2] for br in r["each_branch"]],
        })
    return out


def expected(records: list[dict]) -> list[dict]:
    """What the import gives back: the final-answer trace is the branches' final answers."""
    return [{**r, "final_answers_trace": [br[2] for br in r["each_branch"]]} for r in records]


def records_of(path: Path) -> list[dict]:
    arrays, attrs = read_store_arrays(path)
    return unpack_records(arrays, int(attrs["probe_freq"]))


@pytest.mark.parametrize("layout", ["json-list", "jsonl", "one-object"])
def test_import_round_trip(tmp_path: Path, layout: str) -> None:
    recs = tiny_records()
    raw = to_raw(recs)
    src = tmp_path / RAW_NAME
    if layout == "json-list":  # what the released ".jsonl" files actually hold
        src.write_text(json.dumps(raw, indent=1), encoding="utf-8")
    elif layout == "jsonl":
        src.write_text("".join(json.dumps(r) + "\n" for r in raw), encoding="utf-8")
    else:
        recs, raw = recs[:1], raw[:1]
        src.write_text(json.dumps(raw[0]), encoding="utf-8")
    (out,) = import_hf([src], tmp_path / "out")
    assert out == tmp_path / "out" / "TinyModel" / "tiny.h5"
    assert records_of(out) == expected(recs)
    _, attrs = read_store_arrays(out)
    assert (attrs["model"], attrs["benchmark"], attrs["source_file"]) == (
        "TinyModel", "tiny", RAW_NAME)


def test_nulls_names_and_probe_freq_from_the_file_name(tmp_path: Path) -> None:
    raw = to_raw(tiny_records())
    for r in raw:
        del r["probe_freq"]  # taken from "__fr1000" in the file name
        r["problem"] = r.pop("question")
        r["answer"] = r.pop("gold_answer")
    row = raw[0]["probe_matrix_mxn"]
    row[0] = [None, "1", None]  # a null before the last answer, then padding
    row[1] = [None, None, None]  # a branch that ended before its first probe
    raw[0]["final_answers_trace"][2] = None
    src = tmp_path / RAW_NAME
    src.write_text(json.dumps(raw), encoding="utf-8")
    up = read_hf_raw(src)
    assert up.probe_freq == 1000
    b0, b1, b2 = up.questions[0].branches
    assert b0.probes == (NO_ANSWER, "1")
    assert b1.probes == ("2",) and b1.final == "2"
    assert b2.final == NO_ANSWER
    assert up.questions[0].final_answers_trace == ("1", "2", NO_ANSWER)
    out = tmp_path / "one.h5"
    assert main(["import-hf", str(src), str(out), "--model", "M", "--benchmark", "B"]) == 0
    arrays, attrs = read_store_arrays(out)
    assert (attrs["model"], attrs["benchmark"]) == ("M", "B")
    marker = arrays["vocab"] == NO_ANSWER
    assert marker.any() and not (arrays["is_correct"] & marker).any()


def test_normalize_option(tmp_path: Path) -> None:
    raw = to_raw(tiny_records())
    raw[1]["probe_matrix_mxn"][0][0] = "\\boxed{\\dfrac{1}{2}}"
    raw[1]["gold_answer"] = "$7$"
    src = tmp_path / RAW_NAME
    src.write_text(json.dumps(raw), encoding="utf-8")
    q = read_hf_raw(src, normalize="math").questions[1]
    assert q.branches[0].probes[0] == "\\frac{1}{2}" and q.gold_answer == "7"
    assert read_hf_raw(src).questions[1].gold_answer == "$7$"


BAD_CASES = [
    (lambda raw: raw[1]["branch_tokens"].append(5),
     "record 1: branch_tokens: has 2 entries but probe_matrix_mxn has 1 branches"),
    (lambda raw: raw[0]["final_answers_trace"].pop(),
     "record 0: final_answers_trace: has 2 entries but probe_matrix_mxn has 3 branches"),
    (lambda raw: raw[0]["branch_tokens"].__setitem__(1, "900"),
     "record 0: branch_tokens[1]: expected an integer, got '900'"),
    (lambda raw: raw[0]["branch_tokens"].__setitem__(1, -1),
     "record 0: branch_tokens[1]: token count -1 out of range [0, 2^31)"),
    (lambda raw: raw[0]["probe_matrix_mxn"][2].__setitem__(0, 3),
     "record 0: probe_matrix_mxn[2][0]: expected a string, got int"),
    (lambda raw: raw[0]["probe_matrix_mxn"].__setitem__(1, "2"),
     "record 0: probe_matrix_mxn[1]: expected a list of probe answers, got str"),
    (lambda raw: raw[1].pop("question"),
     "record 1: missing field 'question' or 'problem'"),
    (lambda raw: raw[1].pop("probe_matrix_mxn"),
     "record 1: missing field 'probe_matrix_mxn'"),
    (lambda raw: raw[1].__setitem__("probe_matrix_mxn", []),
     "record 1: probe_matrix_mxn: no branches"),
    (lambda raw: raw[0].__setitem__("gold_answer", None),
     "record 0: gold_answer: expected a string, got NoneType"),
    (lambda raw: raw[0].__setitem__("gold_answer", NO_ANSWER),
     "record 0: gold_answer: gold answer '<no-answer>' could never be matched"),
    (lambda raw: raw[1].__setitem__("probe_freq", 500),
     "probe_freq: mixed values [500, 1000] in one file"),
    (lambda raw: raw.append(7), "record 2: expected an object, got int"),
]


@pytest.mark.parametrize(("mutate", "message"), BAD_CASES, ids=[m for _, m in BAD_CASES])
def test_bad_records_give_one_line_and_no_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mutate, message: str
) -> None:
    raw = to_raw(tiny_records())
    mutate(raw)
    src = tmp_path / "in" / RAW_NAME
    src.parent.mkdir()
    src.write_text(json.dumps(raw), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["import-hf", str(src), str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {src}: {message}\n"
    assert files_under(out) == []


def test_file_level_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = to_raw(tiny_records())
    lines = tmp_path / RAW_NAME
    lines.write_text(json.dumps(raw[0]) + "\n" + json.dumps(raw[1])[:-5] + "\n")
    with pytest.raises(AutoTTSError, match=r"__0101_0000.jsonl: line 2: not valid JSON"):
        read_hf_raw(lines)
    plain = tmp_path / "plain.json"
    for r in raw:
        del r["probe_freq"]
    plain.write_text(json.dumps(raw))
    with pytest.raises(AutoTTSError, match=r"plain.json: record 0: missing field 'probe_freq'"):
        read_hf_raw(plain)
    assert read_hf_raw(plain, probe_freq=250).probe_freq == 250
    assert main(["import-hf", str(plain), str(tmp_path / "o"), "--probe-freq", "250"]) == 2
    assert "cannot tell the model and benchmark" in capsys.readouterr().err
    assert main(["import-hf", str(tmp_path / "nope.json"), str(tmp_path / "o")]) == 2
    assert "nope.json: no such file" in capsys.readouterr().err
    assert main(["import-hf", str(lines), str(plain), str(tmp_path / "x.h5")]) == 2
    assert "several inputs need an output directory" in capsys.readouterr().err


@requires_shared
def test_real_upstream_file_imports_to_the_shipped_store(tmp_path: Path,
                                                         trajectories_dir: Path) -> None:
    """The public replay JSON, laid out as raw records, imports to the shipped arrays."""
    src_json = UPSTREAM_DIR / "Qwen3-0.6B" / "aime24.json"
    raw = to_raw(json.loads(src_json.read_text(encoding="utf-8")))
    src = tmp_path / "Qwen3-0.6B__aime24__br128__bg5120k__fr500__0000_0000.jsonl"
    src.write_text(json.dumps(raw), encoding="utf-8")
    (out,) = import_hf([src], tmp_path / "out")
    ours, attrs = read_store_arrays(out)
    shipped, shipped_attrs = read_store_arrays(trajectories_dir / "Qwen3-0.6B" / "aime24.h5")
    assert ours.keys() == shipped.keys()
    for name in ours:
        np.testing.assert_array_equal(ours[name], shipped[name], err_msg=name)
    for key in ("probe_freq", "model", "benchmark", "n_questions", "n_branches"):
        assert attrs[key] == shipped_attrs[key]
