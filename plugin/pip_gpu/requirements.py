"""Requirements as pip reads them, and the rewrite that routes torch-family lines to one build.

pip-gpu never hand-parses names, versions or markers: it follows pip's requirements-file
format (comments, continuations, ``${VAR}``, nested ``-r``/``-c``, per-line options) and
hands each requirement to ``packaging``. Lines it does not rewrite are passed on exactly as
written, so the temporary file given to pip or uv means what the user's file meant.

Relative local paths (``./pkg``, ``-e ../lib``) stay as written: pip resolves them against the
current directory, not the requirements file, so flattening nested files keeps them valid.
Relative ``--find-links`` paths are made absolute when they exist next to the file, as pip does.
"""

from __future__ import annotations

import codecs
import os
import re
import shlex
import urllib.parse
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.specifiers import InvalidSpecifier, Specifier, SpecifierSet
from packaging.version import Version

from .errors import UsageError
from .pins import COMMAND_LINE, canonical_name, exact_version_in, exact_versions
from .redact import redact_url

if TYPE_CHECKING:  # packaging.requirements pulls in markers, tags, logging, subprocess: ~15 ms
    from packaging.requirements import Requirement

__all__ = [
    "COMMAND_LINE",
    "FileTooLarge",
    "NotARegularFile",
    "RequirementFile",
    "RequirementLine",
    "RewritePin",
    "exact_version_of",
    "is_family",
    "local_label_of",
    "parse_requirement_args",
    "read_regular_file",
    "read_requirements_file",
    "redact_url",
    "render_file",
    "render_line",
    "rewrite_line",
]


@dataclass(frozen=True)
class RequirementLine:
    """One requirement, as written, with where it came from and its per-line options.

    ``text`` is the requirement without options (after comment stripping, continuation
    joining and ``${VAR}`` expansion); ``requirement`` is what packaging made of it, or None
    for editables and paths whose project name is unknown; ``name`` is canonical.
    ``hashes`` are ``"sha256:..."`` values; ``options`` are the other per-line options as
    ``"--config-settings=key=value"``-style strings. ``link`` is the URL or path the line
    installs from (``name @ url``, a bare URL or path, an editable), None for index lines.
    """

    text: str
    requirement: Requirement | None
    name: str | None
    hashes: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    origin: str = COMMAND_LINE
    constraint: bool = False
    editable: bool = False
    link: str | None = None

    @property
    def is_direct_url(self) -> bool:
        """Installed from a URL or path (editables included): never rewritten."""
        return self.link is not None


@dataclass(frozen=True)
class RequirementFile:
    """A requirements file with its nested files flattened, in the order pip reads them."""

    path: Path
    lines: tuple[RequirementLine, ...]
    global_options: tuple[tuple[str, ...], ...] = ()
    files: tuple[Path, ...] = ()


@dataclass(frozen=True)
class RewritePin:
    """What the decision adds to one family member's requirement."""

    specifier: SpecifierSet  # intersected with the requirement's own, e.g. "==2.5.*"
    local_label: str | None  # "cu124"/"cpu" for exact "==X.Y.Z" pins; None leaves them


# --- options ---------------------------------------------------------------------------------

_SHORT_OPTIONS = {
    "-i": "--index-url",
    "-f": "--find-links",
    "-r": "--requirement",
    "-c": "--constraint",
    "-e": "--editable",
}
_GLOBAL_WITH_VALUE = frozenset(
    {
        "--index-url",
        "--extra-index-url",
        "--find-links",
        "--trusted-host",
        "--no-binary",
        "--only-binary",
        "--use-feature",
    }
)
_GLOBAL_FLAGS = frozenset({"--no-index", "--pre", "--prefer-binary", "--require-hashes"})
_NESTED = frozenset({"--requirement", "--constraint"})
_LINE_OPTIONS = frozenset({"--hash", "--config-settings", "--global-option"})
_TAKES_VALUE = _GLOBAL_WITH_VALUE | _NESTED | _LINE_OPTIONS | {"--editable"}
_LONG_OPTIONS = tuple(sorted(_TAKES_VALUE | _GLOBAL_FLAGS))
_HASH_NAMES = frozenset({"sha256", "sha384", "sha512"})

_FORMAT_HINT = "see https://pip.pypa.io/en/stable/reference/requirements-file-format/"


