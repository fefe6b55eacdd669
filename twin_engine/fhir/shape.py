"""The JSON shapes every FHIR reader checks before it reads a field: an object, an array, a
finite number, a dateTime. One implementation, parameterised by the reader's own error
class, so the dosage reader, the dose history and the dialysis rule refuse the same
malformed input with the same words (each message names the resource and the field)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any


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


def fhir_datetime(text: object, where: str, what: str, error: type[Exception]) -> datetime:
    """A FHIR date or dateTime as an aware datetime (a date, or a time without offset, is
    taken as UTC)."""
    if not isinstance(text, str) or not text:
        raise error(f"{where} has no {what}")
    try:
        if len(text) == 10:
            value = datetime.combine(date.fromisoformat(text), datetime.min.time())
        else:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise error(f"{where} has an unreadable {what} {text!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)
