"""1-year all-cause mortality after myocardial infarction: a Cox model trained on WHAS500.

The numbers come from `training/train_whas500.py` (scikit-survival CoxPHSurvivalAnalysis on
the Worcester Heart Attack Study data shipped inside scikit-survival) via the generated
module `onnx_models.whas500_fit`. The graph is written directly from them, with no
converter:

    risk_1y_mortality = 1 - S0c(365 d) ** exp((x - mean) . beta)

where S0c is the Breslow baseline survival centred at the cohort means. It equals the
fitted model's own `1 - predict_survival_function(x)(365)` within 1e-6 (tests).

This is a demonstration model: 500 patients from one US metropolitan area (Worcester,
Massachusetts) admitted 1997-2001, a textbook teaching subset, not a clinical tool.
"""

from __future__ import annotations

import numpy as np
import onnx

from onnx_models.build import whas500_fit as fit
from onnx_models.build._graph import GraphBuilder
from onnx_models.card import Baseline, InputSpec, ModelCard, OutputSpec

MODEL_ID = "whas500_mortality"
VERSION = "1.0.0"
OUTPUT = "risk_1y_mortality"
SOURCE = (
    "Cox proportional hazards model trained by training/train_whas500.py on WHAS500: "
    "Hosmer DW, Lemeshow S, May S. Applied Survival Analysis: Regression Modeling of Time-to-"
    "Event Data, 2nd ed. Wiley; 2008 (Worcester Heart Attack Study, 500-patient subset), as "
    "shipped in scikit-survival (sksurv.datasets.load_whas500). Study: Goldberg RJ et al., "
    "the Worcester Heart Attack Study, Am J Cardiol (population-based, Worcester MA)."
)

# Per twin feature: description, LOINC, where the twin finds it in FHIR, unit.
_FHIR: dict[str, tuple[str, str | None, str, str]] = {
    "age_years": (
        "Age at admission", "30525-0", "Patient.birthDate (age at the as-of date)", "years",
    ),
    "female": ("Sex female (1) or male (0)", None, "Patient.gender", "1"),
    "heart_rate_per_min": (
        "Heart rate at admission", "8867-4", "Observation 8867-4", "/min",
    ),
    "systolic_bp_mm_hg": (
        "Systolic blood pressure at admission", "8480-6",
        "Observation 8480-6 (alone or as a component of panel 85354-9)", "mm[Hg]",
    ),
    "diastolic_bp_mm_hg": (
        "Diastolic blood pressure at admission", "8462-4",
        "Observation 8462-4 (alone or as a component of panel 85354-9)", "mm[Hg]",
    ),
    "bmi_kg_m2": (
        "Body mass index", "39156-5",
        "Observation 39156-5, or weight 29463-7 / height 8302-2 squared", "kg/m2",
    ),
    "heart_failure": (
        "Congestive heart complications (heart failure) (1) or not (0)", None,
        "Condition: SNOMED 84114007 heart failure and descendants; ICD-10-CM I50, I11.0, I13.0",
        "1",
    ),
    "atrial_fibrillation": (
        "Atrial fibrillation (1) or not (0)", None,
        "Condition: SNOMED 49436004 atrial fibrillation and descendants; ICD-10-CM I48.0-I48.2, "
        "I48.91",
        "1",
    ),
    "cardiogenic_shock": (
        "Cardiogenic shock (1) or not (0)", None,
        "Condition: SNOMED 89138009 cardiogenic shock; ICD-10-CM R57.0", "1",
    ),
    "cardiovascular_disease_history": (
        "History of cardiovascular disease (1) or not (0)", None,
        "Condition in the ASCVD concept set with onset before this admission", "1",
    ),
    "prior_myocardial_infarction": (
        "Recurrent MI: a myocardial infarction before this one (1) or not (0)", None,
        "Condition: SNOMED 22298006 myocardial infarction or 399211009 history of MI, "
        "ICD-10-CM I21-I22/I25.2, with onset more than 28 days before the date (Fourth "
        "Universal Definition of MI)",
        "1",
    ),
}  # fmt: skip


def _inputs() -> tuple[InputSpec, ...]:
    specs = []
    for name in fit.FEATURES:
        description, loinc, fhir_source, unit = _FHIR[name]
        low, high = fit.RANGES[name]
        binary = (low, high) == (0.0, 1.0) and unit == "1"
        specs.append(
            InputSpec(
                name,
                description,
                loinc,
                fhir_source,
                unit,
                float(low),
                float(high),
                "binary" if binary else "continuous",
            )
        )
    return tuple(specs)


