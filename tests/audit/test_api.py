"""The auditor API end to end in-process: real hook calls signed by a CDS client, then
auditors (and impostors) read the trail."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class

from cds_service.audit.auth import AuditorIssuerConfig
from cds_service.http.auth import CdsClientConfig
from cds_service.settings import Settings
from tests.audit.stores import StoreSpec, pg_available, pg_schema, pg_url
from tests.conftest import hook_request, prefetch_from_bundle
from twin_cds.app import create_app

BASE = "http://testserver"
EHR = "https://ehr.example"
IDP = "https://idp.example/auditors"
CLIENT_KEY = ec.generate_private_key(ec.SECP384R1())
AUDITOR_KEY = ec.generate_private_key(ec.SECP384R1())
ACCESS_TOKEN = "fhir-access-token-5e1f-never-stored"  # noqa: S105 - a test token


def _jwks(key: Any, kid: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    data.update({"kid": kid, "alg": "ES384", "use": "sig"})
    return {"keys": [data]}


def _token(key: Any, kid: str, **claims: Any) -> str:
    now = int(time.time())
    body = {"iat": now, "exp": now + 300, "jti": str(uuid.uuid4()), **claims}
    return jwt.encode(
        {k: v for k, v in body.items() if v is not None},
        key,
        algorithm="ES384",
        headers={"kid": kid},
    )


def client_token(aud: str) -> str:
    return _token(CLIENT_KEY, "ehr-1", iss=EHR, aud=aud, tenant="hospital-a")


def auditor_token(**claims: Any) -> str:
    return _token(
        AUDITOR_KEY,
        "idp-1",
        **{"iss": IDP, "aud": f"{BASE}/audit", "sub": "auditor-ann", "role": "auditor", **claims},
    )


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        public_base_url=BASE,
        clients=(CdsClientConfig(iss=EHR, jwks=_jwks(CLIENT_KEY, "ehr-1"), tenant="hospital-a"),),
        auditors=(AuditorIssuerConfig(iss=IDP, jwks=_jwks(AUDITOR_KEY, "idp-1")),),
        **overrides,
    )


@pytest.fixture()
def app_client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(tmp_path))) as c:
        yield c


def _eligible(demo_bundles: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The first n generated patients whose call yields a computed risk card."""
    return [prefetch_from_bundle(b) for b in demo_bundles][:n]


def _hook(c: TestClient, prefetch: dict[str, Any], instance: str) -> dict[str, Any]:
    url = "/cds-services/ascvd-risk"
    body = hook_request(
        prefetch["patient"]["id"],
        prefetch,
        hookInstance=instance,
        fhirServer="https://ehr.example/fhir",
        fhirAuthorization={"access_token": ACCESS_TOKEN, "token_type": "Bearer"},
    )
    token = client_token(BASE + url)
    response = c.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return {"response": response.json(), "token": token}


