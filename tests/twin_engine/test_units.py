"""Unit conversion table: each row is value + unit -> canonical value, or unknown."""

from __future__ import annotations

import pytest

from twin_engine.codes import QuantityName
from twin_engine.units import UNIT_TABLE, normalise


@pytest.mark.parametrize(
    ("quantity", "value", "code", "unit", "expected", "canonical"),
    [
        ("total_cholesterol", 200.0, "mg/dL", "mg/dL", 200.0, "mg/dL"),
        ("total_cholesterol", 5.0, "mmol/L", "mmol/L", 193.35, "mg/dL"),
        ("hdl_cholesterol", 1.0, "mmol/L", None, 38.67, "mg/dL"),
        ("ldl_cholesterol", 3.0, "mmol/L", None, 116.01, "mg/dL"),
        ("triglycerides", 2.0, "mmol/L", None, 177.14, "mg/dL"),
        ("creatinine", 88.4, "umol/L", None, 1.0, "mg/dL"),
        ("creatinine", 176.8, None, "µmol/L", 2.0, "mg/dL"),
        ("uacr", 3.0, "mg/mmol", None, 26.52, "mg/g"),
        ("uacr", 3.0, "g/mol", None, 26.52, "mg/g"),
        ("uacr", 30.0, "mg/g", None, 30.0, "mg/g"),
        ("hba1c", 48.0, "mmol/mol", None, 6.54304, "%"),
        ("weight", 220.0, "[lb_av]", None, 99.7903214, "kg"),
        ("weight", 1500.0, "g", None, 1.5, "kg"),
        ("height", 70.0, "[in_i]", None, 177.8, "cm"),
        ("height", 1.8, "m", None, 180.0, "cm"),
        ("temperature", 98.6, "[degF]", None, 37.0, "Cel"),
        ("temperature", 212.0, None, "°F", 100.0, "Cel"),
        ("systolic_bp", 120.0, "mm[Hg]", "mmHg", 120.0, "mm[Hg]"),
        ("systolic_bp", 120.0, None, "mmHg", 120.0, "mm[Hg]"),
        ("heart_rate", 80.0, "/min", "beats/minute", 80.0, "/min"),
        ("egfr", 60.0, "mL/min/{1.73_m2}", None, 60.0, "mL/min/{1.73_m2}"),
        ("vancomycin", 15.0, "ug/mL", None, 15.0, "mg/L"),
        # The UCUM code decides when present and known, whatever the printed unit says.
        ("creatinine", 88.4, "umol/L", "mg/dL", 1.0, "mg/dL"),
    ],
)
def test_known_units_convert_to_the_canonical_unit(
    quantity: QuantityName,
    value: float,
    code: str | None,
    unit: str | None,
    expected: float,
    canonical: str,
) -> None:
    """A listed source unit converts by its cited factor into the canonical unit."""
    result = normalise(quantity, value, code, unit)
    assert result.known
    assert result.unit == canonical
    assert result.value == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    ("quantity", "value", "code", "unit"),
    [
        ("total_cholesterol", 200.0, "mg/L", None),
        ("creatinine", 1.0, "mmol/L", None),
        ("egfr", 60.0, "mL/min", "mL/min"),  # not normalised to 1.73 m2 (seen in Synthea)
        ("weight", 70.0, "stone", None),
        ("hba1c", 6.5, "g/dL", None),
        ("systolic_bp", 16.0, "kPa", None),
        ("height", 170.0, None, None),
    ],
)
def test_unknown_units_are_flagged_and_keep_the_raw_value(
    quantity: QuantityName, value: float, code: str | None, unit: str | None
) -> None:
    """An unlisted unit is reported unknown and the raw value is not converted."""
    result = normalise(quantity, value, code, unit)
    assert not result.known
    assert result.value == value
    assert result.unit == (code or unit or "")


def test_every_rule_accepts_its_own_canonical_unit() -> None:
    """The canonical unit of each quantity converts with factor 1."""
    for quantity, rule in UNIT_TABLE.items():
        result = normalise(quantity, 42.0, rule.canonical, None)
        assert result.known and result.value == 42.0, quantity
