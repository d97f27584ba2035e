"""``pip-gpu lock``, ``sync`` and ``check``: the decision written down for a team, and enforced.

* ``lock`` resolves the whole environment once per variant with uv (``uv pip compile --format
  pylock.toml``), routed as ``pip-gpu install`` routes (the torch family from the variant index,
  declared explicit; everything else from the user's indexes, pip's configuration included
  when uv has none), for the target Python and platform, and writes one
  standard PEP 751 file per variant through :mod:`pip_gpu.lock.lockfile`.
* ``sync`` picks the locked variant this host runs, by the same rules as ``install``
  restricted to the locked variants, installs exactly that file with hash checking, removes
  what it does not list, and records what it installed in the environment.
* ``check`` says, in words, how the environment differs from the lock this host should use.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from packaging import tags
from packaging.markers import UndefinedComparison, UndefinedEnvironmentName
from packaging.pylock import Package, PackageWheel
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from .. import __version__
from ..children import (
    finished,
    private_command,
    signal_of,
    start,
    stop_all,
)
from ..cli.flags import add_target_flags
from ..config import load_project_config
from ..decide.plan import (
    Plan,
    decide_for,
    marker_environment,
    rewrite_pins,
)
from ..decide.rules import (
    Decision,
    Policy,
    decide,
    request_from_requirements,
)
from ..detect.target import TargetEnv, find_target
from ..errors import (
    EXIT_CHECK_FAILED,
    EXIT_OK,
    NoBuildRuns,
    PipGpuError,
    UsageError,
)
from ..host import HostProfile, format_compute_capability
from ..knowledge import Knowledge, load_knowledge, variant_sort_key
from ..requirements import (
    read_regular_file,
    read_requirements_file,
    redact_url,
    render_line,
)
from ..route import InstallerCommand, Routing, uv_command
from .lockfile import (
    LockFile,
    LockInputs,
    LockRecord,
    LockTarget,
    find_lock_family,
    load_toml,
    lock_document,
    lock_path,
    lock_problems,
    merge_resolutions,
    read_lock,
    render_lock,
    strip_credentials,
    write_atomically,
    write_locks,
)

__all__ = ["add_lock_parsers", "run_check", "run_lock", "run_sync", "write_back_after_install"]

SYNC_RECORD = "pip-gpu-sync.json"
PROBE_TIMEOUT_S = 60
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
            "cu121,cu124,cpu.\n"
            "targets: --platform, --arch and --python-version take several values (repeated or "
            "comma-separated); every combination is a target, and each file covers every target its "
            "variant is published for. Without them: [tool.pip-gpu] targets in pyproject.toml "
            '(e.g. ["linux-x86_64-3.10", "windows-x86_64-3.11"]), else the targets the locks '
            "record, else this host and the target Python."
        ),
    )
    lock.add_argument("requirements", nargs="*", metavar="REQUIREMENT")
    lock.add_argument(
        "-r", "--requirement", action="append", default=[], metavar="FILE", help="requirements file"
    )
    lock.add_argument("--variants", metavar="auto|all|LIST", help="which builds to lock (default: auto)")
    lock.add_argument("--output-dir", metavar="DIR", help="where the lock files go (default: .)")
    lock.add_argument(
        "--fleet",
        action="append",
        default=[],
        metavar="NODES",
        help="lock exactly the variants `pip-gpu fleet plan --nodes NODES` plans, for its one torch release",
    )
    lock.add_argument(
        "--upgrade",
        "-U",
        action="store_true",
        help="take the newest allowed versions (without it, a re-lock keeps what the locks hold)",
    )
    lock.add_argument(
        "--upgrade-package",
        "-P",
        action="append",
        default=[],
        metavar="NAME",
        help="take the newest allowed version of this package only; repeat for several",
    )
    add_host_flags(lock, many=True)
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
    add_target_flags(sync)
    sync.add_argument("--locked", action="store_true", help="refuse a lock that its inputs no longer match")
    add_host_flags(sync)
    sync.set_defaults(handler=run_sync)

    check = commands.add_parser(
        "check",
        help="fail when the environment is not the lock this host should use",
        description=(
            "Exit 0 only when the target environment holds exactly the packages of the lock file "
            "chosen for this host (same versions and local labels, files as their RECORD lists), "
            "the last sync finished, and this host runs that build; otherwise exit 1 and say what "
            "differs. Host flags answer for another host."
        ),
    )
    _add_lock_dir(check)
    add_target_flags(check)
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
    target: LockTarget
    previous: Optional[LockFile] = None  # the variant's current lock: its versions are preferred
    one_of_several: bool = False  # the variant is resolved for several targets


def _target_of(host: HostProfile) -> LockTarget:
    return LockTarget.make(host.os, host.arch, host.python_version, "host")


def _host_for(host: HostProfile, target: LockTarget) -> HostProfile:
    return host.with_changes(os=target.os, arch=target.arch, python_version=target.python_version)


def _lock_targets(
    args: argparse.Namespace, recorded: Optional[LockInputs], host: HostProfile, cwd: Path
) -> list[LockTarget]:
    """What to lock for: every combination of the flags' values; a dimension no flag names
    comes from ``[tool.pip-gpu] targets``, else the recorded targets, else this host (and the
    target interpreter's Python)."""
    configured = load_project_config(cwd).targets
    if configured:
        base = [LockTarget.parse(t, "[tool.pip-gpu] targets") for t in configured]
    elif recorded is not None:
        base = list(recorded.targets)
    else:
        python = find_target(None, cwd, os.environ).python_version
        base = [LockTarget.make(host.os, host.arch, python, "this host")]
    platforms, arches, pythons = args.platform or [], args.arch or [], args.python_version or []
    if not (platforms or arches or pythons):
        return sorted(set(base))
    if not platforms and not arches:
        places = sorted({(t.os, t.arch) for t in base})
    else:
        os_names = platforms or sorted({t.os for t in base})
        arch_names = arches or [None]
        places = []
        for os_name in os_names:
            for arch in arch_names:
                if arch is None:  # the platform's architecture in the base targets, else this host's
                    known = sorted({t.arch for t in base if t.os == os_name})
                    default = host.arch if os_name != "macos" or host.arch != "x86_64" else "arm64"
                    places += [(os_name, a) for a in (known or [default])]
                else:
                    places.append((os_name, arch))
    versions = pythons or sorted({t.python_version for t in base})
    return sorted(
        {LockTarget.make(o, a, v, "--platform/--arch/--python-version") for o, a in places for v in versions}
    )


def run_lock(args: argparse.Namespace) -> int:
    from ..cli.flags import host_from_args

    cwd = Path.cwd()
    directory = (cwd / args.output_dir) if args.output_dir else cwd
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # Refused now, before minutes of resolving: a folder that takes no new file (/proc, a
        # read-only filesystem) fails only when the locks are written otherwise.
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".pip-gpu-", suffix=".probe"):
            pass
    except OSError as exc:
        raise UsageError(
            f"--output-dir {args.output_dir or directory}: cannot use it for lock files: "
            f"{exc.strerror or exc}",
            "name a folder you can write to (it is created when missing)",
        ) from None
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
    # The GPU facts come from the flags or this machine; the targets are chosen below.
    this_host = host_from_args(
        argparse.Namespace(**{**vars(args), "platform": None, "arch": None, "python_version": None})
    )
    targets = _lock_targets(args, recorded, this_host, cwd)
    configured_index = os.environ.get("PIP_GPU_PYTORCH_INDEX") or load_project_config(cwd).pytorch_index
    if (
        args.pytorch_index is None
        and not configured_index
        and recorded is not None
        and recorded.pytorch_index
    ):
        args.pytorch_index = recorded.pytorch_index  # a re-lock reads the index it recorded
    host = _host_for(this_host, targets[0])
    knowledge = load_knowledge()
    if args.fleet:
        variants = _fleet_variants(args, requirement_args, files, directory, host)
    else:
        variants = _variants_to_lock(
            args.variants or args.variant or "auto",
            requirement_args,
            files,
            directory,
            host,
            args,
            family,
            targets,
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
        targets=targets,
        upgrade=args.upgrade,
        upgrade_packages=args.upgrade_package,
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
    from ..decide.resolution import ResolutionContext, index_args_for

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
    targets: Sequence[LockTarget] = (),
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
        published: set[str] = set()
        for target in targets or [_target_of(host)]:
            with contextlib.suppress(UsageError):  # a target nothing is published for: noted later
                published.update(_published_variants(plan, _host_for(host, target)))
        if not published:
            return _published_variants(plan, host)  # the error, in words
        return sorted(published, key=variant_sort_key)
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


def _fleet_variants(
    args: argparse.Namespace,
    requirement_args: list[str],
    files: Sequence[str],
    directory: Path,
    host: HostProfile,
) -> list[str]:
    """The variants a fleet plan names; the requirements gain the plan's one torch release so
    that every variant's lock holds the same torch (and a re-lock reproduces it)."""
    from ..fleet import FleetPlanOptions, make_fleet_plan

    if args.variants or args.variant:
        raise UsageError("--fleet chooses the variants itself", "drop --variants/--variant, or drop --fleet")
    plan = make_fleet_plan(
        FleetPlanOptions(
            requirements=tuple(requirement_args),
            requirement_files=tuple(str(directory / f) for f in files),
            node_files=tuple(Path(p) for p in args.fleet),
            python_version=host.python_version,
            pytorch_index=args.pytorch_index,
            cwd=Path.cwd(),
        )
    )
    if plan.torch is None or not plan.variants:
        reasons = "; ".join(f"{n.name}: {n.reason}" for n in plan.nodes)
        raise NoBuildRuns(f"the fleet plan serves no node, so there is nothing to lock: {reasons}", "")
    for node in plan.unserved:
        _say(f"pip-gpu: note: node {node.name} is not served by torch {plan.torch}: {node.reason}")
    pin = f"torch=={plan.torch}" if plan.torch.count(".") >= 2 else f"torch=={plan.torch}.*"
    if pin not in requirement_args:
        requirement_args.append(pin)
    _say(f"pip-gpu: fleet plan: torch {plan.torch}, {', '.join(plan.variants)}")
    return sorted(plan.variants, key=variant_sort_key)


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
    targets: Sequence[LockTarget] = (),
    upgrade: bool = False,
    upgrade_packages: Sequence[str] = (),
) -> list[LockFile]:
    """Decide, resolve (concurrently, once per variant and target) and write
    ``pylock.<variant>.toml`` for each variant, covering every target it is published for.

    Without ``upgrade``, each resolution prefers the versions the variant's current lock holds
    for that target. Nothing is written unless every covered target of every variant resolves.
    """
    from ..installers import uv_binary

    knowledge = knowledge or load_knowledge()
    targets = sorted(set(targets)) or [_target_of(host)]
    for target in targets:
        if target.platform not in _UV_PLATFORMS:
            raise UsageError(f"cannot lock for {target.platform}", "use --platform linux, windows or macos")
    absolute_files = [str(directory / f) for f in files]
    current = {lock.variant: lock for lock in find_lock_family(directory)} if not upgrade else {}
    jobs: list[_Job] = []
    not_covered: dict[str, list[tuple[LockTarget, str]]] = {}
    refused: list[str] = []
    for variant in variants:
        for target in targets:
            plan = decide_for(
                requirement_args,
                absolute_files,
                _host_for(host, target),
                variant=variant,
                force=True,  # a lock is for the fleet: the build must exist, not run here
                pytorch_index=pytorch_index,
                cwd=cwd,
                knowledge=knowledge,
                context=_lock_context(),
            )
            if plan.decision.ok:
                jobs.append(
                    _Job(
                        variant, plan, _host_for(host, target), target, current.get(variant), len(targets) > 1
                    )
                )
            else:
                assert plan.decision.blocker is not None
                not_covered.setdefault(variant, []).append((target, plan.decision.blocker.message))
        if not any(job.variant == variant for job in jobs):
            reasons = "; ".join(f"{t}: {why}" for t, why in not_covered.get(variant, []))
            refused.append(f"{variant} ({reasons})")
    if refused:
        raise UsageError(
            f"cannot lock for {', '.join(map(str, targets))}: " + "; ".join(refused),
            "choose variants the torch release publishes for those targets (pip-gpu matrix lists them)",
        )
    for variant, missing in not_covered.items():
        for target, why in missing:
            _say(f"pip-gpu: note: {lock_path(directory, variant).name} does not cover {target}: {why}")
    inputs = LockInputs(
        requirements=tuple(strip_credentials(r) for r in requirement_args),
        files=tuple((f, _file_lines(directory / f)) for f in files),
        targets=tuple(targets),
        pytorch_index=strip_credentials(jobs[0].plan.pytorch_index) if jobs else "",
    )
    upgrade_args = ["--upgrade"] if upgrade else []
    upgrade_args += [arg for name in upgrade_packages for arg in ("--upgrade-package", name)]
    uv = uv_binary()
    workers = max(1, min(len(jobs), 4))
    with tempfile.TemporaryDirectory(prefix="pip-gpu-lock-") as scratch, ThreadPoolExecutor(workers) as pool:
        futures = [
            pool.submit(_resolve_shown, job, uv, upgrade_args, Path(scratch) / str(i))
            for i, job in enumerate(jobs)
        ]
        try:
            outcomes = [future.result() for future in futures]
        except KeyboardInterrupt as interrupt:  # every resolver stops before pip-gpu does
            stop_all(signal_of(interrupt))
            raise
    failures = [message for _, message in outcomes if message]
    if failures:
        raise PipGpuError("could not lock: " + "\n".join(failures), "nothing was written")
    texts: list[tuple[Path, str]] = []
    merged_by_variant: list[dict[str, Any]] = []
    for variant in variants:
        parts = [(job, resolved) for job, (resolved, _) in zip(jobs, outcomes) if job.variant == variant]
        merged = merge_resolutions(
            [
                (
                    (_platform_marker(job.host), job.target.python_version),
                    resolved["pylock"],
                    resolved["indexes"],
                )
                for job, resolved in parts
                if resolved is not None
            ]
        )
        first = parts[0][0]
        record = _record(first, merged, inputs, knowledge)
        record = replace(
            record,
            targets=tuple(job.target for job, _ in parts),
            not_covered=tuple(not_covered.get(variant, [])),
        )
        document = lock_document(merged, {}, record, [_environment_marker(job.host) for job, _ in parts])
        texts.append((lock_path(directory, variant), render_lock(document)))
        merged_by_variant.append(merged)
    # every file, or (a full disk, or a lock sync would refuse) none
    changed = write_locks(texts, [m.name for m in knowledge.family])
    written: list[LockFile] = []
    for (path, _), was_changed, merged in zip(texts, changed, merged_by_variant):
        torch = _version_of(merged, "torch")
        what = f"torch {torch}, " if torch else ""
        lock = read_lock(path)
        assert lock is not None
        covered = ", ".join(map(str, lock.record.covered))
        _say(
            f"pip-gpu: {'wrote' if was_changed else 'unchanged'} {path.name} ({what}"
            f"{len({p.name for p in lock.pylock.packages})} packages; {covered})"
        )
        written.append(lock)
    return written


