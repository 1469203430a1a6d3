"""Problem files for ``autotts-jax collect``.

A problem file is JSONL (one object per line) or a JSON list of objects; each object has the
question under ``question`` (or ``problem``) and the gold answer under ``answer`` (or
``gold_answer``); a numeric answer is written as a string.  ``builtin`` names a small built-in
set of AIME-style questions (integer answers) for trying a server out.  Parquet files and Hugging
Face datasets on disk are read too (:mod:`autotts_jax.collect.tables`), and the question and
answer columns can be named.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from autotts_jax.collect.answers import NO_ANSWER
from autotts_jax.collect.tables import is_table, read_table
from autotts_jax.errors import AutoTTSError

BUILTIN_NAME = "builtin"

# Written for this project: short competition-style questions with integer answers.
BUILTIN_PROBLEMS: tuple[tuple[str, str], ...] = (
    ("How many positive divisors does 2024 have?", "16"),
    ("What is the remainder when 2^100 is divided by 7?", "2"),
    (
        "Find the sum of all positive integers not exceeding 100 that are divisible by 3 or by 5.",
        "2418",
    ),
    ("What is the smallest positive integer n such that n! ends in exactly six zeros?", "25"),
    (
        "How many ordered pairs (a, b) of positive integers satisfy a + b = 20 and a < b?",
        "9",
    ),
)

_QUESTION_KEYS = ("question", "problem")
_ANSWER_KEYS = ("answer", "gold_answer")


@dataclass(frozen=True)
class Problem:
    question: str
    answer: str


@dataclass(frozen=True)
class ProblemSet:
    name: str  # the benchmark name recorded in the store
    problems: tuple[Problem, ...]
    sha256: str  # of the canonical JSON of the problems (what a checkpoint is tied to)


def _digest(problems: tuple[Problem, ...]) -> str:
    canon = json.dumps([[p.question, p.answer] for p in problems], ensure_ascii=False)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def _pick(path: Path, where: str, rec: dict, keys: tuple[str, ...]) -> str:
    for key in keys:
        if key in rec:
            value = rec[key]
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise AutoTTSError(
                    f"{path}: {where}.{key}: expected a string, got {type(value).__name__}"
                )
            text = str(value)
            if not text.strip():
                raise AutoTTSError(f"{path}: {where}.{key}: empty")
            if "\x00" in text:
                raise AutoTTSError(f"{path}: {where}.{key}: contains a NUL character")
            return text
    raise AutoTTSError(f"{path}: {where}: missing key {' or '.join(repr(k) for k in keys)}")


def _records(path: Path, text: str) -> list[tuple[str, object]]:
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AutoTTSError(f"{path}: not valid JSON ({exc})") from None
        return [(f"record {i}", r) for i, r in enumerate(raw)]
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append((f"line {n}", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise AutoTTSError(f"{path}: line {n}: not valid JSON ({exc})") from None
    return out


def _json_rows(path: Path, blob: bytes) -> list[tuple[str, object]]:
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AutoTTSError(f"{path}: not UTF-8 text ({exc})") from None
    return _records(path, text)


def _rows(path: Path, split: str | None) -> tuple[str, list[tuple[Path, str, object]]]:
    """(problem set name, (file, where, record) rows) of a problem file or dataset."""
    if is_table(path):
        table = read_table(path, _json_rows, split=split)
        return table.name, table.records
    if not path.is_file():
        raise AutoTTSError(f"{path}: no such file (or pass '{BUILTIN_NAME}')")
    if split is not None:
        raise AutoTTSError(f"{path}: --split applies to dataset folders only")
    return path.stem, [(path, w, r) for w, r in _json_rows(path, path.read_bytes())]


def load_problems(
    spec: str | Path,
    *,
    limit: int | None = None,
    question_field: str | None = None,
    answer_field: str | None = None,
    split: str | None = None,
) -> ProblemSet:
    """Problems from a JSONL/JSON file, a Parquet file or a Hugging Face dataset on disk (see
    :mod:`autotts_jax.collect.tables`), or the built-in set for ``"builtin"``.

    ``question_field`` and ``answer_field`` name the columns to read; by default ``question``
    (else ``problem``) and ``answer`` (else ``gold_answer``).
    """
    if str(spec) == BUILTIN_NAME:
        problems = tuple(Problem(q, a) for q, a in BUILTIN_PROBLEMS)
        name = BUILTIN_NAME
    else:
        path = Path(spec)
        name, rows = _rows(path, split)
        q_keys = (question_field,) if question_field else _QUESTION_KEYS
        a_keys = (answer_field,) if answer_field else _ANSWER_KEYS
        found = []
        for file, where, rec in rows:
            if not isinstance(rec, dict):
                raise AutoTTSError(f"{file}: {where}: expected an object, got {type(rec).__name__}")
            problem = Problem(_pick(file, where, rec, q_keys), _pick(file, where, rec, a_keys))
            if problem.answer == NO_ANSWER:
                raise AutoTTSError(
                    f"{file}: {where}: the gold answer is the no-answer marker {NO_ANSWER!r}"
                )
            found.append(problem)
        if not found:
            raise AutoTTSError(f"{path}: no problems in the file")
        problems = tuple(found)
    if limit is not None:
        if limit < 1:
            raise AutoTTSError(f"--limit must be at least 1, got {limit}")
        problems = problems[:limit]
    return ProblemSet(name, problems, _digest(problems))
