"""Keep secrets that travel in URLs out of the access log.

OAuth puts short-lived secrets in query strings: the authorization code and state on
the redirect back to the app, the launch id on the launch URL, the PKCE challenge and
nonce on the authorize request. Uvicorn's access log writes the full path, so every
such value is replaced by ``[redacted]`` before the line is formatted.

Names are compared as the application reads them: percent-decoded (``launc%68`` is
``launch``), ``+`` as a space, case as sent. A value is redacted whenever its decoded name
is a secret one, so an encoding the framework undoes cannot carry a secret past the log.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

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
_SECRETS = frozenset(SECRET_PARAMS)
#: One query parameter: its name (up to ``=``), and its value up to the next separator.
_PARAM = re.compile(r"(?P<sep>[?&;])(?P<name>[^=&;#\s]*)(?P<eq>=?)(?P<value>[^&;#\s]*)")


def _redact_param(match: re.Match[str]) -> str:
    if unquote_plus(match["name"]).strip() in _SECRETS and match["eq"]:
        return f"{match['sep']}{match['name']}=[redacted]"
    return match.group(0)


def redact_url(text: str) -> str:
    """``/cb?code=abc&x=1`` → ``/cb?code=[redacted]&x=1``; ``launc%68=x`` too."""
    head, sep, query = text.partition("?")
    if not sep:
        return text
    return head + _PARAM.sub(_redact_param, "?" + query)


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
