"""The FHIR reader's one dateTime rule and one patient-reference rule, held over both of
their callers: the twin's reader (``ingest``) and the dose history's (``doses``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.support.fhir import bundle, obs, patient
from twin_engine.fhir import doses
from twin_engine.fhir.read import ingest
from twin_engine.fhir.records import ObservationRecord
from twin_engine.pk.errors import DoseRecordError

# FHIR R4 dateTime (https://hl7.org/fhir/R4/datatypes.html#dateTime): YYYY, YYYY-MM,
# YYYY-MM-DD or a full time with seconds and a zone; None: not an R4 dateTime.
DATETIMES: list[tuple[str, datetime | None]] = [
    ("2024", datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-03", datetime(2024, 3, 1, tzinfo=UTC)),
    ("2024-03-05", datetime(2024, 3, 5, tzinfo=UTC)),
    ("2024-03-05T08:30:00Z", datetime(2024, 3, 5, 8, 30, tzinfo=UTC)),
    ("2024-03-05T08:30:00+02:00", datetime(2024, 3, 5, 6, 30, tzinfo=UTC)),
    ("2024-03-05T08:30:00.1234567Z", datetime(2024, 3, 5, 8, 30, 0, 123456, tzinfo=UTC)),
    ("0999-01-01", datetime(999, 1, 1, tzinfo=UTC)),
    ("2024-03-05T08:30:00", None),  # a time without its zone
    ("2024-03-05T08:30Z", None),  # no seconds
    ("2024-03-05 08:30:00Z", None),
    ("20240305", None),
    ("2024-02-30", None),
    ("2024-13", None),
    ("2024-03-05T08:30:00+14:30", None),
]


@pytest.mark.parametrize(("text", "expected"), DATETIMES)
def test_the_dose_reader_reads_a_datetime_by_the_r4_rule(
    text: str, expected: datetime | None
) -> None:
    """The dose history's times: an R4 dateTime is read at its instant, anything else refused."""
    if expected is None:
        with pytest.raises(DoseRecordError, match="unreadable time"):
            doses.parse_time(text, "MedicationAdministration/m")
    else:
        assert doses.parse_time(text, "MedicationAdministration/m") == expected


@pytest.mark.parametrize(("text", "expected"), DATETIMES)
def test_the_twin_reader_reads_a_datetime_by_the_r4_rule(
    text: str, expected: datetime | None
) -> None:
    """An Observation's effectiveDateTime: the same instants; a non-R4 value is not read."""
    result = ingest(bundle(patient(), obs("o", "2160-0", 1.0, "mg/dL", when=text)))
    times = [r.time for r in result.resources if isinstance(r, ObservationRecord)]
    assert times == ([] if expected is None else [expected])


OTHER = "the reference names someone else"
UNCHECKED = "bare resources cannot resolve a urn:uuid; taken as the patient's, with a note"
# The patient is Patient/p1, its bundle entry's fullUrl urn:uuid:00000000 (tests.support).
# (reference, the twin reader holding the bundle, the dose history holding bare resources)
REFERENCES: list[tuple[str, bool, bool, str]] = [
    ("Patient/p1", True, True, "relative"),
    ("Patient/p1/_history/2", True, True, "a version of the patient"),
    ("https://ehr.example/fhir/Patient/p1", True, True, "absolute URL"),
    ("urn:uuid:p1", True, True, "urn:uuid of the id"),
    ("urn:uuid:00000000", True, True, UNCHECKED),  # the Patient entry's fullUrl
    ("Patient/p2", False, False, OTHER),
    ("https://ehr.example/fhir/Patient/p2/_history/1", False, False, OTHER),
    ("Group/g1", False, False, OTHER),
    ("#p1", False, False, OTHER),
    ("urn:uuid:99999999", False, True, UNCHECKED),
]


@pytest.mark.parametrize(("ref", "in_bundle", "bare", "why"), REFERENCES)
def test_the_twin_reader_keeps_what_names_its_patient(
    ref: str, in_bundle: bool, bare: bool, why: str
) -> None:
    """An Observation whose subject names the patient is read; one naming another is skipped."""
    o = obs("o", "2160-0", 1.0, "mg/dL")
    o["subject"] = {"reference": ref}
    result = ingest(bundle(patient(), o))
    assert bool([r for r in result.resources if isinstance(r, ObservationRecord)]) is in_bundle


@pytest.mark.parametrize(("ref", "in_bundle", "bare", "why"), REFERENCES)
def test_the_dose_history_keeps_what_names_its_patient(
    ref: str, in_bundle: bool, bare: bool, why: str
) -> None:
    """A dose whose subject names the patient is the patient's, by the same rule."""
    notes: list[str] = []
    dose = {"resourceType": "MedicationAdministration", "id": "m", "subject": {"reference": ref}}
    assert doses.belongs(dose, "p1", notes) is bare
    assert bool(notes) is (why == UNCHECKED)
