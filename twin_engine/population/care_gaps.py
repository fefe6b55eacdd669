"""Care gaps on one twin: small named rules, each citing the guideline it applies.

A care gap is something a care-management team can act on for a patient of a panel:
a therapy the guideline indicates and the record does not show, or a test the
guideline asks for that is missing or overdue. Each rule reads only the twin's
derived features as of the run's date (and, for the statin rule, the 10-year ASCVD
risk the service computed on the same twin), and says why in one line.

These are population-level flags for outreach, not orders: a patient may have a
documented reason (intolerance, shared decision) that the FHIR data does not carry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from twin_engine.derive import FeatureSet
from twin_engine.features import Feature

GapKind = Literal[
    "statin-indicated-not-on-statin",
    "ckd-without-uacr",
    "lipids-overdue",
    "kidney-function-overdue",
    "hba1c-overdue",
]
GAP_KINDS: Final[tuple[GapKind, ...]] = (
    "statin-indicated-not-on-statin",
    "ckd-without-uacr",
    "lipids-overdue",
    "kidney-function-overdue",
    "hba1c-overdue",
)

# 2018 AHA/ACC cholesterol guideline (Grundy et al., Circulation 2019;139:e1082):
#: section 4.2, rec. 1: primary severe hypercholesterolaemia, LDL-C >= 190 mg/dL, ages 20-75.
SEVERE_LDL_MG_DL: Final = 190.0
SEVERE_LDL_AGE_YEARS: Final = (20.0, 75.0)
#: section 4.3, rec. 1: diabetes mellitus, ages 40-75 (moderate-intensity statin).
DIABETES_AGE_YEARS: Final = (40.0, 75.0)
#: section 4.4.1, rec. 5 and Figure 2: primary prevention, ages 40-75, LDL-C 70-189 mg/dL,
#: 10-year ASCVD risk (Pooled Cohort Equations) >= 7.5% (intermediate or high risk).
PRIMARY_PREVENTION_AGE_YEARS: Final = (40.0, 75.0)
PRIMARY_PREVENTION_LDL_MG_DL: Final = (70.0, 189.0)
PRIMARY_PREVENTION_RISK: Final = 0.075
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


def statin_benefit_group(features: FeatureSet, pce_risk_10y_ascvd: float | None) -> str | None:
    """The 2018 AHA/ACC statin benefit group the patient is in, or None."""
    age = _value(features.get("age_years"))
    ldl = _value(features.get("ldl_cholesterol_mg_dl"))
    if _flag(features, "clinical_ascvd"):
        return "clinical ASCVD (secondary prevention, Grundy 2019 section 4.1)"
    if ldl is not None and ldl >= SEVERE_LDL_MG_DL and _between(age, SEVERE_LDL_AGE_YEARS):
        return f"LDL-C {ldl:.0f} mg/dL >= 190 (Grundy 2019 section 4.2)"
    if _flag(features, "diabetes") and _between(age, DIABETES_AGE_YEARS):
        return "diabetes, age 40-75 (Grundy 2019 section 4.3)"
    if (
        _between(age, PRIMARY_PREVENTION_AGE_YEARS)
        and _between(ldl, PRIMARY_PREVENTION_LDL_MG_DL)
        and pce_risk_10y_ascvd is not None
        and pce_risk_10y_ascvd >= PRIMARY_PREVENTION_RISK
    ):
        return (
            f"10-year ASCVD risk {100 * pce_risk_10y_ascvd:.1f}% >= 7.5%, age 40-75, "
            "LDL-C 70-189 mg/dL (Grundy 2019 section 4.4.1)"
        )
    return None


def statin_indicated_not_on_statin(
    features: FeatureSet, pce_risk_10y_ascvd: float | None
) -> CareGap | None:
    """In a statin benefit group (2018 AHA/ACC) and no active statin on the record."""
    if _flag(features, "statin"):
        return None
    group = statin_benefit_group(features, pce_risk_10y_ascvd)
    if group is None:
        return None
    return CareGap("statin-indicated-not-on-statin", f"statin benefit group: {group}; no statin")


def ckd_without_uacr(features: FeatureSet, _risk: float | None = None) -> CareGap | None:
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


def lipids_overdue(features: FeatureSet, _risk: float | None = None) -> CareGap | None:
    """Age 40-75 and no lipid panel in 5 years (Grundy 2019: reassess every 4-6 years)."""
    if not _between(_value(features.get("age_years")), LIPID_SCREEN_AGE_YEARS):
        return None
    when = _overdue(features.get("total_cholesterol_mg_dl")) or _overdue(
        features.get("hdl_cholesterol_mg_dl")
    )
    return None if when is None else CareGap("lipids-overdue", f"lipid panel overdue ({when})")


def kidney_function_overdue(features: FeatureSet, _risk: float | None = None) -> CareGap | None:
    """Diabetes or CKD and no creatinine in a year (KDIGO 2012 rec. 2.1.3; ADA 2024 11.1a)."""
    egfr = features.get("egfr_ml_min_1_73m2")
    ckd = egfr.usable and egfr.value is not None and egfr.value < CKD_EGFR_BELOW
    if not (ckd or _flag(features, "diabetes")):
        return None
    when = _overdue(features.get("creatinine_mg_dl"))
    return None if when is None else CareGap("kidney-function-overdue", f"creatinine ({when})")


def hba1c_overdue(features: FeatureSet, _risk: float | None = None) -> CareGap | None:
    """Diabetes and no HbA1c in a year (ADA Standards of Care 2024, rec. 6.1)."""
    if not _flag(features, "diabetes"):
        return None
    when = _overdue(features.get("hba1c_percent"))
    return None if when is None else CareGap("hba1c-overdue", f"HbA1c ({when})")


RULES: Final[tuple[Callable[[FeatureSet, float | None], CareGap | None], ...]] = (
    statin_indicated_not_on_statin,
    ckd_without_uacr,
    lipids_overdue,
    kidney_function_overdue,
    hba1c_overdue,
)


def care_gaps(features: FeatureSet, pce_risk_10y_ascvd: float | None) -> tuple[CareGap, ...]:
    """Every rule's gap for this patient, in rule order."""
    return tuple(g for rule in RULES if (g := rule(features, pce_risk_10y_ascvd)) is not None)
