"""Structured logs: JSON lines by default, a console renderer for development.

Everything the service logs goes through one structlog processor chain, whether it
comes from structlog (the per-call ``hook.call`` event) or from the standard library
(uvicorn's access and error logs, the service's own warnings): a timestamp, the level,
the logger name, then ``redact_secrets``, then the renderer. ``redact_secrets`` is the
access log's redaction (``log_redaction.redact_url``) as a processor: every string in
an event passes through it, so an authorization code, state, launch id or token in a
URL never reaches a log line, whichever logger wrote it.

What an event may hold is decided where it is made (``observe``): ids of calls,
services and tenants, outcomes and durations; never a patient, a user, a body or a
token. ``drop_identifiers`` is the backstop for keys that must never appear.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Final, Literal, TextIO

import orjson
import structlog

from cds_service.ops.log_redaction import redact_url

LogFormat = Literal["json", "console"]

#: Keys no event may carry, whoever adds them: patient and user identifiers, bodies,
#: credentials. An event naming one loses the key and says so.
FORBIDDEN_KEYS: Final = frozenset(
    {
        "patient",
        "patient_id",
        "patientId",
        "user",
        "user_id",
        "userId",
        "encounter",
        "encounter_id",
        "encounterId",
        "body",
        "prefetch",
        "authorization",
        "access_token",
        "token",
        "jwt",
        "id_token",
        "fhirAuthorization",
    }
)
_HANDLER_NAME: Final = "twin-cds-structured"


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Processor: secret query values in any string of the event become ``[redacted]``."""
    for key, value in event.items():
        event[key] = _redact(value)
    return event


def drop_identifiers(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Processor: remove keys that would put a patient, a user or a credential in a log."""
    dropped = sorted(k for k in event if k in FORBIDDEN_KEYS)
    for key in dropped:
        del event[key]
    if dropped:
        event["dropped_keys"] = dropped
    return event


def _json(event: Any, **_: Any) -> str:
    return orjson.dumps(event, default=str).decode()


def _processors() -> list[Any]:
    return [
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        drop_identifiers,
        redact_secrets,
    ]


def formatter(fmt: LogFormat) -> logging.Formatter:
    """The formatter of every handler we own: structlog's chain, then JSON or console."""
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_json)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )


def configure_logging(fmt: LogFormat = "json", stream: TextIO | None = None) -> None:
    """Route structlog events and the standard library's logs through one chain.

    Idempotent: a second call replaces our handler, never adds one. Handlers that others
    installed on the root logger (pytest's capture, an operator's) are left alone;
    uvicorn's own handlers get our formatter, so its access lines are JSON (redacted).
    """
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    ours = logging.StreamHandler(stream or sys.stderr)
    ours.set_name(_HANDLER_NAME)
    ours.setFormatter(formatter(fmt))
    service = logging.getLogger("twin_cds")
    for old in [h for h in service.handlers if h.get_name() == _HANDLER_NAME]:
        service.removeHandler(old)
    service.addHandler(ours)
    service.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.access"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            # uvicorn.run(log_config=None) (twin-cds serve): its loggers are ours to set up.
            own = logging.StreamHandler(stream or sys.stderr)
            own.set_name(_HANDLER_NAME)
            logger.addHandler(own)
            logger.setLevel(logging.INFO)
            logger.propagate = False
        for handler in logger.handlers:
            handler.setFormatter(formatter(fmt))
