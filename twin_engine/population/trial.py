"""An in-silico trial on a population's twins: a policy's expected effect, with uncertainty.

Each treated patient's 10-year risk is the risk the service computed on their twin
(PREVENT 10-year ASCVD, the number the card's treatment response starts from); the
intervention scales it by the relative risk ``twin_engine.therapy`` derives from the
published trials (statin: CTT, Lancet 2010, per mmol/L LDL-C lowered; SBP: Ettehad,
Lancet 2016, per 10 mm Hg), so the point estimate is the sum of the patients' own
card what-ifs.

Expected events are sums of risks (each patient contributes a probability): without
= sum(r_i), with = sum(r_i * RR_i), averted = without - with, absolute risk reduction
ARR = averted / n treated, number needed to treat NNT = 1 / ARR over 10 years.

The 95% interval propagates the uncertainty of the published effect size: the rate
ratio per unit is drawn log-normally from its 95% confidence interval (log RR normal,
standard error = (log upper - log lower) / (2 x 1.96)), one draw shared by every
patient (it is one unknown constant of nature, not a per-patient noise), and the
2.5th and 97.5th percentiles of the draws' results are reported. The models' own
risk estimates are taken as given (their published uncertainty is not per patient).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np

from twin_engine.therapy import (
    CHOLESTEROL_MG_DL_PER_MMOL_L,
    CTT_RR_PER_MMOL_L,
    CTT_RR_PER_MMOL_L_CI95,
    ETTEHAD_RR_PER_10_MM_HG,
    ETTEHAD_RR_PER_10_MM_HG_CI95,
    LDL_REDUCTION_BY_INTENSITY,
    StatinIntensity,
    apply_therapy,
)

Intervention = Literal["statin-moderate", "statin-high", "sbp-130"]
INTERVENTIONS: Final[tuple[Intervention, ...]] = ("statin-moderate", "statin-high", "sbp-130")
#: SBP target of the sbp-130 arm: < 130 mm Hg (2017 ACC/AHA high blood pressure guideline,
#: Whelton et al., Hypertension 2018;71:e13, section 8.1.5), as on the cards.
SBP_TARGET_MM_HG: Final = 130.0
#: Two-sided 95% normal quantile.
Z_95: Final = 1.959963984540054


class TrialError(ValueError):
    """A trial that cannot be run as asked (unknown intervention, bad draws)."""


@dataclass(frozen=True, slots=True)
class TrialPatient:
    """What the trial needs of one patient's twin (as the population table holds it)."""

    risk_10y: float
    ldl_mg_dl: float | None
    sbp_mm_hg: float | None
    on_statin: bool


@dataclass(frozen=True, slots=True)
class Interval:
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class TrialResult:
    """Expected 10-year events with and without the intervention among the treated."""

    intervention: Intervention
    effect_source: str
    eligible: int
    treated: int
    excluded: dict[str, int]
    events_without: float
    events_with: float
    events_averted: float
    absolute_risk_reduction: float
    #: None when nothing is averted (NNT is infinite).
    number_needed_to_treat: float | None
    draws: int
    seed: int
    interval_events_averted: Interval | None
    interval_absolute_risk_reduction: Interval | None
    interval_number_needed_to_treat: Interval | None
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, object]:
        def iv(i: Interval | None) -> list[float] | None:
            return None if i is None else [i.low, i.high]

        return {
            "intervention": self.intervention,
            "effectSource": self.effect_source,
            "horizonYears": 10,
            "eligible": self.eligible,
            "treated": self.treated,
            "excluded": dict(self.excluded),
            "eventsWithout": self.events_without,
            "eventsWith": self.events_with,
            "eventsAverted": self.events_averted,
            "absoluteRiskReduction": self.absolute_risk_reduction,
            "numberNeededToTreat": self.number_needed_to_treat,
            "interval95": {
                "eventsAverted": iv(self.interval_events_averted),
                "absoluteRiskReduction": iv(self.interval_absolute_risk_reduction),
                "numberNeededToTreat": iv(self.interval_number_needed_to_treat),
            },
            "draws": self.draws,
            "seed": self.seed,
            "notes": list(self.notes),
        }


def _log_normal_draws(
    point: float, ci95: tuple[float, float], draws: int, rng: np.random.Generator
) -> np.ndarray:
    se = (math.log(ci95[1]) - math.log(ci95[0])) / (2 * Z_95)
    return np.exp(rng.normal(math.log(point), se, size=draws))


