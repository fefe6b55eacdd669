"""Treatment response on the twin: risk under a what-if therapy, from published effects.

The model's risk is the patient's untreated-by-this-therapy risk; a therapy scales it
by the relative risk that trials measured for the change it brings:

- Statin intensity → LDL-C lowering: 2018 AHA/ACC cholesterol guideline (Grundy et al.,
  Circulation 2019;139:e1082), Table 3: high intensity lowers LDL-C by >= 50%, moderate
  by 30-49%. We use the lower bounds (50%, 30%): the conservative expected effect.
- LDL-C lowering → events: Cholesterol Treatment Trialists' Collaboration, Lancet
  2010;376:1670-81: each 1.0 mmol/L LDL-C reduction reduces major vascular events by
  22% (rate ratio 0.78 per mmol/L, 95% CI 0.76-0.80), proportionally for larger ones.
- Systolic BP lowering → events: Ettehad et al., Lancet 2016;387:957-67: every
  10 mm Hg reduction in SBP reduces major cardiovascular events (RR 0.80, 95% CI
  0.77-0.83).

The two are combined multiplicatively (independent mechanisms), as in the ACC/AHA
ASCVD Risk Estimator Plus's therapy-impact estimates. These are trial averages applied
to one patient; the card says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

StatinIntensity = Literal["moderate", "high"]

#: Expected LDL-C reduction by statin intensity, fraction (Grundy 2019, Table 3, lower bounds).
LDL_REDUCTION_BY_INTENSITY: Final[dict[StatinIntensity, float]] = {
    "moderate": 0.30,
    "high": 0.50,
}
#: Rate ratio of major vascular events per 1.0 mmol/L LDL-C reduction (CTT, Lancet 2010).
CTT_RR_PER_MMOL_L: Final = 0.78
#: Its 95% confidence interval (CTT, Lancet 2010), for uncertainty draws.
CTT_RR_PER_MMOL_L_CI95: Final = (0.76, 0.80)
#: mg/dL per mmol/L of cholesterol (molar mass 386.65 g/mol; clinical.md conversion).
CHOLESTEROL_MG_DL_PER_MMOL_L: Final = 38.67
#: Relative risk of major CVD events per 10 mm Hg SBP reduction (Ettehad, Lancet 2016).
ETTEHAD_RR_PER_10_MM_HG: Final = 0.80
#: Its 95% confidence interval (Ettehad, Lancet 2016), for uncertainty draws.
ETTEHAD_RR_PER_10_MM_HG_CI95: Final = (0.77, 0.83)


class TherapyError(ValueError):
    """A what-if that cannot be computed from what we know (a value is missing)."""


@dataclass(frozen=True, slots=True)
class TherapyEffect:
    """One what-if: the therapy, its relative risk, and the risk before and after."""

    description: str
    relative_risk: float
    risk_before: float
    risk_after: float

    @property
    def absolute_risk_reduction(self) -> float:
        return self.risk_before - self.risk_after


def statin_relative_risk(ldl_mg_dl: float, intensity: StatinIntensity) -> float:
    """RR from starting a statin of this intensity at this LDL-C (CTT per-mmol/L model)."""
    if not ldl_mg_dl > 0:
        raise TherapyError(f"LDL-C must be positive, got {ldl_mg_dl} mg/dL")
    reduction_mmol_l = ldl_mg_dl * LDL_REDUCTION_BY_INTENSITY[intensity]
    reduction_mmol_l /= CHOLESTEROL_MG_DL_PER_MMOL_L
    return float(CTT_RR_PER_MMOL_L**reduction_mmol_l)


def sbp_relative_risk(sbp_mm_hg: float, target_mm_hg: float) -> float:
    """RR from lowering SBP to the target (none when already at or below it)."""
    drop = max(0.0, sbp_mm_hg - target_mm_hg)
    return float(ETTEHAD_RR_PER_10_MM_HG ** (drop / 10.0))


def apply_therapy(
    risk: float,
    *,
    ldl_mg_dl: float | None = None,
    statin: StatinIntensity | None = None,
    sbp_mm_hg: float | None = None,
    sbp_target_mm_hg: float | None = None,
) -> TherapyEffect:
    """Risk under a statin of the given intensity and/or SBP lowered to a target."""
    if not 0.0 <= risk <= 1.0 or math.isnan(risk):
        raise TherapyError(f"risk must be a fraction, got {risk}")
    rr = 1.0
    parts: list[str] = []
    if statin is not None:
        if ldl_mg_dl is None:
            raise TherapyError("a statin what-if needs the patient's LDL-C")
        rr *= statin_relative_risk(ldl_mg_dl, statin)
        parts.append(f"{statin}-intensity statin")
    if sbp_target_mm_hg is not None:
        if sbp_mm_hg is None:
            raise TherapyError("a blood-pressure what-if needs the patient's SBP")
        rr *= sbp_relative_risk(sbp_mm_hg, sbp_target_mm_hg)
        parts.append(f"SBP lowered to {sbp_target_mm_hg:.0f} mm Hg")
    if not parts:
        raise TherapyError("no therapy given")
    return TherapyEffect(" and ".join(parts), rr, risk, risk * rr)
