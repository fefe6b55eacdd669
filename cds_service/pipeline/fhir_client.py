"""Reading a patient's data from the EHR's FHIR server with the token the hook hands over.

Only servers on the allowlist are contacted, and a ``next`` link that leaves the
server we were given is not followed: both keep a hook call from being turned into
a request to somewhere else (server-side request forgery). A link is compared after
the normalisation the HTTP client itself applies (scheme and host case, default port,
dot segments, percent-encoded dots and slashes), and what is requested is that
normalised URL: ``http://host/fhir/../secret`` is ``http://host/secret``, outside
``http://host/fhir``, so the token never goes there.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
import orjson

from cds_service.errors import DataUnavailable, FhirServerNotAllowed


class FhirFetchError(DataUnavailable):
    """One read or search against the FHIR server failed (``status``: its HTTP answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def entry_resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The resources of a Bundle's entries; an entry that is not a list carries none."""
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return []
    return [
        e["resource"]
        for e in entries
        if isinstance(e, dict) and isinstance(e.get("resource"), dict)
    ]


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_fhir_server(
    url: str, allowlist: tuple[str, ...], *, allow_insecure_loopback: bool
) -> str:
    """Return the normalised base URL, or raise when we must not contact it."""
    base = url.rstrip("/")
    allowed = {a.rstrip("/") for a in allowlist}
    if base not in allowed:
        raise FhirServerNotAllowed(f"fhirServer {base} is not on this service's allowlist")
    parts = urlsplit(base)
    if parts.scheme == "https":
        return base
    if parts.scheme == "http" and allow_insecure_loopback and _is_loopback(parts.hostname):
        return base
    raise FhirServerNotAllowed(f"fhirServer {base} must use https")


@dataclass(frozen=True, slots=True)
class SearchResult:
    """The resources a read or search returned, over all pages followed."""

    resources: tuple[dict[str, Any], ...]
    pages: int
    truncated: bool


class FhirClient:
    """Reads and searches on one FHIR server with one bearer token."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        access_token: str,
        *,
        max_pages: int,
        max_resources: int | None = None,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._base_parts = _origin_and_path(self._base)
        self._max_resources = max_resources
        self._headers = {
            "Authorization": f"Bearer {access_token}",
            "Accept": "application/fhir+json",
        }
        self._max_pages = max_pages

    def __repr__(self) -> str:
        return f"FhirClient({self._base!r})"

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url, headers=self._headers)
        except httpx.TimeoutException as exc:
            raise FhirFetchError(f"FHIR server timed out on {_path(url)}") from exc
        except httpx.HTTPError as exc:
            # We want the kind of failure in the message, never the request headers.
            raise FhirFetchError(
                f"FHIR server unreachable on {_path(url)}: {type(exc).__name__}"
            ) from exc
        if response.status_code == 404:
            return {}
        if response.status_code >= 400:
            raise FhirFetchError(
                f"FHIR server answered {response.status_code} on {_path(url)}",
                status=response.status_code,
            )
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise FhirFetchError(f"FHIR server sent malformed JSON on {_path(url)}") from exc
        if not isinstance(body, dict):
            raise FhirFetchError(f"FHIR server sent a non-resource on {_path(url)}")
        return body

    async def query(self, relative: str) -> SearchResult:
        """Read ``Type/id`` or search ``Type?params`` (its values percent-encoded here),
        following ``next`` links as the server wrote them."""
        url: str | None = f"{self._base}/{encode_search(relative.lstrip('/'))}"
        seen: set[str] = set()
        resources: list[dict[str, Any]] = []
        pages = 0
        while url is not None:
            if url in seen:
                break  # a server that links a page to itself would loop forever
            if pages >= self._max_pages or (
                self._max_resources is not None and len(resources) >= self._max_resources
            ):
                return SearchResult(tuple(resources[: self._max_resources]), pages, truncated=True)
            seen.add(url)
            body = await self._get_json(url)
            pages += 1
            if body.get("resourceType") != "Bundle":
                if body.get("resourceType") not in (None, "OperationOutcome"):
                    resources.append(body)
                break
            resources.extend(entry_resources(body))
            url = self._next_link(body)
        return SearchResult(tuple(resources), pages, truncated=False)

    def _next_link(self, bundle: dict[str, Any]) -> str | None:
        links = bundle.get("link")
        for link in links if isinstance(links, list) else ():
            if isinstance(link, dict) and link.get("relation") == "next":
                # Follow only links on the server we were given (no SSRF via paging).
                return self._inside_base(link.get("url"))
        return None

    def _inside_base(self, target: object) -> str | None:
        """The normalised link when it is under our base URL, else None (not followed)."""
        if not isinstance(target, str):
            return None
        parts = _origin_and_path(target)
        if parts is None or self._base_parts is None:
            return None
        origin, path, url = parts
        base_origin, base_path, _ = self._base_parts
        if origin != base_origin:
            return None
        if path != base_path and not path.startswith(base_path.rstrip("/") + "/"):
            return None
        return url


def _origin_and_path(text: str) -> tuple[tuple[str, str, int], str, str] | None:
    """(scheme, host, port), the decoded path, and the URL as it will be requested, after
    the HTTP client's normalisation; None for a URL we would not send a token to
    (unparseable, user info, a dot segment or slash hidden by percent-encoding)."""
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError):
        return None
    if url.scheme not in ("http", "https") or not url.host or url.userinfo:
        return None
    raw_path = url.raw_path.split(b"?", 1)[0].decode("ascii", "replace")
    segments = [unquote(seg) for seg in raw_path.split("/")]
    if any(seg in (".", "..") or "/" in seg or "\\" in seg for seg in segments):
        # httpx removes literal dot segments; an encoded one (%2e%2e) it sends as is,
        # and the server may decode it into a step out of the base.
        return None
    port = url.port or (443 if url.scheme == "https" else 80)
    return (url.scheme, url.host.lower(), port), "/".join(segments), str(url)


def encode_search(relative: str) -> str:
    """``Type?name=value&...`` with every value percent-encoded (RFC 3986), so
    ``code=http://loinc.org|2093-3`` goes out as ``code=http%3A%2F%2Floinc.org%7C2093-3``.

    Raw ``:``, ``/`` and ``|`` are legal in a query, but a proxy in front of a FHIR
    server may rewrite them (collapsing ``//`` is common) and the search then silently
    matches nothing. Commas stay: they separate the values of one parameter (FHIR R4
    search 3.1.1.4.x), and the server decodes the query before splitting on them.
    Values are expected unencoded (our own templates and ids); a read has no query.
    """
    path, sep, query = relative.partition("?")
    if not sep:
        return relative
    pairs = []
    for item in query.split("&"):
        if not item:
            continue
        name, has_value, value = item.partition("=")
        encoded = quote(value, safe=",") if has_value else ""
        pairs.append(f"{quote(name, safe=':._-')}{'=' if has_value else ''}{encoded}")
    return f"{path}?{'&'.join(pairs)}"


def _path(url: str) -> str:
    """The path of a URL without its query, which may carry patient identifiers."""
    return urlsplit(url).path
