"""The vancomycin-dosing service: the drafted regimen against the patient's own PK twin.

On order-select and order-sign, when a draft MedicationRequest for intravenous vancomycin
is in context (its dosage read by ``twin_engine.fhir.dosage``, the reader the dose history
uses; oral, rectal and intrathecal orders get no card), the card puts the decision first
and then, for the draft and the recommended regimen side by side, the steady-state AUC24
with its 90% interval, P(in target), P(above target) and the predicted peak and trough; the
next dose; the fit of the model to the patient's levels; and, when off target, a suggestion
whose ``update`` action carries the recommended regimen as a full MedicationRequest. A
timing the order leaves ambiguous is named on a card, never guessed.

Target AUC24 400-600 mg·h/L (MIC 1 mg/L): 2020 ASHP/IDSA/PIDS/SIDP consensus
(Rybak et al., Am J Health Syst Pharm 2020;77:835-64).
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from cds_service.errors import ServiceError
from cds_service.http.cards import Action, Card, Link, Source, Suggestion
from cds_service.pipeline.render import OVERRIDE_REASONS, md_text
from onnx_models.pk.models import MODELS
from onnx_models.pk.simulator import OnnxPkSimulator, load_simulator
from twin_engine.fhir.dosage import DosageError, read_request_dosage
from twin_engine.fhir.doses import SYSTEMIC_ROUTES
from twin_engine.fhir.medications import medication_concept, rxnorm_and_texts
from twin_engine.medications import classify_medication
from twin_engine.pk.errors import DosingError
from twin_engine.pk.history import PatientHistory, extract_history
from twin_engine.pk.recommend import DosingResult, covariates_from_history, plan_dosing
from twin_engine.pk.regimen import RegimenPrediction, infusion_hours
from twin_engine.pk.types import PkModelSpec, PkSimulator, Regimen

#: Probability of target attainment below which the drafted regimen is called off target.
PTA_OFF_TARGET = 0.5


class DraftOrderError(ServiceError):
    """The drafted vancomycin order cannot be read as a regimen (named field missing)."""


@dataclass(frozen=True, slots=True)
class DraftVancomycin:
    """The drafted MedicationRequest and the regimen it orders."""

    resource: dict[str, Any]
    regimen: Regimen
    notes: tuple[str, ...] = ()  # what the order leaves to convention, for the card


@dataclass(frozen=True, slots=True)
class DosingOutcome:
    """The cards, and what they were computed from: the draft and the PK history read
    once here (the audit record's replay basis is built from these, not re-read)."""

    cards: tuple[Card, ...]
    result: DosingResult | None
    problem: str | None
    draft: DraftVancomycin | None = None
    history: PatientHistory | None = None


@cache
def simulator_for(model_id: str) -> OnnxPkSimulator:
    """One ONNX session per PK model per process."""
    return load_simulator(model_id)


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def is_vancomycin(
    request: dict[str, Any], bundled: dict[str, dict[str, Any]] | None = None
) -> bool:
    rxnorm, texts = rxnorm_and_texts(medication_concept(request, bundled or {}))
    matches = classify_medication(rxnorm, texts)
    return any(m.medication_class == "vancomycin" for m in matches)


#: Largest single vancomycin dose read from a draft: 4 g, above the 3 g consensus
#: loading-dose ceiling (Rybak 2020), so a real order is never refused but a typo of
#: 1e308 g cannot reach the arithmetic.
MAX_DRAFT_DOSE_MG = 4000.0
#: Longest dosing interval read from a draft (a week); shorter than 1 h is an entry error.
MAX_DRAFT_INTERVAL_H = 168.0
DRAFT_INTERVAL_H = (1.0, MAX_DRAFT_INTERVAL_H)


def read_draft(request: dict[str, Any], medication: object = None) -> DraftVancomycin | None:
    """The regimen a drafted vancomycin MedicationRequest orders; None when it is not given
    intravenously (oral, rectal, intrathecal vancomycin: no systemic exposure to predict).

    The dosage is read by `twin_engine.fhir.dosage`, the reader the dose history uses too.
    """
    where = f"MedicationRequest/{request.get('id', '?')}"
    instructions = _list(request.get("dosageInstruction"))
    if not instructions:
        raise DraftOrderError(f"{where} has no dosageInstruction")
    if len(instructions) > 1:
        raise DraftOrderError(
            f"{where} has {len(instructions)} dosageInstructions; one regimen is needed"
        )
    try:
        dosage = read_request_dosage(instructions[0], where, medication=medication)
    except DosageError as exc:
        raise DraftOrderError(str(exc)) from exc
    if dosage.route not in SYSTEMIC_ROUTES:
        return None
    dose, interval = dosage.dose_mg, dosage.timing.interval_h
    if dose is None:  # read_request_dosage always reads the dose of a systemic order
        raise DraftOrderError(f"{where} has no doseAndRate.doseQuantity")
    if not dose <= MAX_DRAFT_DOSE_MG:
        raise DraftOrderError(f"{where} dose {dose:g} mg is not between 0 and 4 g")
    if interval is None:
        raise DraftOrderError(
            f"{where} has no timing.repeat period or timing.code; the dosing interval is unknown"
        )
    low, high = DRAFT_INTERVAL_H
    if not low <= interval <= high:
        raise DraftOrderError(
            f"{where} timing gives a dose every {interval:g} h, outside {low:g} h to a week"
        )
    infusion = dosage.infusion_h if dosage.infusion_h is not None else infusion_hours(dose)
    if not 0 < infusion < interval:
        raise DraftOrderError(
            f"{where} infuses over {infusion:g} h, not less than its {interval:g} h interval"
        )
    return DraftVancomycin(
        request,
        Regimen(dose_mg=dose, interval_h=interval, infusion_h=infusion),
        dosage.notes,
    )


def find_draft(context: dict[str, Any]) -> DraftVancomycin | None:
    """The first drafted vancomycin MedicationRequest in context.draftOrders, if any."""
    draft_orders = context.get("draftOrders")
    if not isinstance(draft_orders, dict):
        return None
    selections = {s for s in _list(context.get("selections")) if isinstance(s, str)}
    entries = [e for e in _list(draft_orders.get("entry")) if isinstance(e, dict)]
    bundled = {
        f"Medication/{r.get('id')}": r
        for r in (_dict(e.get("resource")) for e in entries)
        if r.get("resourceType") == "Medication"
    }
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") != "MedicationRequest":
            continue
        # On order-select only the selected orders are the clinician's focus.
        if selections and f"MedicationRequest/{resource.get('id')}" not in selections:
            continue
        if is_vancomycin(resource, bundled):
            draft = read_draft(resource, medication_concept(resource, bundled))
            if draft is not None:
                return draft
    return None


def recommended_request(draft: dict[str, Any], regimen: Regimen) -> dict[str, Any]:
    """The draft MedicationRequest rewritten to the recommended regimen (same id)."""
    updated = copy.deepcopy(draft)
    dosage = {
        "text": regimen.describe(),
        "timing": {
            "repeat": {
                "frequency": 1,
                "period": regimen.interval_h,
                "periodUnit": "h",
                "duration": regimen.infusion_h,
                "durationUnit": "h",
            }
        },
        "route": {
            "coding": [
                {
                    "system": "http://snomed.info/sct",
                    "code": "47625008",
                    "display": "Intravenous route",
                }
            ]
        },
        "doseAndRate": [
            {
                "doseQuantity": {
                    "value": regimen.dose_mg,
                    "unit": "mg",
                    "system": "http://unitsofmeasure.org",
                    "code": "mg",
                }
            }
        ],
    }
    updated["dosageInstruction"] = [dosage]
    return updated


def dosing_cards(
    resources: list[dict[str, Any]],
    context: dict[str, Any],
    *,
    as_of: datetime,
    model_id: str,
    link: Link,
) -> DosingOutcome:
    """Cards for a drafted vancomycin order, or none when no vancomycin is drafted."""
    model = MODELS[model_id]
    source = Source(label=f"twin-cds · {model.name} v{model.version}")
    try:
        draft = find_draft(context)
    except DraftOrderError as exc:
        card = _problem_card(
            str(exc), source, link, "Vancomycin AUC not predicted: the drafted order is unclear"
        )
        return DosingOutcome((card,), None, str(exc))
    if draft is None:
        return DosingOutcome((), None, None)
    try:
        history = extract_history(resources, as_of=as_of)
    except DosingError as exc:
        card = _problem_card(str(exc), source, link)
        return DosingOutcome((card,), None, str(exc), draft)
    return dosing_outcome(
        draft, history, as_of=as_of, model=model, simulator=simulator_for(model_id), link=link
    )


def dosing_outcome(
    draft: DraftVancomycin,
    history: PatientHistory,
    *,
    as_of: datetime,
    model: PkModelSpec,
    simulator: PkSimulator,
    link: Link,
) -> DosingOutcome:
    """The card for a draft against a PK history (audit replay reruns this on the
    recorded history with the archived model)."""
    source = Source(label=f"twin-cds · {model.name} v{model.version}")
    try:
        covariates = covariates_from_history(history, model, as_of=as_of, dialysis=None)
        result = plan_dosing(
            covariates=covariates,
            doses=history.doses,
            levels=history.levels,
            as_of=as_of,
            model=model,
            simulator=simulator,
            draft_regimen=draft.regimen,
            notes=history.notes,
        )
    except DosingError as exc:
        card = _problem_card(str(exc), source, link)
        return DosingOutcome((card,), None, str(exc), draft, history)
    card = _result_card(draft, result, source, link)
    return DosingOutcome((card,), result, None, draft, history)


def _problem_card(
    message: str,
    source: Source,
    link: Link,
    summary: str = "Vancomycin AUC not predicted: the data do not allow it",
) -> Card:
    return Card(
        uuid=str(uuid.uuid4()),
        summary=summary[:139],
        detail=(
            "No AUC is given, because a number from these data would not be the patient's:\n\n"
            f"- {md_text(message)}"
        ),
        indicator="warning",
        source=source,
        links=[link],
    )


def _pct(p: float) -> str:
    return f"{100 * p:.0f}%"


def _peak_trough(p: RegimenPrediction) -> str:
    if p.peak_ss_mg_l is None or p.trough_ss_mg_l is None:
        return "-"
    return f"{p.peak_ss_mg_l:.0f} / {p.trough_ss_mg_l:.1f}"


def _summary(
    draft: DraftVancomycin,
    current: RegimenPrediction,
    best: RegimenPrediction | None,
    on_target: bool,
    target: tuple[float, float],
) -> str:
    """Decision first, plain words, at most 140 characters."""
    low, high = target
    drafted = (
        f"AUC24 {current.auc24_ss_mg_h_l:.0f}, {_pct(current.probability_in_target)} "
        f"in {low:.0f}-{high:.0f}"
    )
    drafted_regimen = draft.regimen.short()
    if on_target:
        text = f"Vancomycin {drafted_regimen} is on target: {drafted}"
    elif best is None:
        text = f"Vancomycin {drafted_regimen} is off target: {drafted}"
    else:
        change = best.regimen.short()
        text = f"Change vancomycin to {change}: drafted {drafted_regimen} gives {drafted}"
    return text if len(text) <= 140 else text[:139] + "…"


def _result_card(draft: DraftVancomycin, r: DosingResult, source: Source, link: Link) -> Card:
    low, high = r.target_auc
    current = r.current_regimen
    if current is None:  # recommend() always predicts a drafted regimen
        raise DosingError("the drafted regimen was not predicted")
    on_target = current.probability_in_target >= PTA_OFF_TARGET and (
        low <= current.auc24_ss_mg_h_l <= high
    )
    best = r.recommendations[0] if r.recommendations else None
    columns = [("Drafted", current)] + ([("Recommended", best)] if best is not None else [])
    head = "| | " + " | ".join(name for name, _ in columns) + " |"

    def row(label: str, cell: Callable[[RegimenPrediction], str]) -> str:
        return f"| {label} | " + " | ".join(cell(p) for _, p in columns) + " |"

    detail = [
        head,
        "|---" * (len(columns) + 1) + "|",
        row("Regimen", lambda p: p.regimen.describe()),
        row(
            "AUC24 mg·h/L (90% interval)",
            lambda p: f"{p.auc24_ss_mg_h_l:.0f} ({p.auc24_ss_low:.0f}-{p.auc24_ss_high:.0f})",
        ),
        row(f"P(AUC24 {low:.0f}-{high:.0f})", lambda p: _pct(p.probability_in_target)),
        row(f"P(AUC24 > {high:.0f})", lambda p: _pct(p.probability_above_target)),
        row("Peak / trough at steady state, mg/L", _peak_trough),
        "",
    ]
    nd = r.next_dose
    if nd is not None and nd.rounded_mg > 0 and best is not None:
        when = nd.start.isoformat(timespec="minutes")
        wait_h = (nd.start - r.as_of).total_seconds() / 3600.0
        due = "now" if wait_h < 0.25 else f"at {when} (in {wait_h:.1f} h)"
        level = (
            f", when the predicted level is {nd.level_at_start_mg_l:.1f} mg/L"
            if nd.level_at_start_mg_l is not None and nd.level_at_start_mg_l >= 0.05
            else ""
        )
        detail.append(f"**Next dose**: {nd.rounded_mg:g} mg over {nd.duration_h:g} h {due}{level}.")
    if best is not None and len(r.recommendations) > 1:
        detail.append(
            "Also within the consensus rules: "
            + "; ".join(
                f"{alt.regimen.short()} (AUC24 {alt.auc24_ss_mg_h_l:.0f}, "
                f"{_pct(alt.probability_in_target)} in target, "
                f"{_pct(alt.probability_above_target)} > {high:.0f})"
                for alt in r.recommendations[1:4]
            )
            + "."
        )
    cov = r.covariates
    ip = r.individual_parameters
    said = md_text(cov.dialysis_source)
    dialysis = f"on dialysis ({said})" if cov.dialysis else said
    detail += [
        "",
        "**The patient's PK twin**"
        + (" (a priori: no measured levels)" if r.a_priori else " (fitted to measured levels)"),
        f"- Weight {cov.weight_kg:.1f} kg ({md_text(cov.weight_source)}); creatinine "
        f"{cov.creatinine_mg_dl:.2f} mg/dL ({md_text(cov.creatinine_source)}); CrCl "
        f"{cov.crcl_ml_min:.0f} mL/min (Cockcroft-Gault, the model's rules)",
        f"- Dialysis: {dialysis}",
        f"- Individual CL {ip.cl_l_h:.2f} L/h, Vc {ip.vc_l:.1f} L, Q {ip.q_l_h:.2f} L/h, "
        f"Vp {ip.vp_l:.1f} L",
    ]
    fit = [
        f"| {lv.time.isoformat(timespec='minutes')} | {lv.kind} | {lv.observed_mg_l:.1f} | "
        f"{lv.predicted_mg_l:.1f} | {md_text(lv.source)} |"
        for lv in r.levels
    ]
    if fit:
        detail += [
            "",
            "| Time | Kind | Observed mg/L | Fitted mg/L | Source |",
            "|---|---|---|---|---|",
            *fit,
        ]
    notes = (*draft.notes, *r.notes)
    detail += [
        "",
        *(f"- {md_text(n)}" for n in notes),
        *([""] if notes else []),
        f"Target AUC24 {low:.0f}-{high:.0f} mg·h/L and regimen rules: 2020 ASHP/IDSA/PIDS/SIDP "
        f"consensus (Rybak et al., AJHP 2020). **Model**: {r.model_name} v{r.model_version}.",
    ]
    suggestions = None
    if not on_target and best is not None:
        suggestions = [
            Suggestion(
                label=f"Change to {best.regimen.describe()}"[:200],
                uuid=str(uuid.uuid4()),
                isRecommended=True,
                actions=[
                    Action(
                        type="update",
                        description=f"Vancomycin {best.regimen.describe()}",
                        resource=recommended_request(draft.resource, best.regimen),
                    )
                ],
            )
        ]
    return Card(
        uuid=str(uuid.uuid4()),
        summary=_summary(draft, current, best, on_target, r.target_auc),
        detail="\n".join(detail),
        indicator="info" if on_target else "warning",
        source=source,
        suggestions=suggestions,
        selectionBehavior="at-most-one" if suggestions else None,
        overrideReasons=list(OVERRIDE_REASONS),
        links=[link],
    )


def dose_simulator_context(patient_id: str, twin_version: int) -> str:
    """appContext of the card's SMART link: the app opens on the dose simulator."""
    return json.dumps(
        {"patient": patient_id, "twinVersion": twin_version, "view": "dose-simulator"},
        separators=(",", ":"),
    )
