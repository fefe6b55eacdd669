"""Regimen search over the posterior: practical regimens ranked by target attainment.

Steady-state AUC24 is exact without simulation for linear PK: over one dosing interval at
steady state AUC_tau = dose / CL (Rowland & Tozer, Clinical Pharmacokinetics, 4th ed., ch. 11),
so AUC24_ss = dose x 24 / tau / CL for each posterior sample. The first 24 h after the new
regimen starts (residual drug from the history, loading dose, first maintenance doses) is not
at steady state: every candidate x loading option x posterior sample is simulated in ONE
batched call of the structural model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from twin_engine.pk.types import FloatArray, PkSimulator, Regimen

# Practical regimens (project choice): doses in 250 mg steps (the common vial sizes, 250 mg
# to 1 g, give any such dose without partial vials), the usual intervals q8h-q48h, and an
# infusion rate of at most 1 g/h (the label's <= 10 mg/min, with margin).
DOSE_STEP_MG = 250.0
INTERVALS_H: tuple[float, ...] = (8.0, 12.0, 24.0, 36.0, 48.0)
MAX_RATE_MG_H = 1000.0
# Infusions last at least 1 h (vancomycin label: over >= 60 min, <= 10 mg/min).
MIN_INFUSION_H = 1.0
# Single doses up to 3 g: the consensus' loading-dose ceiling (Rybak et al., AJHP 2020;77:835,
# loading 20-35 mg/kg, max 3000 mg); applied to maintenance doses too (project choice).
MAX_DOSE_MG = 3000.0
# Loading doses 20-35 mg/kg actual body weight (Rybak 2020, recommendation for loading doses).
LOADING_MG_KG = (20.0, 35.0)
# Target AUC24 400-600 mg.h/L, MIC 1 mg/L (Rybak 2020).
DEFAULT_TARGET = (400.0, 600.0)
INTERVAL_QUANTILES = (0.05, 0.95)  # 90 % interval


@dataclass(frozen=True, slots=True)
class RegimenPrediction:
    """A regimen's predicted AUC24 over the posterior: median, 90 % interval, attainment."""

    regimen: Regimen
    auc24_ss_mg_h_l: float
    auc24_ss_low: float
    auc24_ss_high: float
    probability_in_target: float
    # AUC over the first 24 h after the regimen starts (history + loading + maintenance).
    auc24_first_day_mg_h_l: float | None = None
    probability_first_day_in_target: float | None = None


def infusion_hours(dose_mg: float) -> float:
    """Shortest infusion at <= 1 g/h, rounded up to 0.5 h, at least 1 h."""
    return max(MIN_INFUSION_H, math.ceil(dose_mg / MAX_RATE_MG_H * 2.0) / 2.0)


def round_dose(dose_mg: float) -> float:
    """A regimen dose: the nearest 250 mg step within 250-3000 mg (never below one step).

    For a single next dose, where "nothing now" is a valid answer, use `round_next_dose`.
    """
    return float(min(MAX_DOSE_MG, max(DOSE_STEP_MG, round(dose_mg / DOSE_STEP_MG) * DOSE_STEP_MG)))


def round_next_dose(dose_mg: float) -> float:
    """A single next dose: 0 below half a step (125 mg, drug on board), else `round_dose`."""
    if dose_mg < 0.5 * DOSE_STEP_MG:
        return 0.0
    return round_dose(dose_mg)


def steady_state_auc24(
    cl_samples: FloatArray, dose_mg: FloatArray, interval_h: FloatArray
) -> FloatArray:
    """[R, M] AUC24 at steady state for R regimens and M clearance samples."""
    daily = dose_mg * 24.0 / interval_h
    return np.asarray(daily[:, None] / cl_samples[None, :], dtype=np.float64)


def summarise(regimen: Regimen, auc: FloatArray, target: tuple[float, float]) -> RegimenPrediction:
    lo, hi = np.quantile(auc, INTERVAL_QUANTILES)
    return RegimenPrediction(
        regimen=regimen,
        auc24_ss_mg_h_l=float(np.median(auc)),
        auc24_ss_low=float(lo),
        auc24_ss_high=float(hi),
        probability_in_target=float(np.mean((auc >= target[0]) & (auc <= target[1]))),
    )


def rank_regimens(
    cl_samples: FloatArray,
    target: tuple[float, float] = DEFAULT_TARGET,
    *,
    top: int = 5,
    intervals: Sequence[float] = INTERVALS_H,
) -> list[RegimenPrediction]:
    """The best dose for each interval, ranked by P(AUC24_ss in target) over the samples.

    Within an interval the best dose maximises attainment (ties to 0.5 %: median closest to the
    target's middle). Regimens with the same daily dose have the same steady-state AUC, so
    across intervals ties are left for the first-day evaluation to break (`add_first_day`).
    """
    doses = np.arange(DOSE_STEP_MG, MAX_DOSE_MG + 1.0, DOSE_STEP_MG)
    mid = 0.5 * (target[0] + target[1])
    best: list[RegimenPrediction] = []
    for tau in intervals:
        auc = steady_state_auc24(cl_samples, doses, np.full(doses.size, tau))
        p = np.mean((auc >= target[0]) & (auc <= target[1]), axis=1)
        median = np.median(auc, axis=1)
        i = min(range(doses.size), key=lambda j: (-round(p[j] * 200.0), abs(median[j] - mid)))
        regimen = Regimen(
            dose_mg=float(doses[i]), interval_h=float(tau), infusion_h=infusion_hours(doses[i])
        )
        best.append(summarise(regimen, auc[i], target))
    best.sort(key=lambda r: -round(r.probability_in_target * 200.0))
    return best[:top]


