"""CDS client authentication: forged and invalid tokens get a bare 401, valid ones a 200."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from cds_service.http.auth import CdsClientConfig
from cds_service.settings import Settings
from tests.support.keys import SigningKey, es384, jwks, rsa_key
from twin_cds.app import create_app

BASE = "http://testserver"
ISS = "https://ehr.example"
JKU = "https://ehr.example/.well-known/jwks.json"
DISCOVERY = f"{BASE}/cds-services"

EC_KEY = es384("ec-1")
OTHER_EC_KEY = es384("ec-1")
RSA_KEY = rsa_key("rsa-1")
JKU_KEY = es384("j-1")


JWKS = jwks(EC_KEY, RSA_KEY, use="sig")


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": ISS,
        "aud": DISCOVERY,
        "exp": now + 300,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "tenant": "hospital-a",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(
    claims: dict[str, Any], key: SigningKey = EC_KEY, alg: str = "ES384", **headers: Any
) -> str:
    return jwt.encode(claims, key.private, algorithm=alg, headers={"kid": "ec-1", **headers})


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _alg_none() -> str:
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}."


def _hs256_with_public_key() -> str:
    pem = EC_KEY.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": "ec-1"})
    payload = _b64(_claims())
    import hashlib
    import hmac

    sig = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


def _tampered() -> str:
    header, _, sig = _sign(_claims()).split(".")
    return f"{header}.{_b64(_claims(tenant='hospital-b', sub='admin'))}.{sig}"


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path,
        public_base_url=BASE,
        clients=(
            CdsClientConfig(iss=ISS, jwks=JWKS, jku_allowlist=(JKU,), tenant="hospital-a"),
            CdsClientConfig(iss="https://jku-only.example", jku_allowlist=(JKU,)),
        ),
    )
    with TestClient(create_app(settings)) as c:
        yield c


FORGED: list[tuple[str, Callable[[], str | None]]] = [
    ("no token", lambda: None),
    ("not a JWT", lambda: "abc.def.ghi"),
    ("alg none", _alg_none),
    ("HS256 signed with the public key", _hs256_with_public_key),
    ("HS384", lambda: jwt.encode(_claims(), "s" * 64, algorithm="HS384")),
    ("wrong aud", lambda: _sign(_claims(aud="https://other.example/cds-services"))),
    ("aud of another endpoint", lambda: _sign(_claims(aud=f"{BASE}/cds-services/ascvd-risk"))),
    ("expired", lambda: _sign(_claims(exp=int(time.time()) - 120, iat=int(time.time()) - 600))),
    (
        "iat in the future",
        lambda: _sign(_claims(iat=int(time.time()) + 3600, exp=int(time.time()) + 4000)),
    ),
    ("nbf in the future", lambda: _sign(_claims(nbf=int(time.time()) + 3600))),
    ("unknown iss", lambda: _sign(_claims(iss="https://evil.example"))),
    (
        "jku off the allowlist",
        lambda: _sign(
            _claims(iss="https://jku-only.example", tenant=None),
            key=JKU_KEY,
            kid="j-1",
            jku="https://evil.example/jwks.json",
        ),
    ),
    ("wrong kid", lambda: _sign(_claims(), kid="nope")),
    ("tampered payload", _tampered),
    ("signed by another key under our kid", lambda: _sign(_claims(), key=OTHER_EC_KEY)),
    ("no jti", lambda: _sign(_claims(jti=None))),
    ("no exp", lambda: _sign(_claims(exp=None))),
    ("RS256 not configured", lambda: _sign(_claims(), key=RSA_KEY, alg="RS256", kid="rsa-1")),
    ("wrong tenant", lambda: _sign(_claims(tenant="hospital-b"))),
    ("no tenant", lambda: _sign(_claims(tenant=None))),
    ("valid for a week", lambda: _sign(_claims(exp=int(time.time()) + 7 * 86400))),
]


@pytest.mark.parametrize(("name", "make"), FORGED, ids=[n for n, _ in FORGED])
def test_forged_or_invalid_tokens_get_a_bare_401(
    client: TestClient, name: str, make: Callable[[], str | None]
) -> None:
    """Each forged or invalid token is refused with 401 and an empty body."""
    token = make()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = client.get("/cds-services", headers=headers)
    assert response.status_code == 401, name
    assert response.content == b""


@pytest.mark.parametrize(
    ("key", "alg", "kid"), [(EC_KEY, "ES384", "ec-1"), (RSA_KEY, "RS384", "rsa-1")]
)
def test_a_valid_token_is_accepted(client: TestClient, key: Any, alg: str, kid: str) -> None:
    """ES384 and RS384 tokens from the configured issuer get a 200."""
    token = _sign(_claims(), key=key, alg=alg, kid=kid)
    response = client.get("/cds-services", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_a_replayed_jti_is_refused(client: TestClient) -> None:
    """The same token twice: the first call passes, the replay is a 401."""
    headers = {"Authorization": f"Bearer {_sign(_claims())}"}
    assert client.get("/cds-services", headers=headers).status_code == 200
    assert client.get("/cds-services", headers=headers).status_code == 401


@respx.mock
def test_keys_from_an_allowlisted_jku_and_rotation(client: TestClient) -> None:
    """Keys come from the allowlisted jku; a new kid after rotation is fetched once more."""
    route = respx.get(JKU).respond(json=JKU_KEY.jwks(use="sig"))
    claims = {"iss": "https://jku-only.example"}
    token = _sign(_claims(**claims, tenant=None), key=JKU_KEY, kid="j-1", jku=JKU)
    assert (
        client.get("/cds-services", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    )
    token = _sign(_claims(**claims, tenant=None), key=JKU_KEY, kid="j-1", jku=JKU)
    assert (
        client.get("/cds-services", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    )
    assert route.call_count == 1  # cached


def test_neither_the_jwt_nor_the_access_token_is_stored(
    client: TestClient, tmp_path: Path, demo_bundles: list[dict[str, Any]]
) -> None:
    """After an authenticated hook call, no byte of the data directory holds either token."""
    from tests.conftest import hook_request, prefetch_from_bundle

    prefetch = prefetch_from_bundle(demo_bundles[0])
    access_token = "access-token-abc123-must-not-persist"  # noqa: S105 - a test token
    body = hook_request(
        prefetch["patient"]["id"],
        prefetch,
        fhirServer="https://ehr.example/fhir",
        fhirAuthorization={"access_token": access_token, "token_type": "Bearer"},
    )
    token = _sign(_claims(aud=f"{BASE}/cds-services/ascvd-risk"))
    response = client.post(
        "/cds-services/ascvd-risk", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    records = client.app.state.runtime.audit.records()  # type: ignore[attr-defined]
    assert records[-1].body["client"]["iss"] == ISS
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert token.encode() not in data, path.name
            assert token.split(".")[2].encode() not in data, path.name
            assert access_token.encode() not in data, path.name


@pytest.fixture(params=["sqlite", "postgresql"])
def replay_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where two replicas' (or workers') replay caches share their jti table."""
    from tests.audit.stores import pg_available, pg_schema, pg_url
    from twin_engine.store.db import sqlite_url

    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "replay.sqlite")
        return
    if not pg_available():
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    with pg_schema() as schema:
        yield pg_url(schema)


