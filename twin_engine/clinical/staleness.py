"""How old each input may be: one table, used by the twin's features and every service.

A value older than its limit is `stale`. Vital signs and history that are stale are
still shown and used, flagged; a stale *laboratory* input of a risk equation
(`BLOCKS_WHEN_STALE`) gives no number at all in any service: a risk from a lipid
panel six years old is not the patient's today, and two services must not disagree
about it (one showing the number, the other ordering the test).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Final

#: How old a value may be before it is flagged `stale`.
STALE_AFTER: Final[Mapping[str, timedelta]] = {
    # 2017 ACC/AHA high blood pressure guideline (Whelton et al., Hypertension
    # 2018;71:e13, Figure 4): adults with normal BP are re-evaluated yearly.
    "systolic_bp": timedelta(days=365),
    "diastolic_bp": timedelta(days=365),
    # 2018 AHA/ACC cholesterol guideline (Grundy et al., Circulation 2019;139:e1082,
    # section 4.4.1): reassess risk factors including lipids every 4-6 years.
    "total_cholesterol": timedelta(days=5 * 365),
    "hdl_cholesterol": timedelta(days=5 * 365),
    "ldl_cholesterol": timedelta(days=5 * 365),
    "triglycerides": timedelta(days=5 * 365),
    # KDIGO 2012 CKD guideline (Kidney Int Suppl 2013;3:1, rec. 2.1.3): assess GFR and
    # albuminuria at least annually in people with CKD.
    "creatinine": timedelta(days=365),
    "egfr": timedelta(days=365),
    "uacr": timedelta(days=365),
    # ADA Standards of Care in Diabetes-2024 (Diabetes Care 2024;47(Suppl 1):S111,
    # rec. 6.1): A1C at least twice a year when at goal; a year-old value is stale.
    "hba1c": timedelta(days=365),
    # Weight and BMI drive dosing and risk; USPSTF obesity screening is at least yearly
    # in primary care visits.  Adult height changes slowly, so ten years.
    "weight": timedelta(days=365),
    "bmi": timedelta(days=365),
    "height": timedelta(days=10 * 365),
    # CMS138 / NQF 0028 (tobacco use screening): screened within the last 24 months.
    "smoking": timedelta(days=2 * 365),
    # Heart rate is a vital sign of the moment; a week-old value is stale (project choice).
    "heart_rate": timedelta(days=7),
}

#: Model inputs whose staleness withholds the number (and orders the test) in every
#: service: the laboratory values. Project choice, stated: a stale blood pressure or
#: smoking status is shown as stale because it is re-measured at the visit itself.
BLOCKS_WHEN_STALE: Final = frozenset(
    {
        "total_cholesterol_mg_dl",
        "hdl_cholesterol_mg_dl",
        "ldl_cholesterol_mg_dl",
        "egfr_ml_min_1_73m2",
        "uacr_mg_g",
    }
)


def limit_years(key: str) -> float:
    """The limit in years, for sentences ("over 5 years")."""
    return STALE_AFTER[key].days / 365
