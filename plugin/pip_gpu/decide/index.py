"""The package-index boundary: read a project's files from a simple index over HTTP.

PEP 691 JSON first, PEP 503 HTML as the fallback, with a bounded timeout and errors that say
which index failed and how. Credentials in URLs (``user:pass@``), else the netrc file's for the
host, are sent as the Authorization header, but never shown.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, Optional

from ..errors import PipGpuError, UsageError
from ..redact import redact_url, url_origin

__all__ = [
    "IndexError_",
    "IndexFile",
    "fetch_project_files",
    "index_timeout",
    "open_index_file",
    "read_index_file",
]

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
ACCEPT = f"{JSON_TYPE}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
MAX_PAGE_BYTES = 64 * 1024 * 1024  # the real torch page is a few MB; refuse anything absurd
DEFAULT_TIMEOUT_S = 10.0
# The whole read (connect, headers, body) ends after this many silence timeouts: an index that
# trickles one byte a second never stays silent long enough for the silence timeout alone.
DEADLINE_FACTOR = 6
TIMEOUT_VARIABLE = "PIP_GPU_INDEX_TIMEOUT"


class IndexError_(PipGpuError):
    """An index could not be read (network, status, or a page that is not an index page)."""


@dataclass(frozen=True)
class IndexFile:
    filename: str
    url: str
    sha256: Optional[str]
    requires_python: Optional[str]
    size: Optional[int] = None


def _request(url: str) -> urllib.request.Request:
    parts = urllib.parse.urlsplit(url)
    headers = {"Accept": ACCEPT, "User-Agent": "pip-gpu"}
    request_url = url
    authorization = None
    if parts.username:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        authorization = f"Basic {token}"
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        request_url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    elif parts.hostname and (login := _netrc_login(parts.hostname)) is not None:
        authorization = "Basic " + base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode()
    request = urllib.request.Request(request_url, headers=headers)
    if authorization:
        # An unredirected header is not copied to a redirect's request; _SameOriginRedirects
        # adds it back only when the redirect stays on the same scheme, host and port.
        request.add_unredirected_header("Authorization", authorization)
    return request


def _netrc_login(host: str) -> Optional[tuple[str, str]]:
    """(login, password) for ``host`` from ``$NETRC`` or ``~/.netrc``, as pip and uv read it."""
    import netrc

    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    try:
        found = netrc.netrc(path).authenticators(host) if os.path.isfile(path) else None
    except (netrc.NetrcParseError, OSError, UnicodeDecodeError):
        return None
    return (found[0] or "", found[2] or "") if found else None


def open_index_file(url: str, *, timeout: float) -> Any:
    """A file an index serves, opened for streaming (a wheel): authenticated like the pages."""
    return _OPENER.open(_request(url), timeout=timeout)


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects, sending the index's credentials only back to the index's own origin."""

    def redirect_request(  # type: ignore[no-untyped-def]
        self, req, fp, code, msg, headers, newurl
    ) -> Optional[urllib.request.Request]:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is None:
            return None
        new.headers.pop("Authorization", None)  # urllib copies ordinary headers to any host
        authorization = req.unredirected_hdrs.get("Authorization")
        if authorization and url_origin(req.full_url) == url_origin(new.full_url):
            new.add_unredirected_header("Authorization", authorization)
        return new


_OPENER = urllib.request.build_opener(_SameOriginRedirects)


def read_index_file(url: str, *, timeout: float, limit: int = 16 * 1024 * 1024) -> Optional[bytes]:
    """One file an index serves (a wheel's ``.metadata``, PEP 658): its first ``limit`` bytes,
    or None when it cannot be read (the caller then knows less, and says so)."""
    try:
        with urllib.request.urlopen(_request(url), timeout=timeout) as response:
            data: bytes = response.read(limit)
            return data
    except (urllib.error.URLError, OSError, ValueError):
        return None


def index_timeout() -> float:
    """Seconds an index may stay silent (connect, or between bytes): ``PIP_GPU_INDEX_TIMEOUT``."""
    value = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not value:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0 or seconds == float("inf"):
        raise UsageError(
            f"{TIMEOUT_VARIABLE}={value!r} is not a number of seconds",
            f"set it to a positive number such as 30, or unset it (default {DEFAULT_TIMEOUT_S:g})",
        )
    return seconds


