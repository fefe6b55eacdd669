"""Guideline rules: which statin the guideline indicates, and when to refer.

Sources:
- 2018 AHA/ACC/multisociety Guideline on the Management of Blood Cholesterol (Grundy et
  al., Circulation 2019;139:e1082), "Grundy 2019" below: the four statin benefit groups
  (section 4; Figure 1 "Top 10 take-home messages" 3-6), risk tiers (section 4.4.1).
- USPSTF 2022, Statin Use for the Primary Prevention of Cardiovascular Disease in Adults
  (JAMA 2022;328:746): grade B at 10-year risk >= 10%, C at 7.5% to < 10%, both for ages
  40-75 with at least one risk factor; I statement at 76 and over.
- KDIGO 2024 CKD guideline (Kidney Int 2024;105(4S):S117), Practice Points 2.2.1-2.2.3 and
  section 5.1: refer to nephrology at eGFR < 30 or a 5-year KFRE risk of 3%-5% or more
  (the upper end, 5%, here); KFRE in CKD G3-G5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from twin_engine.clinical.state import ClinicalState
from twin_engine.clinical.statins import INTENSITY_RANK, Intensity

StatinGroup = Literal[
    "pregnancy", "kidney-failure", "secondary", "ldl-190", "diabetes", "primary", "none"
]
StatinDecision = Literal["start", "intensify", "continue", "stop", "discuss", "individual", "none"]

#: Grundy 2019 rec. 4.1.1: high intensity for clinical ASCVD aged 75 or younger; above
#: 75, moderate or high intensity is reasonable (rec. 4.1.3).
SECONDARY_HIGH_UP_TO_AGE: Final = 75
#: Grundy 2019 section 4.2: LDL-C >= 190 mg/dL, ages 20-75, high intensity, no risk
#: estimate needed.
SEVERE_LDL_MG_DL: Final = 190.0
SEVERE_LDL_AGES: Final = (20, 75)
#: Grundy 2019 section 4.3: diabetes, ages 40-75, at least moderate intensity.
DIABETES_AGES: Final = (40, 75)
#: Grundy 2019 section 4.4.1: primary prevention 40-75 by 10-year ASCVD risk.
PRIMARY_AGES: Final = (40, 75)
BORDERLINE_RISK: Final = 0.05
INTERMEDIATE_RISK: Final = 0.075
HIGH_RISK: Final = 0.20
#: USPSTF 2022 thresholds.
USPSTF_B_RISK: Final = 0.10
USPSTF_C_RISK: Final = 0.075
USPSTF_AGES: Final = (40, 75)
#: KDIGO 2024 CKD guideline, chapter 2, Recommendation 2.2.1 and Practice Points
#: 2.2.1-2.2.3: refer at eGFR < 30 or a 5-year KFRE of 3%-5% (we use the upper end,
#: 5%); a 2-year risk > 10% calls for multidisciplinary care, > 40% for preparing
#: kidney replacement therapy.
REFER_EGFR_BELOW: Final = 30.0
REFER_KFRE_5Y: Final = 0.05
MULTIDISCIPLINARY_KFRE_2Y: Final = 0.10
KRT_PREPARATION_KFRE_2Y: Final = 0.40
KFRE_CATEGORIES: Final = frozenset({"G3a", "G3b", "G4", "G5"})


@dataclass(frozen=True, slots=True)
class StatinAdvice:
    """The benefit group, the intensity it indicates, and what to do given the current
    treatment; `why` is the basis in plain words for the card."""

    group: StatinGroup
    indicated: Intensity | None
    decision: StatinDecision
    why: str


def _in(age: float | None, ages: tuple[int, int]) -> bool:
    return age is not None and ages[0] <= age <= ages[1]


def risk_tier(risk: float) -> str:
    """Grundy 2019 section 4.4.1: low < 5%, borderline 5-7.5%, intermediate 7.5-20%, high."""
    if risk < BORDERLINE_RISK:
        return "low"
    if risk < INTERMEDIATE_RISK:
        return "borderline"
    if risk < HIGH_RISK:
        return "intermediate"
    return "high"


def _against_current(
    group: StatinGroup, indicated: Intensity, state: ClinicalState, why: str
) -> StatinAdvice:
    current = state.current_statin
    if current is None:
        return StatinAdvice(group, indicated, "start", why)
    if (
        current.intensity is not None
        and INTENSITY_RANK[current.intensity] < INTENSITY_RANK[indicated]
    ):
        return StatinAdvice(group, indicated, "intensify", why)
    return StatinAdvice(group, indicated, "continue", why)


def statin_advice(state: ClinicalState, pce_risk: float | None) -> StatinAdvice:
    """The 2018 AHA/ACC statin decision for this patient (first matching group wins).

    `pce_risk` is the untreated 10-year ASCVD risk (PCE), or None when not computed.
    """
    age = state.age_years
    on_statin = state.current_statin is not None
    if state.pregnancy is not None:
        # Grundy 2019, section 4.5.6 (women): stop a statin when pregnancy occurs.
        return StatinAdvice(
            "pregnancy", None, "stop" if on_statin else "none", "statins are not used in pregnancy"
        )
    if state.kidney_failure is not None:
        # Grundy 2019, section 4.5.3 (CKD): on dialysis, starting a statin brings no
        # benefit (III); continuing one already taken may be reasonable (IIb).
        return StatinAdvice(
            "kidney-failure",
            None,
            "continue" if on_statin else "none",
            "on dialysis or with kidney failure, starting a statin brings no proven benefit",
        )
    if state.clinical_ascvd is not None:
        high = age is None or age <= SECONDARY_HIGH_UP_TO_AGE
        indicated: Intensity = "high" if high else "moderate"
        why = (
            "clinical ASCVD: high intensity up to age 75"
            if high
            else "clinical ASCVD over 75: moderate or high intensity is reasonable"
        )
        return _against_current("secondary", indicated, state, why)
    ldl = state.untreated_ldl
    if _in(age, SEVERE_LDL_AGES) and ldl is not None and (ldl.value or 0) >= SEVERE_LDL_MG_DL:
        why = f"LDL {ldl.value:.0f} mg/dL untreated: high intensity, no risk estimate needed"
        return _against_current("ldl-190", "high", state, why)
    if state.diabetes and _in(age, DIABETES_AGES):
        return _against_current(
            "diabetes", "moderate", state, "diabetes at 40-75: at least moderate intensity"
        )
    if pce_risk is None:
        return StatinAdvice("none", None, "none", "no untreated 10-year risk")
    if age is not None and age > PRIMARY_AGES[1]:
        return StatinAdvice(
            "primary", None, "individual", "over 75, a statin is an individual decision"
        )
    if not _in(age, PRIMARY_AGES):
        return StatinAdvice("none", None, "none", "outside the ages of the risk tiers")
    tier = risk_tier(pce_risk)
    if tier == "high":
        return _against_current("primary", "high", state, "10-year risk 20% or more")
    if tier == "intermediate":
        return _against_current("primary", "moderate", state, "10-year risk 7.5% to 20%")
    if tier == "borderline":
        advice = StatinAdvice(
            "primary", None, "discuss", "borderline risk: risk-enhancing factors may favour one"
        )
        return advice if not on_statin else StatinAdvice("primary", None, "continue", advice.why)
    return StatinAdvice("primary", None, "continue" if on_statin else "none", "low risk")


def uspstf_2022_grade(
    age: float | None, risk: float | None, has_risk_factor: bool, excluded: bool
) -> Literal["B", "C", "I"] | None:
    """The USPSTF 2022 grade for starting a statin, or None when it does not apply."""
    if excluded or age is None or age < USPSTF_AGES[0]:
        return None
    if age > USPSTF_AGES[1]:
        return "I"
    if risk is None or not has_risk_factor:
        return None
    if risk >= USPSTF_B_RISK:
        return "B"
    if risk >= USPSTF_C_RISK:
        return "C"
    return None


def kfre_applies(state: ClinicalState) -> bool:
    """KFRE (Tangri 2011) is for chronic CKD G3-G5 not yet at kidney failure, at steady state."""
    k = state.kidney
    return (
        state.aki is None
        and state.kidney_failure is None
        and k.chronic
        and k.g_category in KFRE_CATEGORIES
    )


def kidney_failure_care(kfre_2y: float) -> str | None:
    """KDIGO 2024 PP 2.2.3: what a 2-year kidney failure risk calls for, if anything."""
    if kfre_2y > KRT_PREPARATION_KFRE_2Y:
        return "prepare for kidney replacement therapy (2-year risk over 40%)"
    if kfre_2y > MULTIDISCIPLINARY_KFRE_2Y:
        return "multidisciplinary care (2-year risk over 10%)"
    return None


def refer_to_nephrology(egfr: float | None, kfre_5y: float | None) -> bool:
    """KDIGO 2024 PP 2.2.1-2.2.3: eGFR < 30, or 5-year kidney failure risk >= 5%."""
    return (egfr is not None and egfr < REFER_EGFR_BELOW) or (
        kfre_5y is not None and kfre_5y >= REFER_KFRE_5Y
    )
