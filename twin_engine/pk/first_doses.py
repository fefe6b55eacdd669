"""The first doses of a regimen from where the patient is, simulated over the dose history.

The ranking (`twin_engine.pk.regimen`) is at steady state, in closed form, and never looks at
the clock. What comes before steady state depends on the recorded doses and on when the card
is asked for, so it is simulated here, and only to fill in the ranked regimens: the first
24 h after the regimen starts (residual drug, loading dose, first maintenance doses; every
candidate x loading option x posterior sample in ONE batched call of the structural model),
whether a loading dose helps, and when the next dose is due and how much it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from twin_engine.pk.regimen import (
    CONSENSUS_2020,
    DOSE_STEP_MG,
    MIN_INFUSION_H,
    DosingRules,
    RegimenPrediction,
    infusion_hours,
    steady_state_peak_trough,
)
from twin_engine.pk.types import FloatArray, PkSimulator, Regimen


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


def loading_options(weight_kg: float, rules: DosingRules = CONSENSUS_2020) -> list[float]:
    """Loading doses in 250 mg steps within 20-35 mg/kg and <= 3 g."""
    step = rules.dose_step_mg
    low = math.ceil(rules.loading_mg_kg[0] * weight_kg / step) * step
    high = min(rules.max_loading_mg, math.floor(rules.loading_mg_kg[1] * weight_kg / step) * step)
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
                probability_above_target=pred.probability_above_target,
                peak_ss_mg_l=pred.peak_ss_mg_l,
                trough_ss_mg_l=pred.trough_ss_mg_l,
                auc24_first_day_mg_h_l=float(np.median(auc[choice])),
                probability_first_day_in_target=float(in_target[choice]),
            )
        )
    # The order stays the steady-state ranking's: the first day depends on when the card is
    # asked for, and the recommendation must not change with the time of day.
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


@dataclass(frozen=True, slots=True)
class NextDosePlan:
    """When the next dose is due (hours after the as-of time) and how much."""

    delay_h: float
    amount_mg: float
    duration_h: float
    level_at_start_mg_l: float
    found: bool  # False: the level stays above the trough over the whole search window


def plan_next_dose(
    simulator: PkSimulator,
    params: FloatArray,
    history: FloatArray,
    *,
    start_h: float,
    regimen: Regimen,
    target: tuple[float, float],
    max_dose_mg: float,
    search_h: float = 72.0,
    step_h: float = 0.25,
) -> NextDosePlan:
    """The next dose of ``regimen`` after the recorded doses, with the MAP ``params`` [4].

    Due when the predicted level has fallen to the regimen's steady-state trough (not before
    the last infusion ends), so the regimen continues from where the patient is; the amount
    gives the target's middle over one interval (AUC24 x tau / 24), at most ``max_dose_mg``.
    """
    rows = history.reshape(-1, 3)
    grid = start_h + np.arange(0.0, search_h + step_h / 2, step_h)
    conc, _ = simulator.simulate(params[None, :], rows[None], grid[None, :])
    _, trough = steady_state_peak_trough(
        params[None, :], regimen.dose_mg, regimen.interval_h, regimen.infusion_h
    )
    last_end = float(np.max(rows[:, 0] + rows[:, 1])) if rows.shape[0] else -math.inf
    due = (conc[0] <= trough[0] + 1e-9) & (grid >= last_end)
    found = bool(due.any())
    i = int(np.argmax(due)) if found else grid.size - 1
    mid = 0.5 * (target[0] + target[1])
    amount, _ = next_dose_for_auc(
        simulator,
        params[None, :],
        rows,
        start_h=float(grid[i]),
        target_auc=mid * regimen.interval_h / 24.0,
        window_h=regimen.interval_h,
    )
    amount = min(amount, max_dose_mg)
    return NextDosePlan(
        delay_h=float(grid[i] - start_h),
        amount_mg=amount,
        duration_h=infusion_hours(amount) if amount > 0 else 0.0,
        level_at_start_mg_l=float(conc[0, i]),
        found=found,
    )
