"""Derived features: staleness, plausibility, missing data, codes, as-of cut-off."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest

from tests.support.fhir import (
    ICD10,
    SNOMED,
    bp,
    bundle,
    condition,
    med_request,
    obs,
    patient,
    smoking,
)
from twin_engine import FEATURE_NAMES, build_twin_from_fhir, derive_features
from twin_engine.egfr import ckd_epi_2021
from twin_engine.features import Feature


def _feature(name: str, as_of: date, *resources: dict[str, Any], **patient_kw: Any) -> Feature:
    twin = build_twin_from_fhir(bundle(patient(**patient_kw), *resources))
    return derive_features(twin, as_of).get(name)


@pytest.mark.parametrize(
    ("name", "loinc", "unit", "window_days"),
    [
        ("systolic_bp_mm_hg", "8480-6", "mm[Hg]", 365),
        ("total_cholesterol_mg_dl", "2093-3", "mg/dL", 5 * 365),
        ("hdl_cholesterol_mg_dl", "2085-9", "mg/dL", 5 * 365),
        ("creatinine_mg_dl", "2160-0", "mg/dL", 365),
        ("hba1c_percent", "4548-4", "%", 365),
        ("weight_kg", "29463-7", "kg", 365),
    ],
)
def test_values_older_than_their_window_are_stale_but_usable(
    name: str, loinc: str, unit: str, window_days: int
) -> None:
    """A value is ok up to its staleness window and stale (still usable) after it."""
    value = {"2160-0": 1.5, "4548-4": 6.0}.get(loinc, 80)
    o = obs("o", loinc, value, unit, "2020-01-01T00:00:00Z")
    inside = _feature(name, date.fromordinal(date(2020, 1, 1).toordinal() + window_days - 1), o)
    outside = _feature(name, date.fromordinal(date(2020, 1, 1).toordinal() + window_days + 1), o)
    assert inside.quality == "ok"
    assert outside.quality == "stale"
    assert outside.usable
    assert "older than" in outside.note


@pytest.mark.parametrize(
    ("name", "loinc", "value", "unit"),
    [
        ("systolic_bp_mm_hg", "8480-6", 30, "mm[Hg]"),
        ("systolic_bp_mm_hg", "8480-6", 400, "mm[Hg]"),
        ("total_cholesterol_mg_dl", "2093-3", 20, "mg/dL"),
        ("hdl_cholesterol_mg_dl", "2085-9", 250, "mg/dL"),
        # 150 umol/L mislabelled as mg/dL: the classic unit error.
        ("creatinine_mg_dl", "2160-0", 150, "mg/dL"),
        ("creatinine_mg_dl", "2160-0", 0.01, "mg/dL"),
    ],
)
def test_implausible_latest_value_makes_the_feature_implausible(
    name: str, loinc: str, value: float, unit: str
) -> None:
    """The latest value decides: implausible means no value and a note with the raw value."""
    older_ok = obs("old", loinc, 1.0 if loinc == "2160-0" else 100, unit, "2023-01-01")
    latest = obs("new", loinc, value, unit, "2024-01-01")
    feature = _feature(name, date(2024, 6, 1), older_ok, latest)
    assert feature.quality == "implausible"
    assert feature.value is None
    assert feature.sources == ("Observation/new",)
    assert f"{value:g}" in feature.note


def test_unknown_unit_latest_value_is_not_used() -> None:
    """A latest value in an unknown unit gives quality unit_unknown and no value."""
    feature = _feature(
        "total_cholesterol_mg_dl",
        date(2024, 6, 1),
        obs("old", "2093-3", 200, "mg/dL", "2023-01-01"),
        obs("new", "2093-3", 2.0, "g/L", "2024-01-01"),
    )
    assert (feature.quality, feature.value, feature.unit) == ("unit_unknown", None, "g/L")
    assert "Observation/new has unit 'g/L'" in feature.note


@pytest.mark.parametrize(
    ("name", "expected_note"),
    [
        ("total_cholesterol_mg_dl", "no Observation with LOINC 2093-3 on or before 2025-01-01"),
        ("systolic_bp_mm_hg", "no Observation with LOINC 8480-6 on or before 2025-01-01"),
        (
            "ldl_cholesterol_mg_dl",
            "no Observation with LOINC 13457-7 or 18262-6 or 2089-1 on or before 2025-01-01",
        ),
        ("current_smoker", "no Observation with LOINC 72166-2 on or before 2025-01-01"),
    ],
)
def test_missing_features_say_what_was_looked_for(name: str, expected_note: str) -> None:
    """A missing feature has no value and names the codes and the date."""
    feature = _feature(name, date(2025, 1, 1))
    assert (feature.value, feature.quality, feature.note) == (None, "missing", expected_note)


def test_data_after_as_of_is_ignored() -> None:
    """Only observations on or before as_of count; a date means the end of that day."""
    resources = (
        obs("a", "2093-3", 180, "mg/dL", "2023-01-01T10:00:00Z"),
        obs("b", "2093-3", 220, "mg/dL", "2024-01-01T23:00:00Z"),
    )
    assert _feature("total_cholesterol_mg_dl", date(2023, 12, 31), *resources).value == 180
    assert _feature("total_cholesterol_mg_dl", date(2024, 1, 1), *resources).value == 220
    twin = build_twin_from_fhir(bundle(patient(), *resources))
    at_noon = derive_features(twin, datetime(2024, 1, 1, 12, 0)).get("total_cholesterol_mg_dl")
    assert at_noon.value == 180


def test_blood_pressure_comes_from_panel_components() -> None:
    """SBP and DBP are read from the components of a BP panel, same source."""
    fs = derive_features(
        build_twin_from_fhir(bundle(patient(), bp("panel", 142, 91))), date(2024, 2, 1)
    )
    assert fs.get("systolic_bp_mm_hg").value == 142
    assert fs.get("diastolic_bp_mm_hg").value == 91
    assert fs.get("systolic_bp_mm_hg").sources == ("Observation/panel",)
    assert fs.get("systolic_bp_mm_hg").unit == "mm[Hg]"


@pytest.mark.parametrize(
    ("code", "value", "quality"),
    [
        ("449868002", 1.0, "ok"),
        ("428041000124106", 1.0, "ok"),
        ("77176002", 1.0, "ok"),
        ("65568007", 1.0, "ok"),
        ("428071000124103", 1.0, "ok"),
        ("428061000124105", 1.0, "ok"),
        ("8517006", 0.0, "ok"),
        ("266919005", 0.0, "ok"),
        ("266927001", None, "missing"),
        ("999999999", None, "missing"),
    ],
)
def test_smoking_status_codes(code: str, value: float | None, quality: str) -> None:
    """SNOMED smoking codes map to current (1), former/never (0) or missing."""
    feature = _feature("current_smoker", date(2024, 6, 1), smoking("s", code))
    assert (feature.value, feature.quality) == (value, quality)
    assert feature.sources == ("Observation/s",)


def test_smoking_status_older_than_two_years_is_stale() -> None:
    """Smoking status has a two-year window."""
    feature = _feature("current_smoker", date(2026, 2, 1), smoking("s", "449868002"))
    assert (feature.value, feature.quality) == (1.0, "stale")


def test_egfr_is_computed_from_creatinine_when_not_measured() -> None:
    """With only creatinine, eGFR is CKD-EPI 2021 at the creatinine's age and sex."""
    creat = obs("cr", "2160-0", 1.2, "mg/dL", "2024-01-01")
    feature = _feature("egfr_ml_min_1_73m2", date(2024, 6, 1), creat, birth="1970-06-15")
    assert feature.value == pytest.approx(ckd_epi_2021(1.2, 53, female=True))
    assert feature.sources == ("Observation/cr", "Patient/p1")
    assert feature.note.startswith("computed by CKD-EPI 2021")


