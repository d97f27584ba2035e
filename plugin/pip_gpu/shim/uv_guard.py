"""uv project commands through the shim: no build that cannot run here is ever locked or started.

``pip-gpu uv setup`` prepares a project (see ``uv_project``); this module covers the rest of a
project's life through the shim:

* ``uv add <torch-family package>`` writes the PyTorch configuration first (in a project not
  set up yet), or adds the package to every variant's extra (in one that is), and then lets uv
  lock and install this host's extra.
* ``uv lock`` / ``uv sync`` / ``uv run`` in a project that is *not* set up read which torch
  the project gets (``uv.lock`` when it is current, else a resolution by uv) and ask whether
  PyPI's build of it runs on this host, by the same rules as every decision (driver,
  architecture, platform). If it runs, uv runs untouched; if not, the command stops before uv
  changes anything, with one line naming the build, the blocking fact and the fix (or, with
  ``PIP_GPU_AUTO_SETUP=1``, the shim sets the project up and goes on).

Only the project's files (``pyproject.toml``, ``uv.lock``) and uv's command line are read.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from ..errors import UsageError

if TYPE_CHECKING:
    from ..decide.plan import Plan
    from ..host import HostProfile
    from ..knowledge import Knowledge, Release
    from .run import Parsed

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = [
    "LockedTorch",
    "PypiVerdict",
    "UvProjectCheck",
    "check_uv_project",
    "locked_extras",
    "missing_variant_error",
    "pypi_build_verdict",
    "pypi_default_variant",
    "torch_in_lock",
    "uv_lock_selection",
    "uv_project_guard",
]

EXIT_STOPPED = 2  # nothing was changed (errors.EXIT_NO_BUILD)
_TRUTHY = ("1", "true", "yes", "on")
_FIX = "run `pip-gpu uv setup` (or set PIP_GPU_AUTO_SETUP=1 to let the shim do it)"
# Options of ``uv add`` that the family path forwards to the uv commands it runs afterwards.
_ADD_FORWARDED = frozenset(
    ["-q", "--quiet", "-v", "--verbose", "--python", "-p", "--offline", "--cache-dir", "--no-cache"]
)
# Options of ``uv add`` that would put the family somewhere the recipe does not manage.
_ADD_REFUSED = frozenset(
    [
        "--optional",
        "--dev",
        "--group",
        "--script",
        "--editable",
        "-e",
        "--index",
        "--default-index",
        "--index-url",
        "-i",
        "--extra-index-url",
        "--requirements",
        "-r",
        "--package",
    ]
)


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


def _read_toml(path: Path) -> Optional[dict[str, Any]]:
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data


def _canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


def _requirement_name(text: str) -> Optional[str]:
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


def _lock_is_current(lock: Mapping[str, Any], project: Mapping[str, Any]) -> bool:
    """Whether the lock was made from these dependencies (every name the project asks for)."""
    root = _root_package(lock)
    if root is None:
        return False
    locked = {_canonical(str(r.get("name", ""))) for r in root.get("metadata", {}).get("requires-dist", [])}
    wanted = {_requirement_name(str(d)) for d in project.get("project", {}).get("dependencies", [])}
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


def _family_in_lock(lock: Mapping[str, Any]) -> list[str]:
    return [_canonical(str(p.get("name", ""))) for p in lock.get("package", [])]


def _resolve(
    real: str, pyproject: Path, parsed: Parsed, adding: Sequence[str] = ()
) -> Optional[list[tuple[str, str]]]:
    """``(name, version)`` of everything the project's dependencies (and ``adding``) resolve to.

    uv resolves them itself (``uv pip compile``), writing nothing.
    """
    source, given = str(pyproject), None
    if adding:
        data = _read_toml(pyproject) or {}
        direct = [str(d) for d in data.get("project", {}).get("dependencies", [])]
        source, given = "-", "\n".join([*direct, *adding]) + "\n"
    command = [real, "pip", "compile", source, "--no-header", "--no-annotate", "--quiet"]
    for python in parsed.values("--python", "-p")[-1:]:
        command += ["--python", python]
    try:
        done = subprocess.run(
            command,
            input=given,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
            cwd=pyproject.parent,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None  # uv reports what is wrong with the project when it runs the command itself
    pins = []
    for line in done.stdout.splitlines():
        name, sep, version = line.split(";")[0].strip().partition("==")
        if sep:
            pins.append((_canonical(name), version.strip()))
    return pins


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


def pypi_build_verdict(version: str, host: HostProfile, knowledge: Knowledge) -> PypiVerdict:
    """Whether the locked torch ``version`` (PyPI's build unless it carries a label) runs here."""
    from packaging.version import InvalidVersion, Version

    from ..decide.rules import build_runs_on
    from ..knowledge import Build
    from ..variant import CPU

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
    if build is None and variant == "cpu":
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


# --- the shim's entry point --------------------------------------------------------------------


def uv_project_guard(real: str, args: list[str], at: int, parsed: Parsed) -> Optional[Callable[[], int]]:
    """``uv add|lock|sync|run`` (``args[at]``) in a project: None lets uv run unchanged."""
    from ..uv_project import _project_file, project_variants

    command = args[at]
    if parsed.has("--help", "-h", "--no-project", "--script", "--version", "-V"):
        return None
    if command == "run" and parsed.has("--no-sync"):
        return None  # nothing is installed: uv runs what the environment already has
    path = _project_file(parsed)
    if path is None:
        return None
    data = _read_toml(path)
    if data is None:
        return None  # uv reports a broken pyproject.toml in its own words
    variants = project_variants(data)
    if command == "add":
        return _add(real, args, at, parsed, path, data, variants)
    if variants:
        return None  # set up: uv_project adds this host's extra to sync/run; lock records all
    return _guard_not_set_up(real, args, at, parsed, path, data)


def _host() -> HostProfile:
    from ..detect import host_for

    return host_for()


def _guard_not_set_up(
    real: str,
    args: list[str],
    at: int,
    parsed: Parsed,
    path: Path,
    data: Mapping[str, Any],
    adding: Sequence[str] = (),
) -> Optional[Callable[[], int]]:
    """``adding``: what ``uv add`` would add, resolved with the project's dependencies first."""
    from ..knowledge import load_knowledge

    knowledge = load_knowledge()
    family = {_canonical(m.name) for m in knowledge.family}
    direct = [str(d) for d in data.get("project", {}).get("dependencies", [])]
    lock = _read_toml(path.parent / "uv.lock") if (path.parent / "uv.lock").is_file() else None
    if not adding and lock is not None and (_lock_is_current(lock, data) or parsed.has("--frozen")):
        if "torch" not in _family_in_lock(lock):
            return None  # no torch: the host need not even be detected
        host = _host()
        torches = torch_in_lock(lock, host)
        names = _family_in_lock(lock)
    else:
        if not direct and not adding:
            return None  # nothing to resolve: no torch can come in
        pins = _resolve(real, path, parsed, adding)
        if pins is None:
            return None
        torches = [LockedTorch(v, "uv's resolution") for n, v in pins if n == "torch"]
        names = [n for n, _ in pins]
        if not torches:
            return None
        host = _host()
    quiet = parsed.has("-q", "--quiet")
    for torch in torches:
        verdict = pypi_build_verdict(torch.version, host, knowledge)
        if verdict.runs:
            continue
        if verdict.runs is None:
            if not quiet:
                print(
                    f"pip-gpu: cannot tell whether {verdict.build} from {torch.where} runs here "
                    f"({verdict.reason}); uv goes on",
                    file=sys.stderr,
                )
            continue
        if os.environ.get("PIP_GPU_AUTO_SETUP", "").lower() in _TRUTHY:
            members = [n for n in dict.fromkeys(names) if n in family and _has_label(n, knowledge)]
            requirements = _family_texts(direct, family) or members
            requirements += [n for n in members if n not in {_requirement_name(r) for r in requirements}]
            _setup(path, requirements, data, host, why="PIP_GPU_AUTO_SETUP=1")
            return _continue_set_up(real, args, at, parsed, path)
        where = "locks" if torch.where == "uv.lock" else "would get" if adding else "resolves to"
        print(
            f"pip-gpu: uv {args[at]} stopped: {path.parent.name} {where} {verdict.build}, which cannot run "
            f"here: {verdict.reason}; {_FIX}",
            file=sys.stderr,
        )
        return lambda: EXIT_STOPPED
    return None


def _has_label(name: str, knowledge: Knowledge) -> bool:
    member = knowledge.family_member(name)
    return member is not None and member.local_label


def _family_texts(requirements: Sequence[str], family: set[str]) -> list[str]:
    return [r for r in requirements if _requirement_name(r) in family]


def _continue_set_up(
    real: str, args: list[str], at: int, parsed: Parsed, path: Path
) -> Optional[Callable[[], int]]:
    """The command as it runs in a set-up project: sync and run get this host's extra."""
    from ..installers import exec_replacing
    from ..uv_project import uv_project_command

    if args[at] == "add" and not parsed.has("--no-sync"):
        return lambda: _then_sync(real, args[:at], [*args[at:], "--no-sync"], path, parsed, [])
    if args[at] in ("run", "sync"):
        action = uv_project_command(real, args, at, parsed)
        if action is not None:
            return action
    return lambda: exec_replacing(real, args)


def _configured_variants(data: Mapping[str, Any]) -> list[str]:
    from_env = os.environ.get("PIP_GPU_VARIANTS", "")
    if from_env.strip():
        return [v.strip() for v in from_env.split(",") if v.strip()]
    table = data.get("tool", {}).get("pip-gpu", {})
    return [str(v) for v in table.get("variants", [])]


def _setup(
    path: Path,
    requirements: Sequence[str],
    data: Mapping[str, Any],
    host: HostProfile,
    *,
    why: str,
    variants: Optional[Sequence[str]] = None,
) -> list[str]:
    """What ``pip-gpu uv setup`` writes, said in one line; the variants written."""
    from ..decide.plan import decide_for
    from ..uv_project import _no_host_flags, cmd_uv_setup, project_variants

    if variants is None:
        configured = _configured_variants(data)
        if configured:
            plan = decide_for(list(requirements), [], host, cwd=path.parent)
            own = [str(plan.decision.variant)] if plan.decision.ok else []
            variants = list(dict.fromkeys([*own, *configured]))
    namespace = _no_host_flags()  # the host is this machine, detected
    namespace.requirements = list(requirements)
    namespace.variants = ",".join(variants) if variants else None
    namespace.project = str(path.parent)
    namespace.pytorch_index = None
    namespace.dry_run = False
    with contextlib.redirect_stdout(io.StringIO()):
        cmd_uv_setup(namespace)
    written = list(project_variants(_read_toml(path) or {}))
    print(
        f"pip-gpu: {why}: wrote uv's PyTorch configuration into {path} (extras and indexes "
        f"{', '.join(written)} for {', '.join(requirements)})",
        file=sys.stderr,
    )
    return written


# --- uv add ------------------------------------------------------------------------------------


def _add(
    real: str,
    args: list[str],
    at: int,
    parsed: Parsed,
    path: Path,
    data: Mapping[str, Any],
    variants: Mapping[str, Sequence[str]],
) -> Optional[Callable[[], int]]:
    from ..installers import exec_replacing
    from ..knowledge import load_knowledge
    from .run import _Refused

    family = {_canonical(m.name) for m in load_knowledge().family}
    named = [p for p in parsed.positionals if _requirement_name(p) in family]
    others = [p for p in parsed.positionals if p not in named]
    no_sync = parsed.has("--no-sync")
    frozen = parsed.has("--frozen")
    prefix = args[:at]
    if not named:
        if not variants and not frozen:
            # What is added may need torch (a library built on it): resolve before uv adds it.
            return _guard_not_set_up(real, args, at, parsed, path, data, adding=others)
        if not variants or no_sync or frozen:
            return None
        # A set-up project: uv add would sync without the extra and so remove torch; add,
        # then sync this host's extra.
        return lambda: _then_sync(real, prefix, [*args[at:], "--no-sync"], path, parsed, [])
    refused = [name for name, _ in parsed.options if name in _ADD_REFUSED]
    if refused:
        raise _Refused(f"`uv add {refused[0]}` with the torch family is not routed by the shim yet")
    forwarded = [
        (name if value is None else f"{name}={value}")
        for name, value in parsed.options
        if name in _ADD_FORWARDED
    ]
    unknown = [
        name
        for name, _ in parsed.options
        if name not in _ADD_FORWARDED and name not in ("--no-sync", "--frozen")
    ]
    if unknown:
        raise _Refused(f"`uv add {unknown[0]}` with the torch family is not routed by the shim yet")
    if variants:
        existing = list(next(iter(variants.values())))
        order = [str(v) for v in data.get("tool", {}).get("pip-gpu", {}).get("variants", [])] or list(
            variants
        )
        why, chosen = "uv add", [v for v in order if v in variants]
    else:
        existing = _family_texts([str(d) for d in data.get("project", {}).get("dependencies", [])], family)
        why, chosen = "uv add in a project not set up for PyTorch", None
    host = _host()
    if not variants and host.os == "macos":
        return None  # PyPI's macOS wheels are the build: nothing to route
    new_names = {_requirement_name(t) for t in named}
    merged = [t for t in existing if _requirement_name(t) not in new_names] + named
    _setup(path, merged, data, host, why=why, variants=chosen)
    if frozen:
        return lambda: 0  # uv add --frozen neither locks nor installs
    add_others = (
        [*args[at : at + 1], *[o for o in args[at + 1 :] if o not in named], "--no-sync"] if others else []
    )
    if no_sync:
        if add_others:
            return lambda: _run_then(real, [*prefix, *add_others], [*prefix, "lock", *forwarded])
        return lambda: exec_replacing(real, [*prefix, "lock", *forwarded])
    return lambda: _then_sync(real, prefix, add_others, path, parsed, forwarded)


def _run_then(real: str, first: Sequence[str], then: Sequence[str]) -> int:
    from ..installers import exec_replacing

    status = subprocess.run([real, *first], check=False).returncode
    if status != 0:
        return status
    exec_replacing(real, then)


def _then_sync(
    real: str,
    prefix: Sequence[str],
    first: Sequence[str],
    path: Path,
    parsed: Parsed,
    forwarded: Sequence[str],
) -> int:
    """Run ``first`` (a ``uv add --no-sync``) if any, then ``uv sync --extra <this host's>``."""
    from ..installers import exec_replacing
    from ..uv_project import host_variant, project_variants

    if first:
        status = subprocess.run([real, *prefix, *first], check=False).returncode
        if status != 0:
            return status
    variants = project_variants(_read_toml(path) or {})
    variant = host_variant(variants, path.parent)
    if not parsed.has("-q", "--quiet"):
        print(f"pip-gpu: this host runs the {variant} build: uv sync --extra {variant}", file=sys.stderr)
    exec_replacing(real, [*prefix, "sync", "--extra", variant, *forwarded])


# --- set-up projects ---------------------------------------------------------------------------


def missing_variant_error(project: Path, variant: str, variants: Sequence[str]) -> UsageError:
    """This host's variant is not among the project's: name the command that adds it."""
    offered = ", ".join(variants)
    lock = project / "uv.lock"
    where = "pyproject.toml and uv.lock offer" if lock.is_file() else "pyproject.toml offers"
    return UsageError(
        f"this host runs the {variant} build, and {project}'s {where} {offered}",
        f"add it: pip-gpu uv setup --variants {','.join([*variants, variant])}, then uv lock",
    )


def variant_outside_project(plan: Plan, host: HostProfile, project: Path, variants: Sequence[str]) -> None:
    """No offered variant runs here: name the one that would, if any (the project's policy aside)."""
    from packaging.requirements import Requirement

    from ..decide.rules import decide, request_from_requirements

    family = [line.requirement for line in plan.family_lines() if line.requirement is not None]
    request = request_from_requirements(family or [Requirement("torch")], plan.knowledge)
    free = decide(request, host, plan.knowledge, pytorch_index=plan.pytorch_index)
    if free.ok and free.variant is not None and free.variant not in variants:
        raise missing_variant_error(project, free.variant, variants)


def check_lock_offers(project: Path, variant: str, frozen: bool) -> None:
    """With ``--frozen``, uv uses ``uv.lock`` as it is: it must record this host's variant."""
    if not frozen:
        return  # uv locks again when pyproject.toml changed
    lock = _read_toml(project / "uv.lock")
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


def check_uv_project(directory: Path, python: Path, host: HostProfile) -> UvProjectCheck:
    """Compare the environment with ``uv.lock``'s packages for this host's extra.

    In a set-up project the host's extra is decided as ``uv sync`` through the shim decides it;
    in one that is not, the locked torch must also be a build that runs here.
    """
    from packaging.version import InvalidVersion, Version

    from ..knowledge import load_knowledge
    from ..lock.resolve import _probe_installed
    from ..uv_project import host_variant, project_variants

    lock = _read_toml(directory / "uv.lock")
    if lock is None:
        raise UsageError(f"cannot read {directory / 'uv.lock'}", "run uv lock")
    variants = project_variants(_read_toml(directory / "pyproject.toml") or {})
    variant = host_variant(variants, directory) if variants else None
    installed = _probe_installed(python)
    wanted = uv_lock_selection(lock, variant, installed.env)
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
