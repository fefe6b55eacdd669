"""Fuzzing the HTTP edge: nothing a caller sends may become a response of 500 or more.

Three layers. schemathesis walks every operation of the app's own OpenAPI document. The
hook endpoint reads a raw body that OpenAPI does not describe, so hypothesis builds hook
bodies itself: envelopes with random, missing or ill-typed context, and prefetch made of
random JSON, partial FHIR resources and mutations of a real generated patient. With
authentication on, random Authorization headers must get a 401 and nothing else.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error, response_schema_conformance

from cds_service.http.auth import CdsClientConfig
from cds_service.http.cards import CdsResponse
from cds_service.settings import Settings
from smart_app.embedding import COOKIE
from tests.conftest import hook_request, prefetch_from_bundle
from tests.support.keys import es384
from twin_cds.app import create_app

FUZZ = settings(
    max_examples=200,
    deadline=None,
    # Bodies of a whole patient are large by design; the client fixtures are module-wide.
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
SERVICE = "/cds-services/ascvd-risk"
PID = "fuzz-patient"
JSON_HEADERS = {"Content-Type": "application/json"}


def _app(data_dir: Path, **overrides: Any) -> Any:
    return create_app(Settings(data_dir=data_dir, auth_required=False, **overrides))


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    # raise_server_exceptions=False: a fault must show as the 500 a caller would see.
    app = _app(tmp_path_factory.mktemp("fuzz-data"))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def generated_prefetch(demo_bundles: list[dict[str, Any]]) -> dict[str, Any]:
    return prefetch_from_bundle(demo_bundles[0])


def _assert_no_server_error(response: Any, body: Any) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500], body)
    if response.status_code == 200:
        CdsResponse.model_validate(response.json())


# --- schemathesis: every operation of the OpenAPI document ---------------------------


def test_every_openapi_operation_answers_below_500(tmp_path: Path) -> None:
    """Generated calls to every operation the OpenAPI document lists never get a server error."""
    # The operations are read at run time, so a route added later is fuzzed too. (The
    # pytest-level `schemathesis.pytest.from_fixture` loader fails on pytest 9: it reads
    # the removed `Function._nodeid`.)
    # The document is served only with api_docs on (off by default): on, for the fuzz.
    schema = schemathesis.openapi.from_asgi("/openapi.json", _app(tmp_path / "data", api_docs=True))
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert {"GET /cds-services", "POST /cds-services/{service_id}"} <= labels
    for operation in operations:

        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def call(case: Any) -> None:
            case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])

        try:
            call()
        except Exception as exc:
            raise AssertionError(f"{operation.label}: {exc}") from exc


def test_the_app_api_answers_as_its_openapi_document_says(tmp_path: Path) -> None:
    """Inside an app session, the answers that need no EHR (the session, the history)
    match the response models the OpenAPI document publishes for them."""
    app = _app(tmp_path / "data", api_docs=True)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    session = {
        "iss": "https://ehr.example/fhir",
        "access_token": "at",
        "patient": PID,
        "encounter": None,
        "style": {"color_background": "#ffffff"},
        "app_context": {"twinVersion": 1},
        "expires_at": 4102444800.0,
    }
    sid = app.state.app_sessions.create("active", session, ttl_s=600)
    paths = {"GET /app/api/session", "GET /app/api/history"}
    operations = [op for op in (r.ok() for r in schema.get_all_operations()) if op.label in paths]
    assert {op.label for op in operations} == paths
    for operation in operations:

        @settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def call(case: Any) -> None:
            response = case.call_and_validate(
                checks=[not_a_server_error, response_schema_conformance],
                cookies={COOKIE: sid},
            )
            assert response.status_code == 200, response.text[:300]

        call()


# --- hypothesis: hook bodies ---------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: orjson refuses integers beyond 64 bits
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
odd_dates = st.one_of(
    st.dates().map(str),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.sampled_from(
        ["1980", "1980-02", "1980-02-30", "0000-00-00", "9999-12-31", "2026-13-01", "", "today"]
    ),
    st.text(max_size=12),
    st.integers(),
    st.none(),
)
cardio_loinc = st.sampled_from(
    ["2093-3", "2085-9", "8480-6", "85354-9", "55284-4", "72166-2", "4548-4", "2160-0"]
)
units = st.sampled_from(["mg/dL", "mmol/L", "mm[Hg]", "%", "kg", "furlongs", "", "mg/dl"])
quantity = st.fixed_dictionaries(
    {},
    optional={
        "value": st.one_of(st.floats(allow_nan=False), st.integers(), st.text(max_size=6)),
        "unit": units | st.text(max_size=6),
        "system": st.sampled_from(["http://unitsofmeasure.org", "urn:x"]),
        "code": units,
        "comparator": st.sampled_from(["<", ">=", "~"]),
    },
)
codeable = st.one_of(
    st.fixed_dictionaries(
        {
            "coding": st.lists(
                st.fixed_dictionaries(
                    {"code": cardio_loinc | st.text(max_size=8)},
                    optional={"system": st.sampled_from(["http://loinc.org", "urn:x", ""])},
                ),
                max_size=3,
            )
        }
    ),
    json_values,
)


def _reference(pid: str) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.just({"reference": f"Patient/{pid}"}),
        st.builds(lambda t: {"reference": t}, st.text(max_size=20)),
        json_values,
    )


def patients(pid: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"resourceType": st.just("Patient")},
        optional={
            "id": st.just(pid) | st.text(max_size=10) | st.integers(),
            "birthDate": odd_dates,
            "gender": st.sampled_from(["male", "female", "other", "unknown", "M", ""]) | scalars,
            "deceasedBoolean": scalars,
            "deceasedDateTime": odd_dates,
            "extension": json_values,
            "meta": json_values,
        },
    )


def observations(pid: str) -> st.SearchStrategy[dict[str, Any]]:
    component = st.fixed_dictionaries(
        {"code": codeable}, optional={"valueQuantity": quantity | json_values}
    )
    return st.fixed_dictionaries(
        {"resourceType": st.just("Observation")},
        optional={
            "id": st.text(max_size=10) | st.integers(),
            "status": st.sampled_from(["final", "amended", "preliminary", "entered-in-error"])
            | scalars,
            "code": codeable,
            "subject": _reference(pid),
            "effectiveDateTime": odd_dates,
            "issued": odd_dates,
            "valueQuantity": quantity | json_values,
            "valueCodeableConcept": codeable,
            "valueString": scalars,
            "component": st.lists(component, max_size=3) | json_values,
        },
    )


def others(pid: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"resourceType": st.sampled_from(["Condition", "MedicationRequest", "OperationOutcome"])},
        optional={
            "id": st.text(max_size=10),
            "subject": _reference(pid),
            "code": codeable,
            "clinicalStatus": codeable,
            "status": scalars,
            "onsetDateTime": odd_dates,
            "authoredOn": odd_dates,
            "medicationCodeableConcept": codeable,
            "issue": json_values,
        },
    )


def resources(pid: str) -> st.SearchStrategy[Any]:
    return st.one_of(patients(pid), observations(pid), others(pid), json_values)


def bundles(pid: str) -> st.SearchStrategy[dict[str, Any]]:
    entry = st.one_of(
        st.builds(lambda r: {"resource": r}, resources(pid)),
        st.builds(lambda r: {"resource": r, "search": {"mode": "match"}}, observations(pid)),
        resources(pid),  # a resource where an entry belongs
        json_values,
    )
    return st.fixed_dictionaries(
        {"resourceType": st.just("Bundle")},
        optional={
            "type": st.sampled_from(["searchset", "collection", "transaction"]) | scalars,
            "total": scalars,
            "entry": st.lists(entry, max_size=6) | st.lists(json_values, max_size=3) | json_values,
            "link": json_values,
        },
    )


def prefetch_values(pid: str) -> st.SearchStrategy[Any]:
    return st.one_of(bundles(pid), resources(pid), st.none())


def prefetches(pid: str) -> st.SearchStrategy[Any]:
    keyed = st.fixed_dictionaries(
        {},
        optional={
            "patient": patients(pid) | prefetch_values(pid),
            "observations": bundles(pid) | prefetch_values(pid),
            "conditions": prefetch_values(pid),
            "medications": prefetch_values(pid),
            "encounter": prefetch_values(pid),
        },
    )
    return st.one_of(
        keyed, st.dictionaries(st.text(max_size=10), prefetch_values(pid)), json_values
    )


contexts = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "patientId": st.just(PID) | scalars,
            "userId": st.just("Practitioner/p1") | scalars,
            "encounterId": scalars,
            "selections": json_values,
        },
    ),
    json_values,
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "hook": st.sampled_from(["patient-view", "encounter-discharge", "order-sign"]) | scalars,
        "hookInstance": st.uuids().map(str) | scalars,
        "context": contexts,
        "prefetch": prefetches(PID),
        # Not on the (empty) allowlist, so never contacted: the fuzz stays offline.
        "fhirServer": st.sampled_from(["http://127.0.0.1:9/fhir", "ftp://x", "not a url"])
        | scalars,
        "fhirAuthorization": json_values
        | st.fixed_dictionaries({"access_token": scalars, "token_type": scalars}),
        "extension": json_values,
    },
)


@FUZZ
@given(body=envelopes, service=st.sampled_from(["ascvd-risk", "ascvd-risk-discharge"]))
def test_random_hook_envelopes_never_get_a_server_error(
    client: TestClient, body: dict[str, Any], service: str
) -> None:
    """Envelopes with random or ill-typed fields and random prefetch: a 4xx or a valid 200."""
    response = client.post(
        f"/cds-services/{service}", content=json.dumps(body), headers=JSON_HEADERS
    )
    _assert_no_server_error(response, body)


@FUZZ
@given(prefetch=prefetches(PID))
def test_random_prefetch_in_a_valid_envelope_never_gets_a_server_error(
    client: TestClient, prefetch: Any
) -> None:
    """A well-formed patient-view call whose prefetch is partial or odd FHIR."""
    body = hook_request(PID, prefetch)
    response = client.post(SERVICE, content=json.dumps(body), headers=JSON_HEADERS)
    _assert_no_server_error(response, body)


OBSERVATION_FIELDS = [
    "code", "valueQuantity", "effectiveDateTime", "status", "subject", "component", "issued",
    "valueCodeableConcept", "resourceType", "id",
]  # fmt: skip
PATIENT_FIELDS = ["birthDate", "gender", "extension", "deceasedBoolean", "id", "resourceType"]
DELETE = object()
mutations = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=200),
        st.sampled_from(OBSERVATION_FIELDS),
        st.just(DELETE) | json_values | quantity | codeable | odd_dates,
    ),
    min_size=1,
    max_size=6,
)


@FUZZ
@given(
    obs_mutations=mutations,
    patient_mutations=st.lists(
        st.tuples(st.sampled_from(PATIENT_FIELDS), st.just(DELETE) | json_values | odd_dates),
        max_size=2,
    ),
    entry_mutation=st.none() | st.tuples(st.integers(min_value=0, max_value=200), json_values),
)
def test_mutations_of_a_real_patient_never_get_a_server_error(
    client: TestClient,
    generated_prefetch: dict[str, Any],
    obs_mutations: list[tuple[int, str, Any]],
    patient_mutations: list[tuple[str, Any]],
    entry_mutation: tuple[int, Any] | None,
) -> None:
    """A generated patient's prefetch with a few fields broken, deleted or replaced."""
    prefetch = copy.deepcopy(generated_prefetch)
    entries = prefetch["observations"]["entry"]
    for index, name, value in obs_mutations:
        resource = entries[index % len(entries)]["resource"]
        if value is DELETE:
            resource.pop(name, None)
        else:
            resource[name] = value
    for name, value in patient_mutations:
        if value is DELETE:
            prefetch["patient"].pop(name, None)
        else:
            prefetch["patient"][name] = value
    if entry_mutation is not None:
        index, value = entry_mutation
        entries[index % len(entries)] = value
    body = hook_request(generated_prefetch["patient"]["id"], prefetch)
    response = client.post(SERVICE, content=json.dumps(body), headers=JSON_HEADERS)
    _assert_no_server_error(response, body)


