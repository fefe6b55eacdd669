"""ACC/AHA Pooled Cohort Equations (10-year hard ASCVD risk) as an ONNX graph.

Source: Goff DC Jr, Lloyd-Jones DM, Bennett G, et al. 2013 ACC/AHA Guideline on the
Assessment of Cardiovascular Risk. Circulation. 2014;129(25 Suppl 2):S49-S73, Table A
"Equation parameters of the Pooled Cohort Equations ... and specific example for each race
and sex group" (the same figures are Table 4 of the Risk Assessment Work Group report).

    risk = 1 - S10 ** exp(individual_sum - group_mean)

Coefficients below are the guideline's, to the guideline's three decimals. Cross-checked
term by term against two independent public implementations: the CVrisk R package
(data-raw/score_coef.R, `ascvd_pooled_coef`) gives identical values; the PooledCohort R
package (R/predict_ascvd_risk.R, taken from Cerner's ascvd-risk-calculator) carries 4-5
decimals that round to every value here. A widely copied comparison table misprints the
white-female untreated-SBP coefficient; all three sources agree on the guideline's 1.957.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass

import numpy as np
import onnx

from onnx_models.build._graph import GraphBuilder
from onnx_models.card import Baseline, InputSpec, ModelCard, OutputSpec

MODEL_ID = "pce"
VERSION = "1.0.0"
OUTPUT = "risk_10y_ascvd"
SOURCE = (
    "Goff DC Jr, Lloyd-Jones DM, Bennett G, et al. 2013 ACC/AHA Guideline on the Assessment "
    "of Cardiovascular Risk: a report of the American College of Cardiology/American Heart "
    "Association Task Force on Practice Guidelines. Circulation. 2014;129(25 Suppl 2):S49-S73 "
    "(Table A: equation parameters and worked example). doi:10.1161/01.cir.0000437741.48606.98"
)


@dataclass(frozen=True, slots=True)
class PceCoefficients:
    """One sex/race group's row of Goff 2013 Table A; 0.0 where the table says N/A."""

    ln_age: float
    ln_age_squared: float
    ln_tc: float
    ln_age_x_ln_tc: float
    ln_hdl: float
    ln_age_x_ln_hdl: float
    ln_treated_sbp: float
    ln_age_x_ln_treated_sbp: float
    ln_untreated_sbp: float
    ln_age_x_ln_untreated_sbp: float
    smoker: float
    ln_age_x_smoker: float
    diabetes: float
    # "Mean (Coefficient x Value)" row of Table A.
    group_mean: float
    # "Baseline survival" row of Table A (S10, 10-year).
    baseline_survival: float

    def betas(self) -> tuple[float, ...]:
        """The 13 term coefficients in the graph's term order."""
        return astuple(self)[:13]


# Goff 2013 Table A, column "White Women".
WHITE_WOMEN = PceCoefficients(
    ln_age=-29.799,
    ln_age_squared=4.884,
    ln_tc=13.540,
    ln_age_x_ln_tc=-3.114,
    ln_hdl=-13.578,
    ln_age_x_ln_hdl=3.149,
    ln_treated_sbp=2.019,
    ln_age_x_ln_treated_sbp=0.0,
    ln_untreated_sbp=1.957,  # the guideline's value; see the module docstring on the misprint
    ln_age_x_ln_untreated_sbp=0.0,
    smoker=7.574,
    ln_age_x_smoker=-1.665,
    diabetes=0.661,
    group_mean=-29.18,
    baseline_survival=0.9665,
)
# Goff 2013 Table A, column "African American Women".
AFRICAN_AMERICAN_WOMEN = PceCoefficients(
    ln_age=17.114,
    ln_age_squared=0.0,
    ln_tc=0.940,
    ln_age_x_ln_tc=0.0,
    ln_hdl=-18.920,
    ln_age_x_ln_hdl=4.475,
    ln_treated_sbp=29.291,
    ln_age_x_ln_treated_sbp=-6.432,
    ln_untreated_sbp=27.820,
    ln_age_x_ln_untreated_sbp=-6.087,
    smoker=0.691,
    ln_age_x_smoker=0.0,
    diabetes=0.874,
    group_mean=86.61,
    baseline_survival=0.9533,
)
# Goff 2013 Table A, column "White Men".
WHITE_MEN = PceCoefficients(
    ln_age=12.344,
    ln_age_squared=0.0,
    ln_tc=11.853,
    ln_age_x_ln_tc=-2.664,
    ln_hdl=-7.990,
    ln_age_x_ln_hdl=1.769,
    ln_treated_sbp=1.797,
    ln_age_x_ln_treated_sbp=0.0,
    ln_untreated_sbp=1.764,
    ln_age_x_ln_untreated_sbp=0.0,
    smoker=7.837,
    ln_age_x_smoker=-1.795,
    diabetes=0.658,
    group_mean=61.18,
    baseline_survival=0.9144,
)
# Goff 2013 Table A, column "African American Men".
AFRICAN_AMERICAN_MEN = PceCoefficients(
    ln_age=2.469,
    ln_age_squared=0.0,
    ln_tc=0.302,
    ln_age_x_ln_tc=0.0,
    ln_hdl=-0.307,
    ln_age_x_ln_hdl=0.0,
    ln_treated_sbp=1.916,
    ln_age_x_ln_treated_sbp=0.0,
    ln_untreated_sbp=1.809,
    ln_age_x_ln_untreated_sbp=0.0,
    smoker=0.549,
    ln_age_x_smoker=0.0,
    diabetes=0.645,
    group_mean=19.54,
    baseline_survival=0.8954,
)

