"""AHA PREVENT base equations (10- and 30-year total CVD, ASCVD, heart failure) as ONNX graphs.

Source: Khan SS, Matsushita K, Sang Y, et al. Development and Validation of the American Heart
Association's Predicting Risk of Cardiovascular Disease EVENTs (PREVENT) Equations.
Circulation. 2024;149(6):430-449, Supplemental Tables S12A-S12F (base model coefficients).

Each outcome is a sex-specific logistic model, risk = 1 / (1 + exp(-logit)), over terms
centred at age 55, non-HDL-C 3.5 mmol/L, HDL-C 1.3 mmol/L, SBP 130 mm Hg, BMI 25 kg/m2 and
eGFR 90 mL/min/1.73 m2, with linear splines at SBP 110, BMI 30 and eGFR 60 (Khan 2024,
Table S12 footnotes). The 30-year models add ((age - 55) / 10)^2.

Coefficients are the supplement's, to its seven decimals. Cross-checked term by term in
two independent public sources: the AHA's own `AHAprevent` R package (v1.0.0, function
`pred_risk_base`, Krishnan, Petito, Huang, Khan 2024) as ported line-for-line to Python by
two unrelated projects, which agree with each other on every coefficient here; and
numerically against the PyPI `pyprevent` package (compiled Rust) within 1e-6 over thousands
of random patients (tests/onnx_models/test_prevent.py). Where copies differ in the seventh
decimal (SBP >= 110 in S12A women: 0.360078 in AHAprevent, 0.3600781 elsewhere) we keep
AHAprevent's; the difference is below 1e-7 in risk.

Two artifacts: `prevent` (10-year outputs, ages 30-79) and `prevent_30y` (30-year outputs,
ages 30-59). PREVENT publishes 30-year estimates only for ages 30-59 (Khan 2024, Methods;
`AHAprevent` returns none above 59), and the registry enforces one age range per model,
so a single six-output model would either hide the 10-year risk of a 65-year-old or emit
an unpublished 30-year number for them.

Heart failure models use BMI (Khan 2024, Table S12E-F: BMI < 30 and >= 30 spline), so BMI
is an input of both artifacts; the CVD and ASCVD outputs give it exactly zero weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from onnx_models.build._graph import GraphBuilder
from onnx_models.card import Baseline, InputSpec, ModelCard, OutputSpec

MODEL_ID_10Y = "prevent"
MODEL_ID_30Y = "prevent_30y"
VERSION = "1.0.0"
SOURCE = (
    "Khan SS, Matsushita K, Sang Y, et al. Development and Validation of the American Heart "
    "Association's Predicting Risk of Cardiovascular Disease EVENTs (PREVENT) Equations. "
    "Circulation. 2024;149(6):430-449 (Supplemental Tables S12A-S12F: base model). "
    "doi:10.1161/CIRCULATIONAHA.123.067626"
)

# mg/dL -> mmol/L for cholesterol: multiply by 0.02586, the factor of the AHA's reference
# implementation (AHAprevent R package, `mmol_conversion`; preventr `convert_chol_to_mmol`
# uses the same). It is 1/38.67 (docs/clinical.md) to four significant digits, but not
# exactly: dividing by 38.67 instead moves the CVD and ASCVD risks by up to 3.4e-6 from the
# reference implementations (measured against pyprevent), so we follow the equations' authors.
MMOL_L_PER_MG_DL_CHOLESTEROL = 0.02586

# Term order of every coefficient row below (Khan 2024, Table S12 row order; the constant
# first). "a" is (age - 55) / 10.
TERMS: tuple[str, ...] = (
    "constant",
    "age",  # (age - 55) / 10
    "age_squared",  # ((age - 55) / 10)^2, 30-year models only
    "non_hdl_c",  # non-HDL-C mmol/L - 3.5
    "hdl_c",  # (HDL-C mmol/L - 1.3) / 0.3
    "sbp_lt_110",  # (min(SBP, 110) - 110) / 20
    "sbp_gte_110",  # (max(SBP, 110) - 130) / 20
    "diabetes",
    "current_smoker",
    "bmi_lt_30",  # (min(BMI, 30) - 25) / 5
    "bmi_gte_30",  # (max(BMI, 30) - 30) / 5
    "egfr_lt_60",  # (min(eGFR, 60) - 60) / -15
    "egfr_gte_60",  # (max(eGFR, 60) - 90) / -15
    "antihypertensive",
    "statin",
    "antihypertensive_x_sbp_gte_110",
    "statin_x_non_hdl_c",
    "age_x_non_hdl_c",
    "age_x_hdl_c",
    "age_x_sbp_gte_110",
    "age_x_diabetes",
    "age_x_current_smoker",
    "age_x_bmi_gte_30",
    "age_x_egfr_lt_60",
)


@dataclass(frozen=True, slots=True)
class PreventEquation:
    """One sex's coefficients for one outcome and horizon, in TERMS order (0 where absent)."""

    table: str
    coefficients: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.coefficients) != len(TERMS):
            raise ValueError(f"{self.table}: {len(self.coefficients)} coefficients, not 24")


