"""What one dosing decision produced, and the shapes it leaves in: the CLI's JSON
(`DosingResult.to_dict`) and the audit record's inputs (`DosingResult.inputs_json`).

`recommend` builds these; the card, the CLI, the app and the audit read them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from twin_engine.pk.estimate import Posterior, Timeline
from twin_engine.pk.regimen import RegimenPrediction
from twin_engine.pk.types import Covariates


@dataclass(frozen=True, slots=True)
class IndividualParameters:
    """MAP individual PK parameters."""

    cl_l_h: float
    vc_l: float
    q_l_h: float
    vp_l: float


@dataclass(frozen=True, slots=True)
class FittedLevel:
    """A measured level beside the MAP prediction at its time."""

    time: datetime
    observed_mg_l: float
    predicted_mg_l: float
    kind: str
    source: str


@dataclass(frozen=True, slots=True)
class NextDose:
    """The next dose of the recommended regimen (MAP): due at `start`, when the predicted
    level has fallen to that regimen's steady-state trough; the amount reaches the target's
    middle over one interval, within the maintenance ceiling."""

    start: datetime
    amount_mg: float
    rounded_mg: float
    duration_h: float
    target_auc_mg_h_l: float
    level_at_start_mg_l: float | None = None


@dataclass(frozen=True, slots=True)
class DosingResult:
    """Everything the card, the CLI and the audit need about one dosing decision."""

    model_id: str
    model_name: str
    model_version: str
    as_of: datetime
    covariates: Covariates
    individual_parameters: IndividualParameters
    eta: tuple[tuple[str, float], ...]
    a_priori: bool
    levels: tuple[FittedLevel, ...]
    current_regimen: RegimenPrediction | None
    recommendations: tuple[RegimenPrediction, ...]
    next_dose: NextDose | None
    target_auc: tuple[float, float]
    n_samples: int
    notes: tuple[str, ...]
    # The fit itself, for simulating concentration curves (the app's dose simulator).
    timeline: Timeline | None = field(default=None, repr=False, compare=False)
    posterior: Posterior | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": {"id": self.model_id, "name": self.model_name, "version": self.model_version},
            "as_of": self.as_of.isoformat(),
            "a_priori": self.a_priori,
            "target_auc_mg_h_l": list(self.target_auc),
            "covariates": {
                "weight_kg": _r(self.covariates.weight_kg),
                "crcl_ml_min": _r(self.covariates.crcl_ml_min),
                "creatinine_mg_dl": _r(self.covariates.creatinine_mg_dl),
                "age": _r(self.covariates.age),
                "sex": self.covariates.sex,
                "dialysis": self.covariates.dialysis,
                "sources": {
                    "weight": self.covariates.weight_source,
                    "creatinine": self.covariates.creatinine_source,
                    "dialysis": self.covariates.dialysis_source,
                },
                "measured_at": {
                    "weight": _iso(self.covariates.weight_time),
                    "creatinine": _iso(self.covariates.creatinine_time),
                },
            },
            "individual_parameters": {
                "cl_l_h": _r(self.individual_parameters.cl_l_h),
                "vc_l": _r(self.individual_parameters.vc_l),
                "q_l_h": _r(self.individual_parameters.q_l_h),
                "vp_l": _r(self.individual_parameters.vp_l),
            },
            "eta": {name: _r(value, 5) for name, value in self.eta},
            "levels": [
                {
                    "time": lv.time.isoformat(),
                    "kind": lv.kind,
                    "observed_mg_l": _r(lv.observed_mg_l),
                    "fitted_mg_l": _r(lv.predicted_mg_l),
                    "source": lv.source,
                }
                for lv in self.levels
            ],
            "current_regimen": None
            if self.current_regimen is None
            else _prediction(self.current_regimen),
            "recommendation": [_prediction(p) for p in self.recommendations],
            "next_dose": None
            if self.next_dose is None
            else {
                "start": self.next_dose.start.isoformat(),
                "amount_mg": _r(self.next_dose.amount_mg),
                "rounded_mg": self.next_dose.rounded_mg,
                "duration_h": self.next_dose.duration_h,
                "target_auc_mg_h_l": self.next_dose.target_auc_mg_h_l,
                "predicted_level_at_start_mg_l": None
                if self.next_dose.level_at_start_mg_l is None
                else _r(self.next_dose.level_at_start_mg_l),
            },
            "posterior_samples": self.n_samples,
            "notes": list(self.notes),
        }

    def inputs_json(self) -> list[dict[str, object]]:
        """The inputs the dose rests on, in the shape risk records use (name, value, unit,
        time, sources), so a dosing audit record says what it was computed from."""
        cov = self.covariates

        def item(
            name: str, value: object, unit: str | None, when: datetime | None, source: str
        ) -> dict[str, object]:
            return {
                "name": name,
                "value": value,
                "unit": unit,
                "time": _iso(when),
                "sources": [source] if source else [],
            }

        rows = [
            item("weight", _r(cov.weight_kg), "kg", cov.weight_time, cov.weight_source),
            item(
                "creatinine",
                _r(cov.creatinine_mg_dl),
                "mg/dL",
                cov.creatinine_time,
                cov.creatinine_source,
            ),
            item("crcl", _r(cov.crcl_ml_min), "mL/min", None, "Cockcroft-Gault"),
            item("age", _r(cov.age), "a", None, ""),
            item("sex", cov.sex, None, None, ""),
            item("dialysis", cov.dialysis, None, None, cov.dialysis_source),
        ]
        rows += [
            item("vancomycin level", _r(lv.observed_mg_l), "mg/L", lv.time, lv.source)
            for lv in self.levels
        ]
        if self.timeline is not None:
            rows.append(item("vancomycin doses", int(self.timeline.doses.shape[0]), None, None, ""))
        if self.current_regimen is not None:
            rows.append(
                item("regimen assessed", self.current_regimen.regimen.describe(), None, None, "")
            )
        return rows

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def _r(value: float, digits: int = 2) -> float:
    return round(float(value), digits)


def _prediction(p: RegimenPrediction) -> dict[str, Any]:
    reg = p.regimen
    return {
        "regimen": {
            "dose_mg": reg.dose_mg,
            "interval_h": reg.interval_h,
            "infusion_h": reg.infusion_h,
            "loading_dose_mg": reg.loading_dose_mg,
            "description": reg.describe(),
        },
        "auc24_mg_h_l": _r(p.auc24_ss_mg_h_l, 1),
        "auc24_90pct_interval": [_r(p.auc24_ss_low, 1), _r(p.auc24_ss_high, 1)],
        "probability_in_target": _r(p.probability_in_target, 3),
        "probability_above_target": _r(p.probability_above_target, 3),
        "predicted_peak_mg_l": None if p.peak_ss_mg_l is None else _r(p.peak_ss_mg_l, 1),
        "predicted_trough_mg_l": None if p.trough_ss_mg_l is None else _r(p.trough_ss_mg_l, 1),
        "auc24_first_day_mg_h_l": None
        if p.auc24_first_day_mg_h_l is None
        else _r(p.auc24_first_day_mg_h_l, 1),
        "probability_first_day_in_target": None
        if p.probability_first_day_in_target is None
        else _r(p.probability_first_day_in_target, 3),
    }


__all__ = ["DosingResult", "FittedLevel", "IndividualParameters", "NextDose"]
