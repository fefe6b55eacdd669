"""FHIR R4 Dosage and Timing: the one reader of how often, how much, how fast and by which route.

Both the drafted order (``MedicationRequest.dosageInstruction``) and the dose history
(``MedicationRequest.dosageInstruction``, ``MedicationAdministration.dosage``) are read here,
so the service and the PK history can never disagree on what an order says.

What the standard says and this module does (FHIR R4, https://hl7.org/fhir/R4/datatypes.html#Timing
and https://hl7.org/fhir/R4/dosage.html):

* ``timing.repeat.frequency`` is the number of occurrences per ``period`` ``periodUnit``
  ("twice daily" = frequency 2, period 1, periodUnit d); a missing frequency means once per
  period (R4: "If no frequency is stated, the assumption is that the event occurs once per
  period"). The dosing interval is period / frequency.
* ``frequencyMax`` / ``periodMax`` make the timing a range ("every 8 to 12 h"): the interval is
  not one number, so it is refused and named, never guessed.
* ``periodUnit`` and ``durationUnit`` are UnitsOfTime codes (UCUM): s, min, h, d, wk (and mo, a,
  which are not fixed lengths and are refused). "hr", "hours", "day" are not codes of the
  standard and are refused.
* ``timeOfDay`` gives the clock times of each day's doses (once a day each unless the period
  says otherwise); ``when`` names daily events (morning, meals) and gives no clock time, so it is
  carried as a note.
* ``boundsPeriod`` bounds the doses; ``count`` caps their number.
* ``timing.code`` from http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation (BID, TID,
  QID, QD, QOD, AM, PM, BED, Q1H ... Q8H; the value set timing-abbreviation): per R4 the code
  is "a complete statement of whatever is specified in the structured timing data"; where both
  are given and disagree, the order is refused and named. ``Q<n>H`` is read as every n hours.
* ``doseAndRate`` (MedicationRequest) or ``dose`` / ``rateRatio`` / ``rateQuantity``
  (MedicationAdministration): the dose in mg or g (UCUM), the rate in mass per time; an
  infusion rate gives the infusion time (dose / rate). A volume rate (mL/h) cannot give it
  without the bag's concentration and is refused.
* ``route`` (SNOMED CT routes, or its text), else the dose form (the medication's form,
  its name, or a dose unit such as ``{capsule}``) says whether the drug is given intravenously.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final, Literal

from twin_engine.errors import TwinEngineError
from twin_engine.fhir.shape import fhir_datetime, finite_number, json_array, json_object

GTS_ABBREVIATION: Final = "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation"
SNOMED: Final = "http://snomed.info/sct"
UCUM: Final = "http://unitsofmeasure.org"

#: UnitsOfTime (http://hl7.org/fhir/R4/valueset-units-of-time.html) in hours. mo and a are
#: codes of the standard but not fixed lengths; they are refused where an interval is needed.
UNITS_OF_TIME_H: Final[Mapping[str, float]] = {
    "s": 1.0 / 3600.0,
    "min": 1.0 / 60.0,
    "h": 1.0,
    "d": 24.0,
    "wk": 168.0,
}
#: v3-GTSAbbreviation codes of the R4 timing-abbreviation value set that state an interval,
#: in hours (the code system's definitions: BID "two times a day", TID three, QID four,
#: QD "every day", QOD "every other day", AM / PM / BED once a day, WK weekly). Q1H-Q8H are
#: read by their pattern (every n hours). MO ("monthly") is not a fixed length.
GTS_INTERVAL_H: Final[Mapping[str, float]] = {
    "QD": 24.0,
    "BID": 12.0,
    "TID": 8.0,
    "QID": 6.0,
    "QOD": 48.0,
    "AM": 24.0,
    "PM": 24.0,
    "BED": 24.0,
    "WK": 168.0,
}
_EVERY_N_HOURS: Final = re.compile(r"^Q(\d{1,2})H$")
#: Mass units (UCUM codes) in mg.
MASS_MG: Final[Mapping[str, float]] = {"mg": 1.0, "g": 1000.0}
#: Rate units (UCUM codes) in mg/h.
RATE_MG_H: Final[Mapping[str, float]] = {"mg/h": 1.0, "mg/min": 60.0, "g/h": 1000.0}

Route = Literal["intravenous", "oral", "enteral", "rectal", "intrathecal", "other", "unknown"]
#: SNOMED CT route of administration (descendants of 284009009).
ROUTE_SNOMED: Final[Mapping[str, Route]] = {
    "47625008": "intravenous",  # Intravenous route
    "26643006": "oral",  # Oral route
    "127492001": "enteral",  # Nasogastric route
    "127490009": "enteral",  # Gastrostomy route
    "37161004": "rectal",  # Rectal route
    "72607000": "intrathecal",  # Intrathecal route
}
_ROUTE_WORDS: Final[tuple[tuple[str, Route], ...]] = (
    (r"\bintravenous|\bi\.?v\b|\binfusion\b|\binjection\b|\binjectable\b", "intravenous"),
    (r"\bintrathecal|\bintraventricular", "intrathecal"),
    (r"\brectal|\bper rectum|\benema\b|\bp\.?r\b", "rectal"),
    (r"\bnasogastric|\bgastrostomy|\bn\.?g\b|\bpeg\b", "enteral"),
    (r"\boral\b|\bby mouth|\bp\.?o\b|\bcapsule|\btablet|\bpill\b", "oral"),
)
#: UCUM annotation units that only an oral solid dose form has.
_ORAL_DOSE_UNITS: Final = frozenset({"{pill}", "{capsule}", "{capsules}", "{tablet}", "{tbl}"})


class DosageError(TwinEngineError):
    """A Dosage or Timing cannot be read as one regimen; the message names resource and field."""


@dataclass(frozen=True, slots=True)
class TimingRead:
    """What a Timing says about when doses happen."""

    interval_h: float | None  # hours between doses; None: not a repeating timing
    duration_h: float | None  # repeat.duration: how long each dose lasts (infusion)
    bounds_start: datetime | None
    bounds_end: datetime | None
    count: int | None
    times_of_day: tuple[time, ...]  # clock times of each day's doses (timeOfDay)
    code: str | None  # the timing.code read
    notes: tuple[str, ...]  # what is read by convention, for the card


@dataclass(frozen=True, slots=True)
class DosageRead:
    """One Dosage: amount, rate, infusion time, timing and route."""

    dose_mg: float | None
    rate_mg_h: float | None
    infusion_h: float | None  # repeat.duration, else dose / rate; None when neither says
    timing: TimingRead
    route: Route
    route_source: str  # which field said the route ("" when unknown)
    notes: tuple[str, ...]


def _obj(value: object, where: str, what: str) -> Mapping[str, Any]:
    return json_object(value, where, what, DosageError)


def _arr(value: object, where: str, what: str) -> list[Any]:
    return json_array(value, where, what, DosageError)


def _positive(value: object, where: str, what: str) -> float:
    number = finite_number(value, where, what, DosageError)
    if not number > 0:
        raise DosageError(f"{where} has {what} {value!r}; it must be positive")
    return number


def time_unit_h(unit: object, where: str, what: str) -> float:
    """Hours in one UnitsOfTime code (s, min, h, d, wk); anything else is refused."""
    factor = UNITS_OF_TIME_H.get(unit) if isinstance(unit, str) else None
    if factor is None:
        raise DosageError(
            f"{where} gives {what} in {unit!r}; FHIR UnitsOfTime codes s, min, h, d or wk needed"
        )
    return factor


def parse_datetime(text: object, where: str, what: str) -> datetime:
    """A FHIR dateTime as an aware datetime (a date, or a time without offset, taken as UTC)."""
    return fhir_datetime(text, where, what, DosageError)


def _code_interval_h(timing: Mapping[str, Any], where: str) -> tuple[str | None, float | None]:
    """(code, interval h) of timing.code; (None, None) when it has no GTS abbreviation."""
    concept = _obj(timing.get("code"), where, "timing.code")
    for coding in _arr(concept.get("coding"), where, "timing.code.coding"):
        coding = _obj(coding, where, "a timing.code coding")
        code = coding.get("code")
        if coding.get("system") != GTS_ABBREVIATION or not isinstance(code, str):
            continue
        if code in GTS_INTERVAL_H:
            return code, GTS_INTERVAL_H[code]
        every = _EVERY_N_HOURS.match(code)
        if every and int(every.group(1)) > 0:
            return code, float(every.group(1))
        raise DosageError(
            f"{where} has timing.code {code!r}, which does not state a fixed dosing interval"
        )
    if concept:
        raise DosageError(
            f"{where} has a timing.code without a {GTS_ABBREVIATION} coding; its interval "
            "is not read from free text"
        )
    return None, None


def _times_of_day(repeat: Mapping[str, Any], where: str) -> tuple[time, ...]:
    out = []
    for text in _arr(repeat.get("timeOfDay"), where, "timing.repeat.timeOfDay"):
        try:
            out.append(time.fromisoformat(str(text)))
        except ValueError as exc:
            raise DosageError(f"{where} has an unreadable timeOfDay {text!r}") from exc
    return tuple(sorted(out))


def read_timing(timing: object, where: str) -> TimingRead:
    """When the doses of a Timing happen; ranges and conflicts are refused, never guessed."""
    timing = _obj(timing, where, "timing")
    repeat = _obj(timing.get("repeat"), where, "timing.repeat")
    notes: list[str] = []
    code, code_interval = _code_interval_h(timing, where)
    times = _times_of_day(repeat, where)
    for low, high, what in (
        ("frequency", "frequencyMax", "occurrences per period"),
        ("period", "periodMax", "period"),
    ):
        if repeat.get(high) is not None and repeat.get(high) != repeat.get(low):
            raise DosageError(
                f"{where} gives a range of {what} (timing.repeat.{low} {repeat.get(low)!r} to "
                f"{high} {repeat.get(high)!r}); the dosing interval is ambiguous, so no "
                "exposure is predicted: order one interval"
            )
    interval: float | None = None
    if repeat.get("period") is not None:
        period_h = _positive(repeat["period"], where, "timing.repeat.period") * time_unit_h(
            repeat.get("periodUnit"), where, "timing.repeat.period"
        )
        frequency = 1.0
        if repeat.get("frequency") is not None:
            frequency = _positive(repeat["frequency"], where, "timing.repeat.frequency")
        elif times and period_h == 24.0:
            frequency = float(len(times))  # timeOfDay lists each day's doses
        interval = period_h / frequency
        if times and period_h == 24.0 and frequency != len(times):
            raise DosageError(
                f"{where} gives {frequency:g} doses a day but {len(times)} timeOfDay entries; "
                "the dosing interval is ambiguous"
            )
    elif times:
        # timeOfDay without a period: those clock times every day.
        interval = 24.0 / len(times)
    elif repeat.get("frequency") is not None:
        raise DosageError(f"{where} gives timing.repeat.frequency without a period")
    if code is not None and code_interval is not None:
        if interval is not None and not math.isclose(interval, code_interval, rel_tol=1e-6):
            raise DosageError(
                f"{where} has timing.code {code} (every {code_interval:g} h) but timing.repeat "
                f"says every {interval:g} h; the dosing interval is ambiguous"
            )
        interval = code_interval
    if len(times) > 1:
        gaps = [
            (datetime.combine(date.min, b) - datetime.combine(date.min, a)).total_seconds() / 3600
            for a, b in itertools.pairwise(times)
        ]
        gaps.append(24.0 - sum(gaps))
        if max(gaps) - min(gaps) > 0.01:
            notes.append(
                f"{where} doses at unevenly spaced times of day "
                f"({', '.join(t.strftime('%H:%M') for t in times)}); steady-state peak and "
                f"trough are computed for an even {interval:g} h interval"
            )
    whens = [str(w) for w in _arr(repeat.get("when"), where, "timing.repeat.when")]
    if whens and not times:
        notes.append(
            f"{where} times its doses by daily events ({', '.join(whens)}), not clock times; "
            "doses are taken as evenly spaced"
        )
    duration = None
    if repeat.get("duration") is not None:
        if repeat.get("durationMax") is not None and repeat["durationMax"] != repeat["duration"]:
            raise DosageError(f"{where} gives a range of infusion durations; it is ambiguous")
        duration = _positive(repeat["duration"], where, "timing.repeat.duration") * time_unit_h(
            repeat.get("durationUnit"), where, "timing.repeat.duration"
        )
    bounds = _obj(repeat.get("boundsPeriod"), where, "timing.repeat.boundsPeriod")
    start = (
        parse_datetime(bounds["start"], where, "boundsPeriod.start")
        if bounds.get("start")
        else None
    )
    end = parse_datetime(bounds["end"], where, "boundsPeriod.end") if bounds.get("end") else None
    count = None
    if repeat.get("count") is not None:
        value = _positive(repeat["count"], where, "timing.repeat.count")
        if value != int(value):
            raise DosageError(f"{where} has timing.repeat.count {value:g}, not a whole number")
        count = int(value)
    return TimingRead(
        interval_h=interval,
        duration_h=duration,
        bounds_start=start,
        bounds_end=end,
        count=count,
        times_of_day=times,
        code=code,
        notes=tuple(notes),
    )


def _unit(quantity: Mapping[str, Any]) -> str:
    """The computable unit of a Quantity: its code, else its unit text (as written)."""
    unit = quantity.get("code") or quantity.get("unit") or ""
    return str(unit).strip()


def read_mass_mg(quantity: object, where: str, what: str = "dose") -> float:
    """A mass Quantity in mg (UCUM mg or g); other units are refused."""
    q = _obj(quantity, where, what)
    if q.get("value") is None:
        raise DosageError(f"{where} has no {what} value")
    unit = _unit(q)
    factor = MASS_MG.get(unit)
    if factor is None:
        raise DosageError(f"{where} gives the {what} in {unit or 'no unit'!r}, not mg or g")
    return _positive(q["value"], where, what) * factor


def _rate_mg_h(container: Mapping[str, Any], where: str) -> float | None:
    """rateRatio (mass / time) or rateQuantity (UCUM mass per time) in mg/h."""
    if container.get("rateRatio") is not None:
        ratio = _obj(container["rateRatio"], where, "rateRatio")
        mg = read_mass_mg(ratio.get("numerator"), where, "rate numerator")
        den = _obj(ratio.get("denominator"), where, "rateRatio.denominator")
        value = _positive(den.get("value", 1), where, "rate denominator")
        return mg / (value * time_unit_h(_unit(den), where, "the rate denominator"))
    if container.get("rateRange") is not None:
        raise DosageError(
            f"{where} gives a range of infusion rates; the infusion time is ambiguous"
        )
    if container.get("rateQuantity") is not None:
        q = _obj(container["rateQuantity"], where, "rateQuantity")
        unit = _unit(q)
        factor = RATE_MG_H.get(unit)
        if factor is None:
            raise DosageError(
                f"{where} gives the infusion rate in {unit or 'no unit'!r}; a mass rate (mg/h, "
                "mg/min or g/h) is needed to know the infusion time"
            )
        return _positive(q.get("value"), where, "infusion rate") * factor
    return None


def _texts(concept: Mapping[str, Any], where: str) -> list[str]:
    texts = [str(concept.get("text") or "")]
    for coding in _arr(concept.get("coding"), where, "coding"):
        texts.append(str(_obj(coding, where, "a coding").get("display") or ""))
    return [t for t in texts if t]


def route_of(concept: object, where: str) -> Route:
    """The route a CodeableConcept names (SNOMED CT code first, then its words)."""
    c = _obj(concept, where, "route")
    for coding in _arr(c.get("coding"), where, "route.coding"):
        coding = _obj(coding, where, "a route coding")
        if coding.get("system") == SNOMED and str(coding.get("code")) in ROUTE_SNOMED:
            return ROUTE_SNOMED[str(coding.get("code"))]
    return _route_in_words(_texts(c, where))


def _route_in_words(texts: Sequence[str]) -> Route:
    for text in texts:
        lower = text.lower()
        for pattern, route in _ROUTE_WORDS:
            if re.search(pattern, lower):
                return route
    return "unknown"


def _read_route(
    dosage: Mapping[str, Any], where: str, dose_quantity: object, medication: object
) -> tuple[Route, str]:
    if dosage.get("route") is not None:
        route = route_of(dosage["route"], where)
        return (route if route != "unknown" else "other"), "route"
    unit = _unit(_obj(dose_quantity, where, "dose")) if dose_quantity is not None else ""
    if unit.lower() in _ORAL_DOSE_UNITS:
        return "oral", f"dose unit {unit}"
    if medication is not None:
        route = _route_in_words(_texts(_obj(medication, where, "medication"), where))
        if route != "unknown":
            return route, "dose form"
    return "unknown", ""


def read_request_dosage(dosage: object, where: str, *, medication: object = None) -> DosageRead:
    """A MedicationRequest.dosageInstruction: dose, rate, timing, infusion time, route.

    ``medication`` is the medication's concept (or form): its words give the dose form
    when the dosage names no route.
    """
    d = _obj(dosage, where, "a dosageInstruction")
    timing = read_timing(d.get("timing"), where)
    entries = _arr(d.get("doseAndRate"), where, "doseAndRate")
    first = _obj(entries[0], where, "a doseAndRate entry") if entries else {}
    if len(entries) > 1:
        raise DosageError(f"{where} has {len(entries)} doseAndRate entries; one dose is needed")
    if first.get("doseRange") is not None:
        raise DosageError(f"{where} gives a dose range; the dose is ambiguous")
    quantity = first.get("doseQuantity")
    route, source = _read_route(d, where, quantity, medication)
    dose = None
    notes = list(timing.notes)
    if route in ("intravenous", "unknown"):
        if quantity is None:
            raise DosageError(f"{where} has no doseAndRate.doseQuantity")
        dose = read_mass_mg(quantity, where)
    rate = _rate_mg_h(first, where) if route in ("intravenous", "unknown") else None
    infusion = timing.duration_h
    if infusion is None and rate is not None and dose is not None:
        infusion = dose / rate
    if route == "unknown":
        notes.append(
            f"{where} names no route or dose form; read as intravenous (the only systemic "
            "form of vancomycin)"
        )
    return DosageRead(dose, rate, infusion, timing, route, source, tuple(notes))


def read_administration_dosage(
    dosage: object, where: str, *, medication: object = None
) -> DosageRead:
    """A MedicationAdministration.dosage: dose, rate (rateRatio / rateQuantity), route."""
    d = _obj(dosage, where, "dosage")
    route, source = _read_route(d, where, d.get("dose"), medication)
    dose = rate = None
    if route in ("intravenous", "unknown"):
        if d.get("dose") is None:
            raise DosageError(f"{where} has no dosage.dose; the dose history is incomplete")
        dose = read_mass_mg(d.get("dose"), where)
        rate = _rate_mg_h(d, where)
    empty = TimingRead(None, None, None, None, None, (), None, ())
    infusion = None if rate is None or dose is None else dose / rate
    return DosageRead(dose, rate, infusion, empty, route, source, ())


def planned_times(
    timing: TimingRead, *, start: datetime, end: datetime, since: datetime | None = None
) -> tuple[list[datetime], int]:
    """Dose times of a repeating Timing from ``start`` to ``end`` (inclusive), at most
    ``timing.count``; with ``since``, only those at or after it. Returns (times, skipped):
    skipped counts the doses before ``since``.

    timeOfDay: at those clock times each day (in ``start``'s time zone), from ``start``;
    otherwise every interval from ``start``.
    """
    if timing.interval_h is None:
        raise DosageError("a Timing without a dosing interval has no planned times")
    limit = timing.count
    out: list[datetime] = []
    skipped = 0
    if timing.times_of_day:
        tz = start.tzinfo or UTC
        day = start.date()
        step = max(1, round(timing.interval_h * len(timing.times_of_day) / 24.0))
        k = 0
        while (limit is None or k < limit) and day <= end.date():
            for clock in timing.times_of_day:
                when = datetime.combine(day, clock).replace(tzinfo=clock.tzinfo or tz)
                if when < start or when > end or (limit is not None and k >= limit):
                    continue
                k += 1
                if since is not None and when < since:
                    skipped += 1
                    continue
                out.append(when)
            day += timedelta(days=step)
        return out, skipped
    first = 0
    if since is not None and start < since:
        first = math.ceil((since - start).total_seconds() / 3600.0 / timing.interval_h)
        if limit is not None:
            first = min(first, limit)
    k = first
    while (limit is None or k < limit) and (
        when := start + timedelta(hours=k * timing.interval_h)
    ) <= end:
        out.append(when)
        k += 1
    return out, first