def test_the_replay_cache_holds_across_replicas_sharing_a_database(replay_url: str) -> None:
    """Two caches on one database: a jti used on one is refused by the other."""
    from cds_service.http.auth import SqlReplayCache

    first, second = SqlReplayCache(replay_url), SqlReplayCache(replay_url)
    try:
        expires = time.time() + 300
        assert first.first_use(ISS, "jti-1", expires)
        assert not second.first_use(ISS, "jti-1", expires)
        assert second.first_use(ISS, "jti-2", expires)
        assert second.first_use("https://other.example", "jti-1", expires)
    finally:
        first.close()
        second.close()


def test_the_replay_cache_forgets_a_jti_once_its_token_long_expired(replay_url: str) -> None:
    """A jti whose token expired more than the 5-minute grace ago is purged, not kept forever."""
    from cds_service.http.auth import SqlReplayCache

    cache = SqlReplayCache(replay_url)
    try:
        assert cache.first_use(ISS, "old", time.time() - 301)
        assert cache.first_use(ISS, "new", time.time() + 60)  # purges "old" first
        assert cache.first_use(ISS, "old", time.time() + 60)
        assert not cache.first_use(ISS, "new", time.time() + 60)
    finally:
        cache.close()


def test_tokens_never_reach_the_log(
    client: TestClient, caplog: pytest.LogCaptureFixture, demo_bundles: list[dict[str, Any]]
) -> None:
    """Refused and accepted calls log their reason, never the JWT or the access token."""
    import logging

    from tests.conftest import hook_request, prefetch_from_bundle

    caplog.set_level(logging.DEBUG)
    forged = _sign(_claims(aud="https://other.example"))
    assert (
        client.get("/cds-services", headers={"Authorization": f"Bearer {forged}"}).status_code
        == 401
    )
    prefetch = prefetch_from_bundle(demo_bundles[0])
    access_token = "access-token-that-must-not-be-logged"  # noqa: S105 - a test token
    token = _sign(_claims(aud=f"{BASE}/cds-services/ascvd-risk"))
    body = hook_request(
        prefetch["patient"]["id"],
        {"patient": prefetch["patient"]},
        fhirServer="https://not-allowed.example/fhir",
        fhirAuthorization={"access_token": access_token, "token_type": "Bearer"},
    )
    response = client.post(
        "/cds-services/ascvd-risk", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    # That client's FHIR server list is empty: never contacted; the prefetched Patient
    # alone answers with a card saying what is missing.
    assert response.status_code == 200
    assert "401 on /cds-services" in caplog.text
    for secret in (forged, forged.split(".")[2], token, token.split(".")[2], access_token):
        assert secret not in caplog.text


def test_feedback_comes_only_from_the_client_the_card_was_sent_to(
    tmp_path: Path, demo_bundles: list[dict[str, Any]]
) -> None:
    """Review finding: another trusted client could report on a card it never received."""
    from tests.conftest import hook_request, prefetch_from_bundle

    other_key = es384("o-1")
    settings = Settings(
        data_dir=tmp_path,
        public_base_url=BASE,
        clients=(
            CdsClientConfig(iss=ISS, jwks=JWKS, tenant="hospital-a"),
            CdsClientConfig(iss="https://other-ehr.example", jwks=other_key.jwks(use="sig")),
        ),
    )
    with TestClient(create_app(settings)) as c:
        for bundle in demo_bundles:
            prefetch = prefetch_from_bundle(bundle)
            token = _sign(_claims(aud=f"{BASE}/cds-services/ascvd-risk"))
            cards = c.post(
                "/cds-services/ascvd-risk",
                json=hook_request(prefetch["patient"]["id"], prefetch),
                headers={"Authorization": f"Bearer {token}"},
            ).json()["cards"]
            if cards:
                break
        feedback = {
            "feedback": [
                {
                    "card": cards[0]["uuid"],
                    "outcome": "accepted",
                    "outcomeTimestamp": "2026-11-27T10:00:00Z",
                }
            ]
        }
        url = f"{BASE}/cds-services/ascvd-risk/feedback"
        other = _sign(
            _claims(iss="https://other-ehr.example", aud=url, tenant=None), key=other_key, kid="o-1"
        )
        refused = c.post(url, json=feedback, headers={"Authorization": f"Bearer {other}"})
        assert refused.status_code == 400
        mine = _sign(_claims(aud=url))
        assert (
            c.post(url, json=feedback, headers={"Authorization": f"Bearer {mine}"}).status_code
            == 200
        )


def test_two_ehrs_with_the_same_patient_id_get_separate_twins(
    tmp_path: Path, demo_bundles: list[dict[str, Any]]
) -> None:
    """Patient ids are unique only within one EHR: twins are keyed by tenant or issuer."""
    import copy

    from tests.conftest import hook_request, prefetch_from_bundle

    other_key = es384("o-1")
    other_iss = "https://other-ehr.example"
    settings = Settings(
        data_dir=tmp_path,
        public_base_url=BASE,
        clients=(
            CdsClientConfig(iss=ISS, jwks=JWKS, tenant="hospital-a"),
            CdsClientConfig(iss=other_iss, jwks=other_key.jwks(use="sig")),
        ),
    )
    url = f"{BASE}/cds-services/ascvd-risk"
    prefetch = prefetch_from_bundle(demo_bundles[0])
    changed = copy.deepcopy(prefetch)
    changed["patient"]["birthDate"] = "1960-01-01"
    with TestClient(create_app(settings)) as c:
        for pf, token in (
            (prefetch, _sign(_claims(aud=url))),
            (
                changed,
                _sign(_claims(iss=other_iss, aud=url, tenant=None), key=other_key, kid="o-1"),
            ),
        ):
            body = hook_request(prefetch["patient"]["id"], pf)
            response = c.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200
        records = c.app.state.runtime.audit.records()  # type: ignore[attr-defined]
    twins = [r.body["twin"] for r in records]
    assert [t["version"] for t in twins] == [1, 1]
    assert {t["storeKey"].split("|")[0] for t in twins} == {"hospital-a", other_iss}


def test_a_token_over_the_cap_is_refused_before_it_is_decoded(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bearer token longer than MAX_TOKEN_BYTES gets a 401 without any JWT decoding."""
    from cds_service.http.auth import MAX_TOKEN_BYTES

    def decoded(*_: Any, **__: Any) -> Any:
        raise AssertionError("an over-long token was decoded")

    monkeypatch.setattr(jwt, "get_unverified_header", decoded)
    monkeypatch.setattr(jwt, "decode", decoded)
    token = "e" * (MAX_TOKEN_BYTES + 1)
    response = client.get("/cds-services", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
def test_the_bearer_scheme_is_case_insensitive(client: TestClient, scheme: str) -> None:
    """RFC 7235 §2.1: `bearer` in any case is the Bearer scheme."""
    response = client.get(
        "/cds-services", headers={"Authorization": f"{scheme} {_sign(_claims())}"}
    )
    assert response.status_code == 200


def test_a_second_authorization_header_is_refused(client: TestClient) -> None:
    """Two Authorization headers, both valid: 401 (a proxy and we could pick differently)."""
    headers = [("Authorization", f"Bearer {_sign(_claims())}")] * 2
    assert client.get("/cds-services", headers=headers).status_code == 401


def test_an_inline_key_is_used_whatever_jku_the_token_names(client: TestClient) -> None:
    """A client with inline keys may send any jku: it is never fetched, the key verifies."""
    with respx.mock(assert_all_called=False) as mock:
        fetched = mock.get("https://evil.example/jwks.json").respond(json={"keys": []})
        token = _sign(_claims(), jku="https://evil.example/jwks.json")
        response = client.get("/cds-services", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert fetched.call_count == 0
