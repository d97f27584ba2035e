"""Credentials in URLs, in one place: hidden for display, removed for files, split off for children.

A URL may carry secrets in its userinfo (``user:password@``, where RFC 3986 section 3.2.1
allows unreserved characters, percent-escapes, ``:`` and the sub-delimiters ``!$&'()*+,;=``)
and in query or fragment values whose keys name a secret (``token=``, ``pass=``, ``session=``...).
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Optional

__all__ = [
    "credentials_left",
    "is_secret_key",
    "redact_url",
    "split_userinfo",
    "strip_credentials",
    "userinfo_problem",
]

# The authority may hold any userinfo character, quotes included, up to the last "@" before
# the path; the rest of the URL stops at white space, quotes or angle brackets. A userinfo
# with white space in it is no valid URL, but a user may still type one
# ("alice:s3cret word@host"): it is taken as userinfo too when an "@" and a host follow
# before the path, so that it is hidden rather than printed (at worst more text is hidden).
# A scheme starts where no scheme character precedes it: without that, a long run of letters
# with no "://" was tried from each of its positions (100,000 characters: 35 s).
_URL_RE = re.compile(
    r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://"
    r"(?:[^\s/?#]*@|[^/?#\"<>\n]*@(?=[^\s@/?#\"'<>]))?"
    r"[^\s'\"<>]*"
)
# RFC 3986 section 3.2.1: userinfo = *( unreserved / pct-encoded / sub-delims / ":" )
_USERINFO_RE = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=:-]|%[0-9A-Fa-f]{2})*")
_SECRET_KEY_RE = re.compile(
    r"token|key|pass|pw|secret|auth|sig|session|access|credential|cred|jwt|bearer|cookie",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    """Whether a query or fragment key names a secret (``access_token``, ``pw``, ``X-Sig``...)."""
    return bool(_SECRET_KEY_RE.search(urllib.parse.unquote(key)))


def _pairs(text: str, keep_secret: bool, mask: str) -> str:
    out = []
    for pair in text.split("&"):
        key, equals, value = pair.partition("=")
        if equals and value and is_secret_key(key):
            if not keep_secret:
                continue
            pair = f"{key}={mask}"
        out.append(pair)
    return "&".join(out)


def _userinfo_end(rest: str) -> int:
    """Index of the "@" that ends the userinfo in ``rest`` (after ``://``), or -1."""
    path_start = len(rest)
    for index, char in enumerate(rest):
        if char in "/?#":
            path_start = index
            break
    # a password may hold "/", "?" or "#" only percent-encoded; an "@" after the path starts
    # belongs to the path
    return rest.rfind("@", 0, path_start)


def _parts(url: str) -> tuple[str, str, str, str]:
    """scheme, userinfo, host and port, and the rest (path, query, fragment)."""
    scheme, _, rest = url.partition("://")
    at = _userinfo_end(rest)
    userinfo, rest = (rest[:at], rest[at + 1 :]) if at != -1 else ("", rest)
    cut = next((i for i, char in enumerate(rest) if char in "/?#"), len(rest))
    return scheme, userinfo, rest[:cut], rest[cut:]


def _clean_tail(tail: str, mask: str | None) -> str:
    """Secret query and fragment values masked (``mask``) or removed (None)."""
    before_fragment, hash_mark, fragment = tail.partition("#")
    path, question, query = before_fragment.partition("?")
    keep = mask is not None
    if question:
        query = _pairs(query, keep, mask or "")
    if hash_mark:
        fragment = _pairs(fragment, keep, mask or "")
    text = path
    if question and (query or keep):
        text += f"?{query}"
    if hash_mark and (fragment or keep):
        text += f"#{fragment}"
    return text


def _redact_one(url: str) -> str:
    scheme, userinfo, hostport, tail = _parts(url)
    authority = f"***@{hostport}" if userinfo else hostport
    return f"{scheme}://{authority}{_clean_tail(tail, '***')}"


def _strip_one(url: str) -> str:
    scheme, _, hostport, tail = _parts(url)
    return f"{scheme}://{hostport}{_clean_tail(tail, None)}"


def redact_url(text: str) -> str:
    """Hide credentials before printing: ``user:password@`` becomes ``***@`` and secret query
    and fragment values become ``***``.

    Works on a bare URL or on any text with URLs in it (a requirement line, a message).
    """
    return _URL_RE.sub(lambda match: _redact_one(match.group(0)), text)


def strip_credentials(text: str) -> str:
    """Remove ``user:password@`` and secret query and fragment values from every URL in ``text``.

    Unlike :func:`redact_url` (``***`` for display), the result is still a usable URL: a lock
    or a ``pyproject.toml`` is read by installers, which get credentials from the user's own
    configuration (netrc, keyring, ``UV_INDEX_*``), never from the file.
    """
    return _URL_RE.sub(lambda match: _strip_one(match.group(0)), text)


def split_userinfo(url: str) -> tuple[str, str, str, str]:
    """``(url without userinfo, host, user, password)``, unquoted; user is "" when none."""
    scheme, userinfo, hostport, tail = _parts(url)
    if not userinfo:
        return url, "", "", ""
    user, _, password = userinfo.partition(":")
    host = hostport.rsplit(":", 1)[0] if not hostport.endswith("]") else hostport
    host = host.strip("[]")
    bare = f"{scheme}://{hostport}{tail}"
    return bare, host, urllib.parse.unquote(user), urllib.parse.unquote(password)


def url_origin(url: str) -> tuple[str, str, Optional[int]]:
    """``(scheme, host, port)`` as RFC 6454 compares origins: the default port filled in."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port or default


def userinfo_problem(url: str) -> Optional[str]:
    """Why the ``user:password@`` of ``url`` is no valid URL userinfo (RFC 3986 3.2.1), in
    words without the secret, or None. An installer would split or misread such a URL, and
    pip-gpu would have to print or write it in pieces: it is refused where it enters."""
    if "://" not in url:
        return None
    _, userinfo, _, _ = _parts(url)
    if not userinfo or _USERINFO_RE.fullmatch(userinfo):
        return None
    bad = sorted(
        {char for char in re.sub(r"%[0-9A-Fa-f]{2}", "", userinfo) if not _USERINFO_RE.fullmatch(char)}
    )
    named = ", ".join(
        {" ": "a space", "\t": "a tab", '"': "a double quote"}.get(char, repr(char)) for char in bad
    )
    return f"holds {named}, which a URL cannot hold there"


def credentials_left(text: str) -> bool:
    """Whether any URL in ``text`` still carries a ``user:password@`` or a secret query or
    fragment value: the last check before a file meant for a repository is written."""
    for match in _URL_RE.finditer(text):
        _, userinfo, _, tail = _parts(match.group(0))
        before_fragment, _, fragment = tail.partition("#")
        pairs = [*before_fragment.partition("?")[2].split("&"), *fragment.split("&")]
        if userinfo or any(
            key and value and is_secret_key(key) for key, _, value in (p.partition("=") for p in pairs)
        ):
            return True
    return False