def _resolve_long(name: str, origin: str) -> str:
    """An exact long option, or an unambiguous prefix of one (pip's optparse allows both)."""
    if name in _LONG_OPTIONS:
        return name
    matches = [option for option in _LONG_OPTIONS if option.startswith(name)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UsageError(f"{origin}: option {name} is ambiguous ({', '.join(matches)})", _FORMAT_HINT)
    raise UsageError(f"{origin}: {name} is not an option pip accepts in a requirements file", _FORMAT_HINT)


def _parse_options(tokens: Sequence[str], origin: str) -> list[tuple[str, str | None]]:
    """Option tokens -> ``(long name, value)`` pairs, the way optparse would read them."""
    parsed: list[tuple[str, str | None]] = []
    position = 0
    while position < len(tokens):
        token = tokens[position]
        position += 1
        value: str | None = None
        if token.startswith("--"):
            raw, equals, inline = token.partition("=")
            name = _resolve_long(raw, origin)
            if equals:
                if name not in _TAKES_VALUE:
                    raise UsageError(f"{origin}: {name} takes no value (got {token!r})", _FORMAT_HINT)
                value = inline
        elif token.startswith("-") and len(token) >= 2:
            name = _SHORT_OPTIONS.get(token[:2], "")
            if not name:
                raise UsageError(
                    f"{origin}: {token[:2]} is not an option pip accepts in a requirements file",
                    _FORMAT_HINT,
                )
            if len(token) > 2:
                value = token[2:]
        else:
            raise UsageError(
                f"{origin}: unexpected {redact_url(token)!r} after the options",
                "a requirement goes first on its line, its options after it",
            )
        if name in _TAKES_VALUE and value is None:
            if position >= len(tokens):
                raise UsageError(f"{origin}: {name} needs a value", _FORMAT_HINT)
            value = tokens[position]
            position += 1
        parsed.append((name, value))
    return parsed


def _line_options(
    options: Sequence[tuple[str, str | None]], origin: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Per-requirement options -> (hashes, other options as ``--name=value`` strings)."""
    hashes: list[str] = []
    others: list[str] = []
    for name, value in options:
        assert value is not None
        if name == "--hash":
            algorithm, colon, digest = value.partition(":")
            if not colon or not digest or algorithm.lower() not in _HASH_NAMES:
                raise UsageError(
                    f"{origin}: --hash needs a hash name and a value, got {value!r}",
                    "write it like --hash=sha256:<hex digest> (sha256, sha384 or sha512)",
                )
            hashes.append(f"{algorithm.lower()}:{digest}")
        else:
            others.append(f"{name}={value}")
    return tuple(hashes), tuple(others)


# --- reading text ----------------------------------------------------------------------------

_COMMENT_RE = re.compile(r"(^|\s+)#.*$")
_ENV_VAR_RE = re.compile(r"\$\{([A-Z0-9_]+)\}")
_CODING_RE = re.compile(rb"coding[:=]\s*([-\w.]+)")
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts with the same bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_ENCODING_HINT = (
    "save the file as UTF-8; like pip, pip-gpu reads other encodings only when a BOM or a "
    "'# -*- coding: <name> -*-' line in the first two lines says so"
)


def _decode(data: bytes, display: str) -> str:
    """Bytes -> text as pip decodes them: BOM, then a PEP 263 coding line, then UTF-8."""
    encoding = "utf-8"
    for bom, bom_encoding in _BOMS:
        if data.startswith(bom):
            data, encoding = data[len(bom) :], bom_encoding
            break
    else:
        for raw_line in data.split(b"\n")[:2]:
            match = _CODING_RE.search(raw_line)
            if raw_line[:1] == b"#" and match:
                encoding = match.group(1).decode("ascii")
                break
    try:
        text_encoding = codecs.lookup(encoding)._is_text_encoding  # rot13, hex, zlib: not text
    except LookupError:
        raise UsageError(
            f"{display}:1: unknown encoding {encoding!r} in the coding line", _ENCODING_HINT
        ) from None
    if not text_encoding:
        raise UsageError(
            f"{display}:1: {encoding!r} in the coding line is not a text encoding", _ENCODING_HINT
        )
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UsageError(
            f"{display}:{line}: not valid {encoding} text "
            f"(byte 0x{data[exc.start]:02x} cannot be decoded): {exc.reason}",
            _ENCODING_HINT,
        ) from None
    except (UnicodeError, ValueError, TypeError) as exc:  # codecs such as idna or punycode
        raise UsageError(f"{display}: cannot decode it as {encoding}: {exc}", _ENCODING_HINT) from None


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Physical lines -> (first line number, logical line): continuations joined, comments
    dropped, ``${VAR}`` expanded; the same steps, in the same order, as pip."""
    joined: list[str] = []
    first = 0
    pending: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        is_comment = bool(_COMMENT_RE.match(line))
        if not line.endswith("\\") or is_comment:
            if is_comment:
                line = " " + line  # so that the comment is still stripped once joined
            if joined:
                joined.append(line)
                pending.append((first, "".join(joined)))
                joined = []
            else:
                pending.append((number, line))
        else:
            if not joined:
                first = number
            joined.append(line.strip("\\"))
    if joined:
        pending.append((first, "".join(joined)))
    for number, line in pending:
        line = _COMMENT_RE.sub("", line).strip()
        if line:
            yield number, _expand_env(line)


def _expand_env(line: str) -> str:
    """pip's rule: only ``${NAME}`` with uppercase, digits and underscores; unset stays."""

    def value(match: re.Match[str]) -> str:
        return os.environ.get(match.group(1)) or match.group(0)

    return _ENV_VAR_RE.sub(value, line)


def _split_args_options(line: str) -> tuple[str, str]:
    """Requirement part and options part: options start at the first word starting with -."""
    match = re.search(r"(?:^|\s)-", line)
    if match is None:
        return line.strip(), ""
    start = match.start() if match.group(0) == "-" else match.start() + 1
    return line[:start].strip(), line[start:].strip()


# --- classifying one requirement -------------------------------------------------------------

_VCS = frozenset({"git", "hg", "svn", "bzr"})
_ARCHIVE_SUFFIXES = (
    ".whl",
    ".zip",
    ".tar.gz",
    ".tgz",
    ".tar.bz2",
    ".tbz",
    ".tar.xz",
    ".txz",
    ".tlz",
    ".tar.lz",
    ".tar.lzma",
    ".tar",
)
_EGG_RE = re.compile(r"[#&]egg=([^&]+)")
_EXTRAS_RE = re.compile(r"^(.*?)(\[[^\]]*\])?$", re.DOTALL)
_REQUIREMENT_HINT = (
    "write it the way pip does, e.g. torch==2.5.1, \"torch>=2.4 ; python_version >= '3.9'\" "
    "or torch @ https://host/torch-2.5.1-...whl"
)


def _is_url(text: str) -> bool:
    scheme, colon, _ = text.strip().partition(":")
    scheme = scheme.lower()
    if not colon or not re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme):
        return False
    return scheme in {"http", "https", "file", "ftp"} or scheme.split("+")[0] in _VCS


def _looks_like_path(text: str) -> bool:
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return any(sep in text for sep in separators) or text.startswith(".")


def _split_marker(text: str, separator: str) -> tuple[str, str | None]:
    spec, found, marker = text.partition(separator)
    return spec.strip(), (marker.strip() or None) if found else None


def _name_from_filename(filename: str, origin: str) -> tuple[str | None, Version | None]:
    """A wheel's (or a standard sdist's) file name says its project and version."""
    filename = urllib.parse.unquote(filename)
    from packaging.utils import (
        InvalidSdistFilename,
        InvalidWheelFilename,
        parse_sdist_filename,
        parse_wheel_filename,
    )

    if filename.endswith(".whl"):
        try:
            name, version, _, _ = parse_wheel_filename(filename)
        except InvalidWheelFilename as exc:
            raise UsageError(
                f"{origin}: {redact_url(filename)!r} is not a valid wheel file name: {exc}",
                "wheel names look like torch-2.5.1+cu124-cp311-cp311-linux_x86_64.whl",
            ) from None
        return str(name), version
    try:
        sdist_name, sdist_version = parse_sdist_filename(filename)
    except InvalidSdistFilename:
        return None, None
    return str(sdist_name), sdist_version


def _egg_name(url: str) -> str | None:
    match = _EGG_RE.search(url)
    if match is None:
        return None
    candidate = _EXTRAS_RE.match(match.group(1))
    name = candidate.group(1) if candidate else match.group(1)
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?", name):
        return None
    return canonical_name(name)


def _invalid(text: str, origin: str, exc: Exception) -> UsageError:
    why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__  # not packaging's ^ diagram
    return UsageError(
        f"{origin}: invalid requirement {redact_url(text)!r}: {redact_url(why)}",
        _REQUIREMENT_HINT,
    )


# Bounds on one requirement: the longest project names on PyPI are under 100 characters and
# real requirements (a direct URL with a signed query included) a few kilobytes. Longer input is
# a mistake or an attack, and costs time in every parser and installer it reaches.
MAX_NAME_CHARS = 256
MAX_REQUIREMENT_CHARS = 8 * 1024


# A version or marker number this long is no release (Python's int() stops at 4,300 digits,
# deep inside packaging, where the error would be "unexpected").
_LONG_NUMBER = re.compile(r"[0-9]{40,}")


def _in_url(text: str, position: int) -> bool:
    """Whether ``position`` falls in the URL of ``name @ URL ; marker`` (its digits are its own)."""
    at = text.find("@")
    if at == -1 or position < at:
        return False
    marker = text.find(";", at)
    return marker == -1 or position < marker


def _shorten(text: str) -> str:
    from .ui import shorten

    return shorten(text, 60)


def _too_long(what: str, text: str, limit: int, origin: str) -> UsageError:
    from .ui import shorten

    return UsageError(
        f"{origin}: {what} ({redact_url(shorten(text, 60))!r}) is longer than any real one "
        f"(at most {limit:,} characters)",
        _REQUIREMENT_HINT,
    )


def _direct(
    name: str | None, extras: str, url: str, marker: str | None, text: str, origin: str
) -> Requirement | None:
    """``name[extras] @ url ; marker`` for a bare URL or path whose project name is known."""
    from packaging.markers import InvalidMarker, Marker
    from packaging.requirements import InvalidRequirement, Requirement

    if marker is not None:
        try:
            Marker(marker)
        except InvalidMarker as exc:
            raise _invalid(text, origin, exc) from None
    if name is None:
        return None
    written = f"{name}{extras} @ {url}" + (f" ; {marker}" if marker else "")
    try:
        return Requirement(written)
    except InvalidRequirement as exc:
        raise _invalid(text, origin, exc) from None


def _make_line(
    text: str,
    origin: str,
    *,
    hashes: tuple[str, ...] = (),
    options: tuple[str, ...] = (),
    constraint: bool = False,
    editable: bool = False,
) -> RequirementLine:
    """Classify one requirement the way pip's ``install_req_from_line`` does."""

    def line(requirement: Requirement | None, name: str | None, link: str | None) -> RequirementLine:
        if name is not None and len(name) > MAX_NAME_CHARS:
            raise _too_long("a project name", name, MAX_NAME_CHARS, origin)
        return RequirementLine(text, requirement, name, hashes, options, origin, constraint, editable, link)

    if len(text) > MAX_REQUIREMENT_CHARS:
        raise _too_long("a requirement", text, MAX_REQUIREMENT_CHARS, origin)
    number = _LONG_NUMBER.search(text if not _is_url(text) else (_split_marker(text, "; ")[1] or ""))
    if number is not None and not _in_url(text, number.start()):
        raise UsageError(
            f"{origin}: a version number of {len(number.group()):,} digits in "
            f"{redact_url(_shorten(text))!r}: no release is numbered so",
            _REQUIREMENT_HINT,
        )

    if editable:
        if constraint:
            raise UsageError(
                f"{origin}: editable requirements are not allowed as constraints",
                "list the project in a requirements file (-r) instead",
            )
        return line(None, _egg_name(text), text)

    if _is_url(text):
        url, marker = _split_marker(text, "; ")
        path = urllib.parse.urlsplit(url).path
        name, _ = _name_from_filename(path.rsplit("/", 1)[-1], origin)
        if name is None or not path.endswith(".whl"):
            name = _egg_name(url) or name
        return line(_direct(name, "", url, marker, text, origin), name, url)

    spec, marker = _split_marker(text, ";")
    before_at = spec.split("@", 1)[0]
    is_named_url = "@" in spec and not _looks_like_path(before_at)
    extras_match = _EXTRAS_RE.match(spec)
    bare = extras_match.group(1) if extras_match else spec
    extras = (extras_match.group(2) or "") if extras_match else ""
    if not is_named_url and (_looks_like_path(spec) or bare.lower().endswith(_ARCHIVE_SUFFIXES)):
        name, _ = _name_from_filename(os.path.basename(bare), origin)
        uri = Path(os.path.abspath(bare)).as_uri()
        requirement = _direct(name, extras, uri, marker, text, origin)
        return line(requirement, name, spec)

    from packaging.requirements import InvalidRequirement, Requirement

    try:
        requirement = Requirement(text)
    except InvalidRequirement as exc:
        raise _invalid(text, origin, exc) from None
    return line(requirement, canonical_name(requirement.name), requirement.url)


def parse_requirement_args(args: Sequence[str]) -> list[RequirementLine]:
    """Requirements given on the command line, one per argument, as ``pip install`` takes them.

    Options (``-r``, ``-e``, ``--index-url``...) are the command line's business, not this one.
    """
    lines: list[RequirementLine] = []
    for arg in args:
        text = arg.strip()
        if not text:
            raise UsageError("an empty requirement was given on the command line", _REQUIREMENT_HINT)
        if text.startswith("-"):
            raise UsageError(
                f"{text!r} is an option, not a requirement",
                "give options before the requirements, or use -- to end them",
            )
        lines.append(_make_line(text, COMMAND_LINE))
    return lines


# --- reading files ---------------------------------------------------------------------------

MAX_REQUIREMENTS_BYTES = 16 * 2**20  # real requirements files are kilobytes; /dev/zero is endless
MAX_INCLUDE_DEPTH = 100  # nested -r/-c files; a deeper chain is a mistake or an attack
# Requirement lines in one read (nested files included): a large project lists hundreds; each
# costs a parse here and a resolution in the installer (13.7 MB of lines once took 615 s).
MAX_REQUIREMENT_LINES = 10_000


class NotARegularFile(OSError):
    """A pipe, device, socket or folder where a file was expected: reading it may never end."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class FileTooLarge(OSError):
    """A file beyond the size a reader accepts."""


def read_regular_file(path: Path | str, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; FIFOs and devices are refused
    before they are opened (opening a FIFO blocks until a writer comes)."""
    import stat

    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        what = (
            "a named pipe (FIFO)"
            if stat.S_ISFIFO(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a folder"
            if stat.S_ISDIR(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "not a file"
        )
        raise NotARegularFile(what)
    with open(path, "rb") as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(str(path))
    return data


class _Reader:
    """Collects lines and options across nested files, tracking the include chain."""

    def __init__(self) -> None:
        self.lines: list[RequirementLine] = []
        self.global_options: list[tuple[str, ...]] = []
        self.files: list[Path] = []
        self._seen: set[str] = set()

    def read(
        self,
        path: Path,
        *,
        constraint: bool,
        chain: tuple[tuple[str, str], ...],
        included_from: str | None,
    ) -> None:
        display = os.path.normpath(path)  # "sub/../c.txt" reads as "c.txt" in messages
        resolved = os.path.realpath(path)
        for index, (earlier, _) in enumerate(chain):
            if earlier == resolved:
                cycle = [shown for _, shown in chain[index:]] + [display]
                raise UsageError(
                    f"{included_from}: requirements files include each other in a loop: "
                    + " -> ".join(cycle),
                    "remove one of the -r/-c lines that close the loop",
                )
        where = f"{included_from}: " if included_from else ""
        kind = "constraints" if constraint else "requirements"
        if len(chain) >= MAX_INCLUDE_DEPTH:
            raise UsageError(
                f"{where}requirements files include each other more than {MAX_INCLUDE_DEPTH} deep "
                f"(at {display})",
                "flatten the -r/-c chain: name the files from one top-level file",
            )
        try:
            data = read_regular_file(path, MAX_REQUIREMENTS_BYTES)
        except NotARegularFile as exc:
            raise UsageError(
                f"{where}cannot read {kind} file {display}: it is {exc.what}, not a regular file",
                "name a requirements file on disk (pip-gpu does not read pipes, devices or sockets)",
            ) from None
        except FileTooLarge:
            raise UsageError(
                f"{where}{kind} file {display} is larger than {MAX_REQUIREMENTS_BYTES // 2**20} MiB",
                "a requirements file this large is not one; check the path",
            ) from None
        except FileNotFoundError:
            raise UsageError(
                f"{where}{kind} file {display} does not exist",
                "nested -r/-c paths are relative to the file that names them"
                if included_from
                else "check the path",
            ) from None
        except OSError as exc:
            raise UsageError(
                f"{where}cannot read {kind} file {display}: {exc.strerror or exc}",
                "check that it is a readable file",
            ) from None
        if resolved not in self._seen:
            self._seen.add(resolved)
            self.files.append(Path(display))
        text = _decode(data, display)
        chain = (*chain, (resolved, display))
        for number, logical in _logical_lines(text):
            self._line(path, f"{display}:{number}", logical, constraint, chain)

    def _line(
        self,
        path: Path,
        origin: str,
        logical: str,
        constraint: bool,
        chain: tuple[tuple[str, str], ...],
    ) -> None:
        args, options_text = _split_args_options(logical)
        try:
            tokens = shlex.split(options_text)
        except ValueError as exc:
            raise UsageError(
                f"{origin}: cannot split the options {redact_url(options_text)!r}: {exc}",
                "check the quotes on this line",
            ) from None
        options = _parse_options(tokens, origin)
        per_line = [(name, value) for name, value in options if name in _LINE_OPTIONS]
        if args:
            misplaced = [name for name, _ in options if name not in _LINE_OPTIONS]
            if misplaced:
                raise UsageError(
                    f"{origin}: {misplaced[0]} cannot follow a requirement "
                    f"(only --hash, --config-settings and --global-option can)",
                    f"put {misplaced[0]} on a line of its own: it applies to the whole file",
                )
            hashes, others = _line_options(per_line, origin)
            self._add(_make_line(args, origin, hashes=hashes, options=others, constraint=constraint))
            return
        editables = [value for name, value in options if name == "--editable"]
        if per_line and not editables:
            raise UsageError(
                f"{origin}: {per_line[0][0]} needs a requirement on its line",
                "write the requirement first, then its --hash/--config-settings",
            )
        hashes, others = _line_options(per_line, origin)
        for name, value in options:
            if name in _LINE_OPTIONS:
                continue
            if name == "--editable":
                assert value is not None
                self._add(
                    _make_line(
                        value,
                        origin,
                        hashes=hashes,
                        options=others,
                        constraint=constraint,
                        editable=True,
                    )
                )
            elif name in _NESTED:
                assert value is not None
                self.read(
                    self._nested_path(path, value, origin),
                    constraint=constraint or name == "--constraint",
                    chain=chain,
                    included_from=origin,
                )
            elif name == "--find-links":
                assert value is not None
                beside = os.path.join(os.path.dirname(os.path.abspath(path)), value)
                self.global_options.append(
                    (name, beside if not _is_url(value) and os.path.exists(beside) else value)
                )
            else:
                self.global_options.append((name,) if value is None else (name, value))

    def _add(self, line: RequirementLine) -> None:
        if len(self.lines) >= MAX_REQUIREMENT_LINES:
            raise UsageError(
                f"{line.origin}: more than {MAX_REQUIREMENT_LINES:,} requirements "
                f"(in {', '.join(str(f) for f in self.files[:3])}{', ...' if len(self.files) > 3 else ''})",
                "a requirements file this large is not one; check the path, or split the install",
            )
        if line.constraint and line.name is None:
            raise UsageError(
                f"{line.origin}: unnamed requirement {redact_url(line.text)!r} cannot be a constraint",
                "constraints need a project name, e.g. torch @ https://...",
            )
        self.lines.append(line)

    @staticmethod
    def _nested_path(parent: Path, value: str, origin: str) -> Path:
        """pip's rule: a nested file's path is relative to the directory of its includer."""
        scheme = urllib.parse.urlsplit(value).scheme.lower()
        if scheme == "file":
            from urllib.request import url2pathname  # costs ~15 ms at import; rarely needed

            return Path(url2pathname(urllib.parse.urlsplit(value).path))
        if scheme in {"http", "https", "ftp"}:
            raise UsageError(
                f"{origin}: pip-gpu does not fetch remote requirements files ({redact_url(value)})",
                "download it and name the local copy",
            )
        return Path(os.path.join(os.path.dirname(parent), value))


def read_requirements_file(path: Path, *, constraint: bool = False) -> RequirementFile:
    """Read a requirements (or, with ``constraint``, constraints) file and all it includes."""
    reader = _Reader()
    reader.read(Path(path), constraint=constraint, chain=(), included_from=None)
    return RequirementFile(Path(path), tuple(reader.lines), tuple(reader.global_options), tuple(reader.files))


# --- classifying and rewriting ---------------------------------------------------------------


def is_family(line: RequirementLine, family_names: Collection[str]) -> bool:
    """Whether the line names a torch-family project (direct URLs included: check
    ``line.is_direct_url`` before rewriting)."""
    if line.name is None:
        return False
    return line.name in {canonical_name(name) for name in family_names}


def exact_version_of(req: Requirement) -> Version | None:
    """:func:`exact_version_in` of a requirement's specifier."""
    return exact_version_in(req.specifier)


def local_label_of(req: Requirement) -> str | None:
    """``torch==2.5.1+cu121`` -> ``"cu121"``: the build the user asked for by name."""
    version = exact_version_in(req.specifier)
    return version.local if version is not None else None


def _with_label(spec: Specifier, label: str) -> Specifier:
    if spec.operator != "==" or spec.version.endswith(".*") or "+" in spec.version:
        return spec
    return Specifier(f"=={spec.version}+{label}")


def _format(req: Requirement) -> str:
    """Canonical requirement text: specifiers sorted as packaging writes them."""
    text = req.name
    if req.extras:
        text += f"[{','.join(sorted(req.extras))}]"
    text += str(req.specifier)
    if req.marker is not None:
        text += f" ; {req.marker}"
    return text


def rewrite_line(line: RequirementLine, pins: Mapping[str, RewritePin]) -> RequirementLine:
    """Add the decision's pin to a family line; anything else comes back unchanged.

    Exact ``==X.Y.Z`` pins gain the pin's local label (an existing label is kept), added
    specifiers already implied by the line are not repeated, and rewriting is idempotent.
    """
    req = line.requirement
    if req is None or line.name is None or line.editable or line.is_direct_url:
        return line
    pin = next((p for n, p in pins.items() if canonical_name(n) == line.name), None)
    if pin is None:
        return line
    specs = list(req.specifier)
    exact = exact_versions(req.specifier)
    for added in pin.specifier:
        if added in specs or any(added.contains(v, prereleases=True) for v in exact):
            continue
        specs.append(added)
    if pin.local_label:
        specs = [_with_label(spec, pin.local_label) for spec in specs]
    try:
        specifier = SpecifierSet(",".join(str(spec) for spec in specs))
    except InvalidSpecifier as exc:  # a label that is not a valid local version segment
        raise UsageError(f"{line.origin}: cannot pin {line.text!r}: {exc}") from None
    if specifier == req.specifier:
        return line
    from packaging.requirements import Requirement

    new = Requirement(str(req))
    new.specifier = specifier
    return replace(line, text=_format(new), requirement=new)


# --- writing ---------------------------------------------------------------------------------


def _quote(value: str) -> str:
    """Quote only what pip's shlex split would break: uv reads these files too."""
    return shlex.quote(value) if not value or re.search(r"[\s'\"\\]", value) else value


def _option(text: str) -> str:
    name, equals, value = text.partition("=")
    return f"{name}={_quote(value)}" if equals else name


def render_line(line: RequirementLine) -> str:
    """The line as a requirements-file line, options included, for pip or uv to read."""
    parts = [f"-e {_quote(line.text)}" if line.editable else line.text]
    parts.extend(f"--hash={value}" for value in line.hashes)
    parts.extend(_option(option) for option in line.options)
    return " ".join(parts)


def render_file(lines: Sequence[RequirementLine], global_options: Sequence[Sequence[str]] = ()) -> str:
    """A requirements file: global options first, then the lines.

    Constraint lines are written as plain lines: put them in a file passed with ``-c``.
    """
    out = [" ".join([option[0], *(_quote(v) for v in option[1:])]) for option in global_options if option]
    out.extend(render_line(line) for line in lines)
    return "".join(f"{text}\n" for text in out)
