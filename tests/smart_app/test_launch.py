"""The app's SMART launch (backend-for-frontend) against a scripted EHR (respx).

These are unit tests of our client side: what we send, and what we refuse from an EHR
that misbehaves. The real EHR launch simulator and a real browser are exercised in
tests/integration/test_smart_app.py.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class

from cds_service.audit.fhir import record_resources
from cds_service.settings import Settings
from smart_app.launch import COOKIE
from smart_app.sessions import SessionStore
from twin_cds.app import create_app

ISS = "https://ehr.test/fhir"
ISSUER = "https://ehr.test"
CLIENT_ID = "twin-cds-app"
ACCESS_TOKEN = "at-" + "x" * 40
EHR_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)

SMART_CONFIG = {
    "issuer": ISSUER,
    "authorization_endpoint": f"{ISSUER}/authorize",
    "token_endpoint": f"{ISSUER}/token",
    "jwks_uri": f"{ISSUER}/jwks.json",
    "code_challenge_methods_supported": ["S256"],
    "capabilities": ["launch-ehr", "launch-standalone", "client-public"],
}


def _jwks() -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(EHR_KEY.public_key()))
    return {"keys": [{**jwk, "kid": "ehr-1", "alg": "RS256", "use": "sig"}]}


def _id_token(expected_nonce: str, **override: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "clinician-1",
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 300,
        "nonce": expected_nonce,
        "fhirUser": f"{ISS}/Practitioner/clinician-1",
    }
    key = override.pop("_key", EHR_KEY)
    claims.update(override)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "ehr-1"})


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        auth_required=False,
        smart_servers=({"iss": ISS, "client_id": CLIENT_ID},),  # type: ignore[arg-type]
    )


@pytest.fixture()
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


class Ehr:
    """A scripted EHR: discovery, JWKS, and a token endpoint that checks PKCE."""

    def __init__(self, mock: respx.MockRouter) -> None:
        self.mock = mock
        self.authorize_params: dict[str, str] = {}
        self.token_requests: list[dict[str, str]] = []
        self.token_response: Callable[[dict[str, str]], httpx.Response] = self._good
        mock.get(f"{ISS}/.well-known/smart-configuration").respond(json=SMART_CONFIG)
        mock.get(f"{ISSUER}/jwks.json").respond(json=_jwks())
        mock.get(f"{ISSUER}/style.json").respond(
            json={"color_highlight": "#1F5F99", "color_text": "#000", "font_family_body": "Lato"}
        )
        mock.post(f"{ISSUER}/token").mock(side_effect=self._token)

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.token_requests.append(form)
        return self.token_response(form)

    def _good(self, form: dict[str, str], **extra: Any) -> httpx.Response:
        verifier = form["code_verifier"].encode()
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
        if challenge.decode() != self.authorize_params["code_challenge"]:
            return httpx.Response(400, json={"error": "invalid_grant"})
        body = {
            "access_token": ACCESS_TOKEN,
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": self.authorize_params["scope"],
            "patient": "p-123",
            "need_patient_banner": True,
            "smart_style_url": f"{ISSUER}/style.json",
            "id_token": _id_token(self.authorize_params["nonce"]),
            "appContext": json.dumps({"patient": "p-123", "twinVersion": 2, "service": "x"}),
        }
        body.update(extra)
        return httpx.Response(200, json={k: v for k, v in body.items() if v is not None})

    def launch(self, client: TestClient, **params: str) -> httpx.Response:
        response = client.get(
            "/app/launch", params={"iss": ISS, "launch": "L-1", **params}, follow_redirects=False
        )
        assert response.status_code == 302, response.text
        location = urlsplit(response.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == f"{ISSUER}/authorize"
        self.authorize_params = {k: v[0] for k, v in parse_qs(location.query).items()}
        return response


@pytest.fixture()
def ehr() -> Iterator[Ehr]:
    with respx.mock(assert_all_called=False) as mock:
        yield Ehr(mock)


def _callback(client: TestClient, ehr: Ehr, **params: str) -> httpx.Response:
    query = {"code": "code-1", "state": ehr.authorize_params["state"], **params}
    return client.get("/app/callback", params=query, follow_redirects=False)


def test_launch_asks_for_a_code_with_pkce_s256_and_a_fresh_state(
    client: TestClient, ehr: Ehr, settings: Settings
) -> None:
    """The authorize request carries our client, exact redirect URI, aud = iss, S256 PKCE,
    a 256-bit state and nonce, the launch id and the v2 scopes; the cookie is opaque."""
    response = ehr.launch(client)
    p = ehr.authorize_params
    assert p["response_type"] == "code"
    assert p["client_id"] == CLIENT_ID
    assert p["redirect_uri"] == settings.app_redirect_uri
    assert p["aud"] == ISS
    assert p["launch"] == "L-1"
    assert p["code_challenge_method"] == "S256"
    assert len(p["code_challenge"]) == 43  # base64url of a SHA-256, unpadded
    assert len(p["state"]) >= 43 and len(p["nonce"]) >= 43
    scopes = p["scope"].split()
    assert {"launch", "openid", "fhirUser", "patient/Observation.rs"} <= set(scopes)
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith(f"{COOKIE}=")
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/app" in cookie
    assert "secure" not in cookie  # loopback http in this test's settings
    first_state = p["state"]
    ehr.launch(client)
    assert ehr.authorize_params["state"] != first_state


def test_standalone_launch_asks_the_ehr_for_a_patient(client: TestClient, ehr: Ehr) -> None:
    """Without a launch id the app asks for launch/patient (the EHR's patient picker)."""
    response = client.get("/app/launch", params={"iss": ISS}, follow_redirects=False)
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert "launch" not in query
    assert "launch/patient" in query["scope"][0].split()


def test_session_cookie_is_secure_off_loopback(tmp_path: Path, ehr: Ehr) -> None:
    settings = Settings(
        data_dir=tmp_path / "d",
        auth_required=False,
        public_base_url="https://twin.example.org",
        smart_servers=({"iss": ISS, "client_id": CLIENT_ID},),  # type: ignore[arg-type]
    )
    with TestClient(create_app(settings)) as c:
        cookie = ehr.launch(c).headers["set-cookie"].lower()
    assert "; secure" in cookie


def test_an_unconfigured_iss_is_never_contacted(client: TestClient) -> None:
    """A launch naming another FHIR server is refused before any request leaves."""
    with respx.mock(assert_all_called=False) as mock:
        response = client.get(
            "/app/launch", params={"iss": "https://evil.test/fhir", "launch": "x"}
        )
        assert mock.calls.call_count == 0
    assert response.status_code == 400
    assert "not one this app is configured for" in response.text


def test_an_ehr_without_pkce_s256_is_refused(client: TestClient) -> None:
    with respx.mock() as mock:
        config = {**SMART_CONFIG, "code_challenge_methods_supported": ["plain"]}
        mock.get(f"{ISS}/.well-known/smart-configuration").respond(json=config)
        response = client.get("/app/launch", params={"iss": ISS, "launch": "x"})
    assert response.status_code == 502
    assert "S256" in response.text


def test_a_full_launch_keeps_every_token_on_the_server(
    client: TestClient, ehr: Ehr, settings: Settings
) -> None:
    """Code exchanged with the verifier at the exact redirect URI; the session holds the
    context; no token reaches a response, a cookie, or the session database in clear."""
    pending_cookie = ehr.launch(client).cookies[COOKIE]
    response = _callback(client, ehr)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/app/"
    active_cookie = response.cookies[COOKIE]
    assert active_cookie != pending_cookie  # a new id once signed in: no fixation
    form = ehr.token_requests[0]
    assert form["grant_type"] == "authorization_code"
    assert form["redirect_uri"] == settings.app_redirect_uri
    assert form["client_id"] == CLIENT_ID

    info = client.get("/app/api/session")
    assert info.status_code == 200
    body = info.json()
    assert body["patient"] == "p-123"
    assert body["user"] == f"{ISS}/Practitioner/clinician-1"
    assert body["app_context"] == {"patient": "p-123", "twinVersion": 2, "service": "x"}
    assert body["need_patient_banner"] is True
    # The EHR's SMART style, checked on the server: a readable highlight and a font.
    assert body["style"] == {"highlight": "#1f5f99", "font_family": "Lato"}

    sent = [response, info]
    for r in sent:
        text = r.text + json.dumps(dict(r.headers))
        assert ACCESS_TOKEN not in text
        assert "eyJ" not in text  # no JWT (id_token) either
    assert set(client.cookies.keys()) == {COOKIE}
    stored = b"".join(p.read_bytes() for p in settings.data_dir.glob("app_sessions.sqlite*"))
    assert ACCESS_TOKEN.encode() not in stored
    assert active_cookie.encode() not in stored


def test_a_wrong_state_is_refused_and_spends_the_launch(client: TestClient, ehr: Ehr) -> None:
    """CSRF/mix-up: a callback whose state is not this browser's is refused before any
    code exchange, and the launch cannot be completed afterwards either."""
    ehr.launch(client)
    wrong = _callback(client, ehr, state="not-the-state")
    assert wrong.status_code == 400
    assert "state does not match" in wrong.text
    again = _callback(client, ehr)
    assert again.status_code == 400
    assert ehr.token_requests == []
    assert client.get("/app/api/session").status_code == 401


def test_a_callback_without_a_launch_in_this_browser_is_refused(
    client: TestClient, ehr: Ehr
) -> None:
    ehr.launch(client)
    state = ehr.authorize_params["state"]
    client.cookies.clear()
    response = client.get("/app/callback", params={"code": "c", "state": state})
    assert response.status_code == 400
    assert "no launch in progress" in response.text
    assert ehr.token_requests == []


def test_an_authorization_error_from_the_ehr_is_shown(client: TestClient, ehr: Ehr) -> None:
    ehr.launch(client)
    response = client.get(
        "/app/callback",
        params={"state": ehr.authorize_params["state"], "error": "access_denied"},
    )
    assert response.status_code == 400
    assert "access_denied" in response.text
    assert ehr.token_requests == []


def test_a_refused_code_exchange_signs_nobody_in(client: TestClient, ehr: Ehr) -> None:
    """A replayed or expired code: the EHR answers invalid_grant; no session is made."""
    ehr.token_response = lambda form: httpx.Response(400, json={"error": "invalid_grant"})
    ehr.launch(client)
    response = _callback(client, ehr)
    assert response.status_code == 401
    assert "invalid_grant" in response.text
    assert client.get("/app/api/session").status_code == 401


@pytest.mark.parametrize(
    ("fault", "override"),
    [
        ("wrong nonce", {"nonce": "someone-elses"}),
        ("no nonce", {"nonce": None}),
        ("wrong audience", {"aud": "another-app"}),
        ("wrong issuer", {"iss": "https://other.test"}),
        ("expired", {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 4000}),
        ("forged signature", {"_key": OTHER_KEY}),
    ],
)
def test_an_invalid_id_token_signs_nobody_in(
    client: TestClient, ehr: Ehr, fault: str, override: dict[str, Any]
) -> None:
    def respond(form: dict[str, str]) -> httpx.Response:
        nonce = ehr.authorize_params["nonce"]
        return ehr._good(form, id_token=_id_token(nonce, **override))

    ehr.token_response = respond
    ehr.launch(client)
    response = _callback(client, ehr)
    assert response.status_code == 401, fault
    assert client.get("/app/api/session").status_code == 401


@pytest.mark.parametrize(
    ("fault", "extra"),
    [
        ("no id_token", {"id_token": None}),
        ("no patient", {"patient": None}),
        ("patient not a FHIR id", {"patient": "../Practitioner/1"}),
        ("not bearer", {"token_type": "mac"}),
    ],
)
def test_an_incomplete_token_response_signs_nobody_in(
    client: TestClient, ehr: Ehr, fault: str, extra: dict[str, Any]
) -> None:
    ehr.token_response = lambda form: ehr._good(form, **extra)
    ehr.launch(client)
    response = _callback(client, ehr)
    assert response.status_code in (400, 401, 502), fault
    assert client.get("/app/api/session").status_code == 401


@pytest.mark.parametrize(
    "path",
    [
        "/app/api/session",
        "/app/api/twin",
        "/app/api/risk",
        "/app/api/whatif",
        "/app/api/vancomycin",
        "/app/api/history",
    ],
)
def test_the_api_needs_a_session(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401


def test_api_posts_must_be_json(client: TestClient, ehr: Ehr) -> None:
    """A cross-site form post cannot reach the API (CSRF): only application/json."""
    ehr.launch(client)
    assert _callback(client, ehr).status_code == 303
    response = client.post(
        "/app/api/whatif",
        content="statin=high",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415


def test_logout_forgets_the_session(client: TestClient, ehr: Ehr) -> None:
    ehr.launch(client)
    _callback(client, ehr)
    assert client.get("/app/api/session").status_code == 200
    assert client.post("/app/logout").status_code == 200
    assert client.get("/app/api/session").status_code == 401


def test_app_pages_carry_a_strict_content_security_policy(client: TestClient) -> None:
    response = client.get("/app/")
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["referrer-policy"] == "no-referrer"


@contextlib.contextmanager
def _store(kind: str, tmp_path: Path, clock: Callable[[], float]) -> Iterator[SessionStore]:
    if kind == "sqlite":
        store = SessionStore.sqlite(tmp_path / "s.sqlite", clock=clock)
        yield store
        return
    from tests.audit.stores import pg_available, pg_schema, pg_url

    if not pg_available():
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    with pg_schema() as schema:
        store = SessionStore.postgres(pg_url(schema), clock=clock)
        try:
            yield store
        finally:
            store.close()


def _stored_bytes(kind: str, tmp_path: Path, store: SessionStore) -> bytes:
    if kind == "sqlite":
        return b"".join(p.read_bytes() for p in tmp_path.glob("s.sqlite*"))
    sql = (
        "SELECT string_agg(id_hash || kind || encode(sealed, 'escape'), '') "
        "FROM twin_cds_app_session"
    )
    row = store._rows.db.read(lambda conn: conn.exec_driver_sql(sql).first())
    return str(row).encode()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_session_store_seals_and_expires(tmp_path: Path, kind: str) -> None:
    """Both stores: sealed at rest (neither the token nor the cookie value is stored),
    a pending session is not a signed-in one, expiry holds, and a take is used once."""
    now = [1000.0]
    with _store(kind, tmp_path, lambda: now[0]) as store:
        sid = store.create("active", {"access_token": ACCESS_TOKEN}, ttl_s=60)
        assert store.get(sid, "active") == {"access_token": ACCESS_TOKEN}
        assert store.get(sid, "pending") is None
        assert store.get(sid + "x", "active") is None
        raw = _stored_bytes(kind, tmp_path, store)
        assert ACCESS_TOKEN.encode() not in raw and sid.encode() not in raw
        assert len(raw) > 64  # the row is there, sealed
        now[0] += 61
        assert store.get(sid, "active") is None
        pending = store.create("pending", {"state": "s"}, ttl_s=60)
        assert store.take(pending, "pending") == {"state": "s"}
        assert store.take(pending, "pending") is None  # used once


def test_sessions_in_postgresql_are_shared_by_replicas() -> None:
    """Two service replicas on one database: a session made on one is read on the other,
    and a launch taken on one cannot be completed on the other."""
    from tests.audit.stores import pg_available, pg_schema, pg_url

    if not pg_available():
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    with pg_schema() as schema:
        one, two = SessionStore.postgres(pg_url(schema)), SessionStore.postgres(pg_url(schema))
        try:
            sid = one.create("active", {"patient": "p"}, ttl_s=60)
            assert two.get(sid, "active") == {"patient": "p"}
            pending = one.create("pending", {"state": "s"}, ttl_s=60)
            assert two.take(pending, "pending") == {"state": "s"}
            assert one.take(pending, "pending") is None
        finally:
            one.close()
            two.close()


def _app_access(client: TestClient) -> list[Any]:
    audit = client.app.state.runtime.audit  # type: ignore[attr-defined]
    return list(audit.records(kind="app-access"))


def test_each_completed_launch_is_on_the_audit_trail(client: TestClient, ehr: Ehr) -> None:
    """Who opened whose twin, from which EHR, by which launch: one chained record per
    completed launch (as a FHIR AuditEvent in the export); refused launches write none."""
    ehr.launch(client)
    _callback(client, ehr, state="forged")
    assert _app_access(client) == []
    ehr.launch(client)
    assert _callback(client, ehr).status_code == 303
    (record,) = _app_access(client)
    assert record.body["user"] == f"{ISS}/Practitioner/clinician-1"
    assert record.body["patient"] == "p-123"
    assert record.body["ehr"] == ISS
    assert record.body["launch"] == "ehr"
    assert record.body["appContext"] == {"patient": "p-123", "twinVersion": 2, "service": "x"}
    assert ACCESS_TOKEN not in json.dumps(record.body)
    (event,) = record_resources(record)
    get_fhir_model_class("AuditEvent").model_validate(event)
    assert event["entity"][0]["what"] == {"reference": "Patient/p-123"}
    assert client.app.state.runtime.audit.verify().first_bad is None  # type: ignore[attr-defined]


def test_a_search_cut_at_the_page_limit_is_said_not_hidden(tmp_path: Path, ehr: Ehr) -> None:
    """The app reads the EHR's FHIR with the session's token; a search longer than the
    page limit is named in the twin's issues rather than silently shortened."""
    settings = Settings(
        data_dir=tmp_path / "d",
        auth_required=False,
        fhir_max_pages=1,
        smart_servers=({"iss": ISS, "client_id": CLIENT_ID},),  # type: ignore[arg-type]
    )
    seen_tokens: set[str] = set()

    def search(request: httpx.Request) -> httpx.Response:
        seen_tokens.add(request.headers.get("authorization", ""))
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": []}
        if request.url.path.endswith("/Observation"):
            bundle["link"] = [{"relation": "next", "url": f"{ISS}/Observation?page=2"}]
        return httpx.Response(200, json=bundle)

    ehr.mock.get(f"{ISS}/Patient/p-123").respond(
        json={"resourceType": "Patient", "id": "p-123", "gender": "female"}
    )
    ehr.mock.route(method="GET", url__startswith=f"{ISS}/").mock(side_effect=search)
    with TestClient(create_app(settings)) as c:
        ehr.launch(c)
        assert _callback(c, ehr).status_code == 303
        twin = c.get("/app/api/twin")
    assert twin.status_code == 200, twin.text
    assert "Observation: only the first 1 pages were read" in twin.json()["issues"]
    assert seen_tokens == {f"Bearer {ACCESS_TOKEN}"}  # the EHR gets the token; no one else


# --- refresh tokens: the session outlives the access token ------------------------------


def _rotating_refresh(ehr: Ehr) -> Callable[[dict[str, str]], httpx.Response]:
    """The EHR's token endpoint: a code gets a refresh token; each refresh rotates it."""

    def respond(form: dict[str, str]) -> httpx.Response:
        if form["grant_type"] == "authorization_code":
            return ehr._good(form, refresh_token="rt-1")  # noqa: S106 - a test token
        n = int(form["refresh_token"].removeprefix("rt-"))
        body = {
            "access_token": f"at-renewed-{n}",
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": f"rt-{n + 1}",
        }
        return httpx.Response(200, json=body)

    return respond


def _later(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + seconds)


def test_the_access_token_is_renewed_with_the_refresh_token_before_it_expires(
    client: TestClient, ehr: Ehr, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the access token's lifetime the session goes on: the app used the refresh
    token (grant, token, client id) and keeps the rotated one, sealed on the server."""
    ehr.token_response = _rotating_refresh(ehr)
    ehr.launch(client)
    assert _callback(client, ehr).status_code == 303
    _later(monkeypatch, 3600)
    assert client.get("/app/api/session").status_code == 200
    refresh = ehr.token_requests[-1]
    assert refresh == {
        "grant_type": "refresh_token",
        "refresh_token": "rt-1",
        "client_id": CLIENT_ID,
    }
    _later(monkeypatch, 7200)
    assert client.get("/app/api/session").status_code == 200
    assert ehr.token_requests[-1]["refresh_token"] == "rt-2"  # noqa: S105 - the rotated one
    store: SessionStore = client.app.state.app_sessions  # type: ignore[attr-defined]
    session = store.get(client.cookies.get(COOKIE), "active")
    assert session is not None and session["access_token"] == "at-renewed-2"  # noqa: S105
    raw = (settings.data_dir / "app_sessions.sqlite").read_bytes()
    assert b"rt-3" not in raw and b"at-renewed-2" not in raw


def test_a_refused_refresh_ends_the_session_once_the_access_token_expired(
    client: TestClient, ehr: Ehr, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The EHR refuses the refresh (revoked): after expiry the session is over (401)."""
    ehr.token_response = lambda form: (
        ehr._good(form, refresh_token="rt-1")  # noqa: S106 - a test token
        if form["grant_type"] == "authorization_code"
        else httpx.Response(400, json={"error": "invalid_grant"})
    )
    ehr.launch(client)
    _callback(client, ehr)
    _later(monkeypatch, 3601)
    assert client.get("/app/api/session").status_code == 401


def test_without_a_refresh_token_the_session_ends_with_the_access_token(
    client: TestClient, ehr: Ehr
) -> None:
    """An EHR that sends no refresh token: the cookie lives as long as its access token."""
    ehr.launch(client)
    response = _callback(client, ehr)
    assert "max-age=3600" in response.headers["set-cookie"].lower()


def test_concurrent_calls_renew_the_access_token_once(
    client: TestClient, ehr: Ehr, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page asks several things at once after expiry: one refresh, not one per call
    (a rotated refresh token presented twice would look stolen to the EHR)."""
    import asyncio

    ehr.token_response = _rotating_refresh(ehr)
    ehr.launch(client)
    _callback(client, ehr)
    _later(monkeypatch, 3600)
    cookie = {COOKIE: str(client.cookies.get(COOKIE))}
    http_client = client.app.state.runtime.http  # type: ignore[attr-defined]
    post = http_client.post

    async def slow_post(*args: Any, **kwargs: Any) -> httpx.Response:
        await asyncio.sleep(0.05)  # the EHR takes a moment: the other calls arrive meanwhile
        return await post(*args, **kwargs)

    monkeypatch.setattr(http_client, "post", slow_post)

    async def burst() -> list[int]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", cookies=cookie
        ) as http:
            answers = await asyncio.gather(*(http.get("/app/api/session") for _ in range(5)))
        return [a.status_code for a in answers]

    assert asyncio.run(burst()) == [200] * 5
    refreshes = [r for r in ehr.token_requests if r["grant_type"] == "refresh_token"]
    assert len(refreshes) == 1
