"""Vancomycin precision dosing: the patient's PK twin calibrated to measured levels.

FHIR R4 resources -> dose history, levels and covariates (`history`) -> Bayesian MAP random
effects with a Laplace posterior (`estimate`) -> practical regimens ranked by the probability
of AUC24 400-600 mg.h/L (`regimen`) -> their first doses after the history (`first_doses`),
all in `recommend`, which returns a `DosingResult` (`result`). The structural model and the
population model come in through the `PkSimulator` and `PkModelSpec` protocols
(`onnx_models.pk` provides both); this package never imports `onnx_models`.
"""

from twin_engine.pk.covariates import cockcroft_gault, model_crcl
from twin_engine.pk.errors import (
    DialysisUnknownError,
    DoseRecordError,
    DosingError,
    ImplausibleLevelError,
    LevelBeforeFirstDoseError,
    LevelError,
    LevelsWithoutDosesError,
    MissingCovariateError,
)
from twin_engine.pk.estimate import Posterior, Timeline, build_timeline, estimate
from twin_engine.pk.first_doses import next_dose_for_auc
from twin_engine.pk.history import DialysisEvidence, Measured, PatientHistory, extract_history
from twin_engine.pk.recommend import covariates_from_history, plan_dosing, recommend
from twin_engine.pk.regimen import RegimenPrediction, rank_regimens
from twin_engine.pk.result import DosingResult, FittedLevel, IndividualParameters, NextDose
from twin_engine.pk.types import (
    Covariates,
    DoseEvent,
    LevelObservation,
    PkModelSpec,
    PkSimulator,
    Regimen,
)

__all__ = [
    "Covariates",
    "DialysisEvidence",
    "DialysisUnknownError",
    "DoseEvent",
    "DoseRecordError",
    "DosingError",
    "DosingResult",
    "FittedLevel",
    "ImplausibleLevelError",
    "IndividualParameters",
    "LevelBeforeFirstDoseError",
    "LevelError",
    "LevelObservation",
    "LevelsWithoutDosesError",
    "Measured",
    "MissingCovariateError",
    "NextDose",
    "PatientHistory",
    "PkModelSpec",
    "PkSimulator",
    "Posterior",
    "Regimen",
    "RegimenPrediction",
    "Timeline",
    "build_timeline",
    "cockcroft_gault",
    "covariates_from_history",
    "estimate",
    "extract_history",
    "model_crcl",
    "next_dose_for_auc",
    "plan_dosing",
    "rank_regimens",
    "recommend",
]
