"""Statin exposure from the medication record, and the lipids measured before it.

Intensity classes: 2018 AHA/ACC multisociety cholesterol guideline (Grundy et al.,
Circulation 2019;139:e1082), Table 3 ("High-, Moderate-, and Low-Intensity Statin
Therapy"), by ingredient and daily dose. The 2018 guideline advises on the statin
decision from *untreated* risk: on-treatment lipids underestimate it, so the lipids that
decide are those before the first statin.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from twin_engine.derive import medication_active
from twin_engine.medications import STATIN_INGREDIENTS, STATIN_PRODUCTS
from twin_engine.twin import MedicationEntry, ObservationPoint, Twin

Intensity = Literal["low", "moderate", "high"]
INTENSITY_RANK: Final[Mapping[Intensity, int]] = {"low": 1, "moderate": 2, "high": 3}

#: Grundy 2019, Table 3: daily dose ranges (mg, inclusive) per intensity. Simvastatin 80
#: mg lowers LDL-C like high intensity but is not advised (FDA 2011, myopathy): classed
#: high, as the table's footnote does, and never suggested.
INTENSITY_TABLE: Final[Mapping[str, tuple[tuple[float, float, Intensity], ...]]] = {
    "atorvastatin": ((40, 80, "high"), (10, 20, "moderate")),
    "rosuvastatin": ((20, 40, "high"), (5, 10, "moderate")),
    "simvastatin": ((80, 80, "high"), (20, 40, "moderate"), (10, 10, "low")),
    "pravastatin": ((40, 80, "moderate"), (10, 20, "low")),
    "lovastatin": ((40, 80, "moderate"), (20, 20, "low")),
    "fluvastatin": ((80, 80, "moderate"), (20, 40, "low")),
    "pitavastatin": ((1, 4, "moderate"),),
}

#: What to suggest for each intensity (Grundy 2019, Table 3; the first line of each).
SUGGESTED_STATIN: Final[Mapping[Intensity, tuple[str, str, float]]] = {
    # (RxNorm SCD, display, mg)
    "high": ("617311", "atorvastatin 40 MG Oral Tablet", 40.0),
    "moderate": ("617310", "atorvastatin 20 MG Oral Tablet", 20.0),
}

_STRENGTH = re.compile(r"(\d+(?:\.\d+)?)\s*MG\b", re.IGNORECASE)
_INGREDIENT = re.compile(
    r"\b(" + "|".join(sorted(STATIN_INGREDIENTS.values())) + r"|simvistatin)\b", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class StatinExposure:
    """One statin order or statement: what, how much, from when to when."""

    ingredient: str | None
    dose_mg: float | None
    intensity: Intensity | None
    start: datetime | None
    #: The end of the exposure when known: a later statin order, or an ended period.
    stop: datetime | None
    ongoing: bool
    source: str

    def describe(self) -> str:
        name = self.ingredient or "a statin"
        return f"{name} {self.dose_mg:g} mg" if self.dose_mg is not None else name


def _text(entry: MedicationEntry) -> str:
    product = STATIN_PRODUCTS.get(entry.rxnorm or "")
    return " ".join(t for t in (entry.display, product) if t)


def statin_ingredient(entry: MedicationEntry) -> str | None:
    if entry.rxnorm in STATIN_INGREDIENTS:
        return STATIN_INGREDIENTS[entry.rxnorm or ""]
    found = _INGREDIENT.search(_text(entry))
    if found is None:
        return None
    name = found.group(1).lower()
    return "simvastatin" if name == "simvistatin" else name  # Synthea's spelling


def statin_strength_mg(entry: MedicationEntry) -> float | None:
    found = _STRENGTH.search(_text(entry))
    return float(found.group(1)) if found else None


def statin_intensity(ingredient: str | None, dose_mg: float | None) -> Intensity | None:
    """The Table 3 class of a daily dose; None when the dose is not in the table."""
    if ingredient is None or dose_mg is None:
        return None
    for low, high, intensity in INTENSITY_TABLE.get(ingredient, ()):
        if low <= dose_mg <= high:
            return intensity
    return None


def _start(e: MedicationEntry) -> datetime | None:
    return e.effective_start or e.authored


def statin_exposures(twin: Twin, instant: datetime) -> tuple[StatinExposure, ...]:
    """Every statin entry started by `instant`, oldest first; a later entry ends the
    previous one (a switch or a new dose)."""
    entries = [e for e in twin.medications.get("statin", ()) if (_start(e) or instant) <= instant]
    entries.sort(key=lambda e: (_start(e) or instant, e.source))
    out: list[StatinExposure] = []
    for i, e in enumerate(entries):
        start = e.effective_start or e.authored
        following = entries[i + 1] if i + 1 < len(entries) else None
        ongoing = medication_active(e, instant)
        stop = e.effective_end if e.effective_end != e.effective_start else None
        if following is not None and not ongoing:
            stop = stop or following.effective_start or following.authored
        ingredient = statin_ingredient(e)
        dose = statin_strength_mg(e)
        out.append(
            StatinExposure(
                ingredient, dose, statin_intensity(ingredient, dose), start, stop, ongoing, e.source
            )
        )
    return tuple(out)


def current_statin(exposures: tuple[StatinExposure, ...]) -> StatinExposure | None:
    """The most recent statin in effect, if any."""
    current = [x for x in exposures if x.ongoing]
    return current[-1] if current else None


def first_statin_start(exposures: tuple[StatinExposure, ...]) -> datetime | None:
    starts = [x.start for x in exposures if x.start is not None]
    return min(starts) if starts else None


@dataclass(frozen=True, slots=True)
class LipidPanel:
    """Total and HDL cholesterol (and LDL when there) measured together, before a date."""

    total_mg_dl: float
    hdl_mg_dl: float
    ldl_mg_dl: float | None
    time: datetime
    sources: tuple[str, ...]


def _ok(points: tuple[ObservationPoint, ...], before: datetime) -> list[ObservationPoint]:
    return [p for p in points if p.quality == "ok" and p.value is not None and p.time < before]


def lipids_before(twin: Twin, before: datetime) -> LipidPanel | None:
    """The latest total/HDL pair taken on one day before `before` (the pre-treatment
    panel when `before` is the first statin's start)."""
    totals = _ok(twin.observations.get("total_cholesterol", ()), before)
    hdls = _ok(twin.observations.get("hdl_cholesterol", ()), before)
    ldls = _ok(twin.observations.get("ldl_cholesterol", ()), before)
    for total in reversed(totals):
        day = total.time.date()
        hdl = next((h for h in reversed(hdls) if h.time.date() == day), None)
        if hdl is None or total.value is None or hdl.value is None:
            continue
        ldl = next((x for x in reversed(ldls) if x.time.date() == day), None)
        sources = (total.source, hdl.source) + ((ldl.source,) if ldl else ())
        return LipidPanel(total.value, hdl.value, ldl.value if ldl else None, total.time, sources)
    return None


def untreated_ldl(
    twin: Twin, first_statin: datetime | None, instant: datetime
) -> ObservationPoint | None:
    """The latest LDL-C measured off statins: before the first statin, or the latest."""
    points = [
        p
        for p in twin.observations.get("ldl_cholesterol", ())
        if p.quality == "ok"
        and p.value is not None
        and (p.time < first_statin if first_statin is not None else p.time <= instant)
    ]
    return points[-1] if points else None
