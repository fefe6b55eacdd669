"""The FHIR boundary: bad entries are reported and skipped, bad payloads raise."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.support.fhir import RXNORM, bundle, condition, med_request, obs, patient
from twin_engine import IngestError, IngestIssue, build_twin, ingest
from twin_engine.fhir.medications import MedicationRecord
from twin_engine.fhir.records import ObservationRecord


def _observation_sources(payload: object, **kw: Any) -> list[str]:
    result = ingest(payload, **kw)
    return [r.source for r in result.resources if isinstance(r, ObservationRecord)]


def test_bad_entries_are_reported_and_the_rest_ingests() -> None:
    """A string value, an R5-only field and a missing resourceType each cost one entry."""
    r5 = obs("r5", "2093-3", 190, "mg/dL")
    r5["triggeredBy"] = [{"observation": {"reference": "Observation/x"}, "type": "reflex"}]
    payload = bundle(
        patient(),
        obs("good", "2093-3", 200, "mg/dL"),
        obs("string", "2093-3", "7.2", "mg/dL"),
        r5,
        {"id": "anon", "status": "final"},
        obs("good2", "2085-9", 50, "mg/dL"),
    )
    result = ingest(payload)
    assert _observation_sources(payload) == ["Observation/good", "Observation/good2"]
    assert result.issues == (
        IngestIssue("unknown", "anon", "entry 4 has no resourceType; skipped"),
        IngestIssue(
            "Observation",
            "string",
            "Observation/string has a valueQuantity.value that is not a JSON number; skipped",
        ),
        IngestIssue(
            "Observation",
            "r5",
            "Observation/r5 has fields not defined in FHIR R4: triggeredBy; skipped",
        ),
    )


def test_validation_errors_become_one_line_reasons() -> None:
    """An invalid value inside a field is reported by path, not as a pydantic dump."""
    bad = obs("bad", "2093-3", 200, "mg/dL")
    bad["effectiveDateTime"] = "yesterday"
    bad["valueQuantity"]["comparator"] = "about"
    (issue,) = ingest(bundle(patient(), bad)).issues
    assert issue.resource_type == "Observation" and issue.resource_id == "bad"
    assert issue.reason.startswith("Observation/bad is not valid FHIR R4: ")
    assert issue.reason.endswith("; skipped")
    assert "\n" not in issue.reason


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda o: o.pop("valueQuantity"), "Observation/o has no valueQuantity; skipped"),
        (
            lambda o: o["valueQuantity"].pop("value"),
            "Observation/o has a valueQuantity without a value; skipped",
        ),
        (lambda o: o.pop("effectiveDateTime"), "Observation/o has no effective time; skipped"),
        (
            lambda o: o.update(status="entered-in-error"),
            "Observation/o has status entered-in-error; skipped",
        ),
        (
            lambda o: o.update(subject={"reference": "Patient/other"}),
            "Observation/o is about Patient/other, not the twin's patient; skipped",
        ),
    ],
)
def test_unusable_observations_name_the_resource_and_the_missing_fact(
    mutate: Any, reason: str
) -> None:
    """Each skipped Observation says which resource and what was missing."""
    o = obs("o", "2160-0", 1.0, "mg/dL")
    mutate(o)
    result = ingest(bundle(patient(), o))
    assert [i.reason for i in result.issues] == [reason]
    assert not [r for r in result.resources if isinstance(r, ObservationRecord)]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("not json", "payload must be a JSON object or array of FHIR resources, not str"),
        (42, "payload must be a JSON object or array of FHIR resources, not int"),
        ({"entry": []}, "payload is not FHIR: it has no resourceType"),
        (bundle(obs("o", "2093-3", 200, "mg/dL")), "no Patient resource in the bundle"),
        ([], "no Patient resource in the bundle"),
        (
            bundle(patient("a"), patient("b")),
            "the bundle holds 2 Patients (Patient/a, Patient/b); pass patient_id",
        ),
    ],
)
def test_fatal_payloads_raise_ingest_error(payload: object, message: str) -> None:
    """Only a payload unusable as a whole raises, with a message saying why."""
    with pytest.raises(IngestError) as info:
        ingest(payload)
    assert str(info.value) == message


def test_patient_id_selects_one_of_several_patients_and_their_data() -> None:
    """With patient_id, the other patient's resources are skipped with an issue."""
    payload = bundle(
        patient("a"),
        patient("b"),
        obs("oa", "2093-3", 200, "mg/dL", pid="a"),
        obs("ob", "2093-3", 150, "mg/dL", pid="b"),
    )
    assert _observation_sources(payload, patient_id="b") == ["Observation/ob"]
    with pytest.raises(IngestError, match="Patient/c is not in the bundle"):
        ingest(payload, patient_id="c")


