"""A uv project's ``uv.lock``: which torch it locks, whether that build runs here, and what
``uv sync`` installs from it for this host.

The shim's guard (``pip_gpu.shim.uv_guard``) asks these questions before uv changes anything;
``pip-gpu check`` and ``doctor`` compare an environment with the answer. Only the project's
files are read (``pyproject.toml``, ``uv.lock``), as TOML.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from .errors import UsageError

if TYPE_CHECKING:
    from .detect.target import Installed
    from .host import HostProfile
    from .knowledge import Knowledge, Release

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = [
    "LockedTorch",
    "PypiVerdict",
    "UvProjectCheck",
    "check_lock_offers",
    "check_uv_project",
    "lock_is_current",
    "locked_extras",
    "names_in_lock",
    "pypi_build_verdict",
    "pypi_default_variant",
    "read_toml",
    "requirement_name",
    "torch_in_lock",
    "uv_lock_selection",
]


@dataclass(frozen=True)
class LockedTorch:
    """A torch the project gets: its version as locked or resolved, and where that was read."""

    version: str
    where: str  # "uv.lock" or "uv's resolution"


@dataclass(frozen=True)
class PypiVerdict:
    """Whether a torch build runs here: ``runs`` is None when pip-gpu cannot tell."""

    runs: Optional[bool]
    build: str  # "torch 2.11.0 (PyPI's cu130 build, CUDA 13.0)"
    reason: str


# --- reading the project -----------------------------------------------------------------------


def read_toml(path: Path) -> Optional[dict[str, Any]]:
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data


def _canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


def requirement_name(text: str) -> Optional[str]:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return _canonical(Requirement(text).name)
    except InvalidRequirement:
        return None


def _root_package(lock: Mapping[str, Any]) -> Optional[Mapping[str, Any]]:
    for package in lock.get("package", []):
        source = package.get("source", {})
        if source.get("virtual") == "." or source.get("editable") == ".":
            return dict(package)
    return None


def locked_extras(lock: Mapping[str, Any]) -> list[str]:
    """The extras ``uv.lock`` records for the project itself."""
    root = _root_package(lock)
    if root is None:
        return []
    provided = root.get("metadata", {}).get("provides-extras")
    if provided is not None:
        return [str(e) for e in provided]
    return [str(e) for e in root.get("optional-dependencies", {})]


def lock_is_current(lock: Mapping[str, Any], project: Mapping[str, Any]) -> bool:
    """Whether the lock was made from these dependencies (every name the project asks for)."""
    root = _root_package(lock)
    if root is None:
        return False
    locked = {_canonical(str(r.get("name", ""))) for r in root.get("metadata", {}).get("requires-dist", [])}
    wanted = {requirement_name(str(d)) for d in project.get("project", {}).get("dependencies", [])}
    return {n for n in wanted if n} <= locked


def _wheel_fits(filename: str, host: HostProfile) -> bool:
    platform = filename[: -len(".whl")].rsplit("-", 1)[-1] if filename.endswith(".whl") else "any"
    if platform == "any":
        return True
    if host.os == "linux":
        return "linux" in platform and host.arch in platform
    if host.os == "windows":
        return platform.startswith("win")
    return platform.startswith("macosx")


def torch_in_lock(lock: Mapping[str, Any], host: HostProfile) -> list[LockedTorch]:
    """Every torch ``uv.lock`` records with a wheel for this host's platform."""
    found = []
    for package in lock.get("package", []):
        if _canonical(str(package.get("name", ""))) != "torch":
            continue
        names = [str(w.get("url", "")).rsplit("/", 1)[-1] for w in package.get("wheels", [])]
        if names and not any(_wheel_fits(n, host) for n in names):
            continue
        found.append(LockedTorch(str(package.get("version", "")), "uv.lock"))
    return found


def names_in_lock(lock: Mapping[str, Any]) -> list[str]:
    return [_canonical(str(p.get("name", ""))) for p in lock.get("package", [])]


# --- the decision ------------------------------------------------------------------------------


