"""Estimated GFR by the race-free CKD-EPI 2021 creatinine equation.

Inker LA, Eneanya ND, Coresh J, et al. New creatinine- and cystatin C-based equations to
estimate GFR without race. N Engl J Med 2021;385:1737-1749, Table 2 (creatinine equation):

    eGFR = 142 x min(Scr/k, 1)^a x max(Scr/k, 1)^-1.200 x 0.9938^age [x 1.012 if female]

with k = 0.7 (female) or 0.9 (male) and a = -0.241 (female) or -0.302 (male);
Scr in mg/dL, age in years, result in mL/min/1.73 m2.  Developed in adults (>= 18 y).
"""

from __future__ import annotations

# Inker et al., NEJM 2021;385:1737, Table 2 (eGFRcr 2021).
CKD_EPI_2021_MULTIPLIER = 142.0
CKD_EPI_2021_KAPPA_FEMALE = 0.7
CKD_EPI_2021_KAPPA_MALE = 0.9
CKD_EPI_2021_ALPHA_FEMALE = -0.241
CKD_EPI_2021_ALPHA_MALE = -0.302
CKD_EPI_2021_HIGH_EXPONENT = -1.200
CKD_EPI_2021_AGE_BASE = 0.9938
CKD_EPI_2021_FEMALE_FACTOR = 1.012
#: The equation was developed and validated in adults only (Inker 2021, Methods).
CKD_EPI_2021_MIN_AGE_YEARS = 18.0


def ckd_epi_2021(creatinine_mg_dl: float, age_years: float, *, female: bool) -> float:
    """eGFR in mL/min/1.73 m2 from serum creatinine (mg/dL), age (years) and sex.

    Raises ValueError for a non-positive creatinine or an age under 18, where the
    equation does not apply; callers turn that into a missing feature with a note.
    """
    if not creatinine_mg_dl > 0:
        raise ValueError(f"creatinine must be positive, got {creatinine_mg_dl} mg/dL")
    if age_years < CKD_EPI_2021_MIN_AGE_YEARS:
        raise ValueError(f"CKD-EPI 2021 applies to adults (>= 18 y), got {age_years} y")
    kappa = CKD_EPI_2021_KAPPA_FEMALE if female else CKD_EPI_2021_KAPPA_MALE
    alpha = CKD_EPI_2021_ALPHA_FEMALE if female else CKD_EPI_2021_ALPHA_MALE
    ratio = creatinine_mg_dl / kappa
    egfr: float = (
        CKD_EPI_2021_MULTIPLIER
        * min(ratio, 1.0) ** alpha
        * max(ratio, 1.0) ** CKD_EPI_2021_HIGH_EXPONENT
        * CKD_EPI_2021_AGE_BASE**age_years
    )
    return egfr * CKD_EPI_2021_FEMALE_FACTOR if female else egfr