def fetch_project_files(project_url: str, *, timeout: Optional[float] = None) -> list[IndexFile]:
    """The files a simple index offers for one project (``<index>/<project>/``)."""
    parts = urllib.parse.urlsplit(project_url)
    if not parts.path.endswith("/"):  # the path, not the string: a query may follow it
        project_url = urllib.parse.urlunsplit(parts._replace(path=parts.path + "/"))
    shown = redact_url(project_url)
    timeout = index_timeout() if timeout is None else timeout
    try:
        content_type, body, final_url = _read_within(project_url, timeout, timeout * DEADLINE_FACTOR)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise IndexError_(
            f"{shown} answered HTTP {exc.code}", "check the index URL, or try again later"
        ) from None
    except _DeadlinePassed:
        raise IndexError_(
            f"{shown} did not send its page within {timeout * DEADLINE_FACTOR:g} s "
            f"({DEADLINE_FACTOR} x {TIMEOUT_VARIABLE})",
            f"the index or a proxy is too slow; raise {TIMEOUT_VARIABLE}, or --pytorch-index for a mirror",
        ) from None
    except ValueError as exc:  # a URL urllib cannot parse, e.g. "http://[::1"
        raise IndexError_(f"{shown} is not a valid URL ({exc})", "check the index URL") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            raise IndexError_(
                f"{shown} did not answer within {timeout:g} s",
                f"check the network, raise {TIMEOUT_VARIABLE}, or --pytorch-index for a mirror",
            ) from None
        raise IndexError_(
            f"cannot reach {shown}: {redact_url(str(reason))}",
            "check the network, or --pytorch-index for a mirror",
        ) from None
    except http.client.HTTPException as exc:  # IncompleteRead: the connection closed mid-page
        raise IndexError_(
            f"{shown} sent a truncated or malformed response ({type(exc).__name__})",
            "the index or a proxy in between cut the page short; try again later",
        ) from None
    if len(body) > MAX_PAGE_BYTES:
        raise IndexError_(f"{shown} sent more than {MAX_PAGE_BYTES // 2**20} MiB; not an index page")
    try:
        text = body.decode("utf-8")
        if JSON_TYPE in content_type:
            return _from_json(text, final_url)
        return _from_html(text, final_url)
    except (ValueError, KeyError, TypeError) as exc:
        raise IndexError_(
            f"{shown} is not a valid index page ({exc})", "the index may be broken or truncated"
        ) from None


class _DeadlinePassed(Exception):
    """The overall deadline of one index read passed."""


def _read_once(project_url: str, timeout: float) -> tuple[str, bytes, str]:
    with _OPENER.open(_request(project_url), timeout=timeout) as response:
        content_type = response.headers.get("Content-Type", "")
        body = response.read(MAX_PAGE_BYTES + 1)
        final_url = response.geturl()
        promised = response.headers.get("Content-Length", "")
        if promised.isdigit() and len(body) < int(promised):  # read(n) does not complain
            raise http.client.IncompleteRead(body, int(promised) - len(body))
    return content_type, body, final_url


def _read_within(project_url: str, timeout: float, deadline: float) -> tuple[str, bytes, str]:
    """:func:`_read_once` in a helper thread, given up after ``deadline`` seconds in all.

    The socket timeout bounds each wait for a byte; only a deadline bounds the whole read. A
    reader given up on is left to its own timeout (a daemon thread: it never holds up exit).
    """
    outcome: list[Any] = []

    def read() -> None:
        try:
            outcome.append(_read_once(project_url, timeout))
        except BaseException as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, name="pip-gpu-index-read", daemon=True)
    reader.start()
    reader.join(deadline)
    if not outcome:
        raise _DeadlinePassed
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    result: tuple[str, bytes, str] = outcome[0]
    return result


def _from_json(text: str, base: str) -> list[IndexFile]:
    data = json.loads(text)
    files = []
    for item in data["files"]:
        hashes = item.get("hashes") or {}
        files.append(
            IndexFile(
                filename=item["filename"],
                url=urllib.parse.urljoin(base, item["url"]),
                sha256=hashes.get("sha256"),
                requires_python=item.get("requires-python"),
                size=item.get("size"),
            )
        )
    return files


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, Optional[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        if tag == "a":
            values = dict(attrs)
            if values.get("href"):
                self.links.append((values["href"] or "", values.get("data-requires-python")))


def _from_html(text: str, base: str) -> list[IndexFile]:
    parser = _Links()
    parser.feed(text)
    parser.close()
    files = []
    for href, requires_python in parser.links:
        url = urllib.parse.urljoin(base, href)
        path, _, fragment = url.partition("#")
        filename = urllib.parse.unquote(path.rsplit("/", 1)[-1])
        sha256 = fragment[len("sha256=") :] if fragment.startswith("sha256=") else None
        files.append(IndexFile(filename, path, sha256, requires_python))
    return files