def pypi_default_variant(release: Release, platform: str) -> Optional[str]:
    """The build PyPI serves for ``platform``, from the knowledge file's ``pypi_default``.

    ``pypi_default`` names the Linux x86_64 build (or maps platforms to builds); PyPI's
    Windows wheels are CPU-only; anything else pip-gpu does not know.
    """
    value: Any = release.pypi_default
    if isinstance(value, Mapping):
        found = value.get(platform)
        return str(found) if found else None
    if platform == "linux-x86_64":
        return str(value) if value else None
    if platform.startswith("windows"):
        return "cpu"
    return None


def _is_cpu(variant: str) -> bool:
    from .variant import Variant

    parsed = Variant.from_label(variant)
    return parsed is not None and parsed.kind == "cpu"


def pypi_build_verdict(version: str, host: HostProfile, knowledge: Knowledge) -> PypiVerdict:
    """Whether the locked torch ``version`` (PyPI's build unless it carries a label) runs here."""
    from packaging.version import InvalidVersion, Version

    from .decide.rules import build_runs_on
    from .knowledge import Build
    from .variant import CPU

    try:
        parsed = Version(version)
    except InvalidVersion:
        return PypiVerdict(None, f"torch {version}", "not a version pip-gpu reads")
    series = f"{parsed.major}.{parsed.minor}"
    release = knowledge.release(series)
    beyond = False
    if release is None:
        if not knowledge.releases or parsed < knowledge.releases[0].version:
            return PypiVerdict(None, f"torch {version}", f"torch {series} is not in pip-gpu's knowledge")
        # Newer than anything known: PyPI's default CUDA only ever moves forward, so the
        # newest known default is the least this build needs.
        release, beyond = knowledge.releases[0], True
    if host.os == "macos":
        return PypiVerdict(True, f"torch {version}", "PyPI's macOS wheels are the build")
    variant = parsed.local or pypi_default_variant(release, host.platform_tag)
    origin = f"torch {version}" if parsed.local else f"torch {version} (PyPI's {variant} build)"
    if variant is None:
        return PypiVerdict(None, f"torch {version}", f"PyPI's build for {host.platform_tag} is not known")
    build = next((b for b in release.builds if (b.variant, b.platform) == (variant, host.platform_tag)), None)
    if build is None and _is_cpu(variant):
        build = Build(CPU, host.platform_tag, None, None, None, "high", "")
    if build is None:
        return PypiVerdict(None, origin, f"pip-gpu knows no {variant} build of torch {series}")
    ok, why = build_runs_on(build, host, knowledge)
    if ok and build.cuda is None and host.nvidia_gpus:
        ok, why = False, "it is CPU-only and this host has an NVIDIA GPU"
    if beyond:
        if ok:
            return PypiVerdict(None, origin, f"torch {series} is newer than pip-gpu's knowledge")
        why = f"it needs at least what torch {release.torch}'s does: {why}"
    return PypiVerdict(ok, origin, why)


def check_lock_offers(project: Path, variant: str, frozen: bool) -> None:
    """With ``--frozen``, uv uses ``uv.lock`` as it is: it must record this host's variant."""
    if not frozen:
        return  # uv locks again when pyproject.toml changed
    lock = read_toml(project / "uv.lock")
    if lock is None:
        return
    extras = locked_extras(lock)
    if extras and variant not in extras:
        raise UsageError(
            f"this host runs the {variant} build, and {project / 'uv.lock'} records {', '.join(extras)}",
            "record it: uv lock (pyproject.toml already offers it)",
        )


# --- pip-gpu check / doctor in a uv project ----------------------------------------------------


def _marker_holds(marker: Optional[str], env: Mapping[str, str], extras: Sequence[str]) -> bool:
    if not marker:
        return True
    from packaging.markers import InvalidMarker, Marker

    try:
        parsed = Marker(marker)
    except InvalidMarker:
        return True  # uv's own marker forms: keep the package rather than miss it
    return any(parsed.evaluate({**env, "extra": extra}) for extra in (*extras, ""))