def _eq(table: str, *coefficients: float) -> PreventEquation:
    return PreventEquation(table, coefficients)


# Khan 2024 Table S12A (10-year total CVD), women | men.
# Columns: const, age, age^2, nonHDL, HDL, SBP<110, SBP>=110, DM, smoke, BMI<30, BMI>=30,
#          eGFR<60, eGFR>=60, antiHTN, statin, antiHTN*SBP>=110, statin*nonHDL, age*nonHDL,
#          age*HDL, age*SBP>=110, age*DM, age*smoke, age*BMI>=30, age*eGFR<60
CVD_10Y_WOMEN = _eq(
    "S12A women", -3.307728, 0.7939329, 0.0, 0.0305239, -0.1606857, -0.2394003, 0.360078,
    0.8667604, 0.5360739, 0.0, 0.0, 0.6045917, 0.0433769, 0.3151672, -0.1477655, -0.0663612,
    0.1197879, -0.0819715, 0.0306769, -0.0946348, -0.27057, -0.078715, 0.0, -0.1637806,
)  # fmt: skip
CVD_10Y_MEN = _eq(
    "S12A men", -3.031168, 0.7688528, 0.0, 0.0736174, -0.0954431, -0.4347345, 0.3362658,
    0.7692857, 0.4386871, 0.0, 0.0, 0.5378979, 0.0164827, 0.288879, -0.1337349, -0.0475924,
    0.150273, -0.0517874, 0.0191169, -0.1049477, -0.2251948, -0.0895067, 0.0, -0.1543702,
)  # fmt: skip
# Khan 2024 Table S12B (10-year ASCVD), women | men.
ASCVD_10Y_WOMEN = _eq(
    "S12B women", -3.819975, 0.719883, 0.0, 0.1176967, -0.151185, -0.0835358, 0.3592852,
    0.8348585, 0.4831078, 0.0, 0.0, 0.4864619, 0.0397779, 0.2265309, -0.0592374, -0.0395762,
    0.0844423, -0.0567839, 0.0325692, -0.1035985, -0.2417542, -0.0791142, 0.0, -0.1671492,
)  # fmt: skip
ASCVD_10Y_MEN = _eq(
    "S12B men", -3.500655, 0.7099847, 0.0, 0.1658663, -0.1144285, -0.2837212, 0.3239977,
    0.7189597, 0.3956973, 0.0, 0.0, 0.3690075, 0.0203619, 0.2036522, -0.0865581, -0.0322916,
    0.114563, -0.0300005, 0.0232747, -0.0927024, -0.2018525, -0.0970527, 0.0, -0.1217081,
)  # fmt: skip
# Khan 2024 Table S12C (10-year heart failure), women | men: no cholesterol or statin terms.
HF_10Y_WOMEN = _eq(
    "S12C women", -4.310409, 0.8998235, 0.0, 0.0, 0.0, -0.4559771, 0.3576505, 1.038346,
    0.583916, -0.0072294, 0.2997706, 0.7451638, 0.0557087, 0.3534442, 0.0, -0.0981511, 0.0,
    0.0, 0.0, -0.0946663, -0.3581041, -0.1159453, -0.003878, -0.1884289,
)  # fmt: skip
HF_10Y_MEN = _eq(
    "S12C men", -3.946391, 0.8972642, 0.0, 0.0, 0.0, -0.6811466, 0.3634461, 0.923776,
    0.5023736, -0.0485841, 0.3726929, 0.6926917, 0.0251827, 0.2980922, 0.0, -0.0497731, 0.0,
    0.0, 0.0, -0.1289201, -0.3040924, -0.1401688, 0.0068126, -0.1797778,
)  # fmt: skip
# Khan 2024 Table S12D (30-year total CVD), women | men.
CVD_30Y_WOMEN = _eq(
    "S12D women", -1.318827, 0.5503079, -0.0928369, 0.0409794, -0.1663306, -0.1628654,
    0.3299505, 0.6793894, 0.3196112, 0.0, 0.0, 0.1857101, 0.0553528, 0.2894, -0.075688,
    -0.056367, 0.1071019, -0.0751438, 0.0301786, -0.0998776, -0.3206166, -0.1607862, 0.0,
    -0.1450788,
)  # fmt: skip
CVD_30Y_MEN = _eq(
    "S12D men", -1.148204, 0.4627309, -0.0984281, 0.0836088, -0.1029824, -0.2140352,
    0.2904325, 0.5331276, 0.2141914, 0.0, 0.0, 0.1155556, 0.0603775, 0.232714, -0.0272112,
    -0.0384488, 0.134192, -0.0511759, 0.0165865, -0.1101437, -0.2585943, -0.1566406, 0.0,
    -0.1166776,
)  # fmt: skip
# Khan 2024 Table S12E (30-year ASCVD), women | men.
ASCVD_30Y_WOMEN = _eq(
    "S12E women", -1.974074, 0.4669202, -0.0893118, 0.1256901, -0.1542255, -0.0018093,
    0.322949, 0.6296707, 0.268292, 0.0, 0.0, 0.100106, 0.0499663, 0.1875292, 0.0152476,
    -0.0276123, 0.0736147, -0.0521962, 0.0316918, -0.1046101, -0.2727793, -0.1530907, 0.0,
    -0.1299149,
)  # fmt: skip
ASCVD_30Y_MEN = _eq(
    "S12E men", -1.736444, 0.3994099, -0.0937484, 0.1744643, -0.120203, -0.0665117,
    0.2753037, 0.4790257, 0.1782635, 0.0, 0.0, -0.0218789, 0.0602553, 0.1421182, 0.0135996,
    -0.0218265, 0.1013148, -0.0312619, 0.020673, -0.0920935, -0.2159947, -0.1548811, 0.0,
    -0.0712547,
)  # fmt: skip
# Khan 2024 Table S12F (30-year heart failure), women | men.
HF_30Y_WOMEN = _eq(
    "S12F women", -2.205379, 0.6254374, -0.0983038, 0.0, 0.0, -0.3919241, 0.3142295,
    0.8330787, 0.3438651, 0.0594874, 0.2525536, 0.2981642, 0.0667159, 0.333921, 0.0,
    -0.0893177, 0.0, 0.0, 0.0, -0.0974299, -0.404855, -0.1982991, -0.0035619, -0.1564215,
)  # fmt: skip
HF_30Y_MEN = _eq(
    "S12F men", -1.95751, 0.5681541, -0.1048388, 0.0, 0.0, -0.4761564, 0.30324, 0.6840338,
    0.2656273, 0.0833107, 0.26999, 0.2541805, 0.0638923, 0.2583631, 0.0, -0.0391938, 0.0,
    0.0, 0.0, -0.1269124, -0.3273572, -0.2043019, -0.0182831, -0.1342618,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Horizon:
    """One artifact: its outputs and each output's (women, men) equations."""

    model_id: str
    years: int
    age_max: float
    outputs: tuple[tuple[str, str, PreventEquation, PreventEquation], ...]


HORIZON_10Y = Horizon(
    MODEL_ID_10Y,
    10,
    79.0,
    (
        ("risk_10y_cvd", "total cardiovascular disease", CVD_10Y_WOMEN, CVD_10Y_MEN),
        ("risk_10y_ascvd", "atherosclerotic cardiovascular disease", ASCVD_10Y_WOMEN,
         ASCVD_10Y_MEN),
        ("risk_10y_hf", "heart failure", HF_10Y_WOMEN, HF_10Y_MEN),
    ),
)  # fmt: skip
# 30-year estimates are published for ages 30-59 only (Khan 2024; AHAprevent returns none
# above 59; pyprevent raises "Age must be between 30 and 59").
HORIZON_30Y = Horizon(
    MODEL_ID_30Y,
    30,
    59.0,
    (
        ("risk_30y_cvd", "total cardiovascular disease", CVD_30Y_WOMEN, CVD_30Y_MEN),
        ("risk_30y_ascvd", "atherosclerotic cardiovascular disease", ASCVD_30Y_WOMEN,
         ASCVD_30Y_MEN),
        ("risk_30y_hf", "heart failure", HF_30Y_WOMEN, HF_30Y_MEN),
    ),
)  # fmt: skip


def _binary(name: str, description: str, loinc: str | None, fhir_source: str) -> InputSpec:
    return InputSpec(name, description, loinc, fhir_source, "1", 0.0, 1.0, "binary")


def inputs(age_max: float) -> tuple[InputSpec, ...]:
    """The card's inputs, in the order of the graph's `x` columns.

    Ranges are those the PREVENT equations were developed and are offered for: age 30-79,
    TC 130-320 mg/dL, HDL 20-100 mg/dL, SBP 90-180 mm Hg, BMI 18.5-39.9 kg/m2 (Khan 2024,
    Table 1 footnote), eGFR 15-140 (AHA PREVENT online calculator; preventr R package
    `valid` ranges, which cite the same).
    """
    return (
        InputSpec(
            "age_years",
            "Age",
            "30525-0",
            "Patient.birthDate (age at the as-of date)",
            "years",
            30.0,
            age_max,
            "continuous",
        ),
        _binary("female", "Sex female (1) or male (0)", None, "Patient.gender"),
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
            180.0,
            "continuous",
        ),
        _binary(
            "diabetes",
            "Diabetes (1) or not (0)",
            "4548-4",
            "Condition in the diabetes concept set, or HbA1c (4548-4) >= 6.5 %",
        ),
        _binary(
            "current_smoker",
            "Current smoker (1; PREVENT: cigarettes within 30 days) or not (0)",
            "72166-2",
            "Observation 72166-2 (tobacco smoking status), SNOMED current-smoker values",
        ),
        InputSpec(
            "bmi_kg_m2",
            "Body mass index (used by the heart-failure equations only)",
            "39156-5",
            "Observation 39156-5, or weight 29463-7 / height 8302-2 squared",
            "kg/m2",
            18.5,
            39.9,
            "continuous",
        ),
        InputSpec(
            "egfr_ml_min_1_73m2",
            "Estimated glomerular filtration rate",
            "98979-8",
            "Observation 98979-8/62238-1/33914-3, or CKD-EPI 2021 from creatinine 2160-0",
            "mL/min/{1.73_m2}",
            15.0,
            140.0,
            "continuous",
        ),
        _binary(
            "treated_hypertension",
            "On antihypertensive medication (1) or not (0)",
            None,
            "MedicationRequest/MedicationStatement in an RxNorm antihypertensive class",
        ),
        _binary(
            "statin",
            "On a statin (1) or not (0)",
            None,
            "MedicationRequest/MedicationStatement with an RxNorm statin ingredient",
        ),
    )