@pytest.mark.parametrize("kind", ["transaction", "searchset", "collection", "batch"])
def test_any_bundle_type_and_a_list_of_resources_ingest_alike(kind: str) -> None:
    """Bundle type does not matter; a bare list of resources works the same."""
    resources = [patient(), obs("o1", "2093-3", 200, "mg/dL")]
    assert _observation_sources(bundle(*resources, kind=kind)) == ["Observation/o1"]
    assert _observation_sources(resources) == ["Observation/o1"]


def test_a_single_patient_resource_is_a_payload() -> None:
    """A Patient alone gives a twin with only demographics."""
    twin = build_twin(ingest(patient("solo")))
    assert twin.patient_id == "solo"
    assert twin.observations == {}


def test_urn_uuid_full_urls_give_ids_to_resources_without_one() -> None:
    """carebundle-style entries (no id, urn:uuid fullUrl) are named by the uuid."""
    p = patient()
    p.pop("id")
    o = obs("x", "2093-3", 200, "mg/dL")
    o.pop("id")
    o["subject"] = {"reference": "urn:uuid:00000000-0000-0000-0000-000000000001"}
    payload = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:00000000-0000-0000-0000-000000000001", "resource": p},
            {"fullUrl": "urn:uuid:00000000-0000-0000-0000-000000000002", "resource": o},
        ],
    }
    result = ingest(payload)
    assert result.patient.id == "00000000-0000-0000-0000-000000000001"
    assert _observation_sources(payload) == ["Observation/00000000-0000-0000-0000-000000000002"]


def test_irrelevant_resources_are_skipped_without_validation() -> None:
    """A broken Claim or an unmapped Observation is ignored, not reported."""
    claim = {"resourceType": "Claim", "id": "c", "status": 12}
    unrelated = obs("u", "718-7", "not a number", "g/dL")  # haemoglobin: not mapped
    result = ingest(bundle(patient(), claim, unrelated))
    assert result.issues == ()
    assert len(result.resources) == 1


def test_medication_reference_to_contained_and_bundled_medication() -> None:
    """medicationReference resolves to a contained or a bundled Medication."""
    med = {
        "resourceType": "Medication",
        "id": "m1",
        "code": {"coding": [{"system": RXNORM, "code": "29046", "display": "lisinopril"}]},
    }
    by_bundle = med_request("r1", None)
    by_bundle.pop("medicationCodeableConcept")
    by_bundle["medicationReference"] = {"reference": "Medication/m1"}
    contained = copy.deepcopy(by_bundle)
    contained["id"] = "r2"
    contained["contained"] = [dict(med, id="c1")]
    contained["medicationReference"] = {"reference": "#c1"}
    dangling = copy.deepcopy(by_bundle)
    dangling["id"] = "r3"
    dangling["medicationReference"] = {"reference": "Medication/nope"}
    result = ingest(bundle(patient(), med, by_bundle, contained, dangling))
    meds = [r for r in result.resources if isinstance(r, MedicationRecord)]
    assert [(m.source, m.rxnorm_codes) for m in meds] == [
        ("MedicationRequest/r1", ("29046",)),
        ("MedicationRequest/r2", ("29046",)),
    ]
    assert [i.resource_id for i in result.issues] == ["r3"]


def test_medication_statement_and_administration_are_read() -> None:
    """All three medication resource types are ingested with their times."""
    statement = {
        "resourceType": "MedicationStatement",
        "id": "s1",
        "status": "active",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "83367"}]},
        "subject": {"reference": "Patient/p1"},
        "effectivePeriod": {"start": "2022-01-01"},
    }
    admin = {
        "resourceType": "MedicationAdministration",
        "id": "a1",
        "status": "completed",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "11124"}]},
        "subject": {"reference": "Patient/p1"},
        "effectivePeriod": {"start": "2024-01-01T08:00:00Z", "end": "2024-01-01T09:00:00Z"},
    }
    twin = build_twin(ingest(bundle(patient(), statement, admin)))
    assert [e.kind for e in twin.medications["statin"]] == ["MedicationStatement"]
    assert [e.kind for e in twin.medications["vancomycin"]] == ["MedicationAdministration"]


def test_refuted_conditions_are_dropped() -> None:
    """A refuted diagnosis is not the patient's condition."""
    refuted = condition("c1", "http://snomed.info/sct", "44054006")
    refuted["verificationStatus"] = {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                "code": "refuted",
            }
        ]
    }
    twin = build_twin(ingest(bundle(patient(), refuted)))
    assert twin.conditions == {}
    assert [i.reason for i in twin.issues] == ["Condition/c1 is refuted; skipped"]
