"""Condition concept sets: SNOMED CT codes and ICD-10-CM prefixes per concept.

SNOMED codes are exact (those seen in the shared Synthea corpus plus their common
siblings); ICD-10-CM codes match by prefix on the dotted code, so "I48.1" covers I48.11
and I48.19.  Prediabetes (SNOMED 15777000, ICD-10-CM R73.03) and hyperglycaemia are
deliberately *not* diabetes.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Final, Literal

from twin_engine.codes import ICD10CM_SYSTEM, SNOMED_SYSTEM

Concept = Literal[
    "diabetes",
    "hypertension",
    "ckd",
    "heart_failure",
    "atrial_fibrillation",
    "ascvd",
    "myocardial_infarction",
    "cardiogenic_shock",
    "pregnancy",
    "kidney_failure",
]

CONCEPT_SNOMED: Final[Mapping[Concept, frozenset[str]]] = {
    "diabetes": frozenset(
        {
            "73211009",  # Diabetes mellitus
            "44054006",  # Diabetes mellitus type 2 (Synthea "Diabetes")
            "46635009",  # Diabetes mellitus type 1
            "368581000119106",  # Neuropathy due to type 2 diabetes mellitus
            "422034002",  # Diabetic retinopathy associated with type II diabetes mellitus
            "127013003",  # Disorder of kidney due to diabetes mellitus
            "90781000119102",  # Microalbuminuria due to type 2 diabetes mellitus
            "157141000119108",  # Proteinuria due to type 2 diabetes mellitus
            "1551000119108",  # Nonproliferative retinopathy due to type 2 diabetes mellitus
        }
    ),
    "hypertension": frozenset(
        {
            "38341003",  # Hypertensive disorder (Synthea "Hypertension")
            "59621000",  # Essential hypertension
            "1201005",  # Benign essential hypertension
        }
    ),
    "ckd": frozenset(
        {
            "709044004",  # Chronic kidney disease
            "431855005",  # CKD stage 1
            "431856006",  # CKD stage 2
            "433144002",  # CKD stage 3
            "700378005",  # CKD stage 3A
            "700379002",  # CKD stage 3B
            "431857002",  # CKD stage 4
            "433146000",  # CKD stage 5
            "46177005",  # End-stage renal disease
        }
    ),
    "heart_failure": frozenset(
        {
            "84114007",  # Heart failure
            "88805009",  # Chronic congestive heart failure
            "42343007",  # Congestive heart failure
            "85232009",  # Left heart failure
            "703272007",  # Heart failure with reduced ejection fraction
            "446221000",  # Heart failure with normal ejection fraction
        }
    ),
    "atrial_fibrillation": frozenset(
        {
            "49436004",  # Atrial fibrillation
            "282825002",  # Paroxysmal atrial fibrillation
            "440059007",  # Persistent atrial fibrillation
            "440028005",  # Permanent atrial fibrillation
        }
    ),
    # Clinical ASCVD as in the 2018 AHA/ACC cholesterol guideline (Grundy et al.,
    # Circulation 2019;139:e1082, section 1): ACS, history of MI, angina, coronary
    # disease, stroke, TIA, peripheral artery disease of atherosclerotic origin.
    "ascvd": frozenset(
        {
            "53741008",  # Coronary arteriosclerosis (Synthea "Coronary Heart Disease")
            "414545008",  # Ischemic heart disease
            "22298006",  # Myocardial infarction
            "399211009",  # History of myocardial infarction
            "401303003",  # Acute ST segment elevation myocardial infarction
            "401314000",  # Acute non-ST segment elevation myocardial infarction
            "194828000",  # Angina
            "230690007",  # Cerebrovascular accident (stroke)
            "266257000",  # Transient ischemic attack
            "399957001",  # Peripheral arterial occlusive disease
            "840580004",  # Peripheral arterial disease
        }
    ),
    # Myocardial infarction itself (a subset of ASCVD), for "prior MI" in WHAS500.
    "myocardial_infarction": frozenset(
        {
            "22298006",  # Myocardial infarction
            "399211009",  # History of myocardial infarction
            "401303003",  # Acute ST segment elevation myocardial infarction
            "401314000",  # Acute non-ST segment elevation myocardial infarction
        }
    ),
    "cardiogenic_shock": frozenset({"89138009"}),  # Cardiogenic shock
    "pregnancy": frozenset(
        {
            "77386006",  # Pregnancy
            "72892002",  # Normal pregnancy (Synthea)
            "47200007",  # High risk pregnancy
        }
    ),
    # Kidney failure on replacement therapy or end-stage: the USPSTF 2022 statin
    # recommendation's exclusions (ESRD, dialysis) and KFRE's outcome already reached.
    "kidney_failure": frozenset(
        {
            "46177005",  # End-stage renal disease
            "433146000",  # CKD stage 5
            "105502003",  # Dependence on renal dialysis
        }
    ),
}

CONCEPT_ICD10CM_PREFIXES: Final[Mapping[Concept, tuple[str, ...]]] = {
    # E10 type 1, E11 type 2, E13 other specified diabetes (ICD-10-CM chapter 4).
    "diabetes": ("E10", "E11", "E13"),
    # I10-I16 hypertensive diseases (I14 does not exist in ICD-10-CM).
    "hypertension": ("I10", "I11", "I12", "I13", "I15", "I16"),
    "ckd": ("N18",),
    # I21 acute MI, I22 subsequent MI within 4 weeks, I25.2 old MI.
    "myocardial_infarction": ("I21", "I22", "I25.2"),
    # R57.0 cardiogenic shock.
    "cardiogenic_shock": ("R57.0",),
    # I50 heart failure; hypertensive heart (and kidney) disease *with* heart failure.
    "heart_failure": ("I50", "I11.0", "I13.0", "I13.2"),
    # I48.0 paroxysmal, I48.1x persistent, I48.2x chronic, I48.91 unspecified AF;
    # I48.3/I48.4/I48.92 are atrial flutter and are left out.
    "atrial_fibrillation": ("I48.0", "I48.1", "I48.2", "I48.91"),
    # I20-I25 ischaemic heart diseases, I63 cerebral infarction, I70 atherosclerosis,
    # G45.0-G45.2/G45.8/G45.9 TIA (G45.3 amaurosis fugax and G45.4 transient global
    # amnesia are not counted).
    # O00-O9A pregnancy, childbirth and the puerperium; Z33.1 pregnant state; Z34
    # supervision of normal pregnancy. (O9A sorts after O99 and shares the O prefix.)
    "pregnancy": ("O", "Z33.1", "Z34"),
    # N18.5 CKD stage 5, N18.6 end-stage renal disease, Z99.2 dependence on dialysis.
    "kidney_failure": ("N18.5", "N18.6", "Z99.2"),
    "ascvd": (
        "I20",
        "I21",
        "I22",
        "I23",
        "I24",
        "I25",
        "I63",
        "I70",
        "G45.0",
        "G45.1",
        "G45.2",
        "G45.8",
        "G45.9",
    ),
}


def concepts_for(system: str | None, code: str) -> tuple[Concept, ...]:
    """The concepts one coded condition belongs to (usually zero or one)."""
    # Remembered by the code: every Condition of a payload is matched twice (relevance,
    # then the twin), and an ICD-10-CM code against every concept's prefixes.
    return _concepts_for(system, code) if system in (SNOMED_SYSTEM, ICD10CM_SYSTEM) else ()


@lru_cache(maxsize=4096)
def _concepts_for(system: str, code: str) -> tuple[Concept, ...]:
    if system == SNOMED_SYSTEM:
        return tuple(sorted(c for c, codes in CONCEPT_SNOMED.items() if code in codes))
    if system == ICD10CM_SYSTEM:
        upper = code.strip().upper()
        return tuple(
            sorted(
                c
                for c, prefixes in CONCEPT_ICD10CM_PREFIXES.items()
                if any(upper.startswith(p) for p in prefixes)
            )
        )
    return ()