@FUZZ
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_random_bytes_as_a_hook_body_get_a_4xx(client: TestClient, raw: bytes) -> None:
    """Bytes that are not a hook call are refused with a 4xx, on the hook and feedback routes."""
    for path in (SERVICE, SERVICE + "/feedback"):
        response = client.post(path, content=raw, headers=JSON_HEADERS)
        assert 400 <= response.status_code < 500, (path, response.status_code, raw)


@FUZZ
@given(body=json_values | st.fixed_dictionaries({"feedback": json_values}))
def test_random_feedback_never_gets_a_server_error(client: TestClient, body: Any) -> None:
    """Feedback bodies of random JSON get a 4xx (or 200), never a server error."""
    response = client.post(SERVICE + "/feedback", content=json.dumps(body), headers=JSON_HEADERS)
    assert response.status_code < 500, (response.status_code, response.text[:300], body)


@pytest.mark.parametrize("entry", [True, 1, 2.5])
@pytest.mark.parametrize("key", ["patient", "observations"])
def test_a_bundle_whose_entry_is_not_a_list_gets_no_server_error(
    client: TestClient, key: str, entry: Any
) -> None:
    """Minimal input found by the fuzz: prefetch {"patient": {"resourceType": "Bundle",
    "entry": true}}."""
    body = hook_request(PID, {key: {"resourceType": "Bundle", "entry": entry}})
    response = client.post(SERVICE, content=json.dumps(body), headers=JSON_HEADERS)
    assert response.status_code < 500


