"""The shape of the code: no import cycles between the project's modules, and one handler
table (bot/app.py is the only bot module that registers handlers).

Read with `ast` from the source files, so an import hidden inside a function counts as much
as one at the top of a module (only `if TYPE_CHECKING:` imports are left out: they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "classifier", "geo", "models", "web", "whistle")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    """Every module of the project's packages, by dotted name."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            modules[_module_name(path)] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run, at any depth."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append(child)
            stack.append(child)
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module that importing `name` loads (a package's __init__ or a module)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """module → the project modules it imports (a package's __init__ counts as a module)."""
    modules = project_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")
                    anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                    base = ".".join(anchor + ([base] if base else []))
                # `from pkg import mod` imports pkg.mod when it is a module, else pkg.
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            for target in targets:
                resolved = _resolve(target, modules)
                if resolved and resolved != name:
                    graph[name].add(resolved)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for nxt in sorted(graph[node]):
            if nxt in on_path:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in done:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        on_path.discard(node)
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_the_checker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_function_local_imports():
    tree = ast.parse("def f():\n    from bot import app\nif TYPE_CHECKING:\n    import models\n")
    assert [n.module for n in _imports(tree) if isinstance(n, ast.ImportFrom)] == ["bot"]
    assert not [n for n in _imports(tree) if isinstance(n, ast.Import)]


def test_no_import_cycles():
    graph = import_graph()
    assert graph.get("bot.app"), "the graph read no imports"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def _add_handler_calls(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("add_handler", "add_handlers", "add_error_handler")
    ]


def test_only_the_app_registers_handlers():
    registering = {
        name: lines
        for name, path in project_modules().items()
        if name.startswith("bot.") and name != "bot.app" and (lines := _add_handler_calls(path))
    }
    # The Bot API emulator and the terminal demo register nothing of the bot's.
    assert registering == {}
    assert _add_handler_calls(ROOT / "bot" / "app.py")


def test_the_bot_uses_no_private_modules_of_its_libraries():
    """Only public APIs of PTB and aiohttp: private modules change without notice."""
    private = {}
    for name, path in project_modules().items():
        if not name.startswith("bot."):
            continue
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            bad = [
                n
                for n in names
                if n.split(".")[0] in ("telegram", "aiohttp", "aiosqlite")
                and any(part.startswith("_") for part in n.split(".")[1:])
            ]
            if bad:
                private.setdefault(name, []).extend(bad)
    assert private == {}