# The equations' own centring profile (Khan 2024, Table S12 footnotes): age 55, non-HDL-C
# 3.5 and HDL-C 1.3 mmol/L, SBP 130, BMI 25, eGFR 90, no diabetes, smoking or medication.
# Every term but the constant is 0 there, so the baseline risk is sigmoid(constant).
BASELINE = Baseline(
    description=(
        "PREVENT centring profile of the patient's own sex: 55 years, total cholesterol "
        "185.6 mg/dL (non-HDL 3.5 mmol/L), HDL 50.3 mg/dL (1.3 mmol/L), systolic BP 130 "
        "mm Hg untreated, BMI 25, eGFR 90, non-smoker, no diabetes, no statin"
    ),
    values={
        "age_years": 55.0,
        "total_cholesterol_mg_dl": (3.5 + 1.3) / MMOL_L_PER_MG_DL_CHOLESTEROL,
        "hdl_cholesterol_mg_dl": 1.3 / MMOL_L_PER_MG_DL_CHOLESTEROL,
        "systolic_bp_mm_hg": 130.0,
        "diabetes": 0.0,
        "current_smoker": 0.0,
        "bmi_kg_m2": 25.0,
        "egfr_ml_min_1_73m2": 90.0,
        "treated_hypertension": 0.0,
        "statin": 0.0,
    },
)


