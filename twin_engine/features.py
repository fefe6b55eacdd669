"""Derived features of a twin as of a date: the contract every model binds to.

A feature is one number with its provenance (the FHIR resources it came from and
when) and a quality flag saying whether a model may use it.  Booleans are carried
as 1.0 / 0.0 so every model input is a float.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Quality = Literal["ok", "missing", "stale", "implausible", "unit_unknown"]

#: Qualities whose value a model may use.  A stale value is used and reported as
#: stale on the card; the others are never used.
USABLE: frozenset[Quality] = frozenset({"ok", "stale"})


@dataclass(frozen=True, slots=True)
class Feature:
    """One derived feature: value, unit, time, sources and quality."""

    name: str
    value: float | None
    unit: str | None
    time: datetime | None
    sources: tuple[str, ...]
    quality: Quality
    note: str = ""

    @property
    def usable(self) -> bool:
        return self.value is not None and self.quality in USABLE
