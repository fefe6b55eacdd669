"""Package rules: a sorted, complete __all__ and no imports of the service layer."""

from __future__ import annotations

import ast
import types
from pathlib import Path

import twin_engine

PACKAGE = Path(twin_engine.__file__).parent


def _isort_key(name: str) -> tuple[int, str]:
    # ruff RUF022 order: CONSTANTS, then Classes, then functions, each alphabetical.
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_all_is_sorted_and_matches_the_public_names() -> None:
    """__all__ is sorted and lists exactly the public non-module names (fails when stale)."""
    assert list(twin_engine.__all__) == sorted(twin_engine.__all__, key=_isort_key)
    public = {
        name
        for name, value in vars(twin_engine).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(twin_engine.__all__) == public


def test_twin_engine_never_imports_the_service_layer() -> None:
    """twin_engine imports neither cds_service nor fastapi nor httpx (architecture.md)."""
    forbidden = {"cds_service", "fastapi", "httpx", "smart_app", "onnx_models"}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"