def _card(horizon: Horizon) -> ModelCard:
    years = horizon.years
    ages = f"30-{horizon.age_max:g}"
    return ModelCard(
        id=horizon.model_id,
        name=f"AHA PREVENT base equations ({years}-year CVD, ASCVD and heart failure risk)",
        version=VERSION,
        intended_use=(
            f"Estimate the {years}-year risk of a first total cardiovascular event, "
            "atherosclerotic CVD event (myocardial infarction, stroke) and heart failure "
            "in adults without known CVD, to inform primary-prevention discussions. "
            "Supports, does not replace, clinician judgement."
        ),
        population=(
            f"Adults {ages} years without clinical ASCVD or heart failure; derived in "
            "3.3 million US adults from 25 cohorts and health systems (Khan 2024), race-free. "
            + (
                "30-year estimates are published for ages 30-59 only."
                if years == 30
                else "For 30-year risk see model prevent_30y (ages 30-59)."
            )
        ),
        inputs=inputs(horizon.age_max),
        outputs=tuple(
            OutputSpec(name, f"{years}-year risk of {what}, as a fraction", "1")
            for name, what, _, _ in horizon.outputs
        ),
        source=SOURCE,
        validation=(
            "Derivation and external validation as reported in Khan 2024 (external "
            "validation in about 3.3 million adults of 21 datasets: median C statistic for "
            "10-year total CVD 0.794 in women and 0.757 in men, good calibration). "
            "This ONNX encoding equals the PyPI pyprevent package within 1e-6 over 2,000+ "
            "random in-range patients of each sex, for every output."
        ),
        baseline=BASELINE,
        held_fixed=("female",),
        license="Equations: published, open access. This encoding: Apache-2.0.",
    )