def test_measured_egfr_wins_when_at_least_as_recent() -> None:
    """A measured eGFR as recent as the creatinine is used as measured."""
    creat = obs("cr", "2160-0", 1.2, "mg/dL", "2024-01-01")
    measured = obs("eg", "98979-8", 55, "mL/min/{1.73_m2}", "2024-01-01")
    older = obs("eg0", "98979-8", 80, "mL/min/{1.73_m2}", "2023-01-01")
    both = _feature("egfr_ml_min_1_73m2", date(2024, 6, 1), creat, measured)
    assert (both.value, both.sources) == (55, ("Observation/eg",))
    assert both.note == "measured eGFR (LOINC 98979-8)"
    stale_measure = _feature("egfr_ml_min_1_73m2", date(2024, 6, 1), creat, older)
    assert stale_measure.note.startswith("computed by CKD-EPI 2021")


def test_egfr_needs_sex_and_adulthood() -> None:
    """No sex or a child: eGFR is missing with a reason."""
    creat = obs("cr", "2160-0", 0.5, "mg/dL", "2024-01-01")
    no_sex = _feature("egfr_ml_min_1_73m2", date(2024, 6, 1), creat, gender="unknown")
    child = _feature("egfr_ml_min_1_73m2", date(2024, 6, 1), creat, birth="2015-01-01")
    assert no_sex.quality == child.quality == "missing"
    assert "female/male" in no_sex.note
    assert "adults" in child.note