def _file_lines(path: Path) -> tuple[str, ...]:
    return tuple(strip_credentials(render_line(line)) for line in read_requirements_file(path).lines)


def _platform_marker(host: HostProfile) -> str:
    values = marker_environment(host)
    return (
        f"sys_platform == '{values['sys_platform']}' and platform_machine == '{values['platform_machine']}'"
    )


def _environment_marker(host: HostProfile) -> str:
    """The PEP 751 ``environments`` entry of one target."""
    return f"{_platform_marker(host)} and python_version == '{marker_environment(host)['python_version']}'"


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


def _resolve_shown(
    job: _Job, uv: str, upgrade_args: Sequence[str], workdir: Path
) -> tuple[Optional[dict[str, Any]], str]:
    """``_resolve`` with progress on a terminal when it takes more than a second."""
    from ..ui import progress

    with progress(f"resolving {job.variant}" + (f" for {job.target}" if job.one_of_several else "")):
        return _resolve(job, uv, upgrade_args, workdir)


def _seed_preferences(job: _Job, pylock_out: Path, annotated_out: Path) -> None:
    """Put what the variant's lock holds for this target where uv writes, so that uv keeps
    those versions (uv reads an existing ``-o`` file, a ``pylock.toml`` included, as
    preferences; ``--upgrade``/``--upgrade-package`` override them).

    The file is filtered to this target's packages: uv would not tell two versions of one
    package apart by their markers.
    """
    if job.previous is None:
        return
    values = dict(marker_environment(job.host), extra="")
    values.setdefault("python_full_version", f"{values['python_version']}.0")
    chosen = []
    for package in job.previous.pylock.packages:
        with contextlib.suppress(UndefinedComparison, UndefinedEnvironmentName):  # not a preference then
            if package.marker is None or package.marker.evaluate(values):
                chosen.append(package)
    if not chosen:
        return
    document = dict(job.previous.pylock.to_dict())
    wanted = {(str(p.name), str(p.version)) for p in chosen}
    document["packages"] = [
        entry for entry in document.get("packages", []) if (entry["name"], entry.get("version")) in wanted
    ]
    document.pop("environments", None)
    document.pop("tool", None)
    pylock_out.write_text(render_lock(document), encoding="utf-8")
    annotated_out.write_text(
        "".join(f"{p.name}=={p.version}\n" for p in chosen if p.version), encoding="utf-8"
    )