# --- authentication on: random Authorization headers ----------------------------------

ISS = "https://ehr.example"
BASE = "http://testserver"
KEY = es384("ec-1")


@pytest.fixture(scope="module")
def auth_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    # No jku allowlist: no header can make the verifier reach for the network.
    settings_ = Settings(
        data_dir=tmp_path_factory.mktemp("fuzz-auth"),
        public_base_url=BASE,
        clients=(CdsClientConfig(iss=ISS, jwks=KEY.jwks(use="sig"), tenant="hospital-a"),),
    )
    with TestClient(create_app(settings_), raise_server_exceptions=False) as c:
        yield c


def _b64(data: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)
jose_headers = st.fixed_dictionaries(
    # RS384 is configured but the issuer's only key is EC: a mismatch that must be a 401.
    {
        "alg": st.sampled_from(["ES384", "ES256", "RS256", "RS384", "none", "HS256"])
        | header_text
        | json_values
    },
    optional={
        "kid": st.just("ec-1") | scalars,
        "typ": scalars,
        "jku": st.just("https://evil.example/jwks.json") | json_values,
    },
)
claims = st.fixed_dictionaries(
    {"iss": st.just(ISS) | scalars},
    optional={
        # Never this endpoint's URL, so no token here can be valid.
        "aud": st.sampled_from(["https://other.example", f"{BASE}/elsewhere"]) | json_values,
        "exp": scalars | json_values,
        "iat": scalars,
        "nbf": scalars,
        "jti": scalars | json_values,
        "tenant": scalars,
    },
)