# Reference patient for explanations: the cohort's median admission values (age 72, heart
# rate 85, SBP 141.5, DBP 79, BMI 25.9; training/train_whas500.py data), first MI, no
# complications and no CVD history; sex is the patient's own.
BASELINE = Baseline(
    description=(
        "WHAS500 median admission profile of the patient's own sex: 72 years, heart rate "
        "85/min, BP 141.5/79 mm Hg, BMI 25.9, first MI, no heart failure, atrial fibrillation, "
        "shock or prior cardiovascular disease"
    ),
    values={
        "age_years": 72.0,
        "heart_rate_per_min": 85.0,
        "systolic_bp_mm_hg": 141.5,
        "diastolic_bp_mm_hg": 79.0,
        "bmi_kg_m2": 25.9,
        "heart_failure": 0.0,
        "atrial_fibrillation": 0.0,
        "cardiogenic_shock": 0.0,
        "cardiovascular_disease_history": 0.0,
        "prior_myocardial_infarction": 0.0,
    },
)


def _validation() -> str:
    c, auc, citl = fit.HARRELL_C, fit.UNO_AUC_365D, fit.PREDICTED_MINUS_OBSERVED_365D
    quintiles = "; ".join(
        f"Q{i}: {pred:.3f} vs {obs:.3f}" for i, (_, pred, obs) in enumerate(fit.BY_QUINTILE, 1)
    )
    return (
        f"Internal validation only ({fit.CV_SCHEME}; out-of-fold): Harrell's C "
        f"{c[0]:.3f} (fold 2.5-97.5 percentile {c[1]:.3f}-{c[2]:.3f}); Uno's time-dependent "
        f"AUC at 365 days {auc[0]:.3f} ({auc[1]:.3f}-{auc[2]:.3f}). Calibration: mean "
        f"predicted 1-year risk {fit.OOF_MEAN_PREDICTED_365D:.3f} vs Kaplan-Meier observed "
        f"{fit.KM_OBSERVED_365D:.3f}; per-fold predicted minus observed {citl[0]:+.3f} "
        f"({citl[1]:+.3f} to {citl[2]:+.3f}); by out-of-fold risk quintile, predicted vs "
        f"observed: {quintiles}. {fit.PATIENTS} patients, {fit.DEATHS_BY_365D} deaths within "
        f"1 year ({fit.DEATHS} during follow-up). No external validation: expect worse "
        "discrimination and miscalibration in other places and eras (treatment of MI has "
        "changed since 1997-2001). The ONNX graph equals the fitted scikit-survival model's "
        "predict_survival_function within 1e-6."
    )


def card() -> ModelCard:
    """The whas500_mortality card, written into the ONNX metadata by the build."""
    return ModelCard(
        id=MODEL_ID,
        name="WHAS500 post-MI 1-year mortality (Cox model, demonstration)",
        version=VERSION,
        intended_use=(
            "Demonstration and research only, NOT for clinical decisions: shows how a model "
            "trained on real cohort data is packaged, explained and audited. Estimates the "
            "1-year all-cause mortality of a patient hospitalised with acute myocardial "
            "infarction from admission vitals and in-hospital conditions. The twin derives "
            "every input from FHIR as the sources below say (the latest vitals as of the "
            "date stand in for admission values); no CDS service runs this model."
        ),
        population=(
            "500 patients admitted with acute MI to hospitals in Worcester, Massachusetts, "
            "1997-2001 (WHAS500 teaching subset of the Worcester Heart Attack Study); ages "
            "30-104, 40 % women. Valid ranges are the ranges seen in that cohort; outside "
            "them the model would extrapolate and refuses. Heart failure and shock are "
            "complications during the index hospitalisation."
        ),
        inputs=_inputs(),
        outputs=(OutputSpec(OUTPUT, "1-year risk of death from any cause, as a fraction", "1"),),
        source=SOURCE,
        validation=_validation(),
        baseline=BASELINE,
        held_fixed=("female",),
        license=(
            "Data: WHAS500 as redistributed in scikit-survival (GPL-3.0 package). Fitted "
            "coefficients and this encoding: Apache-2.0."
        ),
    )


def graph(model_card: ModelCard) -> onnx.GraphProto:
    """x [N, 11] in card order -> risk_1y_mortality [N, 1]."""
    if model_card.input_names != fit.FEATURES:
        raise ValueError("card inputs must follow the fitted feature order")
    b = GraphBuilder("whas500_cox")
    centred = b.op("Sub", "x", b.const("means", np.array([fit.MEANS])), stem="centred")
    beta = b.const("coefficients", np.array(fit.COEFFICIENTS).reshape(-1, 1))
    hazard_ratio = b.op("Exp", b.op("MatMul", centred, beta), stem="hazard_ratio")
    survival = b.op(
        "Pow", b.const("baseline_survival_365d", np.array(fit.BASELINE_SURVIVAL_365D)), hazard_ratio
    )
    b.rename(b.op("Sub", b.const("one", np.array(1.0)), survival), OUTPUT)
    return b.graph("x", len(model_card.inputs), (OUTPUT,))
