"""``--equivalence math``: mathematically equal answers share one answer id per question.

The pair table records what math-verify (the pinned verifier) really answers for answers as
the collectors store them, including where it is more lenient than a reader would be; a new
math-verify release that changes one of them fails here rather than silently changing stores.
"""

from __future__ import annotations

import signal
import sys
import threading
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from autotts_jax.cli import main
from autotts_jax.collect.answers import NO_ANSWER as COLLECT_NO_ANSWER
from autotts_jax.errors import AutoTTSError
from autotts_jax.store.equivalence import (
    NO_ANSWER,
    MathJudge,
    check_equivalence,
    merge_question,
)
from autotts_jax.store.hdf5 import read_store_arrays, write_store
from autotts_jax.store.info import summarize
from autotts_jax.store.upstream import Branch, QuestionRecord, UpstreamFile

pytest.importorskip("math_verify", reason="math-verify (the [hf] extra) is not installed")

EQUAL = [
    # fractions and decimals
    (r"\frac12", r"\frac{1}{2}"),
    ("0.5", r"\frac{1}{2}"),
    ("1/2", r"\frac{1}{2}"),
    (r"\dfrac{3}{4}", "0.75"),
    (r"-\frac{1}{3}", r"\frac{-1}{3}"),
    ("0.3333333", r"\frac13"),  # floats are compared to 6 decimals
    ("3.0", "3"),
    ("1,000", "1000"),
    ("016", "16"),
    ("2^{10}", "1024"),
    # radicals and symbolic forms
    (r"\sqrt2", r"\sqrt{2}"),
    (r"2\sqrt{2}", r"\sqrt{8}"),
    (r"3\sqrt{3}", r"\sqrt{27}"),
    (r"\frac{\sqrt{3}}{2}", r"\frac{1}{2}\sqrt{3}"),
    (r"\pi/2", r"\frac{\pi}{2}"),
    ("x^2+2x+1", "(x+1)^2"),
    # tuples, intervals and sets
    ("(1, 2)", "(1,2)"),
    (r"\left( 1, 2 \right)", "(1,2)"),
    ("[0, 1)", "[0,1)"),
    (r"(-\infty, 2]", r"(-\infty,2]"),
    (r"\{1, 2\}", r"\{2, 1\}"),
    ("1, 2", "2, 1"),  # a bare list is read as a set
    (r"x \in [0,1]", "[0,1]"),
    # text-wrapped choices
    (r"\text{(A)}", "A"),
    ("(A)", "A"),
    (r"\textbf{(B)}", "B"),
    (r"\text{(B)}", "B"),
    (r"\mathrm{(D)}", "D"),
    # units, degrees, percentages, assignments
    (r"5\text{ cm}", "5"),
    (r"90^\circ", "90"),
    (r"10\%", "10"),
    ("x = 3", "3"),
    # math-verify's leniencies (documented limits of the mode)
    (r"5\text{ m}", r"5\text{ cm}"),  # units are dropped, not compared
    ("A", "a"),  # choice letters are case-insensitive symbols
    ("yes", "Yes"),  # a word is a product of symbols ...
    ("yes", "sey"),  # ... so the order of its letters does not matter
    ("e", "2.718281828"),  # the letter e is Euler's number
    ("3", r"\{3\}"),  # a one-element set equals its element
    ("(1,2)", r"\{1, 2\}"),  # (1, 2) may be an interval, a tuple or a set
]
UNEQUAL = [
    (r"\frac{1}{2}", r"\frac{1}{3}"),
    ("0.5", "0.51"),
    ("12", "21"),
    ("1000", "100"),
    ("2", "-2"),
    (r"\sqrt{2}", "2"),
    ("(1, 2)", "(2, 1)"),  # order matters in a tuple
    ("[0, 1)", "[0, 1]"),  # so do interval ends
    ("A", "B"),
    ("A", "(B)"),
    ("1e3", "1000"),  # a limit: read as 1 * e * 3
    (NO_ANSWER, "0"),
    (NO_ANSWER, "no answer"),
]


@pytest.fixture(scope="module")
def judge() -> MathJudge:
    return MathJudge()


@pytest.mark.parametrize(("a", "b"), EQUAL, ids=[f"{a} == {b}" for a, b in EQUAL])
def test_equal_pairs(judge: MathJudge, a: str, b: str) -> None:
    assert judge.equal(a, b) and judge.equal(b, a)


