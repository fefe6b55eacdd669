"""Errors of the CDS service: one root, each class carrying its HTTP answer.

The HTTP edge (``cds_service.http.failures``) turns them into responses in one place;
the code that raises them knows nothing of HTTP beyond the class it picks.

    ServiceError                    500 exception   a fault of ours (never a caller's)
    ├── BadHookRequest              400 invalid     the caller sent what we cannot act on
    │   ├── TooMuchData             413 too-costly  more FHIR entries than one call may read
    │   ├── BodyTooLarge            413 too-costly  more body bytes than the route accepts
    │   └── UnsupportedMediaType    415             a hook or feedback body not sent as JSON
    ├── UnknownService              404 not-found   no service with that id
    ├── DataUnavailable             412 not-found   the data a service needs could not be had
    │   ├── FhirServerNotAllowed                    fhirServer not on the allowlist
    │   └── FhirFetchError                          a FHIR read or search failed (fhir_client)
    ├── Unauthorized                401, bare       not a CDS client we trust (http.auth)
    ├── TokenRejected                               a JWT check failed; each caller turns it
    │                                               into its 401 (http.auth, audit.auth)
    ├── ApiError                    {"detail": ..}  the JSON APIs' errors (FastAPI's shape,
    │   │                                           which their clients read)
    │   ├── AuditorUnauthorized     401             no valid auditor token (audit.auth)
    │   ├── AuditorForbidden        403             a token without the auditor role
    │   ├── OutsideAuditorTenant    403             a read of every tenant by a tenant's auditor
    │   ├── RecordNotFound          404             no audit record the auditor may read
    │   ├── PageTooLarge            400             a query page over the API's limit
    │   └── smart_app AppError      4xx/5xx         the clinician app's root (smart_app.errors)
    ├── AuditError                  500             the audit trail cannot do it (audit.chain)
    ├── DraftOrderError                             a drafted order unreadable: a card says so,
    │                                               never an answer (services.vancomycin)
    └── PopulationError                             population builds and exports (the CLI)

A store outage is not here: it is ``twin_engine.storage.StorageUnavailable`` (503 with
Retry-After) whichever package raised it, and some classes are both (``AuditUnavailable``).
"""

from __future__ import annotations

from typing import ClassVar

#: The attribute ``mark_recorded`` sets on an exception.
RECORDED_MARK = "_twin_cds_recorded"


def mark_recorded(exc: BaseException) -> None:
    """Say on the exception that the failed call's audit record was written (the HTTP
    edge then says so in its answer)."""
    setattr(exc, RECORDED_MARK, True)


class ServiceError(Exception):
    """Base of every error the CDS service raises on purpose (see the module's tree)."""

    #: The HTTP status the edge answers with.
    status_code: int = 500
    #: The OperationOutcome issue code of the answer (FHIR R4 IssueType).
    issue_code: ClassVar[str] = "exception"
    #: Extra response headers (a challenge, for instance).
    headers: ClassVar[dict[str, str]] = {}
    #: What the caller is told when it is not the message: the reason stays in our log.
    public_message: ClassVar[str | None] = None


class BadHookRequest(ServiceError):
    status_code = 400
    issue_code = "invalid"


class TooMuchData(BadHookRequest):
    """More entries than ``max_entries_per_call``: refused before any is parsed."""

    status_code = 413
    issue_code = "too-costly"


class BodyTooLarge(BadHookRequest):
    """More bytes than this route accepts (413)."""

    status_code = 413
    issue_code = "too-costly"


class UnsupportedMediaType(BadHookRequest):
    """A hook or feedback body that does not say it is JSON (415)."""

    status_code = 415
    issue_code = "exception"


class UnknownService(ServiceError):
    status_code = 404
    issue_code = "not-found"


class DataUnavailable(ServiceError):
    status_code = 412
    issue_code = "not-found"


class FhirServerNotAllowed(DataUnavailable):
    pass


class Unauthorized(ServiceError):
    """The call is not from a client we trust; answered with a bare 401 (the reason is
    for the operator's log: the caller learns nothing from it)."""

    status_code = 401


class ApiError(ServiceError):
    """An error of a JSON API (the auditors', the clinician app's), answered as
    ``{"detail": message}``: the shape FastAPI gives its own errors, which those
    clients read."""


class AuditorUnauthorized(ApiError):
    """No valid auditor token: 401 with a Bearer challenge."""

    status_code = 401
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": "Bearer"}
    public_message = "auditor authentication required"


class AuditorForbidden(ApiError):
    """A valid token without the auditor role: 403."""

    status_code = 403
    public_message = "the auditor role is required"


class OutsideAuditorTenant(ApiError):
    """A read that spans every tenant asked by an auditor bound to one: 403, saying why."""

    status_code = 403


class RecordNotFound(ApiError):
    """No audit record with that seq that this auditor may read."""

    status_code = 404


class PageTooLarge(ApiError):
    """A page larger than the query API serves (the export serves more)."""

    status_code = 400


class PopulationError(ServiceError):
    """A population build or export that could not be done, named."""
