"""A linter for candidate controller source: explains honest mistakes before anything runs.

This is **not** the security boundary.  It cannot be: Python offers too many ways from an
allowed object to a forbidden one, and a proposer optimising a score will look for them.  What
contains candidate code is the operating system (:mod:`autotts_jax.untrusted.sandbox`: a
separate process in its own mount, PID and network namespaces, without capabilities, under
resource limits).  The linter's job is to reject, with a clear message and without paying for
a sandbox start, what an honest controller never needs, and to close the doors that are known,
so that what reaches the sandbox is rarely an attack.

A candidate is a Python module that defines ``CONTROLLER = Controller(...)``.  The checks
reject:

* a syntax error, or a source over :data:`MAX_SOURCE_BYTES`;
* an import outside the allow-list (relative imports included), or an imported name that is
  itself a forbidden name or attribute (``from jax import pure_callback``);
* any name or attribute chain that resolves, in the real allowed modules, to a module not on
  :data:`ALLOWED_MODULES` (``from typing import sys``, ``dataclasses.builtins``,
  ``functools.sys``...), or to an object reachable under a forbidden attribute name (an alias
  of ``jax.pure_callback``); a module used as a value (``m = jnp``) rather than as ``m.name``;
* a reference to a forbidden builtin or module name (:data:`FORBIDDEN_NAMES`: ``open``,
  ``exec``, ``eval``, ``getattr``, ``sys``, ``gc``, ``weakref``, ``inspect``, ``pickle``,
  ``h5py`` ...);
* any dunder name (but ``__name__`` and ``__doc__``) or attribute (``__class__``,
  ``__builtins__``, ``x.__dict__``), and any attribute that starts with ``_`` (private API such
  as ``jax._src``), also as keyword patterns of ``match`` class patterns
  (``case object(__globals__=g)``) and as keyword-argument names;
* attributes that read or write files, call back into the host, reach other objects of the
  process or reconfigure JAX (:data:`FORBIDDEN_ATTRIBUTES`: ``np.load``, ``tofile``, ``dump``,
  ``tobytes``, ``jax.debug``, ``jax.config``, ``live_arrays``, ``get_type_hints`` ...);
* string constants (docstrings aside) that name interpreter internals or private attributes
  (``"__globals__"``, ``"_getframe"``, anything containing ``__``) or that access attributes
  through ``str.format`` (``"{0.f_back}"``): with ``getattr`` gone, such a string only serves
  an escape;
* ``global`` statements, and a module without a top-level ``CONTROLLER = ...`` assignment.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import re
import warnings
from dataclasses import dataclass
from typing import Any

MAX_SOURCE_BYTES = 64_000

ALLOWED_IMPORTS = frozenset({
    "__future__", "jax", "jax.numpy", "jax.lax", "numpy", "math", "functools", "typing",
    "dataclasses",
    "autotts_jax.engine.protocol", "autotts_jax.engine.votes", "autotts_jax.engine.env",
    "autotts_jax.engine.knobs", "autotts_jax.explorer.family",
})

# Modules honest code reaches as attributes of the allowed ones (``jax.random.split``,
# ``jnp.linalg.norm``, ``jax.tree_util.tree_map``); none of them touches files or the host.
ALLOWED_MODULES = ALLOWED_IMPORTS | frozenset({
    "jax.random", "jax.tree_util", "jax.tree", "jax.nn", "jax.numpy.linalg", "jax.numpy.fft",
    "jax.scipy", "jax.scipy.special", "jax.lax.linalg", "numpy.linalg", "numpy.random",
    "numpy.fft",
})

FORBIDDEN_NAMES = frozenset({
    "open", "exec", "eval", "compile", "__import__", "globals", "locals", "vars", "getattr",
    "setattr", "delattr", "input", "breakpoint", "help", "exit", "quit", "memoryview",
    "dir", "__builtins__", "__loader__", "__spec__", "license", "copyright", "credits",
    # modules that open the interpreter up, should one be reached without an import
    "sys", "os", "gc", "weakref", "inspect", "pickle", "marshal", "h5py", "builtins",
    "ctypes", "subprocess", "importlib", "socket", "signal",
})

FORBIDDEN_ATTRIBUTES = frozenset({
    # files
    "load", "loads", "save", "savez", "savez_compressed", "savetxt", "loadtxt", "genfromtxt",
    "fromfile", "tofile", "memmap", "DataSource", "fromregex", "open", "dump", "dumps",
    "tobytes", "tostring",
    # numpy / jax escape hatches and host callbacks
    "ctypeslib", "ctypes", "lib", "f2py", "testing", "distutils", "debug", "experimental",
    "pure_callback", "io_callback", "callback", "host_callback", "config", "distributed",
    "profiler", "extend", "tools", "monitoring", "export", "dlpack", "unsafe_buffer_pointer",
    # every live array of the process (the worker's own data included)
    "live_arrays", "live_buffers",
    # code evaluated from strings (string annotations)
    "get_type_hints", "ForwardRef",
    # interpreter internals reachable from ordinary objects
    "gi_frame", "gi_code", "f_globals", "f_locals", "f_back", "f_builtins", "co_code",
    "tb_frame", "tb_next", "cr_frame", "ag_frame", "modules",
    # modules re-exported as attributes (also caught by resolution, when it can see them)
    "sys", "os", "gc", "weakref", "inspect", "pickle", "marshal", "h5py", "builtins",
    "subprocess", "importlib", "socket", "signal",
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


_UNKNOWN = object()  # what a name or attribute chain resolves to when the linter cannot tell


@functools.cache
def _modules() -> dict[str, Any]:
    """The allowed modules themselves (trusted code, imported in this process)."""
    out: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in sorted(ALLOWED_IMPORTS - {"__future__"}):
            try:
                out[name] = importlib.import_module(name)
            except ImportError:
                continue
    return out


@functools.cache
def _forbidden_objects() -> dict[int, str]:
    """``id -> 'module.attr'`` of every object found under a forbidden attribute name of an
    allowed module, so that an alias (``from jax import pure_callback as pc``) or a re-export
    under another name is recognised as what it is."""
    found: dict[int, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for mname, mod in _modules().items():
            for attr in sorted(FORBIDDEN_ATTRIBUTES):
                try:
                    obj = getattr(mod, attr)
                except Exception:  # noqa: BLE001 -- lazy attributes may raise anything
                    continue
                if callable(obj) or inspect.ismodule(obj):
                    found.setdefault(id(obj), f"{mname}.{attr}")
                    if inspect.ismodule(obj):
                        for sub in ("callback", "print", "io_callback", "pure_callback"):
                            inner = getattr(obj, sub, None)
                            if callable(inner):
                                found.setdefault(id(inner), f"{mname}.{attr}.{sub}")
    return found


def _lookup(obj: Any, attr: str) -> Any:
    if obj is _UNKNOWN or attr.startswith("_"):
        return _UNKNOWN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return getattr(obj, attr)
        except Exception:  # noqa: BLE001 -- missing or lazily failing: the sandbox will tell
            return _UNKNOWN


def _dotted(node: ast.AST) -> str:
    try:
        return ast.unparse(node)
    except Exception:  # noqa: BLE001
        return "?"


# Forbidden attribute names that no honest string spells (unlike "load", "config" or "debug",
# which make ordinary dictionary keys and stop reasons).
_INTERNAL_ATTRIBUTES = frozenset({
    "gi_frame", "gi_code", "f_globals", "f_locals", "f_back", "f_builtins", "co_code",
    "tb_frame", "tb_next", "cr_frame", "ag_frame", "modules", "pure_callback", "io_callback",
    "host_callback", "live_arrays", "live_buffers", "get_type_hints", "unsafe_buffer_pointer",
})
_FORMAT_ATTRIBUTE = re.compile(r"\{[^{}]*\.[A-Za-z_]")
_PRIVATE_NAME = re.compile(r"\s*_[A-Za-z0-9_]*\s*")


class _Checker(ast.NodeVisitor):
    def __init__(self, tree: ast.AST) -> None:
        self.problems: list[str] = []
        self.defines_controller = False
        self.bound: dict[str, Any] = {}  # names bound by imports to real objects
        self.parent: dict[int, ast.AST] = {}
        self.docstrings: set[int] = set()
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                self.parent[id(child)] = node
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                self.docstrings.add(id(node.value))  # a bare string statement is inert

    def _bad(self, node: ast.AST, what: str) -> None:
        self.problems.append(f"line {getattr(node, 'lineno', '?')}: {what}")

    # ------------------------------------------------------------------ resolution

    def _resolve(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Name):
            return self.bound.get(node.id, _UNKNOWN)
        if isinstance(node, ast.Attribute):
            return _lookup(self._resolve(node.value), node.attr)
        return _UNKNOWN

    def _check_object(self, node: ast.AST, obj: Any, text: str) -> None:
        """Reject ``text`` (a name or attribute chain at ``node``) by what it really is."""
        if obj is _UNKNOWN:
            return
        if inspect.ismodule(obj):
            if obj.__name__ not in ALLOWED_MODULES:
                self._bad(node, f"{text!r} is the module {obj.__name__!r}, which is not "
                                "allowed")
                return
            parent = self.parent.get(id(node))
            if not (isinstance(parent, ast.Attribute) and parent.value is node):
                self._bad(node, f"the module {text!r} may only be used as {text}.<name>, "
                                "not as a value")
            return
        what = _forbidden_objects().get(id(obj))
        if what is not None:
            self._bad(node, f"{text!r} is {what}, which is not allowed (file, host-callback "
                            "or configuration access)")

    # ------------------------------------------------------------------ imports

    def _import_error(self, node: ast.AST, name: str, kind: str) -> None:
        self._bad(node, f"{kind} {name!r} is not allowed (allowed: "
                        f"{', '.join(sorted(ALLOWED_IMPORTS - {'__future__'}))})")

    def _check_alias_name(self, node: ast.AST, alias: ast.alias) -> None:
        if alias.asname and alias.asname.startswith("__"):
            self._bad(node, f"binding the dunder name {alias.asname!r} is not allowed")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._check_alias_name(node, alias)
            if not _allowed(alias.name):
                self._import_error(node, alias.name, "import of")
                continue
            mods = _modules()
            if alias.asname:
                self.bound[alias.asname] = mods.get(alias.name, _UNKNOWN)
            else:
                top = alias.name.split(".")[0]
                self.bound[top] = mods.get(top, _UNKNOWN)
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = _module_of(node)
        if node.level:
            self._bad(node, "relative imports are not allowed")
        elif not _allowed(module):
            # ``from jax import numpy`` names a submodule: allowed if the submodule is.
            subs = [f"{module}.{a.name}" for a in node.names]
            if not (module in ("jax",) and all(s in ALLOWED_MODULES for s in subs)):
                self._import_error(node, module, "import from")
                self.generic_visit(node)
                return
        base = _modules().get(module, _UNKNOWN)
        for alias in node.names:
            self._check_alias_name(node, alias)
            if alias.name == "*":
                self._bad(node, "'import *' is not allowed")
                continue
            if module == "__future__":
                continue
            if alias.name.startswith("_"):
                self._bad(node, f"importing the private name {alias.name!r} is not allowed")
                continue
            if alias.name in FORBIDDEN_ATTRIBUTES or alias.name in FORBIDDEN_NAMES:
                self._bad(node, f"importing {alias.name!r} from {module!r} is not allowed "
                                "(file, host-callback or configuration access)")
                continue
            obj = _lookup(base, alias.name)
            if obj is _UNKNOWN:
                obj = _modules().get(f"{module}.{alias.name}", _UNKNOWN)
            if inspect.ismodule(obj) and obj.__name__ not in ALLOWED_MODULES:
                self._bad(node, f"{module}.{alias.name} is the module {obj.__name__!r}, "
                                "which is not allowed")
                continue
            what = _forbidden_objects().get(id(obj)) if obj is not _UNKNOWN else None
            if what is not None:
                self._bad(node, f"{module}.{alias.name} is {what}, which is not allowed")
                continue
            self.bound[alias.asname or alias.name] = obj
        self.generic_visit(node)

    # ------------------------------------------------------------------ names, attributes

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in FORBIDDEN_NAMES:
            self._bad(node, f"use of {node.id!r} is not allowed")
        elif (node.id.startswith("__") and node.id.endswith("__")
              and node.id not in _READ_ONLY_DUNDERS):
            self._bad(node, f"dunder name {node.id!r} is not allowed")
        elif isinstance(node.ctx, ast.Load):
            self._check_object(node, self.bound.get(node.id, _UNKNOWN), node.id)
        elif node.id in self.bound:
            # Rebinding an imported name to something else: resolution no longer knows it.
            self.bound[node.id] = _UNKNOWN
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr.startswith("_"):
            self._bad(node, f"access to the private/dunder attribute {node.attr!r} is not "
                            "allowed")
        elif node.attr in FORBIDDEN_ATTRIBUTES:
            self._bad(node, f"attribute {node.attr!r} is not allowed (file, host-callback, "
                            "interpreter or configuration access)")
        else:
            self._check_object(node, self._resolve(node), _dotted(node))
        self.generic_visit(node)

    def visit_MatchClass(self, node: ast.MatchClass) -> None:
        # ``case object(__globals__=g)`` reads an attribute without naming it as one.
        for attr in node.kwd_attrs:
            if attr.startswith("_") or attr in FORBIDDEN_ATTRIBUTES:
                self._bad(node, f"the class pattern keyword {attr!r} reads a private or "
                                "forbidden attribute; not allowed")
        self.generic_visit(node)

    def visit_keyword(self, node: ast.keyword) -> None:
        if node.arg is not None and node.arg.startswith("__"):
            self._bad(node, f"the keyword argument {node.arg!r} is not allowed")
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        self._bad(node, "'global' is not allowed: keep state in cstate")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        # getattr is banned, so a dunder or private name in a string is useless to honest code
        # and a sign of an escape attempt (through a mapping of attributes, str.format ...).
        value = node.value
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(value, str) and id(node) not in self.docstrings:
            if "__" in value:
                self._bad(node, f"the string {value.strip()[:40]!r} names interpreter "
                                "internals")
            elif _PRIVATE_NAME.fullmatch(value) or value.strip() in _INTERNAL_ATTRIBUTES:
                self._bad(node, f"the string {value.strip()[:40]!r} names a private or "
                                "forbidden attribute")
            elif _FORMAT_ATTRIBUTE.search(value):
                self._bad(node, f"the format string {value[:40]!r} reads an attribute; "
                                "use an f-string")
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
    checker = _Checker(tree)
    checker.visit(tree)
    problems = list(checker.problems)
    if not checker.defines_controller:
        problems.append("the module must define CONTROLLER = Controller(...) at top level")
    return StaticReport(not problems, tuple(problems))
