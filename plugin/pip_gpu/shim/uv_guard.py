"""uv project commands through the shim: no build that cannot run here is ever locked or started.

``pip-gpu uv setup`` prepares a project (see ``uv_project``); this module covers the rest of a
project's life through the shim:

* ``uv sync`` / ``uv run`` in a set-up project get ``--extra <the variant this host runs>``.
* ``uv add <torch-family package>`` writes the PyTorch configuration first (in a project not
  set up yet), or adds the package to every variant's extra (in one that is), and then lets uv
  lock and install this host's extra.
* ``uv lock`` / ``uv sync`` / ``uv run`` in a project that is *not* set up read which torch
  the project gets (``uv.lock`` when it is current, else a resolution by uv) and ask whether
  PyPI's build of it runs on this host, by the same rules as every decision (driver,
  architecture, platform). If it runs, uv runs untouched; if not, the command stops before uv
  changes anything, with one line naming the build, the blocking fact and the fix (or, with
  ``PIP_GPU_AUTO_SETUP=1``, the shim sets the project up and goes on).

Only the project's files (``pyproject.toml``, ``uv.lock``, read by ``uv_lock``) and uv's
command line are read.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from ..uv_lock import (
    LockedTorch,
    check_lock_offers,
    lock_is_current,
    names_in_lock,
    pypi_build_verdict,
    read_toml,
    requirement_name,
    torch_in_lock,
)
from .options import Action, Parsed, Refused

if TYPE_CHECKING:
    from ..host import HostProfile
    from ..knowledge import Knowledge

__all__ = ["uv_project_action", "uv_project_guard"]

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


def _canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


def _resolve(
    real: str, pyproject: Path, parsed: Parsed, adding: Sequence[str] = ()
) -> Optional[list[tuple[str, str]]]:
    """``(name, version)`` of everything the project's dependencies (and ``adding``) resolve to.

    uv resolves them itself (``uv pip compile``), writing nothing.
    """
    source, given = str(pyproject), None
    if adding:
        data = read_toml(pyproject) or {}
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


# --- the shim's entry point --------------------------------------------------------------------


def uv_project_action(real: str, args: list[str], at: int, parsed: Parsed) -> Action:
    """``uv add|lock|sync|run`` (``args[at]``) in a project: None lets uv run unchanged."""
    if args[at] in ("run", "sync"):
        action = set_up_project_command(real, args, at, parsed)
        if action is not None:
            return action
    return uv_project_guard(real, args, at, parsed)


def _project(parsed: Parsed) -> Optional[tuple[Path, dict[str, Any]]]:
    """The project's ``pyproject.toml`` and its contents; None where there is none, or uv
    would report a broken one in its own words."""
    from ..config import find_pyproject

    start = (parsed.values("--project") or parsed.values("--directory") or [os.getcwd()])[-1]
    path = find_pyproject(Path(start).absolute())
    data = read_toml(path) if path is not None else None
    return None if path is None or data is None else (path, data)


def set_up_project_command(real: str, args: list[str], at: int, parsed: Parsed) -> Action:
    """For ``uv run`` / ``uv sync`` (``args[at]``) in a set-up project: the same, plus ``--extra``."""
    from ..installers import exec_replacing
    from ..uv_project import host_variant, project_variants

    if parsed.has("--no-project", "--no-sync", "--script", "--all-extras", "--help", "-h"):
        return None
    project = _project(parsed)
    if project is None:
        return None
    path, data = project
    variants = project_variants(data)
    if not variants or set(parsed.values("--extra")) & set(variants):
        return None  # not set up, or the user chose the variant
    variant = host_variant(variants, path.parent)
    check_lock_offers(path.parent, variant, frozen=parsed.has("--frozen"))
    if not parsed.has("-q", "--quiet"):
        print(
            f"pip-gpu: this host runs the {variant} build: uv {args[at]} --extra {variant}", file=sys.stderr
        )
    new_args = [*args[: at + 1], "--extra", variant, *args[at + 1 :]]
    return lambda: exec_replacing(real, new_args)


def uv_project_guard(real: str, args: list[str], at: int, parsed: Parsed) -> Action:
    """``uv add|lock|sync|run`` in a project not set up (or ``uv add`` in any): the guard."""
    from ..uv_project import project_variants

    command = args[at]
    if parsed.has("--help", "-h", "--no-project", "--script", "--version", "-V"):
        return None
    if command == "run" and parsed.has("--no-sync"):
        return None  # nothing is installed: uv runs what the environment already has
    project = _project(parsed)
    if project is None:
        return None
    path, data = project
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
) -> Action:
    """``adding``: what ``uv add`` would add, resolved with the project's dependencies first."""
    from ..knowledge import load_knowledge

    knowledge = load_knowledge()
    family = {_canonical(m.name) for m in knowledge.family}
    direct = [str(d) for d in data.get("project", {}).get("dependencies", [])]
    lock = read_toml(path.parent / "uv.lock") if (path.parent / "uv.lock").is_file() else None
    if not adding and lock is not None and (lock_is_current(lock, data) or parsed.has("--frozen")):
        if "torch" not in names_in_lock(lock):
            return None  # no torch: the host need not even be detected
        host = _host()
        torches = torch_in_lock(lock, host)
        names = names_in_lock(lock)
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
            requirements += [n for n in members if n not in {requirement_name(r) for r in requirements}]
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
    return [r for r in requirements if requirement_name(r) in family]


