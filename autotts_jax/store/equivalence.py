"""Answer equivalence applied when a store is written: ``exact`` (the default) or ``math``.

``exact`` interns answers by string (``"1/2"`` and ``"0.5"`` are two answer ids) and judges an
answer correct when it equals the gold string; it is what every published store uses.

``math`` asks math-verify (``pip install 'autotts-jax[hf]'``) whether two answers are
mathematically equal, so that ``\\frac12``, ``\\frac{1}{2}`` and ``0.5`` become one answer id of
their question and a vote for any of them is one vote.  Each answer is parsed once as LaTeX
math (wrapped in ``$...$``: the stored answers are already extracted, so the whole string is
the expression).  Per question, in the store's interning order (final answers first, then
probes), an answer joins the first earlier class whose representative verifies equal to it,
else it starts a class; the representative (the first member) is the string stored in the
vocabulary.  An answer that parses to an integer joins the class of the same integer directly,
and two expressions are compared only when their numeric values are close
(:meth:`MathJudge._apart`), which keeps hundreds of distinct answers per question affordable
(math-verify's symbolic comparison takes milliseconds per pair).  A class is
correct when one of its members equals the gold string or its representative verifies equal to
the gold answer, so ``math`` never marks correct fewer branches than ``exact``.

Limits, all math-verify's own and pinned by the tests: units are dropped (``5\\text{ cm}``
equals ``5\\text{ m}``), letters are case-insensitive symbols (``A`` equals ``a``, and a word
is a product of symbols, so ``yes`` equals ``Yes`` and ``sey``; ``e`` is Euler's number),
``(1, 2)`` may be read as an interval or a tuple and then equals ``\\{1, 2\\}``, ``3`` equals
``\\{3\\}``, and ``1e3`` is ``1 * e * 3``.  The no-answer marker is
never merged and never correct unless it is the gold string.

math-verify's own timeouts (``SIGALRM``, wall-clock seconds) are turned off: they would make
a store depend on how busy the machine was.  Each parse, numeric value and comparison is
instead limited to :data:`CPU_LIMIT_S` seconds of CPU time by a ``SIGVTALRM`` timer.  Signals
are handled on the main thread only, so ``math`` runs only there (the command line always
does) and refuses to run elsewhere rather than risk an unbounded sympy computation
(``9^{9^{9}}``).  A parse or a comparison that runs out of time counts as "not equal", so a
pathological answer keeps its own id; answers longer than :data:`MAX_CHARS` characters are
compared as strings only.
"""

from __future__ import annotations

import cmath
import logging
import signal
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import metadata
from typing import TypeVar

from autotts_jax.errors import AutoTTSError
from autotts_jax.store.upstream import Branch, QuestionRecord, UpstreamFile

EXACT = "exact"
MATH = "math"
EQUIVALENCES = (EXACT, MATH)
NO_ANSWER = "<no-answer>"  # the collectors' marker (autotts_jax.collect.answers.NO_ANSWER)
MAX_CHARS = 1000
T = TypeVar("T")
CPU_LIMIT_S = 2.0  # CPU seconds per parse, per value and per comparison
NUMERIC_GAP = 1e-5


def _math_verify():
    try:
        import math_verify
    except ImportError:
        raise AutoTTSError(
            "--equivalence math needs math-verify: pip install 'autotts-jax[hf]'"
        ) from None
    return math_verify


def verifier_name() -> str:
    """``math-verify <version>``: recorded in the store, as its judgement may change."""
    return f"math-verify {metadata.version('math-verify')}"


