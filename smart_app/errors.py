"""Errors of the clinician app: one root, answered by the service's HTTP edge.

    AppError                  (a cds_service ApiError: ``{"detail": message}``, which the
    │                         page shows; smart_app/static/app.js, ``detailText``)
    ├── NoSession             401  no app session, or one the EHR no longer honours
    ├── NotJson               415  a POST body not sent as application/json (closes CSRF)
    ├── Unanswerable          422  a what-if or regimen the patient's data cannot answer
    │   └── WhatIfRefused          (smart_app.risk_view)
    ├── EhrUnavailable        502  the EHR's FHIR server failed, or its data are unreadable
    └── LaunchRefused         4xx/5xx  a launch or callback refused (smart_app.launch; shown
                                       as a page, never reaching the edge)

A session-store outage is ``smart_app.sessions.SessionStoreUnavailable`` (a
``StorageUnavailable``: 503 with Retry-After, like every store's).
"""

from __future__ import annotations

from cds_service.errors import ApiError


class AppError(ApiError):
    """Base of every error the clinician app raises on purpose (see the module's tree)."""


class NoSession(AppError):
    status_code = 401


class NotJson(AppError):
    status_code = 415


class Unanswerable(AppError):
    status_code = 422


class WhatIfRefused(Unanswerable):
    """A what-if the patient's data cannot answer; the message says why."""


class EhrUnavailable(AppError):
    status_code = 502
