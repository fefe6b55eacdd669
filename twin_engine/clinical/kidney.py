"""Kidney state from the creatinine, eGFR and albuminuria timelines.

- Acute kidney injury, KDIGO 2012 Clinical Practice Guideline for AKI (Kidney Int Suppl
  2012;2:1), section 2.1: creatinine rise >= 0.3 mg/dL within 48 h, or >= 1.5x baseline
  known or presumed to have occurred within the prior 7 days; stages (Table 2) by 1.5-1.9x,
  2.0-2.9x, >= 3.0x or >= 4.0 mg/dL. eGFR equations assume a steady state, so no eGFR-based
  risk is computed from a creatinine taken during AKI.
- Chronic kidney disease, KDIGO 2024 CKD guideline (Kidney Int 2024;105(4S):S117),
  chapter 1: eGFR < 60 or albuminuria >= 30 mg/g present for more than 3 months; G1-G5 by
  eGFR 90/60/45/30/15 and A1-A3 by ACR 30/300 mg/g (Figure 2).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final

from twin_engine.egfr import CKD_EPI_2021_MIN_AGE_YEARS, ckd_epi_2021
from twin_engine.twin import ObservationPoint, Twin

#: KDIGO 2012 AKI, rec. 2.1.1.
AKI_ABSOLUTE_RISE_MG_DL: Final = 0.3
AKI_ABSOLUTE_WINDOW: Final = timedelta(hours=48)
AKI_RELATIVE_RISE: Final = 1.5
AKI_RELATIVE_WINDOW: Final = timedelta(days=7)
#: KDIGO 2012 AKI, Table 2 (staging).
AKI_STAGE_2_RATIO: Final = 2.0
AKI_STAGE_3_RATIO: Final = 3.0
AKI_STAGE_3_CREATININE_MG_DL: Final = 4.0
#: When no creatinine lies in the 7 days before, the baseline is presumed from the values
#: of the prior 7-365 days (their median), as in Siew et al., CJASN 2012;7:712 (outpatient
#: values 7-365 days before admission best estimate the pre-AKI creatinine).
BASELINE_LOOKBACK: Final = timedelta(days=365)

#: KDIGO 2024 CKD, chapter 1: abnormality present for more than 3 months.
CKD_CHRONICITY: Final = timedelta(days=90)
#: KDIGO 2024, Figure 2: GFR categories (lower bounds, mL/min/1.73 m2).
GFR_CATEGORIES: Final = ((90.0, "G1"), (60.0, "G2"), (45.0, "G3a"), (30.0, "G3b"), (15.0, "G4"))
#: KDIGO 2024, Figure 2: albuminuria categories: A1 < 30, A2 30-300, A3 > 300 mg/g.
A1_BELOW_MG_G: Final = 30.0
A2_UP_TO_MG_G: Final = 300.0
CKD_EGFR_BELOW: Final = 60.0
CKD_ACR_AT_LEAST_MG_G: Final = 30.0
#: LOINC of eGFR by the race-free CKD-EPI 2021 equation (the only measured eGFR used).
EGFR_CKD_EPI_2021: Final = "98979-8"


@dataclass(frozen=True, slots=True)
class AcuteKidneyInjury:
    """A creatinine that is not at steady state, with the baseline it is measured against."""

    stage: int
    creatinine_mg_dl: float
    time: datetime
    source: str
    baseline_mg_dl: float
    baseline_time: datetime
    #: "lowest in the prior 7 days" or "median of the prior 7-365 days".
    baseline_basis: str

    @property
    def ratio(self) -> float:
        return self.creatinine_mg_dl / self.baseline_mg_dl


@dataclass(frozen=True, slots=True)
class EgfrPoint:
    value: float
    time: datetime
    source: str


@dataclass(frozen=True, slots=True)
class KidneyStatus:
    """eGFR and albuminuria categories, and whether the abnormality is chronic."""

    egfr: EgfrPoint | None
    g_category: str | None
    acr_mg_g: float | None
    acr_time: datetime | None
    a_category: str | None
    #: The first abnormal value of the current run (no normal value since), if any.
    abnormal_since: datetime | None
    chronic: bool


def gfr_category(egfr: float) -> str:
    """KDIGO G category of an eGFR (mL/min/1.73 m2)."""
    for lower, name in GFR_CATEGORIES:
        if egfr >= lower:
            return name
    return "G5"


def albuminuria_category(acr_mg_g: float) -> str:
    """KDIGO A category of a urine albumin/creatinine ratio (mg/g)."""
    if acr_mg_g < A1_BELOW_MG_G:
        return "A1"
    return "A2" if acr_mg_g <= A2_UP_TO_MG_G else "A3"


def _usable(points: Sequence[ObservationPoint], instant: datetime) -> list[ObservationPoint]:
    return [p for p in points if p.quality == "ok" and p.value is not None and p.time <= instant]


def baseline_creatinine(
    points: Sequence[ObservationPoint], at: datetime
) -> tuple[float, datetime, str] | None:
    """The baseline for a creatinine taken at `at`: the lowest value in the 7 days before
    (KDIGO "known within the prior 7 days"), else the median of the values 7-365 days
    before (presumed, Siew 2012); None when there is no earlier value in a year."""
    recent = [p for p in points if at - AKI_RELATIVE_WINDOW <= p.time < at]
    if recent:
        low = min(recent, key=lambda p: (p.value, p.time))
        assert low.value is not None  # noqa: S101 (filtered by _usable)
        return low.value, low.time, "lowest in the prior 7 days"
    older = [p for p in points if at - BASELINE_LOOKBACK <= p.time < at - AKI_RELATIVE_WINDOW]
    if not older:
        return None
    values = [p.value for p in older if p.value is not None]
    return float(statistics.median(values)), older[-1].time, "median of the prior 7-365 days"


def aki_stage(creatinine_mg_dl: float, baseline_mg_dl: float, rise_48h_mg_dl: float) -> int:
    """KDIGO 2012 AKI stage (0 = no AKI) from the ratio to baseline and the 48-hour rise."""
    ratio = creatinine_mg_dl / baseline_mg_dl
    acute = ratio >= AKI_RELATIVE_RISE or rise_48h_mg_dl >= AKI_ABSOLUTE_RISE_MG_DL
    if not acute:
        return 0
    if ratio >= AKI_STAGE_3_RATIO or creatinine_mg_dl >= AKI_STAGE_3_CREATININE_MG_DL:
        return 3
    if ratio >= AKI_STAGE_2_RATIO:
        return 2
    return 1


def _aki_at(points: Sequence[ObservationPoint], index: int) -> AcuteKidneyInjury | None:
    """AKI at one creatinine of a sorted, usable timeline, against the values before it."""
    latest = points[index]
    assert latest.value is not None  # noqa: S101
    earlier = points[:index]
    baseline = baseline_creatinine(earlier, latest.time)
    if baseline is None:
        return None
    window = [
        p.value
        for p in earlier
        if latest.time - p.time <= AKI_ABSOLUTE_WINDOW and p.value is not None
    ]
    rise_48h = latest.value - min(window) if window else 0.0
    base_value, base_time, basis = baseline
    stage = aki_stage(latest.value, base_value, rise_48h)
    if stage == 0:
        return None
    return AcuteKidneyInjury(
        stage, latest.value, latest.time, latest.source, base_value, base_time, basis
    )


def acute_kidney_injury(twin: Twin, instant: datetime) -> AcuteKidneyInjury | None:
    """AKI when the latest creatinine on or before `instant` meets a KDIGO criterion."""
    points = _usable(twin.observations.get("creatinine", ()), instant)
    return _aki_at(points, len(points) - 1) if len(points) >= 2 else None


def aki_episodes(twin: Twin, instant: datetime) -> tuple[AcuteKidneyInjury, ...]:
    """Every creatinine on the timeline that met a KDIGO AKI criterion (for the app)."""
    points = _usable(twin.observations.get("creatinine", ()), instant)
    found = (_aki_at(points, i) for i in range(1, len(points)))
    return tuple(a for a in found if a is not None)


def _age_on(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def egfr_series(twin: Twin, instant: datetime) -> list[EgfrPoint]:
    """eGFR over time: CKD-EPI 2021 from each creatinine (age at the sample), and
    measured CKD-EPI 2021 results; the same equation as the twin's eGFR feature."""
    out: list[EgfrPoint] = []
    demo = twin.demographics
    if demo.birth_date is not None and demo.gender in ("female", "male"):
        for p in _usable(twin.observations.get("creatinine", ()), instant):
            age = _age_on(demo.birth_date, p.time.date())
            if age >= CKD_EPI_2021_MIN_AGE_YEARS and p.value is not None:
                value = ckd_epi_2021(p.value, age, female=demo.gender == "female")
                out.append(EgfrPoint(value, p.time, p.source))
    for p in _usable(twin.observations.get("egfr", ()), instant):
        if p.loinc == EGFR_CKD_EPI_2021 and p.value is not None:
            out.append(EgfrPoint(p.value, p.time, p.source))
    return sorted(out, key=lambda e: (e.time, e.source))


