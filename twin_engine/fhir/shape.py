"""The JSON shapes every FHIR reader checks before it reads a field: an object, an array, a
finite number, a dateTime. One implementation, parameterised by the reader's own error
class, so the dosage reader, the dose history and the dialysis rule refuse the same
malformed input with the same words (each message names the resource and the field)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any, Final


def json_object(value: object, where: str, what: str, error: type[Exception]) -> Mapping[str, Any]:
    """A JSON object field (absent: empty); anything else is malformed."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise error(f"{where} has {what} as a {type(value).__name__}, not an object")
    return value


def json_array(value: object, where: str, what: str, error: type[Exception]) -> list[Any]:
    """A JSON array field (absent: empty); anything else is malformed."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise error(f"{where} has {what} as a {type(value).__name__}, not a list")
    return value


def finite_number(value: object, where: str, what: str, error: type[Exception]) -> float:
    """A finite JSON number; strings, booleans and non-finite values are refused."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise error(f"{where} has {what} {value!r}, which is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise error(f"{where} has {what} {value!r}, which is not a finite number")
    return number


# R4 dateTime (https://hl7.org/fhir/R4/datatypes.html#dateTime): YYYY, YYYY-MM,
# YYYY-MM-DD, or a full time with seconds and a zone ("If hours and minutes are
# specified, a time zone SHALL be populated"), years 0001-9999, any decimals (parsed to
# microseconds, as fhir.resources does). A leap second (:60) is R4 but no Python time:
# it is not parsed here (the twin reader then asks fhir.resources, which keeps it as text).
_YEAR: Final = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_YEAR_MONTH: Final = re.compile(_YEAR + r"(-(0[1-9]|1[0-2]))?")
_DATE: Final = re.compile(_YEAR + r"-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])")
_INSTANT: Final = re.compile(
    _YEAR + r"-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
)

#: A parsed dateTime as the R4B model gives it: a full time is an aware datetime, a
#: whole date a date, a year or year-month stays text.
FhirTime = datetime | date | str


def date_time(value: object) -> FhirTime | None:
    """A dateTime by the one rule above, parsed as R4B parses it; None otherwise."""
    if not isinstance(value, str):
        return None
    if len(value) > len("YYYY-MM-DD"):  # neither a date nor a partial date is longer
        return instant(value)
    if _YEAR_MONTH.fullmatch(value):
        return value
    if not _DATE.fullmatch(value):
        return None  # and too short for a full time
    try:
        return date.fromisoformat(value)
    except ValueError:  # 2021-02-30
        return None


def instant(value: object) -> datetime | None:
    """A full time with seconds and a zone (R4 instant), or None."""
    if not isinstance(value, str) or not _INSTANT.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def as_datetime(value: object) -> datetime | None:
    """A parsed FHIR date/dateTime/instant as an aware UTC datetime.

    A date or a partial date ("2020", "2020-05") is taken at its first instant; a time
    without an offset is taken as UTC.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        try:
            return value.astimezone(UTC)
        except OverflowError:
            # e.g. 0001-01-01T00:00:00+14:00 has no UTC instant in Python's range.
            return None
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        parts = value.split("-")
        try:
            year = int(parts[0])
            month = int(parts[1]) if len(parts) > 1 else 1
        except ValueError:
            return None
        return datetime(year, month, 1, tzinfo=UTC)
    return None


def fhir_datetime(text: object, where: str, what: str, error: type[Exception]) -> datetime:
    """A FHIR dateTime by the one rule (``date_time``) as an aware datetime: a full time
    keeps its zone, a date or a partial date is taken at its first instant in UTC."""
    if not isinstance(text, str) or not text:
        raise error(f"{where} has no {what}")
    parsed = date_time(text)
    moment = parsed if isinstance(parsed, datetime) else as_datetime(parsed)
    if moment is None:
        raise error(
            f"{where} has an unreadable {what} {text!r} (an R4 dateTime is YYYY, YYYY-MM, "
            "YYYY-MM-DD or a full time with seconds and a zone)"
        )
    return moment
