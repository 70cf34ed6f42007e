"""The import graph of slimserve/ follows the layer table in ARCHITECTURE.md: no cycle, nothing imports upwards.

A small AST walk (no import-linter): every `import` and `from ... import` naming a slimserve module counts, inside
functions too; imports under `if TYPE_CHECKING:` do not (they never run).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from .helpers import REPO

PACKAGE = REPO / "slimserve"
TABLE = REPO / "ARCHITECTURE.md"

# Known departures from the table, each (importer, imported). Empty is the goal; add none.
ALLOWED: set[tuple[str, str]] = set()


def layer_table() -> dict[str, tuple[int, str]]:
    """Module prefix -> (layer number, stage) from the rows `| 3 | transforms | `slimserve.quant`, ... |`."""
    table = {}
    for line in TABLE.read_text().splitlines():
        m = re.match(r"\|\s*(\d+)\s*\|\s*([^|]+?)\s*\|(.+)\|\s*$", line)
        if m:
            for name in re.findall(r"`(slimserve[\w.]*)`", m.group(3)):
                assert name not in table, f"ARCHITECTURE.md lists {name} twice"
                table[name] = (int(m.group(1)), m.group(2))
    assert table, "ARCHITECTURE.md has no layer table"
    return table


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


def imports_of(path: Path, modules: set[str]) -> dict[str, int]:
    """slimserve modules imported by the file at `path` -> line of the first import."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_lines(tree)
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from pkg import mod` imports the submodule; `from pkg import obj` the package itself
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
        else:
            continue
        for t in targets:
            if (t == "slimserve" or t.startswith("slimserve.")) and t != name:
                found.setdefault(t, node.lineno)
    return found


def import_graph() -> dict[str, dict[str, int]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: imports_of(p, set(files)) for m, p in files.items()}


def layer_of(module: str, table: dict[str, tuple[int, str]]) -> tuple[int, str] | None:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in table:
            return table[".".join(parts[:n])]
    return None


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if (v, w) in ALLOWED or w not in graph:
                continue
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer():
    table = layer_table()
    missing = sorted(m for m in import_graph() if layer_of(m, table) is None)
    assert not missing, (
        f"{', '.join(missing)} not in the layer table: add the package to the row of its stage in ARCHITECTURE.md "
        "(## Layers), above everything it imports"
    )


def upward_imports(graph: dict[str, dict[str, int]], table: dict[str, tuple[int, str]]) -> list[str]:
    bad = []
    for module, imported in sorted(graph.items()):
        mine = layer_of(module, table)
        for target, line in sorted(imported.items()):
            theirs = layer_of(target, table)
            if mine and theirs and theirs[0] > mine[0] and (module, target) not in ALLOWED:
                bad.append(f"{module} (layer {mine[0]} {mine[1]}) line {line} imports {target} (layer {theirs[0]} "
                           f"{theirs[1]})")  # fmt: skip
    return bad


def test_no_import_runs_up_a_layer():
    bad = upward_imports(import_graph(), layer_table())
    assert not bad, "imports against ARCHITECTURE.md's layer order:\n" + "\n".join(bad)


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_check_sees_a_cycle_and_an_upward_import():
    # The walk itself: a made-up graph with both faults.
    graph = {"slimserve.catalog": {"slimserve.router.api": 1}, "slimserve.router.api": {"slimserve.catalog": 2}}
    assert cycles(graph) == [["slimserve.catalog", "slimserve.router.api"]]
    (bad,) = upward_imports(graph, layer_table())
    assert bad.startswith("slimserve.catalog (layer 4 artifact) line 1 imports slimserve.router.api (layer 8")
    table = layer_table()
    assert layer_of("slimserve.bench.targets", table)[1] == "target"
    assert layer_of("slimserve.bench.api", table)[1] == "measurement"