# Row g = 2*female + african_american: the graph gathers the group's coefficients by it.
# Other races use the white equations, as the guideline directs (Goff 2013: the equations
# for non-Hispanic whites may be considered for patients of other races).
GROUPS: tuple[PceCoefficients, ...] = (
    WHITE_MEN,
    AFRICAN_AMERICAN_MEN,
    WHITE_WOMEN,
    AFRICAN_AMERICAN_WOMEN,
)

# Valid ranges: those the ACC/AHA ASCVD Risk Estimator Plus (tools.acc.org) accepts, and
# the guideline's age range 40-79 (Goff 2013, "Recommendations for Assessment of 10-Year
# Risk"); PooledCohort's boundary checks use the same TC 130-320 and SBP 90-200 mg/dL/mm Hg.
INPUTS: tuple[InputSpec, ...] = (
    InputSpec(
        "age_years",
        "Age",
        "30525-0",
        "Patient.birthDate (age at the as-of date)",
        "years",
        40.0,
        79.0,
        "continuous",
    ),
    InputSpec(
        "female", "Sex female (1) or male (0)", None, "Patient.gender", "1", 0.0, 1.0, "binary"
    ),
    InputSpec(
        "african_american",
        "African American (1); any other race uses the white equations (0)",
        None,
        "US Core race extension, OMB category 2054-5 Black or African American",
        "1",
        0.0,
        1.0,
        "binary",
    ),
    InputSpec(
        "total_cholesterol_mg_dl",
        "Total cholesterol",
        "2093-3",
        "Observation",
        "mg/dL",
        130.0,
        320.0,
        "continuous",
    ),
    InputSpec(
        "hdl_cholesterol_mg_dl",
        "HDL cholesterol",
        "2085-9",
        "Observation",
        "mg/dL",
        20.0,
        100.0,
        "continuous",
    ),
    InputSpec(
        "systolic_bp_mm_hg",
        "Systolic blood pressure",
        "8480-6",
        "Observation (alone or as a component of panel 85354-9)",
        "mm[Hg]",
        90.0,
        200.0,
        "continuous",
    ),
    InputSpec(
        "treated_hypertension",
        "On antihypertensive medication (1) or not (0)",
        None,
        "MedicationRequest/MedicationStatement in an RxNorm antihypertensive class",
        "1",
        0.0,
        1.0,
        "binary",
    ),
    InputSpec(
        "current_smoker",
        "Current smoker (1) or not (0)",
        "72166-2",
        "Observation 72166-2 (tobacco smoking status), SNOMED current-smoker values",
        "1",
        0.0,
        1.0,
        "binary",
    ),
    InputSpec(
        "diabetes",
        "Diabetes (1) or not (0)",
        "4548-4",
        "Condition in the diabetes concept set, or HbA1c (4548-4) >= 6.5 %",
        "1",
        0.0,
        1.0,
        "binary",
    ),
)

# Goff 2013 Table A worked example: 55 years, TC 213 mg/dL, HDL 50 mg/dL, untreated SBP
# 120 mm Hg, non-smoker, no diabetes. Sex and race stay the patient's own (held fixed).
BASELINE = Baseline(
    description=(
        "Goff 2013 Table A worked-example profile of the patient's own sex and race: "
        "55 years, total cholesterol 213 mg/dL, HDL 50 mg/dL, systolic BP 120 mm Hg "
        "untreated, non-smoker, no diabetes"
    ),
    values={
        "age_years": 55.0,
        "total_cholesterol_mg_dl": 213.0,
        "hdl_cholesterol_mg_dl": 50.0,
        "systolic_bp_mm_hg": 120.0,
        "treated_hypertension": 0.0,
        "current_smoker": 0.0,
        "diabetes": 0.0,
    },
)


