"""Learn torch releases the knowledge file does not know yet, from the variant indexes.

A torch release newer than this copy of pip-gpu should not need a pip-gpu release. Its wheels'
names say which variants, platforms and Pythons exist; the GPU architectures inside cannot be
read from an index, so they are assumed from the newest known build of the same CUDA version
and marked unconfirmed. What was learned is cached for a few hours.

Two ways in: a pin past the newest known release must be looked up (``discover_releases``);
an open request (``torch``, ``torch>=2.14``) asks, within a few seconds, whether the variant
index it would use serves a newer series (``look_for_newer``), and decides from the file when
the index does not answer in time.

The same cached pages say what a variant index carries (``read_offers``): the decision takes
only builds the index in use publishes (a mirror a release behind, one without some variants).
"""

from __future__ import annotations

import json
import os
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple, Optional

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from ..errors import PipGpuError
from ..knowledge import Build, Knowledge, Release
from ..redact import redact_url
from ..variant import Variant, append_path

if TYPE_CHECKING:  # the index module (urllib, http) is imported only when the network is used
    from packaging.tags import Tag  # and packaging's wheel names only when a page is read

    from .index import IndexFile
    from .rules import Offer

__all__ = [
    "Freshness",
    "Offers",
    "discover_releases",
    "index_serves",
    "look_for_newer",
    "merge_releases",
    "missing_torch_file",
    "platforms_of",
    "read_offers",
    "releases_from_files",
    "with_releases",
]

CACHE_TTL_S = 6 * 3600
UNREACHABLE_TTL_S = 15 * 60  # an index that did not answer is not asked again for a while
FRESHNESS_TIMEOUT_S = 2.0  # with pip-gpu's own start, well under 5 s on a busy machine
FRESHNESS_TIMEOUT_VARIABLE = "PIP_GPU_FRESHNESS_TIMEOUT"
PYTHONS = tuple(f"3.{minor}" for minor in range(8, 16))
PLATFORMS = ("linux-x86_64", "linux-aarch64", "windows-x86_64", "macos-arm64")

Fetch = Callable[[str], "list[IndexFile]"]
Summary = dict[str, dict[str, list[str]]]  # series -> versions, python, platforms


def platforms_of(tags: Iterable[Tag]) -> set[str]:
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
            free_threaded = tag.abi == f"{tag.interpreter}t"  # cp314-cp314t: a no-GIL build
            found.add(f"3.{tag.interpreter[3:]}" + ("t" if free_threaded else ""))
        elif tag.interpreter.startswith("py3"):
            found.update(PYTHONS)
    if requires_python:
        try:
            spec = SpecifierSet(requires_python)
        except InvalidSpecifier:
            return found
        found = {p for p in found if spec.contains(f"{p.rstrip('t')}.0")}
    return found


class _Seen:
    """What one variant index shows of one torch series (a plain class: a dataclass costs
    every ``explain`` its creation when the module loads)."""

    __slots__ = ("builds", "platforms", "python", "versions")

    def __init__(self) -> None:
        self.versions: set[str] = set()
        self.python: set[str] = set()
        self.platforms: set[str] = set()
        self.builds: list[Build] = []


def _python_key(python: str) -> tuple[Version, bool]:
    return Version(python.rstrip("t")), python.endswith("t")


def releases_from_files(files: Iterable[IndexFile], variant: str, prereleases: bool = False) -> Summary:
    """Group one variant index's torch wheels by series: versions, Pythons, platforms.

    Pre-releases count only where ``prereleases`` says so: on the nightly and test channels.
    """
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    series: dict[str, _Seen] = {}
    for file in files:
        try:
            _, version, _, tags = parse_wheel_filename(file.filename)
        except InvalidWheelFilename:
            continue
        if (version.is_prerelease or version.is_devrelease) and not prereleases:
            continue
        label = version.local
        if label is not None and label != variant:
            continue
        seen = series.setdefault(f"{version.major}.{version.minor}", _Seen())
        seen.versions.add(version.public)
        seen.python |= _pythons(tags, file.requires_python)
        seen.platforms |= platforms_of(tags)
    return {
        key: {
            "versions": sorted(seen.versions, key=Version),
            "python": sorted(seen.python, key=_python_key),
            "platforms": sorted(seen.platforms),
        }
        for key, seen in series.items()
    }