def _resolve(
    job: _Job, uv: str, upgrade_args: Sequence[str], workdir: Path
) -> tuple[Optional[dict[str, Any]], str]:
    """Run uv for one variant: where each package comes from, then the PEP 751 lock.

    uv's pylock output does not name indexes; its requirements output can
    (``--emit-index-annotation``). A family member that output takes from another index
    (torch's triton, a library's torchvision) is routed like a named one and the
    resolution redone. Both runs read the same requirements with the same routing, so they
    resolve alike; a difference means an index changed in between.
    """
    from ..route import family_from_elsewhere

    workdir.mkdir(parents=True)
    plan = job.plan
    index_args = user_index_args(os.environ)
    uv_platform = _UV_PLATFORMS[job.target.platform]

    def compile_command(extra: list[str], pulled_in: Sequence[str]) -> InstallerCommand:
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
                *index_args,
                *upgrade_args,
                *extra,
            ],
            workdir=workdir,
        )
        return uv_command(routing, list(plan.lines), uv=uv, subcommand="compile", pulled_in=pulled_in)

    def run(command: InstallerCommand) -> str:
        for path, content in command.files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
        # Credentials through a private netrc, not argv; a signal to pip-gpu stops it (stop_all).
        with private_command(command.argv, os.environ) as (argv, env):
            process = start(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                stdout, stderr = process.communicate()
            finally:
                finished(process)
        if process.returncode != 0:
            detail = redact_url(stderr.strip() or stdout.strip())
            return f"{job.variant}: uv exited with status {process.returncode}:\n{detail}"
        return ""

    lock_out = workdir / "pylock.toml"
    annotated_out = workdir / "requirements.txt.out"
    _seed_preferences(job, lock_out, annotated_out)
    pulled_in: list[str] = []
    for _ in range(3):  # each round can only add family members; a few suffice
        failure = run(compile_command(["--emit-index-annotation", "-o", str(annotated_out)], pulled_in))
        if failure:
            return None, failure
        elsewhere = family_from_elsewhere(
            annotated_out.read_text(encoding="utf-8"), plan.family_names, plan.decision.index_url
        )
        if not elsewhere or set(elsewhere) <= set(pulled_in):
            break
        pulled_in = sorted({*pulled_in, *elsewhere})
    failure = run(compile_command(["--format", "pylock.toml", "-o", str(lock_out)], pulled_in))
    if failure:
        return None, failure
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


_UV_INDEX_VARIABLES = ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "UV_INDEX", "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS")