def _get(c: TestClient, path: str, token: str | None, **params: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return c.get(path, params=params, headers=headers)


def _hs256() -> str:
    now = int(time.time())
    claims = {"iss": IDP, "aud": f"{BASE}/audit", "sub": "x", "role": "auditor"}
    return jwt.encode({**claims, "iat": now, "exp": now + 60}, "secret" * 6, algorithm="HS256")


REFUSED: list[tuple[str, Any, int]] = [
    ("anonymous", lambda: None, 401),
    ("CDS client token for /audit", lambda: client_token(f"{BASE}/audit/records"), 401),
    ("CDS client token, auditor audience", lambda: client_token(f"{BASE}/audit"), 401),
    (
        "CDS client key claiming the auditor issuer",
        lambda: _token(CLIENT_KEY, "idp-1", iss=IDP, aud=f"{BASE}/audit", sub="m", role="auditor"),
        401,
    ),
    ("auditor issuer, no auditor role", lambda: auditor_token(role="clinician"), 403),
    ("auditor token for another audience", lambda: auditor_token(aud=f"{BASE}/cds-services"), 401),
    ("expired auditor token", lambda: auditor_token(exp=int(time.time()) - 3600), 401),
    ("HMAC-signed token", _hs256, 401),
    ("garbage", lambda: "not.a.jwt", 401),
]


@pytest.mark.parametrize(
    "path", ["/audit/records", "/audit/records/1", "/audit/export", "/audit/verify"]
)
@pytest.mark.parametrize(("who", "token", "status"), REFUSED, ids=[r[0] for r in REFUSED])
def test_auditor_endpoints_refuse_everyone_but_auditors(
    app_client: TestClient, path: str, who: str, token: Any, status: int
) -> None:
    """Anonymous calls and CDS-client tokens never read the audit trail."""
    response = _get(app_client, path, token())
    assert response.status_code == status, (who, response.text)
    audit = app_client.app.state.runtime.audit  # type: ignore[attr-defined]
    assert audit.records(kind="auditor-read") == []


def test_an_issuer_that_is_also_a_cds_client_is_never_an_auditor(tmp_path: Path) -> None:
    """Configuring the EHR's issuer as an auditor issuer too does not let its tokens in."""
    settings = _settings(tmp_path).model_copy(
        update={"auditors": (AuditorIssuerConfig(iss=EHR, jwks=_jwks(CLIENT_KEY, "ehr-1")),)}
    )
    token = _token(CLIENT_KEY, "ehr-1", iss=EHR, aud=f"{BASE}/audit", sub="ehr", role="auditor")
    with TestClient(create_app(settings)) as c:
        assert _get(c, "/audit/records", token).status_code == 401


def test_auditor_reads_answer_the_auditors_questions_and_are_audited(
    app_client: TestClient, demo_bundles: list[dict[str, Any]]
) -> None:
    """Query by patient, fetch a record with its feedback; each read is a chain record."""
    first, second = _eligible(demo_bundles, 2)
    call = _hook(app_client, first, "hook-a")
    _hook(app_client, second, "hook-b")
    card = call["response"]["cards"][0]
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "accepted",
                "outcomeTimestamp": "2026-11-27T10:00:00Z",
            }
        ]
    }
    url = "/cds-services/ascvd-risk/feedback"
    token = client_token(BASE + url)
    assert (
        app_client.post(
            url, json=feedback, headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 200
    )

    pid = first["patient"]["id"]
    # An auditor token is single-use: each read below brings a fresh one.
    listing = _get(app_client, "/audit/records", auditor_token(), patient=pid).json()
    (rec,) = listing["records"]
    body = rec["body"]
    assert (body["patient"], body["hookInstance"], body["user"]) == (
        pid,
        "hook-a",
        "Practitioner/p1",
    )
    assert body["client"] == {"iss": EHR, "tenant": "hospital-a", "jti": body["client"]["jti"]}
    assert body["cards"] == call["response"]["cards"]
    assert len(body["model"]["sha256"]) == 64
    assert body["twin"]["version"] == 1
    measured = [i for i in body["inputs"] if i["name"].endswith(("_mg_dl", "_mm_hg"))]
    assert measured
    assert all(i["sources"][0].startswith("Observation/") and i["time"] for i in measured)
    assert {e["feature"] for e in body["explanation"]} <= {i["name"] for i in body["inputs"]}
    assert body["explanation"], "the Shapley factors are audited"

    by_outcome = _get(app_client, "/audit/records", auditor_token(), outcome="accepted").json()
    assert [r["seq"] for r in by_outcome["records"]] == [rec["seq"]]

    detail = _get(app_client, f"/audit/records/{rec['seq']}", auditor_token()).json()
    assert detail["check"] == {"hashMatches": True, "linksToPrevious": True}
    assert detail["feedback"][card["uuid"]][0]["outcome"] == "accepted"
    assert _get(app_client, "/audit/records/999", auditor_token()).status_code == 404

    audit = app_client.app.state.runtime.audit  # type: ignore[attr-defined]
    reads = audit.records(kind="auditor-read")
    assert [(r.body["action"], r.body["returned"]) for r in reads] == [
        ("query", 1),
        ("query", 1),
        ("record", 1),
        ("record", 0),
    ]
    assert reads[0].body["auditor"]["sub"] == "auditor-ann"
    assert reads[0].body["query"]["patient_id"] == pid
    assert reads[0].body["seqs"] == [rec["seq"]]
    report = _get(app_client, "/audit/verify", auditor_token()).json()
    assert (report["ok"], report["records"]) == (True, 2 + 1 + 4)


def test_export_is_valid_fhir_r4_ndjson(
    app_client: TestClient, demo_bundles: list[dict[str, Any]]
) -> None:
    """Every exported line is a FHIR R4 resource that fhir.resources.R4B accepts, and the
    RiskAssessment says what the record says."""
    prefetches = _eligible(demo_bundles, 4)
    for n, prefetch in enumerate(prefetches):
        _hook(app_client, prefetch, f"hook-{n}")
    response = _get(app_client, "/audit/export", auditor_token(), kind="any")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/fhir+ndjson"
    lines = response.content.decode().splitlines()
    resources = [json.loads(line) for line in lines]
    for resource in resources:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    kinds = [r["resourceType"] for r in resources]
    assert kinds.count("AuditEvent") == len(prefetches)
    assert "Device" in kinds
    records = app_client.app.state.runtime.audit.records()  # type: ignore[attr-defined]
    risks = {
        r["identifier"][0]["value"]: r for r in resources if r["resourceType"] == "RiskAssessment"
    }
    assert risks, "at least one computed risk"
    for rec in records:
        risk = risks.get(str(rec.seq))
        if risk is None:
            assert rec.body["outputs"] is None
            continue
        assert {p["outcome"]["text"]: p["probabilityDecimal"] for p in risk["prediction"]} == (
            rec.body["outputs"]
        )
        assert risk["subject"] == {"reference": f"Patient/{rec.body['patient']}"}
        assert risk["method"]["coding"][0]["version"] == rec.body["model"]["version"]
        sources = {s for i in rec.body["inputs"] for s in i["sources"]}
        assert {b["reference"] for b in risk.get("basis", [])} == sources
        (prov,) = [
            r
            for r in resources
            if r["resourceType"] == "Provenance"
            and r["target"][0]["reference"].endswith(risk["id"])
        ]
        assert prov["recorded"] == rec.recorded_at.replace("+00:00", "Z")


def test_no_token_is_ever_stored(
    app_client: TestClient, demo_bundles: list[dict[str, Any]], tmp_path: Path
) -> None:
    """Neither the CDS client's JWT, the FHIR access token nor the auditor's token is in
    any stored byte."""
    (prefetch,) = _eligible(demo_bundles, 1)
    call = _hook(app_client, prefetch, "hook-secret")
    auditors = [auditor_token(), auditor_token()]
    assert _get(app_client, "/audit/records", auditors[0]).status_code == 200
    assert _get(app_client, "/audit/export", auditors[1]).status_code == 200
    secrets = [
        ACCESS_TOKEN,
        call["token"],
        call["token"].split(".")[2],
        *auditors,
        *(a.split(".")[2] for a in auditors),
    ]
    files = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert any(p.name.startswith("audit.sqlite") for p in files)
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, path.name


@pytest.mark.skipif(not pg_available(), reason="no PostgreSQL on 127.0.0.1:5432")
def test_with_a_database_url_the_trail_lives_in_postgresql(
    tmp_path: Path, demo_bundles: list[dict[str, Any]]
) -> None:
    """TWIN_CDS_DATABASE_URL moves the trail to PostgreSQL; the auditor API reads it there."""
    (prefetch,) = _eligible(demo_bundles, 1)
    with pg_schema() as schema:
        settings = _settings(tmp_path).model_copy(update={"database_url": pg_url(schema)})
        with TestClient(create_app(settings)) as c:
            call = _hook(c, prefetch, "hook-pg")
            auditor = auditor_token()
            listing = _get(c, "/audit/records", auditor).json()
            assert [r["body"]["hookInstance"] for r in listing["records"]] == ["hook-pg"]
            assert type(c.app.state.runtime.audit).__name__ == "PostgresAuditLog"  # type: ignore[attr-defined]
        assert not (tmp_path / "data" / "audit.sqlite").exists()
        spec = StoreSpec("postgres", pg_url=pg_url(schema))
        log = spec.open()
        assert [r.kind for r in log.records(kind=None)] == ["hook", "auditor-read"]
        assert log.verify().ok
        stored = spec.dump_bytes()
        assert b"hook-pg" in stored
        for secret in (ACCESS_TOKEN, call["token"], auditor):
            assert secret.encode() not in stored
            assert secret.split(".")[-1].encode() not in stored
        spec.close_all()


def test_malformed_auditor_tokens_and_huge_numbers_are_4xx_not_500(tmp_path: Path) -> None:
    """Review finding: a list alg, a key of another family, and seq past int64 are refused."""
    import base64

    def b64(data: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    with TestClient(create_app(_settings(tmp_path)), raise_server_exceptions=False) as c:
        for header in ({"alg": ["ES384"]}, {"alg": "RS384"}, {"alg": "ES384", "kid": 1}):
            token = f"{b64(header)}.{b64({'iss': 'x'})}."
            assert _get(c, "/audit/records", token).status_code == 401
        huge = 10**25
        assert _get(c, f"/audit/records/{huge}", auditor_token()).status_code == 422
        assert _get(c, "/audit/records", auditor_token(), after=huge).status_code == 422