def _exclusion(p: TrialPatient, intervention: Intervention) -> str | None:
    """Why this eligible patient cannot be given the intervention, or None."""
    if not 0.0 <= p.risk_10y <= 1.0 or math.isnan(p.risk_10y):
        return "no 10-year risk"
    if intervention.startswith("statin"):
        if p.on_statin:
            return "already on a statin"
        if p.ldl_mg_dl is None or not p.ldl_mg_dl > 0:
            return "no usable LDL-C"
        return None
    if p.sbp_mm_hg is None:
        return "no usable SBP"
    if p.sbp_mm_hg <= SBP_TARGET_MM_HG:
        return "SBP already at or below 130 mm Hg"
    return None


def run_trial(
    patients: list[TrialPatient],
    intervention: Intervention,
    *,
    draws: int = 2000,
    seed: int = 2018,
) -> TrialResult:
    """Expected events, ARR and NNT of giving ``intervention`` to every eligible patient."""
    if intervention not in INTERVENTIONS:
        raise TrialError(
            f"unknown intervention {intervention!r}; one of {', '.join(INTERVENTIONS)}"
        )
    if draws < 0:
        raise TrialError(f"draws must be >= 0, got {draws}")
    excluded: Counter[str] = Counter()
    treated: list[TrialPatient] = []
    for p in patients:
        reason = _exclusion(p, intervention)
        if reason is None:
            treated.append(p)
        else:
            excluded[reason] += 1
    statin: StatinIntensity | None = None
    if intervention.startswith("statin"):
        statin = "moderate" if intervention == "statin-moderate" else "high"
        source = "CTT, Lancet 2010 (RR 0.78 per mmol/L LDL-C, 95% CI 0.76-0.80); " + (
            f"LDL-C lowered {LDL_REDUCTION_BY_INTENSITY[statin]:.0%} (Grundy 2019, Table 3)"
        )
    else:
        source = "Ettehad, Lancet 2016 (RR 0.80 per 10 mm Hg SBP, 95% CI 0.77-0.83)"
    # Point estimate: each patient's own what-if, by the code the cards use.
    risk = np.array([p.risk_10y for p in treated], dtype=np.float64)
    after = np.array(
        [
            apply_therapy(p.risk_10y, ldl_mg_dl=p.ldl_mg_dl, statin=statin).risk_after
            if statin is not None
            else apply_therapy(
                p.risk_10y, sbp_mm_hg=p.sbp_mm_hg, sbp_target_mm_hg=SBP_TARGET_MM_HG
            ).risk_after
            for p in treated
        ],
        dtype=np.float64,
    )
    n = len(treated)
    without, with_ = float(risk.sum()), float(after.sum())
    averted = without - with_
    arr = averted / n if n else 0.0
    nnt = 1.0 / arr if arr > 0 else None

    iv_averted = iv_arr = iv_nnt = None
    if n and draws:
        rng = np.random.default_rng(seed)
        if statin is not None:
            ldl = np.array([p.ldl_mg_dl for p in treated], dtype=np.float64)
            units = ldl * LDL_REDUCTION_BY_INTENSITY[statin] / CHOLESTEROL_MG_DL_PER_MMOL_L
            rr_unit = _log_normal_draws(CTT_RR_PER_MMOL_L, CTT_RR_PER_MMOL_L_CI95, draws, rng)
        else:
            sbp = np.array([p.sbp_mm_hg for p in treated], dtype=np.float64)
            units = np.maximum(0.0, sbp - SBP_TARGET_MM_HG) / 10.0
            rr_unit = _log_normal_draws(
                ETTEHAD_RR_PER_10_MM_HG, ETTEHAD_RR_PER_10_MM_HG_CI95, draws, rng
            )
        # events_with[d] = sum_i risk_i * rr_unit[d] ** units_i, one row per draw.
        averted_d = without - (risk[None, :] * rr_unit[:, None] ** units[None, :]).sum(axis=1)
        arr_d = averted_d / n
        lo, hi = np.percentile(averted_d, [2.5, 97.5])
        iv_averted = Interval(float(lo), float(hi))
        iv_arr = Interval(float(lo) / n, float(hi) / n)
        if lo > 0:
            # NNT falls as ARR rises: its interval is the ARR interval's reciprocal, swapped.
            iv_nnt = Interval(1.0 / float(np.percentile(arr_d, 97.5)), 1.0 / (float(lo) / n))
    notes = (
        "Trial-average relative effects applied to each patient's modelled 10-year risk; "
        "adherence, adverse effects and competing risks are not modelled.",
    )
    return TrialResult(
        intervention=intervention,
        effect_source=source,
        eligible=len(patients),
        treated=n,
        excluded=dict(sorted(excluded.items())),
        events_without=without,
        events_with=with_,
        events_averted=averted,
        absolute_risk_reduction=arr,
        number_needed_to_treat=nnt,
        draws=draws,
        seed=seed,
        interval_events_averted=iv_averted,
        interval_absolute_risk_reduction=iv_arr,
        interval_number_needed_to_treat=iv_nnt,
        notes=notes,
    )