def card_10y() -> ModelCard:
    """The `prevent` card (10-year outputs, ages 30-79)."""
    return _card(HORIZON_10Y)


def card_30y() -> ModelCard:
    """The `prevent_30y` card (30-year outputs, ages 30-59)."""
    return _card(HORIZON_30Y)


def _graph(horizon: Horizon, model_card: ModelCard) -> onnx.GraphProto:
    b = GraphBuilder(f"prevent_{horizon.years}y")
    col = {name: b.column("x", i, name) for i, name in enumerate(model_card.input_names)}

    def k(value: float) -> str:
        return b.const("k", np.array(value))

    def affine(value: str, shift: float, scale: float, stem: str) -> str:
        # (value - shift) / scale, the form every PREVENT term is written in.
        return b.op("Div", b.op("Sub", value, k(shift)), k(scale), stem=stem)

    to_mmol = k(MMOL_L_PER_MG_DL_CHOLESTEROL)
    tc = b.op("Mul", col["total_cholesterol_mg_dl"], to_mmol, stem="tc_mmol")
    hdl = b.op("Mul", col["hdl_cholesterol_mg_dl"], to_mmol, stem="hdl_mmol")
    sbp, bmi, egfr = col["systolic_bp_mm_hg"], col["bmi_kg_m2"], col["egfr_ml_min_1_73m2"]

    age = affine(col["age_years"], 55.0, 10.0, "age")
    non_hdl = b.op("Sub", b.op("Sub", tc, hdl), k(3.5), stem="non_hdl_c")
    hdl_c = affine(hdl, 1.3, 0.3, "hdl_c")
    sbp_lt = affine(b.op("Min", sbp, k(110.0)), 110.0, 20.0, "sbp_lt_110")
    sbp_gte = affine(b.op("Max", sbp, k(110.0)), 130.0, 20.0, "sbp_gte_110")
    bmi_lt = affine(b.op("Min", bmi, k(30.0)), 25.0, 5.0, "bmi_lt_30")
    bmi_gte = affine(b.op("Max", bmi, k(30.0)), 30.0, 5.0, "bmi_gte_30")
    egfr_lt = affine(b.op("Min", egfr, k(60.0)), 60.0, -15.0, "egfr_lt_60")
    egfr_gte = affine(b.op("Max", egfr, k(60.0)), 90.0, -15.0, "egfr_gte_60")
    dm, smoker = col["diabetes"], col["current_smoker"]
    bp_tx, statin = col["treated_hypertension"], col["statin"]

    terms = {
        "age": age,
        "age_squared": b.op("Mul", age, age),
        "non_hdl_c": non_hdl,
        "hdl_c": hdl_c,
        "sbp_lt_110": sbp_lt,
        "sbp_gte_110": sbp_gte,
        "diabetes": dm,
        "current_smoker": smoker,
        "bmi_lt_30": bmi_lt,
        "bmi_gte_30": bmi_gte,
        "egfr_lt_60": egfr_lt,
        "egfr_gte_60": egfr_gte,
        "antihypertensive": bp_tx,
        "statin": statin,
        "antihypertensive_x_sbp_gte_110": b.op("Mul", bp_tx, sbp_gte),
        "statin_x_non_hdl_c": b.op("Mul", statin, non_hdl),
        "age_x_non_hdl_c": b.op("Mul", age, non_hdl),
        "age_x_hdl_c": b.op("Mul", age, hdl_c),
        "age_x_sbp_gte_110": b.op("Mul", age, sbp_gte),
        "age_x_diabetes": b.op("Mul", age, dm),
        "age_x_current_smoker": b.op("Mul", age, smoker),
        "age_x_bmi_gte_30": b.op("Mul", age, bmi_gte),
        "age_x_egfr_lt_60": b.op("Mul", age, egfr_lt),
    }
    # TERMS[0] is the constant: it is added as an intercept row, not multiplied by ones.
    term_matrix = b.op("Concat", *(terms[t] for t in TERMS[1:]), stem="terms", axis=1)

    def logit(female: bool, stem: str) -> str:
        # [T, K] slopes and [1, K] intercepts, one column per output.
        eqs = [women if female else men for _, _, women, men in horizon.outputs]
        slopes = np.array([eq.coefficients[1:] for eq in eqs]).T
        intercepts = np.array([[eq.coefficients[0] for eq in eqs]])
        product = b.op("MatMul", term_matrix, b.const(f"{stem}_slopes", slopes))
        return b.op("Add", product, b.const(f"{stem}_intercepts", intercepts), stem=stem)

    logit_women, logit_men = logit(True, "logit_women"), logit(False, "logit_men")
    # The sex flag selects the equation; Round so that 0.9999999 still means female.
    is_female = b.op(
        "Cast", b.op("Round", col["female"]), stem="is_female", to=onnx.TensorProto.BOOL
    )
    logits = b.op("Where", is_female, logit_women, logit_men, stem="logits")
    risks = b.op("Sigmoid", logits, stem="risks")
    for i, (name, _, _, _) in enumerate(horizon.outputs):
        b.rename(b.column(risks, i, f"{name}_col"), name)
    return b.graph("x", len(model_card.inputs), model_card.output_names)


def graph_10y(model_card: ModelCard) -> onnx.GraphProto:
    """`prevent`: x [N, 11] in card order -> risk_10y_cvd, risk_10y_ascvd, risk_10y_hf [N, 1]."""
    return _graph(HORIZON_10Y, model_card)


def graph_30y(model_card: ModelCard) -> onnx.GraphProto:
    """`prevent_30y`: x [N, 11] -> risk_30y_cvd, risk_30y_ascvd, risk_30y_hf [N, 1]."""
    return _graph(HORIZON_30Y, model_card)
