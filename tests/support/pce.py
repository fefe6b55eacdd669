"""An independent plain-Python Pooled Cohort Equations, typed from Goff et al. 2013
(Circulation 2014;129(25 Suppl 2):S49-S73, Table A) without reference to onnx_models.build.pce:
what the PCE graph and the ascvd-risk card are checked against."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Row:
    """One column of Table A, in the table's own row order."""

    ln_age: float
    ln_age_sq: float
    ln_tc: float
    ln_age_ln_tc: float
    ln_hdl: float
    ln_age_ln_hdl: float
    ln_treated_sbp: float
    ln_age_ln_treated_sbp: float
    ln_untreated_sbp: float
    ln_age_ln_untreated_sbp: float
    smoker: float
    ln_age_smoker: float
    diabetes: float
    mean: float
    s10: float


TABLE_A = {
    ("female", "white"): Row(-29.799, 4.884, 13.540, -3.114, -13.578, 3.149, 2.019, 0, 1.957,
                             0, 7.574, -1.665, 0.661, -29.18, 0.9665),
    ("female", "aa"): Row(17.114, 0, 0.940, 0, -18.920, 4.475, 29.291, -6.432, 27.820,
                          -6.087, 0.691, 0, 0.874, 86.61, 0.9533),
    ("male", "white"): Row(12.344, 0, 11.853, -2.664, -7.990, 1.769, 1.797, 0, 1.764, 0,
                           7.837, -1.795, 0.658, 61.18, 0.9144),
    ("male", "aa"): Row(2.469, 0, 0.302, 0, -0.307, 0, 1.916, 0, 1.809, 0, 0.549, 0, 0.645,
                        19.54, 0.8954),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Patient:
    sex: str
    race: str
    age: float
    tc: float
    hdl: float
    sbp: float
    treated: bool
    smoker: bool
    diabetic: bool

    def features(self) -> dict[str, float]:
        return {
            "age_years": self.age,
            "female": 1.0 if self.sex == "female" else 0.0,
            "african_american": 1.0 if self.race == "aa" else 0.0,
            "total_cholesterol_mg_dl": self.tc,
            "hdl_cholesterol_mg_dl": self.hdl,
            "systolic_bp_mm_hg": self.sbp,
            "treated_hypertension": float(self.treated),
            "current_smoker": float(self.smoker),
            "diabetes": float(self.diabetic),
        }


def individual_sum(p: Patient) -> float:
    c = TABLE_A[(p.sex, p.race)]
    la = math.log(p.age)
    ls = math.log(p.sbp)
    total = (
        c.ln_age * la
        + c.ln_age_sq * la**2
        + c.ln_tc * math.log(p.tc)
        + c.ln_age_ln_tc * la * math.log(p.tc)
        + c.ln_hdl * math.log(p.hdl)
        + c.ln_age_ln_hdl * la * math.log(p.hdl)
        + c.smoker * p.smoker
        + c.ln_age_smoker * la * p.smoker
        + c.diabetes * p.diabetic
    )
    if p.treated:
        total += c.ln_treated_sbp * ls + c.ln_age_ln_treated_sbp * la * ls
    else:
        total += c.ln_untreated_sbp * ls + c.ln_age_ln_untreated_sbp * la * ls
    return total


def reference_risk(p: Patient) -> float:
    c = TABLE_A[(p.sex, p.race)]
    risk: float = 1.0 - c.s10 ** math.exp(individual_sum(p) - c.mean)
    return risk
