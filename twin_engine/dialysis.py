"""Is the patient on dialysis today? A small named rule over the FHIR record.

Dialysis changes vancomycin clearance and volume markedly (Goti et al., Ther Drug Monit
2018;40:212: CL x 0.7, V1 x 0.5 on haemodialysis), so the dosing service must know. Most
inpatients have no dialysis record at all, because they are not on dialysis: when nothing in
the record says dialysis, the patient is taken as not on dialysis, and the card says so in one
line (the clinician sees the assumption and can correct the record).

Rule ``on_dialysis`` (any of):

1. an active Condition of end-stage renal disease or dependence on dialysis (ESRD is kidney
   failure treated by dialysis or transplant; ICD-10-CM N18.6 asks for Z99.2 beside it, and
   the card names the record so a transplant patient coded N18.6 is visible);
2. a dialysis Procedure performed in the last 30 days;
3. an Encounter for dialysis in the last 30 days, or in progress (the hook's own encounter).

A refuted, resolved or inactive Condition, and records entered in error, say nothing. Codes:

* ICD-10-CM (https://www.cms.gov/medicare/coding-billing/icd-10-codes, FY2024): N18.6
  end stage renal disease; Z99.2 dependence on renal dialysis; Z91.15 (Z91.151, Z91.158)
  patient's noncompliance with renal dialysis; Z49.01, Z49.02 encounter for fitting and
  adjustment of dialysis catheter; Z49.31, Z49.32 encounter for adequacy testing for
  haemodialysis / peritoneal dialysis (Z49.0, Z49.3 their parents).
* SNOMED CT conditions: 46177005 end-stage renal disease; 236435004 end stage renal failure
  on dialysis; 714152005 chronic kidney disease stage 5 on dialysis; 105502003 dependence on
  renal dialysis.
* SNOMED CT procedures (also as Encounter.type or reasonCode): 108241001 dialysis procedure;
  265764009 renal dialysis; 302497006 haemodialysis; 71192002 peritoneal dialysis;
  714749008 continuous renal replacement therapy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from twin_engine.errors import TwinEngineError
from twin_engine.fhir.shape import fhir_datetime

SNOMED: Final = "http://snomed.info/sct"
ICD10CM: Final = "http://hl7.org/fhir/sid/icd-10-cm"

DIALYSIS_CONDITION_ICD10: Final = frozenset(
    {"N18.6", "Z99.2", "Z91.15", "Z91.151", "Z91.158"}
    | {"Z49.0", "Z49.01", "Z49.02", "Z49.3", "Z49.31", "Z49.32"}
)
DIALYSIS_CONDITION_SNOMED: Final = frozenset({"46177005", "236435004", "714152005", "105502003"})
DIALYSIS_PROCEDURE_SNOMED: Final = frozenset(
    {"108241001", "265764009", "302497006", "71192002", "714749008"}
)
#: A procedure or encounter counts for 30 days: a patient on maintenance haemodialysis is
#: dialysed 3 times a week, so a month without any session means dialysis has stopped
#: (project choice; the issue's "last 30 days").
RECENT: Final = timedelta(days=30)
NOT_ON_DIALYSIS: Final = "no dialysis recorded in the last 30 days"


class DialysisRecordError(TwinEngineError):
    """A record that codes dialysis cannot be read (its status or date is malformed)."""


@dataclass(frozen=True, slots=True)
class DialysisStatus:
    """The rule's answer and the records behind it (empty when nothing says dialysis)."""

    on_dialysis: bool
    evidence: tuple[str, ...]
    statement: str  # one line for the card


def _ref(res: Mapping[str, Any]) -> str:
    return f"{res.get('resourceType', 'Resource')}/{res.get('id', '?')}"


def _codings(concepts: Iterable[object]) -> list[Mapping[str, Any]]:
    out: list[Mapping[str, Any]] = []
    for concept in concepts:
        if not isinstance(concept, Mapping):
            continue
        codings = concept.get("coding")
        if isinstance(codings, list):
            out.extend(c for c in codings if isinstance(c, Mapping))
    return out


def _hit(concepts: Iterable[object], icd10: frozenset[str], snomed: frozenset[str]) -> str | None:
    for c in _codings(concepts):
        code, system = str(c.get("code")), c.get("system")
        if (system == ICD10CM and code in icd10) or (system == SNOMED and code in snomed):
            return code
    return None


def _concepts(res: Mapping[str, Any]) -> list[object]:
    kind = res.get("resourceType")
    if kind == "Encounter":
        types = res.get("type")
        reasons = res.get("reasonCode")
        return [
            *(types if isinstance(types, list) else []),
            *(reasons if isinstance(reasons, list) else []),
        ]
    return [res.get("code")]


def dialysis_code(res: Mapping[str, Any]) -> str | None:
    """The dialysis code a Condition, Procedure or Encounter carries, if any."""
    kind = res.get("resourceType")
    if kind == "Condition":
        # A problem-list entry coded as the procedure ("haemodialysis") says the same.
        return _hit(
            _concepts(res),
            DIALYSIS_CONDITION_ICD10,
            DIALYSIS_CONDITION_SNOMED | DIALYSIS_PROCEDURE_SNOMED,
        )
    if kind in ("Procedure", "Encounter"):
        return _hit(_concepts(res), DIALYSIS_CONDITION_ICD10 - {"N18.6"}, DIALYSIS_PROCEDURE_SNOMED)
    return None


def _time(text: object, where: str) -> datetime:
    return fhir_datetime(text, f"{where} (dialysis record)", "date", DialysisRecordError)


def _status_codes(concept: object) -> set[str]:
    return {str(c.get("code")) for c in _codings([concept])}


def _says_dialysis(res: Mapping[str, Any], as_of: datetime) -> bool:
    where = _ref(res)
    kind = res.get("resourceType")
    if kind == "Condition":
        verification = _status_codes(res.get("verificationStatus"))
        clinical = _status_codes(res.get("clinicalStatus"))
        if verification & {"entered-in-error", "refuted"}:
            return False
        return not clinical & {"inactive", "resolved", "remission"}
    if res.get("status") in ("entered-in-error", "not-done", "cancelled"):
        return False
    if kind == "Encounter" and res.get("status") == "in-progress":
        return True
    field = "performedPeriod" if kind == "Procedure" else "period"
    period = res.get(field) or {}
    if not isinstance(period, Mapping):
        raise DialysisRecordError(f"{where} (dialysis record) has {field} that is not an object")
    when = res.get("performedDateTime") if kind == "Procedure" else None
    start = when or period.get("start")
    end = period.get("end") or start
    if start is None:
        raise DialysisRecordError(f"{where} (dialysis record) has no date")
    return _time(start, where) <= as_of and _time(end, where) >= as_of - RECENT


def on_dialysis(resources: Sequence[Mapping[str, Any]], *, as_of: datetime) -> DialysisStatus:
    """Rule: on dialysis when an active ESRD/dialysis Condition, or a dialysis Procedure or
    Encounter in the last 30 days, is recorded; otherwise not, and the statement says so."""
    evidence = []
    for res in resources:
        code = dialysis_code(res)
        if code is not None and _says_dialysis(res, as_of):
            evidence.append(f"{_ref(res)} ({code})")
    if evidence:
        return DialysisStatus(True, tuple(evidence), "on dialysis: " + ", ".join(evidence))
    return DialysisStatus(False, (), NOT_ON_DIALYSIS)
