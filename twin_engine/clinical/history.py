"""What the record says the patient has had: clinical ASCVD, heart failure, pregnancy,
kidney failure. Each rule is one function that returns the evidence it found, or None.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from twin_engine.twin import ConditionEntry, Twin

#: Verification states that establish a diagnosis (FHIR condition-ver-status). An absent
#: status counts, as US Core problem lists often omit it; provisional, differential and
#: unconfirmed diagnoses do not decide a guideline group.
_ESTABLISHED: Final = frozenset({None, "confirmed"})
_ACTIVE: Final = frozenset({None, "active", "recurrence", "relapse"})

#: A pregnancy with no abatement is over 44 weeks after its onset: term is 40 weeks and
#: post-term ends at 42 (ACOG Committee Opinion 579, 2013); two weeks of margin (ours).
PREGNANCY_MAX: Final = timedelta(weeks=44)
#: A dialysis Procedure counts as ongoing dialysis for 30 days (the rule the dosing
#: service uses, twin_engine/pk/history.py; project choice).
DIALYSIS_RECENT: Final = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Finding:
    """One fact from the record: what, since when, which resource."""

    what: str
    since: datetime | None
    source: str
    code: str


def _established(e: ConditionEntry) -> bool:
    return e.verification_status in _ESTABLISHED


def _start(e: ConditionEntry) -> datetime | None:
    return e.onset or e.recorded


def _plain(display: str | None, fallback: str) -> str:
    text = (display or fallback).split(" (")[0].strip() or fallback
    if len(text) > 40:  # a long display is cut at a word: "atherosclerotic heart disease"
        text = text[:40].rsplit(" ", 1)[0]
    return text if text.isupper() else text.lower()  # keep acronyms: PCI, CABG


def _active_on(e: ConditionEntry, instant: datetime) -> bool:
    start = _start(e)
    if e.clinical_status not in _ACTIVE or (start is not None and start > instant):
        return False
    return e.abatement is None or e.abatement > instant


def clinical_ascvd(twin: Twin, instant: datetime) -> Finding | None:
    """Clinical ASCVD: MI, ACS, angina, coronary disease, stroke/TIA, PAD (Conditions,
    active or resolved) or a coronary/arterial revascularisation (Procedures).

    2018 AHA/ACC cholesterol guideline (Grundy et al., Circulation 2019;139:e1082),
    section 4.1: these patients are in secondary prevention, where no primary-prevention
    risk score applies. The earliest event is named.
    """
    found: list[Finding] = []
    for e in twin.conditions.get("ascvd", ()):
        start = _start(e)
        if _established(e) and (start is None or start <= instant):
            found.append(Finding(_plain(e.display, "ASCVD"), start, e.source, e.code))
    for p in twin.procedures.get("revascularisation", ()):
        if p.performed is None or p.performed <= instant:
            what = _plain(p.display, "revascularisation")
            found.append(Finding(what, p.performed, p.source, p.code))
    if not found:
        return None
    return min(found, key=lambda f: (f.since is None, f.since or instant, f.source))


def known_heart_failure(twin: Twin, instant: datetime) -> Finding | None:
    """An established, active heart failure diagnosis. PREVENT was derived in adults
    without cardiovascular disease, heart failure included (Khan et al., Circulation
    2024;149:430, Methods), so its heart-failure risk is not for them."""
    for e in twin.conditions.get("heart_failure", ()):
        if _established(e) and _active_on(e, instant):
            return Finding(_plain(e.display, "heart failure"), _start(e), e.source, e.code)
    return None


def pregnant(twin: Twin, instant: datetime) -> Finding | None:
    """An active pregnancy on the date: onset within 44 weeks and not abated."""
    for e in reversed(twin.conditions.get("pregnancy", ())):
        start = _start(e)
        if not (_established(e) and _active_on(e, instant)):
            continue
        if start is not None and instant - start > PREGNANCY_MAX:
            continue
        return Finding("pregnancy", start, e.source, e.code)
    return None


def kidney_failure(twin: Twin, instant: datetime) -> Finding | None:
    """Kidney failure: ESRD, CKD G5 or dialysis dependence recorded as an active
    Condition, or a dialysis Procedure in the last 30 days. KFRE predicts this outcome,
    so it no longer applies; the USPSTF 2022 statin recommendation excludes it."""
    for e in twin.conditions.get("kidney_failure", ()):
        if _established(e) and _active_on(e, instant):
            return Finding(_plain(e.display, "kidney failure"), _start(e), e.source, e.code)
    for p in reversed(twin.procedures.get("dialysis", ())):
        if p.performed is not None and instant - DIALYSIS_RECENT <= p.performed <= instant:
            return Finding("dialysis", p.performed, p.source, p.code)
    return None
