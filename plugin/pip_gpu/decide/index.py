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
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, Optional

from ..config import seconds_setting
from ..errors import PipGpuError
from ..redact import redact_url, url_origin

__all__ = [
    "IndexError_",
    "IndexFile",
    "IndexUnreachable",
    "fetch_project_files",
    "index_timeout",
    "open_index_file",
    "read_index_file",
    "wheel_metadata",
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


class IndexUnreachable(IndexError_):
    """No connection to the index at all (refused, no route, no such host): ``where`` is its
    ``host:port`` without credentials, for a message that names it and the way out."""

    def __init__(self, message: str, hint: str, where: str) -> None:
        super().__init__(message, hint)
        self.where = where


@dataclass(frozen=True)
class IndexFile:
    filename: str
    url: str
    sha256: Optional[str]
    requires_python: Optional[str]
    size: Optional[int] = None
    core_metadata: bool = False  # PEP 658/714: ``<url>.metadata`` is served beside the file


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
    return seconds_setting(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT_S, example=30)


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
        raise IndexUnreachable(
            f"cannot reach {shown}: {redact_url(str(reason))}",
            "check the network, or --pytorch-index for a mirror",
            parts.netloc.rpartition("@")[2],
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
                core_metadata=bool(item.get("core-metadata") or item.get("dist-info-metadata")),
            )
        )
    return files


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, Optional[str]]] = []
        self.with_metadata: set[str] = set()  # hrefs with PEP 658/714 metadata

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        if tag == "a":
            values = dict(attrs)
            if values.get("href"):
                self.links.append((values["href"] or "", values.get("data-requires-python")))
                if values.get("data-core-metadata") or values.get("data-dist-info-metadata"):
                    self.with_metadata.add(values["href"] or "")


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
        files.append(IndexFile(filename, path, sha256, requires_python, None, href in parser.with_metadata))
    return files


# --- a wheel's own metadata, read from the index ---------------------------------------------

_RANGE_CHUNK = 64 * 1024  # one request reads at least this much: the zip's tail, its directory
MAX_WHEEL_READS = 32  # a wheel's METADATA is reached in 3 or 4 ranged reads
_CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+)")


class _RemoteFile:
    """A file on an index read with HTTP range requests, as :mod:`zipfile` reads a file: only
    the zip's end, its central directory and one member travel, not a 2 GB torch wheel."""

    def __init__(self, url: str, timeout: float, size: int, first: tuple[int, bytes]) -> None:
        self.url, self.timeout, self.size = url, timeout, size
        self.position = 0
        self.chunks = [first]
        self.reads = 1

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = {0: offset, 1: self.position + offset, 2: self.size + offset}[whence]
        return self.position

    def read(self, count: Optional[int] = -1) -> bytes:
        start = self.position
        end = self.size if count is None or count < 0 else min(self.size, start + count)
        for begin, data in self.chunks:
            if begin <= start and end <= begin + len(data):
                self.position = end
                return data[start - begin : end - begin]
        if self.reads >= MAX_WHEEL_READS:
            raise OSError(f"more than {MAX_WHEEL_READS} reads to find the wheel's METADATA")
        self.reads += 1
        stop = min(self.size, max(end, start + _RANGE_CHUNK))
        status, _, data = _ranged(self.url, f"bytes={start}-{stop - 1}", self.timeout)
        if status != 206 or len(data) != stop - start:
            raise OSError(f"the index answered a range request with HTTP {status}")
        self.chunks.append((start, data))
        self.position = end
        return data[: end - start]


def _ranged(url: str, byte_range: str, timeout: float) -> tuple[int, Optional[int], bytes]:
    """One GET with a ``Range`` header: status, the file's whole size (from Content-Range), body.
    A server that ignores ``Range`` answers 200 with the whole file; its body is not read."""
    request = _request(url)
    request.add_header("Accept", "*/*")
    request.add_header("Range", byte_range)
    with _OPENER.open(request, timeout=timeout) as response:
        status = int(response.status)
        found = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range", ""))
        if status != 206 or found is None:
            return status, None, b""
        data: bytes = response.read(int(found.group(2)) - int(found.group(1)) + 1)
        return status, int(found.group(3)), data


def _downloaded(url: str, timeout: float, sha256: Optional[str]) -> Any:
    """The whole file, from a server without range requests, its hash checked when known."""
    import hashlib
    import tempfile

    digest = hashlib.sha256()
    spool = tempfile.SpooledTemporaryFile(max_size=64 * 2**20)  # noqa: SIM115 - returned open
    request = _request(url)
    request.add_header("Accept", "*/*")
    with _OPENER.open(request, timeout=timeout) as response:
        while block := response.read(2**20):
            digest.update(block)
            spool.write(block)
    if sha256 is not None and digest.hexdigest() != sha256.lower():
        raise IndexError_(f"{redact_url(url)} does not have the sha256 its index lists")
    spool.seek(0)
    return spool


def _metadata_of(url: str, timeout: float, sha256: Optional[str]) -> tuple[str, str]:
    import zipfile
    from email.parser import HeaderParser

    status, size, tail = _ranged(url, f"bytes=-{_RANGE_CHUNK}", timeout)
    source: Any
    if status == 206 and size is not None:
        source = _RemoteFile(url, timeout, size, (size - len(tail), tail))
    else:
        source = _downloaded(url, timeout, sha256)
    with zipfile.ZipFile(source) as wheel:
        entry = next(
            (n for n in wheel.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")), None
        )
        if entry is None:
            raise IndexError_(f"{redact_url(url)} holds no .dist-info/METADATA")
        with wheel.open(entry) as member:
            text = member.read(2**20).decode("utf-8", errors="replace")
    headers = HeaderParser().parsestr(text)
    return str(headers.get("Name", "")), str(headers.get("Version", ""))


def wheel_metadata(
    url: str, *, sha256: Optional[str] = None, timeout: Optional[float] = None
) -> tuple[str, str]:
    """``(Name, Version)`` from the wheel's own ``*.dist-info/METADATA`` at ``url``: what an
    installer installs, which a file name or a PEP 658 ``.metadata`` twin may contradict.

    Read with range requests (the zip's end, its directory, the one member); a server
    without them sends the whole file, checked against ``sha256``. Raises :class:`IndexError_`
    when the wheel cannot be read within the index deadline.
    """
    import zipfile

    timeout = index_timeout() if timeout is None else timeout
    outcome: list[Any] = []

    def read() -> None:
        try:
            outcome.append(_metadata_of(url, timeout, sha256))
        except BaseException as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, name="pip-gpu-wheel-read", daemon=True)
    reader.start()
    reader.join(timeout * DEADLINE_FACTOR)
    if not outcome:
        raise IndexError_(
            f"{redact_url(url)} did not send its metadata within {timeout * DEADLINE_FACTOR:g} s"
        )
    found = outcome[0]
    if isinstance(found, IndexError_):
        raise found
    if isinstance(
        found, (urllib.error.URLError, OSError, ValueError, zipfile.BadZipFile, http.client.HTTPException)
    ):
        raise IndexError_(f"cannot read the wheel {redact_url(url)}: {redact_url(str(found))}") from None
    if isinstance(found, BaseException):
        raise found
    result: tuple[str, str] = found
    return result
