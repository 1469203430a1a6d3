"""Static checks of candidate controller source, before any of it runs.

A candidate is a Python module that defines ``CONTROLLER = Controller(...)``.  It may import
only from :data:`ALLOWED_IMPORTS`; it may not touch files, processes, the network, the
interpreter's internals or private attributes; it may not build or run code at run time.
Concretely the checks reject:

* a syntax error, or a source over :data:`MAX_SOURCE_BYTES`;
* an import outside the allow-list (relative imports included);
* a reference to a forbidden builtin (:data:`FORBIDDEN_NAMES`: ``open``, ``exec``, ``eval``,
  ``compile``, ``__import__``, ``getattr``, ``globals`` ...);
* any dunder name (but ``__name__`` and ``__doc__``) or attribute (``__class__``,
  ``__builtins__``, ``x.__dict__``), and any
  attribute that starts with ``_`` (private API such as ``jax._src``);
* attributes that read or write files, call back into the host or reconfigure JAX
  (:data:`FORBIDDEN_ATTRIBUTES`: ``np.load``, ``tofile``, ``jax.debug``, ``jax.config`` ...);
* a module without a top-level ``CONTROLLER = ...`` assignment.

These checks are the first of three lines: the sandbox process (resource limits, an audit hook
that refuses file, process and network access, only the search split's stores in reach) and
the invariants on its results are the others (:mod:`autotts_jax.explorer.sandbox`).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

MAX_SOURCE_BYTES = 64_000

ALLOWED_IMPORTS = frozenset({
    "__future__", "jax", "jax.numpy", "jax.lax", "numpy", "math", "functools", "typing",
    "dataclasses",
    "autotts_jax.engine.protocol", "autotts_jax.engine.votes", "autotts_jax.engine.env",
    "autotts_jax.explorer.family",
})

FORBIDDEN_NAMES = frozenset({
    "open", "exec", "eval", "compile", "__import__", "globals", "locals", "vars", "getattr",
    "setattr", "delattr", "input", "breakpoint", "help", "exit", "quit", "memoryview",
    "dir", "__builtins__", "__loader__", "__spec__",
})

FORBIDDEN_ATTRIBUTES = frozenset({
    # files
    "load", "loads", "save", "savez", "savez_compressed", "savetxt", "loadtxt", "genfromtxt",
    "fromfile", "tofile", "memmap", "DataSource", "fromregex", "open",
    # numpy / jax escape hatches and host callbacks
    "ctypeslib", "ctypes", "lib", "f2py", "testing", "distutils", "debug", "experimental",
    "pure_callback", "io_callback", "callback", "host_callback", "config", "distributed",
    "profiler", "extend", "tools", "monitoring", "export",
    # interpreter internals reachable from ordinary objects
    "gi_frame", "gi_code", "f_globals", "f_locals", "f_back", "f_builtins", "co_code",
    "tb_frame", "cr_frame", "ag_frame",
})


_READ_ONLY_DUNDERS = frozenset({"__name__", "__doc__"})


@dataclass(frozen=True)
class StaticReport:
    ok: bool
    problems: tuple[str, ...]

    def message(self) -> str:
        return "; ".join(self.problems)


def _module_of(node: ast.ImportFrom) -> str:
    return node.module or ""


def _allowed(module: str) -> bool:
    return module in ALLOWED_IMPORTS


class _Checker(ast.NodeVisitor):
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.defines_controller = False

    def _bad(self, node: ast.AST, what: str) -> None:
        self.problems.append(f"line {getattr(node, 'lineno', '?')}: {what}")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not _allowed(alias.name):
                self._bad(node, f"import of {alias.name!r} is not allowed (allowed: "
                                f"{', '.join(sorted(ALLOWED_IMPORTS - {'__future__'}))})")
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = _module_of(node)
        if node.level:
            self._bad(node, "relative imports are not allowed")
        elif not _allowed(module):
            # ``from jax import numpy`` names a submodule: allowed if the submodule is.
            subs = [f"{module}.{a.name}" for a in node.names]
            if not (module in ("jax",) and all(_allowed(s) for s in subs)):
                self._bad(node, f"import from {module!r} is not allowed (allowed: "
                                f"{', '.join(sorted(ALLOWED_IMPORTS - {'__future__'}))})")
        for alias in node.names:
            if alias.name == "*":
                self._bad(node, "'import *' is not allowed")
            elif alias.name.startswith("_") and module != "__future__":
                self._bad(node, f"importing the private name {alias.name!r} is not allowed")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in FORBIDDEN_NAMES:
            self._bad(node, f"use of {node.id!r} is not allowed")
        elif (node.id.startswith("__") and node.id.endswith("__")
              and node.id not in _READ_ONLY_DUNDERS):
            self._bad(node, f"dunder name {node.id!r} is not allowed")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr.startswith("_"):
            self._bad(node, f"access to the private/dunder attribute {node.attr!r} is not "
                            "allowed")
        elif node.attr in FORBIDDEN_ATTRIBUTES:
            self._bad(node, f"attribute {node.attr!r} is not allowed (file, host-callback or "
                            "configuration access)")
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        self._bad(node, "'global' is not allowed: keep state in cstate")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        # getattr is banned, so a dunder string is useless to honest code and a sign of an
        # escape attempt (e.g. through a mapping of attributes).
        if isinstance(node.value, str) and re.fullmatch(r"\s*__\w+__\s*", node.value):
            self._bad(node, f"the string {node.value.strip()!r} names interpreter internals")
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        for t in node.targets:
            if isinstance(t, ast.Name) and t.id == "CONTROLLER":
                self.defines_controller = True
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if isinstance(node.target, ast.Name) and node.target.id == "CONTROLLER":
            self.defines_controller = True
        self.generic_visit(node)


def check_source(source: str) -> StaticReport:
    """All problems found in ``source`` (empty when it passes)."""
    if len(source.encode("utf-8")) > MAX_SOURCE_BYTES:
        return StaticReport(False, (f"source is {len(source.encode())} bytes; the limit is "
                                    f"{MAX_SOURCE_BYTES}",))
    try:
        tree = ast.parse(source, filename="candidate.py")
    except SyntaxError as exc:
        where = f"line {exc.lineno}" + (f", column {exc.offset}" if exc.offset else "")
        text = (exc.text or "").strip()
        return StaticReport(False, (f"syntax error at {where}: {exc.msg}"
                                    + (f" -- {text!r}" if text else ""),))
    checker = _Checker()
    checker.visit(tree)
    problems = list(checker.problems)
    if not checker.defines_controller:
        problems.append("the module must define CONTROLLER = Controller(...) at top level")
    return StaticReport(not problems, tuple(problems))
