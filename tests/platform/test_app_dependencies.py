"""The apps under platform/ depend on each other in one direction: no import circles.

Every import counts, at module level and inside functions alike (an import moved into a function
still makes the app depend on the other one), except the two places where Django wiring belongs:
an `AppConfig.ready()` body, and importing another app's `signals` module (a leaf that only
declares signals, which is checked here too). `controlplane`, the project package, is left aside.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from tests.import_graph import find_cycles

PLATFORM = Path(__file__).resolve().parents[2] / "platform"
PROJECT = "controlplane"
#: The shared package sits below every app: it may import none of them.
SHARED = "sharedkit"

Edge = tuple[str, str]  # (importing app, imported app)


def apps() -> set[str]:
    return {p.name for p in PLATFORM.iterdir() if (p / "__init__.py").exists()} - {PROJECT}


def _ready_bodies(tree: ast.Module) -> set[int]:
    """ids of the import nodes inside an AppConfig subclass's ready() (signal wiring)."""
    skipped: set[int] = set()
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        if not any(getattr(b, "id", getattr(b, "attr", "")) == "AppConfig" for b in cls.bases):
            continue
        for fn in cls.body:
            if isinstance(fn, ast.FunctionDef) and fn.name == "ready":
                skipped.update(id(n) for n in ast.walk(fn) if isinstance(n, ast.Import | ast.ImportFrom))
    return skipped


def _imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative: inside the same app
        return []
    module = node.module or ""
    return [module] + [f"{module}.{alias.name}" for alias in node.names]


def _only_signals(node: ast.Import | ast.ImportFrom, app: str) -> bool:
    """`from app.signals import x`, `import app.signals`, `from app import signals`."""
    if isinstance(node, ast.Import):
        return all(alias.name == f"{app}.signals" for alias in node.names)
    if node.module == f"{app}.signals":
        return True
    return node.module == app and all(alias.name == "signals" for alias in node.names)


def import_edges(known: set[str]) -> dict[Edge, list[str]]:
    """{(app, other app): ["app/file.py:line", ...]} for every counted import."""
    edges: dict[Edge, list[str]] = defaultdict(list)
    for app in sorted(known):
        for path in sorted((PLATFORM / app).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            wiring = _ready_bodies(tree)
            for node in ast.walk(tree):
                if not isinstance(node, ast.Import | ast.ImportFrom) or id(node) in wiring:
                    continue
                names = _imported(node)
                if not names:
                    continue
                target = names[0].split(".")[0]
                if target == app or target not in known:
                    continue
                if _only_signals(node, target):
                    continue  # listening to another app's signals
                where = f"{path.relative_to(PLATFORM)}:{node.lineno}"
                edges[(app, target)].append(where)
    return edges


def circles(edges: dict[Edge, list[str]]) -> list[list[str]]:
    """The groups of apps that import each other, directly or around a circle."""
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
        graph.setdefault(b, set())  # every app is a node
    return find_cycles(dict(graph))


def test_no_import_circle_between_apps() -> None:
    known = apps()
    edges = import_edges(known)
    found = circles(edges)
    lines = []
    for group in found:
        lines.append(" <-> ".join(group))
        for (a, b), where in sorted(edges.items()):
            if a in group and b in group:
                lines.append(f"  {a} -> {b}: {', '.join(where)}")
    assert not found, (
        "import circles between platform/ apps (send a signal, or move the code so that "
        "one app depends on the other only):\n" + "\n".join(lines)
    )


def _module_graph() -> dict[str, set[str]]:
    """Every module under platform/ (migrations aside) -> the platform modules it imports."""
    modules: dict[str, Path] = {}
    for path in PLATFORM.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        name = ".".join(path.relative_to(PLATFORM).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), filename=str(path))
        wiring = _ready_bodies(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom) or id(node) in wiring:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: from the package, `level - 1` packages up
                    parts = package.split(".")
                    base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def test_no_import_circle_between_modules() -> None:
    """Inside an app too: tasks.py imports services.py, so services.py sends tasks by name."""
    found = find_cycles(_module_graph())
    assert not found, f"import circles between platform/ modules: {found}"


def test_the_shared_package_imports_no_app() -> None:
    edges = import_edges(apps())
    upward = {f"{b}: {', '.join(w)}" for (a, b), w in edges.items() if a == SHARED}
    assert not upward, f"{SHARED} must stay below every app, but imports: {sorted(upward)}"


def test_signals_modules_import_no_app() -> None:
    """A `signals` module only declares signals, so importing it adds no dependency to skip."""
    known = apps()
    for path in PLATFORM.glob("*/signals.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for name in _imported(node):
                    assert name.split(".")[0] not in known | {PROJECT}, (
                        f"{path.relative_to(PLATFORM)}:{node.lineno} imports {name}"
                    )


def test_the_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    """The rule itself: a function-level import is an edge; one in ready() is not."""
    source = (
        "from django.apps import AppConfig\n"
        "class C(AppConfig):\n"
        "    def ready(self):\n"
        "        from b import receivers\n"
        "def f():\n"
        "    from c.services import g\n"
    )
    tree = ast.parse(source)
    wiring = _ready_bodies(tree)
    counted = [
        _imported(n)[0]
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom) and id(n) not in wiring
    ]
    assert "c.services" in counted and "b" not in counted
    assert circles({("a", "c"): ["x"], ("c", "a"): ["y"], ("a", "b"): ["z"]}) == [["a", "c"]]
