"""Medication classes from RxNorm codes, with an ingredient-name fallback.

Ingredient RXCUIs are listed with the product RXCUIs (SCD/SBD) actually seen in the
shared Synthea corpus and in carebundle's terminology, because a MedicationRequest
carries the product code, not the ingredient.  When no listed code matches, the
display/text is searched for an ingredient name (case-insensitive) and the match is
marked as such, so a card can say the class was inferred from text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

MedicationClass = Literal["antihypertensive", "statin", "vancomycin"]
MatchedBy = Literal["rxnorm", "text"]

# Antihypertensive agents: the first-line and secondary oral classes of the 2017
# ACC/AHA high blood pressure guideline (Whelton et al., Hypertension 2018;71:e13,
# Tables 18-19): thiazide-type diuretics, ACE inhibitors, ARBs, dihydropyridine and
# non-dihydropyridine CCBs, beta blockers, aldosterone antagonists, alpha-1 blockers,
# central alpha-2 agonists, direct vasodilators.  Loop diuretics are left out: in the
# data they are given for volume overload (heart failure), not to lower blood pressure.
ANTIHYPERTENSIVE_INGREDIENTS: Final[Mapping[str, str]] = {
    "29046": "lisinopril",
    "3827": "enalapril",
    "35296": "ramipril",
    "1998": "captopril",
    "18867": "benazepril",
    "17767": "amlodipine",
    "7417": "nifedipine",
    "4316": "felodipine",
    "3443": "diltiazem",
    "11170": "verapamil",
    "5487": "hydrochlorothiazide",
    "2409": "chlorthalidone",
    "5764": "indapamide",
    "52175": "losartan",
    "69749": "valsartan",
    "83818": "irbesartan",
    "321064": "olmesartan",
    "214354": "candesartan",
    "73494": "telmisartan",
    "6918": "metoprolol",
    "20352": "carvedilol",
    "1202": "atenolol",
    "19484": "bisoprolol",
    "8787": "propranolol",
    "31555": "nebivolol",
    "6185": "labetalol",
    "9997": "spironolactone",
    "298869": "eplerenone",
    "49276": "doxazosin",
    "2599": "clonidine",
    "5470": "hydralazine",
}
ANTIHYPERTENSIVE_PRODUCTS: Final[Mapping[str, str]] = {
    "314076": "lisinopril 10 MG Oral Tablet",  # carebundle
    "314077": "lisinopril 20 MG Oral Tablet",  # carebundle
    "197361": "amlodipine 5 MG Oral Tablet",  # Synthea, carebundle
    "308135": "amlodipine 10 MG Oral Tablet",  # carebundle
    "310798": "hydrochlorothiazide 25 MG Oral Tablet",  # carebundle
    "316049": "Hydrochlorothiazide 25 MG",  # Synthea
    "979492": "losartan potassium 50 MG Oral Tablet",  # carebundle
    "200032": "carvedilol 12.5 MG Oral Tablet",  # carebundle
    "866414": "24 HR metoprolol succinate 100 MG Extended Release Oral Tablet [Toprol]",
    "897718": "Verapamil Hydrochloride 40 MG",  # Synthea
}

# Statins (HMG-CoA reductase inhibitors), 2018 AHA/ACC cholesterol guideline Table 3.
STATIN_INGREDIENTS: Final[Mapping[str, str]] = {
    "83367": "atorvastatin",
    "36567": "simvastatin",
    "301542": "rosuvastatin",
    "42463": "pravastatin",
    "6472": "lovastatin",
    "41127": "fluvastatin",
    "861634": "pitavastatin",
}
STATIN_PRODUCTS: Final[Mapping[str, str]] = {
    "312961": "simvastatin 20 MG Oral Tablet",  # Synthea, carebundle
    "316672": "Simvastatin 10 MG",  # Synthea (sic "Simvistatin" in its display)
    "617310": "atorvastatin 20 MG Oral Tablet",  # carebundle
    "617311": "atorvastatin 40 MG Oral Tablet",  # carebundle
    "259255": "atorvastatin 80 MG Oral Tablet",
    "859747": "rosuvastatin calcium 10 MG Oral Tablet",  # carebundle
}

# Vancomycin ingredient RXCUI 11124 (docs/clinical.md).
VANCOMYCIN_INGREDIENTS: Final[Mapping[str, str]] = {"11124": "vancomycin"}

_CLASS_CODES: Final[Mapping[MedicationClass, frozenset[str]]] = {
    "antihypertensive": frozenset(ANTIHYPERTENSIVE_INGREDIENTS)
    | frozenset(ANTIHYPERTENSIVE_PRODUCTS),
    "statin": frozenset(STATIN_INGREDIENTS) | frozenset(STATIN_PRODUCTS),
    "vancomycin": frozenset(VANCOMYCIN_INGREDIENTS),
}


def _names_pattern(names: Iterable[str]) -> re.Pattern[str]:
    return re.compile(r"\b(" + "|".join(sorted(set(names))) + r")\b", re.IGNORECASE)


_CLASS_NAMES: Final[Mapping[MedicationClass, re.Pattern[str]]] = {
    "antihypertensive": _names_pattern(ANTIHYPERTENSIVE_INGREDIENTS.values()),
    # Synthea misspells simvastatin as "Simvistatin"; accept that spelling too.
    "statin": _names_pattern([*STATIN_INGREDIENTS.values(), "simvistatin"]),
    "vancomycin": _names_pattern(VANCOMYCIN_INGREDIENTS.values()),
}


@dataclass(frozen=True, slots=True)
class ClassMatch:
    """One medication class a product belongs to, and how that was decided."""

    medication_class: MedicationClass
    matched_by: MatchedBy
    rxnorm: str | None
    note: str


#: Classes by (RxNorm codes, texts): the reader classes every medication resource and the
#: twin classes its records again, and a patient's products repeat (the name patterns'
#: searches were ~6 us a medication). The classes depend on the arguments alone and the
#: matches are frozen, so a remembered answer is the one the search would give. Short
#: texts only, cleared when full, so memory stays flat whatever a payload holds.
_CLASSES: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[ClassMatch, ...]] = {}
_CLASSES_MAX: Final = 4096
_CLASSES_TEXT_MAX: Final = 512


def classify_medication(
    rxnorm_codes: tuple[str, ...], texts: tuple[str, ...]
) -> tuple[ClassMatch, ...]:
    """Classes of a medication given its RxNorm codes and its display/text strings."""
    key = (rxnorm_codes, texts)
    try:
        return _CLASSES[key]
    except KeyError:
        pass
    except TypeError:  # an unhashable argument (never the readers'): classed, not kept
        return _classify(rxnorm_codes, texts)
    found = _classify(rxnorm_codes, texts)
    if all(isinstance(t, str) for t in texts) and sum(map(len, texts)) <= _CLASSES_TEXT_MAX:
        if len(_CLASSES) >= _CLASSES_MAX:
            _CLASSES.clear()
        _CLASSES[key] = found
    return found


def _classify(rxnorm_codes: tuple[str, ...], texts: tuple[str, ...]) -> tuple[ClassMatch, ...]:
    matches: list[ClassMatch] = []
    for cls, codes in _CLASS_CODES.items():
        code = next((c for c in rxnorm_codes if c in codes), None)
        if code is not None:
            matches.append(ClassMatch(cls, "rxnorm", code, f"RxNorm {code}"))
            continue
        for text in texts:
            found = _CLASS_NAMES[cls].search(text)
            if found is not None:
                matches.append(
                    ClassMatch(
                        cls,
                        "text",
                        rxnorm_codes[0] if rxnorm_codes else None,
                        f"class inferred from the text {found.group(0)!r}; no listed RxNorm code",
                    )
                )
                break
    return tuple(matches)
