"""Tunable knobs: numbers a controller declares so that the engine can set them.

A controller driven by one ``beta`` maps it to its numbers through schedules.  Declaring them
as a module-level ``KNOBS`` table, instead of writing constants into ``make_params``, lets
``autotts-jax discover`` tune them by replay (a batched search over the schedules, on the
search split only; :mod:`autotts_jax.explorer.tune`) and lets a reader see what each number
is allowed to be::

    from autotts_jax.engine.knobs import Knob, knob_values

    KNOBS = {
        # kind, low, high, direction in beta, intercept, slope:  value = intercept + slope*beta
        "conf_thr": Knob("float", 0.5, 0.999, +1, 0.85, 0.12),
        "max_branches": Knob("int", 2, 64, +1, 4, 60),
    }

    def make_params(config):
        return knob_values(KNOBS, config["beta"])  # {"conf_thr": 0.91, "max_branches": 34}

``direction`` is the sign the slope must keep (``+1``: the value rises with beta, ``-1``: it
falls, ``0``: free), so a tuned schedule still spends more as beta rises.  Values are computed
on the host in Python float64 and rounded the way CMC's schedule is: integers with Python's
half-to-even ``round``, floats to 4 decimals; then clipped to ``[low, high]``.

``KNOBS`` must be a literal table (string keys, ``Knob(...)`` calls with number arguments):
the discovery process reads it with :func:`parse_knobs` without running the module, and
writes a tuned table back into the source with :func:`with_knobs`, so the tuned controller is
an ordinary module whose behaviour follows from its text.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import NamedTuple

KINDS = ("int", "float")


class Knob(NamedTuple):
    """One tunable number: ``value(beta) = intercept + slope * beta``, rounded and clipped."""

    kind: str  # "int" or "float"
    low: float
    high: float
    direction: int  # +1 / -1: the slope's sign; 0: free
    intercept: float
    slope: float

    def value(self, beta: float) -> int | float:
        b = min(1.0, max(0.0, float(beta)))
        v = float(self.intercept) + float(self.slope) * b
        if self.kind == "int":
            return int(min(self.high, max(self.low, round(v))))
        return float(min(self.high, max(self.low, round(v, 4))))


def check_knobs(knobs: Mapping[str, Knob]) -> None:
    """Raise ``ValueError`` naming the first malformed knob."""
    if not isinstance(knobs, Mapping) or not knobs:
        raise ValueError("KNOBS must be a non-empty dict of name -> Knob(...)")
    for name, k in knobs.items():
        if not isinstance(name, str) or not isinstance(k, Knob):
            raise ValueError(f"KNOBS[{name!r}] must be a Knob(kind, low, high, direction, "
                             "intercept, slope)")
        if k.kind not in KINDS:
            raise ValueError(f"KNOBS[{name!r}]: kind must be 'int' or 'float', got {k.kind!r}")
        if not float(k.low) < float(k.high):
            raise ValueError(f"KNOBS[{name!r}]: low {k.low} must be below high {k.high}")
        if k.direction not in (-1, 0, 1):
            raise ValueError(f"KNOBS[{name!r}]: direction must be -1, 0 or +1")
        if k.direction and float(k.slope) * k.direction < 0:
            raise ValueError(f"KNOBS[{name!r}]: slope {k.slope} goes against direction "
                             f"{k.direction:+d}")


def knob_values(knobs: Mapping[str, Knob], beta: float) -> dict[str, int | float]:
    """Every knob's value at ``beta`` (host-side, for ``make_params``)."""
    return {name: k.value(beta) for name, k in knobs.items()}


def _literal_knob(node: ast.expr) -> Knob:
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "Knob" and not node.keywords and len(node.args) == 6):
        raise ValueError("each KNOBS value must be Knob(kind, low, high, direction, "
                         "intercept, slope) with six positional literal arguments")
    args = [ast.literal_eval(a) for a in node.args]
    if not isinstance(args[0], str) or not all(
            isinstance(a, int | float) and not isinstance(a, bool) for a in args[1:]):
        raise ValueError("Knob arguments: a kind string and five numbers")
    return Knob(args[0], args[1], args[2], int(args[3]), args[4], args[5])


def _knobs_node(tree: ast.Module) -> ast.Assign | None:
    found = None
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) and node.value is not None else [])
        if any(isinstance(t, ast.Name) and t.id == "KNOBS" for t in targets):
            found = node
    return found


def parse_knobs(source: str) -> dict[str, Knob] | None:
    """The module's literal ``KNOBS`` table, read without running it; ``None`` when it has
    none.  ``ValueError`` when the table is there but not a literal table of knobs."""
    node = _knobs_node(ast.parse(source))
    if node is None:
        return None
    if not isinstance(node.value, ast.Dict):
        raise ValueError("KNOBS must be a literal dict")
    out: dict[str, Knob] = {}
    for key, value in zip(node.value.keys, node.value.values, strict=True):
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            raise ValueError("KNOBS keys must be string literals")
        out[key.value] = _literal_knob(value)
    check_knobs(out)
    return out


def with_knobs(source: str, knobs: Mapping[str, Knob]) -> str:
    """``source`` with its ``KNOBS`` table replaced by ``knobs`` (same names)."""
    node = _knobs_node(ast.parse(source))
    if node is None:
        raise ValueError("the source has no KNOBS table")
    lines = source.splitlines(keepends=True)
    body = "".join(
        f"    {name!r}: Knob({k.kind!r}, {k.low!r}, {k.high!r}, {int(k.direction)}, "
        f"{round(float(k.intercept), 4)!r}, {round(float(k.slope), 4)!r}),\n"
        for name, k in knobs.items())
    head = "".join(lines[:node.lineno - 1])
    tail = "".join(lines[node.end_lineno:])
    return f"{head}KNOBS = {{\n{body}}}\n{tail}"
