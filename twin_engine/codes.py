"""LOINC codes the twin reads, grouped into canonical quantities, and smoking codes.

The LOINC codes are the ones named in docs/clinical.md, checked against the shared
Synthea R4 corpus and carebundle output (see tests/twin_engine/test_codes.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

LOINC_SYSTEM: Final = "http://loinc.org"
SNOMED_SYSTEM: Final = "http://snomed.info/sct"
ICD10CM_SYSTEM: Final = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM_SYSTEM: Final = "http://www.nlm.nih.gov/research/umls/rxnorm"

QuantityName = Literal[
    "systolic_bp",
    "diastolic_bp",
    "total_cholesterol",
    "hdl_cholesterol",
    "ldl_cholesterol",
    "triglycerides",
    "creatinine",
    "egfr",
    "uacr",
    "hba1c",
    "bmi",
    "weight",
    "height",
    "heart_rate",
    "respiratory_rate",
    "spo2",
    "temperature",
    "vancomycin",
]

#: Canonical quantity -> LOINC codes, first code preferred in messages.
QUANTITY_LOINC: Final[Mapping[QuantityName, tuple[str, ...]]] = {
    "systolic_bp": ("8480-6",),
    "diastolic_bp": ("8462-4",),
    "total_cholesterol": ("2093-3",),
    "hdl_cholesterol": ("2085-9",),
    # 13457-7 calculated (Friedewald), 18262-6 direct assay, 2089-1 direct in serum/plasma.
    "ldl_cholesterol": ("13457-7", "18262-6", "2089-1"),
    "triglycerides": ("2571-8",),
    # 2160-0 serum/plasma creatinine (mass/volume), 38483-4 creatinine in blood.
    "creatinine": ("2160-0", "38483-4"),
    # Included: 33914-3 (MDRD, non-Black), 48642-3 / 48643-1 (MDRD by race), 62238-1
    # (CKD-EPI 2009), 98979-8 (CKD-EPI 2021), 69405-9 (eGFR, any method).  All are
    # reported per 1.73 m2.  Cystatin-based codes are left out: a different marker.
    "egfr": ("98979-8", "62238-1", "33914-3", "48642-3", "48643-1", "69405-9"),
    # 9318-7 and 14959-1 are albumin/creatinine ratio in urine (mass ratio); 32294-1
    # is the same ratio by a molar method and is converted through the table.
    "uacr": ("9318-7", "14959-1", "32294-1"),
    "hba1c": ("4548-4", "17856-6"),
    "bmi": ("39156-5",),
    "weight": ("29463-7",),
    "height": ("8302-2",),
    "heart_rate": ("8867-4",),
    "respiratory_rate": ("9279-1",),
    "spo2": ("59408-5", "2708-6"),
    "temperature": ("8310-5",),
    # 20578-1 vancomycin (any time), 4092-3 trough, 4090-7 peak.
    "vancomycin": ("20578-1", "4092-3", "4090-7"),
}

#: LOINC code -> canonical quantity (inverse of QUANTITY_LOINC).
LOINC_QUANTITY: Final[Mapping[str, QuantityName]] = {
    code: name for name, codes in QUANTITY_LOINC.items() for code in codes
}

#: Blood-pressure panels whose systolic/diastolic sit in `component`
#: (85354-9 BP panel; 55284-4 BP systolic and diastolic, used by Synthea).
BP_PANEL_LOINC: Final = frozenset({"85354-9", "55284-4"})

#: Tobacco smoking status (US Core Smoking Status profile).
SMOKING_STATUS_LOINC: Final = "72166-2"

#: Every Observation code whose resource the twin reads; anything else is skipped unparsed.
RELEVANT_OBSERVATION_LOINC: Final = (
    frozenset(LOINC_QUANTITY) | BP_PANEL_LOINC | {SMOKING_STATUS_LOINC}
)

SmokingStatus = Literal["current", "former", "never", "unknown"]

#: SNOMED CT smoking status values, from the US Core Smoking Status value set
#: (ONC 2015 Edition Common Clinical Data Set, LOINC 72166-2 answers).
SMOKING_SNOMED: Final[Mapping[str, SmokingStatus]] = {
    "449868002": "current",  # Current every day smoker
    "428041000124106": "current",  # Current some day smoker
    "77176002": "current",  # Smoker, current status unknown
    "65568007": "current",  # Cigarette smoker
    "428071000124103": "current",  # Current heavy tobacco smoker
    "428061000124105": "current",  # Current light tobacco smoker
    "8517006": "former",  # Ex-smoker
    "266919005": "never",  # Never smoked tobacco
    "266927001": "unknown",  # Tobacco smoking consumption unknown
}
