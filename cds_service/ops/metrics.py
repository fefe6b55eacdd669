"""Prometheus metrics: what an EHR team watches, served at ``GET /metrics``.

Every family is named after the Prometheus conventions (``twin_cds_`` prefix, base
units in the name: ``_seconds``, ``_total`` on counters) and labelled only by closed
sets: a known service id, an outcome, a configured FHIR server's origin, a model id,
a record kind. No patient, user, encounter, hook instance or client identifier is ever
a label value (labels are kept forever and fan out into every dashboard).

Under ``uvicorn --workers N`` each worker is its own process: with
``PROMETHEUS_MULTIPROC_DIR`` set (an empty directory, wiped before the service starts),
prometheus-client writes every worker's values to memory-mapped files there, and
``/metrics`` aggregates the files of all workers, whichever worker answers the scrape.
Without it (one process) the default registry is served directly. The gauge (chain
length) takes the largest value any worker wrote, so no per-worker cleanup is needed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final
from urllib.parse import urlsplit

import httpx
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

#: Hook outcomes (the issue's closed set): answered with cards, answered without,
#: 412 (the data could not be had), any other 4xx (refused), and our own failure.
HOOK_OUTCOMES: Final = ("ok", "no-card", "412", "4xx", "error")

# Hook calls take ~1 ms (memo warm) to a few hundred ms (fetch path, FHIR budget 400 ms).
_HOOK_BUCKETS_S: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.4, 0.5, 1, 2.5, 5)
_FAST_BUCKETS_S: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1)

HOOK_DURATION = Histogram(
    "twin_cds_hook_duration_seconds",
    "Server time of one CDS Hooks call, by service and outcome.",
    ("service", "outcome"),
    buckets=_HOOK_BUCKETS_S,
)
FHIR_REQUEST_DURATION = Histogram(
    "twin_cds_fhir_request_duration_seconds",
    "One outgoing HTTP request (FHIR server, JWKS, SMART endpoints) until its response "
    "headers, by server origin.",
    ("server",),
    buckets=_HOOK_BUCKETS_S,
)
FHIR_REQUEST_ERRORS = Counter(
    "twin_cds_fhir_request_errors_total",
    "FHIR server requests that failed: HTTP status >= 400, timeout or transport error.",
    ("server", "reason"),
)
FHIR_BUDGET_OVERRUNS = Counter(
    "twin_cds_fhir_budget_overruns_total",
    "Hook calls whose FHIR fetches did not all finish within TWIN_CDS_FHIR_BUDGET_MS.",
    ("server",),
)
AUDIT_APPEND_DURATION = Histogram(
    "twin_cds_audit_append_duration_seconds",
    "Appending one record to the audit chain (transaction committed), by record kind.",
    ("kind",),
    buckets=_FAST_BUCKETS_S,
)
AUDIT_CHAIN_LENGTH = Gauge(
    "twin_cds_audit_chain_length",
    "Sequence number of the last audit record this service appended.",
    # The chain is one for all workers: the largest seq any worker wrote is its length.
    multiprocess_mode="max",
)
TWIN_VERSIONS_WRITTEN = Counter(
    "twin_cds_twin_versions_written_total",
    "New twin versions stored (a call whose twin did not change writes none).",
)
MODEL_RUN_DURATION = Histogram(
    "twin_cds_model_run_duration_seconds",
    "One model run on one patient: prediction with its exact Shapley explanation "
    "(one batched ONNX run), or the vancomycin PK fit and regimen search.",
    ("model",),
    buckets=_FAST_BUCKETS_S,
)
APP_LAUNCHES = Counter(
    "twin_cds_app_launches_total",
    "Completed SMART launches of the clinician app (each is an app-access audit record).",
    ("launch",),
)
APP_SESSIONS = Counter(
    "twin_cds_app_sessions_created_total",
    "Clinician app sessions created: pending (launch begun) or active (tokens obtained).",
    ("kind",),
)
AUDITOR_READS = Counter(
    "twin_cds_auditor_reads_total",
    "Reads through the auditor API (each is an auditor-read audit record), by action.",
    ("action",),
)


def server_label(url: str) -> str:
    """A URL's origin (scheme://host[:port]): never its path or query, which may carry
    patient ids. The service only contacts configured servers, so the set is closed."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else "unknown"


@contextmanager
def timed(histogram: Histogram, *labels: str) -> Iterator[None]:
    """Observe the block's wall time (also when it raises) in ``histogram``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        histogram.labels(*labels).observe(time.perf_counter() - started)


def exposition() -> tuple[bytes, str]:
    """The text exposition of every family and its content type.

    Multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``): a fresh registry collecting every
    worker's files, as prometheus-client documents it (never the default registry,
    which would count this worker twice).
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class MeasuredTransport(httpx.AsyncBaseTransport):
    """The service's outgoing HTTP (FHIR servers, JWKS, SMART endpoints), timed and
    counted by server origin; failures by reason (HTTP status class, timeout, transport)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        server = server_label(str(request.url))
        started = time.perf_counter()
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.TimeoutException:
            FHIR_REQUEST_ERRORS.labels(server, "timeout").inc()
            raise
        except httpx.TransportError:
            FHIR_REQUEST_ERRORS.labels(server, "transport").inc()
            raise
        finally:
            FHIR_REQUEST_DURATION.labels(server).observe(time.perf_counter() - started)
        if response.status_code >= 400:
            FHIR_REQUEST_ERRORS.labels(server, f"{response.status_code // 100}xx").inc()
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
