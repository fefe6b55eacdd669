"""Cockcroft-Gault creatinine clearance under a population model's own preprocessing rules."""

from __future__ import annotations

from twin_engine.pk.errors import MissingCovariateError
from twin_engine.pk.types import PkModelSpec, Sex

# Cockcroft DW, Gault MH. Prediction of creatinine clearance from serum creatinine.
# Nephron 1976;16:31-41: CrCl = (140 - age) x weight / (72 x SCr), x 0.85 for women.
_CG_AGE = 140.0
_CG_DIVISOR = 72.0
_CG_FEMALE = 0.85


def cockcroft_gault(*, age: float, weight_kg: float, creatinine_mg_dl: float, sex: Sex) -> float:
    """Creatinine clearance in mL/min (total body weight, as in the models' data sets)."""
    if creatinine_mg_dl <= 0:
        raise MissingCovariateError(
            f"serum creatinine {creatinine_mg_dl:g} mg/dL is not positive; CrCl not computed"
        )
    crcl = (_CG_AGE - age) * weight_kg / (_CG_DIVISOR * creatinine_mg_dl)
    return crcl * (_CG_FEMALE if sex == "female" else 1.0)


def model_crcl(
    model: PkModelSpec, *, age: float, weight_kg: float, creatinine_mg_dl: float, sex: Sex
) -> float:
    """CrCl as the model's authors computed it (creatinine floor for the elderly, cap)."""
    scr = creatinine_mg_dl
    floor = model.elderly_creatinine_floor
    if floor is not None and age > floor[0]:
        scr = max(scr, floor[1])
    crcl = cockcroft_gault(age=age, weight_kg=weight_kg, creatinine_mg_dl=scr, sex=sex)
    if model.crcl_cap_ml_min is not None:
        crcl = min(crcl, model.crcl_cap_ml_min)
    # CG goes to 0 at age 140; a floor of 1 mL/min keeps power models defined (anuria).
    return max(crcl, 1.0)
