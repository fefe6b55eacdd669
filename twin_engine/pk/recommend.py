"""The vancomycin dosing pipeline: FHIR resources -> covariates -> posterior -> regimens.

`recommend` is what the service calls; `plan_dosing` is the same from already-typed inputs
(the simulation study and the benchmark use it). What they return, and its JSON and audit
shapes, is `twin_engine.pk.result`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from twin_engine.pk.covariates import model_crcl
from twin_engine.pk.errors import DialysisUnknownError, DosingError
from twin_engine.pk.estimate import (
    DEFAULT_SAMPLES,
    DEFAULT_SEED,
    Posterior,
    Timeline,
    build_timeline,
    estimate,
)
from twin_engine.pk.first_doses import add_first_day, plan_next_dose
from twin_engine.pk.history import PatientHistory, extract_history, require_covariates
from twin_engine.pk.regimen import (
    DEFAULT_TARGET,
    DOSE_STEP_MG,
    infusion_hours,
    maintenance_doses,
    rank_regimens,
    round_next_dose,
    steady_state_auc24,
    summarise,
)
from twin_engine.pk.result import DosingResult, FittedLevel, IndividualParameters, NextDose
from twin_engine.pk.types import (
    Covariates,
    DoseEvent,
    LevelObservation,
    PkModelSpec,
    PkSimulator,
    Regimen,
)


def resolve_dialysis(
    model: PkModelSpec, recorded: bool | None, stated: bool | None, source: str, note: str
) -> tuple[bool, str]:
    """The dialysis status to use: the caller's statement wins, else the record; else refuse."""
    if stated is not None:
        status, why = stated, "stated by the caller"
    elif recorded is not None:
        status, why = recorded, source
    else:
        raise DialysisUnknownError(
            f"dialysis unknown: {note}; vancomycin clearance differs markedly on dialysis "
            "(Goti 2018), so no dose is computed until dialysis is stated (dialysis=False or True)"
        )
    if status and not model.supports_dialysis:
        raise DosingError(
            f"{model.name} was not developed in patients on dialysis ({why}); "
            "use the Goti 2018 model"
        )
    return status, why


def current_regimen_of(doses: Sequence[DoseEvent]) -> Regimen | None:
    """The regimen the history shows: last amount and duration, last interval between doses."""
    if len(doses) < 2:
        return None
    last, before = doses[-1], doses[-2]
    interval = (last.start - before.start).total_seconds() / 3600.0
    if interval <= 0:
        return None
    return Regimen(
        dose_mg=last.amount_mg,
        interval_h=round(interval, 1),
        infusion_h=round(last.duration_h, 2),
        start=last.start + timedelta(hours=interval),
    )


def plan_dosing(
    *,
    covariates: Covariates,
    doses: Sequence[DoseEvent],
    levels: Sequence[LevelObservation],
    as_of: datetime,
    model: PkModelSpec,
    simulator: PkSimulator,
    target_auc: tuple[float, float] = DEFAULT_TARGET,
    draft_regimen: Regimen | None = None,
    n_samples: int = DEFAULT_SAMPLES,
    seed: int = DEFAULT_SEED,
    top: int = 5,
    offer_loading: bool | None = None,
    notes: Sequence[str] = (),
) -> DosingResult:
    """Fit, quantify uncertainty, evaluate the current/draft regimen and rank alternatives."""
    if covariates.dialysis is None:
        raise DialysisUnknownError("dialysis unknown; no dose is computed until it is stated")
    require_positive_parameters(model, covariates)
    notes = list(notes)
    timeline = build_timeline(doses, levels, as_of)
    posterior = estimate(
        model,
        covariates,
        timeline,
        simulator,
        dialysis=covariates.dialysis,
        n_samples=n_samples,
        seed=seed,
    )
    cl = posterior.params_samples[:, 0]
    start_h = timeline.hours(as_of)
    fitted = _fitted_levels(simulator, posterior, timeline, levels)

    current = draft_regimen or current_regimen_of(sorted(doses, key=lambda d: d.start))
    current_pred = None
    if current is not None:
        auc = steady_state_auc24(cl, np.array([current.dose_mg]), np.array([current.interval_h]))
        current_pred = summarise(current, auc[0], target_auc, posterior.params_samples)

    ranked = rank_regimens(
        posterior.params_samples,
        target_auc,
        weight_kg=covariates.weight_kg,
        crcl_ml_min=covariates.crcl_ml_min,
        dialysis=covariates.dialysis,
        top=top,
    )
    # A loading dose is offered when the patient has little drug on board: no doses yet.
    loading = offer_loading if offer_loading is not None else not doses
    ranked = add_first_day(
        simulator,
        posterior.params_samples,
        timeline.doses,
        start_h,
        ranked,
        target_auc,
        weight_kg=covariates.weight_kg,
        offer_loading=loading,
    )
    next_dose = None
    if doses and ranked:
        best = ranked[0].regimen
        plan = plan_next_dose(
            simulator,
            posterior.params_map,
            timeline.doses,
            start_h=start_h,
            regimen=best,
            target=target_auc,
            max_dose_mg=maintenance_doses(covariates.weight_kg)[-1],
        )
        rounded = round_next_dose(plan.amount_mg)
        next_dose = NextDose(
            start=as_of + timedelta(hours=plan.delay_h),
            amount_mg=plan.amount_mg,
            rounded_mg=rounded,
            duration_h=infusion_hours(rounded) if rounded > 0 else 0.0,
            target_auc_mg_h_l=0.5 * (target_auc[0] + target_auc[1]),
            level_at_start_mg_l=plan.level_at_start_mg_l,
        )
        if not plan.found:
            notes.append(
                f"the predicted level stays above the {best.describe()} trough for the next "
                f"{plan.delay_h:g} h; recheck a level before the next dose"
            )
        if rounded == 0.0:
            notes.append(
                f"no dose needed (drug on board): the dose for the target over the next "
                f"{best.interval_h:g} h is {plan.amount_mg:.0f} mg, below half a dose step "
                f"({0.5 * DOSE_STEP_MG:g} mg)"
            )
    if posterior.prior_covariance_fallback:
        notes.append(
            "the levels did not define every parameter direction (flat or saddle curvature at "
            "the MAP estimate); the prior covariance is used, so the intervals are wider than "
            "the levels alone would give"
        )
    p = posterior.params_map
    return DosingResult(
        model_id=model.id,
        model_name=model.name,
        model_version=model.version,
        as_of=as_of,
        covariates=covariates,
        individual_parameters=IndividualParameters(
            cl_l_h=float(p[0]), vc_l=float(p[1]), q_l_h=float(p[2]), vp_l=float(p[3])
        ),
        eta=tuple(zip(posterior.eta_names, (float(e) for e in posterior.eta_map), strict=True)),
        a_priori=posterior.n_levels == 0,
        levels=fitted,
        current_regimen=current_pred,
        recommendations=tuple(ranked),
        next_dose=next_dose,
        target_auc=target_auc,
        n_samples=n_samples,
        notes=tuple(notes) + (() if posterior.converged else ("MAP optimiser did not converge",)),
        timeline=timeline,
        posterior=posterior,
    )