def card() -> ModelCard:
    """The PCE model card, written into the ONNX metadata by the build."""
    return ModelCard(
        id=MODEL_ID,
        name="ACC/AHA Pooled Cohort Equations (10-year ASCVD risk)",
        version=VERSION,
        intended_use=(
            "Estimate the 10-year risk of a first hard ASCVD event (nonfatal myocardial "
            "infarction, coronary heart disease death, fatal or nonfatal stroke) to inform "
            "primary-prevention discussions (statin, blood pressure treatment). Supports, "
            "does not replace, clinician judgement."
        ),
        population=(
            "Adults 40-79 years without clinical ASCVD, not on treatment for LDL-C >= 190 "
            "mg/dL; derived in non-Hispanic white and African American adults (ARIC, CHS, "
            "CARDIA, Framingham Original and Offspring cohorts). Other races use the white "
            "equations, which may misestimate their risk."
        ),
        inputs=INPUTS,
        outputs=(
            OutputSpec(OUTPUT, "10-year risk of a first hard ASCVD event, as a fraction", "1"),
        ),
        source=SOURCE,
        validation=(
            "Derivation and validation as reported in Goff 2013 and its Work Group report; "
            "known to overestimate risk in some contemporary cohorts (Yadlowsky et al., "
            "Ann Intern Med 2018;169:20-29). This ONNX encoding equals an independent "
            "plain-Python implementation within 1e-6 over random in-range patients of all "
            "four sex/race groups and reproduces the Table A worked example."
        ),
        baseline=BASELINE,
        held_fixed=("female", "african_american"),
        license="Equations: published guideline. This encoding: Apache-2.0.",
    )


def graph(model_card: ModelCard) -> onnx.GraphProto:
    """The PCE as one float64 graph: x [N, 9] in card order -> risk_10y_ascvd [N, 1]."""
    b = GraphBuilder("pooled_cohort_equations")
    col = {name: b.column("x", i, name) for i, name in enumerate(model_card.input_names)}
    one = b.const("one", np.array(1.0))

    ln_age = b.op("Log", col["age_years"], stem="ln_age")
    ln_tc = b.op("Log", col["total_cholesterol_mg_dl"], stem="ln_tc")
    ln_hdl = b.op("Log", col["hdl_cholesterol_mg_dl"], stem="ln_hdl")
    ln_sbp = b.op("Log", col["systolic_bp_mm_hg"], stem="ln_sbp")
    treated = col["treated_hypertension"]
    untreated = b.op("Sub", one, treated, stem="untreated")
    ln_treated_sbp = b.op("Mul", ln_sbp, treated, stem="ln_treated_sbp")
    ln_untreated_sbp = b.op("Mul", ln_sbp, untreated, stem="ln_untreated_sbp")
    smoker = col["current_smoker"]

    # Same order as PceCoefficients.betas().
    terms = [
        ln_age,
        b.op("Mul", ln_age, ln_age),
        ln_tc,
        b.op("Mul", ln_age, ln_tc),
        ln_hdl,
        b.op("Mul", ln_age, ln_hdl),
        ln_treated_sbp,
        b.op("Mul", ln_age, ln_treated_sbp),
        ln_untreated_sbp,
        b.op("Mul", ln_age, ln_untreated_sbp),
        smoker,
        b.op("Mul", ln_age, smoker),
        col["diabetes"],
    ]
    term_matrix = b.op("Concat", *terms, stem="terms", axis=1)

    # Group index 2*female + african_american, rounded so 0.9999999 still selects a group.
    two = b.const("two", np.array(2.0))
    group_f = b.op("Add", b.op("Mul", col["female"], two), col["african_american"])
    group = b.op("Cast", b.op("Round", group_f), stem="group_i64", to=onnx.TensorProto.INT64)
    group = b.op("Squeeze", group, b.const("squeeze_axis", [1]), stem="group")

    betas = b.const("betas", np.array([g.betas() for g in GROUPS]))
    means = b.const("group_means", np.array([[g.group_mean] for g in GROUPS]))
    s10 = b.const("baseline_survival", np.array([[g.baseline_survival] for g in GROUPS]))

    row_betas = b.op("Gather", betas, group, axis=0)
    weighted = b.op("Mul", term_matrix, row_betas)
    individual_sum = b.op(
        "ReduceSum", weighted, b.const("sum_axis", [1]), stem="individual_sum", keepdims=1
    )
    centred = b.op("Sub", individual_sum, b.op("Gather", means, group, axis=0))
    survival = b.op("Pow", b.op("Gather", s10, group, axis=0), b.op("Exp", centred))
    b.rename(b.op("Sub", one, survival), OUTPUT)
    return b.graph("x", len(model_card.inputs), (OUTPUT,))
