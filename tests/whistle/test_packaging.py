"""Honest installs: every library the code imports is declared in pyproject.toml, so
`pip install -e .` (and `.[dev]` for the tests) in a brand-new virtualenv is all it takes.

The imports are read from the source (ast), and mapped to the distributions that provide them
in this environment."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("bot", "classifier", "models", "web", "whistle", "migrations", "train.py")
DEV_ONLY = ("tests", "bench")
# Libraries that libraries we use import for features they keep optional: nothing in our code
# names them, so only this list keeps them declared.
INDIRECT = {
    "itsdangerous": "starlette's SessionMiddleware (the dashboard login)",
    "jinja2": "starlette's Jinja2Templates (the dashboard pages)",
    "python-multipart": "starlette's form parsing (the login form)",
    "apscheduler": "python-telegram-bot's JobQueue (reminders, the sender's kicks)",
}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> tuple[set[str], set[str]]:
    """(runtime, dev) distribution names from pyproject.toml."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]

    def names(requirements: list[str]) -> set[str]:
        return {normalize(re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]) for r in requirements}

    runtime = names(project["dependencies"])
    # python-telegram-bot[job-queue] brings apscheduler: the extra declares it for us.
    if any(
        r.startswith("python-telegram-bot[") and "job-queue" in r for r in project["dependencies"]
    ):
        runtime.add("apscheduler")
    return runtime, names(project["optional-dependencies"]["dev"])


def local_modules() -> set[str]:
    """Top-level names that are this repository's own (bench scripts import each other)."""
    names = {p.stem for p in REPO.glob("*.py")} | {p.stem for p in (REPO / "bench").glob("*.py")}
    return names | {p.name for p in REPO.iterdir() if p.is_dir()}


def imports(roots: tuple[str, ...]) -> dict[str, set[str]]:
    """Third-party top-level module → the files importing it."""
    local = local_modules()
    found: dict[str, set[str]] = {}
    for root in roots:
        path = REPO / root
        for file in [path] if path.is_file() else path.rglob("*.py"):
            for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top not in local and top not in sys.stdlib_module_names:
                        found.setdefault(top, set()).add(str(file.relative_to(REPO)))
    return found


def undeclared(roots: tuple[str, ...], allowed: set[str]) -> dict[str, str]:
    providers = packages_distributions()
    missing = {}
    for module, files in sorted(imports(roots).items()):
        dists = {normalize(d) for d in providers.get(module, [])}
        if not dists & allowed:
            missing[module] = f"{sorted(dists) or 'not installed'} imported by {sorted(files)[:3]}"
    return missing


def test_the_product_imports_only_declared_runtime_libraries():
    runtime, _ = declared()
    assert undeclared(PRODUCT, runtime) == {}


def test_tests_and_benchmarks_import_only_declared_libraries():
    runtime, dev = declared()
    assert undeclared(DEV_ONLY, runtime | dev) == {}


def test_libraries_our_libraries_import_for_us_are_declared():
    runtime, _ = declared()
    assert {name for name in INDIRECT if normalize(name) not in runtime} == set()


def test_the_audit_sees_an_undeclared_import():
    """The check can fail: a library that is installed but not a runtime dependency."""
    assert "pytest" in undeclared(("tests",), declared()[0])
