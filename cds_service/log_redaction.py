"""Keep secrets that travel in URLs out of the access log.

OAuth puts short-lived secrets in query strings: the authorization code and state on
the redirect back to the app, the launch id on the launch URL, the PKCE challenge and
nonce on the authorize request. Uvicorn's access log writes the full path, so every
such value is replaced by ``[redacted]`` before the line is formatted.
"""

from __future__ import annotations

import logging
import re

#: Query parameters whose values are secrets or single-use credentials.
SECRET_PARAMS = (
    "code",
    "state",
    "launch",
    "nonce",
    "code_challenge",
    "code_verifier",
    "access_token",
    "id_token",
    "refresh_token",
    "token",
)
_PATTERN = re.compile(r"(?P<key>(?:^|[?&])(?:" + "|".join(SECRET_PARAMS) + r")=)[^&\s#]*")


def redact_url(text: str) -> str:
    """``/cb?code=abc&x=1`` → ``/cb?code=[redacted]&x=1``."""
    return _PATTERN.sub(r"\g<key>[redacted]", text)


class RedactSecrets(logging.Filter):
    """A filter for uvicorn's access logger: redacts secret query values in its args."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_url(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact_url(record.msg)
        return True


def install_access_log_redaction() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactSecrets) for f in access.filters):
        access.addFilter(RedactSecrets())
