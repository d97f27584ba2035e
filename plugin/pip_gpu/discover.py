"""Learn torch releases the knowledge file does not know yet, from the variant indexes.

A torch release newer than this copy of pip-gpu should not need a pip-gpu release. Its wheels'
names say which variants, platforms and Pythons exist; the GPU architectures inside cannot be
read from an index, so they are assumed from the newest known build of the same CUDA version
and marked unconfirmed. What was learned is cached for a day.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import Version

from .decide import append_path
from .index import IndexFile, fetch_project_files
from .knowledge import Build, Knowledge, Release, cuda_of_variant, variant_sort_key
from .requirements import redact_url

__all__ = ["discover_releases", "releases_from_files", "with_releases"]

CACHE_TTL_S = 24 * 3600
PYTHONS = tuple(f"3.{minor}" for minor in range(8, 16))
PLATFORMS = ("linux-x86_64", "linux-aarch64", "windows-x86_64", "macos-arm64")

Fetch = Callable[[str], list[IndexFile]]


def _platforms(tags: Iterable[Tag]) -> set[str]:
    found: set[str] = set()
    for tag in tags:
        plat = tag.platform
        if plat == "any":
            found.update(PLATFORMS)
        elif plat.startswith(("manylinux", "linux", "musllinux")):
            found.add("linux-aarch64" if plat.endswith("aarch64") else "linux-x86_64")
        elif plat == "win_amd64":
            found.add("windows-x86_64")
        elif plat.startswith("macosx") and plat.endswith(("arm64", "universal2")):
            found.add("macos-arm64")
    return found


def _pythons(tags: Iterable[Tag], requires_python: Optional[str]) -> set[str]:
    found: set[str] = set()
    for tag in tags:
        if tag.interpreter.startswith("cp3") and tag.interpreter[3:].isdigit():
            found.add(f"3.{tag.interpreter[3:]}")
        elif tag.interpreter.startswith("py3"):
            found.update(PYTHONS)
    if requires_python:
        try:
            spec = SpecifierSet(requires_python)
        except InvalidSpecifier:
            return found
        found = {p for p in found if spec.contains(f"{p}.0")}
    return found


@dataclass
class _Seen:
    """What one variant index shows of one torch series."""

    versions: set[str] = field(default_factory=set)
    python: set[str] = field(default_factory=set)
    platforms: set[str] = field(default_factory=set)
    builds: list[Build] = field(default_factory=list)


def releases_from_files(files: Iterable[IndexFile], variant: str) -> dict[str, dict[str, list[str]]]:
    """Group one variant index's torch wheels by series: versions, Pythons, platforms."""
    series: dict[str, _Seen] = {}
    for file in files:
        try:
            _, version, _, tags = parse_wheel_filename(file.filename)
        except InvalidWheelFilename:
            continue
        if version.is_prerelease or version.is_devrelease:
            continue
        label = version.local
        if label is not None and label != variant:
            continue
        seen = series.setdefault(f"{version.major}.{version.minor}", _Seen())
        seen.versions.add(version.public)
        seen.python |= _pythons(tags, file.requires_python)
        seen.platforms |= _platforms(tags)
    return {
        key: {
            "versions": sorted(seen.versions, key=Version),
            "python": sorted(seen.python, key=Version),
            "platforms": sorted(seen.platforms),
        }
        for key, seen in series.items()
    }


def _assumed_archs(knowledge: Knowledge, variant: str, platform: str) -> tuple[Optional[Build], str]:
    """The newest known build of this variant (else the nearest older CUDA) on this platform."""
    cuda = cuda_of_variant(variant)
    if cuda is None:
        return None, ""
    candidates = [
        (release, build)
        for release in knowledge.releases
        for build in release.builds
        if build.platform == platform and build.cuda is not None and build.sass is not None
    ]
    same = [(r, b) for r, b in candidates if b.variant == variant]
    older = [(r, b) for r, b in candidates if Version(b.cuda or "0") < Version(cuda)]
    for pool in (same, sorted(older, key=lambda rb: variant_sort_key(rb[1].variant), reverse=True)):
        if pool:
            release, build = pool[0]
            return build, f"torch {release.torch} {build.variant}"
    return None, ""


def discover_releases(
    knowledge: Knowledge,
    pytorch_index: str,
    variants: Iterable[str],
    *,
    fetch: Optional[Fetch] = None,
    cache_dir: Optional[Path] = None,
) -> tuple[Release, ...]:
    """Releases found on the variant indexes that the knowledge file does not have."""
    fetch = fetch or fetch_project_files
    known = {r.torch for r in knowledge.releases}
    found: dict[str, _Seen] = {}
    from .ui import progress

    for variant in variants:
        with progress(f"reading the {variant} index"):
            files = _cached(pytorch_index, variant, fetch, cache_dir)
        for series, info in releases_from_files(files, variant).items():
            if series in known:
                continue
            seen = found.setdefault(series, _Seen())
            seen.versions |= set(info["versions"])
            seen.python |= set(info["python"])
            for platform in info["platforms"]:
                template, origin = _assumed_archs(knowledge, variant, platform)
                seen.builds.append(
                    Build(
                        variant=variant,
                        platform=platform,
                        sass=template.sass if template else None,
                        ptx=template.ptx if template else None,
                        gfx=None,
                        confidence="unconfirmed",
                        source=f"discovered on {variant} index"
                        + (f"; architectures assumed from {origin}" if origin else ""),
                    )
                )
    return tuple(
        Release(
            torch=series,
            versions=tuple(sorted(seen.versions, key=Version)),
            python=tuple(sorted(seen.python, key=Version)),
            companions={},
            builds=tuple(seen.builds),
            confidence="unconfirmed",
            source=f"discovered on the variant indexes at {redact_url(pytorch_index)}",
        )
        for series, seen in found.items()
    )


def with_releases(knowledge: Knowledge, releases: Iterable[Release]) -> Knowledge:
    merged = sorted((*knowledge.releases, *releases), key=lambda r: r.version, reverse=True)
    return replace(knowledge, releases=tuple(merged))


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pip-gpu" / "discovered"


def _cached(pytorch_index: str, variant: str, fetch: Fetch, cache_dir: Optional[Path]) -> list[IndexFile]:
    folder = cache_dir or default_cache_dir()
    key = hashlib.sha256(f"{pytorch_index}/{variant}".encode()).hexdigest()[:24]
    path = folder / f"{key}.json"
    try:
        if time.time() - path.stat().st_mtime < CACHE_TTL_S:
            data = json.loads(path.read_text(encoding="utf-8"))
            return [IndexFile(**item) for item in data]
    except (OSError, ValueError, TypeError):
        pass
    files = fetch(append_path(pytorch_index, variant, "torch", ""))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps([vars(f) for f in files]), encoding="utf-8")
        os.replace(temporary, path)
    except OSError:
        pass  # a cache we cannot write is only slower
    return files