def _assumed_archs(knowledge: Knowledge, variant: Variant, platform: str) -> tuple[Optional[Build], str]:
    """The newest known build of this variant (else the nearest older CUDA) on this platform."""
    cuda = variant.cuda
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
    for pool in (same, sorted(older, key=lambda rb: rb[1].variant.sort_key, reverse=True)):
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
    newer_only: bool = False,
    prereleases: bool = False,
    include_known: bool = False,
) -> tuple[Release, ...]:
    """Releases found on the variant indexes that the knowledge file does not have.

    ``include_known``: every series found, the known ones too (a channel's own releases);
    ``prereleases``: dev and rc versions count (the nightly and test channels).
    """
    if fetch is None:
        from .index import fetch_project_files

        fetch = fetch_project_files
    known = set() if include_known else {r.torch for r in knowledge.releases}
    newest = knowledge.releases[0].version if knowledge.releases else Version("0")
    found: dict[str, _Seen] = {}
    from ..ui import progress

    for name in variants:
        variant = Variant(name)  # an index name pip-gpu reads is a variant name
        with progress(f"reading the {variant} index"):
            summary = _summary(pytorch_index, variant, fetch, cache_dir, prereleases)
        for series, info in summary.items():
            if series in known or (newer_only and Version(series) <= newest):
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
                        seen_on_index=True,
                        source=f"discovered on {variant} index"
                        + (f"; architectures assumed from {origin}" if origin else ""),
                    )
                )
    return tuple(
        Release(
            torch=series,
            versions=tuple(sorted(seen.versions, key=Version)),
            python=tuple(sorted(seen.python, key=_python_key)),
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


def _cache_path(
    pytorch_index: str, variant: str, cache_dir: Optional[Path], prereleases: bool = False
) -> Path:
    folder = cache_dir or default_cache_dir()
    # Not the URL itself (it may hold a token); zlib, unlike hashlib, costs nothing to import.
    raw = f"{pytorch_index}/{variant}{' pre' if prereleases else ''}".encode()
    key = f"{zlib.crc32(raw):08x}{zlib.adler32(raw):08x}"
    return folder / f"{key}.json"


def _cached_summary(
    pytorch_index: str, variant: str, cache_dir: Optional[Path], prereleases: bool = False
) -> Optional[Summary]:
    path = _cache_path(pytorch_index, variant, cache_dir, prereleases)
    try:
        if time.time() - path.stat().st_mtime < CACHE_TTL_S:
            data: Summary = json.loads(path.read_text(encoding="utf-8"))
            return data
    except (OSError, ValueError):
        pass
    return None


def _summary(
    pytorch_index: str,
    variant: str,
    fetch: Fetch,
    cache_dir: Optional[Path],
    prereleases: bool = False,
    project: str = "torch",
) -> Summary:
    """What a variant index serves of a project (torch), by series: cached for hours, as a small
    summary."""
    key = variant if project == "torch" else f"{variant}/{project}"
    cached = _cached_summary(pytorch_index, key, cache_dir, prereleases)
    if cached is not None:
        return cached
    files = fetch(append_path(pytorch_index, variant, project, ""))
    summary = releases_from_files(files, variant, prereleases)
    path = _cache_path(pytorch_index, key, cache_dir, prereleases)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        temporary.write_text(json.dumps(summary), encoding="utf-8")
        os.replace(temporary, path)
    except OSError:
        pass  # a cache we cannot write is only slower
    return summary


class Freshness(NamedTuple):
    """What the index said about torch series newer than the knowledge file's newest."""

    releases: tuple[Release, ...]  # newer series found (architectures assumed, unconfirmed)
    answered: bool
    problem: str = ""  # why there is no answer: "did not answer within 2 s", ...


def freshness_timeout(env: Optional[dict[str, str]] = None) -> float:
    """Seconds an open request waits for the index: ``PIP_GPU_FRESHNESS_TIMEOUT`` (default 2)."""
    value = (env if env is not None else os.environ).get(FRESHNESS_TIMEOUT_VARIABLE, "").strip()
    try:
        seconds = float(value) if value else FRESHNESS_TIMEOUT_S
    except ValueError:
        seconds = FRESHNESS_TIMEOUT_S
    return seconds if 0 < seconds < 60 else FRESHNESS_TIMEOUT_S


def look_for_newer(
    knowledge: Knowledge,
    pytorch_index: str,
    variants: Iterable[str],
    *,
    timeout_s: float = FRESHNESS_TIMEOUT_S,
    fetch: Optional[Fetch] = None,
    cache_dir: Optional[Path] = None,
) -> Freshness:
    """Ask the variant indexes, within ``timeout_s`` in all, for torch series newer than the file.

    The first variant is the one the host would take: if it does not answer, there is no answer.
    The others (the next CUDA versions the driver runs, ``cu134``) are asked too; a 404 there
    means only that the variant does not exist yet. A silent index is not asked again for a
    quarter of an hour, so a machine without network pays the wait once, not every time.
    """
    wanted = list(dict.fromkeys(variants))
    if not wanted:
        return Freshness((), False, "no variant index to ask")
    primary = wanted[0]
    marker = _cache_path(pytorch_index, primary, cache_dir).with_suffix(".unreachable")
    recent = _recent_failure(marker)
    if recent is not None:
        return Freshness((), False, recent)

    def bounded(url: str) -> list[IndexFile]:
        if fetch is not None:
            return fetch(url)
        from .index import fetch_project_files

        return fetch_project_files(url, timeout=timeout_s)

    outcome: dict[str, object] = {}

    def ask() -> None:
        try:
            outcome["releases"] = discover_releases(
                knowledge, pytorch_index, [primary], fetch=bounded, cache_dir=cache_dir, newer_only=True
            )
            extra: list[Release] = []
            for variant in wanted[1:]:
                try:
                    extra += discover_releases(
                        knowledge,
                        pytorch_index,
                        [variant],
                        fetch=bounded,
                        cache_dir=cache_dir,
                        newer_only=True,
                    )
                except PipGpuError:
                    continue  # a variant that does not exist (yet) is no answer about the primary
            outcome["extra"] = extra
        except PipGpuError as error:  # the index module's IndexError_, without importing it here
            outcome["error"] = error.message
        except Exception as error:  # a worker thread must report, not die silently
            outcome["error"] = repr(error)

    if all(_cached_summary(pytorch_index, v, cache_dir) is not None for v in wanted):
        ask()  # answered from the cache: no network, no thread
    else:
        worker = threading.Thread(target=ask, name="pip-gpu-freshness", daemon=True)
        worker.start()
        worker.join(timeout_s)
    if "error" in outcome or "releases" not in outcome:  # failed, or still waiting: no answer
        problem = str(
            outcome.get("error")
            or f"{redact_url(append_path(pytorch_index, primary))} did not answer within {timeout_s:g} s"
        )
        _remember_failure(marker, problem)
        return Freshness((), False, problem)
    found = [*outcome["releases"], *outcome.get("extra", ())]  # type: ignore[misc]  # extras still out: left
    return Freshness(_merge(found), True)


def _recent_failure(marker: Path) -> Optional[str]:
    """Why the index did not answer, when it failed less than UNREACHABLE_TTL_S ago."""
    try:
        if time.time() - marker.stat().st_mtime < UNREACHABLE_TTL_S:
            return marker.read_text(encoding="utf-8").strip() or "did not answer recently"
    except OSError:
        pass
    return None


def _remember_failure(marker: Path, problem: str) -> None:
    """The index failed: it is not asked again for UNREACHABLE_TTL_S (best effort)."""
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(problem, encoding="utf-8")
    except OSError:
        pass


def index_serves(
    pytorch_index: str,
    variant: str,
    series: str,
    platform: str,
    *,
    timeout_s: float = FRESHNESS_TIMEOUT_S,
    fetch: Optional[Fetch] = None,
    cache_dir: Optional[Path] = None,
) -> tuple[Optional[bool], str]:
    """Whether the variant index serves torch ``series`` for ``platform``, read (and cached) as
    the freshness look-up reads it; ``(None, why)`` when it does not answer."""
    marker = _cache_path(pytorch_index, variant, cache_dir).with_suffix(".unreachable")
    recent = _recent_failure(marker)
    if recent is not None:
        return None, recent
    if fetch is None:
        from .index import fetch_project_files

        fetch = partial(fetch_project_files, timeout=timeout_s)
    try:
        summary = _summary(pytorch_index, variant, fetch, cache_dir)
    except PipGpuError as error:  # the index module's IndexError_, without importing it here
        _remember_failure(marker, error.message)
        return None, error.message
    return platform in summary.get(series, {}).get("platforms", []), ""


def _merge(releases: Iterable[Release]) -> tuple[Release, ...]:
    """One release per series: builds and versions seen on several variant indexes together."""
    merged: dict[str, Release] = {}
    for release in releases:
        seen = merged.get(release.torch)
        if seen is None:
            merged[release.torch] = release
            continue
        builds = {(b.variant, b.platform): b for b in (*seen.builds, *release.builds)}
        merged[release.torch] = replace(
            seen,
            versions=tuple(sorted({*seen.versions, *release.versions}, key=Version)),
            python=tuple(sorted({*seen.python, *release.python}, key=_python_key)),
            builds=tuple(builds.values()),
        )
    return tuple(sorted(merged.values(), key=lambda r: r.version, reverse=True))


class Offers(NamedTuple):
    """What the variant indexes read serve (see :class:`~.rules.Offer`); ``problem`` says why a
    variant could not be read (the index did not answer: decide from the knowledge file)."""

    offers: dict[Variant, Offer]
    problem: str = ""
    unreachable: str = ""  # the variant index that did not answer


def read_offers(
    pytorch_index: str,
    variants: Iterable[Variant],
    members: Iterable[str] = (),
    *,
    timeout_s: float = FRESHNESS_TIMEOUT_S,
    fetch: Optional[Fetch] = None,
    cache_dir: Optional[Path] = None,
) -> Offers:
    """Read what each variant index serves of torch and of the pinned ``members``.

    Each page is cached for hours like the freshness look-up; an index that does not answer
    is not asked again for a quarter of an hour (the same marker), and the reading stops there.
    """
    from .rules import Offer

    if fetch is None:
        fetch = partial(_fetch_within, timeout_s)  # the HTTP client only when a page is not cached
    found: dict[Variant, Offer] = {}
    wanted = tuple(dict.fromkeys(members))
    for variant in dict.fromkeys(variants):
        url = append_path(pytorch_index, variant)
        marker = _cache_path(pytorch_index, variant, cache_dir).with_suffix(".unreachable")
        recent = _recent_failure(marker)
        if recent is not None:
            return Offers(found, recent, url)
        try:
            torch = _summary(pytorch_index, variant, fetch, cache_dir)
            served = (
                {
                    name: tuple(
                        v
                        for info in _summary(pytorch_index, variant, fetch, cache_dir, project=name).values()
                        for v in info["versions"]
                    )
                    for name in wanted
                }
                if torch
                else {}
            )
        except PipGpuError as error:  # the index module's IndexError_, without importing it here
            _remember_failure(marker, error.message)
            return Offers(found, error.message, url)
        found[variant] = Offer(
            url=redact_url(url),
            torch={k: (tuple(v["versions"]), tuple(v["platforms"])) for k, v in torch.items()},
            members=served,
        )
    return Offers(found)


def _fetch_within(timeout_s: float, url: str) -> list[IndexFile]:
    from .index import fetch_project_files

    return fetch_project_files(url, timeout=timeout_s)


def missing_torch_file(
    variant_index: str, torch: str, platform: str, python: str, *, fetch: Optional[Fetch] = None
) -> Optional[str]:
    """After an installer failed: why the variant index has no torch file for this target, read
    afresh (not from the cache); None when it has one, or cannot be read.

    ``torch`` is a version (``2.5.1``) or a series (``2.5``).
    """
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    if fetch is None:
        from .index import fetch_project_files

        fetch = fetch_project_files
    try:
        files = fetch(append_path(variant_index, "torch", ""))
    except PipGpuError:
        return None  # the unreachable index is said elsewhere
    where = redact_url(variant_index)
    wanted = Version(torch)
    exact = len(torch.split(".")) > 2
    release: list[str] = []
    for file in files:
        try:
            _, version, _, tags = parse_wheel_filename(file.filename)
        except InvalidWheelFilename:
            continue
        public = Version(version.public)
        same = public == wanted if exact else (public.major, public.minor) == (wanted.major, wanted.minor)
        if not same:
            continue
        release.append(str(version))
        pythons = _pythons(tags, file.requires_python)
        pure = python.endswith("t") and any(t.abi == "none" for t in tags) and python[:-1] in pythons
        if platform in platforms_of(tags) and (python in pythons or pure):
            return None
    if not release:
        return f"{where} has no torch {torch} file"
    return f"{where} has torch {torch} ({len(release)} files) but none for Python {python} on {platform}"


def merge_releases(releases: Iterable[Release]) -> tuple[Release, ...]:
    """One release per series, newest first: what several variant indexes (a channel's) serve."""
    return _merge(releases)
