"""twin-cds audit verify|show|export|checkpoint: exit 0 intact, 1 tampered, 2 bad input."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class

from cds_service.audit.log import generate_demo_signing_key
from cds_service.settings import Settings
from tests.audit.stores import audit_cli
from tests.conftest import hook_request, prefetch_from_bundle
from twin_cds.app import create_app

CALLS = 5


@pytest.fixture()
def trail(tmp_path: Path, demo_bundles: list[dict[str, Any]]) -> Iterator[tuple[Path, Path]]:
    """A data dir written by the real service: CALLS hook calls, a checkpoint every 3."""
    data = tmp_path / "data"
    key = generate_demo_signing_key(tmp_path / "keys")
    settings = Settings(
        data_dir=data, auth_required=False, audit_signing_key_file=key, audit_checkpoint_every=3
    )
    with TestClient(create_app(settings)) as c:
        for n, bundle in enumerate(demo_bundles[:CALLS]):
            pf = prefetch_from_bundle(bundle)
            body = hook_request(pf["patient"]["id"], pf, hookInstance=f"cli-{n}")
            assert c.post("/cds-services/ascvd-risk", json=body).status_code == 200
    yield data, key


def test_verify_an_intact_trail(trail: tuple[Path, Path]) -> None:
    """Exit 0 with the report; the checkpoints' signatures are checked with the key."""
    data, key = trail
    result = audit_cli("verify", "--data-dir", str(data), key=key)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["ok"], report["lastSeq"], report["signaturesChecked"]) == (True, CALLS + 1, 1)


def test_verify_without_a_key_says_signatures_were_not_checked(trail: tuple[Path, Path]) -> None:
    """No key configured: the chain still verifies, and stderr says what was not checked."""
    data, _ = trail
    result = audit_cli("verify", "--data-dir", str(data))
    assert result.returncode == 0
    assert "not checked: no verify key configured" in result.stderr


def test_verify_names_the_first_tampered_record(trail: tuple[Path, Path]) -> None:
    """A changed stored record: exit 1, its seq and the reason on stderr."""
    data, key = trail
    db = sqlite3.connect(data / "audit.sqlite", isolation_level=None)
    db.execute("DROP TRIGGER audit_chain_no_update")
    db.execute(
        "UPDATE audit_chain SET body = replace(body, 'patient-view', 'order-sign') WHERE seq = 2"
    )
    db.close()
    result = audit_cli("verify", "--data-dir", str(data), key=key)
    assert result.returncode == 1
    assert "first bad record 2: record 2 was modified" in result.stderr
    assert json.loads(result.stdout)["firstBad"]["seq"] == 2
    shown = audit_cli("show", "2", "--data-dir", str(data))
    assert shown.returncode == 1
    assert json.loads(shown.stdout)["check"]["hashMatches"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["verify", "--data-dir", "/nonexistent/twin-cds"], "no audit trail at"),
        (["show", "999"], "no audit record 999"),
        (["show", "two"], "invalid int value"),
        (["export", "--since", "yesterday"], "not an ISO 8601"),
        (["checkpoint"], "no audit signing key configured"),
    ],
)
def test_bad_input_exits_2(trail: tuple[Path, Path], args: list[str], message: str) -> None:
    """Unknown records, missing trails, bad dates and a missing key are exit 2 with a reason."""
    data, _ = trail
    extra = [] if "--data-dir" in args else ["--data-dir", str(data)]
    result = audit_cli(*args, *extra)
    assert result.returncode == 2
    assert message in result.stderr


def test_show_reconstructs_the_twin_the_model_saw(trail: tuple[Path, Path]) -> None:
    """show prints the record, its hash check and the twin version it names, hash-checked."""
    data, _ = trail
    result = audit_cli("show", "1", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    record = out["record"]["body"]
    assert out["check"] == {"hashMatches": True, "linksToPrevious": True}
    assert out["twin"]["version"] == record["twin"]["version"]
    assert out["twin"]["hashMatches"] is True
    assert out["twin"]["contentHash"] == record["twin"]["contentHash"]
    assert out["twin"]["state"]["patient_id"] == record["patient"]


def test_export_prints_valid_fhir_ndjson(trail: tuple[Path, Path]) -> None:
    """export: one valid FHIR R4 resource per line, an AuditEvent per hook call."""
    data, _ = trail
    result = audit_cli("export", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    resources = [json.loads(line) for line in result.stdout.splitlines()]
    for resource in resources:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    assert [r["resourceType"] for r in resources].count("AuditEvent") == CALLS


def test_checkpoint_on_demand(trail: tuple[Path, Path]) -> None:
    """checkpoint signs the head; verify then covers every record with a signature."""
    data, key = trail
    result = audit_cli("checkpoint", "--data-dir", str(data), key=key)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["body"]["throughSeq"] == CALLS + 1
    report = json.loads(audit_cli("verify", "--data-dir", str(data), key=key).stdout)
    assert (report["signaturesChecked"], report["signedThroughSeq"]) == (2, CALLS + 1)
