"""Problem files for ``autotts-jax collect``.

A problem file is JSONL (one object per line) or a JSON list of objects; each object has the
question under ``question`` (or ``problem``) and the gold answer under ``answer`` (or
``gold_answer``); a numeric answer is written as a string.  ``builtin`` names a small built-in
set of AIME-style questions (integer answers) for trying a server out.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from autotts_jax.collect.answers import NO_ANSWER
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


def load_problems(spec: str | Path, *, limit: int | None = None) -> ProblemSet:
    """Problems from a JSONL/JSON file, or the built-in set for ``"builtin"``."""
    if str(spec) == BUILTIN_NAME:
        problems = tuple(Problem(q, a) for q, a in BUILTIN_PROBLEMS)
        name = BUILTIN_NAME
    else:
        path = Path(spec)
        if not path.is_file():
            raise AutoTTSError(f"{path}: no such file (or pass '{BUILTIN_NAME}')")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise AutoTTSError(f"{path}: not UTF-8 text ({exc})") from None
        found = []
        for where, rec in _records(path, text):
            if not isinstance(rec, dict):
                raise AutoTTSError(f"{path}: {where}: expected an object, got {type(rec).__name__}")
            problem = Problem(
                _pick(path, where, rec, _QUESTION_KEYS), _pick(path, where, rec, _ANSWER_KEYS)
            )
            if problem.answer == NO_ANSWER:
                raise AutoTTSError(
                    f"{path}: {where}: the gold answer is the no-answer marker {NO_ANSWER!r}"
                )
            found.append(problem)
        if not found:
            raise AutoTTSError(f"{path}: no problems in the file")
        problems = tuple(found)
        name = path.stem
    if limit is not None:
        if limit < 1:
            raise AutoTTSError(f"--limit must be at least 1, got {limit}")
        problems = problems[:limit]
    return ProblemSet(name, problems, _digest(problems))
