"""Bad inputs: a clear message naming the resource and the missing fact, and no number."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from onnx_models.pk import BUELGA_2005, GOTI_2018, OnnxPkSimulator
from tests.support.vancomycin import T0, administration, base_record, observation
from twin_engine.errors import TwinEngineError
from twin_engine.pk import (
    DoseRecordError,
    DosingError,
    ImplausibleLevelError,
    LevelBeforeFirstDoseError,
    LevelsWithoutDosesError,
    MissingCovariateError,
    recommend,
)

Edit = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


def _without(*ids: str) -> Edit:
    return lambda res: [r for r in res if r.get("id") not in ids]


def _plus(*extra: dict[str, Any]) -> Edit:
    return lambda res: [*res, *extra]


CASES: list[Any] = [
    pytest.param(
        _without("ma1", "ma2"),
        LevelsWithoutDosesError,
        ["Observation/lvl1", "no vancomycin MedicationAdministration"],
        id="levels-without-doses",
    ),
    pytest.param(
        _plus(observation("early", "20578-1", 5.0, "mg/L", -1)),
        LevelBeforeFirstDoseError,
        ["Observation/early", "before the first", "MedicationAdministration/ma1"],
        id="level-before-first-dose",
    ),
    pytest.param(
        _plus(observation("huge", "20578-1", 180.0, "mg/L", 30)),
        ImplausibleLevelError,
        ["Observation/huge", "plausible range"],
        id="level-above-150",
    ),
    pytest.param(
        _plus(observation("zero", "20578-1", 0.0, "mg/L", 30)),
        ImplausibleLevelError,
        ["Observation/zero", "plausible range"],
        id="level-zero",
    ),
    pytest.param(
        _plus(observation("lt", "20578-1", 4.0, "mg/L", 30, comparator="<")),
        ImplausibleLevelError,
        ["Observation/lt", "censored"],
        id="level-censored",
    ),
    pytest.param(
        _plus(observation("gl", "20578-1", 4.0, "g/L", 30)),
        ImplausibleLevelError,
        ["Observation/gl", "not mg/L"],
        id="level-unit",
    ),
    pytest.param(
        _without("wt"),
        MissingCovariateError,
        ["Patient/p1", "body weight", "29463-7"],
        id="missing-weight",
    ),
    pytest.param(
        _without("scr"),
        MissingCovariateError,
        ["Patient/p1", "serum creatinine", "2160-0"],
        id="missing-creatinine",
    ),
    pytest.param(
        _plus(administration("nodur", 36, 1000, duration_h=None)),
        DoseRecordError,
        ["MedicationAdministration/nodur", "duration is unknown"],
        id="dose-without-duration",
    ),
    pytest.param(
        _plus(administration("ml", 36, 200, unit="mL")),
        DoseRecordError,
        ["MedicationAdministration/ml", "not mg or g"],
        id="dose-unit",
    ),
]


@pytest.mark.parametrize(("edit", "error", "phrases"), CASES)
def test_bad_input_is_refused_with_a_clear_message(
    goti_sim: OnnxPkSimulator, edit: Edit, error: type[DosingError], phrases: list[str]
) -> None:
    """Each bad record raises its DosingError; the message names it and gives no dose."""
    with pytest.raises(error) as info:
        recommend(
            edit(base_record()),
            as_of=T0 + timedelta(hours=48),
            model=GOTI_2018,
            simulator=goti_sim,
        )
    message = str(info.value)
    for phrase in phrases:
        assert phrase in message
    assert isinstance(info.value, TwinEngineError)
    assert not re.search(r"\d+\s*mg every|\bmg q\d", message)


def test_caller_may_state_dialysis_false(goti_sim: OnnxPkSimulator) -> None:
    """With nothing recorded, dialysis=False from the caller lets the dose be computed."""
    result = recommend(
        _without("dx")(base_record()),
        as_of=T0 + timedelta(hours=48),
        model=GOTI_2018,
        simulator=goti_sim,
        dialysis=False,
    )
    assert result.covariates.dialysis is False
    assert result.covariates.dialysis_source == "stated by the caller"


def test_models_without_dialysis_patients_refuse_them(
    simulators: dict[str, OnnxPkSimulator],
) -> None:
    """Buelga 2005 excluded dialysis; a dialysis patient is refused, not extrapolated."""
    with pytest.raises(DosingError, match="not developed in patients on dialysis"):
        recommend(
            base_record(dialysis=True),
            as_of=T0 + timedelta(hours=48),
            model=BUELGA_2005,
            simulator=simulators[BUELGA_2005.id],
        )
