"""Care gaps: patient situations a clinician would recognise, one rule each."""

from __future__ import annotations

from datetime import date
from typing import Any

from tests.support.fhir import SNOMED, bundle, condition, med_request, obs, patient
from twin_engine import build_twin_from_fhir, derive_features
from twin_engine.clinical.guidelines import StatinAdvice, statin_advice
from twin_engine.clinical.state import clinical_state
from twin_engine.derive import FeatureSet
from twin_engine.population import CareGap, care_gaps

AS_OF = date(2026, 6, 1)
RECENT = "2026-03-01T09:00:00Z"
OLD = "2019-03-01T09:00:00Z"  # more than 5 years before AS_OF


def _patient(
    *resources: dict[str, Any], birth: str = "1966-01-01", pce: float | None = None
) -> tuple[FeatureSet, StatinAdvice]:
    """Features and the cards' statin decision (given the PCE risk) for one patient."""
    twin = build_twin_from_fhir(bundle(patient(birth=birth), *resources))
    features = derive_features(twin, AS_OF)
    return features, statin_advice(clinical_state(twin, features), pce)


def _gaps(
    *resources: dict[str, Any], birth: str = "1966-01-01", pce: float | None = None
) -> tuple[CareGap, ...]:
    return care_gaps(*_patient(*resources, birth=birth, pce=pce))


def _kinds(
    *resources: dict[str, Any], birth: str = "1966-01-01", pce: float | None = None
) -> list[str]:
    return [g.kind for g in _gaps(*resources, birth=birth, pce=pce)]


def _lipids(when: str = RECENT, ldl: float = 120) -> list[dict[str, Any]]:
    return [
        obs("tc", "2093-3", 200, "mg/dL", when),
        obs("hdl", "2085-9", 50, "mg/dL", when),
        obs("ldl", "13457-7", ldl, "mg/dL", when),
    ]


def test_intermediate_risk_without_a_statin_is_a_gap() -> None:
    """Age 60, LDL-C 120, PCE 10-year risk 9%, no statin: statin indicated (Grundy 2019 4.4.1)."""
    assert "statin-indicated-not-on-statin" in _kinds(*_lipids(), pce=0.09)


def test_low_risk_without_a_statin_is_not_a_gap() -> None:
    """The same patient at a 4% risk is outside every statin benefit group."""
    assert "statin-indicated-not-on-statin" not in _kinds(*_lipids(), pce=0.04)


def test_intermediate_risk_on_atorvastatin_is_not_a_gap() -> None:
    """An active atorvastatin prescription closes the statin gap."""
    kinds = _kinds(*_lipids(), med_request("m1", "83367", "atorvastatin 40 MG"), pce=0.09)
    assert "statin-indicated-not-on-statin" not in kinds


def test_diabetes_at_50_without_a_statin_is_a_gap_whatever_the_risk() -> None:
    """Diabetes aged 40-75 is a statin benefit group on its own (Grundy 2019 4.3)."""
    kinds = _kinds(*_lipids(), condition("d1", SNOMED, "44054006"), birth="1976-01-01", pce=0.02)
    assert "statin-indicated-not-on-statin" in kinds


def test_ldl_190_at_35_without_a_statin_is_a_gap() -> None:
    """Severe hypercholesterolaemia (LDL-C >= 190) from age 20 (Grundy 2019 4.2)."""
    assert "statin-indicated-not-on-statin" in _kinds(*_lipids(ldl=205), birth="1991-01-01")


def test_ckd_3a_without_a_uacr_is_a_gap() -> None:
    """eGFR 48 and no urine ACR on record: CKD without albuminuria staging."""
    assert "ckd-without-uacr" in _kinds(
        *_lipids(), obs("e", "98979-8", 48, "mL/min/{1.73_m2}", RECENT)
    )


def test_ckd_with_a_uacr_this_year_is_not_a_gap() -> None:
    """eGFR 48 with a UACR three months old: staged, no gap."""
    kinds = _kinds(
        *_lipids(),
        obs("e", "98979-8", 48, "mL/min/{1.73_m2}", RECENT),
        obs("a", "9318-7", 40, "mg/g", RECENT),
    )
    assert "ckd-without-uacr" not in kinds


def test_normal_egfr_without_a_uacr_is_not_a_ckd_gap() -> None:
    """eGFR 85: no CKD by eGFR, so no UACR gap."""
    assert "ckd-without-uacr" not in _kinds(
        *_lipids(), obs("e", "98979-8", 85, "mL/min/{1.73_m2}", RECENT)
    )


def test_lipids_seven_years_old_at_60_are_overdue() -> None:
    """A lipid panel from 2019 in a 60-year-old is older than the 4-6 years advised."""
    gaps = _gaps(*_lipids(OLD))
    (gap,) = [g for g in gaps if g.kind == "lipids-overdue"]
    assert "2019-03-01" in gap.reason


def test_diabetes_without_an_hba1c_this_year_is_overdue() -> None:
    """Diabetes with the last HbA1c 2019: HbA1c overdue (ADA 2024 6.1)."""
    kinds = _kinds(
        *_lipids(), condition("d1", SNOMED, "44054006"), obs("h", "4548-4", 7.1, "%", OLD)
    )
    assert "hba1c-overdue" in kinds


def test_hba1c_is_not_asked_of_patients_without_diabetes() -> None:
    """No diabetes, no HbA1c: not a gap."""
    assert "hba1c-overdue" not in _kinds(*_lipids())


def test_diabetes_without_a_creatinine_is_kidney_function_overdue() -> None:
    """Diabetes and no creatinine on record: annual kidney function check missing."""
    assert "kidney-function-overdue" in _kinds(*_lipids(), condition("d1", SNOMED, "44054006"))


def test_prior_mi_on_atorvastatin_10_mg_is_below_the_indicated_intensity() -> None:
    """Clinical ASCVD at 60 on a moderate-intensity statin: high intensity is indicated."""
    kinds = _kinds(
        *_lipids(),
        condition("mi", SNOMED, "22298006"),
        med_request("m1", "617312", "atorvastatin 10 MG Oral Tablet"),
    )
    assert "statin-below-indicated-intensity" in kinds
    assert "statin-indicated-not-on-statin" not in kinds
