"""Each finding of the attack on the running service, replayed against ``twin-cds serve``
under uvicorn on 127.0.0.1, with a FHIR server of ours beside it that records every
request it gets (so a token sent where it must not go is seen).

Timings are printed as ratios measured in the same run, never asserted.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from cds_service.http.auth import MAX_TOKEN_BYTES
from cds_service.http.edge import MAX_BODY_BYTES, MAX_FEEDBACK_BODY_BYTES, MAX_HEADER_BYTES
from ehr_sim.servers import RunningServer, free_port, start_service
from smart_app.launch import COOKIE
from smart_app.sessions import SessionStore
from tests.conftest import hook_request, prefetch_from_bundle
from tests.support.keys import es384, hook_claims

pytestmark = pytest.mark.integration

EHR = "https://ehr.security.test"
TENANT_A, TENANT_B = "hospital-a", "hospital-b"
CLIENT_KEY = es384("ehr-1")
IDP_A, IDP_B = "https://idp-a.security.test", "https://idp-b.security.test"
IDP_KEY = es384("idp-1")
ACCESS_TOKEN = "ehr-access-token-only-for-the-fhir-base"  # noqa: S105 - a test token


# --- a FHIR server (and a JWKS host) that records who asked for what ---------------------


@dataclass
class Recorder:
    hits: list[tuple[str, bool]] = field(default_factory=list)  # (path, carried a token)


def _fhir_app(recorder: Recorder) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def record(request: Request, call_next: Any) -> Any:
        recorder.hits.append((request.url.path, "authorization" in request.headers))
        return await call_next(request)

    @app.get("/dot/Patient/{pid}")
    async def patient(pid: str) -> JSONResponse:
        return JSONResponse({"resourceType": "Patient", "id": pid, "gender": "male"})

    @app.get("/dot/{rtype}")
    async def search(rtype: str, request: Request) -> JSONResponse:
        base = str(request.base_url).rstrip("/")
        # The attack: a next link that climbs out of the base with a dot segment.
        return JSONResponse(
            {
                "resourceType": "Bundle",
                "type": "searchset",
                "link": [{"relation": "next", "url": f"{base}/dot/../secret/{rtype}?page=2"}],
                "entry": [],
            }
        )

    @app.get("/jwks.json")
    async def jwks() -> JSONResponse:
        return JSONResponse({"keys": []})

    return app


@pytest.fixture(scope="module")
def fhir() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(_fhir_app(recorder), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", recorder
    server.should_exit = True
    thread.join(timeout=10)


@dataclass(frozen=True)
class Service:
    server: RunningServer
    data_dir: Path
    fhir_origin: str

    @property
    def url(self) -> str:
        return self.server.base_url


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, fhir: tuple[str, Recorder]
) -> Iterator[Service]:
    origin, _ = fhir
    work = tmp_path_factory.mktemp("security")
    client = {
        "iss": EHR,
        "jwks": CLIENT_KEY.jwks(use="sig"),
        # Finding 8: the client's key is inline, and it still sends a jku on every token.
        "jku_allowlist": [f"{origin}/jwks.json"],
        "fhir_servers": [f"{origin}/dot"],
        "tenant": TENANT_A,
    }
    auditors = [
        {"iss": IDP_A, "jwks": IDP_KEY.jwks(use="sig"), "tenant": TENANT_A},
        {"iss": IDP_B, "jwks": IDP_KEY.jwks(use="sig"), "tenant": TENANT_B},
    ]
    server = start_service(
        work,
        free_port(),
        f"{origin}/dot",
        {"TWIN_CDS_CLIENTS": json.dumps([client]), "TWIN_CDS_AUDITORS": json.dumps(auditors)},
    )
    try:
        yield Service(server, work / "service-data", origin)
    finally:
        server.stop()


def _client_token(audience: str, **extra: Any) -> str:
    headers = extra.pop("headers", {})
    return CLIENT_KEY.sign({**hook_claims(EHR, audience, tenant=TENANT_A), **extra}, **headers)


def _auditor_token(service: Service, iss: str = IDP_A, **extra: Any) -> str:
    claims = {
        **hook_claims(iss, f"{service.url}/audit", lifetime_s=300),
        "sub": "auditor-1",
        "role": "auditor",
        **extra,
    }
    return IDP_KEY.sign({k: v for k, v in claims.items() if v is not None})


def _hook(service: Service, body: Any, service_id: str = "ascvd-risk", **kw: Any) -> httpx.Response:
    url = f"{service.url}/cds-services/{service_id}"
    headers = {"Authorization": f"Bearer {_client_token(url)}", **kw.pop("headers", {})}
    return httpx.post(url, json=body, headers=headers, timeout=30, **kw)


# --- 1. an oversized bearer token ------------------------------------------------------


def _timed_get(url: str, headers: dict[str, str]) -> tuple[int, float]:
    started = time.perf_counter()
    response = httpx.get(url, headers=headers, timeout=60)
    return response.status_code, time.perf_counter() - started


def _raw_huge_token(port: int, size: int, answer: list[tuple[bytes, float]]) -> None:
    """The attack as sent: one request head carrying a ``size``-byte bearer token (raw
    socket, so building it costs this test's GIL nothing while /healthz is probed)."""
    head = (
        b"GET /cds-services HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
        + b"e" * size
        + b"\r\n\r\n"
    )
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        # The server may answer and close before the head is all sent.
        with contextlib.suppress(OSError):
            s.sendall(head)
        try:
            status_line = s.recv(64)
        except OSError:
            status_line = b""
    answer.append((status_line, time.perf_counter() - started))


def test_an_oversized_token_is_refused_before_any_decoding_and_healthz_keeps_answering(
    service: Service,
) -> None:
    """A token over the cap gets a bare 401, a 32 MB one (the attack) is refused while it
    arrives, and /healthz keeps answering meanwhile. Times are printed as ratios."""
    url = f"{service.url}/cds-services"
    small = {"Authorization": "Bearer " + "a.b.c"}
    small_s = min(_timed_get(url, small)[1] for _ in range(5))
    # Over the token cap, under the header cap: the app's own 401, before any decoding.
    big_token = "e" * (MAX_HEADER_BYTES - 200)
    assert len(big_token) > MAX_TOKEN_BYTES
    big_status, big_s = _timed_get(url, {"Authorization": f"Bearer {big_token}"})
    assert big_status == 401
    answers: list[tuple[bytes, float]] = []
    port = int(service.url.rsplit(":", 1)[1])
    attacks = [
        threading.Thread(target=_raw_huge_token, args=(port, 32 * 1024 * 1024, answers))
        for _ in range(3)
    ]
    for attack in attacks:
        attack.start()
    health: list[float] = []
    while any(a.is_alive() for a in attacks):
        status, seconds = _timed_get(f"{service.url}/healthz", {})
        assert status == 200
        health.append(seconds)
    for attack in attacks:
        attack.join()
    statuses = {line.split(b" ")[1] if line.count(b" ") >= 1 else line for line, _ in answers}
    assert statuses <= {b"400", b"431"}, answers
    worst_attack = max(seconds for _, seconds in answers)
    print(
        f"\nsmall bad token 401: {small_s * 1000:.2f} ms; a {len(big_token)}-char token 401: "
        f"{big_s / small_s:.1f}x; three 32 MiB tokens refused ({sorted(statuses)}) in at most "
        f"{worst_attack / small_s:.1f}x; /healthz during them: worst "
        f"{max(health, default=0) / small_s:.1f}x over {len(health)} calls"
    )


def test_a_lower_case_bearer_scheme_is_accepted(service: Service) -> None:
    """RFC 7235: the auth scheme is case-insensitive; `bearer` works like `Bearer`."""
    url = f"{service.url}/cds-services"
    response = httpx.get(url, headers={"Authorization": f"bearer {_client_token(url)}"})
    assert response.status_code == 200


def test_two_authorization_headers_are_refused(service: Service) -> None:
    """A second Authorization header (even a valid one first) gets a 401."""
    url = f"{service.url}/cds-services"
    headers = [
        ("Authorization", f"Bearer {_client_token(url)}"),
        ("Authorization", f"Bearer {_client_token(url)}"),
    ]
    assert httpx.get(url, headers=headers).status_code == 401


# --- 8. inline client keys win over a jku header ---------------------------------------


def test_an_inline_key_wins_over_a_jku_header_which_is_never_fetched(
    service: Service, fhir: tuple[str, Recorder]
) -> None:
    """A client configured with its key inline may send a jku (the sandbox does): the
    token verifies with the inline key, and the jku is not contacted."""
    origin, recorder = fhir
    url = f"{service.url}/cds-services"
    token = _client_token(url, headers={"jku": f"{origin}/jwks.json"})
    response = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert "/jwks.json" not in {path for path, _ in recorder.hits}


# --- 2. Markdown injection ---------------------------------------------------------------


def test_a_hostile_unit_reaches_the_card_as_inert_text(service: Service) -> None:
    """The attack's unit `[click me](javascript:alert(1)) <b>x</b>`, on a drafted vancomycin
    dose, is named in the card escaped: no link syntax and no raw tag survive."""
    from tests.support.vancomycin import draft_order, vancomycin_call

    unit = "[click me](javascript:alert(1)) <b>x</b>"
    draft = draft_order(1000, 12)
    draft["dosageInstruction"][0]["doseAndRate"] = [{"doseQuantity": {"value": 1, "unit": unit}}]
    response = _hook(
        service,
        vancomycin_call("order-select", "v-order-select", draft, dialysis=False, encounters=True),
        "vancomycin-dosing",
    )
    assert response.status_code == 200, response.text
    detail = "\n".join(c.get("detail", "") for c in response.json()["cards"])
    assert "click me" in detail
    assert "](" not in detail.replace("\\](", "")
    assert "<b>" not in detail


# --- 3. paging out of the FHIR base -------------------------------------------------------


def test_a_next_link_climbing_out_of_the_base_is_not_followed(
    service: Service, fhir: tuple[str, Recorder]
) -> None:
    """`next = <base>/../secret?page=2` is outside the base once normalised: never requested,
    so the EHR's token never goes there."""
    origin, recorder = fhir
    body = hook_request(
        "p1",
        None,
        fhirServer=f"{origin}/dot",
        fhirAuthorization={"access_token": ACCESS_TOKEN, "token_type": "Bearer"},
    )
    response = _hook(service, body)
    assert response.status_code < 500, response.text
    paths = [path for path, _ in recorder.hits]
    assert any(p.startswith("/dot/") for p in paths), paths
    assert not [p for p in paths if "secret" in p], paths


# --- 4. non-finite numbers ----------------------------------------------------------------


def _app_session(service: Service) -> dict[str, str]:
    store = SessionStore.sqlite(service.data_dir / "app_sessions.sqlite")
    try:
        session_id = store.create(
            "active",
            {
                "iss": f"{service.fhir_origin}/dot",
                "access_token": ACCESS_TOKEN,
                "patient": "p1",
                "expires_at": time.time() + 600,
            },
            600,
        )
    finally:
        store.close()
    return {COOKIE: session_id}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/app/api/whatif", '{"sbp_target_mm_hg": 1e999}'),
        ("/app/api/whatif", '{"sbp_target_mm_hg": -1e999, "statin": "high"}'),
        (
            "/app/api/vancomycin/simulate",
            '{"dose_mg": 1e999, "interval_h": 12, "infusion_h": 1}',
        ),
    ],
)
def test_a_non_finite_number_is_a_422_that_names_the_field(
    service: Service, path: str, body: str
) -> None:
    """1e999 (infinity once parsed) gets a 422 naming the field, not a 500 from echoing it,
    and the answer names no library version."""
    response = httpx.post(
        f"{service.url}{path}",
        content=body,
        headers={"Content-Type": "application/json"},
        cookies=_app_session(service),
    )
    assert response.status_code == 422, response.text
    assert "errors.pydantic.dev" not in response.text
    assert "inf" not in response.text.lower().replace("info", "")


