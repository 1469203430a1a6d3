"""Reading and validating the upstream AutoTTS replay JSON.

An upstream file is a list of question records::

    {"question": str, "gold_answer": str, "probe_freq": int,
     "final_answers_trace": [str, ...],
     "each_branch": [[probe_list: [str, ...], branch_tokens: int, final_answer: str], ...]}

Validation happens here, before anything is written, so that a bad file produces one line
naming the file, the record and the field, and never a half-written store.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from autotts_jax.errors import AutoTTSError


@dataclass(frozen=True)
class Branch:
    probes: tuple[str, ...]
    tokens: int
    final: str


@dataclass(frozen=True)
class QuestionRecord:
    question: str
    gold_answer: str
    probe_freq: int
    final_answers_trace: tuple[str, ...]
    branches: tuple[Branch, ...]


@dataclass(frozen=True)
class UpstreamFile:
    path: Path
    sha256: str
    probe_freq: int
    questions: tuple[QuestionRecord, ...]


def _fail(path: Path, where: str, problem: str) -> AutoTTSError:
    return AutoTTSError(f"{path}: {where}: {problem}")


def _expect_str(path: Path, where: str, value: object, *, nul_ok: bool = True) -> str:
    if not isinstance(value, str):
        raise _fail(path, where, f"expected a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _fail(path, where, "not valid Unicode (lone surrogate escape)") from None
    if not nul_ok and "\x00" in value:
        # question and gold_answer are HDF5 variable-length strings, which end at a NUL.
        raise _fail(path, where, "contains a NUL character (\\u0000)")
    return value


def _expect_int(path: Path, where: str, value: object) -> int:
    # bool is an int subclass in Python; a token count of `true` is a data error.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, where, f"expected an integer, got {type(value).__name__} {value!r}")
    return value


def _parse_branch(path: Path, where: str, raw: object) -> Branch:
    if not isinstance(raw, list) or len(raw) != 3:
        got = f"a list of {len(raw)}" if isinstance(raw, list) else type(raw).__name__
        raise _fail(path, where, f"expected [probe_list, branch_tokens, final_answer], got {got}")
    probes, tokens, final = raw
    if not isinstance(probes, list):
        got = type(probes).__name__
        raise _fail(path, f"{where}[0]", f"expected a list of probe answers, got {got}")
    if not probes:
        raise _fail(path, f"{where}[0]", "empty probe list (every branch needs at least one probe)")
    probe_strs = tuple(_expect_str(path, f"{where}[0][{k}]", p) for k, p in enumerate(probes))
    tok = _expect_int(path, f"{where}[1] (branch_tokens)", tokens)
    if tok < 0:
        raise _fail(path, f"{where}[1] (branch_tokens)", f"negative token count {tok}")
    if tok >= 2**31:
        raise _fail(path, f"{where}[1] (branch_tokens)", f"token count {tok} does not fit int32")
    return Branch(probe_strs, tok, _expect_str(path, f"{where}[2] (final_answer)", final))


def _parse_question(path: Path, i: int, raw: object) -> QuestionRecord:
    where = f"question {i}"
    if not isinstance(raw, dict):
        raise _fail(path, where, f"expected an object, got {type(raw).__name__}")
    for key in ("question", "gold_answer", "probe_freq", "each_branch", "final_answers_trace"):
        if key not in raw:
            raise _fail(path, where, f"missing key '{key}'")
    freq = _expect_int(path, f"{where}.probe_freq", raw["probe_freq"])
    if freq <= 0:
        raise _fail(path, f"{where}.probe_freq", f"must be positive, got {freq}")
    each = raw["each_branch"]
    if not isinstance(each, list) or not each:
        raise _fail(path, f"{where}.each_branch", "expected a non-empty list of branches")
    branches = tuple(
        _parse_branch(path, f"{where}.each_branch[{b}]", br) for b, br in enumerate(each)
    )
    trace = raw["final_answers_trace"]
    if not isinstance(trace, list):
        raise _fail(path, f"{where}.final_answers_trace", "expected a list of strings")
    trace_strs = tuple(
        _expect_str(path, f"{where}.final_answers_trace[{k}]", a) for k, a in enumerate(trace)
    )
    return QuestionRecord(
        question=_expect_str(path, f"{where}.question", raw["question"], nul_ok=False),
        gold_answer=_expect_str(path, f"{where}.gold_answer", raw["gold_answer"], nul_ok=False),
        probe_freq=freq,
        final_answers_trace=trace_strs,
        branches=branches,
    )


def read_upstream(path: str | Path) -> UpstreamFile:
    """Parse and validate one upstream replay JSON file.

    Raises :class:`AutoTTSError` naming the file and the first problem found.
    """
    path = Path(path)
    if not path.is_file():
        raise AutoTTSError(f"{path}: no such file")
    blob = path.read_bytes()
    try:
        raw = json.loads(blob)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AutoTTSError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, list) or not raw:
        raise AutoTTSError(f"{path}: expected a non-empty JSON list of question records")
    questions = tuple(_parse_question(path, i, q) for i, q in enumerate(raw))
    freqs = sorted({q.probe_freq for q in questions})
    if len(freqs) != 1:
        first = questions[0].probe_freq
        odd = next(i for i, q in enumerate(questions) if q.probe_freq != first)
        raise AutoTTSError(
            f"{path}: probe_freq: mixed values {freqs} in one file (question 0 has {first}, "
            f"question {odd} has {questions[odd].probe_freq})"
        )
    return UpstreamFile(path, hashlib.sha256(blob).hexdigest(), freqs[0], questions)


def to_json_records(questions: tuple[QuestionRecord, ...]) -> list[dict]:
    """The upstream JSON structure, rebuilt (used by unpack and the round-trip test)."""
    return [
        {
            "question": q.question,
            "final_answers_trace": list(q.final_answers_trace),
            "each_branch": [[list(b.probes), b.tokens, b.final] for b in q.branches],
            "gold_answer": q.gold_answer,
            "probe_freq": q.probe_freq,
        }
        for q in questions
    ]