def _continue_set_up(real: str, args: list[str], at: int, parsed: Parsed, path: Path) -> Action:
    """The command as it runs in a set-up project: sync and run get this host's extra."""
    from ..installers import exec_replacing

    if args[at] == "add" and not parsed.has("--no-sync"):
        return lambda: _then_sync(real, args[:at], [*args[at:], "--no-sync"], path, parsed, [])
    if args[at] in ("run", "sync"):
        action = set_up_project_command(real, args, at, parsed)
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
    from ..uv_project import UvSetupOptions, project_variants, uv_setup

    if variants is None:
        configured = _configured_variants(data)
        if configured:
            plan = decide_for(list(requirements), [], host, cwd=path.parent)
            own = [str(plan.decision.variant)] if plan.decision.ok else []
            variants = list(dict.fromkeys([*own, *configured]))
    # the host is this machine, detected; the step prints nothing
    result = uv_setup(
        UvSetupOptions(
            requirements=tuple(requirements),
            variants=tuple(variants) if variants else None,
            project=path.parent,
        )
    )
    written = list(project_variants(read_toml(path) or {}))
    print(
        f"pip-gpu: {why}: wrote uv's PyTorch configuration into {path} (extras and indexes "
        f"{', '.join(written)} for {', '.join(requirements)})",
        file=sys.stderr,
    )
    for note in result.notes:  # a companion left to the other indexes, say
        print(f"pip-gpu: note: {note}", file=sys.stderr)
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
) -> Action:
    from ..installers import exec_replacing
    from ..knowledge import load_knowledge

    family = {_canonical(m.name) for m in load_knowledge().family}
    named = [p for p in parsed.positionals if requirement_name(p) in family]
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
        raise Refused(f"`uv add {refused[0]}` with the torch family is not routed by the shim yet")
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
        raise Refused(f"`uv add {unknown[0]}` with the torch family is not routed by the shim yet")
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
    new_names = {requirement_name(t) for t in named}
    merged = [t for t in existing if requirement_name(t) not in new_names] + named
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
    variants = project_variants(read_toml(path) or {})
    variant = host_variant(variants, path.parent)
    if not parsed.has("-q", "--quiet"):
        print(f"pip-gpu: this host runs the {variant} build: uv sync --extra {variant}", file=sys.stderr)
    exec_replacing(real, [*prefix, "sync", "--extra", variant, *forwarded])
