"""What a hook record keeps so that replay can rebuild the call (its ``replayBasis``).

For risk services: the day the features were derived, the launch URL the cards link to
and the KFRE calibration. For dosing: the call's ``asOf`` time, the drafted order and the
PK history the dosing service read (doses, levels, covariates with their sources; never
the raw resources), or the problem that stopped it. ``cds_service.audit.replay`` holds
the contract; the pipeline writes these, replay reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from twin_engine.pk.history import DialysisEvidence, Measured, PatientHistory
from twin_engine.pk.types import DoseEvent, LevelObservation


def risk_basis(today: date, *, launch_url: str, kfre_model: str) -> dict[str, Any]:
    """The replay basis of a risk-service call."""
    return {
        "kind": "risk",
        "today": today.isoformat(),
        "appLaunchUrl": launch_url,
        "kfreModel": kfre_model,
    }


def _measured(m: Measured | None) -> dict[str, Any] | None:
    if m is None:
        return None
    return {"value": m.value, "time": m.time.isoformat(), "source": m.source}


def _unmeasured(d: Mapping[str, Any] | None) -> Measured | None:
    if d is None:
        return None
    return Measured(float(d["value"]), datetime.fromisoformat(d["time"]), str(d["source"]))


def history_to_json(h: PatientHistory) -> dict[str, Any]:
    """A PK history as the record keeps it: numbers, times and source ids only."""
    return {
        "patient": h.patient,
        "age": h.age,
        "sex": h.sex,
        "weight": _measured(h.weight),
        "creatinine": _measured(h.creatinine),
        "dialysis": {
            "status": h.dialysis.status,
            "source": h.dialysis.source,
            "note": h.dialysis.note,
        },
        "doses": [
            {
                "start": d.start.isoformat(),
                "durationH": d.duration_h,
                "amountMg": d.amount_mg,
                "source": d.source,
            }
            for d in h.doses
        ],
        "levels": [
            {
                "time": lv.time.isoformat(),
                "valueMgL": lv.value_mg_l,
                "kind": lv.kind,
                "source": lv.source,
            }
            for lv in h.levels
        ],
        "notes": list(h.notes),
    }


def history_from_json(d: Mapping[str, Any]) -> PatientHistory:
    dialysis = d["dialysis"]
    return PatientHistory(
        patient=str(d["patient"]),
        age=d["age"],
        sex=d["sex"],
        weight=_unmeasured(d["weight"]),
        creatinine=_unmeasured(d["creatinine"]),
        dialysis=DialysisEvidence(dialysis["status"], dialysis["source"], dialysis["note"]),
        doses=tuple(
            DoseEvent(
                datetime.fromisoformat(x["start"]),
                float(x["durationH"]),
                float(x["amountMg"]),
                str(x["source"]),
            )
            for x in d["doses"]
        ),
        levels=tuple(
            LevelObservation(
                datetime.fromisoformat(x["time"]), float(x["valueMgL"]), x["kind"], str(x["source"])
            )
            for x in d["levels"]
        ),
        notes=tuple(d["notes"]),
    )


def dosing_basis(
    draft: Mapping[str, Any] | None,
    history: PatientHistory | None,
    problem: str | None,
    *,
    as_of: datetime,
    model_id: str,
    launch_url: str,
) -> dict[str, Any]:
    """The replay basis of a dosing call, from what the dosing service itself read: the
    drafted order, the PK history it fitted (or the problem that stopped it before a
    history was read). Nothing is read a second time from the FHIR data."""
    basis: dict[str, Any] = {
        "kind": "dosing",
        "asOf": as_of.isoformat(),
        "appLaunchUrl": launch_url,
        "pkModel": model_id,
        "draft": dict(draft) if draft is not None else None,
        "history": history_to_json(history) if history is not None else None,
        "problem": None,
    }
    if history is None and problem is not None:
        basis["problem"] = problem
    return basis
