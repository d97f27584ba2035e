"""``pip-gpu lock``, ``sync`` and ``check``: the decision written down for a team, and enforced.

* ``lock`` resolves the whole environment once per variant with uv (``uv pip compile --format
  pylock.toml``), routed as ``pip-gpu install`` routes (the torch family from the variant index
  only, ``--index-strategy first-index``), for the target Python and platform, and writes one
  standard PEP 751 file per variant through :mod:`pip_gpu.lockfile`.
* ``sync`` picks the locked variant this host runs, by the same rules as ``install``
  restricted to the locked variants, installs exactly that file with hash checking, removes
  what it does not list, and records what it installed in the environment.
* ``check`` says, in words, how the environment differs from the lock this host should use.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

from packaging import tags
from packaging.pylock import Package, PackageWheel
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from . import __version__
from .config import load_project_config
from .decide import Decision, Policy, decide, request_from_requirements
from .errors import EXIT_CHECK_FAILED, EXIT_OK, NoBuildRuns, PipGpuError, UsageError
from .host import HostProfile, format_compute_capability
from .knowledge import Knowledge, load_knowledge, variant_sort_key
from .lockfile import (
    LockFile,
    LockInputs,
    LockRecord,
    find_lock_family,
    load_toml,
    lock_document,
    lock_path,
    read_lock,
    render_lock,
    strip_credentials,
    write_atomically,
    write_locks,
)
from .plan import Plan, decide_for, marker_environment, rewrite_pins
from .requirements import read_requirements_file, redact_url, render_line
from .route import InstallerCommand, Routing, uv_command
from .target import TargetEnv, find_target

__all__ = ["add_lock_parsers", "run_check", "run_lock", "run_sync", "write_back_after_install"]

SYNC_RECORD = "pip-gpu-sync.json"
# What `uv pip sync` leaves in place although no lock lists it: the environment's own tools.
_SEED_PACKAGES = frozenset({"pip", "setuptools", "wheel"})
# uv's --python-platform for each platform key of the knowledge file.
_UV_PLATFORMS = {
    "linux-x86_64": "x86_64-unknown-linux-gnu",
    "linux-aarch64": "aarch64-unknown-linux-gnu",
    "windows-x86_64": "x86_64-pc-windows-msvc",
    "windows-aarch64": "aarch64-pc-windows-msvc",
    "macos-arm64": "aarch64-apple-darwin",
    "macos-x86_64": "x86_64-apple-darwin",
}


def add_lock_parsers(
    commands: Any, add_host_flags: Callable[..., None], add_decision_flags: Callable[..., None]
) -> None:
    lock = commands.add_parser(
        "lock",
        help="write PEP 751 lock files, one per torch build (pylock.cu124.toml, pylock.cpu.toml)",
        description=(
            "Resolve the whole environment once per variant, the torch family routed to that "
            "variant's index, and write pylock.<variant>.toml for each into the project folder. "
            "Without requirements, re-lock from the inputs the folder's locks record."
        ),
        epilog=(
            "--variants: auto (this host's build plus the variants already locked here), all "
            "(every build the chosen torch release publishes for the platform), or a list such as "
            "cu121,cu124,cpu."
        ),
    )
    lock.add_argument("requirements", nargs="*", metavar="REQUIREMENT")
    lock.add_argument(
        "-r", "--requirement", action="append", default=[], metavar="FILE", help="requirements file"
    )
    lock.add_argument("--variants", metavar="auto|all|LIST", help="which builds to lock (default: auto)")
    lock.add_argument("--output-dir", metavar="DIR", help="where the lock files go (default: .)")
    add_host_flags(lock)
    add_decision_flags(lock)
    lock.set_defaults(handler=run_lock)

    sync = commands.add_parser(
        "sync",
        help="install exactly the lock file of the build that runs here",
        description=(
            "Choose the locked variant this host runs (newest CUDA the driver and every GPU "
            "support), install exactly its lock file with hash checking, and remove what it does "
            "not list. Exit status 2, with nothing changed, when no locked variant runs here."
        ),
    )
    _add_lock_dir(sync)
    sync.add_argument("--installer", choices=("pip", "uv"), help="default: uv when the target has no pip")
    sync.add_argument("--python", metavar="PYTHON", help="target interpreter or virtual environment")
    sync.add_argument("--locked", action="store_true", help="refuse a lock that its inputs no longer match")
    add_host_flags(sync)
    sync.set_defaults(handler=run_sync)

    check = commands.add_parser(
        "check",
        help="fail when the environment is not the lock this host should use",
        description=(
            "Exit 0 only when the target environment holds exactly the torch family of the lock "
            "file chosen for this host (same versions and local labels) and this host runs that "
            "build; otherwise exit 1 and say what differs. Host flags answer for another host."
        ),
    )
    _add_lock_dir(check)
    check.add_argument("--python", metavar="PYTHON", help="target interpreter or virtual environment")
    check.add_argument("--json", action="store_true", help="print JSON")
    add_host_flags(check)
    check.set_defaults(handler=run_check)


def _add_lock_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lock-dir", metavar="DIR", help="folder holding pylock.<variant>.toml (default: .)")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- lock ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    """One variant to resolve: its decision and everything the resolver needs."""

    variant: str
    plan: Plan
    host: HostProfile


def run_lock(args: argparse.Namespace) -> int:
    from .cli import host_from_args

    cwd = Path.cwd()
    directory = (cwd / args.output_dir) if args.output_dir else cwd
    directory.mkdir(parents=True, exist_ok=True)
    family = find_lock_family(directory)
    recorded = family[0].record.inputs if family else None
    if args.requirements or args.requirement:
        requirement_args = list(args.requirements)
        files = [_relative(cwd / path, directory) for path in args.requirement]
    elif recorded is not None:
        requirement_args = list(recorded.requirements)
        files = [path for path, _ in recorded.files]
    else:
        raise UsageError(
            f"nothing to lock: no requirements given and no pip-gpu lock in {directory}",
            "name requirements, e.g. pip-gpu lock -r requirements.in",
        )
    if args.python_version is None:
        args.python_version = (
            recorded.python_version if recorded else find_target(None, cwd, os.environ).python_version
        )
    if recorded and args.platform is None and args.arch is None:
        args.platform, _, args.arch = recorded.platform.partition("-")
    host = host_from_args(args)
    knowledge = load_knowledge()
    variants = _variants_to_lock(
        args.variants or args.variant or "auto", requirement_args, files, directory, host, args, family
    )
    written = relock(
        directory=directory,
        requirement_args=requirement_args,
        files=files,
        variants=variants,
        host=host,
        pytorch_index=args.pytorch_index,
        cwd=cwd,
        knowledge=knowledge,
    )
    new_digest = written[0].record.inputs_digest if written else None
    for other in find_lock_family(directory):
        if other.variant not in variants and other.record.inputs_digest != new_digest:
            _say(
                f"pip-gpu: note: {other.path.name} was locked from other inputs and is now stale; "
                f"add {other.variant} to --variants to re-resolve it"
            )
    return EXIT_OK


def _lock_context() -> Any:
    """issue 13: what the other requirements need of torch counts for a lock too (read with the
    pip next to pip-gpu and your pip settings); nothing installed is preferred."""
    from .resolution import ResolutionContext, index_args_for

    return ResolutionContext(
        python=Path(sys.executable),
        index_args=index_args_for("uv", (), os.environ),  # the lock resolves with uv's indexes
        prefer_installed=False,
        strict=False,  # uv's own resolution reports what does not resolve
    )


def _relative(path: Path, directory: Path) -> str:
    return Path(os.path.relpath(path.resolve(), directory.resolve())).as_posix()


def _variants_to_lock(
    choice: str,
    requirement_args: Sequence[str],
    files: Sequence[str],
    directory: Path,
    host: HostProfile,
    args: argparse.Namespace,
    family: Sequence[LockFile],
) -> list[str]:
    if choice not in ("auto", "all"):
        variants = [v.strip() for v in choice.split(",") if v.strip()]
        if not variants:
            raise UsageError(f"--variants {choice!r} names no variant", "e.g. --variants cu121,cu124,cpu")
        return sorted(set(variants), key=variant_sort_key)
    plan = decide_for(
        requirement_args,
        [str(directory / f) for f in files],
        host,
        pytorch_index=args.pytorch_index,
        cwd=Path.cwd(),
        context=_lock_context(),
    )
    if choice == "all":
        return _published_variants(plan, host)
    found = {lock.variant for lock in family}
    if plan.decision.ok and plan.decision.variant is not None:
        found.add(plan.decision.variant)
    elif not found:
        assert plan.decision.blocker is not None
        raise NoBuildRuns(
            f"no build runs on this host, so there is no variant to lock: {plan.decision.blocker.message}",
            "name the variants, e.g. --variants cu124,cpu; or " + plan.decision.blocker.hint,
        )
    else:
        _say(f"pip-gpu: note: no build runs on this host; re-locking {', '.join(sorted(found))}")
    return sorted(found, key=variant_sort_key)


def _published_variants(plan: Plan, host: HostProfile) -> list[str]:
    """Every build of the newest release the requirements admit, for the target platform."""
    knowledge = plan.knowledge
    requirements = [
        line.requirement
        for line in plan.family_lines()
        if line.requirement is not None and not line.constraint
    ]
    request = request_from_requirements(requirements or [Requirement("torch")], knowledge)
    for release in knowledge.releases:
        if host.python_version not in release.python:
            continue
        if not request.admits(release, newest=release is knowledge.releases[0])[0]:
            continue
        variants = [b.variant for b in release.builds if b.platform == host.platform_tag]
        if variants:
            return sorted(set(variants), key=variant_sort_key)
    raise UsageError(
        f"no torch release matching the requirements publishes builds for {host.platform_tag} "
        f"and Python {host.python_version}",
        "check the torch pin, --platform/--arch and --python-version",
    )


def relock(
    *,
    directory: Path,
    requirement_args: Sequence[str],
    files: Sequence[str],
    variants: Sequence[str],
    host: HostProfile,
    pytorch_index: Optional[str],
    cwd: Path,
    knowledge: Optional[Knowledge] = None,
) -> list[LockFile]:
    """Decide, resolve (concurrently) and write ``pylock.<variant>.toml`` for each variant.

    Nothing is written unless every variant resolves.
    """
    from .install import _uv_binary

    knowledge = knowledge or load_knowledge()
    uv_platform = _UV_PLATFORMS.get(host.platform_tag)
    if uv_platform is None:
        raise UsageError(f"cannot lock for {host.platform_tag}", "use --platform linux, windows or macos")
    absolute_files = [str(directory / f) for f in files]
    jobs: list[_Job] = []
    refused: list[str] = []
    for variant in variants:
        plan = decide_for(
            requirement_args,
            absolute_files,
            host,
            variant=variant,
            force=True,  # a lock is for the fleet: the build must exist, not run here
            pytorch_index=pytorch_index,
            cwd=cwd,
            knowledge=knowledge,
            context=_lock_context(),
        )
        if plan.decision.ok:
            jobs.append(_Job(variant, plan, host))
        else:
            assert plan.decision.blocker is not None
            refused.append(f"{variant} ({plan.decision.blocker.message})")
    if refused:
        raise UsageError(
            f"cannot lock for {host.platform_tag}, Python {host.python_version}: " + "; ".join(refused),
            "choose variants the torch release publishes for that platform (pip-gpu matrix lists them)",
        )
    inputs = LockInputs(
        requirements=tuple(strip_credentials(r) for r in requirement_args),
        files=tuple((f, _file_lines(directory / f)) for f in files),
        python_version=host.python_version,
        platform=host.platform_tag,
        pytorch_index=strip_credentials(jobs[0].plan.pytorch_index) if jobs else "",
    )
    uv = _uv_binary()
    workers = max(1, min(len(jobs), 8))
    with tempfile.TemporaryDirectory(prefix="pip-gpu-lock-") as scratch, ThreadPoolExecutor(workers) as pool:
        futures = [
            pool.submit(_resolve, job, uv, uv_platform, Path(scratch) / str(i)) for i, job in enumerate(jobs)
        ]
        outcomes = [future.result() for future in futures]
    failures = [message for _, message in outcomes if message]
    if failures:
        raise PipGpuError("could not lock: " + "\n".join(failures), "nothing was written")
    texts: list[tuple[Path, str]] = []
    for job, (resolved, _) in zip(jobs, outcomes):
        assert resolved is not None
        document = lock_document(
            resolved["pylock"],
            resolved["indexes"],
            _record(job, resolved["pylock"], inputs, knowledge),
            [_environment_marker(job.host)],
        )
        texts.append((lock_path(directory, job.variant), render_lock(document)))
    changed = write_locks(texts)  # every file, or (a full disk) none
    written: list[LockFile] = []
    for (path, _), was_changed, (resolved, _) in zip(texts, changed, outcomes):
        assert resolved is not None
        torch = _version_of(resolved["pylock"], "torch")
        what = f"torch {torch}, " if torch else ""
        count = len(resolved["pylock"].get("packages", []))
        _say(f"pip-gpu: {'wrote' if was_changed else 'unchanged'} {path.name} ({what}{count} packages)")
        lock = read_lock(path)
        assert lock is not None
        written.append(lock)
    return written


def _file_lines(path: Path) -> tuple[str, ...]:
    return tuple(strip_credentials(render_line(line)) for line in read_requirements_file(path).lines)


def _environment_marker(host: HostProfile) -> str:
    values = marker_environment(host)
    return (
        f"sys_platform == '{values['sys_platform']}' and platform_machine == '{values['platform_machine']}'"
        f" and python_version == '{values['python_version']}'"
    )


def _version_of(pylock: Mapping[str, Any], name: str) -> Optional[str]:
    for package in pylock.get("packages", []):
        if canonicalize_name(str(package.get("name", ""))) == name:
            return str(package.get("version")) if package.get("version") else None
    return None


def _record(job: _Job, pylock: Mapping[str, Any], inputs: LockInputs, knowledge: Knowledge) -> LockRecord:
    decision = job.plan.decision
    assert decision.build is not None and decision.release is not None
    build = decision.build
    cuda = build.cuda
    minimum: tuple[tuple[str, str], ...] = ()
    row = knowledge.cuda_row(cuda) if cuda else None
    if row is not None:
        minimum = tuple(
            (os_name, driver)
            for os_name, driver in (("linux", row.linux_minor_compat), ("windows", row.windows_minor_compat))
            if driver
        )
    torch = _version_of(pylock, "torch")
    return LockRecord(
        variant=job.variant,
        index=strip_credentials(decision.index_url) if decision.index_url else None,
        cuda=cuda,
        torch=Version(torch).public if torch else decision.torch,
        torch_release=decision.release.torch,
        minimum_driver=minimum,
        sass=tuple(format_compute_capability(c) for c in build.sass)
        if cuda and build.sass is not None
        else None,
        ptx=tuple(format_compute_capability(c) for c in build.ptx or ())
        if cuda and build.sass is not None
        else None,
        inputs=inputs,
        inputs_digest=inputs.digest(),
        pip_gpu_version=__version__,
    )


_PINNED_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)")
_FROM_RE = re.compile(r"^\s+#\s+from\s+(\S+)")


def _resolve(job: _Job, uv: str, uv_platform: str, workdir: Path) -> tuple[Optional[dict[str, Any]], str]:
    """Run uv twice for one variant: the PEP 751 lock, then the index each package came from.

    uv's pylock output does not name indexes; its requirements output can
    (``--emit-index-annotation``). Both runs read the same requirements with the same
    routing, so they resolve alike; a difference means an index changed in between.
    """
    workdir.mkdir(parents=True)
    plan = job.plan

    def compile_command(extra: list[str]) -> InstallerCommand:
        routing = Routing(
            python=Path(sys.executable),
            variant_index=plan.decision.index_url,
            global_options=[opt for f in plan.files for opt in f.global_options],
            pins=rewrite_pins(plan),
            installer_args=[
                "--quiet",
                "--no-header",
                "--python-version",
                job.host.python_version,
                "--python-platform",
                uv_platform,
                *extra,
            ],
            workdir=workdir,
        )
        return uv_command(routing, list(plan.lines), uv=uv, subcommand="compile")

    lock_out = workdir / "pylock.toml"
    annotated_out = workdir / "requirements.txt.out"
    commands = (
        compile_command(["--format", "pylock.toml", "-o", str(lock_out)]),
        compile_command(["--emit-index-annotation", "-o", str(annotated_out)]),
    )
    for path, content in commands[0].files.items():
        path.write_text(content, encoding="utf-8")
    # Both at once: they share uv's cache, which uv locks for concurrent use.
    running = [
        subprocess.Popen(list(c.argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    results = []
    for process in running:
        stdout, stderr = process.communicate()
        results.append((process.returncode, stdout, stderr))
    for status, stdout, stderr in results:
        if status != 0:
            detail = redact_url(stderr.strip() or stdout.strip())
            return None, f"{job.variant}: uv exited with status {status}:\n{detail}"
    pylock = load_toml(lock_out.read_text(encoding="utf-8"), "uv's lock output")
    indexes: dict[str, str] = {}
    pinned: dict[str, str] = {}
    current: Optional[str] = None
    for line in annotated_out.read_text(encoding="utf-8").splitlines():
        match = _PINNED_RE.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            pinned[current] = match.group(2)
            continue
        found = _FROM_RE.match(line)
        if found and current is not None:
            indexes[current] = found.group(1)
    locked = {
        canonicalize_name(str(p["name"])): str(p.get("version", "")) for p in pylock.get("packages", [])
    }
    if any(pinned.get(name) not in (None, version) for name, version in locked.items()):
        return None, f"{job.variant}: the indexes changed while locking; run pip-gpu lock again"
    return {"pylock": pylock, "indexes": indexes}, ""


# --- choosing the lock for a host ------------------------------------------------------------


def _read_family(directory: Path) -> list[LockFile]:
    family = find_lock_family(directory)
    if not family:
        raise UsageError(
            f"no pip-gpu lock files (pylock.<variant>.toml) in {directory}",
            "write them with pip-gpu lock -r requirements.in",
        )
    return family


def _torch_requirement(record: LockRecord) -> Requirement:
    return Requirement(f"torch=={record.torch}" if record.torch else f"torch=={record.torch_release}.*")


@dataclass(frozen=True)
class _Choice:
    lock: Optional[LockFile]
    decision: Decision  # the (last) decision made; its candidates explain the locked variants


def choose_lock(
    family: Sequence[LockFile], host: HostProfile, knowledge: Knowledge, directory: Path
) -> _Choice:
    """The core's rules restricted to the locked variants: newest CUDA that runs here."""
    config = load_project_config(directory)
    by_release: dict[str, list[LockFile]] = {}
    for lock in family:
        by_release.setdefault(str(_torch_requirement(lock.record)), []).append(lock)
    best: Optional[tuple[LockFile, Decision]] = None
    last: Optional[Decision] = None
    for requirement, locks in sorted(by_release.items()):
        request = request_from_requirements([Requirement(requirement)], knowledge)
        policy = Policy(
            allowed_variants=frozenset(lock.variant for lock in locks),
            preferred_variant=config.preferred_variant,
        )
        decision = decide(request, host, knowledge, policy=policy)
        last = decision
        if not decision.ok:
            continue
        chosen = next(lock for lock in locks if lock.variant == decision.variant)
        if best is None or variant_sort_key(chosen.variant) > variant_sort_key(best[0].variant):
            best = (chosen, decision)
    if best is not None:
        return _Choice(best[0], best[1])
    assert last is not None
    return _Choice(None, last)