def user_index_args(env: Mapping[str, str]) -> list[str]:
    """uv options for the indexes a pip user has configured, when uv has none of its own.

    ``lock`` resolves with uv, but a team that installs with pip keeps its mirror in
    ``PIP_INDEX_URL`` or ``pip.conf``; the lock must come from that mirror, not pypi.org.
    uv's own settings (``UV_*`` variables, ``uv.toml``) win when present. pip merges all
    its indexes and takes the best version from any of them, so the translation does too
    (the torch family is routed by name and unaffected).
    """
    if any(env.get(name) for name in _UV_INDEX_VARIABLES):
        return []
    settings = pip_index_settings(env)
    args: list[str] = []
    if settings.get("index-url"):
        args += ["--default-index", settings["index-url"][0]]
    for url in settings.get("extra-index-url", []):
        args += ["--index", url]
    for link in settings.get("find-links", []):
        args += ["--find-links", link]
    if settings.get("extra-index-url"):
        args += ["--index-strategy", "unsafe-best-match"]
    return args


def pip_index_settings(env: Mapping[str, str]) -> dict[str, list[str]]:
    """pip's ``index-url``, ``extra-index-url`` and ``find-links``, from its files and variables.

    Read as pip documents it (pip.pypa.io, "Configuration"): the global, user and
    site files in that order, ``PIP_CONFIG_FILE`` last (``os.devnull``: none at all), each
    file's ``[install]`` section over its ``[global]`` one, and ``PIP_*`` variables over all.
    """
    import configparser

    chosen = env.get("PIP_CONFIG_FILE")
    files: list[Path] = []
    if chosen != os.devnull:
        xdg_dirs = env.get("XDG_CONFIG_DIRS", "/etc/xdg").split(os.pathsep)
        files += [Path(d) / "pip" / "pip.conf" for d in xdg_dirs] + [Path("/etc/pip.conf")]
        home = Path(env.get("HOME", str(Path.home())))
        files += [home / ".pip" / "pip.conf"]
        files += [Path(env.get("XDG_CONFIG_HOME", str(home / ".config"))) / "pip" / "pip.conf"]
        if env.get("VIRTUAL_ENV"):
            files.append(Path(env["VIRTUAL_ENV"]) / "pip.conf")
        if chosen:
            files.append(Path(chosen))
    settings: dict[str, list[str]] = {}
    for path in files:
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue
        for section in ("global", "install"):
            if parser.has_section(section):
                for key in ("index-url", "extra-index-url", "find-links"):
                    if parser.has_option(section, key):
                        settings[key] = parser.get(section, key).split()
    for key in ("index-url", "extra-index-url", "find-links"):
        value = env.get("PIP_" + key.upper().replace("-", "_"))
        if value:
            settings[key] = value.split()
    return settings


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
    if not _covers(lock, host):
        return f"it is locked for {', '.join(map(str, record.covered))} and this host is {_target_of(host)}"
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


