"""Care gaps: patient situations a clinician would recognise, one rule each."""

from __future__ import annotations

from datetime import date
from typing import Any

from tests.twin_engine.fhir import SNOMED, bundle, condition, med_request, obs, patient
from twin_engine import build_twin_from_fhir, derive_features
from twin_engine.derive import FeatureSet
from twin_engine.population import care_gaps

AS_OF = date(2026, 6, 1)
RECENT = "2026-03-01T09:00:00Z"
OLD = "2019-03-01T09:00:00Z"  # more than 5 years before AS_OF


def _features(*resources: dict[str, Any], birth: str = "1966-01-01") -> FeatureSet:
    twin = build_twin_from_fhir(bundle(patient(birth=birth), *resources))
    return derive_features(twin, AS_OF)


def _lipids(when: str = RECENT, ldl: float = 120) -> list[dict[str, Any]]:
    return [
        obs("tc", "2093-3", 200, "mg/dL", when),
        obs("hdl", "2085-9", 50, "mg/dL", when),
        obs("ldl", "13457-7", ldl, "mg/dL", when),
    ]


def _kinds(features: FeatureSet, pce: float | None = None) -> list[str]:
    return [g.kind for g in care_gaps(features, pce)]


def test_intermediate_risk_without_a_statin_is_a_gap() -> None:
    """Age 60, LDL-C 120, PCE 10-year risk 9%, no statin: statin indicated (Grundy 2019 4.4.1)."""
    assert "statin-indicated-not-on-statin" in _kinds(_features(*_lipids()), 0.09)


def test_low_risk_without_a_statin_is_not_a_gap() -> None:
    """The same patient at a 4% risk is outside every statin benefit group."""
    assert "statin-indicated-not-on-statin" not in _kinds(_features(*_lipids()), 0.04)


def test_intermediate_risk_on_atorvastatin_is_not_a_gap() -> None:
    """An active atorvastatin prescription closes the statin gap."""
    features = _features(*_lipids(), med_request("m1", "83367", "atorvastatin"))
    assert "statin-indicated-not-on-statin" not in _kinds(features, 0.09)


def test_diabetes_at_50_without_a_statin_is_a_gap_whatever_the_risk() -> None:
    """Diabetes aged 40-75 is a statin benefit group on its own (Grundy 2019 4.3)."""
    features = _features(*_lipids(), condition("d1", SNOMED, "44054006"), birth="1976-01-01")
    assert "statin-indicated-not-on-statin" in _kinds(features, 0.02)


def test_ldl_190_at_35_without_a_statin_is_a_gap() -> None:
    """Severe hypercholesterolaemia (LDL-C >= 190) from age 20 (Grundy 2019 4.2)."""
    features = _features(*_lipids(ldl=205), birth="1991-01-01")
    assert "statin-indicated-not-on-statin" in _kinds(features, None)


def test_ckd_3a_without_a_uacr_is_a_gap() -> None:
    """eGFR 48 and no urine ACR on record: CKD without albuminuria staging."""
    features = _features(*_lipids(), obs("e", "98979-8", 48, "mL/min/{1.73_m2}", RECENT))
    assert "ckd-without-uacr" in _kinds(features)


def test_ckd_with_a_uacr_this_year_is_not_a_gap() -> None:
    """eGFR 48 with a UACR three months old: staged, no gap."""
    features = _features(
        *_lipids(),
        obs("e", "98979-8", 48, "mL/min/{1.73_m2}", RECENT),
        obs("a", "9318-7", 40, "mg/g", RECENT),
    )
    assert "ckd-without-uacr" not in _kinds(features)


def test_normal_egfr_without_a_uacr_is_not_a_ckd_gap() -> None:
    """eGFR 85: no CKD by eGFR, so no UACR gap."""
    features = _features(*_lipids(), obs("e", "98979-8", 85, "mL/min/{1.73_m2}", RECENT))
    assert "ckd-without-uacr" not in _kinds(features)


def test_lipids_seven_years_old_at_60_are_overdue() -> None:
    """A lipid panel from 2019 in a 60-year-old is older than the 4-6 years advised."""
    gaps = care_gaps(_features(*_lipids(OLD)), None)
    (gap,) = [g for g in gaps if g.kind == "lipids-overdue"]
    assert "2019-03-01" in gap.reason


def test_diabetes_without_an_hba1c_this_year_is_overdue() -> None:
    """Diabetes with the last HbA1c 2019: HbA1c overdue (ADA 2024 6.1)."""
    features = _features(
        *_lipids(), condition("d1", SNOMED, "44054006"), obs("h", "4548-4", 7.1, "%", OLD)
    )
    assert "hba1c-overdue" in _kinds(features)


def test_hba1c_is_not_asked_of_patients_without_diabetes() -> None:
    """No diabetes, no HbA1c: not a gap."""
    assert "hba1c-overdue" not in _kinds(_features(*_lipids()))


def test_diabetes_without_a_creatinine_is_kidney_function_overdue() -> None:
    """Diabetes and no creatinine on record: annual kidney function check missing."""
    features = _features(*_lipids(), condition("d1", SNOMED, "44054006"))
    assert "kidney-function-overdue" in _kinds(features)
