"""The packages depend on each other only in the direction the data flows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "twin_engine": {"cds_service", "onnx_models", "smart_app", "fastapi", "httpx", "uvicorn"},
    "onnx_models": {"cds_service", "twin_engine", "smart_app", "fastapi", "httpx"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_core_packages_do_not_import_outer_layers(package: str) -> None:
    """twin_engine and onnx_models never import the service, the web stack or each other."""
    offenders = {
        f"{path.relative_to(REPO)} imports {name}"
        for path in (REPO / package).rglob("*.py")
        for name in _imports(path) & FORBIDDEN[package]
    }
    assert offenders == set()


def test_the_service_never_imports_the_demo() -> None:
    """Demo code (generated patients, server launchers) stays out of the service."""
    offenders = [
        str(path.relative_to(REPO))
        for path in (REPO / "cds_service").glob("*.py")
        if path.name not in ("demo.py", "cli.py")
        and "demo" in {n.split(".")[-1] for n in _imports_full(path)}
    ]
    assert offenders == []


def _imports_full(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