class MathJudge:
    """math-verify with a parse cache: each distinct answer string is parsed once."""

    def __init__(self) -> None:
        if threading.current_thread() is not threading.main_thread() or not hasattr(
            signal, "ITIMER_VIRTUAL"
        ):
            raise AutoTTSError(
                "--equivalence math runs on the main thread of a POSIX process only "
                "(its time limit is a CPU-time signal)"
            )
        self._mv = _math_verify()
        for name in ("math_verify.parser", "math_verify.grader"):
            logger = logging.getLogger(name)
            if _drop_timeout_notice not in logger.filters:
                logger.addFilter(_drop_timeout_notice)
        self._parsed: dict[str, list] = {}
        self._values: dict[str, complex | None] = {}

    def parse(self, answer: str) -> list:
        """math-verify's parse of ``$answer$``; empty when unparsable, too long or no answer."""
        if answer not in self._parsed:
            if answer == NO_ANSWER or len(answer) > MAX_CHARS or not answer.strip():
                self._parsed[answer] = []
            else:
                self._parsed[answer] = _cpu_limited(
                    lambda: self._mv.parse(f"${answer}$", parsing_timeout=None), []
                )
        return self._parsed[answer]

    def equal(self, gold: str, answer: str) -> bool:
        """Whether ``answer`` is ``gold``, as a string or mathematically."""
        if gold == answer:
            return True
        g, a = self.parse(gold), self.parse(answer)
        if not (g and a):
            return False
        g_text, a_text = _texts(g), _texts(a)
        if len(g_text) == len(g) or len(a_text) == len(a):
            # Text only on one side: math-verify compares its strings with the other side's
            # strings (a string never equals an expression), stripped and non-empty.
            return bool({t.strip() for t in g_text if t.strip()}
                        & {t.strip() for t in a_text if t.strip()})
        if self._apart(gold, answer):
            return False
        return _cpu_limited(lambda: self._mv.verify(g, a, timeout_seconds=None), False)

    def _apart(self, gold: str, answer: str) -> bool:
        """A cheap proof that math-verify would call two expressions unequal.

        For two expressions (neither a bare symbol, a relation, a set or a percentage)
        math-verify's only ways to equality are equal strings, a difference that simplifies to
        zero, or, for floats, the same value to 6 decimals; each implies (almost) the same value
        at every point where both are defined.  So values at :func:`_probe_point` further
        apart than :data:`NUMERIC_GAP` (relative) prove them unequal without asking sympy to
        simplify, which is what makes hundreds of distinct answers per question affordable.
        """
        x, y = self.value(gold), self.value(answer)
        if x is None or y is None:
            return False  # no safe value: only math-verify knows
        return abs(x - y) > NUMERIC_GAP * max(1, abs(x), abs(y))

    def value(self, answer: str) -> complex | None:
        """The numeric value of an answer (at :func:`_probe_point` when it has symbols); None
        when there is no safe value.

        Percentages (``10\\%`` equals ``10`` for math-verify), bare symbols (compared by
        name: the symbol ``e`` equals Euler's number), relations, sets, tuples and matrices
        have none.
        """
        if answer not in self._values:
            self._values[answer] = self._numeric(self.parse(answer))
        return self._values[answer]

    def _numeric(self, parsed: list) -> complex | None:
        import sympy
        from sympy.core.function import AppliedUndef

        exprs = [e for e in parsed if not isinstance(e, str)]
        if len(exprs) != 1:
            return None
        e = exprs[0]
        if not isinstance(e, sympy.Expr) or isinstance(e, sympy.Symbol) or e.has(
            sympy.UnevaluatedExpr
        ):
            return None
        # An undefined function applied (``\\log_2(3)`` misread as ``l o g_2(3)``) has no rules
        # in sympy, so it behaves as an opaque symbol: it gets a value by its printed form.
        e = e.replace(lambda x: isinstance(x, AppliedUndef), lambda x: sympy.Symbol(str(x)))
        point = {s: _probe_point(s.name) for s in e.free_symbols}
        try:
            value = _cpu_limited(lambda: complex(e.evalf(30, subs=point)), None)
        except Exception:  # no value here: no shortcut
            return None
        return value if value is not None and cmath.isfinite(value) else None

    def integer(self, answer: str) -> int | None:
        """The value when ``answer`` parses to a plain integer (the fast path)."""
        parsed = self.parse(answer)
        if parsed and getattr(parsed[0], "is_Integer", False):
            return int(parsed[0])
        return None


def _drop_timeout_notice(record: logging.LogRecord) -> bool:
    """math-verify warns that with its timeouts off the caller must bound the work; this
    module does (:func:`_cpu_limited`), so the notice would only mislead."""
    return not record.getMessage().startswith("Timeout is disabled")


class _OutOfTime(BaseException):
    """Raised by the CPU timer; a BaseException so that no ``except Exception`` swallows it."""


def _out_of_time(signum: int, frame: object) -> None:
    raise _OutOfTime


