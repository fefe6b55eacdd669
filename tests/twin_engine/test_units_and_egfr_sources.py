"""A UCUM code decides the unit alone; only a CKD-EPI 2021 eGFR stands in for our own."""

from __future__ import annotations

from datetime import date

import pytest

from tests.support.fhir import bundle, obs, patient
from twin_engine import build_twin_from_fhir, derive_features
from twin_engine.units import normalise as normalise_unit


@pytest.mark.parametrize(
    ("quantity", "code", "unit", "known"),
    [
        ("egfr", "mL/min", "mL/min/1.73m2", False),  # the code says no normalisation
        ("uacr", "mg/L", "mg/g", False),  # a concentration is not a ratio
        ("total_cholesterol", "mg/dL", "mmol/L", True),  # the code wins over the text
        ("total_cholesterol", None, "mg/dL", True),  # no code: the printed unit is read
        ("total_cholesterol", None, "furlongs", False),
    ],
)
def test_the_code_decides_and_the_text_only_without_one(
    quantity: str, code: str | None, unit: str | None, known: bool
) -> None:
    """A UCUM code we do not know is an unknown unit whatever the printed text says."""
    assert normalise_unit(quantity, 100.0, code, unit).known is known  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("loinc", "used_measured"),
    [("98979-8", True), ("48642-3", False), ("33914-3", False), ("62238-1", False)],
)
def test_only_ckd_epi_2021_measured_egfr_is_used(loinc: str, used_measured: bool) -> None:
    """MDRD and CKD-EPI 2009 carry race: the twin computes CKD-EPI 2021 from creatinine."""
    when = "2024-01-01T09:00:00Z"
    twin = build_twin_from_fhir(
        bundle(
            patient(gender="male", birth="1964-01-01"),
            obs("cr", "2160-0", 1.2, "mg/dL", when),
            obs("eg", loinc, 75, "mL/min/{1.73_m2}", when),
        )
    )
    feature = derive_features(twin, date(2024, 2, 1)).get("egfr_ml_min_1_73m2")
    if used_measured:
        assert feature.value == 75
        assert feature.sources == ("Observation/eg",)
    else:
        assert feature.value != 75
        assert "Observation/cr" in feature.sources
        assert f"LOINC {loinc} is not CKD-EPI 2021" in feature.note