def _why_not(lock: LockFile, host: HostProfile, knowledge: Knowledge) -> str:
    """Why this host cannot run the locked build, in the words a person would use."""
    record = lock.record
    request = request_from_requirements([_torch_requirement(record)], knowledge)
    decision = decide(request, host, knowledge, policy=Policy(allowed_variants=frozenset({record.variant})))
    reasons = [c.reason for c in decision.candidates if c.variant == record.variant and not c.ok]
    if record.inputs.platform != host.platform_tag:
        return f"it is locked for {record.inputs.platform} and this host is {host.platform_tag}"
    if not reasons:
        return f"pip-gpu knows no {record.variant} build of torch {record.torch or record.torch_release}"
    reason = reasons[0]
    if reason.startswith("driver ") and host.driver_version:
        max_cuda = knowledge.max_cuda_for_driver(host.driver_version)
        minimum = knowledge.minimum_driver_for(record.cuda, host.os) if record.cuda else None
        if max_cuda:
            needs = f" ({record.variant} needs >= {minimum})" if minimum else ""
            return f"this driver ({host.driver_version}) supports CUDA <= {max_cuda}{needs}"
    return reason


def _no_variant_runs(
    family: Sequence[LockFile], host: HostProfile, knowledge: Knowledge, directory: Path
) -> NoBuildRuns:
    locked = sorted({lock.variant for lock in family}, key=variant_sort_key)
    reasons = "; ".join(f"{lock.variant}: {_why_not(lock, host, knowledge)}" for lock in family)
    record = family[0].record
    request = request_from_requirements([_torch_requirement(record)], knowledge)
    unrestricted = decide(request, host, knowledge)
    where = "" if directory.resolve() == Path.cwd().resolve() else f" --output-dir {directory}"
    if unrestricted.ok and unrestricted.variant is not None:
        variants = sorted({*locked, unrestricted.variant}, key=variant_sort_key)
        hint = (
            f"lock a build that runs here: pip-gpu lock --variants {','.join(variants)}{where}"
            f" (torch {record.torch or record.torch_release} -> {unrestricted.variant})"
        )
    else:
        assert unrestricted.blocker is not None
        hint = unrestricted.blocker.hint
    return NoBuildRuns(f"no locked variant ({', '.join(locked)}) runs on this host: {reasons}", hint)