def _cpu_limited(work: Callable[[], T], fallback: T) -> T:
    """``work()``, or ``fallback`` once it has used :data:`CPU_LIMIT_S` of CPU time.

    math-verify's own timeouts count wall-clock seconds, so on a loaded machine the same
    comparison could finish or not and the store would depend on the load; a CPU-time timer
    (``ITIMER_VIRTUAL``, one shot) gives the same answers however busy the machine is.  The
    handler is installed around the timer, so a shot that lands as the work finishes is still
    caught here.
    """
    previous = signal.signal(signal.SIGVTALRM, _out_of_time)
    try:
        try:
            signal.setitimer(signal.ITIMER_VIRTUAL, CPU_LIMIT_S)
            try:
                return work()
            finally:
                signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        except _OutOfTime:
            return fallback
    finally:
        signal.signal(signal.SIGVTALRM, previous)


def _texts(parsed: list) -> list[str]:
    return [e for e in parsed if isinstance(e, str)]


def _probe_point(name: str) -> float:
    """The value a symbol takes in :meth:`MathJudge.value`: a function of its name only, so
    that ``x`` is the same number in every answer, and irrational-looking, so that two
    different expressions rarely agree there by accident."""
    return 0.5772156649 + 0.3183098862 * (zlib.crc32(name.encode("utf-8")) % 1009) / 1009


def _answers_in_order(q: QuestionRecord) -> list[str]:
    """Distinct answers of a question in the store's interning order."""
    seen: dict[str, None] = {}
    for b in q.branches:
        seen.setdefault(b.final)
    for b in q.branches:
        for p in b.probes:
            seen.setdefault(p)
    for a in q.final_answers_trace:
        seen.setdefault(a)
    return list(seen)


@dataclass(frozen=True)
class Merged:
    """A question's answers after merging: representative of each answer, correct ones."""

    representative: dict[str, str]
    correct: frozenset[str]


def merge_question(q: QuestionRecord, judge: MathJudge) -> Merged:
    """Group the answers of one question into classes of mathematically equal answers."""
    rep: dict[str, str] = {}
    reps: list[str] = []  # every class representative, in order
    parsed_reps: list[str] = []  # those math-verify can read
    by_integer: dict[int, str] = {}  # integer value -> its class representative
    not_integer: list[str] = []  # parsed representatives that are not plain integers
    for answer in _answers_in_order(q):
        if answer == NO_ANSWER or not judge.parse(answer):
            rep[answer] = answer
            reps.append(answer)
            continue
        value = judge.integer(answer)
        if value is not None and value in by_integer:
            found: str | None = by_integer[value]
        else:
            # Two different integers are never equal: an integer is compared with the others.
            candidates = not_integer if value is not None else parsed_reps
            found = next((r for r in candidates if judge.equal(r, answer)), None)
        if found is None:
            found = answer
            reps.append(answer)
            parsed_reps.append(answer)
            if value is not None:
                by_integer[value] = answer
            else:
                not_integer.append(answer)
        rep[answer] = found
    correct = {rep[a] for a in rep if a == q.gold_answer}
    correct |= {r for r in reps if r != NO_ANSWER and judge.equal(q.gold_answer, r)}
    return Merged(rep, frozenset(correct))


def check_equivalence(mode: str) -> None:
    """Fail now, before hours of collection, if ``mode`` cannot be applied when writing."""
    if mode == MATH:
        MathJudge()
    elif mode != EXACT:
        raise AutoTTSError(f"unknown equivalence {mode!r}; known: {', '.join(EQUIVALENCES)}")


def apply_equivalence(
    src: UpstreamFile, mode: str
) -> tuple[UpstreamFile, tuple[frozenset[str], ...] | None]:
    """``src`` with equal answers replaced by their representative, and the correct answers
    of each question; ``(src, None)`` for ``exact`` (correct means ``== gold``)."""
    check_equivalence(mode)
    if mode == EXACT:
        return src, None
    judge = MathJudge()
    questions, correct = [], []
    for q in src.questions:
        merged = merge_question(q, judge)
        r = merged.representative
        questions.append(replace(
            q,
            final_answers_trace=tuple(r[a] for a in q.final_answers_trace),
            branches=tuple(
                Branch(tuple(r[p] for p in b.probes), b.tokens, r[b.final]) for b in q.branches
            ),
        ))
        correct.append(merged.correct)
    return replace(src, questions=tuple(questions)), tuple(correct)
