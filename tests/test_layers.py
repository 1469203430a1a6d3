"""The package's layering holds: no import cycle between its parts, no import that goes up.

The layers are declared once, in ``autotts_jax/__init__.py``'s docstring; this test parses
every module of the package (with :mod:`ast`, so function-level imports count too), maps each
import to the part it reaches (a subpackage, or a top-level module such as ``cli``) and fails
on any arrow that does not point to a lower layer, and on any cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pytest

import autotts_jax

PACKAGE = Path(autotts_jax.__file__).resolve().parent
ROOT = "autotts_jax"  # the package's own __init__


def declared_layers(doc: str) -> list[list[str]]:
    """The indented block after the first ``::`` of ``doc``, one layer a line."""
    lines = doc.split("::", 1)[1].splitlines()
    layers: list[list[str]] = []
    for line in lines[1:]:
        if not line.strip():
            if layers:
                break
            continue
        if not line.startswith(" "):
            break
        layers.append(line.split())
    return layers


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:]) if "." in name else Path()
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterable[str]:
    """Every module of the package that ``module`` imports, wherever the import statement is."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield sub if _is_module(sub) else base


def part(module: str) -> str:
    """The layer unit ``module`` belongs to: ``autotts_jax.engine.env`` -> ``engine``."""
    names = module.split(".")
    return names[1] if len(names) > 1 else ROOT


def package_graph() -> dict[str, set[str]]:
    """Part -> the other parts it imports."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        tree = ast.parse(path.read_text(), str(path))
        src = part(module)
        graph.setdefault(src, set())
        for target in _imports(tree, module, path.name == "__init__.py"):
            if target == ROOT or target.startswith(ROOT + "."):
                dst = part(target)
                if dst != src:
                    graph[src].add(dst)
    return graph


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def layering_problems(graph: Mapping[str, Iterable[str]], layers: Sequence[Sequence[str]]
                      ) -> list[str]:
    """Parts missing from ``layers``, arrows that do not go down, and a cycle if any."""
    rank = {name: i for i, layer in enumerate(layers) for name in layer}
    problems = [f"{name} is in no layer" for name in sorted(graph) if name not in rank]
    for src in sorted(graph):
        for dst in sorted(graph[src]):
            if src in rank and dst in rank and rank[dst] >= rank[src]:
                how = "up" if rank[dst] > rank[src] else "sideways"
                problems.append(f"{src} -> {dst} goes {how}")
    cycle = find_cycle(graph)
    if cycle:
        problems.append("cycle: " + " -> ".join(cycle))
    return problems


LAYERS = declared_layers(autotts_jax.__doc__ or "")


def test_the_layers_are_declared_once_and_cover_every_part():
    names = [n for layer in LAYERS for n in layer]
    assert len(names) == len(set(names)), names
    parts = {part(_module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert set(names) == parts


def test_no_import_goes_up_and_no_cycle():
    assert layering_problems(package_graph(), LAYERS) == []


def test_function_level_and_from_imports_are_seen():
    graph = package_graph()
    assert "apps" in graph["cli"]  # `from autotts_jax import apps` inside a function
    assert "untrusted" in graph["experiments"]  # replaying a module file in the sandbox


@pytest.mark.parametrize(("graph", "expected"), [
    ({"store": {"engine"}, "engine": {"store"}},
     ["store -> engine goes up", "cycle: engine -> store -> engine"]),
    ({"engine": {"explorer"}, "explorer": {"engine"}}, ["engine -> explorer goes up"]),
    ({"engine": {"collect"}, "collect": set()}, ["engine -> collect goes sideways"]),
    ({"plugins": {"engine"}, "engine": set()}, ["plugins is in no layer"]),
])
def test_the_check_fails_on_a_cycle_an_upward_arrow_and_an_unknown_part(graph, expected):
    problems = layering_problems(graph, LAYERS)
    for want in expected:
        assert want in problems, problems
    if "cycle" in " ".join(expected):
        assert find_cycle(graph) is not None


def test_find_cycle_on_a_longer_cycle_and_on_a_dag():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
