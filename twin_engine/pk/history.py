"""Vancomycin dose history, levels and covariates from FHIR R4 resources (plain dicts).

What is read, and why:
* MedicationAdministration for vancomycin (RxNorm ingredient 11124 on the medication code, a
  referenced/contained Medication, or "vancomycin" in its text): dosage.dose in mg or g; the
  infusion from effectivePeriod start/end, or effectiveDateTime with dosage.rateRatio /
  rateQuantity in mg per time. Oral vancomycin (route SNOMED 26643006) is not absorbed and is
  skipped. Statuses entered-in-error and not-done are skipped.
* MedicationRequest, only when no administration is recorded: dosageInstruction timing
  repeat period/periodUnit from boundsPeriod.start (to boundsPeriod.end or the as-of time),
  doseAndRate doseQuantity, duration from repeat.duration or the rate. Planned doses are
  assumed given; the source says so.
* Levels: LOINC 20578-1 (any), 4092-3 (trough), 4090-7 (peak) in mg/L or ug/mL (1 ug/mL =
  1 mg/L, the same mass concentration; docs/clinical.md lists mg/L).
* Weight LOINC 29463-7 (kg, g, lb); serum creatinine 2160-0 / 38483-4 (mg/dL, or umol/L / 88.4,
  KDIGO 2012); age and sex from Patient.
* Dialysis: Condition or Procedure coded ICD-10-CM Z99.2 (dependence on renal dialysis),
  Z49.x (encounter for dialysis), Z91.15 (noncompliance with dialysis), or SNOMED 108241001
  (dialysis procedure), 265764009 (renal dialysis), 302497006 (hemodialysis), 105502003
  (dependence on renal dialysis). An active Condition, or a Procedure in the 30 days before
  the as-of time, says yes; a resolved/inactive or refuted Condition says no. N18.6 (ESRD)
  alone is not read as dialysis: it is noted, and the status stays unknown.
* Exactly one Patient; resources whose subject/patient names another patient are ignored
  (noted), a resource without a subject is taken as this patient's.
* Malformed FHIR in a resource that matters (a vancomycin dose or order, a level, weight,
  creatinine, dialysis evidence) raises `DoseRecordError` (or the level/covariate error)
  naming the resource; an unreadable resource that cannot matter is skipped with a note.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from twin_engine.pk.errors import (
    DoseRecordError,
    DosingError,
    ImplausibleLevelError,
    MissingCovariateError,
)
from twin_engine.pk.types import DoseEvent, LevelKind, LevelObservation, Sex

LOINC: Final = "http://loinc.org"
SNOMED: Final = "http://snomed.info/sct"
ICD10CM: Final = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM: Final = "http://www.nlm.nih.gov/research/umls/rxnorm"

VANCOMYCIN_RXNORM: Final = "11124"  # docs/clinical.md: vancomycin ingredient
ORAL_ROUTE_SNOMED: Final = "26643006"  # SNOMED CT "Oral route"
LEVEL_KINDS: Final[Mapping[str, LevelKind]] = {
    "4092-3": "trough",
    "4090-7": "peak",
    "20578-1": "random",
}
# 1 ug/mL = 1 mg/L (same mass per volume).
LEVEL_UNITS: Final = frozenset({"mg/l", "ug/ml", "µg/ml", "mcg/ml"})
# Implausible above 150 mg/L (project choice: a 3 g dose, the largest single dose this
# service considers, into a central volume of ~20 L gives a peak near 150 mg/L; measured
# peaks in adults are far lower, so a higher value is taken as a unit or entry error).
MAX_LEVEL_MG_L: Final = 150.0
WEIGHT_LOINC: Final = frozenset({"29463-7"})
CREATININE_LOINC: Final = frozenset({"2160-0", "38483-4"})
# mg/dL = umol/L / 88.4 (creatinine 113.12 g/mol; KDIGO 2012, as twin_engine.units).
CREATININE_UMOL_PER_MG_DL: Final = 88.4
LB_KG: Final = 0.45359237  # international avoirdupois pound
DIALYSIS_ICD10: Final = frozenset(
    {"Z99.2", "Z49.01", "Z49.02", "Z49.31", "Z49.32", "Z49.0", "Z49.3", "Z91.15"}
)
DIALYSIS_SNOMED: Final = frozenset({"108241001", "265764009", "302497006", "105502003"})
ESRD_ICD10: Final = "N18.6"
RECENT_PROCEDURE: Final = timedelta(days=30)
# Plausible body weight (project choice: wide bounds that only catch entry/unit errors).
WEIGHT_RANGE_KG: Final = (0.3, 400.0)
# The population models were developed in adults (Goti 2018: 17-101 y; Buelga 2005 >= 15 y;
# Thomson 2009 adults); project choice: 18-120 y, outside that no dose is computed.
AGE_RANGE_Y: Final = (18.0, 120.0)
# Older covariates are flagged on the card, not refused (project choice): creatinine can move
# within days in acute kidney injury, weight within weeks.
STALE_CREATININE: Final = timedelta(hours=72)
STALE_WEIGHT: Final = timedelta(days=30)
# Planned doses from a MedicationRequest are expanded only over the last 14 days before the
# as-of time, and the period must be at least 1 h (a shorter one is an entry error and could
# expand into millions of doses). Dropping older planned doses is safe in most patients:
# vancomycin's half-life is ~4-12 h with normal renal function and a few days in severe
# renal impairment, so a dose given more than 14 days ago leaves essentially nothing in the
# plasma. It is NOT safe in anuric patients (half-life up to ~7-9 days without dialysis),
# where older doses can still contribute; the dropped doses are noted on the result.
REQUEST_WINDOW: Final = timedelta(days=14)
MIN_REQUEST_PERIOD_H: Final = 1.0
# Errors Python raises on malformed JSON shapes; caught per resource and turned into a
# DosingError that names the resource.
_MALFORMED: Final = (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError)
_PARTIAL_DATE: Final = re.compile(r"^(\d{4})(?:-(\d{2}))?$")
_TIME_UNITS_H: Final[Mapping[str, float]] = {
    "h": 1.0,
    "hr": 1.0,
    "hour": 1.0,
    "hours": 1.0,
    "min": 1.0 / 60.0,
    "d": 24.0,
    "day": 24.0,
}


