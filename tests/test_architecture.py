"""The packages depend on each other only in the direction the data flows.

docs/architecture.md draws the layers; these tests keep the code to the drawing:

    twin_engine   (FHIR reader, twin, clinical rules, PK, store port)   imports no web stack
    onnx_models   (registry, cards, Shapley, runtime simulators)         imports neither
    cds_service   (http/, pipeline/, services/, audit/, ops/, population/)
    smart_app     (the clinician app)
    twin_cds      (the composition root: create_app and the command line; imported by nothing)
    ehr_sim       (the EHR launch simulator and the demo launcher; never imported by the product)
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("twin_engine", "onnx_models", "cds_service", "smart_app")
ALL_PACKAGES = (*PRODUCT, "twin_cds", "ehr_sim")

FORBIDDEN = {
    "twin_engine": {
        "cds_service",
        "onnx_models",
        "smart_app",
        "twin_cds",
        "ehr_sim",
        "fastapi",
        "starlette",
        "httpx",
        "uvicorn",
        "onnx",
        "onnxruntime",
    },
    "onnx_models": {
        "cds_service",
        "twin_engine",
        "smart_app",
        "twin_cds",
        "ehr_sim",
        "fastapi",
        "httpx",
    },
    "cds_service": {"twin_cds", "ehr_sim"},
    "smart_app": {"twin_cds", "ehr_sim"},
}

# Store drivers belong to the store adapters only: the rest of twin_engine sees the port.
DRIVERS = {"sqlite3", "psycopg", "psycopg_pool", "sqlalchemy", "alembic"}
DRIVER_HOMES = ("twin_engine/store/", "twin_engine/storage.py")

MAX_LINES = 500
# Modules still over the limit, each to be split along a real seam. The list may only
# shrink: a module that is now short enough must leave it (the second test says so).
KNOWN_LONG: set[str] = set()


def _sources(package: str) -> Iterator[Path]:
    yield from sorted((REPO / package).rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports count)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = (
        _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else (_module_name(path))
    )
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _roots(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_packages_import_only_inner_layers(package: str) -> None:
    """Each package imports only the layers inside it, never the composition root or demo kit."""
    offenders = {
        f"{path.relative_to(REPO)} imports {name}"
        for path in _sources(package)
        for name in _roots(_imported(path)) & FORBIDDEN[package]
    }
    assert offenders == set()


def test_only_the_store_adapters_import_a_database_driver() -> None:
    """twin_engine's domain code sees the store port, never sqlite3, psycopg or SQLAlchemy."""
    offenders = {
        f"{path.relative_to(REPO)} imports {name}"
        for path in _sources("twin_engine")
        if not str(path.relative_to(REPO)).startswith(DRIVER_HOMES)
        for name in _roots(_imported(path)) & DRIVERS
    }
    assert offenders == set()


def test_nothing_imports_the_composition_root() -> None:
    """twin_cds wires the product together; no product module or simulator reaches back into it."""
    offenders = {
        f"{path.relative_to(REPO)} imports twin_cds"
        for package in (*PRODUCT, "ehr_sim")
        for path in _sources(package)
        if "twin_cds" in _roots(_imported(path))
    }
    assert offenders == set()


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for package in ALL_PACKAGES for p in _sources(package)}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imported(path):
            # "from a.b import c" names either the module a.b.c or the attribute c of a.b.
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            # A package's __init__ importing its own modules is how packages re-export.
            if node == target.rpartition(".")[0] and (REPO / node.replace(".", "/")).is_dir():
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


# Loops still to untie; the list may only shrink, like KNOWN_LONG.
KNOWN_CYCLES: list[list[str]] = []


def test_no_import_cycles() -> None:
    """No two modules import each other, directly or round a loop (function-level imports count)."""
    assert sorted(_cycles(_graph())) == KNOWN_CYCLES


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The check above can fail: a two-module loop is reported."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def _long_modules() -> set[str]:
    return {
        str(path.relative_to(REPO))
        for package in ALL_PACKAGES
        for path in _sources(package)
        if len(path.read_text(encoding="utf-8").splitlines()) > MAX_LINES
    }


def test_no_module_over_the_line_limit() -> None:
    """A module a newcomer reads in one sitting: at most 500 lines, except the listed ones."""
    assert _long_modules() - KNOWN_LONG == set()


def test_the_list_of_long_modules_only_shrinks() -> None:
    """A module split below the limit leaves KNOWN_LONG, so the exception list stays true."""
    assert KNOWN_LONG - _long_modules() == set()
