"""Package rules: a sorted, complete __all__ and no imports of the service layer."""

from __future__ import annotations

import ast
from pathlib import Path

import twin_engine

PACKAGE = Path(twin_engine.__file__).parent


def test_all_is_sorted_and_every_name_exists() -> None:
    """__all__ is sorted and each name resolves (fails when it goes stale)."""
    assert list(twin_engine.__all__) == sorted(twin_engine.__all__)
    for name in twin_engine.__all__:
        assert hasattr(twin_engine, name), name


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
