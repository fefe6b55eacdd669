"""Finding 10: a stored audit body that is not valid JSON is tampering, reported as such."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.audit.stores import audit_cli
from tests.audit.test_cli import trail  # noqa: F401 - the fixture, reused

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("body", ["{not json", "[1, 2]"])
def test_a_stored_body_that_is_not_a_json_object_is_tampering_not_a_traceback(
    trail: tuple[Path, Path],  # noqa: F811 - the imported fixture
    body: str,
) -> None:
    """`twin-cds audit verify` exits 1 with "TAMPERING: first bad record N" and no traceback."""
    data, key = trail
    db = sqlite3.connect(data / "audit.sqlite", isolation_level=None)
    db.execute("DROP TRIGGER audit_chain_no_update")
    db.execute("UPDATE audit_chain SET body = ? WHERE seq = 3", (body,))
    db.close()
    result = audit_cli("verify", "--data-dir", str(data), key=key)
    assert result.returncode == 1, result.stderr
    assert "TAMPERING: first bad record 3" in result.stderr
    assert "Traceback" not in result.stderr