@st.composite
def authorizations(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["text", "bearer-text", "unsigned", "signed"]))
    if kind == "text":
        return draw(header_text)
    if kind == "bearer-text":
        return "Bearer " + draw(header_text)
    if kind == "unsigned":
        signature = draw(st.sampled_from(["", "AAAA", "x.y"]))
        return f"Bearer {_b64(draw(jose_headers))}.{_b64(draw(claims))}.{signature}"
    # Signed at the JWS level: jwt.encode refuses some ill-typed claims; a caller need not.
    payload = json.dumps(draw(claims)).encode()
    token = jwt.PyJWS().encode(payload, KEY.private, algorithm="ES384", headers={"kid": "ec-1"})
    return f"Bearer {token}"


@FUZZ
@given(
    authorization=authorizations(),
    path=st.sampled_from(["/cds-services", SERVICE, SERVICE + "/feedback"]),
)
def test_random_authorization_headers_get_only_401(
    auth_client: TestClient, authorization: str, path: str
) -> None:
    """Garbage, unsigned or wrongly signed tokens: always a bare 401, on every endpoint."""
    headers = {"Authorization": authorization, **JSON_HEADERS}
    if path == "/cds-services":
        response = auth_client.get(path, headers=headers)
    else:
        response = auth_client.post(path, content=json.dumps(hook_request(PID)), headers=headers)
    assert response.status_code == 401, (response.status_code, authorization)