@pytest.mark.parametrize(
    ("gender", "race", "female", "african_american"),
    [
        ("female", ["2054-5"], 1.0, 1.0),
        ("male", ["2106-3"], 0.0, 0.0),
        ("male", [], 0.0, 0.0),  # race extension present, no OMB code: recorded, not Black
        ("other", None, None, None),
        (None, None, None, None),
    ],
)
def test_sex_and_race_features(
    gender: str | None, race: list[str] | None, female: float | None, african_american: float | None
) -> None:
    """female and african_american follow gender and the US Core race extension."""
    twin = build_twin_from_fhir(bundle(patient(gender=gender, race=race)))
    fs = derive_features(twin, date(2024, 1, 1))
    assert fs.get("female").value == female
    assert fs.get("african_american").value == african_american
    if race is None:
        assert fs.get("african_american").note == "Patient/p1 has no US Core race extension"


def test_age_in_completed_years_and_missing_birth_date() -> None:
    """Age counts completed years on the as-of date."""
    assert _feature("age_years", date(2024, 6, 14)).value == 53
    assert _feature("age_years", date(2024, 6, 15)).value == 54
    assert _feature("age_years", date(2024, 6, 15), birth=None).quality == "missing"
    assert _feature("age_years", date(2024, 6, 15), birth="1850-01-01").quality == "implausible"


@pytest.mark.parametrize(
    ("meds", "as_of", "expected"),
    [
        ([med_request("m", "314076", "lisinopril 10 MG Oral Tablet")], date(2024, 1, 1), 1.0),
        ([med_request("m", "314076", authored="2025-01-01")], date(2024, 1, 1), 0.0),
        ([med_request("m", "314076", status="stopped")], date(2024, 1, 1), 0.0),
        ([med_request("m", "312961", "simvastatin 20 MG")], date(2024, 1, 1), 0.0),
        ([], date(2024, 1, 1), 0.0),
    ],
)
def test_treated_hypertension(meds: list[dict[str, Any]], as_of: date, expected: float) -> None:
    """Treated hypertension needs an active antihypertensive authored by as_of."""
    feature = _feature("treated_hypertension", as_of, *meds)
    assert (feature.value, feature.quality) == (expected, "ok")
    assert feature.sources == (("MedicationRequest/m",) if expected else ())


@pytest.mark.parametrize(
    ("resources", "value", "note_start"),
    [
        ([condition("c", SNOMED, "44054006")], 1.0, "active diabetes condition"),
        ([condition("c", ICD10, "E11.9")], 1.0, "active diabetes condition"),
        ([condition("c", SNOMED, "44054006", onset="2025-01-01")], 0.0, "no diabetes"),
        ([condition("c", SNOMED, "44054006", status="resolved")], 0.0, "no diabetes"),
        ([condition("c", SNOMED, "44054006", abatement="2023-01-01")], 0.0, "no diabetes"),
        ([condition("c", SNOMED, "15777000")], 0.0, "no diabetes"),  # prediabetes
        ([obs("a1c", "4548-4", 6.8, "%", "2023-06-01")], 0.0, "one HbA1c 6.8%"),
        (
            [
                obs("a1", "4548-4", 6.6, "%", "2010-06-01"),
                obs("a2", "4548-4", 6.8, "%", "2023-06-01"),
            ],
            1.0,
            "two HbA1c >= 6.5%",
        ),
        (  # an old high value and a recent normal one: not diabetes (review finding)
            [
                obs("a1", "4548-4", 6.6, "%", "2010-06-01"),
                obs("a2", "4548-4", 5.2, "%", "2023-06-01"),
            ],
            0.0,
            "one HbA1c 6.6%",
        ),
        ([obs("a1c", "4548-4", 6.4, "%", "2023-06-01")], 0.0, "no diabetes"),
        ([], 0.0, "no diabetes condition recorded"),
    ],
)
def test_diabetes(resources: list[dict[str, Any]], value: float, note_start: str) -> None:
    """Diabetes from an active condition by as_of, or two HbA1c >= 6.5%, else 0.0."""
    feature = _feature("diabetes", date(2024, 1, 1), *resources)
    assert (feature.value, feature.quality) == (value, "ok")
    assert feature.note.startswith(note_start)


def test_every_feature_is_always_present() -> None:
    """An empty twin still yields every named feature, so models can bind to them."""
    fs = derive_features(build_twin_from_fhir(patient()), date(2024, 1, 1))
    assert tuple(fs.features) == FEATURE_NAMES
    with pytest.raises(KeyError, match="no feature 'nope'"):
        fs.get("nope")