def _covers(lock: LockFile, host: HostProfile) -> bool:
    """The lock is resolved for this host's platform, architecture and Python."""
    return _target_of(host) in lock.record.covered


def _not_covered(family: Sequence[LockFile], host: HostProfile, directory: Path) -> UsageError:
    """No lock of the family is resolved for this host's target: which are, and the command
    that adds this one (every combination of the flags is locked, the old targets included)."""
    here = _target_of(host)
    covered = sorted({t for lock in family for t in lock.record.covered})
    requested = sorted({*family[0].record.inputs.targets, here})
    flags = [f"--platform {o}" for o in sorted({t.os for t in requested})]
    arches = sorted({t.arch for t in requested})
    if len(arches) > 1 or arches != [_target_of(host).arch]:
        flags += [f"--arch {a}" for a in arches]
    flags += [f"--python-version {v}" for v in sorted({t.python_version for t in requested})]
    where = "" if directory.resolve() == Path.cwd().resolve() else f" --output-dir {directory}"
    return UsageError(
        f"the locks in {directory} cover {', '.join(map(str, covered))}, not this host ({here})",
        f"add it: pip-gpu lock {' '.join(flags)}{where}",
    )


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
verify = set(json.loads(sys.argv[1])) if len(sys.argv) > 1 else set()
dists, broken = {}, {}
for dist in md.distributions():
    name = dist.metadata["Name"]
    # pip renames a folder it is replacing to "~orch-..." and leaves it when killed: not torch
    if not name or os.path.basename(str(getattr(dist, "_path", ""))).startswith("~"):
        continue
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in dists:
        continue
    dists[key] = dist.version
    if key not in verify:
        continue
    missing = changed = total = 0
    for entry in dist.files or ():
        if "__pycache__" in entry.parts:
            continue
        total += 1
        try:
            size = os.stat(entry.locate()).st_size
        except OSError:
            missing += 1
            continue
        if entry.size is not None and size != entry.size:
            changed += 1
    if dist.files is None:
        broken[key] = "its RECORD is missing"
    elif missing or changed:
        broken[key] = (
            f"{missing} of its {total} files are missing and {changed} differ in size from its RECORD"
        )
