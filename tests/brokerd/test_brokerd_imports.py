"""brokerd's modules import each other without circles, counting imports inside functions too.

A circle hidden in a function still couples two modules both ways; the fix is to move what both
sides need into a module they can both import. The graph is read from the sources (AST), so an
import anywhere in a module (top level, function, method, class body, try/except) counts.

The one exception is an ``if TYPE_CHECKING:`` block: it never runs, and an annotation may name a
type defined by a module that imports this one (the request context names the Broker).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.import_graph import find_cycles

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "brokerd"


def module_names() -> dict[str, Path]:
    names = {}
    for path in (ROOT / PACKAGE).rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _resolve(module: str, package: str, level: int) -> str:
    if level == 0:
        return module
    base = package.split(".")
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _runtime_nodes(tree: ast.AST):
    """Every node that can run: all of the tree but the bodies of ``if TYPE_CHECKING:``."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if _is_type_checking(node):
            todo.extend(node.orelse)  # type: ignore[attr-defined]
            continue
        todo.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node.module or "", package, node.level)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for target in targets:
                # `import brokerd.a.b` names brokerd.a.b; a name outside brokerd is not an edge.
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and target.split(".")[0] == PACKAGE:
                    graph[name].add(target)
    return graph


def test_graph_sees_function_level_imports() -> None:
    # The checker itself: an import inside a function is an edge like any other.
    tree = ast.parse("def f():\n    from brokerd import records\n")
    assert any(isinstance(n, ast.ImportFrom) for n in _runtime_nodes(tree))
    tree = ast.parse("if TYPE_CHECKING:\n    from brokerd import broker\nelse:\n    import brokerd.cli\n")
    assert [n.names[0].name for n in _runtime_nodes(tree) if isinstance(n, ast.Import | ast.ImportFrom)] == [
        "brokerd.cli"
    ]
    assert find_cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


def test_brokerd_has_no_import_circles() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, "import circles among brokerd modules (move what both sides need into a " \
        f"module both can import): {cycles}"
