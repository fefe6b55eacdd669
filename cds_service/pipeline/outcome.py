"""What a service's models answered, and the numbers the audit record keeps of it.

Shared by the pipeline (``run``) and audit replay, which reruns ``risk_outcome`` on the
recorded twin version and compares ``outputs_for_audit`` / ``dosing_outputs`` with the
record.
"""

from __future__ import annotations

from dataclasses import dataclass

from cds_service.http.cards import Card, Link
from cds_service.pipeline.patient_view import patient_view
from cds_service.pipeline.predict import Assessment
from cds_service.services.ascvd_cards import ascvd_cards
from cds_service.services.cardio_renal_cards import cardio_renal_cards
from cds_service.services.catalog import ServiceDefinition
from cds_service.services.vancomycin import DosingOutcome
from onnx_models.registry import ModelRegistry
from twin_engine import FeatureSet, Twin


@dataclass(frozen=True, slots=True)
class Outcome:
    """The cards of one call and the model runs behind them (the first is primary)."""

    cards: tuple[Card, ...]
    assessments: tuple[Assessment, ...]
    dosing: DosingOutcome | None = None


def outputs_for_audit(assessments: tuple[Assessment, ...]) -> dict[str, float] | None:
    if len(assessments) == 1:
        return assessments[0].outputs or None
    # Several models answered: name each output by its model.
    merged = {
        f"{a.model.card.id}.{name}": value for a in assessments for name, value in a.outputs.items()
    }
    return merged or None


def risk_outcome(
    service: ServiceDefinition,
    registry: ModelRegistry,
    twin: Twin,
    features: FeatureSet,
    kfre_model: str,
    link: Link,
) -> Outcome:
    """A patient-view service's cards and model runs (audit replay reruns this too)."""
    # Every patient-view service renders a part of one reading of the patient.
    cardio_renal = service.kind == "cardio-renal"
    view = patient_view(registry, twin, features, kfre_model=kfre_model, with_prevent=cardio_renal)
    if cardio_renal:
        assert view.prevent is not None and view.prevent_30y is not None  # noqa: S101
        runs: tuple[Assessment, ...] = (view.prevent, view.prevent_30y, view.pce)
        runs += (view.kfre,) if view.kfre is not None else ()
        return Outcome(tuple(cardio_renal_cards(view, link)), runs)
    return Outcome(tuple(ascvd_cards(view, link)), (view.pce,))


def dosing_outputs(dosing: DosingOutcome) -> dict[str, float] | None:
    result = dosing.result
    if result is None:
        return None
    out = {
        "cl_l_h": result.individual_parameters.cl_l_h,
        "vc_l": result.individual_parameters.vc_l,
        "crcl_ml_min": result.covariates.crcl_ml_min,
    }
    if result.current_regimen is not None:
        out["draft_auc24_mg_h_l"] = result.current_regimen.auc24_ss_mg_h_l
        out["draft_probability_in_target"] = result.current_regimen.probability_in_target
        out["draft_probability_above_target"] = result.current_regimen.probability_above_target
    if result.recommendations:
        best = result.recommendations[0]
        out["recommended_dose_mg"] = best.regimen.dose_mg
        out["recommended_interval_h"] = best.regimen.interval_h
    return out