def test_a_bad_feedback_body_names_no_library_version(service: Service) -> None:
    """A 400 on feedback says what is wrong without the validator's documentation URL."""
    url = f"{service.url}/cds-services/ascvd-risk/feedback"
    response = httpx.post(
        url,
        json={"feedback": [{"card": "x", "outcome": "maybe"}]},
        headers={"Authorization": f"Bearer {_client_token(url)}"},
    )
    assert response.status_code == 400
    assert "outcome" in response.text
    assert "pydantic" not in response.text


# --- 5. auditor tokens -------------------------------------------------------------------


def _audit(service: Service, token: str, path: str = "/audit/records", **params: Any) -> Any:
    return httpx.get(
        f"{service.url}{path}",
        params=params,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def test_an_auditor_token_is_single_use(service: Service) -> None:
    """The same auditor token twice: the replay is a 401."""
    token = _auditor_token(service)
    assert _audit(service, token).status_code == 200
    assert _audit(service, token).status_code == 401


@pytest.mark.parametrize(
    ("name", "claims"),
    [
        ("no jti", {"jti": None}),
        ("valid for a century", {"exp": int(time.time()) + 100 * 365 * 86400}),
        ("valid for two hours", {"exp": int(time.time()) + 7200}),
        ("another tenant claimed", {"tenant": TENANT_B}),
    ],
)
def test_auditor_tokens_without_jti_too_long_or_for_another_tenant_are_401(
    service: Service, name: str, claims: dict[str, Any]
) -> None:
    """Each of these auditor tokens is refused."""
    assert _audit(service, _auditor_token(service, **claims)).status_code == 401, name


def test_a_tenants_auditor_reads_that_tenants_records_alone(
    service: Service, demo_bundles: list[dict[str, Any]]
) -> None:
    """The EHR's calls are hospital-a's: its auditor sees them, hospital-b's sees none of
    them, by query, by seq or by export."""
    prefetch = prefetch_from_bundle(demo_bundles[1])
    instance = str(uuid.uuid4())
    body = hook_request(prefetch["patient"]["id"], prefetch, hookInstance=instance)
    assert _hook(service, body).status_code == 200
    mine = _audit(service, _auditor_token(service, IDP_A), patient=prefetch["patient"]["id"])
    (record,) = [r for r in mine.json()["records"] if r["body"]["hookInstance"] == instance]
    other = _audit(service, _auditor_token(service, IDP_B), kind="any")
    assert other.status_code == 200
    assert [
        r for r in other.json()["records"] if r["body"].get("client", {}).get("tenant") != TENANT_B
    ] == []
    seq = record["seq"]
    assert (
        _audit(service, _auditor_token(service, IDP_B), f"/audit/records/{seq}").status_code == 404
    )
    export = _audit(service, _auditor_token(service, IDP_B), "/audit/export", kind="any")
    assert instance not in export.text


# --- 7. bodies, media types, docs, entries ---------------------------------------------


def _post_raw(service: Service, path: str, size: int, content_type: str) -> httpx.Response:
    url = f"{service.url}{path}"
    headers = {"Authorization": f"Bearer {_client_token(url)}", "Content-Type": content_type}
    return httpx.post(url, content=b"{" + b" " * size + b"}", headers=headers, timeout=60)


def test_an_oversized_feedback_body_is_413_before_it_is_read(service: Service) -> None:
    """Feedback over its limit is refused (413), as hook bodies over theirs are."""
    response = _post_raw(
        service,
        "/cds-services/ascvd-risk/feedback",
        4 * MAX_FEEDBACK_BODY_BYTES,
        "application/json",
    )
    assert response.status_code == 413


def test_an_oversized_app_api_body_is_413(service: Service) -> None:
    """The clinician app's API takes small bodies only."""
    response = httpx.post(
        f"{service.url}/app/api/whatif",
        content=b"{" + b" " * (2 * MAX_BODY_BYTES) + b"}",
        headers={"Content-Type": "application/json"},
        cookies=_app_session(service),
    )
    assert response.status_code == 413


def _chunks(size: int) -> Iterator[bytes]:
    yield b"{"
    for _ in range(size // 65536):
        yield b" " * 65536
    yield b"}"


def test_a_chunked_body_without_length_is_cut_at_the_limit(service: Service) -> None:
    """Without Content-Length the body is counted as it comes and refused at the limit."""
    url = f"{service.url}/cds-services/ascvd-risk/feedback"
    response = httpx.post(
        url,
        content=_chunks(4 * MAX_FEEDBACK_BODY_BYTES),
        headers={
            "Authorization": f"Bearer {_client_token(url)}",
            "Content-Type": "application/json",
        },
        timeout=60,
    )
    assert response.status_code == 413


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
@pytest.mark.parametrize("path", ["/cds-services/ascvd-risk", "/cds-services/ascvd-risk/feedback"])
def test_hook_and_feedback_bodies_must_be_json(
    service: Service, content_type: str, path: str
) -> None:
    """A hook or feedback body sent as text or a form gets a 415."""
    assert _post_raw(service, path, 10, content_type).status_code == 415


def test_docs_and_openapi_are_off_by_default(service: Service) -> None:
    """/docs and /openapi.json are not served unless the setting turns them on."""
    for path in ("/docs", "/openapi.json", "/redoc"):
        assert httpx.get(f"{service.url}{path}").status_code == 404


def test_a_prefetch_over_the_entry_cap_is_413_naming_the_cap(service: Service) -> None:
    """200,000 minimal entries are refused before any is parsed, and the answer says the cap."""
    entries = [{"resource": {"resourceType": "Patient", "id": f"p{i}"}} for i in range(200_000)]
    prefetch = {
        "patient": {"resourceType": "Patient", "id": "p0"},
        "observations": {"resourceType": "Bundle", "type": "searchset", "entry": entries},
    }
    started = time.perf_counter()
    response = _hook(service, hook_request("p0", prefetch))
    elapsed = time.perf_counter() - started
    assert response.status_code == 413, response.text[:300]
    assert "20000" in response.text
    print(f"\n200,000-entry prefetch refused in {elapsed * 1000:.0f} ms (wall, with the upload)")


# --- 6. log redaction ---------------------------------------------------------------------


def test_a_percent_encoded_launch_id_is_redacted_in_the_access_log(service: Service) -> None:
    """`launc%68=SECRET` is read as `launch`, and it is redacted like `launch`."""
    secret = "SECRET-" + uuid.uuid4().hex
    httpx.get(f"{service.url}/app/launch?iss=https://x.example/fhir&launc%68={secret}")
    time.sleep(0.3)
    log = service.server.log_path.read_text()
    assert "launc%68=[redacted]" in log
    assert secret not in log


# --- 9. the demo's servers ---------------------------------------------------------------


def test_the_fhir_server_honours_its_port_and_loopback_from_a_relative_work_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started with a relative data directory, the FHIR server listens where it was told,
    on 127.0.0.1 only (its settings reach it by an absolute path)."""
    from ehr_sim.servers import start_fhir_server

    monkeypatch.chdir(tmp_path)
    port = free_port()
    server = start_fhir_server(Path("rel-data"), port)
    try:
        assert server.base_url == f"http://127.0.0.1:{port}/fhir"
        assert httpx.get(f"{server.base_url}/metadata", timeout=10).status_code == 200
        assert _listening_on(port) == {"127.0.0.1"}
    finally:
        server.stop()


def _listening_on(port: int) -> set[str]:
    """Addresses with a listening TCP socket on ``port`` (Linux /proc/net/tcp{,6})."""
    found: set[str] = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                if len(address) == 8:
                    found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
                else:
                    found.add("::" if set(address) == {"0"} else address)
    return found


def test_a_demo_port_in_use_is_one_line_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`twin-cds demo --fhir-port P` with P taken: exit 1 and one line naming --fhir-port."""
    from twin_cds.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exit_info:
            main(["demo", "--fhir-port", str(port), "--port", "0", "--data-dir", str(tmp_path)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "--fhir-port" in err[0] and str(port) in err[0]
