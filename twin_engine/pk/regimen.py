"""Regimen search over the posterior: regimens a pharmacist would write, ranked by consensus.

The candidates and their order are the table `CONSENSUS_2020` (`DosingRules`): the interval
follows renal function (q8h or q12h with normal renal function, q12h, q24h, q48h as
creatinine clearance falls; a neighbouring interval only when the usual ones cannot reach the
target), the maintenance dose is whatever 250 mg step puts AUC24 in 400-600 mg.h/L, up to
20 mg/kg and 2 g; regimens are ranked by P(400 <= AUC24 <= 600), then the lower P(AUC24 >
600), then the shorter interval, then the smaller dose. Only the posterior and the covariates
enter the ranking, so it cannot change with the time of day the card is asked for.

Steady-state AUC24 is exact without simulation for linear PK: over one dosing interval at
steady state AUC_tau = dose / CL (Rowland & Tozer, Clinical Pharmacokinetics, 4th ed., ch. 11),
so AUC24_ss = dose x 24 / tau / CL for each posterior sample. What is not at steady state
(the first day, the loading dose, the next dose after the recorded history) is simulated in
`twin_engine.pk.first_doses`, never to reorder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from twin_engine.pk.types import FloatArray, Regimen

# Infusions at <= 1 g/h and at least 1 h (vancomycin label: over >= 60 min, <= 10 mg/min,
# with margin).
MAX_RATE_MG_H = 1000.0
MIN_INFUSION_H = 1.0
# Single doses up to 3 g anywhere (the consensus' loading-dose ceiling, below); a regimen's
# maintenance dose obeys the tighter rules of `CONSENSUS_2020`.
MAX_DOSE_MG = 3000.0
# Target AUC24 400-600 mg.h/L, MIC 1 mg/L (Rybak 2020).
DEFAULT_TARGET = (400.0, 600.0)
INTERVAL_QUANTILES = (0.05, 0.95)  # 90 % interval


@dataclass(frozen=True, slots=True)
class IntervalRule:
    """The dosing intervals usual from a creatinine clearance (Cockcroft-Gault) upwards."""

    min_crcl_ml_min: float
    intervals_h: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class DosingRules:
    """The rules a recommended regimen obeys and the order regimens are ranked in.

    Sources:
    - Rybak MJ et al. Therapeutic monitoring of vancomycin for serious MRSA infections: a
      revised consensus guideline and review by ASHP, IDSA, PIDS and SIDP. Am J Health Syst
      Pharm 2020;77:835-864 ("Rybak 2020"): AUC24 400-600 mg.h/L (MIC 1), Bayesian
      estimation preferred to individualise the dose; loading 20-35 mg/kg, at most 3 g; an
      empiric 15-20 mg/kg every 8-12 h for most patients with normal renal function (as in
      the 2009 consensus, Rybak MJ et al. Am J Health Syst Pharm 2009;66:82-98, Table 2).
    - Tong SYC et al. CAMERA2 - combination antibiotic therapy for MRSA infection: study
      protocol for a randomised controlled trial. Trials 2016;17:170, Table 1 ("CAMERA2"):
      starting maintenance by creatinine clearance, > 90 mL/min every 12 h, 60-90 every
      12 h, 20-60 every 24 h, < 20 every 48 h; on haemodialysis, dosed by pre-dialysis
      levels.
    - Liu C et al. Clinical practice guidelines by the IDSA for the treatment of MRSA
      infections in adults and children. Clin Infect Dis 2011;52:e18-e55 ("Liu 2011"):
      15-20 mg/kg/dose every 8-12 h, not to exceed 2 g per dose.
    """

    #: Usual intervals by renal function, highest CrCl first; dialysis takes the last row.
    interval_rules: tuple[IntervalRule, ...]
    #: Intervals the ward writes, shortest first. A neighbour of the usual intervals joins
    #: only when they cannot reach the target: the next longer one while the smallest dose
    #: at the longest usual interval has a median AUC24 above it, the next shorter one while
    #: the largest dose at the shortest has a median below it (levels showing a clearance
    #: far from what CrCl predicts).
    ward_intervals_h: tuple[float, ...]
    #: Doses in 250 mg steps: vials of 250 mg, 500 mg, 750 mg and 1 g make any such dose
    #: without a partial vial (project choice, common pharmacy practice).
    dose_step_mg: float
    #: A maintenance dose is at most the 250 mg step at or above 20 mg/kg actual body weight
    #: (the top of the consensus' empiric band, Rybak 2020) and at most 2 g (Liu 2011). A
    #: patient who needs more drug a day gets it from a shorter interval, not a larger dose.
    #: There is no lower mg/kg bound: 15 mg/kg is the empiric dose for normal renal
    #: function before anything individual is known; the posterior is the individual
    #: estimate the consensus prefers, so the AUC target sets the dose (one step at least).
    max_maintenance_mg_kg: float
    max_maintenance_mg: float
    #: Loading 20-35 mg/kg actual body weight, at most 3 g (Rybak 2020, loading doses).
    loading_mg_kg: tuple[float, float]
    max_loading_mg: float
    #: Probabilities are compared in steps of 5 points: with 1,000 posterior samples the Monte
    #: Carlo error of a probability is up to 1.6 points, and the Laplace approximation adds
    #: more, so smaller differences are ties (project choice).
    probability_step: float

    def usual_intervals(self, crcl_ml_min: float, *, dialysis: bool) -> tuple[float, ...]:
        """The intervals usual at this CrCl; on dialysis, those of the lowest row."""
        if not dialysis:
            for rule in self.interval_rules:
                if crcl_ml_min >= rule.min_crcl_ml_min:
                    return rule.intervals_h
        return self.interval_rules[-1].intervals_h


CONSENSUS_2020 = DosingRules(
    interval_rules=(
        # Normal renal function (GFR >= 90, KDIGO 2012 category G1; CAMERA2's top row):
        # every 8-12 h (Rybak 2020).
        IntervalRule(90.0, (8.0, 12.0)),
        IntervalRule(60.0, (12.0,)),  # CAMERA2: 60-90 mL/min every 12 h
        IntervalRule(20.0, (24.0,)),  # CAMERA2: 20-60 mL/min every 24 h
        # CAMERA2: < 20 mL/min every 48 h. Dialysis joins this row: the model has no
        # dialysis sessions, so every 48 h stands for a dose after each session.
        IntervalRule(0.0, (48.0,)),
    ),
    ward_intervals_h=(8.0, 12.0, 24.0, 36.0, 48.0),
    dose_step_mg=250.0,
    max_maintenance_mg_kg=20.0,
    max_maintenance_mg=2000.0,
    loading_mg_kg=(20.0, 35.0),
    max_loading_mg=3000.0,
    probability_step=0.05,
)
DOSE_STEP_MG = CONSENSUS_2020.dose_step_mg


@dataclass(frozen=True, slots=True)
class RegimenPrediction:
    """A regimen over the posterior: AUC24 (median, 90 % interval), attainment, peak, trough."""

    regimen: Regimen
    auc24_ss_mg_h_l: float
    auc24_ss_low: float
    auc24_ss_high: float
    probability_in_target: float
    probability_above_target: float = 0.0
    # Steady state, medians over the posterior: at the end of the infusion and of the interval.
    peak_ss_mg_l: float | None = None
    trough_ss_mg_l: float | None = None
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


def maintenance_doses(weight_kg: float, rules: DosingRules = CONSENSUS_2020) -> list[float]:
    """Maintenance doses allowed for this weight: 250 mg steps from one step to the step at
    or above 20 mg/kg, at most 2 g."""
    step = rules.dose_step_mg
    high = min(
        rules.max_maintenance_mg,
        max(step, math.ceil(rules.max_maintenance_mg_kg * weight_kg / step) * step),
    )
    return [float(x) for x in np.arange(step, high + 1.0, step)]


def steady_state_auc24(
    cl_samples: FloatArray, dose_mg: FloatArray, interval_h: FloatArray
) -> FloatArray:
    """[R, M] AUC24 at steady state for R regimens and M clearance samples."""
    daily = dose_mg * 24.0 / interval_h
    return np.asarray(daily[:, None] / cl_samples[None, :], dtype=np.float64)


def steady_state_peak_trough(
    params: FloatArray, dose_mg: float, interval_h: float, infusion_h: float
) -> tuple[FloatArray, FloatArray]:
    """[M] concentrations at steady state at the end of the infusion (peak) and of the
    interval (trough), for M rows of [CL, V1, Q, V2], in closed form.

    Two-compartment model with zero-order input: the central concentration after a unit
    bolus is (A e^-at + B e^-bt) / V1 with a, b the roots of s^2 - (k10 + k12 + k21) s +
    k10 k21 and A = (a - k21) / (a - b), B = (k21 - b) / (a - b); an infusion of rate R over
    T gives each exponential R c / l (1 - e^-lT) at its end, and steady state multiplies it
    by 1 / (1 - e^-l tau) (Gibaldi & Perrier, Pharmacokinetics, 2nd ed., ch. 2-3). With
    Q = 0 it is the one-compartment model.
    """
    cl, v1, q, v2 = (params[:, i] for i in range(4))
    k10 = cl / v1
    k12 = q / v1
    k21 = np.divide(q, v2, out=np.zeros_like(q), where=v2 > 0)
    total = k10 + k12 + k21
    root = np.sqrt(np.maximum(total * total - 4.0 * k10 * k21, 0.0))
    alpha, beta = 0.5 * (total + root), 0.5 * (total - root)
    spread = alpha - beta
    a_coef = (alpha - k21) / spread
    b_coef = (k21 - beta) / spread
    rate = dose_mg / infusion_h
    peak = np.zeros_like(cl)
    trough = np.zeros_like(cl)
    for coef, lam in ((a_coef, alpha), (b_coef, beta)):
        live = (np.abs(coef) > 0) & (lam > 0)
        safe = np.where(live, lam, 1.0)
        accumulate = -np.expm1(-safe * infusion_h) / -np.expm1(-safe * interval_h)
        term = np.where(live, rate * coef / safe * accumulate, 0.0)
        peak += term
        trough += term * np.where(live, np.exp(-safe * (interval_h - infusion_h)), 0.0)
    return np.asarray(peak / v1, dtype=np.float64), np.asarray(trough / v1, dtype=np.float64)


def summarise(
    regimen: Regimen,
    auc: FloatArray,
    target: tuple[float, float],
    params: FloatArray | None = None,
) -> RegimenPrediction:
    """The regimen's AUC24 summary; with posterior ``params``, its steady-state peak and trough."""
    lo, hi = np.quantile(auc, INTERVAL_QUANTILES)
    peak = trough = None
    if params is not None:
        peaks, troughs = steady_state_peak_trough(
            params, regimen.dose_mg, regimen.interval_h, regimen.infusion_h
        )
        peak, trough = float(np.median(peaks)), float(np.median(troughs))
    return RegimenPrediction(
        regimen=regimen,
        auc24_ss_mg_h_l=float(np.median(auc)),
        auc24_ss_low=float(lo),
        auc24_ss_high=float(hi),
        probability_in_target=float(np.mean((auc >= target[0]) & (auc <= target[1]))),
        probability_above_target=float(np.mean(auc > target[1])),
        peak_ss_mg_l=peak,
        trough_ss_mg_l=trough,
    )


