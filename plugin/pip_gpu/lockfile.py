"""The lockfile boundary: PEP 751 ``pylock.<variant>.toml`` files, read, written and validated.

One file per variant (``pylock.cu124.toml``, ``pylock.cpu.toml``): each is a complete, standard
lock that ``uv pip sync`` and ``pip install -r`` (pip >= 26.1) install without pip-gpu. What
pip-gpu decided lives in the file's ``[tool.pip-gpu]`` table (PEP 751 "tool" section)::

    [tool.pip-gpu]
    variant = "cu124"
    index = "https://download.pytorch.org/whl/cu124"
    cuda = "12.4"
    torch = "2.5.1"
    torch-release = "2.5"
    inputs-digest = "sha256:..."
    pip-gpu-version = "0.1.0"

    [tool.pip-gpu.minimum-driver]      # minor-version compatibility, per OS
    linux = "525.60.13"
    windows = "527.41"

    [tool.pip-gpu.gpu-architectures]   # what the build's kernels cover
    sass = ["5.0", "6.0", ...]
    ptx = []

    targets = ["linux-x86_64-3.10", "linux-x86_64-3.11"]   # the targets this file covers

    [tool.pip-gpu.not-covered]         # requested targets this variant is not published for
    "macos-arm64-3.11" = "no cu124 build of torch 2.5 for macos-arm64"

    [tool.pip-gpu.inputs]              # what was locked, credentials removed
    requirements = ["fixture-app"]     # given on the command line (or by pip-gpu install)
    targets = ["linux-x86_64-3.10", "linux-x86_64-3.11", "macos-arm64-3.11"]
    pytorch-index = "https://download.pytorch.org/whl"

    [tool.pip-gpu.inputs.files]        # requirement files, relative to the lock's folder
    "requirements.in" = ["torch==2.5.1", "torchvision"]

Nothing host-specific and no timestamps: the same inputs give the same bytes. Writes are
validated with ``packaging.pylock``, go to temporary files in the same folder (all of them,
before any is renamed), and replace each old file with one ``os.replace``: a reader sees the
old lock or the new one, never a mix, and a full disk leaves every old file in place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import tempfile
import urllib.parse
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import tomli_w
from packaging.pylock import Package, Pylock, PylockUnsupportedVersionError, PylockValidationError
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .errors import EnvironmentFault, PipGpuError, UsageError
from .redact import credentials_left, redact_url, strip_credentials, url_origin

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = [
    "FILE_HOSTS",
    "LOCK_VERSION",
    "LockFile",
    "LockInputs",
    "LockRecord",
    "LockTarget",
    "expected_variant_index",
    "find_lock_family",
    "load_toml",
    "lock_document",
    "lock_path",
    "lock_problems",
    "merge_resolutions",
    "read_lock",
    "recorded_lines",
    "render_lock",
    "strip_credentials",
    "write_atomically",
    "write_files_atomically",
    "write_lock",
    "write_locks",
]

LOCK_VERSION = "1.0"
TOOL = "pip-gpu"
CREATED_BY = "pip-gpu"


_PLATFORMS = {"linux": ("x86_64", "aarch64"), "windows": ("x86_64", "aarch64"), "macos": ("arm64", "x86_64")}
_PYTHON_RE = re.compile(r"^3\.[0-9]+t?$")


@dataclass(frozen=True, order=True)
class LockTarget:
    """One (platform, arch, Python) a lock is resolved for: ``linux-x86_64-3.11``."""

    os: str  # "linux" | "windows" | "macos"
    arch: str  # as the knowledge file's platform keys spell it: x86_64, aarch64, arm64
    python_version: str  # "3.11"

    @property
    def platform(self) -> str:
        return f"{self.os}-{self.arch}"

    @property
    def tag(self) -> str:
        return f"{self.os}-{self.arch}-{self.python_version}"

    def __str__(self) -> str:
        return self.tag

    @classmethod
    def make(cls, os_name: str, arch: str, python_version: str, where: str = "target") -> LockTarget:
        """A target from its parts; ``arm64``/``aarch64`` spelled as each platform does."""
        if os_name not in _PLATFORMS:
            raise UsageError(
                f"{where}: unknown platform {os_name!r}", f"one of {', '.join(sorted(_PLATFORMS))}"
            )
        if arch in ("arm64", "aarch64"):
            arch = "arm64" if os_name == "macos" else "aarch64"
        if arch not in _PLATFORMS[os_name]:
            raise UsageError(
                f"{where}: {os_name} has no {arch!r} architecture pip-gpu can lock for",
                f"one of {', '.join(_PLATFORMS[os_name])}",
            )
        if not _PYTHON_RE.match(python_version):
            raise UsageError(f"{where}: {python_version!r} is not a Python version", "e.g. 3.11")
        return cls(os_name, arch, python_version)

    @classmethod
    def parse(cls, text: str, where: str = "target") -> LockTarget:
        """``linux-x86_64-3.11`` (platform, architecture, Python)."""
        parts = text.split("-")
        if len(parts) != 3:
            raise UsageError(
                f"{where}: {text!r} is not a target",
                "write <platform>-<arch>-<python>, e.g. linux-x86_64-3.11",
            )
        return cls.make(parts[0], parts[1], parts[2], where)


@dataclass(frozen=True)
class LockInputs:
    """What a lock family was resolved from; ``digest`` covers all of it."""

    requirements: tuple[str, ...]  # command-line requirements, in order
    files: tuple[tuple[str, tuple[str, ...]], ...]  # (path relative to the lock folder, its lines)
    targets: tuple[LockTarget, ...]  # every (platform, arch, Python) asked for, sorted
    pytorch_index: str  # the base of the variant indexes: each file's index is <this>/<variant>

    def digest(self) -> str:
        """Requirements, requirement files, targets (so the Python versions) and the index base:
        a change to any of them makes the family stale."""
        data = {
            "requirements": list(self.requirements),
            "files": {p: list(ls) for p, ls in self.files},
            "targets": [t.tag for t in self.targets],
            "pytorch-index": self.pytorch_index,
        }
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()

    def to_toml(self) -> dict[str, Any]:
        return {
            "requirements": list(self.requirements),
            "targets": [t.tag for t in self.targets],
            "pytorch-index": self.pytorch_index,
            "files": {path: list(lines) for path, lines in self.files},
        }

    @classmethod
    def from_toml(cls, table: Mapping[str, Any], where: str) -> LockInputs:
        try:
            if "targets" in table:
                targets = [LockTarget.parse(t, f"{where}: inputs") for t in _strings(table["targets"])]
            else:  # a lock written before targets: one platform and one Python
                os_name, _, arch = str(table["platform"]).partition("-")
                targets = [LockTarget.make(os_name, arch, str(table["python-version"]), f"{where}: inputs")]
            return cls(
                requirements=tuple(_strings(table.get("requirements", []))),
                files=tuple((str(p), tuple(_strings(ls))) for p, ls in table.get("files", {}).items()),
                targets=tuple(sorted(set(targets))),
                pytorch_index=str(table["pytorch-index"]),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise UsageError(f"{where}: [tool.pip-gpu.inputs] is incomplete or malformed ({exc})") from None


@dataclass(frozen=True)
class LockRecord:
    """The decision a lock file was made for: its ``[tool.pip-gpu]`` table."""

    variant: str
    index: Optional[str]  # None for PyPI's "default" builds
    cuda: Optional[str]
    torch: Optional[str]  # "2.5.1": the locked torch, without its local label
    torch_release: str  # "2.5"
    minimum_driver: tuple[tuple[str, str], ...]  # (os, driver) pairs
    sass: Optional[tuple[str, ...]]
    ptx: Optional[tuple[str, ...]]
    inputs: LockInputs
    inputs_digest: str
    pip_gpu_version: str
    targets: tuple[LockTarget, ...] = ()  # the requested targets this file covers
    not_covered: tuple[tuple[LockTarget, str], ...] = ()  # requested, not covered: why

    @property
    def covered(self) -> tuple[LockTarget, ...]:
        """The targets the file is resolved for (a lock without the list: its inputs')."""
        return self.targets or self.inputs.targets

    def to_toml(self) -> dict[str, Any]:
        table: dict[str, Any] = {"variant": self.variant}
        if self.index is not None:
            table["index"] = self.index
        if self.cuda is not None:
            table["cuda"] = self.cuda
        if self.torch is not None:
            table["torch"] = self.torch
        table["torch-release"] = self.torch_release
        table["inputs-digest"] = self.inputs_digest
        table["pip-gpu-version"] = self.pip_gpu_version
        table["targets"] = [t.tag for t in self.covered]
        if self.not_covered:
            table["not-covered"] = {t.tag: why for t, why in self.not_covered}
        if self.minimum_driver:
            table["minimum-driver"] = dict(self.minimum_driver)
        if self.sass is not None:
            table["gpu-architectures"] = {"sass": list(self.sass), "ptx": list(self.ptx or ())}
        table["inputs"] = self.inputs.to_toml()
        return table

    @classmethod
    def from_toml(cls, table: Mapping[str, Any], where: str) -> LockRecord:
        try:
            for key in ("variant", "torch-release", "inputs-digest"):
                _text(table, key, where, required=True)
            for key in ("index", "cuda", "torch"):
                _text(table, key, where, required=False)
            if not _VARIANT_RE.match(table["variant"]):
                raise UsageError(
                    f"{where}: [tool.pip-gpu] variant {table['variant']!r} is not a variant name"
                )
            for key in ("torch", "torch-release"):
                if table.get(key) is not None:
                    try:
                        Version(table[key])
                    except InvalidVersion:
                        raise UsageError(
                            f"{where}: [tool.pip-gpu] {key} {table[key]!r} is not a version",
                            "the file was edited by hand: restore it, or re-resolve it with pip-gpu lock",
                        ) from None
            if table.get("index") is not None:
                _check_url(table["index"], f"{where}: [tool.pip-gpu] index")
            archs = table.get("gpu-architectures")
            targets = tuple(LockTarget.parse(t, where) for t in _strings(table.get("targets", [])))
            not_covered = tuple(
                (LockTarget.parse(str(t), where), str(why)) for t, why in table.get("not-covered", {}).items()
            )
            return cls(
                variant=str(table["variant"]),
                index=table.get("index"),
                cuda=table.get("cuda"),
                torch=table.get("torch"),
                torch_release=str(table["torch-release"]),
                minimum_driver=tuple(
                    sorted((str(k), str(v)) for k, v in table.get("minimum-driver", {}).items())
                ),
                sass=tuple(_strings(archs.get("sass", []))) if archs else None,
                ptx=tuple(_strings(archs.get("ptx", []))) if archs else None,
                inputs=LockInputs.from_toml(table["inputs"], where),
                inputs_digest=str(table["inputs-digest"]),
                pip_gpu_version=str(table.get("pip-gpu-version", "")),
                targets=targets,
                not_covered=not_covered,
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise UsageError(f"{where}: [tool.pip-gpu] is incomplete or malformed ({exc})") from None


@dataclass(frozen=True)
class LockFile:
    """A lock file as read back: the validated PEP 751 lock and pip-gpu's record in it."""

    path: Path
    pylock: Pylock
    record: LockRecord
    sha256: str  # of the file's bytes, to say which lock an environment was synced from

    @property
    def variant(self) -> str:
        return self.record.variant


_VARIANT_RE = re.compile(r"^[a-z][a-z0-9.]*$")


def _text(table: Mapping[str, Any], key: str, where: str, *, required: bool) -> None:
    """Refuse a ``[tool.pip-gpu]`` value that is not a string (``index = 123``)."""
    value = table.get(key)
    if (value is None and not required) or isinstance(value, str):
        return
    if value is None:
        raise UsageError(
            f"{where}: [tool.pip-gpu] has no {key}",
            "the file was edited by hand: restore it, or re-resolve it with pip-gpu lock",
        )
    raise UsageError(
        f"{where}: [tool.pip-gpu] {key} must be a string, not {type(value).__name__}",
        "the file was edited by hand: restore it, or re-resolve it with pip-gpu lock",
    )


def _check_url(url: str, where: str) -> None:
    try:
        urllib.parse.urlsplit(url).port  # noqa: B018 - raises ValueError on a malformed URL
    except ValueError as exc:
        raise UsageError(
            f"{where} {url!r} is not a valid URL ({exc})",
            "the file was edited by hand: restore it, or re-resolve it with pip-gpu lock",
        ) from None


def _strings(values: Iterable[Any]) -> list[str]:
    out = list(values)
    if not all(isinstance(v, str) for v in out):
        raise TypeError("expected a list of strings")
    return out


def recorded_lines(lines: Iterable[Any]) -> tuple[str, ...]:
    """A requirements file's parsed lines (:class:`pip_gpu.requirements.RequirementLine`) as a
    lock records them: rendered, credentials removed."""
    from .requirements import render_line

    return tuple(strip_credentials(render_line(line)) for line in lines)


def lock_path(directory: Path, variant: str) -> Path:
    """``pylock.<variant>.toml``; PEP 751 forbids dots in the name, so rocm6.2 -> rocm6-2."""
    return directory / f"pylock.{variant.replace('.', '-')}.toml"


# --- what a lock may point at ----------------------------------------------------------------

# Public indexes whose pages link to files on another host (PEP 503 allows any URL).
FILE_HOSTS = {
    "pypi.org": frozenset({"files.pythonhosted.org"}),
    "test.pypi.org": frozenset({"test-files.pythonhosted.org"}),
}


def _same_index(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def expected_variant_index(record: LockRecord) -> Optional[str]:
    """``<inputs.pytorch-index>/<variant>``: where the record's own inputs say the family lives."""
    from .variant import variant_index_url

    base = record.inputs.pytorch_index
    return variant_index_url(base, record.variant) if base else None


def lock_problems(
    packages: Sequence[Package], record: LockRecord, family: Collection[str], *, label_check: bool = True
) -> list[str]:
    """Every way a lock points outside the indexes it records, in words (empty: none).

    pip-gpu writes only index files: each package names its ``index``, each file lives on
    that index's host (or its known file host), the torch family comes from the variant index
    recorded in ``[tool.pip-gpu]`` (itself ``<pytorch-index>/<variant>``), and a family
    member's local label is the variant's. A lock edited to fetch anything else, or to put a
    ``+cpu`` torch in a CUDA lock, is refused whatever its hashes say.
    """
    family = frozenset(canonicalize_name(name) for name in family)
    problems: list[str] = []
    variant_index = record.index
    expected = expected_variant_index(record)
    if variant_index is not None and expected is not None and not _same_index(variant_index, expected):
        problems.append(
            f"[tool.pip-gpu] index {redact_url(variant_index)} is not the {record.variant} index of "
            f"the recorded pytorch-index ({redact_url(expected)})"
        )
    for package in packages:
        name = canonicalize_name(str(package.name))
        kinds = [kind for kind in ("archive", "vcs", "directory") if getattr(package, kind, None) is not None]
        if kinds:
            problems.append(
                f"{name} is {'an' if kinds[0] == 'archive' else 'a'} {kinds[0]} entry; pip-gpu locks "
                "hold index files only "
                "(an archive or a directory runs its build backend when installed)"
            )
            continue
        files = [*(package.wheels or ()), *([package.sdist] if package.sdist else [])]
        index = str(package.index) if package.index else None
        if index is None:
            problems.append(f"{name} names no index; every package of a pip-gpu lock records its index")
            continue
        if name in family and variant_index is not None and not _same_index(index, variant_index):
            problems.append(
                f"{name} comes from {redact_url(index)}, not the recorded variant index "
                f"{redact_url(variant_index)}"
            )
            continue
        scheme, host, port = url_origin(index)
        allowed = {host, *FILE_HOSTS.get(host, ())}
        for file in files:
            url = getattr(file, "url", None)
            if url is None:
                problems.append(f"{name}'s file {getattr(file, 'path', None) or '?'} has no URL on its index")
                continue
            file_scheme, file_host, file_port = url_origin(url)
            same_port = file_port == port or file_host != host
            if file_scheme != scheme or file_host not in allowed or not same_port:
                problems.append(f"{name}'s file {redact_url(url)} is not on its index {redact_url(index)}")
        if label_check and name in family:
            problems.extend(_label_problems(name, package, files, record.variant))
    return problems


def _label_problems(name: str, package: Package, files: Sequence[Any], variant: str) -> list[str]:
    """A family member whose version or file names carry another variant's local label."""
    from .variant import Variant

    parsed = Variant.from_label(variant)  # None: a name pip-gpu cannot read, compared as it is
    wanted = None if parsed is not None and not parsed.has_index else variant.lower()
    labels = []
    if package.version is not None:
        labels.append(("version", package.version.local))
    for file in files:
        filename = getattr(file, "name", None) or urllib.parse.unquote(
            urllib.parse.urlsplit(str(getattr(file, "url", "") or "")).path.rsplit("/", 1)[-1]
        )
        if filename.endswith(".whl"):
            try:
                from packaging.utils import parse_wheel_filename

                labels.append((filename, parse_wheel_filename(filename)[1].local))
            except ValueError:
                labels.append((filename, None))
    out = []
    for what, label in labels:
        # torch must carry the variant's label (the CPU index once served aarch64 wheels
        # without one); a companion may carry none, never another one
        unlabelled_ok = name != "torch" or (parsed is not None and parsed.kind == "cpu")
        if (label or None) != wanted and (label is not None or not unlabelled_ok):
            shown = f"+{label}" if label else "no local label"
            out.append(
                f"{name}'s {what} has {shown}, but this is the {variant} lock "
                f"({'+' + wanted if wanted else 'no label'} expected)"
            )
    return out


# --- building and writing --------------------------------------------------------------------

_PACKAGE_KEYS = ("name", "version", "marker", "requires-python", "index", "dependencies")
_FILE_KEYS = ("name", "url", "path", "upload-time", "size", "hashes")


def _ordered(table: Mapping[str, Any], first: Sequence[str]) -> dict[str, Any]:
    """Known keys in a fixed order, then the rest alphabetically: stable bytes for tomli_w."""
    out = {key: table[key] for key in first if key in table}
    out.update({key: table[key] for key in sorted(table) if key not in out})
    return out


def _file_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    entry = dict(entry)
    if "url" in entry:
        entry["url"] = strip_credentials(str(entry["url"]))
        if "name" not in entry:
            # pip's PEP 751 reader takes the file name from the URL without unquoting it
            # (torch-2.5.1%2Bcu124-...whl), so write the name out.
            path = urllib.parse.urlsplit(entry["url"]).path
            entry["name"] = urllib.parse.unquote(path.rsplit("/", 1)[-1])
    if "hashes" in entry:
        entry["hashes"] = dict(sorted(entry["hashes"].items()))
    return _ordered(entry, _FILE_KEYS)


def _package_entry(package: Mapping[str, Any], index: Optional[str]) -> dict[str, Any]:
    package = dict(package)
    if index is not None:
        package["index"] = strip_credentials(index)
    for key in ("wheels",):
        if key in package:
            package[key] = sorted((_file_entry(w) for w in package[key]), key=lambda w: str(w.get("name")))
    for key in ("sdist", "archive"):
        if key in package:
            package[key] = _file_entry(package[key])
    for key in ("vcs", "directory"):
        if key in package and "url" in package[key]:
            package[key] = dict(package[key], url=strip_credentials(str(package[key]["url"])))
    return _ordered(package, _PACKAGE_KEYS)


def _file_key(entry: Mapping[str, Any]) -> str:
    return str(entry.get("url") or entry.get("path") or entry.get("name"))


def _cover_marker(covered: Sequence[tuple[str, str]], universe: Sequence[tuple[str, str]]) -> str:
    """A PEP 508 marker true on the ``covered`` (platform marker, Python) pairs of ``universe``.

    The shortest of: the Pythons alone, the platforms alone, or each platform with its Pythons
    (``python_version in '3.10 3.11'`` would be a substring test, so each is spelled out).
    """

    def pythons(versions: Iterable[str]) -> str:
        clauses = [f"python_version == '{v}'" for v in sorted(set(versions))]
        return clauses[0] if len(clauses) == 1 else "(" + " or ".join(clauses) + ")"

    def platforms(markers: Iterable[str]) -> str:
        unique = sorted(set(markers))
        return unique[0] if len(unique) == 1 else "(" + " or ".join(f"({m})" for m in unique) + ")"

    chosen = set(covered)
    versions = {v for _, v in chosen}
    places = {p for p, _ in chosen}
    if chosen == {(p, v) for p, v in universe if v in versions}:
        return pythons(versions)
    if chosen == {(p, v) for p, v in universe if p in places}:
        return platforms(places)
    clauses = []
    for place in sorted(places):
        here = {v for p, v in chosen if p == place}
        every = {v for p, v in universe if p == place}
        clauses.append(f"({place})" if here == every else f"({place} and {pythons(here)})")
    return clauses[0] if len(clauses) == 1 else " or ".join(clauses)


def merge_resolutions(
    parts: Sequence[tuple[tuple[str, str], Mapping[str, Any], Mapping[str, str]]],
) -> dict[str, Any]:
    """One PEP 751 document from one resolution per target.

    ``parts``: ((platform marker, Python), the resolver's document, package -> index) per
    target. A package the same on every target (name, version, index, marker) is one entry
    whose wheels are the union of the targets' wheels; one that only some targets have, or
    that they have at different versions, gets a ``marker`` naming those targets (PEP 751:
    "marker" limits where a package applies), so each target installs exactly what was
    resolved for it.
    """
    universe = [where for where, _, _ in parts]
    merged: dict[tuple[str, ...], tuple[dict[str, Any], list[tuple[str, str]]]] = {}
    requires_python: list[tuple[str, str]] = []
    for where, resolved, indexes in parts:
        if "requires-python" in resolved:
            requires_python.append((where[1], str(resolved["requires-python"])))
        for package in resolved.get("packages", []):
            entry = _package_entry(package, indexes.get(str(package["name"])))
            key = tuple(
                str(entry.get(k, "")) for k in ("name", "version", "index", "marker", "vcs", "directory")
            )
            if key not in merged:
                merged[key] = (entry, [where])
                continue
            kept, covered = merged[key]
            covered.append(where)
            wheels = {_file_key(w): w for w in [*kept.get("wheels", []), *entry.get("wheels", [])]}
            if wheels:
                kept["wheels"] = sorted(wheels.values(), key=lambda w: str(w.get("name")))
            for key_ in ("sdist", "archive"):
                if key_ in entry and key_ not in kept:
                    kept[key_] = entry[key_]
    packages = []
    for entry, covered in merged.values():
        if set(covered) != set(universe):
            limit = _cover_marker(covered, universe)
            own = entry.get("marker")
            entry["marker"] = f"({own}) and ({limit})" if own else limit
        packages.append(_ordered(entry, _PACKAGE_KEYS))
    document: dict[str, Any] = {"packages": packages}
    if requires_python:  # the lowest target's: every target's Python satisfies it
        lowest = min(requires_python, key=lambda item: Version(item[0].rstrip("t")))
        document["requires-python"] = lowest[1]
    return document


def lock_document(
    resolved: Mapping[str, Any],
    indexes: Mapping[str, str],
    record: LockRecord,
    environments: Sequence[str],
) -> dict[str, Any]:
    """The whole lock: the resolver's packages, each with its index, and our record.

    ``resolved`` is a PEP 751 document from the resolver; ``indexes`` maps canonical
    package names to the index each came from.
    """
    packages = [
        _package_entry(package, indexes.get(str(package["name"]))) for package in resolved.get("packages", [])
    ]
    packages.sort(key=lambda p: (str(p["name"]), str(p.get("version", ""))))
    document: dict[str, Any] = {"lock-version": LOCK_VERSION}
    if environments:
        document["environments"] = list(environments)
    if "requires-python" in resolved:
        document["requires-python"] = resolved["requires-python"]
    document["created-by"] = CREATED_BY
    document["packages"] = packages
    document["tool"] = {TOOL: record.to_toml()}
    return document


def render_lock(document: Mapping[str, Any]) -> str:
    header = "# This file was written by pip-gpu (`pip-gpu lock`). It is a PEP 751 lock file.\n"
    return header + tomli_w.dumps(document)


def load_toml(text: str, where: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = tomllib.loads(text)
        return data
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{where}: not valid TOML: {exc}") from None


def validate_lock_text(text: str, where: str) -> Pylock:
    """Parse and validate a lock; every problem becomes one line naming the file.

    A text validated already in this process (``lock`` validates each file before writing it,
    then reads it back) is not parsed again: a 100-package lock takes ~20 ms to parse."""
    known = _VALIDATED.get(text)
    if known is not None:
        return known
    data = load_toml(text, where)
    try:
        pylock = Pylock.from_dict(data)
    except PylockUnsupportedVersionError:
        version = data.get("lock-version")
        raise UsageError(
            f"{where}: lock-version {version} is not supported (pip-gpu reads PEP 751 lock-version 1.x)"
        ) from None
    except PylockValidationError as exc:
        raise UsageError(f"{where}: not a valid PEP 751 lock: {exc}") from None
    if len(_VALIDATED) >= 16:  # a process handles a few lock families at most
        _VALIDATED.clear()
    _VALIDATED[text] = pylock
    return pylock


_VALIDATED: dict[str, Pylock] = {}


def _stage(path: Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file next to ``path``, flushed to disk; its name."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return Path(temporary)


def _cannot_write(path: Path, exc: OSError, replaced: Sequence[Path] = ()) -> PipGpuError:
    done = (
        f"{', '.join(p.name for p in replaced)} already replaced; the others are unchanged"
        if replaced
        else f"{path.name} is unchanged"
    )
    return EnvironmentFault(  # a full disk is the machine's fault, not bad input (exit 74)
        f"cannot write {path}: {exc.strerror or exc}",
        f"{done}; free disk space or fix the folder's permissions, then run again",
    )


def write_files_atomically(files: Sequence[tuple[Path, bytes]]) -> None:
    """Every file to a temporary file in its folder, flushed to disk, then ``os.replace`` each.

    A killed writer leaves the old files (and at worst ``.pylock-*.tmp`` files that nothing
    reads); two writers at once leave complete files. A write that fails (a full disk)
    replaces nothing: every temporary file is written before the first replacement.
    """
    staged: list[tuple[Path, Path]] = []
    replaced: list[Path] = []
    try:
        for path, data in files:
            staged.append((_stage(path, data), path))
        for temporary, path in staged:
            os.replace(temporary, path)
            replaced.append(path)
    except OSError as exc:
        failed = files[len(staged)][0] if len(staged) < len(files) else staged[len(replaced)][1]
        raise _cannot_write(failed, exc, replaced) from None
    finally:
        for temporary, path in staged:
            if path not in replaced:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)


def write_atomically(path: Path, data: bytes) -> None:
    """One file, as :func:`write_files_atomically` writes them: the old file or the new one."""
    write_files_atomically([(path, data)])


def write_locks(
    locks: Sequence[tuple[Path, str]],
    family: Collection[str] = (),
    more_problems: Optional[Callable[[Sequence[Package], LockRecord], list[str]]] = None,
) -> list[bool]:
    """Validate every lock text, then put each at its path; False where a file already holds it.

    Nothing is written unless every text is a valid lock, and (with ``family``, the names
    routed to the variant index) unless ``sync`` would install it: see :func:`lock_problems`,
    and ``more_problems``, the rules a layer above adds (markers that leave torch out).
    """
    from .requirements import read_regular_file

    for path, text in locks:
        if credentials_left(text):  # strip_credentials ran on every URL: this is the backstop
            raise PipGpuError(
                f"refusing to write {path.name}: a URL in it would still carry credentials",
                "give index credentials through ~/.netrc or the installers' own settings; "
                "nothing was written",
            )
        pylock = validate_lock_text(text, path.name)
        table = (pylock.tool or {}).get(TOOL)
        if family and table is not None:
            record = LockRecord.from_toml(table, path.name)
            problems = lock_problems(pylock.packages, record, family)
            if more_problems is not None:
                problems += more_problems(pylock.packages, record)
            if problems:
                raise PipGpuError(
                    f"refusing to write {path.name}: " + "; ".join(problems[:3]),
                    "the index served files pip-gpu would refuse to sync (check the index and "
                    "--pytorch-index); nothing was written",
                )
    changed: list[tuple[Path, bytes]] = []
    flags: list[bool] = []
    for path, text in locks:
        data = text.encode("utf-8")
        try:  # a regular file only: an old "lock" that is a FIFO or /dev/zero is replaced
            same = read_regular_file(path, len(data)) == data
        except OSError:
            same = False
        flags.append(not same)
        if not same:
            changed.append((path, data))
    write_files_atomically(changed)
    return flags


def write_lock(path: Path, text: str) -> bool:
    """Validate ``text`` and put it at ``path``; False when the file already holds it."""
    return write_locks([(path, text)])[0]


# --- reading ---------------------------------------------------------------------------------

MAX_LOCK_BYTES = 64 * 2**20  # a lock of thousands of packages is a few MB
_LOCK_NAME_RE = re.compile(r"^pylock\.([^.]+)\.toml$")


def read_lock(path: Path) -> Optional[LockFile]:
    """The lock at ``path``; None when it is a valid PEP 751 lock that pip-gpu did not write."""
    from .requirements import FileTooLarge, NotARegularFile, read_regular_file

    try:
        data = read_regular_file(path, MAX_LOCK_BYTES)
    except NotARegularFile as exc:
        raise UsageError(
            f"{path} is {exc.what}, not a lock file", "remove it, or restore the lock from version control"
        ) from None
    except FileTooLarge:
        raise UsageError(
            f"{path} is larger than {MAX_LOCK_BYTES // 2**20} MiB; not a lock pip-gpu wrote",
            "remove it, or restore the lock from version control",
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    text = data.decode("utf-8", errors="replace")
    pylock = validate_lock_text(text, path.name)
    table = (pylock.tool or {}).get(TOOL)
    if table is None:
        return None
    record = LockRecord.from_toml(table, path.name)
    return LockFile(path=path, pylock=pylock, record=record, sha256=hashlib.sha256(data).hexdigest())


def find_lock_family(directory: Path, known: Sequence[LockFile] = ()) -> list[LockFile]:
    """Every pip-gpu lock in ``directory`` (``pylock.<variant>.toml``), by file name.

    ``known``: locks this process has just written and read; not parsed again."""
    family: list[LockFile] = []
    already = {lock.path: lock for lock in known}
    try:
        names = sorted(entry.name for entry in directory.iterdir() if _LOCK_NAME_RE.match(entry.name))
    except OSError:
        return []
    for name in names:
        lock = already.get(directory / name) or read_lock(directory / name)
        if lock is not None:
            family.append(lock)
    return family
