"""The layers drawn in docs/architecture.md are the layers of the code.

The document's ``layers`` block lists the layers from the top down, one a line: a
name, then the modules (or packages, ending in ``.*``) it holds.  Every import in
``src/`` (at module level or inside a function) may go to the same layer or one
below it, never above; no import circle anywhere; and ``import boltring`` loads the
transport only.  Run ``python tests/unit/test_layers.py`` to print the graph.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
DOC = ROOT / "docs" / "architecture.md"


def modules() -> dict[str, Path]:
    """Every module under src/, by its dotted name (a package by its __init__)."""
    out = {}
    for path in sorted(SRC.rglob("*.py")) + sorted(SRC.rglob("*.pyx")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imported(path: Path, name: str, mods: set[str]) -> Iterator[str]:
    """The project modules `path` (module `name`) imports.  ``from pkg import mod``
    counts as importing ``pkg.mod`` (not ``pkg``, whose __init__ only runs first),
    as import-linter counts it; ``from pkg import name`` as importing ``pkg``."""
    text = path.read_text()
    if path.suffix == ".pyx":  # Cython: its Python-level imports read as Python
        text = "\n".join(line for line in text.splitlines()
                         if re.match(r"(from\s+\S+\s+import|import)\s", line))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name in mods)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
            yield from subs
            if len(subs) < len(node.names) and base in mods:
                yield base


def graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    mods = modules()
    return {name: set(_imported(path, name, set(mods))) - {name} for name, path in mods.items()}


def layers() -> list[tuple[str, list[str]]]:
    """The document's layers, top first: (layer name, module patterns)."""
    block = re.search(r"```layers\n(.*?)```", DOC.read_text(), re.S)
    assert block, f"{DOC} has no ```layers block"
    rows = []
    for line in block.group(1).splitlines():
        if line.strip():
            name, *patterns = line.split()
            rows.append((name, patterns))
    return rows


def layer_of(module: str, rows: list[tuple[str, list[str]]]) -> int:
    """Index of the layer holding `module` (0 is the top); the most specific pattern wins."""
    best, depth = -1, -1
    for i, (_, patterns) in enumerate(rows):
        for p in patterns:
            prefix = p[:-2] if p.endswith(".*") else p
            hit = module == prefix or (p.endswith(".*") and module.startswith(prefix + "."))
            if hit and len(prefix) > depth:
                best, depth = i, len(prefix)
    return best


def circles(g: dict[str, set[str]]) -> list[list[str]]:
    """Import circles (strongly connected components of more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def upward(g: dict[str, set[str]], rows: list[tuple[str, list[str]]]) -> list[str]:
    """Imports that go to a layer above the importer's."""
    return [f"{m} ({rows[layer_of(m, rows)][0]}) imports {d} ({rows[layer_of(d, rows)][0]})"
            for m in sorted(g) for d in sorted(g[m]) if layer_of(d, rows) < layer_of(m, rows)]


def test_every_module_has_a_layer() -> None:
    rows = layers()
    assert [m for m in graph() if layer_of(m, rows) < 0] == []


def test_no_import_goes_up_a_layer() -> None:
    assert upward(graph(), layers()) == []


def test_no_import_circle() -> None:
    assert circles(graph()) == []


def test_the_checks_catch_an_upward_import_and_a_circle() -> None:
    rows = [("top", ["a.*"]), ("bottom", ["b"])]
    g = {"a.x": {"b"}, "a.y": {"a.x"}, "b": {"a.y"}}
    assert upward(g, rows) == ["b (bottom) imports a.y (top)"]
    assert circles(g) == [["a.x", "a.y", "b"]]


def test_import_boltring_loads_only_the_transport() -> None:
    code = ("import sys, boltring\n"
            "print('\\n'.join(m for m in sys.modules if m.split('.')[0] in ('boltring', 'boltring_rig')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            timeout=60).stdout.split()
    rows = layers()
    tools = {i for i, (name, _) in enumerate(rows) if name in ("tools", "rig")}
    assert "boltring.group" in loaded
    assert [m for m in loaded if layer_of(m, rows) in tools] == []


if __name__ == "__main__":
    g, rows = graph(), layers()
    for i, (name, _) in enumerate(rows):
        print(f"{name}:")
        for m in sorted(x for x in g if layer_of(x, rows) == i):
            print(f"  {m} -> {', '.join(sorted(g[m])) or '-'}")
    problems = upward(g, rows) + [" <-> ".join(c) for c in circles(g)]
    print("\n".join(problems) or "no upward import, no circle")
    sys.exit(1 if problems else 0)
