"""The one FHIR R4 Dosage/Timing reader: every repeat shape, codes, rates, routes, refusals."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from twin_engine.fhir.dosage import (
    GTS_ABBREVIATION,
    SNOMED,
    DosageError,
    planned_times,
    read_administration_dosage,
    read_request_dosage,
    read_timing,
)

W = "MedicationRequest/x"


def _code(code: str) -> dict[str, Any]:
    return {"coding": [{"system": GTS_ABBREVIATION, "code": code}]}


@pytest.mark.parametrize(
    ("timing", "interval_h"),
    [
        pytest.param({"repeat": {"period": 12, "periodUnit": "h"}}, 12.0, id="period-12h"),
        pytest.param(
            {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}}, 12.0, id="twice-daily"
        ),
        pytest.param(
            {"repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}}, 8.0, id="three-daily"
        ),
        pytest.param({"repeat": {"period": 1, "periodUnit": "d"}}, 24.0, id="daily-no-frequency"),
        pytest.param({"repeat": {"period": 720, "periodUnit": "min"}}, 12.0, id="minutes"),
        pytest.param({"repeat": {"period": 2, "periodUnit": "d"}}, 48.0, id="every-2-days"),
        pytest.param(
            {"repeat": {"frequency": 7, "period": 1, "periodUnit": "wk"}}, 24.0, id="weekly-7"
        ),
        pytest.param(
            {"repeat": {"frequency": 2, "frequencyMax": 2, "period": 1, "periodUnit": "d"}},
            12.0,
            id="max-equal-is-no-range",
        ),
        pytest.param({"repeat": {"timeOfDay": ["08:00:00", "20:00:00"]}}, 12.0, id="time-of-day"),
        pytest.param(
            {"repeat": {"period": 1, "periodUnit": "d", "timeOfDay": ["06:00:00", "18:00:00"]}},
            12.0,
            id="time-of-day-daily",
        ),
        pytest.param({"code": _code("BID")}, 12.0, id="code-BID"),
        pytest.param({"code": _code("Q12H")}, 12.0, id="code-Q12H"),
        pytest.param({"code": _code("TID")}, 8.0, id="code-TID"),
        pytest.param({"code": _code("QID")}, 6.0, id="code-QID"),
        pytest.param({"code": _code("Q8H")}, 8.0, id="code-Q8H"),
        pytest.param({"code": _code("QD")}, 24.0, id="code-QD"),
        pytest.param({"code": _code("QOD")}, 48.0, id="code-QOD"),
        pytest.param(
            {"code": _code("BID"), "repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
            12.0,
            id="code-and-repeat-agree",
        ),
    ],
)
def test_every_timing_shape_gives_its_interval(timing: dict[str, Any], interval_h: float) -> None:
    """Frequency per period, timeOfDay and GTS abbreviations all give the dosing interval."""
    assert read_timing(timing, W).interval_h == pytest.approx(interval_h)


@pytest.mark.parametrize(
    ("timing", "phrase"),
    [
        pytest.param({"repeat": {"period": 12, "periodUnit": "hr"}}, "'hr'", id="hr-not-ucum"),
        pytest.param({"repeat": {"period": 12}}, "None", id="no-unit"),
        pytest.param({"repeat": {"period": 1, "periodUnit": "mo"}}, "'mo'", id="month"),
        pytest.param(
            {"repeat": {"period": 8, "periodMax": 12, "periodUnit": "h"}}, "ambiguous", id="range"
        ),
        pytest.param(
            {"repeat": {"frequency": 2, "frequencyMax": 3, "period": 1, "periodUnit": "d"}},
            "ambiguous",
            id="frequency-range",
        ),
        pytest.param(
            {"code": _code("BID"), "repeat": {"period": 8, "periodUnit": "h"}},
            "ambiguous",
            id="code-disagrees",
        ),
        pytest.param(
            {"repeat": {"frequency": 3, "period": 1, "periodUnit": "d", "timeOfDay": ["08:00:00"]}},
            "ambiguous",
            id="frequency-vs-times",
        ),
        pytest.param({"code": {"text": "twice a day"}}, "free text", id="code-text-only"),
        pytest.param({"repeat": {"period": -12, "periodUnit": "h"}}, "positive", id="negative"),
    ],
)
def test_ambiguous_or_nonstandard_timing_is_refused(timing: dict[str, Any], phrase: str) -> None:
    """A range, a conflict or a unit outside the standard is named, never guessed."""
    with pytest.raises(DosageError, match=W) as info:
        read_timing(timing, W)
    assert phrase in str(info.value)


def test_when_without_clock_times_is_noted() -> None:
    """`when` (daily events) gives no clock time: read evenly spaced and said so."""
    timing = read_timing(
        {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d", "when": ["MORN", "EVE"]}}, W
    )
    assert timing.interval_h == 12.0
    assert any("MORN, EVE" in n for n in timing.notes)


def test_time_of_day_places_the_planned_doses() -> None:
    """timeOfDay 08:00 and 20:00 from a 10:00 start: 20:00, then 08:00 and 20:00; count caps."""
    timing = read_timing(
        {"repeat": {"timeOfDay": ["08:00:00", "20:00:00"], "count": 3}},
        W,
    )
    start = datetime(2024, 3, 1, 10, tzinfo=UTC)
    times, skipped = planned_times(timing, start=start, end=datetime(2024, 3, 5, tzinfo=UTC))
    assert [t.isoformat() for t in times] == [
        "2024-03-01T20:00:00+00:00",
        "2024-03-02T08:00:00+00:00",
        "2024-03-02T20:00:00+00:00",
    ]
    assert skipped == 0


def test_bounds_and_count_are_read() -> None:
    """boundsPeriod start/end and count come through as typed values."""
    timing = read_timing(
        {
            "repeat": {
                "period": 12,
                "periodUnit": "h",
                "count": 4,
                "boundsPeriod": {"start": "2024-03-01T08:00:00Z", "end": "2024-03-03"},
            }
        },
        W,
    )
    assert timing.bounds_start == datetime(2024, 3, 1, 8, tzinfo=UTC)
    assert timing.bounds_end == datetime(2024, 3, 3, tzinfo=UTC)
    assert timing.count == 4


def _dosage(**dose_and_rate: Any) -> dict[str, Any]:
    return {
        "timing": {"repeat": {"period": 12, "periodUnit": "h"}},
        "doseAndRate": [{"doseQuantity": {"value": 1500, "code": "mg"}, **dose_and_rate}],
    }


@pytest.mark.parametrize(
    ("rate", "infusion_h"),
    [
        ({"rateQuantity": {"value": 1000, "code": "mg/h"}}, 1.5),
        ({"rateQuantity": {"value": 12.5, "code": "mg/min"}}, 2.0),
        (
            {
                "rateRatio": {
                    "numerator": {"value": 500, "code": "mg"},
                    "denominator": {"value": 30, "code": "min"},
                }
            },
            1.5,
        ),
    ],
)
def test_an_infusion_rate_gives_the_infusion_time(rate: dict[str, Any], infusion_h: float) -> None:
    """doseAndRate rate: infusion time = dose / rate."""
    assert read_request_dosage(_dosage(**rate), W).infusion_h == pytest.approx(infusion_h)


def test_a_volume_rate_is_refused() -> None:
    """mL/h needs the bag's concentration to give an infusion time: named, not guessed."""
    with pytest.raises(DosageError, match="mass rate"):
        read_request_dosage(_dosage(rateQuantity={"value": 250, "code": "mL/h"}), W)