@pytest.mark.parametrize(("a", "b"), UNEQUAL, ids=[f"{a} != {b}" for a, b in UNEQUAL])
def test_unequal_pairs(judge: MathJudge, a: str, b: str) -> None:
    assert not judge.equal(a, b) and not judge.equal(b, a)


def test_answers_are_read_as_math_not_searched_for() -> None:
    """Why each answer is wrapped in ``$...$``: bare, math-verify looks for an answer in the
    string and finds none in ``\\sqrt2`` or ``(1,2)`` (or a wrong one in ``(1, 2)``)."""
    from math_verify import parse

    assert parse(r"\sqrt2", parsing_timeout=None) == []
    assert parse("(1,2)", parsing_timeout=None) == []
    assert str(parse("(1, 2)", parsing_timeout=None)[0]) == "2"
    assert parse(r"$\sqrt2$")[1] == r"\sqrt{2}"


def test_out_of_time_counts_as_unequal(judge: MathJudge) -> None:
    """``9^{9^{9}}`` cannot be compared with 5 in time: the comparison is abandoned, and the
    CPU timer and its signal handler are left as they were."""
    before = signal.getsignal(signal.SIGVTALRM)
    assert not judge.equal("9^{9^{9}}", "5")
    assert judge.equal("9^{9^{9}}", "9^{9^{9}}")
    assert signal.getitimer(signal.ITIMER_VIRTUAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGVTALRM) is before


def test_no_answer_marker_is_the_collectors() -> None:
    assert NO_ANSWER == COLLECT_NO_ANSWER


def test_only_on_the_main_thread() -> None:
    caught: list[BaseException] = []

    def run() -> None:
        try:
            check_equivalence("math")
        except AutoTTSError as exc:
            caught.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert len(caught) == 1 and "main thread" in str(caught[0])


def test_unknown_mode() -> None:
    with pytest.raises(AutoTTSError, match="unknown equivalence 'fuzzy'"):
        check_equivalence("fuzzy")


# A question where exact matching splits the right answer three ways: "17" (wrong) wins the
# vote under exact equality, 1/2 (right, gold written "1/2") under math equality.
FINALS = ["17", r"\frac12", "0.5", "17", r"\frac{1}{2}", "1/3", NO_ANSWER]
PROBES = [["2/4", "17"], [r"\frac12"], ["17.0", "0.5"], ["17"], [r"\sqrt{2}", r"\frac{1}{2}"],
          ["1/3"], [NO_ANSWER]]


def question_file(path: Path) -> UpstreamFile:
    branches = tuple(Branch(tuple(p), 100 * (i + 1), f)
                     for i, (p, f) in enumerate(zip(PROBES, FINALS, strict=True)))
    q = QuestionRecord("Half of one?", "1/2", 10, tuple(FINALS), branches)
    return UpstreamFile(path, "0" * 64, 10, (q,))


def test_merge_question(judge: MathJudge, tmp_path: Path) -> None:
    merged = merge_question(question_file(tmp_path / "q.json").questions[0], judge)
    rep = merged.representative
    assert rep["0.5"] == rep[r"\frac{1}{2}"] == rep["2/4"] == r"\frac12"
    assert rep["17.0"] == "17"
    assert rep["1/3"] == "1/3" and rep[r"\sqrt{2}"] == r"\sqrt{2}"
    assert rep[NO_ANSWER] == NO_ANSWER
    assert merged.correct == {r"\frac12"}


def test_store_built_both_ways(tmp_path: Path) -> None:
    src = question_file(tmp_path / "q.json")
    exact = write_store(src, tmp_path / "exact.h5", "M", "B")
    math = write_store(src, tmp_path / "math.h5", "M", "B", equivalence="math")
    e, e_attrs = read_store_arrays(exact)
    m, m_attrs = read_store_arrays(math)
    # distinct answers: 6 final + 2 probe-only strings, against 4 classes + sqrt(2)
    assert (e["n_final_vocab"][0], e["n_vocab"][0]) == (6, 9)
    assert (m["n_final_vocab"][0], m["n_vocab"][0]) == (4, 5)
    assert list(m["vocab"][0][:5]) == ["17", r"\frac12", "1/3", NO_ANSWER, r"\sqrt{2}"]
    assert list(m["final_answer"][0]) == [0, 1, 1, 0, 1, 2, 3]
    assert list(m["probe_answer"][0, 4, :2]) == [4, 1]
    votes = np.bincount(m["final_answer"][0], minlength=4)
    assert list(votes) == [2, 3, 1, 1]
    assert list(m["is_correct"][0][:5]) == [False, True, False, False, False]
    assert not e["is_correct"].any()  # no answer is the string "1/2"
    assert "equivalence" not in e_attrs
    assert m_attrs["equivalence"] == "math"
    assert m_attrs["equivalence_verifier"].startswith("math-verify ")
    s_exact, s_math = summarize(exact), summarize(math)
    assert (s_exact["pass@1"], s_exact["maj@7"], s_exact["pass@7"]) == (0.0, 0.0, 0.0)
    assert s_math["pass@1"] == pytest.approx(100 * 3 / 7)
    assert (s_math["maj@7"], s_math["pass@7"]) == (100.0, 100.0)
    assert s_exact["equivalence"] == "exact"
    assert s_math["equivalence"] == m_attrs["equivalence"] + f" ({m_attrs['equivalence_verifier']})"