def rank_key(
    p: RegimenPrediction, rules: DosingRules = CONSENSUS_2020
) -> tuple[int, int, float, float]:
    """Sort key, best first: P(in target), then the lower P(above target), then the shorter
    interval and the smaller dose (deterministic: only the posterior enters, never the time
    of day)."""
    step = rules.probability_step
    return (
        -round(p.probability_in_target / step),
        round(p.probability_above_target / step),
        p.regimen.interval_h,
        p.regimen.dose_mg,
    )


def candidate_intervals(
    cl_samples: FloatArray,
    doses: Sequence[float],
    target: tuple[float, float],
    *,
    crcl_ml_min: float,
    dialysis: bool,
    rules: DosingRules = CONSENSUS_2020,
) -> list[float]:
    """The usual intervals at this renal function, and a neighbour only where they cannot
    reach the target (see `DosingRules.ward_intervals_h`)."""
    ward = rules.ward_intervals_h
    usual = sorted(rules.usual_intervals(crcl_ml_min, dialysis=dialysis))

    def median_auc(dose: float, tau: float) -> float:
        return float(np.median(dose * 24.0 / tau / cl_samples))

    longer = [t for t in ward if t > usual[-1]]
    while longer and median_auc(doses[0], usual[-1]) > target[1]:
        usual.append(longer.pop(0))
    shorter = [t for t in ward if t < usual[0]]
    while shorter and median_auc(doses[-1], usual[0]) < target[0]:
        usual.insert(0, shorter.pop())
    return usual