def test_repeat_duration_wins_over_the_default() -> None:
    """timing.repeat.duration in UCUM gives the infusion time."""
    dosage = _dosage()
    dosage["timing"]["repeat"] |= {"duration": 90, "durationUnit": "min"}
    assert read_request_dosage(dosage, W).infusion_h == 1.5


@pytest.mark.parametrize(
    ("dosage_extra", "medication", "route"),
    [
        ({"route": {"coding": [{"system": SNOMED, "code": "47625008"}]}}, None, "intravenous"),
        ({"route": {"coding": [{"system": SNOMED, "code": "26643006"}]}}, None, "oral"),
        ({"route": {"coding": [{"system": SNOMED, "code": "37161004"}]}}, None, "rectal"),
        ({"route": {"coding": [{"system": SNOMED, "code": "72607000"}]}}, None, "intrathecal"),
        ({"route": {"text": "PO"}}, None, "oral"),
        ({}, {"text": "vancomycin 125 MG Oral Capsule"}, "oral"),
        ({}, {"text": "vancomycin 1000 MG Injection"}, "intravenous"),
        ({}, None, "unknown"),
    ],
)
def test_route_from_route_or_dose_form(
    dosage_extra: dict[str, Any], medication: dict[str, Any] | None, route: str
) -> None:
    """The route, else the dose form in the medication's name, says how it is given."""
    dosage = _dosage() | dosage_extra
    assert read_request_dosage(dosage, W, medication=medication).route == route


def test_an_oral_capsule_dose_unit_is_oral() -> None:
    """125 {capsule} (no route): oral, and no mass dose is demanded."""
    dosage = {
        "timing": {"repeat": {"frequency": 4, "period": 1, "periodUnit": "d"}},
        "doseAndRate": [{"doseQuantity": {"value": 1, "code": "{capsule}"}}],
    }
    read = read_request_dosage(dosage, W)
    assert (read.route, read.dose_mg) == ("oral", None)


def test_administration_rate_and_route() -> None:
    """MedicationAdministration.dosage: dose with rateRatio, route named."""
    read = read_administration_dosage(
        {
            "dose": {"value": 1, "code": "g"},
            "rateRatio": {
                "numerator": {"value": 1, "code": "g"},
                "denominator": {"value": 1, "code": "h"},
            },
            "route": {"coding": [{"system": SNOMED, "code": "47625008"}]},
        },
        "MedicationAdministration/a",
    )
    assert (read.dose_mg, read.rate_mg_h, read.infusion_h, read.route) == (
        1000.0,
        1000.0,
        1.0,
        "intravenous",
    )
