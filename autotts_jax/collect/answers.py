"""Answer extraction and normalisation for collected trajectories.

Two steps turn a model's text into the answer string stored in the replay data:

1. an *extractor* finds the answer in the text: ``boxed`` (the content of the last closed
   ``\\boxed{...}``, braces balanced), ``last-number`` (the last integer, decimal or ``a/b`` in
   the text) or ``boxed-or-last-number`` (the first, else the second);
2. a *normaliser* makes equal answers equal strings: ``none`` (as extracted), ``strip``
   (surrounding whitespace) or ``math`` (see :func:`normalize_math`).

When nothing is found the answer is :data:`NO_ANSWER`.  It is an ordinary answer string for the
replay engine (a controller may vote for it, as upstream's probes vote for their ``"ERR"``),
and collection refuses a gold answer equal to it, so it is never counted as correct.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from autotts_jax.errors import AutoTTSError

NO_ANSWER = "<no-answer>"

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:,\d{3})*(?:\.\d+)?(?:\s*/\s*\d+)?")


def _closing_brace(text: str, open_at: int) -> int:
    """Index of the brace that closes ``text[open_at] == "{"``; -1 when it never closes."""
    depth = 0
    for i in range(open_at, len(text)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def find_boxed(text: str) -> str | None:
    """Content of the last *closed* ``\\boxed{...}`` (or ``\\fbox{...}``, or ``\\boxed 5``).

    Nested braces are balanced (``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}``); a box that
    is never closed (a reply cut off by ``max_tokens``) does not count.
    """
    found: list[tuple[int, str]] = []
    for cmd in _BOX_COMMANDS:
        start = 0
        while (at := text.find(cmd, start)) != -1:
            start = at + len(cmd)
            if start < len(text) and (text[start].isalpha()):
                continue  # \boxedfoo is another command
            rest = start
            while rest < len(text) and text[rest] == " ":
                rest += 1
            if rest < len(text) and text[rest] == "{":
                end = _closing_brace(text, rest)
                if end != -1:
                    found.append((at, text[rest + 1 : end]))
            elif rest > start and rest < len(text):  # "\boxed 5": one token
                token = re.match(r"[^\s$]+", text[rest:])
                if token:
                    found.append((at, token.group(0)))
    if not found:
        return None
    return max(found)[1]


def find_last_number(text: str) -> str | None:
    """The last number in ``text`` (``-12``, ``1,024``, ``3.5``, ``7/8``), commas removed."""
    numbers = _NUMBER.findall(text)
    if not numbers:
        return None
    return re.sub(r"\s+", "", numbers[-1]).replace(",", "")


def _boxed_or_last_number(text: str) -> str | None:
    boxed = find_boxed(text)
    return boxed if boxed is not None else find_last_number(text)


EXTRACTORS: dict[str, Callable[[str], str | None]] = {
    "boxed": find_boxed,
    "last-number": find_last_number,
    "boxed-or-last-number": _boxed_or_last_number,
}

_UNWRAP = ("\\boxed", "\\fbox", "\\textbf", "\\text", "\\mathrm", "\\mathbf", "\\mbox")


def _unwrap_commands(s: str) -> str:
    """``\\text{A {B}}`` -> ``A {B}`` for every command in :data:`_UNWRAP`, nesting allowed."""
    changed = True
    while changed:
        changed = False
        for cmd in _UNWRAP:
            at = s.find(cmd + "{")
            if at == -1:
                continue
            open_at = at + len(cmd)
            end = _closing_brace(s, open_at)
            if end == -1:
                continue
            s = s[:at] + s[open_at + 1 : end] + s[end + 1 :]
            changed = True
    return s


def normalize_math(s: str) -> str:
    """Canonical form of a short math answer, so that equal answers are equal strings.

    Unwraps ``\\boxed``/``\\text``/``\\mathrm``-style wrappers, drops ``$``, ``\\(...\\)``,
    ``\\left``/``\\right``, thin spaces, degree signs and a trailing period, reads ``x = 5``
    as ``5``, writes ``\\dfrac``/``\\tfrac`` as ``\\frac``, collapses whitespace and writes
    integers plainly (``1,024`` -> ``1024``, ``007`` -> ``7``, ``12.0`` -> ``12``).
    """
    s = _unwrap_commands(s.strip())
    for old, new in (("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\left", ""),
                     ("\\right", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("~", " "),
                     ("^{\\circ}", ""), ("^\\circ", ""), ("\\%", "")):
        s = s.replace(old, new)
    s = s.strip()
    for left, right in (("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right):
            s = s[len(left) : -len(right)]
    previous = None
    while s != previous:
        previous, s = s, s.strip().strip("$").rstrip(".")
    assignment = re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,2}\s*=\s*([^=]+)", s)
    if assignment:
        s = assignment.group(1).strip()
    s = " ".join(s.split())
    if re.fullmatch(r"[+-]?\d{1,3}(?:,\d{3})+", s):
        s = s.replace(",", "")
    if re.fullmatch(r"[+-]?\d+(?:\.0+)?", s):
        s = str(int(s.split(".")[0]))
    return s


NORMALIZERS: dict[str, Callable[[str], str]] = {
    "none": lambda s: s,
    "strip": str.strip,
    "math": normalize_math,
}


def get_extractor(name: str) -> Callable[[str], str | None]:
    if name not in EXTRACTORS:
        raise AutoTTSError(f"unknown answer extractor {name!r}; known: {', '.join(EXTRACTORS)}")
    return EXTRACTORS[name]


def get_normalizer(name: str) -> Callable[[str], str]:
    if name not in NORMALIZERS:
        raise AutoTTSError(f"unknown normaliser {name!r}; known: {', '.join(NORMALIZERS)}")
    return NORMALIZERS[name]


def answer_from(text: str, extractor: str, normalizer: str) -> str:
    """Extract and normalise; :data:`NO_ANSWER` when nothing (or only blank) is found."""
    raw = get_extractor(extractor)(text)
    if raw is None:
        return NO_ANSWER
    answer = get_normalizer(normalizer)(raw)
    return answer if answer.strip() else NO_ANSWER