def rank_regimens(
    params_samples: FloatArray,
    target: tuple[float, float] = DEFAULT_TARGET,
    *,
    weight_kg: float,
    crcl_ml_min: float,
    dialysis: bool,
    top: int = 5,
    rules: DosingRules = CONSENSUS_2020,
) -> list[RegimenPrediction]:
    """The best allowed dose for each candidate interval, the intervals ranked by `rank_key`.

    Candidates: `candidate_intervals` for the patient's CrCl and dialysis status, with the
    maintenance doses allowed for the weight.
    """
    cl = params_samples[:, 0]
    doses = maintenance_doses(weight_kg, rules)
    intervals = candidate_intervals(
        cl, doses, target, crcl_ml_min=crcl_ml_min, dialysis=dialysis, rules=rules
    )
    best: list[RegimenPrediction] = []
    for tau in intervals:
        auc = steady_state_auc24(cl, np.array(doses), np.full(len(doses), tau))
        options = [
            (
                summarise(
                    Regimen(dose_mg=dose, interval_h=tau, infusion_h=infusion_hours(dose)),
                    auc[i],
                    target,
                ),
                i,
            )
            for i, dose in enumerate(doses)
            if infusion_hours(dose) < tau
        ]
        if options:
            chosen, i = min(options, key=lambda option: rank_key(option[0], rules))
            # Peak and trough (closed form over every sample) for the chosen dose only.
            best.append(summarise(chosen.regimen, auc[i], target, params_samples))
    best.sort(key=lambda p: rank_key(p, rules))
    return best[:top]
