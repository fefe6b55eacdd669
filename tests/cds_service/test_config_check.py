"""``twin-cds config check``: each setting unfit for production is named; exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cds_service.audit.chain import generate_demo_signing_key
from cds_service.ops.config_check import production_problems
from cds_service.settings import Settings
from twin_cds.cli import main

EHR = "https://ehr.example.org"


def _good(tmp_path: Path) -> dict[str, Any]:
    """Settings a hospital could go live with."""
    return {
        "data_dir": tmp_path,
        "auth_required": True,
        "clients": [{"iss": EHR, "jku_allowlist": [EHR + "/jwks"], "fhir_servers": [EHR + "/r4"]}],
        "allow_insecure_loopback_fhir": False,
        "audit_signing_key_file": generate_demo_signing_key(tmp_path),
        "public_base_url": "https://cds.example.org",
        "database_url": "postgresql://cds@db.example.org/cds",
    }


def test_a_production_configuration_has_no_problem(tmp_path: Path) -> None:
    """The good settings pass, also with several workers."""
    assert production_problems(Settings(**_good(tmp_path)), workers=4) == []


@pytest.mark.parametrize(
    ("change", "workers", "problem"),
    [
        ({"auth_required": False}, 1, "TWIN_CDS_AUTH_REQUIRED is false"),
        ({"clients": []}, 1, "TWIN_CDS_CLIENTS is empty"),
        (
            {"clients": [{"iss": EHR, "fhir_servers": []}]},
            1,
            f"CDS client {EHR}: fhir_servers is empty",
        ),
        (
            {"clients": [{"iss": EHR, "fhir_servers": ["http://ehr.example.org/r4"]}]},
            1,
            f"CDS client {EHR}: FHIR server http://ehr.example.org/r4 is not https",
        ),
        ({"allow_insecure_loopback_fhir": True}, 1, "TWIN_CDS_ALLOW_INSECURE_LOOPBACK_FHIR"),
        ({"audit_signing_key_file": None}, 1, "TWIN_CDS_AUDIT_SIGNING_KEY_FILE is unset"),
        (
            {"audit_signing_key_file": Path("/nonexistent/key.pem")},
            1,
            "TWIN_CDS_AUDIT_SIGNING_KEY_FILE: audit signing key /nonexistent/key.pem cannot",
        ),
        (
            {"public_base_url": "http://cds.example.org"},
            1,
            "TWIN_CDS_PUBLIC_BASE_URL http://cds.example.org is not https",
        ),
        ({"database_url": None}, 2, "2 workers without TWIN_CDS_DATABASE_URL"),
    ],
)
def test_each_bad_setting_is_named(
    tmp_path: Path, change: dict[str, Any], workers: int, problem: str
) -> None:
    """One bad setting gives exactly one problem, which names it."""
    problems = production_problems(Settings(**(_good(tmp_path) | change)), workers=workers)
    assert len(problems) == 1, problems
    assert problems[0].startswith(problem)


def test_one_sqlite_worker_is_fine(tmp_path: Path) -> None:
    """SQLite is enough for a single worker."""
    settings = Settings(**(_good(tmp_path) | {"database_url": None}))
    assert production_problems(settings, workers=1) == []


def test_the_command_exits_2_naming_every_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The development defaults fail with each problem on its own stderr line."""
    monkeypatch.setenv("TWIN_CDS_DATA_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as info:
        main(["config", "check", "--workers", "2"])
    assert info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert all(line.startswith("twin-cds: config: ") for line in lines)
    named = [line.removeprefix("twin-cds: config: ").split(" ")[0] for line in lines]
    assert named == [
        "TWIN_CDS_CLIENTS",
        "TWIN_CDS_ALLOW_INSECURE_LOOPBACK_FHIR",
        "TWIN_CDS_AUDIT_SIGNING_KEY_FILE",
        "TWIN_CDS_PUBLIC_BASE_URL",
        "2",
    ]


def test_the_command_prints_ok_for_a_good_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Good settings from the environment: exit 0 and a JSON ok."""
    good = _good(tmp_path)
    monkeypatch.setenv("TWIN_CDS_CLIENTS", json.dumps(good["clients"]))
    monkeypatch.setenv("TWIN_CDS_ALLOW_INSECURE_LOOPBACK_FHIR", "false")
    monkeypatch.setenv("TWIN_CDS_AUDIT_SIGNING_KEY_FILE", str(good["audit_signing_key_file"]))
    monkeypatch.setenv("TWIN_CDS_PUBLIC_BASE_URL", good["public_base_url"])
    monkeypatch.setenv("TWIN_CDS_DATABASE_URL", good["database_url"])
    main(["config", "check", "--workers", "3"])
    assert json.loads(capsys.readouterr().out) == {"ok": True, "workers": 3}