# --- the target environment ------------------------------------------------------------------

_ENV_PROBE = r"""
import importlib.metadata as md, json, os, platform, re, sys
def fmt(info):
    v = "%d.%d.%d" % (info.major, info.minor, info.micro)
    if info.releaselevel != "final":
        v += info.releaselevel[0] + str(info.serial)
    return v
env = {
    "implementation_name": sys.implementation.name,
    "implementation_version": fmt(sys.implementation.version),
    "os_name": os.name,
    "platform_machine": platform.machine(),
    "platform_release": platform.release(),
    "platform_system": platform.system(),
    "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": ".".join(platform.python_version_tuple()[:2]),
    "sys_platform": sys.platform,
}
dists = {}
for dist in md.distributions():
    name = dist.metadata["Name"]
    if name:
        dists.setdefault(re.sub(r"[-_.]+", "-", name).lower(), dist.version)
print(json.dumps({"env": env, "dists": dists}))
"""


@dataclass(frozen=True)
class _Installed:
    """The target's PEP 508 marker values and its installed distributions."""

    env: dict[str, str]
    dists: dict[str, str]


def _probe_installed(python: Path) -> _Installed:
    done = subprocess.run(
        [str(python), "-I", "-c", _ENV_PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    try:
        data = json.loads(done.stdout)
    except ValueError:
        raise PipGpuError(
            f"could not read the installed packages of {python}: {done.stderr.strip()}"
        ) from None
    return _Installed(env=dict(data["env"]), dists=dict(data["dists"]))


def _reread(target: TargetEnv, before: _Installed) -> _Installed:
    """The distributions after an install, read from site-packages: no interpreter started."""
    if not target.site_packages:
        return _probe_installed(target.python)
    from importlib import metadata

    dists: dict[str, str] = {}
    for dist in metadata.distributions(path=[str(p) for p in target.site_packages]):
        name = dist.metadata["Name"]
        if name:
            dists.setdefault(canonicalize_name(name), dist.version)
    return _Installed(env=before.env, dists=dists)


def _selected(lock: LockFile, env: Mapping[str, str]) -> list[Package]:
    """The lock's packages whose markers hold in the target environment."""
    values = dict(env, extra="")
    return [p for p in lock.pylock.packages if p.marker is None or p.marker.evaluate(values)]


def _same_version(a: Optional[str], b: Optional[str]) -> bool:
    if a is None or b is None:
        return a is b
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def differences(lock: LockFile, installed: _Installed, names: Optional[frozenset[str]] = None) -> list[str]:
    """Each way the environment differs from the lock, in words; ``names`` limits the packages."""
    wanted = {
        str(p.name): str(p.version) if p.version is not None else None
        for p in _selected(lock, installed.env)
        if names is None or p.name in names
    }
    have = {
        name: version
        for name, version in installed.dists.items()
        if (names is None and name not in _SEED_PACKAGES) or (names is not None and name in names)
    }
    this = f"the lock for this machine ({lock.path.name})"
    out: list[str] = []
    for name in sorted(set(wanted) | set(have)):
        want, got = wanted.get(name), have.get(name)
        if name in wanted and name in have and (want is None or _same_version(want, got)):
            continue
        if name not in have:
            out.append(
                f"{name} {want} is not installed; {this} wants it"
                if want
                else f"{name} is not installed; {this} wants it"
            )
        elif name not in wanted:
            out.append(f"{name} {got} is installed, but {this} does not list it")
        else:
            out.append(f"{name} {got} is installed; {this} wants {want}")
    return out


def _stale(family: Sequence[LockFile], directory: Path) -> list[str]:
    """Why the lock family no longer matches its recorded inputs (empty: it does)."""
    reasons: list[str] = []
    digests = {lock.record.inputs_digest for lock in family}
    if len(digests) > 1:
        reasons.append(
            "the lock files were made from different inputs ("
            + ", ".join(
                f"{lock.path.name}"
                for lock in family
                if lock.record.inputs_digest != family[0].record.inputs_digest
            )
            + f" differ from {family[0].path.name})"
        )
    for lock in family:
        inputs = lock.record.inputs
        files = []
        for path, _ in inputs.files:
            try:
                files.append((path, _file_lines(directory / path)))
            except UsageError:
                reasons.append(f"{path}, recorded in {lock.path.name}, cannot be read")
                files.append((path, ()))
        current = replace(inputs, files=tuple(files)).digest()
        if current != lock.record.inputs_digest:
            changed = [p for (p, old), (_, new) in zip(inputs.files, files) if old != new]
            what = (
                f"{', '.join(changed)} changed" if changed else "its recorded inputs do not match its digest"
            )
            reasons.append(f"{lock.path.name} is stale: {what} since it was locked")
    return list(dict.fromkeys(reasons))


def _target_and_host(args: argparse.Namespace) -> tuple[TargetEnv, HostProfile]:
    from .cli import host_from_args

    target = find_target(args.python, Path.cwd(), os.environ)
    if args.python_version is None:
        args.python_version = target.python_version
    return target, host_from_args(args)


# --- sync ------------------------------------------------------------------------------------


def run_sync(args: argparse.Namespace) -> int:
    from .install import _run, choose_installer

    directory = (Path.cwd() / args.lock_dir) if args.lock_dir else Path.cwd()
    family = _read_family(directory)
    target, host = _target_and_host(args)
    knowledge = load_knowledge()
    stale = _stale(family, directory)
    if stale and args.locked:
        raise UsageError(
            "--locked: " + "; ".join(stale), "re-resolve with pip-gpu lock, or sync without --locked"
        )
    for reason in stale:
        _say(f"pip-gpu: warning: {reason}")
    choice = choose_lock(family, host, knowledge, directory)
    if choice.lock is None:
        raise _no_variant_runs(family, host, knowledge, directory)
    lock = choice.lock
    recorded_python = lock.record.inputs.python_version
    if recorded_python != target.python_version:
        raise UsageError(
            f"{lock.path.name} was resolved for Python {recorded_python}; {target.python} is Python "
            f"{target.python_version}",
            f"re-lock with pip-gpu lock --python-version {target.python_version}, "
            "or sync another environment",
        )
    installer = choose_installer(args.installer, load_project_config(directory).installer, target)
    installed = _probe_installed(target.python)
    _check_environments(lock, installed)
    _check_sources(lock, _selected(lock, installed.env), knowledge)  # before anything changes
    _say(
        f"pip-gpu: target {target.python} (Python {target.python_version}, from {target.chosen_by})\n"
        f"pip-gpu: this host runs {lock.variant}: installing {lock.path.name} with {installer}"
    )
    if installer == "uv":
        from .install import _uv_binary

        _run(
            InstallerCommand(
                argv=(_uv_binary(), "pip", "sync", "--python", str(target.python), str(lock.path)),
                purpose=f"uv: installing exactly {lock.path.name}",
            )
        )
    else:
        _pip_sync(lock, target, installed, _run)
    after = _reread(target, installed)
    problems = differences(lock, after)
    if problems:
        raise PipGpuError(f"after installing {lock.path.name}: " + "; ".join(problems))
    record = {
        "lock-dir": str(directory.resolve()),
        "lock-file": lock.path.name,
        "lock-sha256": lock.sha256,
        "variant": lock.variant,
        "inputs-digest": lock.record.inputs_digest,
        "installer": installer,
        "pip-gpu-version": __version__,
    }
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    write_atomically(target.prefix / SYNC_RECORD, text.encode("utf-8"))
    torch = next((p for p in _selected(lock, after.env) if p.name == "torch"), None)
    what = f"torch {torch.version}" if torch is not None else lock.variant
    _say(f"pip-gpu: synced {target.prefix} to {lock.path.name} ({what})")
    return EXIT_OK


# Public indexes whose pages link to files on another host (PEP 503 allows any URL).
_FILE_HOSTS = {
    "pypi.org": frozenset({"files.pythonhosted.org"}),
    "test.pypi.org": frozenset({"test-files.pythonhosted.org"}),
}


def _origin(url: str) -> tuple[str, str, Optional[int]]:
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port or default


def _foreign_sources(lock: LockFile, packages: Sequence[Package], knowledge: Knowledge) -> list[str]:
    """Files that do not come from the indexes the lock records, in words.

    The torch family must come from the variant index in ``[tool.pip-gpu]``, and every file
    of a package with an ``index`` must live on that index's host: a lock edited to fetch
    torch from elsewhere is caught, whatever its hashes say.
    """
    family = frozenset(canonicalize_name(m.name) for m in knowledge.family)
    variant_index = lock.record.index.rstrip("/") if lock.record.index else None
    problems: list[str] = []
    for package in packages:
        files = [*(package.wheels or ()), *([package.sdist] if package.sdist else [])]
        index = package.index.rstrip("/") if package.index else None
        if package.name in family and variant_index is not None and files and index != variant_index:
            problems.append(
                f"{package.name} comes from {redact_url(index or 'no index')}, not the recorded "
                f"variant index {redact_url(variant_index)}"
            )
            continue
        if index is None:
            continue
        scheme, host, port = _origin(index)
        allowed = {host, *_FILE_HOSTS.get(host, ())}
        for file in files:
            url = getattr(file, "url", None)
            if url is None:
                continue
            file_scheme, file_host, file_port = _origin(url)
            same_port = file_port == port or file_host != host
            if file_scheme != scheme or file_host not in allowed or not same_port:
                problems.append(
                    f"{package.name}'s file {redact_url(url)} is not on its index {redact_url(index)}"
                )
    return problems


def _check_sources(lock: LockFile, packages: Sequence[Package], knowledge: Knowledge) -> None:
    """Refuse, before installing, a lock that points outside the indexes it records."""
    problems = _foreign_sources(lock, packages, knowledge)
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise UsageError(
            f"{lock.path.name} points outside the indexes it records: {shown}; nothing was installed",
            "the file was edited or tampered with: restore it from version control, or re-resolve it "
            "with pip-gpu lock",
        )


def _check_environments(lock: LockFile, installed: _Installed) -> None:
    environments = lock.pylock.environments or ()
    if environments and not any(marker.evaluate(dict(installed.env, extra="")) for marker in environments):
        raise UsageError(
            f"{lock.path.name} is locked for {' or '.join(str(m) for m in environments)}; the target is "
            f"{installed.env['sys_platform']} {installed.env['platform_machine']}, Python "
            f"{installed.env['python_version']}",
            "re-lock for this target with pip-gpu lock --platform/--arch/--python-version",
        )


def _pip_sync(
    lock: LockFile, target: TargetEnv, installed: _Installed, run: Callable[[InstallerCommand], None]
) -> None:
    """pip, any version: every locked file by URL with its hash, no resolution, then removals.

    pip >= 26.1 reads pylock.toml itself, but the environments pip-gpu meets often have an
    older pip. A requirements file of ``name @ url --hash=sha256:...`` lines installed with
    ``--no-deps --require-hashes`` is what a PEP 751 installer does: the exact files, checked
    against the lock's hashes, nothing resolved and no index consulted.
    """
    lines = [_pinned_line(package, installed.env) for package in _selected(lock, installed.env)]
    with tempfile.TemporaryDirectory(prefix="pip-gpu-sync-") as scratch:
        requirements = Path(scratch) / "locked-requirements.txt"
        run(
            InstallerCommand(
                argv=(
                    str(target.python),
                    "-m",
                    "pip",
                    "install",
                    "--no-deps",
                    "--require-hashes",
                    "-r",
                    str(requirements),
                ),
                purpose=f"pip: installing exactly {lock.path.name}",
                files={requirements: "".join(f"{line}\n" for line in lines)},
            )
        )
    # --no-deps installed exactly the listed packages: whatever else was there before stays.
    listed = {str(p.name) for p in _selected(lock, installed.env)}
    extra = sorted(name for name in installed.dists if name not in listed | _SEED_PACKAGES)
    if extra:
        run(
            InstallerCommand(
                argv=(str(target.python), "-m", "pip", "uninstall", "--yes", *extra),
                purpose=f"pip: removing what {lock.path.name} does not list",
            )
        )


def _pinned_line(package: Package, env: Mapping[str, str]) -> str:
    """``name @ url --hash=...`` for the package's file that fits the target interpreter."""
    chosen = _best_wheel(package.wheels or (), env)
    source: Any = chosen or package.sdist or package.archive
    if source is None or not getattr(source, "url", None):
        raise UsageError(
            f"{package.name}: pip-gpu's pip path installs files with URLs only (this one is a "
            "VCS checkout, a directory or has no file for this Python)",
            "use --installer uv",
        )
    hashes = " ".join(f"--hash={algorithm}:{value}" for algorithm, value in sorted(source.hashes.items()))
    return f"{package.name} @ {source.url} {hashes}"


def _best_wheel(wheels: Sequence[PackageWheel], env: Mapping[str, str]) -> Optional[PackageWheel]:
    """The wheel pip would choose for a CPython of the target's version on this machine."""
    major, _, minor = env["python_version"].partition(".")
    version = (int(major), int(minor))
    platforms = list(tags.platform_tags())
    supported = [
        *tags.cpython_tags(python_version=version, platforms=platforms),
        *tags.compatible_tags(python_version=version, interpreter=f"cp{major}{minor}", platforms=platforms),
    ]
    rank = {tag: i for i, tag in enumerate(supported)}
    best: Optional[tuple[int, PackageWheel]] = None
    for wheel in wheels:
        _, _, _, wheel_tags = parse_wheel_filename(wheel.filename)
        score = min((rank[t] for t in wheel_tags if t in rank), default=None)
        if score is not None and (best is None or score < best[0]):
            best = (score, wheel)
    return best[1] if best else None


# --- check -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockCheck:
    """What ``check`` found: the lock for this host and every difference, in words."""

    lock_file: Optional[Path]
    variant: Optional[str]
    differences: tuple[str, ...]
    installed: dict[str, str]  # the torch family in the environment
    fix: str = "pip-gpu sync"

    @property
    def ok(self) -> bool:
        return not self.differences


def check_environment(directory: Path, target: TargetEnv, host: HostProfile) -> LockCheck:
    """Compare an environment with the lock chosen for ``host`` (``check`` and ``doctor``)."""
    family = _read_family(directory)
    knowledge = load_knowledge()
    installed = _probe_installed(target.python)
    family_names = frozenset(canonicalize_name(m.name) for m in knowledge.family)
    problems = list(_stale(family, directory))
    choice = choose_lock(family, host, knowledge, directory)
    lock = choice.lock
    if lock is None:
        lock = _lock_meant_for(family, installed, target.prefix)
        for candidate in family if lock is None else [lock]:
            problems.append(f"the lock pins {candidate.variant} but {_why_not(candidate, host, knowledge)}")
        if lock is None:
            problems.append(str(_no_variant_runs(family, host, knowledge, directory).hint))
    if lock is not None:
        problems.extend(
            f"{lock.path.name}: {p}" for p in _foreign_sources(lock, lock.pylock.packages, knowledge)
        )
        problems.extend(differences(lock, installed, family_names))
    return LockCheck(
        lock_file=lock.path if lock else None,
        variant=lock.variant if lock else None,
        differences=tuple(problems),
        installed={n: v for n, v in sorted(installed.dists.items()) if n in family_names},
    )


def run_check(args: argparse.Namespace) -> int:
    directory = (Path.cwd() / args.lock_dir) if args.lock_dir else Path.cwd()
    target, host = _target_and_host(args)
    result = check_environment(directory, target, host)
    if args.json:
        data = {
            "ok": result.ok,
            "lock": result.lock_file.name if result.lock_file else None,
            "variant": result.variant,
            "lock_dir": str(directory),
            "target": str(target.python),
            "installed": result.installed,
            "problems": list(result.differences),
        }
        print(json.dumps(data, indent=2))
    elif not result.ok:
        print(f"pip-gpu check: {target.prefix} does not match the lock for this machine:")
        for problem in result.differences:
            print(f"  - {problem}")
    else:
        assert result.lock_file is not None
        held = ", ".join(f"{name} {version}" for name, version in result.installed.items())
        print(
            f"pip-gpu check: OK: {target.prefix} holds {held or 'no torch package'} "
            f"as {result.lock_file.name} locks"
        )
    return EXIT_OK if result.ok else EXIT_CHECK_FAILED


def _lock_meant_for(family: Sequence[LockFile], installed: _Installed, prefix: Path) -> Optional[LockFile]:
    """When no locked build runs here: the lock the environment was synced from or looks like."""
    try:
        synced = json.loads((prefix / SYNC_RECORD).read_text(encoding="utf-8")).get("lock-file")
    except (OSError, ValueError, AttributeError):
        synced = None
    for lock in family:
        if lock.path.name == synced:
            return lock
    torch = installed.dists.get("torch")
    label = Version(torch).local if torch else None
    for lock in family:
        if lock.variant == label:
            return lock
    return family[0] if len(family) == 1 else None


# --- pip-gpu install writes the decision back ------------------------------------------------


def write_back_after_install(args: argparse.Namespace, plan: Plan, host: HostProfile, cwd: Path) -> None:
    """After ``pip-gpu install`` in a folder with a lock family: add the new requirements to
    the recorded inputs and re-resolve every variant file."""
    family = find_lock_family(cwd)
    if not family:
        return
    recorded = family[0].record.inputs
    requirement_args = _merged(list(recorded.requirements), list(args.requirements))
    files = list(
        dict.fromkeys([*(p for p, _ in recorded.files), *(_relative(cwd / f, cwd) for f in args.requirement)])
    )
    new_inputs = replace(
        recorded,
        requirements=tuple(strip_credentials(r) for r in requirement_args),
        files=tuple((f, _file_lines(cwd / f)) for f in files),
    )
    if all(lock.record.inputs_digest == new_inputs.digest() for lock in family):
        _say(f"pip-gpu: the locks in {cwd} already record these requirements")
        return
    os_name, _, arch = recorded.platform.partition("-")
    _say(f"pip-gpu: re-locking {', '.join(lock.path.name for lock in family)} (--no-lock skips this)")
    try:
        relock(
            directory=cwd,
            requirement_args=requirement_args,
            files=files,
            variants=sorted({lock.variant for lock in family}, key=variant_sort_key),
            host=host.with_changes(os=os_name, arch=arch, python_version=recorded.python_version),
            pytorch_index=plan.pytorch_index,
            cwd=cwd,
            knowledge=plan.knowledge,
        )
    except PipGpuError as error:
        raise PipGpuError(
            f"installed, but the lock files were not updated: {error.message}",
            "fix the cause and run pip-gpu lock (the locks are now stale), or pass --no-lock",
        ) from None


def _merged(recorded: list[str], new: list[str]) -> list[str]:
    """The recorded requirements with the new ones added; a new one replaces the same project."""

    def name_of(text: str) -> str:
        try:
            return str(canonicalize_name(Requirement(text).name))
        except InvalidRequirement:
            return text

    new_names = {name_of(text) for text in new}
    return [text for text in recorded if name_of(text) not in new_names] + list(dict.fromkeys(new))