@pytest.mark.parametrize("alg", [[], ["ES384"], {"a": 1}])
def test_a_non_string_alg_gets_a_401(auth_client: TestClient, alg: Any) -> None:
    """Minimal input found by the fuzz: header {"alg": []}, payload {}, empty signature."""
    token = f"{_b64({'alg': alg})}.{_b64({})}."
    response = auth_client.get("/cds-services", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


@pytest.mark.parametrize("header", [{"alg": "RS384"}, {"alg": "RS384", "kid": "ec-1"}])
def test_an_alg_that_does_not_fit_the_key_gets_a_401(
    auth_client: TestClient, header: dict[str, str]
) -> None:
    """Minimal input found by the fuzz: header {"alg": "RS384"}, payload {"iss": ISS},
    empty signature, against an issuer configured with one EC key."""
    token = f"{_b64(header)}.{_b64({'iss': ISS})}."
    response = auth_client.get("/cds-services", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


# --- order hooks: random drafts against the vancomycin service -------------------------


def _vanco_prefetch() -> dict[str, Any]:
    from tests.support.vancomycin import base_record

    record = base_record()
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in record:
        by_type.setdefault(r["resourceType"], []).append(r)

    def searchset(rs: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": r} for r in rs],
        }

    return {
        "patient": by_type["Patient"][0],
        "observations": searchset(by_type["Observation"]),
        "administrations": searchset(by_type["MedicationAdministration"]),
        "medications": searchset([]),
        "conditions": searchset(by_type["Condition"]),
        "procedures": None,
    }


quantities = st.fixed_dictionaries(
    {},
    optional={
        "value": scalars,
        "unit": st.sampled_from(["mg", "g", "mL", "h"]) | scalars,
        "code": st.sampled_from(["mg", "g", "kg"]) | scalars,
    },
)
vanco_concept = st.just(
    {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "11124"}]}
)
dosage_instructions = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "doseAndRate": st.lists(
                st.fixed_dictionaries({}, optional={"doseQuantity": quantities | json_values}),
                max_size=2,
            )
            | json_values,
            "timing": st.fixed_dictionaries(
                {},
                optional={
                    "repeat": st.fixed_dictionaries(
                        {},
                        optional={
                            "period": scalars,
                            "periodUnit": st.sampled_from(["h", "d", "min", "wk"]) | scalars,
                            "duration": scalars,
                            "durationUnit": st.sampled_from(["h", "min"]) | scalars,
                        },
                    )
                    | json_values
                },
            )
            | json_values,
        },
    )
    | json_values,
    max_size=2,
)
drafts = st.fixed_dictionaries(
    {"resourceType": st.just("MedicationRequest"), "id": st.just("d1")},
    optional={
        "medicationCodeableConcept": vanco_concept | json_values,
        "medicationReference": json_values,
        "contained": json_values,
        "dosageInstruction": dosage_instructions | json_values,
    },
)


@FUZZ
@given(
    draft=drafts,
    selections=st.just(["MedicationRequest/d1"]) | json_values,
    wrap=st.booleans(),
)
def test_random_vancomycin_drafts_never_get_a_server_error(
    client: TestClient, draft: dict[str, Any], selections: Any, wrap: bool
) -> None:
    """Ill-typed drafts, doses, timings and selections: a named refusal or a card, never 5xx."""
    draft_orders: Any = (
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": draft}]}
        if wrap
        else draft
    )
    body = {
        "hook": "order-select",
        "hookInstance": "fuzz-order",
        "context": {
            "userId": "Practitioner/1",
            "patientId": "p1",
            "selections": selections,
            "draftOrders": draft_orders,
        },
        "prefetch": _vanco_prefetch(),
    }
    response = client.post(
        "/cds-services/vancomycin-dosing", content=json.dumps(body), headers=JSON_HEADERS
    )
    _assert_no_server_error(response, body)
