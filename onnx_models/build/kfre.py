"""Kidney Failure Risk Equation, 4-variable (2- and 5-year risk), as ONNX graphs.

Sources: Tangri N, Stevens LA, Griffith J, et al. A predictive model for progression of
chronic kidney disease to kidney failure. JAMA. 2011;305(15):1553-1559 (model 3, the
4-variable Cox model); Tangri N, Grams ME, Levey AS, et al. Multinational Assessment of
Accuracy of Equations for Predicting Risk of Kidney Failure: A Meta-analysis. JAMA.
2016;315(2):164-174 (the recalibrated baseline survivals, North America and elsewhere).

    risk(t) = 1 - S0(t) ** exp(-0.2201 (age/10 - 7.036) + 0.2467 (male - 0.5642)
                               - 0.5567 (eGFR/5 - 7.222) + 0.4510 (ln ACR[mg/g] - 5.137))

Wrong copies circulate (docs/clinical.md): public code carries per-year age and per-unit
eGFR coefficients with made-up intercepts, sign-flipped eGFR terms, the sex term applied to
women, or ACR in mg/mmol under a mg/g centring value. The values here were cross-checked in
two public sources that agree digit for digit: the PyPI `kfre` package (kfre/main.py
`risk_pred`, 4-variable branch, quoting Tangri 2016) and its typeset equations page
(lshpaner/kfre docs/equations.rst); both match the coefficients and centring values as
printed in Tangri 2011 (4-variable model 3) and restated in Tangri 2016. The tests
recompute every number from the formula independently and against `kfre`.

Calibration: the baseline survival depends on region. The original (Canadian) equation,
S0 2 y 0.9750 and 5 y 0.9240, held in North America; outside North America it overestimated
risk, and Tangri 2016 recalibrated it to S0 2 y 0.9832 and 5 y 0.9365 (higher baseline
survival, lower risk). Copies that swap the two pairs are among those circulating; we
first wrote them swapped ourselves, and the kfre package and an independent R
implementation of the original equation (`kfre_pr_orig`: 1 - 0.9750 ^ exp(...) at 2 years,
0.9240 at 5) caught it. We ship two artifacts with identical inputs rather than a
calibration input, because the calibration is a property of the deployment, not of the
patient, and must not be explained as a "factor": `kfre` (North America) and `kfre_non_na`
(elsewhere). A deployment setting picks the model id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx

from onnx_models.build._graph import GraphBuilder
from onnx_models.card import Baseline, InputSpec, ModelCard, OutputSpec

VERSION = "1.0.0"
OUTPUTS = ("risk_2y_kidney_failure", "risk_5y_kidney_failure")
SOURCE = (
    "Tangri N, Stevens LA, Griffith J, et al. A predictive model for progression of chronic "
    "kidney disease to kidney failure. JAMA. 2011;305(15):1553-1559. doi:10.1001/jama.2011.451; "
    "Tangri N, Grams ME, Levey AS, et al. Multinational Assessment of Accuracy of Equations "
    "for Predicting Risk of Kidney Failure: A Meta-analysis. JAMA. 2016;315(2):164-174. "
    "doi:10.1001/jama.2015.18202"
)

# Tangri 2011, 4-variable model (model 3); log hazard ratios per the unit in each name.
BETA_AGE_PER_10_YEARS = -0.2201
BETA_MALE = 0.2467
BETA_EGFR_PER_5 = -0.5567
BETA_LN_ACR_MG_G = 0.4510
# Centring values printed with the equation (Tangri 2011, restated in Tangri 2016): the
# derivation cohort's means, age/10 7.036 (70.36 y), male 0.5642, eGFR/5 7.222 (36.11),
# ln ACR 5.137 (ACR about 170 mg/g).
MEAN_AGE_PER_10_YEARS = 7.036
MEAN_MALE = 0.5642
MEAN_EGFR_PER_5 = 7.222
MEAN_LN_ACR_MG_G = 5.137


@dataclass(frozen=True, slots=True)
class Calibration:
    """One region's baseline survival at 2 and 5 years (Tangri 2016)."""

    model_id: str
    region: str
    s0_2y: float
    s0_5y: float


# Tangri 2011 original 4-variable equation, confirmed for North American cohorts by
# Tangri 2016 (JAMA 315:164).
NORTH_AMERICA = Calibration("kfre", "North America", s0_2y=0.9750, s0_5y=0.9240)
# Tangri 2016: the same equation recalibrated for non-North American cohorts.
NON_NORTH_AMERICA = Calibration("kfre_non_na", "outside North America", s0_2y=0.9832, s0_5y=0.9365)
CALIBRATIONS = (NORTH_AMERICA, NON_NORTH_AMERICA)


# Ranges: the equation's population is CKD G3-G5, eGFR below 60 (Tangri 2011 derivation
# and validation cohorts: stages 3-5, eGFR 10-59; Tangri 2016: eGFR < 60), adults (>= 18).
# Age above 100 and ACR outside 0.1-25,000 mg/g are refused as implausible (not published
# bounds; the ACR bounds are the PREVENT UACR range, preventr `valid$uacr`).
INPUTS: tuple[InputSpec, ...] = (
    InputSpec(
        "age_years",
        "Age",
        "30525-0",
        "Patient.birthDate (age at the as-of date)",
        "years",
        18.0,
        100.0,
        "continuous",
    ),
    InputSpec(
        "female", "Sex female (1) or male (0)", None, "Patient.gender", "1", 0.0, 1.0, "binary"
    ),
    InputSpec(
        "egfr_ml_min_1_73m2",
        "Estimated glomerular filtration rate (CKD G3-G5: below 60)",
        "98979-8",
        "Observation 98979-8/62238-1/33914-3, or CKD-EPI 2021 from creatinine 2160-0",
        "mL/min/{1.73_m2}",
        10.0,
        59.99,
        "continuous",
    ),
    InputSpec(
        "uacr_mg_g",
        "Urine albumin/creatinine ratio",
        "9318-7",
        "Observation 9318-7 or 14959-1 (mg/mmol x 8.84 = mg/g)",
        "mg/g",
        0.1,
        25000.0,
        "continuous",
    ),
)