def require_positive_parameters(model: PkModelSpec, covariates: Covariates) -> None:
    """Refuse covariates for which the model's typical CL, V1, Q or V2 is not positive.

    Thomson 2009's linear CrCl model gives CL <= 0 for CrCl near 1 mL/min; a dose computed
    from a non-positive clearance would be meaningless.
    """
    typical = model.individual_parameters(
        weight_kg=covariates.weight_kg,
        crcl_ml_min=covariates.crcl_ml_min,
        dialysis=bool(covariates.dialysis),
        eta=np.zeros((1, len(model.eta_names))),
    )[0]
    cl, vc, q, vp = (float(x) for x in typical)
    if not (np.isfinite(typical).all() and cl > 0):
        raise DosingError(
            f"{model.name} gives a typical clearance of {cl:.3g} L/h at CrCl "
            f"{covariates.crcl_ml_min:.1f} mL/min; CrCl below the range this model was "
            "developed in"
        )
    if not (vc > 0 and q >= 0 and vp >= 0):
        raise DosingError(
            f"{model.name} gives non-positive volumes (V1 {vc:.3g} L, V2 {vp:.3g} L) at "
            f"weight {covariates.weight_kg:g} kg; outside the range this model was developed in"
        )


def _fitted_levels(
    simulator: PkSimulator,
    posterior: Posterior,
    timeline: Timeline,
    levels: Sequence[LevelObservation],
) -> tuple[FittedLevel, ...]:
    if not levels:
        return ()
    conc, _ = simulator.simulate(
        posterior.params_map[None, :], timeline.doses[None], timeline.level_times_h[None, :]
    )
    ordered = sorted(levels, key=lambda x: x.time)
    return tuple(
        FittedLevel(lv.time, lv.value_mg_l, float(c), lv.kind, lv.source)
        for lv, c in zip(ordered, conc[0], strict=True)
    )


def covariates_from_history(
    history: PatientHistory, model: PkModelSpec, *, as_of: datetime, dialysis: bool | None
) -> Covariates:
    """Model covariates from the record; refuses missing weight/creatinine/age/sex/dialysis."""
    age, sex, weight, creatinine = require_covariates(history, as_of)
    status, why = resolve_dialysis(
        model,
        history.dialysis.status,
        dialysis,
        history.dialysis.source or history.dialysis.note,
        history.dialysis.note,
    )
    return Covariates(
        weight_kg=weight.value,
        crcl_ml_min=model_crcl(
            model, age=age, weight_kg=weight.value, creatinine_mg_dl=creatinine.value, sex=sex
        ),
        dialysis=status,
        age=age,
        sex=sex,
        creatinine_mg_dl=creatinine.value,
        weight_source=weight.source,
        creatinine_source=creatinine.source,
        dialysis_source=why,
        weight_time=weight.time,
        creatinine_time=creatinine.time,
    )


def recommend(
    resources: Sequence[Mapping[str, Any]],
    *,
    as_of: datetime,
    model: PkModelSpec,
    simulator: PkSimulator,
    target_auc: tuple[float, float] = DEFAULT_TARGET,
    draft_regimen: Regimen | None = None,
    dialysis: bool | None = None,
    n_samples: int = DEFAULT_SAMPLES,
    seed: int = DEFAULT_SEED,
) -> DosingResult:
    """Vancomycin AUC-guided dosing for one patient's FHIR R4 resources as of `as_of`.

    Raises a `DosingError` subclass (message names the resource and the missing fact) instead
    of returning a number it cannot stand behind.
    """
    if not target_auc[0] < target_auc[1]:
        raise DosingError(f"target AUC {target_auc} is not an interval low < high")
    history = extract_history(resources, as_of=as_of)
    covariates = covariates_from_history(history, model, as_of=as_of, dialysis=dialysis)
    return plan_dosing(
        covariates=covariates,
        doses=history.doses,
        levels=history.levels,
        as_of=as_of,
        model=model,
        simulator=simulator,
        target_auc=target_auc,
        draft_regimen=draft_regimen,
        n_samples=n_samples,
        seed=seed,
        notes=history.notes,
    )


__all__ = [
    # What `recommend` returns; the service and the app import it from here with it.
    "DosingResult",
    "covariates_from_history",
    "current_regimen_of",
    "plan_dosing",
    "recommend",
    "require_positive_parameters",
    "resolve_dialysis",
]