def _abnormal_since(times_flags: Sequence[tuple[datetime, bool]]) -> datetime | None:
    """Start of the trailing run of abnormal values (None when the latest is normal)."""
    since = None
    for moment, abnormal in reversed(times_flags):
        if not abnormal:
            break
        since = moment
    return since


def kidney_status(twin: Twin, instant: datetime) -> KidneyStatus:
    """G and A categories of the latest values; chronic when the abnormality (eGFR < 60
    or ACR >= 30 mg/g) has lasted more than 90 days with no normal value in between."""
    series = egfr_series(twin, instant)
    acr = _usable(twin.observations.get("uacr", ()), instant)
    latest = series[-1] if series else None
    latest_acr = acr[-1] if acr else None
    egfr_since = _abnormal_since([(e.time, e.value < CKD_EGFR_BELOW) for e in series])
    acr_since = _abnormal_since([(p.time, (p.value or 0.0) >= CKD_ACR_AT_LEAST_MG_G) for p in acr])
    chronic = False
    last_egfr = latest.time if latest is not None else None
    last_acr = latest_acr.time if latest_acr is not None else None
    for since, last in ((egfr_since, last_egfr), (acr_since, last_acr)):
        if since is not None and last is not None and last - since > CKD_CHRONICITY:
            chronic = True
    starts = [s for s in (egfr_since, acr_since) if s is not None]
    return KidneyStatus(
        egfr=latest,
        g_category=gfr_category(latest.value) if latest else None,
        acr_mg_g=latest_acr.value if latest_acr else None,
        acr_time=latest_acr.time if latest_acr else None,
        a_category=albuminuria_category(latest_acr.value)
        if latest_acr and latest_acr.value is not None
        else None,
        abnormal_since=min(starts) if starts else None,
        chronic=chronic,
    )
