"""The shared Synthea corpus and carebundle patients go through the whole pipeline."""

from __future__ import annotations

import json
from datetime import date

import pytest

from tests.conftest import SYNTHEA_DIR
from twin_engine import build_twin_from_fhir, derive_features

CORPUS = SYNTHEA_DIR
BUNDLES = sorted(CORPUS.glob("*.json")) if CORPUS.is_dir() else []


@pytest.mark.corpus
@pytest.mark.skipif(not BUNDLES, reason="shared Synthea corpus not present")
def test_every_synthea_bundle_ingests_builds_and_derives() -> None:
    """All bundles give twins; >= 16 have usable cholesterol and creatinine at the end."""
    with_both = 0
    for path in BUNDLES:
        twin = build_twin_from_fhir(json.loads(path.read_text()))
        assert twin.issues == (), path.name
        last = max(p.time for points in twin.observations.values() for p in points)
        features = derive_features(twin, last)
        if (
            features.get("total_cholesterol_mg_dl").usable
            and features.get("creatinine_mg_dl").usable
        ):
            with_both += 1
    assert len(BUNDLES) == 24
    assert with_both >= 16


carebundle = pytest.importorskip("carebundle")


@pytest.mark.parametrize(
    ("profile", "seed", "sex"),
    [
        ("hypertension", 1, "M"),
        ("hypertension", 2, "F"),
        ("type2_diabetes", 3, "F"),
        ("ckd_stage3", 4, "M"),
        ("healthy", 5, "F"),
    ],
)
def test_carebundle_features_equal_the_bundle_values(profile: str, seed: int, sex: str) -> None:
    """Each feature equals the value written in the generated bundle (independent read)."""
    payload = json.loads(
        carebundle.to_json(carebundle.generate_bundle(profile=profile, seed=seed, sex=sex))
    )
    expected: dict[str, float] = {}
    loinc_to_feature = {
        "2093-3": "total_cholesterol_mg_dl",
        "2085-9": "hdl_cholesterol_mg_dl",
        "13457-7": "ldl_cholesterol_mg_dl",
        "2571-8": "triglycerides_mg_dl",
        "2160-0": "creatinine_mg_dl",
        "4548-4": "hba1c_percent",
        "9318-7": "uacr_mg_g",
        "39156-5": "bmi_kg_m2",
        "29463-7": "weight_kg",
        "8302-2": "height_cm",
        "98979-8": "egfr_ml_min_1_73m2",
        "8480-6": "systolic_bp_mm_hg",
        "8462-4": "diastolic_bp_mm_hg",
    }
    antihypertensive = False
    for entry in payload["entry"]:
        res = entry["resource"]
        if res["resourceType"] == "Observation":
            for part in [res, *res.get("component", [])]:
                code = part["code"]["coding"][0]["code"]
                if code in loinc_to_feature and "valueQuantity" in part:
                    assert part["valueQuantity"]["code"] in (
                        "mg/dL",
                        "%",
                        "mg/g",
                        "kg/m2",
                        "kg",
                        "cm",
                        "mL/min/{1.73_m2}",
                        "mm[Hg]",
                    )
                    expected[loinc_to_feature[code]] = float(part["valueQuantity"]["value"])
        if res["resourceType"] == "MedicationRequest":
            text = res["medicationCodeableConcept"]["text"].lower()
            antihypertensive |= any(
                n in text
                for n in (
                    "lisinopril",
                    "amlodipine",
                    "hydrochlorothiazide",
                    "losartan",
                    "carvedilol",
                )
            )
    features = derive_features(build_twin_from_fhir(payload), date(2026, 1, 1))
    assert len(expected) >= 10
    for name, value in expected.items():
        feature = features.get(name)
        assert feature.quality == "ok", (name, feature.note)
        assert feature.value == pytest.approx(value), name
    assert features.get("female").value == (1.0 if sex == "F" else 0.0)
    assert features.get("treated_hypertension").value == (1.0 if antihypertensive else 0.0)
