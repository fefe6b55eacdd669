"""The patient's clinical state on a date, assembled from the rules of this package."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from twin_engine.clinical.history import (
    Finding,
    clinical_ascvd,
    kidney_failure,
    known_heart_failure,
    pregnant,
)
from twin_engine.clinical.kidney import (
    AcuteKidneyInjury,
    KidneyStatus,
    acute_kidney_injury,
    kidney_status,
)
from twin_engine.clinical.statins import (
    LipidPanel,
    StatinExposure,
    current_statin,
    first_statin_start,
    lipids_before,
    statin_exposures,
    untreated_ldl,
)
from twin_engine.derive import FeatureSet
from twin_engine.twin import ObservationPoint, Twin


@dataclass(frozen=True, slots=True)
class ClinicalState:
    """What a clinician would establish first: acute or chronic, treated or not, which
    history puts the patient in which guideline group."""

    as_of: datetime
    age_years: float | None
    diabetes: bool
    aki: AcuteKidneyInjury | None
    kidney: KidneyStatus
    kidney_failure: Finding | None
    clinical_ascvd: Finding | None
    heart_failure: Finding | None
    pregnancy: Finding | None
    statins: tuple[StatinExposure, ...]
    current_statin: StatinExposure | None
    first_statin: datetime | None
    #: The lipid panel before the first statin (None when never on one or none before).
    pretreatment_lipids: LipidPanel | None
    untreated_ldl: ObservationPoint | None


def clinical_state(twin: Twin, features: FeatureSet) -> ClinicalState:
    """Every rule of the package, on the twin as of the features' date."""
    instant = features.as_of
    exposures = statin_exposures(twin, instant)
    first = first_statin_start(exposures)
    age = features.get("age_years")
    return ClinicalState(
        as_of=instant,
        age_years=age.value if age.usable else None,
        diabetes=features.get("diabetes").value == 1.0,
        aki=acute_kidney_injury(twin, instant),
        kidney=kidney_status(twin, instant),
        kidney_failure=kidney_failure(twin, instant),
        clinical_ascvd=clinical_ascvd(twin, instant),
        heart_failure=known_heart_failure(twin, instant),
        pregnancy=pregnant(twin, instant),
        statins=exposures,
        current_statin=current_statin(exposures),
        first_statin=first,
        pretreatment_lipids=lipids_before(twin, first) if first is not None else None,
        untreated_ldl=untreated_ldl(twin, first, instant),
    )