def uv_lock_selection(
    lock: Mapping[str, Any], variant: Optional[str], env: Mapping[str, str]
) -> dict[str, str]:
    """``{name: version}`` that ``uv sync [--extra variant]`` installs from ``uv.lock`` for ``env``.

    The walk starts at the project's own entry (its dependencies, the variant's extra and the
    ``dev`` group uv syncs by default) and follows each package's dependencies; where a name
    is locked more than once (one torch per variant) the dependency's version and source say
    which.
    """
    root = _root_package(lock)
    if root is None:
        return {}
    root_name = _canonical(str(root.get("name", "")))
    # uv spells conflicting extras in markers as ``extra-<len>-<project>-<extra>``.
    extras = [variant, f"extra-{len(root_name)}-{root_name}-{variant}"] if variant else []
    by_name: dict[str, list[Mapping[str, Any]]] = {}
    for package in lock.get("package", []):
        by_name.setdefault(_canonical(str(package.get("name", ""))), []).append(package)
    queue: list[Mapping[str, Any]] = [
        *root.get("dependencies", []),
        *(root.get("optional-dependencies", {}).get(variant, []) if variant else []),
        *root.get("dev-dependencies", {}).get("dev", []),
    ]
    chosen: dict[str, str] = {}
    seen: set[tuple[str, str, str]] = set()
    while queue:
        dependency = queue.pop()
        if not _marker_holds(dependency.get("marker"), env, extras):
            continue
        name = _canonical(str(dependency.get("name", "")))
        candidates = [
            p
            for p in by_name.get(name, [])
            if dependency.get("version") in (None, p.get("version"))
            and dependency.get("source") in (None, p.get("source"))
        ]
        if not candidates:
            continue
        package = candidates[0]
        version = str(package.get("version", ""))
        chosen[name] = version
        for extra in ["", *dependency.get("extra", [])]:
            if (name, version, extra) in seen:
                continue
            seen.add((name, version, extra))
            queue += (
                package.get("optional-dependencies", {}).get(extra, [])
                if extra
                else package.get("dependencies", [])
            )
    chosen.pop(root_name, None)
    return chosen


@dataclass(frozen=True)
class UvProjectCheck:
    """The environment against ``uv.lock`` for this host's extra (None: a project not set up)."""

    variant: Optional[str]
    problems: tuple[str, ...]
    fix: str
    installed: dict[str, str]  # the torch family in the environment


def check_uv_project(directory: Path, installed: Installed, host: HostProfile) -> UvProjectCheck:
    """Compare the environment (``installed``) with ``uv.lock``'s packages for this host's extra.

    In a set-up project the host's extra is decided as ``uv sync`` through the shim decides it;
    in one that is not, the locked torch must also be a build that runs here.
    """
    from packaging.version import InvalidVersion, Version

    from .knowledge import load_knowledge
    from .uv_project import host_variant, project_variants

    lock = read_toml(directory / "uv.lock")
    if lock is None:
        raise UsageError(f"cannot read {directory / 'uv.lock'}", "run uv lock")
    variants = project_variants(read_toml(directory / "pyproject.toml") or {})
    variant = host_variant(variants, directory) if variants else None
    wanted = uv_lock_selection(lock, variant, installed.markers)
    knowledge = load_knowledge()
    family = {_canonical(m.name) for m in knowledge.family}
    problems: list[str] = []
    if variant is not None and variant not in locked_extras(lock):
        problems.append(f"uv.lock has no {variant} extra; run uv lock")
    if variant is None:
        for torch in torch_in_lock(lock, host):
            verdict = pypi_build_verdict(torch.version, host, knowledge)
            if verdict.runs is False:
                problems.append(f"uv.lock locks {verdict.build}, which cannot run here: {verdict.reason}")
    this = f"uv.lock for this host{f' (extra {variant})' if variant else ''}"
    for name in sorted(set(wanted) | {n for n in installed.dists if n in family}):
        want, got = wanted.get(name), installed.dists.get(name)
        if got is None:
            problems.append(f"{name} {want} is not installed; {this} wants it")
        elif want is None:
            problems.append(f"{name} {got} is installed, but {this} does not list it")
        else:
            try:
                same = Version(want) == Version(got)
            except InvalidVersion:
                same = want == got
            if not same:
                problems.append(f"{name} {got} is installed; {this} wants {want}")
    fix = f"uv sync --extra {variant}" if variant else "uv sync"
    if variant is None and any("cannot run here" in p for p in problems):
        fix = "pip-gpu uv setup, then uv sync (with the shims)"
    held = {n: v for n, v in sorted(installed.dists.items()) if n in family}
    return UvProjectCheck(variant, tuple(problems), fix, held)
