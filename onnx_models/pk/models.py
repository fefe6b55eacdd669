"""Vancomycin population PK models: covariate model, between-subject variability, residual error.

The structural model (two compartments, zero-order infusions) is the ONNX graph of
`onnx_models.build.pk.graph`; this module holds what turns a patient's covariates and random effects
(eta) into the graph's individual `params` row [CL L/h, V1 L, Q L/h, V2 L].

Every number cites its table. Where public implementations differ, the choice is stated:

* Goti 2018: the covariate model and values are those of R posologyr's worked example
  `mod_vancomycin_Goti2018` (levenc/posologyr, vignettes/auc_based_dosing.Rmd), which gives
  Goti 2018 Table 2: TVCL = 4.5 (CrCl/120)^0.8 0.7^DIAL, TVV1 = 58.4 (WT/70) 0.5^DIAL,
  TVV2 = 38.4, TVQ = 6.5; omega^2 CL 0.147, V1 0.510, V2 0.282 (= log(1 + CV^2) for the
  Table 2 CVs 39.8 %, 81.6 %, 57.1 %, as nlmixr2lib's Goti_2018_vancomycin.R derives them);
  residual additive 3.4 mg/L and proportional 22.7 %.
  - nlmixr2lib (inst/modeldb/specificDrugs/Goti_2018_vancomycin.R) also scales V2 by WT/70,
    reading the Methods ("volume parameters were normalized to a 70-kg individual"); posologyr
    does not. We follow posologyr (the Table 2 covariate row names WT on V1 only) so that the
    worked examples reproduce; `GOTI_2018_V2_WEIGHT` is the nlmixr2lib reading.
  - posologyr's residual model is sd = a + b*f ("combined1"); nlmixr2's add()+prop() is
    sd = sqrt(a^2 + b^2 f^2) ("combined2"). We follow posologyr by default (`"sum"`).
  - CrCl preprocessing (Goti 2018 Methods, as quoted in nlmixr2lib's covariate notes):
    Cockcroft-Gault, capped at 150 mL/min, serum creatinine < 1 mg/dL set to 1 mg/dL for
    patients older than 60 years.
* Buelga 2005 (Antimicrob Agents Chemother 2005;49:4934-41, Table 4 final general model), as
  nlmixr2lib's Buelga_2005_vancomycin.R: one compartment, CL (L/h) = 1.08 x CrCl (L/h),
  V (L) = 0.98 x TBW (kg); CV 28.16 % (CL), 37.15 % (V), correlation 23.12 %; additive 3.52 mg/L.
* Thomson 2009 (J Antimicrob Chemother 2009;63:1050-7), as InsightRX's PKPDsim model
  `pk_vanco_thomson` and PKPDposterior's Stan example: CL = 2.99 (1 + 0.0154 (CrCl - 66)) L/h,
  V1 = 0.675 L/kg, Q = 2.28 L/h, V2 = 0.732 L/kg; IIV (SD of eta) CL 0.27, Q 0.49, V1 0.15,
  V2 1.3; residual proportional 0.15, additive 1.6 mg/L (combined2 in PKPDsim).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
ResidualForm = Literal["sum", "root_sum_square"]
CovariateForm = Literal["goti2018", "buelga2005", "thomson2009"]
PARAM_NAMES: tuple[str, str, str, str] = ("cl_l_h", "vc_l", "q_l_h", "vp_l")


@dataclass(frozen=True, slots=True)
class PopulationPkModel:
    """One published model: how covariates and eta give [CL, V1, Q, V2] for the ONNX graph."""

    id: str
    name: str
    version: str
    source: str
    population: str
    covariate_form: CovariateForm
    # Typical values as printed, in the paper's own parameterisation (see `equations`).
    thetas: tuple[tuple[str, float], ...]
    equations: tuple[str, ...]
    # Which of the four params carry eta (indices into PARAM_NAMES), in eta order.
    eta_on: tuple[int, ...]
    # Covariance matrix of eta (log scale), row-major, len(eta_on) x len(eta_on).
    omega: tuple[tuple[float, ...], ...]
    residual_additive_mg_l: float
    residual_proportional: float
    residual_form: ResidualForm
    # Cockcroft-Gault rules of the model's own data set.
    crcl_cap_ml_min: float | None
    # (age above which, creatinine floor in mg/dL) or None.
    elderly_creatinine_floor: tuple[float, float] | None
    supports_dialysis: bool
    notes: tuple[str, ...] = ()

    @property
    def eta_names(self) -> tuple[str, ...]:
        return tuple(f"eta_{PARAM_NAMES[i]}" for i in self.eta_on)

    def typical_parameters(
        self, *, weight_kg: float, crcl_ml_min: float, dialysis: bool
    ) -> tuple[float, float, float, float]:
        """Typical [CL, V1, Q, V2] for these covariates (the model's covariate equations)."""
        th = dict(self.thetas)
        dial = 1.0 if dialysis else 0.0
        if self.covariate_form == "goti2018":
            cl = th["cl"] * (crcl_ml_min / 120.0) ** th["crcl_exp"] * th["dial_cl"] ** dial
            v1 = th["v1"] * (weight_kg / 70.0) * th["dial_v1"] ** dial
            v2 = th["v2"] * ((weight_kg / 70.0) if th.get("v2_weight", 0.0) else 1.0)
            return cl, v1, th["q"], v2
        if self.covariate_form == "buelga2005":
            # CrCl in L/h = mL/min x 60 / 1000 (Buelga 2005 expresses CLCR in L/h).
            return th["cl_per_crcl"] * crcl_ml_min * 0.06, th["v_per_kg"] * weight_kg, 0.0, 0.0
        cl = th["cl"] * (1.0 + th["crcl_slope"] * (crcl_ml_min - 66.0))
        return cl, th["v1_per_kg"] * weight_kg, th["q"], th["v2_per_kg"] * weight_kg

    def individual_parameters(
        self, *, weight_kg: float, crcl_ml_min: float, dialysis: bool, eta: FloatArray
    ) -> FloatArray:
        """[N, 4] individual parameters for eta [N, K] (log-normal: typical x exp(eta))."""
        typical = np.array(
            self.typical_parameters(
                weight_kg=weight_kg, crcl_ml_min=crcl_ml_min, dialysis=dialysis
            ),
            dtype=np.float64,
        )
        eta = np.atleast_2d(np.asarray(eta, dtype=np.float64))
        out = np.repeat(typical[None, :], eta.shape[0], axis=0)
        for k, index in enumerate(self.eta_on):
            out[:, index] = typical[index] * np.exp(eta[:, k])
        return out


GOTI_2018 = PopulationPkModel(
    id="vancomycin_goti2018",
    name="Vancomycin two-compartment population PK (Goti 2018)",
    version="1.0.0",
    source=(
        "Goti V, Chaturvedula A, Fossler MJ, Mok S, Jacob JT. Hospitalized patients with and "
        "without hemodialysis have markedly different vancomycin pharmacokinetics: a population "
        "pharmacokinetic model-based analysis. Ther Drug Monit. 2018;40(2):212-221 (Table 2). "
        "doi:10.1097/FTD.0000000000000490. Implemented as R posologyr mod_vancomycin_Goti2018."
    ),
    population=(
        "1812 hospitalized adults (17-101 y, 33-255 kg, CrCl 4-150 mL/min, 18.5 % on "
        "intermittent hemodialysis), two academic hospitals in Atlanta, GA, 2011-2012 "
        "(Goti 2018 Table 1)"
    ),
    covariate_form="goti2018",
    thetas=(
        ("cl", 4.5),  # Goti 2018 Table 2: CL 4.5 L/h at CrCl 120 mL/min
        ("crcl_exp", 0.8),  # Goti 2018 Table 2: CrCl exponent on CL
        ("dial_cl", 0.7),  # Goti 2018 Table 2: dialysis factor on CL
        ("v1", 58.4),  # Goti 2018 Table 2: V1 58.4 L at 70 kg
        ("dial_v1", 0.5),  # Goti 2018 Table 2: dialysis factor on V1
        ("q", 6.5),  # Goti 2018 Table 2: Q 6.5 L/h
        ("v2", 38.4),  # Goti 2018 Table 2: V2 38.4 L
        ("v2_weight", 0.0),  # posologyr: V2 not scaled by weight (nlmixr2lib: scaled)
    ),
    equations=(
        "CL = 4.5 x (CrCl/120)^0.8 x 0.7^DIAL x exp(eta_CL) [L/h]",
        "V1 = 58.4 x (WT/70) x 0.5^DIAL x exp(eta_V1) [L]",
        "Q = 6.5 [L/h]",
        "V2 = 38.4 x exp(eta_V2) [L]",
        "CrCl: Cockcroft-Gault (mL/min), capped at 150; SCr < 1 mg/dL set to 1 if age > 60",
    ),
    eta_on=(0, 1, 3),
    # posologyr mod_vancomycin_Goti2018 omega (= log(1 + CV^2), Goti 2018 Table 2 CVs).
    omega=((0.147, 0.0, 0.0), (0.0, 0.510, 0.0), (0.0, 0.0, 0.282)),
    residual_additive_mg_l=3.4,  # Goti 2018 Table 2
    residual_proportional=0.227,  # Goti 2018 Table 2
    residual_form="sum",  # posologyr error_model: g = a + b*f
    crcl_cap_ml_min=150.0,  # Goti 2018 Methods (via nlmixr2lib covariate notes)
    elderly_creatinine_floor=(60.0, 1.0),  # Goti 2018 Methods (via nlmixr2lib notes)
    supports_dialysis=True,
    notes=(
        "Dialysis (DIAL) is intermittent high-flux hemodialysis, time-fixed per patient.",
        "V2 not scaled by weight (posologyr); nlmixr2lib scales V2 by WT/70.",
        "Residual sd = 3.4 + 0.227 x C (posologyr combined1).",
    ),
)

# nlmixr2lib's reading: V2 x WT/70 and sd = sqrt(3.4^2 + (0.227 C)^2).
GOTI_2018_V2_WEIGHT = replace(
    GOTI_2018,
    id="vancomycin_goti2018_v2wt",
    name="Vancomycin two-compartment population PK (Goti 2018, nlmixr2lib reading)",
    thetas=tuple((k, 1.0 if k == "v2_weight" else v) for k, v in GOTI_2018.thetas),
    equations=tuple(e.replace("V2 = 38.4 x", "V2 = 38.4 x (WT/70) x") for e in GOTI_2018.equations),
    residual_form="root_sum_square",
    notes=("nlmixr2lib Goti_2018_vancomycin.R: V2 scaled by WT/70; add() + prop() error.",),
)

_BUELGA_VAR_CL = math.log(1.0 + 0.2816**2)  # Buelga 2005 Table 4: omega CL 28.16 % CV
_BUELGA_VAR_V = math.log(1.0 + 0.3715**2)  # Buelga 2005 Table 4: omega V 37.15 % CV
_BUELGA_COV = 0.2312 * math.sqrt(_BUELGA_VAR_CL * _BUELGA_VAR_V)  # Table 4: CL/V 23.12 %

BUELGA_2005 = PopulationPkModel(
    id="vancomycin_buelga2005",
    name="Vancomycin one-compartment population PK (Buelga 2005)",
    version="1.0.0",
    source=(
        "Buelga DS, Fernandez de Gatta MM, Herrera EV, Dominguez-Gil A, Garcia MJ. Population "
        "pharmacokinetic analysis of vancomycin in patients with hematological malignancies. "
        "Antimicrob Agents Chemother. 2005;49(12):4934-4941 (Table 4). "
        "doi:10.1128/AAC.49.12.4934-4941.2005. Values as nlmixr2lib Buelga_2005_vancomycin.R."
    ),
    population=(
        "215 adults (>= 15 y) with hematological malignancies, Salamanca, Spain, 1989-1999; "
        "no ICU patients (Buelga 2005 Table 1)"
    ),
    covariate_form="buelga2005",
    thetas=(
        ("cl_per_crcl", 1.08),  # Buelga 2005 Table 4: CL (L/h) = 1.08 x CrCl (L/h)
        ("v_per_kg", 0.98),  # Buelga 2005 Table 4: V (L) = 0.98 x TBW (kg)
    ),
    equations=(
        "CL = 1.08 x CrCl [L/h] x exp(eta_CL) [L/h]",
        "V = 0.98 x TBW x exp(eta_V) [L]",
        "CrCl: Cockcroft-Gault (mL/min x 0.06 = L/h)",
    ),
    eta_on=(0, 1),
    omega=((_BUELGA_VAR_CL, _BUELGA_COV), (_BUELGA_COV, _BUELGA_VAR_V)),
    residual_additive_mg_l=3.52,  # Buelga 2005 Table 4: sigma 3.52 mg/L
    residual_proportional=0.0,  # additive only (Buelga 2005 Methods)
    residual_form="root_sum_square",
    crcl_cap_ml_min=None,
    elderly_creatinine_floor=None,
    supports_dialysis=False,
    notes=("One compartment: Q = 0 and V2 = 0 in the graph.",),
)

THOMSON_2009 = PopulationPkModel(
    id="vancomycin_thomson2009",
    name="Vancomycin two-compartment population PK (Thomson 2009)",
    version="1.0.0",
    source=(
        "Thomson AH, Staatz CE, Tobin CM, Gall M, Lovering AM. Development and evaluation of "
        "vancomycin dosage guidelines designed to achieve new target concentrations. "
        "J Antimicrob Chemother. 2009;63(5):1050-1057. doi:10.1093/jac/dkp085. Values as "
        "InsightRX PKPDsim pk_vanco_thomson / PKPDposterior (CL 2.99, TH_CRCL 0.0154, Q 2.28, "
        "V1 0.675 L/kg, V2 0.732 L/kg; iiv CL 0.27, Q 0.49, V1 0.15, V2 1.3; ruv prop 0.15, "
        "add 1.6)."
    ),
    population="398 adult hospital patients, Glasgow and Bristol, UK (Thomson 2009)",
    covariate_form="thomson2009",
    thetas=(
        ("cl", 2.99),  # Thomson 2009 / PKPDsim pk_vanco_thomson: CL 2.99 L/h at CrCl 66
        ("crcl_slope", 0.0154),  # TH_CRCL 0.0154 per mL/min
        ("v1_per_kg", 0.675),  # V1 0.675 L/kg
        ("q", 2.28),  # Q 2.28 L/h
        ("v2_per_kg", 0.732),  # V2 0.732 L/kg
    ),
    equations=(
        "CL = 2.99 x (1 + 0.0154 x (CrCl - 66)) x exp(eta_CL) [L/h]",
        "V1 = 0.675 x WT x exp(eta_V1) [L]",
        "Q = 2.28 x exp(eta_Q) [L/h]",
        "V2 = 0.732 x WT x exp(eta_V2) [L]",
        "CrCl: Cockcroft-Gault (mL/min)",
    ),
    eta_on=(0, 1, 2, 3),
    omega=(  # PKPDposterior iiv (SD of eta), squared
        (0.27**2, 0.0, 0.0, 0.0),
        (0.0, 0.15**2, 0.0, 0.0),
        (0.0, 0.0, 0.49**2, 0.0),
        (0.0, 0.0, 0.0, 1.3**2),
    ),
    residual_additive_mg_l=1.6,  # PKPDposterior ruv add
    residual_proportional=0.15,  # PKPDposterior ruv prop
    residual_form="root_sum_square",
    crcl_cap_ml_min=None,
    elderly_creatinine_floor=None,
    supports_dialysis=False,
    notes=(
        "Thomson's own CrCl preprocessing was not found in the sources checked; plain "
        "Cockcroft-Gault with total body weight is used.",
    ),
)

MODELS: dict[str, PopulationPkModel] = {
    m.id: m for m in (GOTI_2018, BUELGA_2005, THOMSON_2009, GOTI_2018_V2_WEIGHT)
}
DEFAULT_MODEL = GOTI_2018
