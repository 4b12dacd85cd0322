"""The shape of vault/: no import cycle, and no layer importing a layer above it.

The imports are read with ``ast`` from the source (module level, under ``TYPE_CHECKING``
and inside functions alike: an import that only a type checker or one function runs is a
dependency all the same). The layer table is parsed from docs/architecture.md, so the
document a reviewer reads is the one the test enforces.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "vault"
DOC = ROOT / "docs" / "architecture.md"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(current: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute module a (possibly relative) ``from ... import`` names."""
    if level == 0:
        return name or ""
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    base = base[:len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([name] if name else []))


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module of ``known`` that ``name`` imports, wherever the import statement is."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):  # every statement, at any depth: TYPE_CHECKING blocks and functions too
        if isinstance(node, ast.Import):
            for alias in node.names:
                out |= {m for m in known if alias.name == m or alias.name.startswith(m + ".")}
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, is_package, node.level, node.module)
            for alias in node.names:  # ``from . import keys`` names a module, ``from .keys import Key`` a name
                if f"{base}.{alias.name}" in known:
                    out.add(f"{base}.{alias.name}")
                elif base in known:
                    out.add(base)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                target = node.args[0].value
                if target.startswith("."):
                    target = _resolve(name, is_package, len(target) - len(target.lstrip(".")), target.lstrip("."))
                if target in known:
                    out.add(target)
    out.discard(name)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None (depth-first, three colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if state.get(nxt) is None:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if state.get(node) is None:
            found = visit(node)
            if found:
                return found
    return None


def layer_table(text: str) -> dict[str, int]:
    """module -> layer number, from the rows ``| N | name | `a`, `b` ... |`` of the layer
    table in docs/architecture.md (the one whose header starts ``| layer |``)."""
    out: dict[str, int] = {}
    in_table = False
    for line in text.splitlines():
        if line.startswith("| layer |"):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            break
        if not in_table or set(line) <= set("|-: "):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        level = int(cells[0])
        for mod in re.findall(r"`([\w.]+)`", cells[-1]):
            full = mod if mod.startswith("vault") else f"vault.{mod}"
            assert full not in out, f"{full} is in the layer table twice"
            out[full] = level
    return out


def upward_imports(edges: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    return sorted(f"{a} (layer {layers[a]}) imports {b} (layer {layers[b]})"
                  for a, targets in edges.items() for b in targets
                  if a in layers and b in layers and layers[b] > layers[a])


# -- the checks on vault/ ------------------------------------------------------------------------
def test_vault_has_no_import_cycle() -> None:
    assert find_cycle(graph()) is None, f"import cycle: {' -> '.join(find_cycle(graph()) or [])}"


def test_every_module_is_in_the_layer_table() -> None:
    layers = layer_table(DOC.read_text(encoding="utf-8"))
    missing = sorted(set(modules()) - set(layers))
    stale = sorted(set(layers) - set(modules()))
    assert not missing, f"modules missing from the layer table of docs/architecture.md: {missing}"
    assert not stale, f"the layer table of docs/architecture.md names modules that do not exist: {stale}"


def test_no_layer_imports_a_layer_above_it() -> None:
    layers = layer_table(DOC.read_text(encoding="utf-8"))
    assert upward_imports(graph(), layers) == []


def test_no_collaborator_depends_on_the_facade() -> None:
    """Only the package's lazy re-exports and the services over the public API (a layer
    above the facade) reach vault.vault; every collaborator gets the others it needs,
    never a Vault."""
    layers = layer_table(DOC.read_text(encoding="utf-8"))
    users = {m for m, targets in graph().items() if "vault.vault" in targets}
    assert users and all(layers[m] > layers["vault.vault"] for m in users), sorted(users)


# -- the checks can fail ---------------------------------------------------------------------------
def test_the_cycle_finder_finds_a_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    cycle = find_cycle(edges)
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) is None
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_imports_are_found_under_type_checking_and_in_functions(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("from typing import TYPE_CHECKING\n"
                   "if TYPE_CHECKING:\n    from .b import X\n"
                   "def f():\n    from . import c\n    import vault.d\n")
    known = {"vault.b", "vault.c", "vault.d", "vault.e"}
    assert imports_of("vault.m", src, known) == {"vault.b", "vault.c", "vault.d"}


def test_an_upward_import_is_reported() -> None:
    layers = layer_table("| layer | name | modules |\n| --- | --- | --- |\n| 1 | low | `a` |\n| 2 | high | `b` |\n")
    assert layers == {"vault.a": 1, "vault.b": 2}
    assert upward_imports({"vault.a": {"vault.b"}, "vault.b": set()}, layers) != []
    assert upward_imports({"vault.b": {"vault.a"}, "vault.a": set()}, layers) == []
    with pytest.raises(AssertionError):
        layer_table("| layer | name | modules |\n| --- | --- | --- |\n| 1 | low | `a` |\n| 2 | high | `a` |\n")
