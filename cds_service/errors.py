"""Errors of the CDS service.

ServiceError
├── BadHookRequest        the caller sent something we cannot act on (400)
│   └── TooMuchData       more FHIR entries than one call may read (413)
├── UnknownService        no service with that id (404)
└── DataUnavailable       the data a service needs could not be had (412)
    └── FhirServerNotAllowed   fhirServer is not on the allowlist
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error the CDS service raises on purpose."""

    status_code: int = 500


class BadHookRequest(ServiceError):
    status_code = 400


class UnknownService(ServiceError):
    status_code = 404


class DataUnavailable(ServiceError):
    status_code = 412


class FhirServerNotAllowed(DataUnavailable):
    pass


class TooMuchData(BadHookRequest):
    """More entries than ``max_entries_per_call``: refused before any is parsed."""

    status_code = 413