def test_math_never_marks_fewer_branches_correct(tmp_path: Path) -> None:
    """A class holding the gold string is correct even if its representative is not."""
    branches = (Branch(("0.5",), 5, "0.5"), Branch((r"\frac{1}{2}",), 5, r"\frac{1}{2}"))
    q = QuestionRecord("q", r"\frac{1}{2}", 5, ("0.5", r"\frac{1}{2}"), branches)
    out = write_store(UpstreamFile(tmp_path / "x.json", "0" * 64, 5, (q,)), tmp_path / "x.h5",
                      "M", "B", equivalence="math")
    a, _ = read_store_arrays(out)
    assert a["n_vocab"][0] == 1 and a["vocab"][0][0] == "0.5" and a["is_correct"][0, 0]


def test_info_shows_the_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = question_file(tmp_path / "q.json")
    exact = write_store(src, tmp_path / "exact.h5", "M", "B")
    math = write_store(src, tmp_path / "math.h5", "M", "B", equivalence="math")
    assert main(["info", str(exact), str(math)]) == 0
    out = capsys.readouterr().out
    lines = [line.split(None, 1) for line in out.splitlines() if "equivalence" in line]
    version = metadata.version("math-verify")
    assert [v for _, v in lines] == ["exact", f"math (math-verify {version})"]


def test_missing_math_verify_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from autotts_jax.store.upstream import to_json_records

    src = tmp_path / "up.json"
    src.write_text(json.dumps(to_json_records(question_file(src).questions)), encoding="utf-8")
    monkeypatch.setitem(sys.modules, "math_verify", None)
    out = tmp_path / "out.h5"
    assert main(["pack", str(src), str(out), "--equivalence", "math"]) == 2
    assert capsys.readouterr().err == (
        "error: --equivalence math needs math-verify: pip install 'autotts-jax[hf]'\n")
    assert not out.exists() and list(tmp_path.iterdir()) == [src]


# Answers of the kinds the shortcuts of MathJudge skip math-verify for (integers, numbers far
# apart, text that parses to no expression, undefined functions, symbols), plus a few equal
# ones; every pair must be judged exactly as math-verify itself judges it.
SHORTCUT_ANSWERS = [
    "17", "17.0", r"\frac{34}{2}", "16", "0.5", r"\frac12", "0.500001", "0.5000001",
    r"\sqrt{2}", r"2^{1/2}", r"10\%", "10", "0.1", r"\sin^2 x + \cos^2 x", "1", "x + y",
    "y + x", "x + 1", "a + b + c.", "?", "[Boxed Value]", "11 + 10 log_2(3)",
    r"11 + 10 \log_2 3", "e", r"\mathrm{e}", "2.718281828", "E", "S", "s", "x = 3", "3",
    r"\{3\}", "(3, 4)", r"\infty", "yes", "sey",
]


def test_shortcuts_agree_with_math_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    import math_verify
    from math_verify import parse, verify

    parsed = {a: parse(f"${a}$") for a in SHORTCUT_ANSWERS}
    pairs = [(a, b) for a in SHORTCUT_ANSWERS for b in SHORTCUT_ANSWERS if a != b]
    truth = {(a, b): verify(parsed[a], parsed[b]) for a, b in pairs}
    asked: list[int] = []

    def counting_verify(*args, **kwargs):
        asked.append(1)
        return verify(*args, **kwargs)

    monkeypatch.setattr(math_verify, "verify", counting_verify)
    judge = MathJudge()
    assert [p for p in pairs if judge.equal(*p) != truth[p]] == []
    assert sum(truth.values()) >= 30  # equal pairs are among them ...
    assert len(asked) < len(pairs) / 2  # ... and most pairs were settled without math-verify
