"""Clinical rules on the twin, each against its guideline's own examples and boundaries:
KDIGO 2012 AKI staging, KDIGO 2024 CKD chronicity and categories, the 2018 AHA/ACC statin
intensity table and benefit groups, USPSTF 2022 grades, and the history rules."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from tests.support.fhir import ICD10, SNOMED, bundle, condition, med_request, obs, patient
from twin_engine import build_twin_from_fhir, derive_features
from twin_engine.clinical.guidelines import (
    kfre_applies,
    refer_to_nephrology,
    risk_tier,
    statin_advice,
    uspstf_2022_grade,
)
from twin_engine.clinical.kidney import aki_stage, albuminuria_category, gfr_category
from twin_engine.clinical.state import ClinicalState, clinical_state
from twin_engine.clinical.statins import statin_intensity
from twin_engine.procedures import CPT_SYSTEM, ICD10PCS_SYSTEM, procedure_concepts_for

TODAY = date(2026, 6, 1)


def _state(
    *resources: dict[str, Any], birth: str = "1965-03-01", gender: str = "male"
) -> ClinicalState:
    twin = build_twin_from_fhir(bundle(patient(gender=gender, birth=birth), *resources))
    return clinical_state(twin, derive_features(twin, TODAY))


def _creatinine(*points: tuple[str, float]) -> list[dict[str, Any]]:
    return [obs(f"cr{i}", "2160-0", v, "mg/dL", t) for i, (t, v) in enumerate(points)]


def _procedure(pid: str, system: str, code: str, when: str) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": pid,
        "status": "completed",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "performedDateTime": when,
    }


# --- KDIGO 2012 AKI -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("creatinine", "baseline", "rise_48h", "stage"),
    [
        (1.4, 1.0, 0.0, 0),  # 1.4x, rise not within 48 h: no AKI
        (1.5, 1.0, 0.0, 1),  # 1.5-1.9x: stage 1
        (1.9, 1.0, 0.0, 1),
        (1.3, 1.0, 0.3, 1),  # >= 0.3 mg/dL within 48 h: stage 1 whatever the ratio
        (1.2, 1.0, 0.2, 0),
        (2.0, 1.0, 0.0, 2),  # 2.0-2.9x: stage 2
        (2.9, 1.0, 0.0, 2),
        (3.0, 1.0, 0.0, 3),  # >= 3.0x: stage 3
        (4.0, 1.5, 0.0, 3),  # 2.7x but >= 4.0 mg/dL: stage 3
        (3.1, 0.97, 0.0, 3),  # the patient: 0.97 -> 3.1 within a week
    ],
)
def test_kdigo_aki_stage(creatinine: float, baseline: float, rise_48h: float, stage: int) -> None:
    """KDIGO 2012 Table 2: stage by ratio to baseline, the 48-hour rise, or >= 4.0 mg/dL."""
    assert aki_stage(creatinine, baseline, rise_48h) == stage


def test_aki_against_the_lowest_value_of_the_prior_week() -> None:
    """0.97 then 3.1 five days later: AKI stage 3, baseline 0.97 (lowest in 7 days)."""
    s = _state(*_creatinine(("2026-05-20T08:00:00Z", 0.97), ("2026-05-25T08:00:00Z", 3.1)))
    assert s.aki is not None
    assert (s.aki.stage, s.aki.baseline_mg_dl) == (3, 0.97)


def test_aki_against_a_presumed_baseline_of_the_prior_year() -> None:
    """No value in the prior week: the median of the prior 7-365 days is the baseline."""
    s = _state(
        *_creatinine(
            ("2025-09-01T08:00:00Z", 0.9),
            ("2025-12-01T08:00:00Z", 1.1),
            ("2026-02-01T08:00:00Z", 1.0),
            ("2026-05-25T08:00:00Z", 2.1),
        )
    )
    assert s.aki is not None
    assert (s.aki.stage, s.aki.baseline_mg_dl) == (2, 1.0)


def test_stable_high_creatinine_is_not_aki() -> None:
    """Creatinine 2.7-2.8 for years (CKD G4) is a steady state, not acute kidney injury."""
    s = _state(
        *_creatinine(
            *((f"{y}-01-10T08:00:00Z", 2.7) for y in (2023, 2024, 2025)),
            ("2026-05-10T08:00:00Z", 2.8),
        )
    )
    assert s.aki is None


# --- KDIGO 2024 CKD -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("egfr", "category"),
    [
        (90, "G1"),
        (89.9, "G2"),
        (60, "G2"),
        (59.9, "G3a"),
        (45, "G3a"),
        (44.9, "G3b"),
        (30, "G3b"),
        (29.9, "G4"),
        (15, "G4"),
        (14.9, "G5"),
    ],
)
def test_gfr_categories(egfr: float, category: str) -> None:
    """KDIGO 2024 Figure 2: G1 >= 90, G2 60-89, G3a 45-59, G3b 30-44, G4 15-29, G5 < 15."""
    assert gfr_category(egfr) == category


@pytest.mark.parametrize(("acr", "category"), [(29.9, "A1"), (30, "A2"), (300, "A2"), (301, "A3")])
def test_albuminuria_categories(acr: float, category: str) -> None:
    """KDIGO 2024 Figure 2: A1 < 30, A2 30-300, A3 > 300 mg/g."""
    assert albuminuria_category(acr) == category


def _egfr(*points: tuple[str, float]) -> list[dict[str, Any]]:
    return [obs(f"e{i}", "98979-8", v, "mL/min/{1.73_m2}", t) for i, (t, v) in enumerate(points)]


@pytest.mark.parametrize(
    ("points", "chronic"),
    [
        ((("2026-01-01T00:00:00Z", 50.0), ("2026-04-05T00:00:00Z", 48.0)), True),  # 94 days
        ((("2026-03-01T00:00:00Z", 50.0), ("2026-04-30T00:00:00Z", 48.0)), False),  # 60 days
        (
            (
                ("2025-10-01T00:00:00Z", 50.0),
                ("2026-01-01T00:00:00Z", 72.0),
                ("2026-04-30T00:00:00Z", 48.0),
            ),
            False,  # a normal value in between: the run starts again
        ),
    ],
)
def test_ckd_needs_more_than_three_months(
    points: tuple[tuple[str, float], ...], chronic: bool
) -> None:
    """KDIGO 2024: eGFR < 60 for more than 3 months with no normal value in between."""
    s = _state(*_egfr(*points))
    assert s.kidney.chronic is chronic
    assert s.kidney.g_category == "G3a"


def test_kfre_applies_to_chronic_g3_to_g5_only() -> None:
    """KFRE for chronic CKD G3-G5; not for a first low eGFR, not once on dialysis."""
    chronic = _egfr(("2026-01-01T00:00:00Z", 40.0), ("2026-05-01T00:00:00Z", 38.0))
    assert kfre_applies(_state(*chronic))
    assert not kfre_applies(_state(*_egfr(("2026-05-01T00:00:00Z", 38.0))))
    dialysis = _procedure("d", SNOMED, "302497006", "2026-05-20")
    assert not kfre_applies(_state(*chronic, dialysis))


@pytest.mark.parametrize(
    ("egfr", "kfre5", "refer"),
    [(29.0, None, True), (30.0, None, False), (45.0, 0.05, True), (45.0, 0.049, False)],
)
def test_nephrology_referral(egfr: float, kfre5: float | None, refer: bool) -> None:
    """KDIGO 2024 PP 2.2.1-2.2.3: refer at eGFR < 30 or a 5-year KFRE of 5% or more."""
    assert refer_to_nephrology(egfr, kfre5) is refer


# --- 2018 AHA/ACC statin intensity and benefit groups -------------------------------


@pytest.mark.parametrize(
    ("ingredient", "mg", "intensity"),
    [
        ("atorvastatin", 10, "moderate"),
        ("atorvastatin", 20, "moderate"),
        ("atorvastatin", 40, "high"),
        ("atorvastatin", 80, "high"),
        ("rosuvastatin", 5, "moderate"),
        ("rosuvastatin", 10, "moderate"),
        ("rosuvastatin", 20, "high"),
        ("rosuvastatin", 40, "high"),
        ("simvastatin", 10, "low"),
        ("simvastatin", 20, "moderate"),
        ("simvastatin", 40, "moderate"),
        ("pravastatin", 20, "low"),
        ("pravastatin", 40, "moderate"),
        ("pravastatin", 80, "moderate"),
        ("lovastatin", 20, "low"),
        ("lovastatin", 40, "moderate"),
        ("fluvastatin", 40, "low"),
        ("fluvastatin", 80, "moderate"),
        ("pitavastatin", 2, "moderate"),
        ("atorvastatin", 30, None),  # not a dose in the table: not guessed
    ],
)
def test_statin_intensity_table(ingredient: str, mg: float, intensity: str | None) -> None:
    """Grundy 2019 Table 3: intensity by ingredient and daily dose."""
    assert statin_intensity(ingredient, mg) == intensity


def test_statin_exposure_periods_from_orders() -> None:
    """Simvastatin 20 mg (2015, stopped) then atorvastatin 40 mg (2020): two periods, the
    first ending when the second starts; the current one is high intensity."""
    s = _state(
        med_request(
            "m1", "312961", "simvastatin 20 MG Oral Tablet", status="stopped", authored="2015-01-01"
        ),
        med_request("m2", "617311", "atorvastatin 40 MG Oral Tablet", authored="2020-01-01"),
    )
    first, second = s.statins
    assert (first.ingredient, first.dose_mg, first.intensity, first.ongoing) == (
        "simvastatin",
        20.0,
        "moderate",
        False,
    )
    assert first.stop == datetime(2020, 1, 1, tzinfo=UTC)
    assert s.current_statin == second
    assert (second.describe(), second.intensity) == ("atorvastatin 40 mg", "high")
    assert s.first_statin == datetime(2015, 1, 1, tzinfo=UTC)


def test_pretreatment_lipids_are_the_last_panel_before_the_first_statin() -> None:
    """Panels of 2019 and 2021, statin from 2020: the 2019 panel is the untreated one."""
    s = _state(
        obs("tc0", "2093-3", 262, "mg/dL", "2019-06-01T09:00:00Z"),
        obs("hdl0", "2085-9", 38, "mg/dL", "2019-06-01T09:00:00Z"),
        obs("tc1", "2093-3", 175, "mg/dL", "2021-06-01T09:00:00Z"),
        obs("hdl1", "2085-9", 46, "mg/dL", "2021-06-01T09:00:00Z"),
        med_request("m", "617310", "atorvastatin 20 MG Oral Tablet", authored="2020-01-01"),
    )
    assert s.pretreatment_lipids is not None
    assert (s.pretreatment_lipids.total_mg_dl, s.pretreatment_lipids.hdl_mg_dl) == (262, 38)


MI = condition("mi", SNOMED, "22298006", onset="2019-05-01", status="resolved")


@pytest.mark.parametrize(
    ("resources", "birth", "risk", "expected"),
    [
        ((MI,), "1965-03-01", None, ("secondary", "high", "start")),
        ((MI,), "1944-03-01", None, ("secondary", "moderate", "start")),  # over 75
        (
            (MI, med_request("m", "312961", "simvastatin 20 MG Oral Tablet")),
            "1965-03-01",
            None,
            ("secondary", "high", "intensify"),
        ),
        (
            (obs("ldl", "13457-7", 195, "mg/dL", "2026-05-01T09:00:00Z"),),
            "1976-03-01",
            None,
            ("ldl-190", "high", "start"),
        ),
        (
            (obs("ldl", "13457-7", 195, "mg/dL", "2026-05-01T09:00:00Z"),),
            "1946-03-01",
            None,
            ("none", None, "none"),
        ),
        (
            (condition("dm", SNOMED, "44054006"),),
            "1965-03-01",
            0.053,
            ("diabetes", "moderate", "start"),
        ),
        ((condition("dm", SNOMED, "44054006"),), "1991-03-01", None, ("none", None, "none")),
        ((), "1965-03-01", 0.04, ("primary", None, "none")),
        ((), "1965-03-01", 0.06, ("primary", None, "discuss")),
        ((), "1965-03-01", 0.10, ("primary", "moderate", "start")),
        ((), "1965-03-01", 0.25, ("primary", "high", "start")),
        (
            (med_request("m", "617311", "atorvastatin 40 MG Oral Tablet"),),
            "1965-03-01",
            0.10,
            ("primary", "moderate", "continue"),
        ),
        ((), "1948-03-01", 0.25, ("primary", None, "individual")),  # 78: individual decision
    ],
)
def test_statin_benefit_groups(
    resources: tuple[dict[str, Any], ...], birth: str, risk: float | None, expected: tuple[Any, ...]
) -> None:
    """Grundy 2019: clinical ASCVD, LDL >= 190 (20-75), diabetes (40-75), then risk tiers."""
    a = statin_advice(_state(*resources, birth=birth), risk)
    assert (a.group, a.indicated, a.decision) == expected


def test_a_pregnant_patient_on_a_statin_stops_it() -> None:
    """Statins are stopped in pregnancy; a pregnancy unabated for over 44 weeks is over."""
    statin = med_request("m", "617310", "atorvastatin 20 MG Oral Tablet")
    now = condition("p", SNOMED, "72892002", onset="2026-02-01")
    old = condition("p", SNOMED, "72892002", onset="2024-01-01")
    assert (
        statin_advice(_state(now, statin, birth="1994-01-01", gender="female"), 0.1).decision
        == "stop"
    )
    assert _state(old, birth="1994-01-01", gender="female").pregnancy is None


def test_dialysis_in_the_last_month_is_kidney_failure() -> None:
    """A dialysis Procedure 12 days ago: kidney failure, no statin start; 40 days ago: not."""
    recent = _state(_procedure("d", CPT_SYSTEM, "90935", "2026-05-20"))
    assert recent.kidney_failure is not None
    assert statin_advice(recent, 0.2).decision == "none"
    assert _state(_procedure("d", CPT_SYSTEM, "90935", "2026-04-22")).kidney_failure is None


@pytest.mark.parametrize(
    ("age", "risk", "factor", "excluded", "grade"),
    [
        (50, 0.12, True, False, "B"),
        (50, 0.08, True, False, "C"),
        (50, 0.05, True, False, None),
        (50, 0.12, False, False, None),  # no risk factor
        (50, 0.12, True, True, None),  # e.g. already on a statin
        (78, 0.30, True, False, "I"),
        (35, 0.12, True, False, None),
    ],
)
def test_uspstf_2022_grades(
    age: float, risk: float, factor: bool, excluded: bool, grade: str | None
) -> None:
    """USPSTF 2022: 40-75 with a risk factor, B at >= 10%, C at 7.5-10%; I over 75."""
    assert uspstf_2022_grade(age, risk, factor, excluded) == grade


@pytest.mark.parametrize(
    ("risk", "tier"),
    [(0.049, "low"), (0.05, "borderline"), (0.075, "intermediate"), (0.20, "high")],
)
def test_risk_tiers(risk: float, tier: str) -> None:
    """Grundy 2019 section 4.4.1: < 5%, 5-7.5%, 7.5-20%, >= 20%."""
    assert risk_tier(risk) == tier


# --- history ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "code", "concepts"),
    [
        (SNOMED, "415070008", ("revascularisation",)),  # PCI
        (SNOMED, "232717009", ("revascularisation",)),  # CABG
        (ICD10PCS_SYSTEM, "027034Z", ("revascularisation",)),  # dilation of coronary artery
        (ICD10PCS_SYSTEM, "021009W", ("revascularisation",)),  # bypass coronary artery
        (CPT_SYSTEM, "92928", ("revascularisation",)),  # PCI with stent
        (CPT_SYSTEM, "33533", ("revascularisation",)),  # arterial CABG
        (CPT_SYSTEM, "90935", ("dialysis",)),
        (ICD10PCS_SYSTEM, "5A1D70Z", ("dialysis",)),
        (CPT_SYSTEM, "99213", ()),  # an office visit
    ],
)
def test_procedure_codes(system: str, code: str, concepts: tuple[str, ...]) -> None:
    """Revascularisation and dialysis from SNOMED CT, ICD-10-PCS and CPT."""
    assert procedure_concepts_for(system, code) == concepts


def test_a_pci_recorded_only_as_a_procedure_is_clinical_ascvd() -> None:
    """No ASCVD Condition, one PCI Procedure: clinical ASCVD, named by the procedure."""
    s = _state(_procedure("pci", SNOMED, "415070008", "2022-03-01"))
    assert s.clinical_ascvd is not None
    assert s.clinical_ascvd.source == "Procedure/pci"


def test_a_provisional_diagnosis_does_not_decide_a_group() -> None:
    """A provisional MI is not clinical ASCVD; a confirmed one is (condition-ver-status)."""

    def mi(status: str) -> dict[str, Any]:
        res = condition("mi", ICD10, "I21.9", onset="2024-01-01")
        res["verificationStatus"] = {"coding": [{"code": status}]}
        return res

    assert _state(mi("provisional")).clinical_ascvd is None
    assert _state(mi("confirmed")).clinical_ascvd is not None