# The derivation cohort's mean profile (the centring values above); sex is the patient's.
BASELINE = Baseline(
    description=(
        "KFRE derivation-cohort mean profile of the patient's own sex: 70.36 years, eGFR "
        "36.11 mL/min/1.73 m2, urine ACR 170 mg/g (ln 5.137)"
    ),
    values={
        "age_years": 10.0 * MEAN_AGE_PER_10_YEARS,
        "egfr_ml_min_1_73m2": 5.0 * MEAN_EGFR_PER_5,
        "uacr_mg_g": round(math.exp(MEAN_LN_ACR_MG_G), 6),
    },
)


def _card(calibration: Calibration) -> ModelCard:
    return ModelCard(
        id=calibration.model_id,
        name=f"Kidney Failure Risk Equation, 4-variable ({calibration.region} calibration)",
        version=VERSION,
        intended_use=(
            "Estimate the 2- and 5-year risk of kidney failure (dialysis or transplantation) "
            "in adults with CKD G3-G5, to inform nephrology referral, access planning and "
            "transplant work-up. Supports, does not replace, clinician judgement."
        ),
        population=(
            "Adults with CKD stages 3-5 (eGFR below 60 mL/min/1.73 m2) not on kidney "
            "replacement therapy; derived in Canadian referred CKD patients (Tangri 2011), "
            f"recalibrated in 721,357 patients of 31 cohorts (Tangri 2016). Baseline survival "
            f"for patients {calibration.region}: 2 y {calibration.s0_2y}, 5 y "
            f"{calibration.s0_5y}. Does not account for the competing risk of death, so "
            "5-year risk is overestimated in the old and frail."
        ),
        inputs=INPUTS,
        outputs=(
            OutputSpec(OUTPUTS[0], "2-year risk of kidney failure, as a fraction", "1"),
            OutputSpec(OUTPUTS[1], "5-year risk of kidney failure, as a fraction", "1"),
        ),
        source=SOURCE,
        validation=(
            "Tangri 2016 meta-analysis: pooled C statistic 0.90 (2 y) and 0.88 (5 y) across "
            "31 cohorts; calibration adequate after regional recalibration. This ONNX "
            "encoding equals the PyPI kfre package and an independent implementation of the "
            "published formula within 1e-6 over 2,000+ random in-range patients."
        ),
        baseline=BASELINE,
        held_fixed=("female",),
        license="Equations: published. This encoding: Apache-2.0.",
    )


def card_north_america() -> ModelCard:
    """The `kfre` card (North American baseline survival)."""
    return _card(NORTH_AMERICA)


def card_non_north_america() -> ModelCard:
    """The `kfre_non_na` card (non-North American baseline survival)."""
    return _card(NON_NORTH_AMERICA)


def _graph(calibration: Calibration, model_card: ModelCard) -> onnx.GraphProto:
    b = GraphBuilder(calibration.model_id)
    col = {name: b.column("x", i, name) for i, name in enumerate(model_card.input_names)}

    def k(value: float) -> str:
        return b.const("k", np.array(value))

    age = b.op("Sub", b.op("Div", col["age_years"], k(10.0)), k(MEAN_AGE_PER_10_YEARS))
    male = b.op("Sub", b.op("Sub", k(1.0), col["female"]), k(MEAN_MALE), stem="male")
    egfr = b.op(
        "Sub", b.op("Div", col["egfr_ml_min_1_73m2"], k(5.0)), k(MEAN_EGFR_PER_5), stem="egfr"
    )
    ln_acr = b.op("Sub", b.op("Log", col["uacr_mg_g"]), k(MEAN_LN_ACR_MG_G), stem="ln_acr")
    terms = b.op("Concat", age, male, egfr, ln_acr, stem="terms", axis=1)
    betas = np.array([[BETA_AGE_PER_10_YEARS], [BETA_MALE], [BETA_EGFR_PER_5], [BETA_LN_ACR_MG_G]])
    hazard_ratio = b.op("Exp", b.op("MatMul", terms, b.const("betas", betas)), stem="hr")
    one = k(1.0)
    for name, s0 in zip(OUTPUTS, (calibration.s0_2y, calibration.s0_5y), strict=True):
        b.rename(b.op("Sub", one, b.op("Pow", k(s0), hazard_ratio)), name)
    return b.graph("x", len(model_card.inputs), OUTPUTS)


def graph_north_america(model_card: ModelCard) -> onnx.GraphProto:
    """`kfre`: x [N, 4] in card order -> risk_2y/5y_kidney_failure [N, 1]."""
    return _graph(NORTH_AMERICA, model_card)


def graph_non_north_america(model_card: ModelCard) -> onnx.GraphProto:
    """`kfre_non_na`: the same graph with the non-North American baseline survival."""
    return _graph(NON_NORTH_AMERICA, model_card)