def regimen_doses(
    regimen: Regimen, start_h: float, horizon_h: float, loading_mg: float | None
) -> list[tuple[float, float, float]]:
    """(start h, duration h, mg) of each dose of the regimen from start_h until horizon_h."""
    rows = []
    k = 0
    while start_h + k * regimen.interval_h < horizon_h:
        amount = loading_mg if (k == 0 and loading_mg) else regimen.dose_mg
        duration = infusion_hours(amount) if (k == 0 and loading_mg) else regimen.infusion_h
        rows.append((start_h + k * regimen.interval_h, duration, amount))
        k += 1
    return rows


def first_day_auc(
    simulator: PkSimulator,
    params_samples: FloatArray,
    history: FloatArray,
    start_h: float,
    plans: Sequence[tuple[Regimen, float | None]],
) -> FloatArray:
    """[P, M] AUC over [start, start + 24 h] per (regimen, loading) plan, in ONE simulator call."""
    m = params_samples.shape[0]
    horizon = start_h + 24.0
    per_plan = [
        np.vstack([history.reshape(-1, 3), np.array(regimen_doses(reg, start_h, horizon, ld))])
        for reg, ld in plans
    ]
    width = max(d.shape[0] for d in per_plan)
    doses = np.zeros((len(plans), width, 3))
    for i, d in enumerate(per_plan):
        doses[i, : d.shape[0]] = d
    all_doses = np.repeat(doses, m, axis=0)
    all_params = np.tile(params_samples, (len(plans), 1))
    times = np.broadcast_to(np.array([start_h, horizon]), (all_params.shape[0], 2))
    _, auc = simulator.simulate(all_params, all_doses, times)
    return np.asarray((auc[:, 1] - auc[:, 0]).reshape(len(plans), m), dtype=np.float64)


def loading_options(weight_kg: float) -> list[float]:
    """Loading doses in 250 mg steps within 20-35 mg/kg and <= 3 g."""
    low = math.ceil(LOADING_MG_KG[0] * weight_kg / DOSE_STEP_MG) * DOSE_STEP_MG
    high = min(MAX_DOSE_MG, math.floor(LOADING_MG_KG[1] * weight_kg / DOSE_STEP_MG) * DOSE_STEP_MG)
    return [float(x) for x in np.arange(low, high + 1.0, DOSE_STEP_MG)]


def add_first_day(
    simulator: PkSimulator,
    params_samples: FloatArray,
    history: FloatArray,
    start_h: float,
    ranked: Sequence[RegimenPrediction],
    target: tuple[float, float],
    *,
    weight_kg: float,
    offer_loading: bool,
) -> list[RegimenPrediction]:
    """First-day AUC for each ranked regimen; where it helps, the best loading dose."""
    options: list[float | None] = [None]
    if offer_loading:
        options += [float(x) for x in loading_options(weight_kg)]
    plans = [
        (p.regimen, ld) for p in ranked for ld in options if ld is None or ld > p.regimen.dose_mg
    ]
    auc = first_day_auc(simulator, params_samples, history, start_h, plans)
    in_target = np.mean((auc >= target[0]) & (auc <= target[1]), axis=1)
    out = []
    for pred in ranked:
        idx = [i for i, (reg, _) in enumerate(plans) if reg is pred.regimen]
        # Best first-day attainment; a loading dose must improve it by >= 5 points to be offered.
        best = max(idx, key=lambda i: (round(in_target[i] * 100.0), -(plans[i][1] or 0.0)))
        base = idx[0]
        choice = best if in_target[best] >= in_target[base] + 0.05 else base
        loading = plans[choice][1]
        out.append(
            RegimenPrediction(
                regimen=Regimen(
                    dose_mg=pred.regimen.dose_mg,
                    interval_h=pred.regimen.interval_h,
                    infusion_h=pred.regimen.infusion_h,
                    loading_dose_mg=loading,
                ),
                auc24_ss_mg_h_l=pred.auc24_ss_mg_h_l,
                auc24_ss_low=pred.auc24_ss_low,
                auc24_ss_high=pred.auc24_ss_high,
                probability_in_target=pred.probability_in_target,
                auc24_first_day_mg_h_l=float(np.median(auc[choice])),
                probability_first_day_in_target=float(in_target[choice]),
            )
        )
    out.sort(
        key=lambda r: (
            -round(r.probability_in_target * 200.0),
            -(r.probability_first_day_in_target or 0.0),
        )
    )
    return out


def next_dose_for_auc(
    simulator: PkSimulator,
    params: FloatArray,
    history: FloatArray,
    *,
    start_h: float,
    target_auc: float,
    window_h: float = 24.0,
    duration_h: float | None = None,
) -> tuple[float, float]:
    """(mg, h) of one infusion at start_h giving AUC(start_h, start_h + window_h) = target.

    AUC is linear in the amount, so two simulated rows (history alone; history plus 1 mg) give
    the exact amount. With duration_h None the duration follows the rate limit (re-solved once).
    """
    duration = duration_h if duration_h is not None else MIN_INFUSION_H
    amount = 0.0
    for _ in range(3):
        doses = np.zeros((2, history.reshape(-1, 3).shape[0] + 1, 3))
        doses[:, :-1] = history.reshape(-1, 3)
        doses[1, -1] = (start_h, duration, 1.0)
        times = np.array([[start_h, start_h + window_h]] * 2)
        _, auc = simulator.simulate(np.vstack([params, params]), doses, times)
        base = auc[0, 1] - auc[0, 0]
        unit = (auc[1, 1] - auc[1, 0]) - base
        amount = max(0.0, (target_auc - base) / unit)
        if duration_h is not None or infusion_hours(amount) == duration:
            break
        duration = infusion_hours(amount)
    return float(amount), float(duration)
