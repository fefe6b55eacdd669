"""Care gaps on one twin: small named rules, each citing the guideline it applies.

A care gap is something a care-management team can act on for a patient of a panel:
a therapy the guideline indicates and the record does not show, or a test the
guideline asks for that is missing or overdue. Each rule reads only the twin's
derived features as of the run's date, and the statin rules read the 2018 AHA/ACC
decision the cards make (``twin_engine.clinical.guidelines.statin_advice``: benefit
groups, untreated risk tier, current statin and its intensity), so the gap list and
the cards cannot disagree; each gap says why in one line.

These are population-level flags for outreach, not orders: a patient may have a
documented reason (intolerance, shared decision) that the FHIR data does not carry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, get_args

from twin_engine.clinical.guidelines import StatinAdvice
from twin_engine.derive import FeatureSet
from twin_engine.features import Feature

GapKind = Literal[
    "statin-indicated-not-on-statin",
    "statin-below-indicated-intensity",
    "ckd-without-uacr",
    "lipids-overdue",
    "kidney-function-overdue",
    "hba1c-overdue",
]
#: The kinds in their declared order (the Literal is the one list of them).
GAP_KINDS: Final[tuple[GapKind, ...]] = get_args(GapKind)

#: CKD by eGFR < 60 mL/min/1.73 m2 (G3a-G5; KDIGO 2024, Kidney Int 2024;105(4S):S117,
#: chapter 1); KDIGO 2012 rec. 2.1.3 (Kidney Int Suppl 2013;3:1): assess GFR and
#: albuminuria at least annually in CKD, so a UACR older than a year is a gap.
CKD_EGFR_BELOW: Final = 60.0
#: Lipid reassessment every 4-6 years from age 40 (Grundy 2019, section 4.4.1): the
#: twin's lipid staleness (5 years, twin_engine.derive.STALE_AFTER) marks it overdue.
LIPID_SCREEN_AGE_YEARS: Final = (40.0, 75.0)


@dataclass(frozen=True, slots=True)
class CareGap:
    """One gap: which rule, and why for this patient (values and dates, no identifiers)."""

    kind: GapKind
    reason: str


def _value(f: Feature) -> float | None:
    return f.value if f.usable else None


def _between(value: float | None, bounds: tuple[float, float]) -> bool:
    return value is not None and bounds[0] <= value <= bounds[1]


def _flag(features: FeatureSet, name: str) -> bool:
    return features.get(name).value == 1.0


def statin_indicated_not_on_statin(features: FeatureSet, advice: StatinAdvice) -> CareGap | None:
    """The 2018 AHA/ACC decision (the cards' own, ``statin_advice``) is to start a statin."""
    if advice.decision != "start":
        return None
    intensity = f"{advice.indicated} intensity; " if advice.indicated else ""
    return CareGap(
        "statin-indicated-not-on-statin",
        f"statin benefit group {advice.group}: {advice.why}; {intensity}no statin on record",
    )


def statin_below_indicated_intensity(features: FeatureSet, advice: StatinAdvice) -> CareGap | None:
    """On a statin of lower intensity than the benefit group indicates (Grundy 2019)."""
    if advice.decision != "intensify":
        return None
    return CareGap(
        "statin-below-indicated-intensity",
        f"statin benefit group {advice.group}: {advice.why}; "
        f"{advice.indicated} intensity indicated",
    )


def ckd_without_uacr(features: FeatureSet, _advice: StatinAdvice) -> CareGap | None:
    """eGFR < 60 and no urine albumin-creatinine ratio in the last year (KDIGO 2012 2.1.3)."""
    egfr = _value(features.get("egfr_ml_min_1_73m2"))
    if egfr is None or egfr >= CKD_EGFR_BELOW:
        return None
    uacr = features.get("uacr_mg_g")
    if uacr.quality == "ok":
        return None
    when = f"last {uacr.time.date().isoformat()}" if uacr.time else "none on record"
    return CareGap("ckd-without-uacr", f"eGFR {egfr:.0f} < 60 and no current UACR ({when})")


def _overdue(f: Feature) -> str | None:
    """'none on record' / 'last YYYY-MM-DD' when the value is missing or stale, else None."""
    if f.quality == "ok":
        return None
    if f.quality == "stale" and f.time is not None:
        return f"last {f.time.date().isoformat()}"
    if f.quality == "missing":
        return "none on record"
    return f"latest unusable ({f.quality})"


def lipids_overdue(features: FeatureSet, _advice: StatinAdvice) -> CareGap | None:
    """Age 40-75 and no lipid panel in 5 years (Grundy 2019: reassess every 4-6 years)."""
    if not _between(_value(features.get("age_years")), LIPID_SCREEN_AGE_YEARS):
        return None
    when = _overdue(features.get("total_cholesterol_mg_dl")) or _overdue(
        features.get("hdl_cholesterol_mg_dl")
    )
    return None if when is None else CareGap("lipids-overdue", f"lipid panel overdue ({when})")


def kidney_function_overdue(features: FeatureSet, _advice: StatinAdvice) -> CareGap | None:
    """Diabetes or CKD and no creatinine in a year (KDIGO 2012 rec. 2.1.3; ADA 2024 11.1a)."""
    egfr = features.get("egfr_ml_min_1_73m2")
    ckd = egfr.usable and egfr.value is not None and egfr.value < CKD_EGFR_BELOW
    if not (ckd or _flag(features, "diabetes")):
        return None
    when = _overdue(features.get("creatinine_mg_dl"))
    return None if when is None else CareGap("kidney-function-overdue", f"creatinine ({when})")


def hba1c_overdue(features: FeatureSet, _advice: StatinAdvice) -> CareGap | None:
    """Diabetes and no HbA1c in a year (ADA Standards of Care 2024, rec. 6.1)."""
    if not _flag(features, "diabetes"):
        return None
    when = _overdue(features.get("hba1c_percent"))
    return None if when is None else CareGap("hba1c-overdue", f"HbA1c ({when})")


RULES: Final[tuple[Callable[[FeatureSet, StatinAdvice], CareGap | None], ...]] = (
    statin_indicated_not_on_statin,
    statin_below_indicated_intensity,
    ckd_without_uacr,
    lipids_overdue,
    kidney_function_overdue,
    hba1c_overdue,
)


def care_gaps(features: FeatureSet, advice: StatinAdvice) -> tuple[CareGap, ...]:
    """Every rule's gap for this patient, in rule order."""
    return tuple(g for rule in RULES if (g := rule(features, advice)) is not None)
