"""Procedure concept sets: what a performed Procedure tells the twin.

Two concepts: coronary or other arterial revascularisation (clinical ASCVD in the 2018
AHA/ACC cholesterol guideline, Grundy et al., Circulation 2019;139:e1082, section 4.1:
"coronary or other arterial revascularization") and dialysis (kidney failure treated
by kidney replacement therapy; KDIGO 2024 CKD guideline, G5D).

SNOMED CT codes are exact; ICD-10-PCS and CPT codes match by prefix or range, as
procedure coding systems group a root operation and body part in the leading
characters (ICD-10-PCS 2024 tables 021, 027, 047, 5A1D).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Final, Literal

from twin_engine.codes import SNOMED_SYSTEM

ProcedureConcept = Literal["revascularisation", "dialysis"]

ICD10PCS_SYSTEM: Final = "http://www.cms.gov/Medicare/Coding/ICD10"
CPT_SYSTEM: Final = "http://www.ama-assn.org/go/cpt"

PROCEDURE_SNOMED: Final[Mapping[ProcedureConcept, frozenset[str]]] = {
    "revascularisation": frozenset(
        {
            "415070008",  # Percutaneous coronary intervention
            "11101003",  # Percutaneous transluminal coronary angioplasty
            "36969009",  # Placement of stent in coronary artery
            "232717009",  # Coronary artery bypass grafting
            "81266008",  # Heart revascularization
            "18174006",  # Carotid endarterectomy (revascularisation of another artery)
        }
    ),
    "dialysis": frozenset(
        {
            "108241001",  # Dialysis procedure
            "265764009",  # Renal dialysis
            "302497006",  # Hemodialysis
            "71192002",  # Peritoneal dialysis
        }
    ),
}

#: ICD-10-PCS prefixes: 0210-0213 bypass coronary artery (CABG), 0270-0273 dilation of
#: coronary artery (PCI, with or without stent), 5A1D dialysis (performance of urinary
#: filtration). Codes are matched without the dot ICD-10-PCS does not use.
PROCEDURE_ICD10PCS_PREFIXES: Final[Mapping[ProcedureConcept, tuple[str, ...]]] = {
    "revascularisation": ("0210", "0211", "0212", "0213", "0270", "0271", "0272", "0273"),
    "dialysis": ("5A1D",),
}

#: CPT ranges (AMA CPT 2024): 92920-92944 percutaneous coronary interventions,
#: 33510-33536 coronary artery bypass, 37220-37235 lower-extremity revascularisation;
#: 90935-90947 haemodialysis and other dialysis procedures.
PROCEDURE_CPT_RANGES: Final[Mapping[ProcedureConcept, tuple[tuple[int, int], ...]]] = {
    "revascularisation": ((92920, 92944), (33510, 33536), (37220, 37235)),
    "dialysis": ((90935, 90947),),
}


def procedure_concepts_for(system: str | None, code: str) -> tuple[ProcedureConcept, ...]:
    """The concepts one coded procedure belongs to (usually zero or one)."""
    # Remembered by the code: every Procedure of a payload is matched twice (relevance,
    # then the twin), a code against every concept's prefixes or ranges.
    if system in (SNOMED_SYSTEM, ICD10PCS_SYSTEM, CPT_SYSTEM):
        return _procedure_concepts_for(system, code)
    return ()


@lru_cache(maxsize=4096)
def _procedure_concepts_for(system: str, code: str) -> tuple[ProcedureConcept, ...]:
    text = code.strip().upper()
    if system == SNOMED_SYSTEM:
        return tuple(sorted(c for c, codes in PROCEDURE_SNOMED.items() if text in codes))
    if system == ICD10PCS_SYSTEM:
        return tuple(
            sorted(
                c
                for c, prefixes in PROCEDURE_ICD10PCS_PREFIXES.items()
                if any(text.startswith(p) for p in prefixes)
            )
        )
    if system == CPT_SYSTEM and text.isdigit():
        number = int(text)
        return tuple(
            sorted(
                c
                for c, ranges in PROCEDURE_CPT_RANGES.items()
                if any(low <= number <= high for low, high in ranges)
            )
        )
    return ()
