"""Twin state: mapping tables, hashing, JSON summary and state round trip."""

from __future__ import annotations

import json

import pytest

from tests.support.fhir import ICD10, SNOMED, bp, bundle, condition, med_request, obs, patient
from twin_engine import Twin, build_twin_from_fhir
from twin_engine.concepts import concepts_for
from twin_engine.medications import classify_medication


@pytest.mark.parametrize(
    ("system", "code", "concepts"),
    [
        (SNOMED, "44054006", ("diabetes",)),
        (SNOMED, "368581000119106", ("diabetes",)),
        (SNOMED, "15777000", ()),  # prediabetes is not diabetes
        (SNOMED, "38341003", ("hypertension",)),
        (SNOMED, "433144002", ("ckd",)),
        (SNOMED, "431855005", ("ckd",)),
        (SNOMED, "84114007", ("heart_failure",)),
        (SNOMED, "88805009", ("heart_failure",)),
        (SNOMED, "49436004", ("atrial_fibrillation",)),
        (SNOMED, "53741008", ("ascvd",)),
        (SNOMED, "22298006", ("ascvd", "myocardial_infarction")),
        (SNOMED, "399211009", ("ascvd", "myocardial_infarction")),
        (SNOMED, "230690007", ("ascvd",)),
        (SNOMED, "410429000", ()),  # cardiac arrest: not a concept here
        (ICD10, "E11.9", ("diabetes",)),
        (ICD10, "E10.65", ("diabetes",)),
        (ICD10, "R73.03", ()),
        (ICD10, "I10", ("hypertension",)),
        (ICD10, "I13.0", ("heart_failure", "hypertension")),
        (ICD10, "N18.3", ("ckd",)),
        (ICD10, "I50.9", ("heart_failure",)),
        (ICD10, "I48.91", ("atrial_fibrillation",)),
        (ICD10, "I48.92", ()),  # atrial flutter
        (ICD10, "I25.10", ("ascvd",)),
        (ICD10, "I63.9", ("ascvd",)),
        (ICD10, "i21.4", ("ascvd", "myocardial_infarction")),
        (SNOMED, "89138009", ("cardiogenic_shock",)),
        (ICD10, "R57.0", ("cardiogenic_shock",)),
        ("http://example.org/other", "I10", ()),
    ],
)
def test_condition_concepts(system: str, code: str, concepts: tuple[str, ...]) -> None:
    """SNOMED codes map exactly and ICD-10-CM by prefix to the concept sets."""
    assert concepts_for(system, code) == concepts


@pytest.mark.parametrize(
    ("codes", "texts", "classes", "matched_by"),
    [
        (("314076",), (), ("antihypertensive",), "rxnorm"),
        (("29046",), (), ("antihypertensive",), "rxnorm"),
        (("197361",), (), ("antihypertensive",), "rxnorm"),
        (("316049",), (), ("antihypertensive",), "rxnorm"),
        (("866414",), (), ("antihypertensive",), "rxnorm"),
        (("312961",), (), ("statin",), "rxnorm"),
        (("316672",), (), ("statin",), "rxnorm"),
        (("617310",), (), ("statin",), "rxnorm"),
        (("11124",), (), ("vancomycin",), "rxnorm"),
        (("999999",), ("Valsartan 160 MG Oral Tablet",), ("antihypertensive",), "text"),
        ((), ("vancomycin 1000 MG Injection",), ("vancomycin",), "text"),
        ((), ("Simvistatin 10 MG",), ("statin",), "text"),
        (("198051",), ("omeprazole 20 MG",), (), None),
        (("1719286",), ("10 ML Furosemide 10 MG/ML Injection",), (), None),
    ],
)
def test_medication_classes(
    codes: tuple[str, ...], texts: tuple[str, ...], classes: tuple[str, ...], matched_by: str | None
) -> None:
    """RxNorm codes decide the class; otherwise an ingredient name in the text, flagged."""
    matches = classify_medication(codes, texts)
    assert tuple(m.medication_class for m in matches) == classes
    assert all(m.matched_by == matched_by for m in matches)


def _bundle() -> dict[str, object]:
    return bundle(
        patient(race=["2054-5"]),
        obs("tc2", "2093-3", 5.0, "mmol/L", "2024-01-01"),
        obs("tc1", "2093-3", 210, "mg/dL", "2023-01-01"),
        bp("bp", 130, 80),
        condition("c", SNOMED, "38341003"),
        med_request("m", "314076", "lisinopril 10 MG Oral Tablet"),
    )


def test_timelines_are_sorted_and_canonical() -> None:
    """Points are sorted by time and converted to the canonical unit."""
    twin = build_twin_from_fhir(_bundle())
    points = twin.observations["total_cholesterol"]
    assert [(p.source, p.unit) for p in points] == [
        ("Observation/tc1", "mg/dL"),
        ("Observation/tc2", "mg/dL"),
    ]
    assert points[1].value == pytest.approx(193.35)


def test_same_data_gives_the_same_hash_and_changed_data_a_new_one() -> None:
    """content_hash depends only on content, not on entry order or build time."""
    payload = _bundle()
    reordered = dict(payload, entry=list(reversed(payload["entry"])))  # type: ignore[call-overload]
    first = build_twin_from_fhir(payload)
    assert build_twin_from_fhir(payload).content_hash() == first.content_hash()
    assert build_twin_from_fhir(reordered).content_hash() == first.content_hash()
    changed = _bundle()
    changed["entry"].append(  # type: ignore[attr-defined]
        {"resource": obs("tc3", "2093-3", 180, "mg/dL", "2024-06-01")}
    )
    assert build_twin_from_fhir(changed).content_hash() != first.content_hash()


def test_state_round_trips_and_summary_is_json() -> None:
    """from_state(to_state()) rebuilds an equal twin; to_json() survives json.dumps."""
    twin = build_twin_from_fhir(_bundle())
    state = json.loads(json.dumps(twin.to_state()))
    assert Twin.from_state(state) == twin
    summary = json.loads(json.dumps(twin.to_json()))
    assert summary["observations"]["total_cholesterol"]["count"] == 2
    assert summary["observations"]["total_cholesterol"]["latest"]["source"] == "Observation/tc2"
    assert summary["conditions"]["hypertension"]["active"] is True
    assert summary["medications"]["antihypertensive"]["sources"] == ["MedicationRequest/m"]
    assert summary["demographics"]["race_omb"] == ["2054-5"]
    assert summary["content_hash"] == twin.content_hash()
