"""One reading of the patient for every patient-view service: the clinical state, the
models that apply, and the guideline decision, computed once.

`ascvd-risk`, `ascvd-risk-discharge` and `cardio-renal-risk` each render a part of the
same `PatientView`, so for one patient they cannot contradict each other: the lipid
panel that is too old for one is too old for all (one staleness table,
`twin_engine.clinical.staleness`), a patient in secondary prevention gets no
primary-prevention score from any of them, and no risk is computed from a creatinine
taken during acute kidney injury.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cds_service.ops.metrics import MODEL_RUN_DURATION, timed
from cds_service.pipeline.predict import Assessment, PendingRun, finish, prepare
from onnx_models.registry import ModelRegistry
from twin_engine.clinical.guidelines import StatinAdvice, kfre_applies, statin_advice
from twin_engine.clinical.staleness import BLOCKS_WHEN_STALE
from twin_engine.clinical.state import ClinicalState, clinical_state
from twin_engine.clinical.statins import LipidPanel
from twin_engine.derive import FeatureSet
from twin_engine.features import Feature
from twin_engine.twin import Twin

PceBasis = Literal["current", "before-statin", "none"]


@dataclass(frozen=True, slots=True)
class PatientView:
    """The state, every model run that applies, and the statin decision."""

    twin: Twin
    features: FeatureSet
    state: ClinicalState
    deceased: bool
    #: Why no primary-prevention equation applies (secondary prevention, pregnancy...).
    pce_excluded: str | None
    prevent_excluded: str | None
    #: The PCE run the decision uses: on today's features, or on the features of the
    #: day of the last lipid panel before the first statin (the untreated risk).
    pce: Assessment
    pce_basis: PceBasis
    #: PREVENT runs; None when the caller (ascvd-risk) does not show them.
    prevent: Assessment | None
    prevent_30y: Assessment | None
    kfre: Assessment | None
    advice: StatinAdvice

    def lab_blockers(self, a: Assessment) -> tuple[str, ...]:
        """Laboratory inputs of this run that are missing or too old to act on."""
        return _lab_blockers(a, untreated=a is self.pce and self.pce_basis == "before-statin")

    def usable_risk(self, a: Assessment, output: str) -> float | None:
        """The output when computed from inputs fresh enough to act on, else None."""
        return _usable_risk(
            a, output, untreated=a is self.pce and self.pce_basis == "before-statin"
        )

    @property
    def pce_risk(self) -> float | None:
        return _pce_risk(self.pce, self.pce_basis, self.pce_excluded)


def _lab_blockers(a: Assessment, *, untreated: bool) -> tuple[str, ...]:
    if untreated:
        # The untreated lipids are old by design, so age does not block; missing inputs do.
        return tuple(n.name for n in a.not_used if n.name in BLOCKS_WHEN_STALE)
    stale = {i.name for i in a.stale if i.name in BLOCKS_WHEN_STALE}
    missing = {n.name for n in a.not_used if n.name in BLOCKS_WHEN_STALE}
    return tuple(sorted(stale | missing))


def _usable_risk(a: Assessment, output: str, *, untreated: bool) -> float | None:
    if a.status != "computed" or _lab_blockers(a, untreated=untreated):
        return None
    return a.outputs[output]


def _pce_risk(pce: Assessment, basis: PceBasis, excluded: str | None) -> float | None:
    if excluded:
        return None
    return _usable_risk(pce, "risk_10y_ascvd", untreated=basis == "before-statin")


def untreated_features(features: FeatureSet, panel: LipidPanel) -> FeatureSet:
    """Today's features with total and HDL cholesterol from the panel before the first
    statin (Grundy 2019: the statin decision rests on untreated lipids; the PCE is for
    people not on a statin)."""
    note = f"before the first statin: panel of {panel.time.date().isoformat()}"
    replaced = dict(features.features)
    for name, value, source in (
        ("total_cholesterol_mg_dl", panel.total_mg_dl, panel.sources[0]),
        ("hdl_cholesterol_mg_dl", panel.hdl_mg_dl, panel.sources[1]),
    ):
        replaced[name] = Feature(name, value, "mg/dL", panel.time, (source,), "ok", note)
    return FeatureSet(as_of=features.as_of, features=replaced)


def _pce_exclusion(state: ClinicalState, deceased: bool) -> str | None:
    if deceased:
        return "the patient is recorded as deceased"
    if state.clinical_ascvd is not None:
        return f"clinical ASCVD ({state.clinical_ascvd.what}): secondary prevention"
    if state.pregnancy is not None:
        return "pregnancy"
    if state.kidney_failure is not None:
        return f"kidney failure ({state.kidney_failure.what})"
    return None


def _prevent_exclusion(state: ClinicalState, deceased: bool) -> str | None:
    # PREVENT: adults 30-79 without known cardiovascular disease (Khan et al.,
    # Circulation 2024;149:430), heart failure included; not validated in pregnancy or
    # on dialysis (eGFR is an input and assumes a steady state, hence no AKI either).
    if state.heart_failure is not None and state.clinical_ascvd is None and not deceased:
        return f"known heart failure ({state.heart_failure.what})"
    excluded = _pce_exclusion(state, deceased)
    if excluded is None and state.aki is not None:
        return f"acute kidney injury (KDIGO stage {state.aki.stage})"
    return excluded


Run = Assessment | PendingRun


@dataclass(frozen=True, slots=True)
class ViewPlan:
    """A patient view up to its model runs: every rule applied, the runs prepared."""

    twin: Twin
    features: FeatureSet
    state: ClinicalState
    deceased: bool
    pce_excluded: str | None
    prevent_excluded: str | None
    pce: Run
    pce_basis: PceBasis
    prevent: Run | None
    prevent_30y: Run | None
    kfre: Run | None

    def pending(self) -> list[PendingRun]:
        runs = (self.pce, self.prevent, self.prevent_30y, self.kfre)
        return [r for r in runs if isinstance(r, PendingRun)]


def patient_view(
    registry: ModelRegistry,
    twin: Twin,
    features: FeatureSet,
    *,
    kfre_model: str = "kfre",
    with_prevent: bool = True,
) -> PatientView:
    """Everything the patient-view services show, for one twin on one date.

    ``with_prevent=False`` leaves out the PREVENT runs (ascvd-risk shows none; each costs
    an exact Shapley run), without changing any rule or the statin decision.
    """
    plan = plan_view(registry, twin, features, kfre_model=kfre_model, with_prevent=with_prevent)
    return finish_view(plan, {id(r): assess_run(r) for r in plan.pending()})


def run_views(plans: Sequence[ViewPlan]) -> list[PatientView]:
    """The views of many planned patients, each model run once on all who need it
    (batched through onnxruntime); the views are those ``patient_view`` gives one by one."""
    by_model: dict[str, list[PendingRun]] = {}
    for plan in plans:
        for run in plan.pending():
            by_model.setdefault(run.model.card.id, []).append(run)
    done: dict[int, Assessment] = {}
    for runs in by_model.values():
        model = runs[0].model
        with timed(MODEL_RUN_DURATION, model.card.id):
            explained = model.predict_and_explain_batch([r.values for r in runs])
        for run, e in zip(runs, explained, strict=True):
            done[id(run)] = finish(run, e.explanation)
    return [finish_view(plan, done) for plan in plans]


def assess_run(run: PendingRun) -> Assessment:
    with timed(MODEL_RUN_DURATION, run.model.card.id):
        return finish(run, run.model.predict_and_explain(run.values).explanation)


def plan_view(
    registry: ModelRegistry,
    twin: Twin,
    features: FeatureSet,
    *,
    kfre_model: str = "kfre",
    with_prevent: bool = True,
) -> ViewPlan:
    """Every rule of ``patient_view``, and the model runs it needs, not yet run."""
    deceased = twin.demographics.deceased
    state = clinical_state(twin, features)
    pce_excluded = _pce_exclusion(state, deceased)
    prevent_excluded = _prevent_exclusion(state, deceased)
    pce_model = registry.get("pce")
    basis: PceBasis = "current"
    pce = prepare(pce_model, features, excluded_because=pce_excluded)
    if pce_excluded is None and state.current_statin is not None:
        panel = state.pretreatment_lipids
        if panel is not None:
            # The untreated risk: every input as it was on the day of the last panel
            # before the first statin (Grundy 2019: PCE is for people not on a statin).
            pce, basis = prepare(pce_model, untreated_features(features, panel)), "before-statin"
        else:
            basis = "none"
    prevent = prevent_30y = None
    if with_prevent:
        prevent = prepare(registry.get("prevent"), features, excluded_because=prevent_excluded)
        prevent_30y = prepare(
            registry.get("prevent_30y"), features, excluded_because=prevent_excluded
        )
    kfre = None
    if kfre_applies(state) and not deceased:
        kfre = prepare(
            registry.get(kfre_model),
            features,
            population_inputs=frozenset({"age_years", "egfr_ml_min_1_73m2"}),
        )
    return ViewPlan(
        twin,
        features,
        state,
        deceased,
        pce_excluded,
        prevent_excluded,
        pce,
        basis,
        prevent,
        prevent_30y,
        kfre,
    )


def finish_view(plan: ViewPlan, done: dict[int, Assessment]) -> PatientView:
    """The view from its plan and its runs' results (keyed by ``id`` of the run)."""

    def resolved(run: Run) -> Assessment:
        return run if isinstance(run, Assessment) else done[id(run)]

    pce = resolved(plan.pce)
    risk = _pce_risk(pce, plan.pce_basis, plan.pce_excluded) if plan.pce_basis != "none" else None
    return PatientView(
        plan.twin,
        plan.features,
        plan.state,
        plan.deceased,
        plan.pce_excluded,
        plan.prevent_excluded,
        pce,
        plan.pce_basis,
        None if plan.prevent is None else resolved(plan.prevent),
        None if plan.prevent_30y is None else resolved(plan.prevent_30y),
        None if plan.kfre is None else resolved(plan.kfre),
        statin_advice(state=plan.state, pce_risk=risk),
    )