print(json.dumps({"env": env, "dists": dists, "broken": broken}))
"""


@dataclass(frozen=True)
class _Installed:
    """The target's PEP 508 marker values and its installed distributions."""

    env: dict[str, str]
    dists: dict[str, str]
    broken: dict[str, str] = field(default_factory=dict)  # name -> how its files differ from RECORD


def _probe_installed(python: Path, verify: Sequence[str] = ()) -> _Installed:
    """Marker values and distributions of the target; ``verify``: check those against RECORD."""
    try:
        done = subprocess.run(
            [str(python), "-I", "-c", _ENV_PROBE, json.dumps(sorted(verify))],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PipGpuError(
            f"{python} did not list its installed packages within {PROBE_TIMEOUT_S} s",
            "check that it is a working Python interpreter (--python)",
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot run {python}: {exc.strerror or exc}", "check --python") from None
    try:
        data = json.loads(done.stdout)
        return _Installed(
            env={str(k): str(v) for k, v in data["env"].items()},
            dists={str(k): str(v) for k, v in data["dists"].items()},
            broken={str(k): str(v) for k, v in data["broken"].items()},
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        detail = done.stderr.strip() or f"it printed {done.stdout.strip()[:80]!r}"
        raise PipGpuError(
            f"could not read the installed packages of {python}: {detail}",
            "check that it is a working Python interpreter (--python)",
        ) from None


def _reread(target: TargetEnv, before: _Installed) -> _Installed:
    """The distributions after an install, read from site-packages: no interpreter started."""
    if not target.site_packages:
        return _probe_installed(target.python)
    from importlib import metadata

    dists: dict[str, str] = {}
    for dist in metadata.distributions(path=[str(p) for p in target.site_packages]):
        name = dist.metadata["Name"]
        if name and not os.path.basename(str(getattr(dist, "_path", ""))).startswith("~"):
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


def differences(
    lock: LockFile, installed: _Installed, names: Optional[frozenset[str]] = None, *, runs_here: bool = True
) -> list[str]:
    """Each way the environment differs from the lock, in words; ``names`` limits the packages.

    ``runs_here``: the lock is the one chosen for this host (else only the one the environment
    was synced from, and it is not called this machine's).
    """
    wanted = {
        str(p.name): str(p.version) if p.version is not None else None
        for p in _selected(lock, installed.env)
        if names is None or p.name in names
    }
    have = {
        name: version
        for name, version in installed.dists.items()
        # pip, setuptools and wheel come with a venv: they count only where the lock lists them
        # (torch itself requires setuptools on some Pythons)
        if (names is None and (name not in _SEED_PACKAGES or name in wanted))
        or (names is not None and name in names)
    }
    this = f"the lock for this machine ({lock.path.name})" if runs_here else lock.path.name
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


def _target_and_host(args: argparse.Namespace, installing: bool = False) -> tuple[TargetEnv, HostProfile]:
    from ..cli.flags import host_from_args

    target = find_target(args.python, Path.cwd(), os.environ, system=args.system, installing=installing)
    if args.python_version is None:
        args.python_version = target.python_version
    return target, host_from_args(args)


# --- sync ------------------------------------------------------------------------------------


def run_sync(args: argparse.Namespace) -> int:
    from ..installers import choose_installer, run_command

    directory = (Path.cwd() / args.lock_dir) if args.lock_dir else Path.cwd()
    family = _read_family(directory)
    target, host = _target_and_host(args, installing=True)
    knowledge = load_knowledge()
    stale = _stale(family, directory)
    if stale and args.locked:
        raise UsageError(
            "--locked: " + "; ".join(stale), "re-resolve with pip-gpu lock, or sync without --locked"
        )
    for reason in stale:
        _say(f"pip-gpu: warning: {reason}")
    covering = [lock for lock in family if _covers(lock, host)]
    if not covering:
        refused = _not_covered(family, host, directory)
        raise UsageError(f"{refused.message}; nothing was changed", refused.hint)
    choice = choose_lock(covering, host, knowledge, directory)
    if choice.lock is None:
        raise _no_variant_runs(covering, host, knowledge, directory)
    lock = choice.lock
    installer = choose_installer(args.installer, load_project_config(directory).installer, target)
    installed = _probe_installed(target.python)
    _check_environments(lock, installed)
    _check_sources(lock, lock.pylock.packages, knowledge)  # every package, before anything changes
    _say(
        f"pip-gpu: target {target.python} (Python {target.python_version}, from {target.chosen_by})\n"
        f"pip-gpu: this host runs {lock.variant}: installing {lock.path.name} with {installer}"
    )
    record = {
        "lock-dir": str(directory.resolve()),
        "lock-file": lock.path.name,
        "lock-sha256": lock.sha256,
        "variant": lock.variant,
        "inputs-digest": lock.record.inputs_digest,
        "installer": installer,
        "pip-gpu-version": __version__,
    }
    # Until the installed result is verified, the record says the sync has not finished:
    # `check` and `doctor` never call an environment a failed or killed sync left behind OK.
    previous = _read_sync_record_bytes(target.prefix)
    _write_sync_record(target.prefix, {**record, "finished": False})
    try:
        if installer == "uv":
            from ..installers import uv_binary

            run_command(
                InstallerCommand(
                    argv=(uv_binary(), "pip", "sync", "--python", str(target.python), str(lock.path)),
                    purpose=f"uv: installing exactly {lock.path.name}",
                )
            )
        else:
            _pip_sync(lock, target, installed, run_command)
    except BaseException:
        # An installer that failed before changing anything (a bad hash, an index down) leaves
        # the environment as it was: then the old record is put back too.
        if _reread(target, installed).dists == installed.dists:
            _restore_sync_record(target.prefix, previous)
        raise
    after = _reread(target, installed)
    problems = differences(lock, after)
    if problems:
        raise PipGpuError(
            f"after installing {lock.path.name}: " + "; ".join(problems),
            f"{target.prefix} is left as the installer left it and pip-gpu check reports it; "
            "fix the index or the lock, then run pip-gpu sync again",
        )
    _write_sync_record(target.prefix, {**record, "finished": True})
    torch = next((p for p in _selected(lock, after.env) if p.name == "torch"), None)
    what = f"torch {torch.version}" if torch is not None else lock.variant
    _say(f"pip-gpu: synced {target.prefix} to {lock.path.name} ({what})")
    return EXIT_OK


def _write_sync_record(prefix: Path, record: Mapping[str, Any]) -> None:
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    write_atomically(prefix / SYNC_RECORD, text.encode("utf-8"))


def _read_sync_record_bytes(prefix: Path) -> Optional[bytes]:
    try:
        return read_regular_file(prefix / SYNC_RECORD, 2**20)
    except OSError:
        return None


def _restore_sync_record(prefix: Path, previous: Optional[bytes]) -> None:
    with contextlib.suppress(OSError, PipGpuError):
        if previous is None:
            (prefix / SYNC_RECORD).unlink()
        else:
            write_atomically(prefix / SYNC_RECORD, previous)


def _unfinished_sync(prefix: Path) -> Optional[str]:
    """Why the last ``sync`` into ``prefix`` did not finish, or None when it did (or none ran)."""
    try:
        record = json.loads(read_regular_file(prefix / SYNC_RECORD, 2**20).decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return f"{SYNC_RECORD} in {prefix} cannot be read ({exc})"
    if isinstance(record, dict) and record.get("finished", True) is False:
        return (
            f"the last pip-gpu sync into {prefix} ({record.get('lock-file')}) did not finish: "
            "it failed or was interrupted"
        )
    return None


def _foreign_sources(lock: LockFile, packages: Sequence[Package], knowledge: Knowledge) -> list[str]:
    """Files that do not come from the indexes the lock records, in words: see
    :func:`pip_gpu.lockfile.lock_problems`."""
    return lock_problems(packages, lock.record, [m.name for m in knowledge.family])


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
    runs_here: bool = True  # False: no locked build runs on this host (sync refuses too)

    @property
    def ok(self) -> bool:
        return not self.differences


def check_environment(directory: Path, target: TargetEnv, host: HostProfile) -> LockCheck:
    """Compare an environment with the lock chosen for ``host`` (``check`` and ``doctor``)."""
    if not find_lock_family(directory) and (directory / "uv.lock").is_file():
        from ..shim.uv_guard import check_uv_project

        uv = check_uv_project(directory, target.python, host)
        return LockCheck(directory / "uv.lock", uv.variant, uv.problems, uv.installed, uv.fix)
    family = _read_family(directory)
    knowledge = load_knowledge()
    family_names = frozenset(canonicalize_name(m.name) for m in knowledge.family)
    locked = {canonicalize_name(str(p.name)) for lock in family for p in lock.pylock.packages}
    installed = _probe_installed(target.python, verify=sorted(locked | family_names))
    problems = list(_stale(family, directory))
    unfinished = _unfinished_sync(target.prefix)
    if unfinished:
        problems.append(unfinished)
    covering = [lock for lock in family if _covers(lock, host)]
    choice = choose_lock(covering, host, knowledge, directory) if covering else None
    lock = choice.lock if choice else None
    runs_here = lock is not None
    fix = "pip-gpu sync"
    if not covering:
        refused = _not_covered(family, host, directory)
        fix = str(refused.hint)
        problems.append(f"{refused.message}; {refused.hint}")
    elif lock is None:
        # As sync decides: no lock is meant for this host. Say so, and compare with the lock
        # the environment came from, without calling it this machine's.
        refusal = _no_variant_runs(covering, host, knowledge, directory)
        fix = refusal.hint or refusal.message
        lock = _lock_meant_for(family, installed, target.prefix)
        for candidate in family if lock is None else [lock]:
            problems.append(f"the lock pins {candidate.variant} but {_why_not(candidate, host, knowledge)}")
        if lock is None:
            problems.append(str(refusal.hint))
    if lock is not None:
        problems.extend(
            f"{lock.path.name}: {p}" for p in _foreign_sources(lock, lock.pylock.packages, knowledge)
        )
        # every package: a removed dependency or an added one is a difference too
        problems.extend(differences(lock, installed, runs_here=runs_here))
        problems.extend(
            f"{name} {installed.dists.get(name, '')} is damaged: {why}; reinstall it with pip-gpu sync"
            for name, why in sorted(installed.broken.items())
        )
    return LockCheck(
        lock_file=lock.path if lock else None,
        variant=lock.variant if lock else None,
        differences=tuple(problems),
        installed={n: v for n, v in sorted(installed.dists.items()) if n in family_names},
        fix=fix,
        runs_here=runs_here,
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
            "lock_runs_here": result.runs_here,
            "fix": None if result.ok else result.fix,
        }
        print(json.dumps(data, indent=2))
    elif not result.runs_here:
        print(f"pip-gpu check: no lock in {directory} runs on this host (pip-gpu sync refuses too):")
        for problem in result.differences:
            print(f"  - {problem}")
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


def write_back_after_install(
    requirements: Sequence[str], requirement_files: Sequence[str], plan: Plan, host: HostProfile, cwd: Path
) -> None:
    """After ``pip-gpu install`` in a folder with a lock family: add the new requirements to
    the recorded inputs and re-resolve every variant file."""
    family = find_lock_family(cwd)
    if not family:
        return
    recorded = family[0].record.inputs
    requirement_args = _merged(list(recorded.requirements), list(requirements))
    new_files = (_relative(cwd / f, cwd) for f in requirement_files)
    files = list(dict.fromkeys([*(p for p, _ in recorded.files), *new_files]))
    new_inputs = replace(
        recorded,
        requirements=tuple(strip_credentials(r) for r in requirement_args),
        files=tuple((f, _file_lines(cwd / f)) for f in files),
    )
    if all(lock.record.inputs_digest == new_inputs.digest() for lock in family):
        _say(f"pip-gpu: the locks in {cwd} already record these requirements")
        return
    _say(f"pip-gpu: re-locking {', '.join(lock.path.name for lock in family)} (--no-lock skips this)")
    try:
        relock(
            directory=cwd,
            requirement_args=requirement_args,
            files=files,
            variants=sorted({lock.variant for lock in family}, key=variant_sort_key),
            host=_host_for(host, recorded.targets[0]),
            pytorch_index=plan.pytorch_index,
            cwd=cwd,
            knowledge=plan.knowledge,
            targets=recorded.targets,
        )
    except PipGpuError as error:
        stale = PipGpuError(
            f"installed, but the lock files were not updated: {error.message}",
            "fix the cause and run pip-gpu lock (the locks are now stale), or pass --no-lock",
        )
        stale.exit_code = error.exit_code  # a full disk stays an environment fault (74)
        raise stale from None


def _merged(recorded: list[str], new: list[str]) -> list[str]:
    """The recorded requirements with the new ones added; a new one replaces the same project."""

    def name_of(text: str) -> str:
        try:
            return str(canonicalize_name(Requirement(text).name))
        except InvalidRequirement:
            return text

    new_names = {name_of(text) for text in new}
    return [text for text in recorded if name_of(text) not in new_names] + list(dict.fromkeys(new))
