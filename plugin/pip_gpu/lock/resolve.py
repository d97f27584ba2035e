"""``pip-gpu lock``: resolve the whole environment once per variant and write the lock files.

``lock`` resolves with uv (``uv pip compile --format pylock.toml``), routed as ``pip-gpu
install`` routes (the torch family from the variant index, declared explicit; everything else
from the user's indexes, pip's configuration included when uv has none), for the target
Python and platform, and writes one standard PEP 751 file per variant through
:mod:`pip_gpu.lockfile`. ``sync`` and ``check`` (:mod:`pip_gpu.lock.sync`) install and
compare them.
"""

from __future__ import annotations

import contextlib
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

from packaging.markers import UndefinedComparison, UndefinedEnvironmentName
from packaging.pylock import Package
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .. import __version__
from ..children import (
    finished,
    private_command,
    signal_of,
    start,
    stop_all,
    wait_within,
)
from ..config import load_project_config
from ..decide.plan import (
    Plan,
    RequestLines,
    decide_for,
    read_request,
    rewrite_pins,
)
from ..decide.rules import request_from_requirements
from ..detect.target import target_python_version
from ..errors import (
    NoBuildRuns,
    PipGpuError,
    UsageError,
)
from ..host import HostFlags, HostProfile, format_compute_capability
from ..knowledge import Knowledge, load_knowledge
from ..lockfile import (
    LockFile,
    LockInputs,
    LockRecord,
    LockTarget,
    find_lock_family,
    load_toml,
    lock_document,
    lock_path,
    merge_resolutions,
    read_lock,
    recorded_lines,
    render_lock,
    strip_credentials,
    write_locks,
)
from ..private import private_scratch
from ..requirements import (
    redact_url,
)
from ..route import InstallerCommand, Routing, uv_command
from ..variant import channel_index, parse_variant, variant_index_url
from .choose import (
    combine_targets,
    environment_marker,
    family_gaps,
    host_at,
    marker_values,
    platform_marker,
    target_of,
)

__all__ = [
    "LockOptions",
    "LockReport",
    "lock",
    "published_variants",
    "relock",
    "user_index_args",
    "write_back_after_install",
]

# uv's --python-platform for each platform key of the knowledge file.
_UV_PLATFORMS = {
    "linux-x86_64": "x86_64-unknown-linux-gnu",
    "linux-aarch64": "aarch64-unknown-linux-gnu",
    "windows-x86_64": "x86_64-pc-windows-msvc",
    "windows-aarch64": "aarch64-pc-windows-msvc",
    "macos-arm64": "aarch64-apple-darwin",
    "macos-x86_64": "x86_64-apple-darwin",
}


@dataclass(frozen=True)
class LockOptions:
    """``pip-gpu lock``: what to lock, for which variants and targets, and where."""

    cwd: Path
    requirements: tuple[str, ...] = ()
    requirement_files: tuple[str, ...] = ()  # relative to cwd
    variants: Optional[str] = None  # "auto" | "all" | "cu121,cu124,cpu"; None: --variant, else auto
    variant: Optional[str] = None  # --variant: one variant
    output_dir: Optional[str] = None
    fleet: tuple[str, ...] = ()  # node files: lock what their fleet plan names
    upgrade: bool = False
    upgrade_packages: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()  # every combination of these is a target
    arches: tuple[str, ...] = ()
    python_versions: tuple[str, ...] = ()
    pytorch_index: Optional[str] = None
    host: HostFlags = field(default_factory=HostFlags)  # the GPU facts; targets come from above
    channel: Optional[str] = None  # --channel: the locks' base is <index>/nightly or <index>/test


def _variant_order(name: str) -> tuple[int, tuple[int, ...]]:
    return parse_variant(name).sort_key


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
    pre_routed: tuple[str, ...] = ()  # family members to route before the resolution shows them
    # Family members the reading's resolution shows coming with exactly pinned ones (torch's
    # triton), each with (the pinned member, its version there): routed in the first uv run,
    # kept only when the lock holds those versions too (:func:`_from_the_reading`).
    from_reading: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()


def _lock_targets(
    options: LockOptions, recorded: Optional[LockInputs], host: HostProfile
) -> list[LockTarget]:
    """What to lock for: every combination of the flags' values; a dimension no flag names
    comes from ``[tool.pip-gpu] targets``, else the recorded targets, else this host (and the
    target interpreter's Python)."""
    configured = load_project_config(options.cwd).targets
    if configured:
        base = [LockTarget.parse(t, "[tool.pip-gpu] targets") for t in configured]
    elif recorded is not None:
        base = list(recorded.targets)
    else:
        python = target_python_version(options.cwd, os.environ)
        base = [LockTarget.make(host.os, host.arch, python, "this host")]
    return combine_targets(base, options.platforms, options.arches, options.python_versions, host)


@dataclass(frozen=True)
class LockReport:
    """The lock files ``lock`` wrote (or found unchanged), one per variant."""

    files: tuple[LockFile, ...]

    def to_json(self) -> dict[str, Any]:
        """``lock --json``: each file with its variant, torch, CUDA, packages and targets."""
        return {
            "locks": [
                {
                    "file": str(lock.path),
                    "variant": lock.variant,
                    "torch": lock.record.torch,
                    "cuda": lock.record.cuda,
                    "index": lock.record.index,
                    "packages": len({p.name for p in lock.pylock.packages}),
                    "targets": [str(t) for t in lock.record.covered],
                    "not_covered": {str(t): why for t, why in lock.record.not_covered},
                }
                for lock in self.files
            ]
        }


def lock(options: LockOptions) -> LockReport:
    """Resolve and write ``pylock.<variant>.toml`` for each variant the options name."""
    from ..detect import host_for

    cwd = options.cwd
    directory = (cwd / options.output_dir) if options.output_dir else cwd
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # Refused now, before minutes of resolving: a folder that takes no new file (/proc, a
        # read-only filesystem) fails only when the locks are written otherwise.
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".pip-gpu-", suffix=".probe"):
            pass
    except OSError as exc:
        raise UsageError(
            f"--output-dir {options.output_dir or directory}: cannot use it for lock files: "
            f"{exc.strerror or exc}",
            "name a folder you can write to (it is created when missing)",
        ) from None
    family = find_lock_family(directory)
    recorded = family[0].record.inputs if family else None
    if options.requirements or options.requirement_files:
        requirement_args = list(options.requirements)
        files = [_relative(cwd / path, directory) for path in options.requirement_files]
    elif recorded is not None:
        requirement_args = list(recorded.requirements)
        files = [path for path, _ in recorded.files]
    else:
        raise UsageError(
            f"nothing to lock: no requirements given and no pip-gpu lock in {directory}",
            "name requirements, e.g. pip-gpu lock -r requirements.in",
        )
    # The GPU facts come from the flags or this machine; the targets are chosen below.
    this_host = host_for(replace(options.host, platform=None, arch=None, python_version=None))
    targets = _lock_targets(options, recorded, this_host)
    pytorch_index = options.pytorch_index
    configured_index = os.environ.get("PIP_GPU_PYTORCH_INDEX") or load_project_config(cwd).pytorch_index
    if pytorch_index is None and not configured_index and recorded is not None and recorded.pytorch_index:
        pytorch_index = recorded.pytorch_index  # a re-lock reads the index it recorded
    channel = options.channel or _recorded_channel(recorded.pytorch_index if recorded else None)
    if channel not in (None, "stable"):  # the channel's folder is the base the locks record
        base = pytorch_index or configured_index or load_knowledge().pytorch_index
        pytorch_index = channel_index(base, channel)
    host = host_at(this_host, targets[0])
    knowledge = load_knowledge()
    if options.fleet:
        if options.variants or options.variant:
            raise UsageError(
                "--fleet chooses the variants itself", "drop --variants/--variant, or drop --fleet"
            )
        variants = _fleet_variants(
            options.fleet, requirement_args, files, directory, host, pytorch_index, cwd
        )
        request = read_request(requirement_args, [str(directory / f) for f in files], cwd)
    else:
        # Read once: every decision below (one per variant and target) uses these lines.
        request = read_request(requirement_args, [str(directory / f) for f in files], cwd)
        variants = _variants_to_lock(
            options.variants or options.variant or "auto",
            request,
            host,
            pytorch_index,
            family,
            targets,
            cwd,
        )
    written = relock(
        directory=directory,
        requirement_args=requirement_args,
        files=files,
        variants=variants,
        host=host,
        pytorch_index=pytorch_index,
        cwd=cwd,
        knowledge=knowledge,
        targets=targets,
        upgrade=options.upgrade,
        upgrade_packages=options.upgrade_packages,
        request=request,
    )
    new_digest = written[0].record.inputs_digest if written else None
    for other in find_lock_family(directory, known=written):
        if other.variant not in variants and other.record.inputs_digest != new_digest:
            _say(
                f"pip-gpu: note: {other.path.name} was locked from other inputs and is now stale; "
                f"add {other.variant} to --variants to re-resolve it"
            )
    return LockReport(tuple(written))


def _lock_context(family_indexes: Sequence[str] = ()) -> Any:
    """issue 13: what the other requirements need of torch counts for a lock too (read by uv,
    the family from ``family_indexes``: the locked variants' indexes, so that one reading
    serves every variant and target); nothing installed is preferred."""
    from ..decide.resolution import ResolutionContext, index_args_for

    return ResolutionContext(
        python=Path(sys.executable),
        index_args=index_args_for("uv", (), os.environ),  # the one rule: uv's indexes, else pip's
        prefer_installed=False,
        strict=False,  # uv's own resolution reports what does not resolve
        family_indexes=tuple(family_indexes),
    )


def _relative(path: Path, directory: Path) -> str:
    return Path(os.path.relpath(path.resolve(), directory.resolve())).as_posix()


def _recorded_channel(recorded_index: Optional[str]) -> Optional[str]:
    """The channel a lock was made on: its recorded base ends in ``/nightly`` or ``/test``."""
    from urllib.parse import urlsplit

    folder = urlsplit(recorded_index or "").path.rstrip("/").rsplit("/", 1)[-1]
    return folder if folder in ("nightly", "test") else None


def _variants_to_lock(
    choice: str,
    request: RequestLines,
    host: HostProfile,
    pytorch_index: Optional[str],
    family: Sequence[LockFile],
    targets: Sequence[LockTarget],
    cwd: Path,
) -> list[str]:
    if choice not in ("auto", "all"):
        variants = [parse_variant(v).name for v in choice.split(",") if v.strip()]
        if not variants:
            raise UsageError(f"--variants {choice!r} names no variant", "e.g. --variants cu121,cu124,cpu")
        return sorted(set(variants), key=_variant_order)
    plan = decide_for(
        (), (), host, pytorch_index=pytorch_index, cwd=cwd, context=_lock_context(), request_lines=request
    )
    if choice == "all":
        published: set[str] = set()
        for target in targets or [target_of(host)]:
            with contextlib.suppress(UsageError):  # a target nothing is published for: noted later
                published.update(published_variants(plan, host_at(host, target)))
        if not published:
            return published_variants(plan, host)  # the error, in words
        return sorted(published, key=_variant_order)
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
    return sorted(found, key=_variant_order)


def _fleet_variants(
    node_files: Sequence[str],
    requirement_args: list[str],
    files: Sequence[str],
    directory: Path,
    host: HostProfile,
    pytorch_index: Optional[str],
    cwd: Path,
) -> list[str]:
    """The variants a fleet plan names; the requirements gain the plan's one torch release so
    that every variant's lock holds the same torch (and a re-lock reproduces it)."""
    from ..fleet import FleetPlanOptions, make_fleet_plan

    plan = make_fleet_plan(
        FleetPlanOptions(
            requirements=tuple(requirement_args),
            requirement_files=tuple(str(directory / f) for f in files),
            node_files=tuple(Path(p) for p in node_files),
            python_version=host.python_version,
            pytorch_index=pytorch_index,
            cwd=cwd,
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
    return sorted(plan.variants, key=_variant_order)


def published_variants(plan: Plan, host: HostProfile) -> list[str]:
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
            return sorted(set(variants), key=_variant_order)
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
    request: Optional[RequestLines] = None,
) -> list[LockFile]:
    """Decide, resolve (concurrently, once per variant and target) and write
    ``pylock.<variant>.toml`` for each variant, covering every target it is published for.

    Without ``upgrade``, each resolution prefers the versions the variant's current lock holds
    for that target. Nothing is written unless every covered target of every variant resolves.
    ``request``: ``requirement_args`` and ``files`` already read (they are read here otherwise).
    """
    from ..installers import uv_binary

    knowledge = knowledge or load_knowledge()
    targets = sorted(set(targets)) or [target_of(host)]
    for target in targets:
        if target.platform not in _UV_PLATFORMS:
            raise UsageError(f"cannot lock for {target.platform}", "use --platform linux, windows or macos")
    if request is None:
        request = read_request(requirement_args, [str(directory / f) for f in files], cwd)
    current = {lock.variant: lock for lock in find_lock_family(directory)} if not upgrade else {}
    jobs: list[_Job] = []
    not_covered: dict[str, list[tuple[LockTarget, str]]] = {}
    refused: list[str] = []
    base = decide_for((), (), host, pytorch_index=pytorch_index, cwd=cwd, knowledge=knowledge).pytorch_index
    context = _lock_context([url for v in variants if (url := variant_index_url(base, v))])
    for variant in variants:
        for target in targets:
            plan = decide_for(
                (),
                (),
                host_at(host, target),
                variant=variant,
                force=True,  # a lock is for the fleet: the build must exist, not run here
                pytorch_index=pytorch_index,
                cwd=cwd,
                knowledge=knowledge,
                context=context,
                request_lines=request,
            )
            if plan.decision.ok:
                jobs.append(
                    _Job(variant, plan, host_at(host, target), target, current.get(variant), len(targets) > 1)
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
        files=tuple((f, recorded_lines(read.lines)) for f, read in zip(files, request.files)),
        targets=tuple(targets),
        pytorch_index=strip_credentials(jobs[0].plan.pytorch_index) if jobs else "",
    )
    if not upgrade_packages:
        # A re-lock of the same inputs resolves as before: the family members the last lock
        # took from the variant index (torch's triton) are routed at once, in one uv run.
        jobs = [
            replace(job, pre_routed=_family_locked_for(job))
            if job.previous is not None and job.previous.record.inputs_digest == inputs.digest()
            else job
            for job in jobs
        ]
    # The reading (one uv run, for the whole request) already shows which family members torch
    # brings in: where it read this very variant index for this very environment, they are
    # routed at once, not found from a first lock run and resolved again.
    jobs = [
        replace(job, from_reading=_from_the_reading(job, context.family_indexes))
        if not job.pre_routed
        else job
        for job in jobs
    ]
    upgrade_args = ["--upgrade"] if upgrade else []
    upgrade_args += [arg for name in upgrade_packages for arg in ("--upgrade-package", name)]
    uv = uv_binary()
    workers = max(1, min(len(jobs), 4))
    with private_scratch("lock") as scratch, ThreadPoolExecutor(workers) as pool:
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
                    (platform_marker(job.host), job.target.python_version),
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
        document = lock_document(merged, {}, record, [environment_marker(job.host) for job, _ in parts])
        texts.append((lock_path(directory, variant), render_lock(document)))
        merged_by_variant.append(merged)
    # every file, or (a full disk, or a lock sync would refuse) none
    family = [m.name for m in knowledge.family]
    _check_family_contents(
        [(path, merged) for (path, _), merged in zip(texts, merged_by_variant)],
        frozenset(canonicalize_name(name) for name in family),
        [job.plan.pytorch_index for job in jobs],
    )
    changed = write_locks(
        texts, family, lambda packages, record: family_gaps(packages, record.covered, family)
    )
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


def _with_credentials_of(url: str, indexes: Sequence[str]) -> str:
    """``url`` with the user and password of the index on its origin (the lock holds none)."""
    from urllib.parse import quote

    from ..redact import split_userinfo, url_origin

    for index in indexes:
        bare, _, user, password = split_userinfo(index)
        if (user or password) and url_origin(bare) == url_origin(url):
            scheme, _, rest = url.partition("://")
            return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{rest}"
    return url


def _check_family_contents(
    documents: Sequence[tuple[Path, Mapping[str, Any]]], family: frozenset[str], indexes: Sequence[str]
) -> None:
    """Refuse to write a lock whose family wheels hold another project or version than their
    entry says (a ``+cpu`` torch behind a ``+cu124`` file name), as ``sync --installer pip``
    refuses it after downloading: each wheel's own METADATA is read from the index first
    (range requests: a few kB of a 2 GB wheel)."""
    from ..decide.index import IndexError_, wheel_metadata

    wheels = [
        (path, str(package["name"]), str(package.get("version", "")), wheel)
        for path, document in documents
        for package in document.get("packages", [])
        if canonicalize_name(str(package.get("name", ""))) in family
        for wheel in package.get("wheels", [])
        if wheel.get("url")
    ]

    def read(item: tuple[Path, str, str, Mapping[str, Any]]) -> Optional[str]:
        path, name, version, wheel = item
        url = str(wheel["url"])
        shown = str(wheel.get("name") or url.rsplit("/", 1)[-1])
        try:
            found_name, found_version = wheel_metadata(
                _with_credentials_of(url, indexes), sha256=(wheel.get("hashes") or {}).get("sha256")
            )
        except IndexError_ as exc:
            return f"{path.name}: {name}'s file {shown}: {exc.message}"
        try:
            same_version = Version(found_version) == Version(version)
        except InvalidVersion:
            same_version = False
        if canonicalize_name(found_name) != canonicalize_name(name) or not same_version:
            return (
                f"{path.name}: {name}'s file {shown} holds {found_name or '?'} {found_version or '?'}, "
                f"not {name} {version}"
            )
        return None

    if not wheels:
        return
    from ..ui import progress

    # A few kB each by range; a whole wheel from a server that takes no ranges: it can take a while.
    what = f"reading the metadata of {len(wheels)} torch-family wheels from the variant index"
    with progress(what), ThreadPoolExecutor(min(8, len(wheels))) as pool:
        problems = [problem for problem in pool.map(read, wheels) if problem]
    if problems:
        from ..ui import some_of

        shown = some_of(problems)
        raise PipGpuError(
            f"refusing to write the locks: {shown}",
            "the index serves files that are not what their names say (check the index and "
            "--pytorch-index); nothing was written",
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


def _resolve_shown(
    job: _Job, uv: str, upgrade_args: Sequence[str], workdir: Path
) -> tuple[Optional[dict[str, Any]], str]:
    """``_resolve`` with progress on a terminal when it takes more than a second."""
    from ..ui import progress

    with progress(f"resolving {job.variant}" + (f" for {job.target}" if job.one_of_several else "")):
        return _resolve(job, uv, upgrade_args, workdir)


def _previous_packages(job: _Job) -> list[Package]:
    """The packages the variant's current lock holds for the job's target."""
    if job.previous is None:
        return []
    values = dict(marker_values(job.host), extra="")
    chosen = []
    for package in job.previous.pylock.packages:
        with contextlib.suppress(UndefinedComparison, UndefinedEnvironmentName):  # not for this target
            if package.marker is None or package.marker.evaluate(values):
                chosen.append(package)
    return chosen


def _family_locked_for(job: _Job) -> tuple[str, ...]:
    """The torch-family members the variant's current lock holds for the job's target."""
    names = {canonicalize_name(str(p.name)) for p in _previous_packages(job)}
    return tuple(sorted(names & job.plan.family_names))


def _from_the_reading(
    job: _Job, reading_indexes: Sequence[str]
) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """The family members the reading's resolution (``Plan.reading``) takes from the variant
    index only because exactly pinned family members require them (torch==2.5.1+cu124 ->
    triton), with those members' versions there.

    Only where that reading is this lock's own question: the family from this variant's index
    alone, for the environment of the interpreter that ran it (the job's platform, machine and
    Python). A member pinned to one version requires the same packages in the same
    environment, so the lock's first run would find them taken from elsewhere and run again
    with them routed (:func:`_resolve`); routed at once, that second run is the only one.
    """
    from packaging.markers import default_environment

    from ..decide.resolution import parse_resolution
    from ..requirements import exact_version_of, rewrite_line

    plan = job.plan
    if not plan.reading or tuple(reading_indexes) != (plan.decision.index_url,):
        return ()
    here = default_environment()
    systems = {"linux": "Linux", "macos": "Darwin", "windows": "Windows"}
    if (
        here["python_version"] != job.target.python_version
        or here["platform_system"] != systems.get(job.target.os)
        or here["platform_machine"] != job.target.arch
    ):
        return ()
    pins = rewrite_pins(plan)
    named = {line.name for line in plan.lines if line.name in plan.family_names and not line.constraint}
    exact: dict[str, Version] = {}
    for line in plan.lines:
        if line.name in named and line.requirement is not None and line.link is None:
            version = exact_version_of(rewrite_line(line, pins).requirement or line.requirement)
            if version is not None:
                exact[line.name] = version
    found: list[tuple[str, tuple[tuple[str, str], ...]]] = []
    entries = parse_resolution(plan.reading)
    versions = {name: version for name, how, version, _, _ in entries if name and how == "=="}
    for name, _, _, via, _ in entries:
        if not name or name not in plan.family_names or name in named:
            continue
        requirers = [canonicalize_name(v.split(" ", 1)[0]) for v in via]
        if not requirers or any(r not in exact or r not in versions for r in requirers):
            continue  # brought in by something not pinned to one version: the lock's run says
        try:
            if any(Version(versions[r]) != exact[r] for r in requirers):
                continue
        except InvalidVersion:
            continue
        found.append((name, tuple((r, versions[r]) for r in requirers)))
    return tuple(found)


def _reading_held(job: _Job, pylock: Mapping[str, Any]) -> bool:
    """Whether the lock holds every member the reading's family members came with at the
    version the reading had (then the lock needs them as the reading did)."""
    locked: dict[str, Optional[str]] = {
        canonicalize_name(str(p.get("name", ""))): p.get("version") for p in pylock.get("packages", [])
    }
    for _, requirers in job.from_reading:
        for name, version in requirers:
            held = locked.get(name)
            try:
                if held is None or Version(str(held)) != Version(version):
                    return False
            except InvalidVersion:
                return False
    return True


def _seed_preferences(job: _Job, pylock_out: Path) -> None:
    """Put what the variant's lock holds for this target where uv writes, so that uv keeps
    those versions (uv reads an existing ``-o`` file, a ``pylock.toml`` included, as
    preferences; ``--upgrade``/``--upgrade-package`` override them).

    The file is filtered to this target's packages: uv would not tell two versions of one
    package apart by their markers.
    """
    chosen = _previous_packages(job)
    if job.previous is None or not chosen:
        return
    document = dict(job.previous.pylock.to_dict())
    wanted = {(str(p.name), str(p.version)) for p in chosen}
    document["packages"] = [
        entry for entry in document.get("packages", []) if (entry["name"], entry.get("version")) in wanted
    ]
    document.pop("environments", None)
    document.pop("tool", None)
    pylock_out.write_text(render_lock(document), encoding="utf-8")


def _resolve(
    job: _Job, uv: str, upgrade_args: Sequence[str], workdir: Path
) -> tuple[Optional[dict[str, Any]], str]:
    """One uv run for one variant and target: the PEP 751 lock, and where each package came from.

    uv's pylock output names no index, but the routing settles where a package may come from:
    a family member routed to the variant index (declared explicit, so it serves nothing
    else) comes from it; every other package comes from your indexes, told apart by where its
    files live (:func:`_user_index_of`). A family member the resolution pulls in from another
    index (torch's triton) is routed like a named one and the resolution redone: the only
    second run. Only when a file lives on none of the indexes pip-gpu knows of (a uv.toml
    index, say) does a requirements-format run name the indexes, as uv sees them.
    """
    workdir.mkdir(parents=True)
    plan = job.plan
    index_args = user_index_args(os.environ)
    uv_platform = _UV_PLATFORMS[job.target.platform]
    global_options = [opt for f in plan.files for opt in f.global_options]

    def compile_command(extra: list[str], pulled_in: Sequence[str]) -> InstallerCommand:
        routing = Routing(
            python=Path(sys.executable),
            variant_index=plan.decision.index_url,
            global_options=global_options,
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
                _, stdout, stderr = wait_within(process, f"resolving {job.variant}", capture=True)
            finally:
                finished(process)
        if process.returncode != 0:
            detail = redact_url(stderr.strip() or stdout.strip())
            return f"{job.variant}: uv exited with status {process.returncode}:\n{detail}"
        return ""

    lock_out = workdir / "pylock.toml"
    _seed_preferences(job, lock_out)
    seeded = lock_out.read_bytes() if lock_out.exists() else None
    speculative = sorted({name for name, _ in job.from_reading} - set(job.pre_routed))
    pulled_in: list[str] = sorted({*job.pre_routed, *speculative})
    # each round can only add family members; a few suffice (and one more to take back a guess)
    for _ in range(4 if speculative else 3):
        command = compile_command(["--format", "pylock.toml", "-o", str(lock_out)], pulled_in)
        failure = run(command)
        if failure and not speculative:
            return None, failure
        pylock = load_toml(lock_out.read_text(encoding="utf-8"), "uv's lock output") if not failure else {}
        if speculative:
            held = not failure and _reading_held(job, pylock)
            speculative = []
            if not held:  # not the reading's question after all: resolved as without it
                pulled_in = list(job.pre_routed)
                if seeded is not None:
                    lock_out.write_bytes(seeded)
                else:
                    lock_out.unlink(missing_ok=True)
                continue
        routed = _routed_names(command, plan.family_names)
        if routed is None:  # nothing routed by name: the variant index is one of the indexes
            break
        elsewhere = sorted(
            name
            for name in (canonicalize_name(str(p.get("name", ""))) for p in pylock.get("packages", []))
            if name in plan.family_names and name not in routed
        )
        if not elsewhere or set(elsewhere) <= set(pulled_in):
            break
        pulled_in = sorted({*pulled_in, *elsewhere})
    candidates = _user_indexes(index_args, global_options)
    if routed is None and plan.decision.index_url:
        candidates = [plan.decision.index_url, *candidates]
    indexes: dict[str, str] = {}
    unknown = False
    for package in pylock.get("packages", []):
        name = canonicalize_name(str(package.get("name", "")))
        if routed is not None and name in routed and plan.decision.index_url:
            indexes[name] = plan.decision.index_url
            continue
        found = _index_of(_file_urls(package), candidates)
        if found is None:
            unknown = True
            break
        indexes[name] = found
    if unknown:  # uv knows indexes pip-gpu does not: let it name them
        failure, indexes = _annotated_indexes(compile_command, run, pulled_in, workdir, pylock, job.variant)
        if failure:
            return None, failure
    return {"pylock": pylock, "indexes": indexes}, ""


def _routed_names(command: InstallerCommand, family_names: frozenset[str]) -> Optional[set[str]]:
    """The family names a ``uv pip compile`` command sends to the explicit variant index.

    Read back from the generated project (``[tool.uv.sources]``), the one place that says.
    None: the command routes nothing by name (hash-checking mode, or PyPI's own build), and
    the variant index, if any, is searched like the others.
    """
    for path, content in command.files.items():
        if path.name == "pyproject.toml":
            sources = load_toml(content, "the generated family project").get("tool", {})
            return {
                canonicalize_name(name)
                for name in sources.get("uv", {}).get("sources", {})
                if canonicalize_name(name) in family_names
            }
    return None


def _file_urls(package: Mapping[str, Any]) -> list[str]:
    files = [*package.get("wheels", []), *[package[k] for k in ("sdist", "archive") if k in package]]
    return [str(f["url"]) for f in files if isinstance(f, Mapping) and f.get("url")]


def _user_indexes(index_args: Sequence[str], global_options: Sequence[tuple[str, ...]]) -> list[str]:
    """The indexes (and find-links) uv searches besides the variant index, as pip-gpu knows
    them: its own arguments, the requirement files' options and the ``UV_*`` variables; PyPI
    when none of them names a default index."""
    from ..decide.resolution import index_args_for

    given = [*index_args, *(part for option in global_options for part in option)]
    options = index_args_for("uv", given, os.environ)
    urls = [
        value
        for option, value in zip(options, options[1:])
        if option in ("--index-url", "--extra-index-url", "--find-links")
    ]
    if "--index-url" not in options:
        urls.append("https://pypi.org/simple")
    return list(dict.fromkeys(urls))


def _index_of(urls: Sequence[str], candidates: Sequence[str]) -> Optional[str]:
    """The index a package's files came from: the one on their host (or whose known file host
    serves them) sharing the longest path with them; None when no index matches every file."""
    from ..lockfile import FILE_HOSTS
    from ..redact import url_origin

    if not urls:
        return None
    best: Optional[tuple[int, str]] = None
    for candidate in candidates:
        scheme, host, port = url_origin(strip_credentials(candidate))
        score = 0
        for url in urls:
            file_scheme, file_host, file_port = url_origin(strip_credentials(url))
            if file_scheme != scheme:
                break
            if (file_host, file_port) == (host, port):
                score += len(os.path.commonpath([_path_of(url), _path_of(candidate)]))
            elif file_host not in FILE_HOSTS.get(host, ()):
                break
        else:
            if best is None or score > best[0]:
                best = (score, candidate)
    return best[1] if best else None


def _path_of(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path or "/"


def _annotated_indexes(
    compile_command: Callable[[list[str], Sequence[str]], InstallerCommand],
    run: Callable[[InstallerCommand], str],
    pulled_in: Sequence[str],
    workdir: Path,
    pylock: Mapping[str, Any],
    variant: str,
) -> tuple[str, dict[str, str]]:
    """uv's own word on each package's index (``--emit-index-annotation``), for a resolution
    whose files pip-gpu cannot place; ("", indexes) or (the failure, {})."""
    annotated_out = workdir / "requirements.txt.out"
    annotated_out.write_text(
        "".join(f"{p['name']}=={p['version']}\n" for p in pylock.get("packages", []) if p.get("version")),
        encoding="utf-8",
    )  # the lock's versions as preferences: the same resolution
    failure = run(compile_command(["--emit-index-annotation", "-o", str(annotated_out)], pulled_in))
    if failure:
        return failure, {}
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
        return f"{variant}: the indexes changed while locking; run pip-gpu lock again", {}
    return "", indexes


def user_index_args(env: Mapping[str, str]) -> list[str]:
    """uv options for the user's indexes, by the one rule every command follows
    (:func:`pip_gpu.config.user_indexes`): a team that installs with pip keeps its mirror in
    ``PIP_INDEX_URL`` or ``pip.conf``, and the lock must come from that mirror, not pypi.org."""
    from ..config import user_indexes

    return user_indexes(env).args_for("uv")


# --- pip-gpu install writes the decision back ------------------------------------------------


def write_back_after_install(
    requirements: Sequence[str], requirement_files: Sequence[str], plan: Plan, host: HostProfile, cwd: Path
) -> None:
    """After ``pip-gpu install`` in a folder with a lock family: add the new requirements (and
    requirement files, relative to ``cwd``) to the recorded inputs and re-resolve every variant
    file."""
    family = find_lock_family(cwd)
    if not family:
        return
    recorded = family[0].record.inputs
    requirement_args = _merged(list(recorded.requirements), list(requirements))
    files = list(
        dict.fromkeys(
            [*(p for p, _ in recorded.files), *(_relative(cwd / f, cwd) for f in requirement_files)]
        )
    )
    request = read_request(requirement_args, [str(cwd / f) for f in files], cwd)
    new_inputs = replace(
        recorded,
        requirements=tuple(strip_credentials(r) for r in requirement_args),
        files=tuple((f, recorded_lines(read.lines)) for f, read in zip(files, request.files)),
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
            variants=sorted({lock.variant for lock in family}, key=_variant_order),
            host=host_at(host, recorded.targets[0]),
            pytorch_index=plan.pytorch_index,
            cwd=cwd,
            knowledge=plan.knowledge,
            targets=recorded.targets,
            request=request,
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


# --- for the wheel-variant lock (issue 26), which resolves its other packages the same way ----


def uv_python_platform(target: LockTarget) -> str:
    """uv's ``--python-platform`` for a lock target."""
    return _UV_PLATFORMS[target.platform]


def index_of_package(package: Mapping[str, Any], global_options: Sequence[tuple[str, ...]]) -> Optional[str]:
    """The user index a resolved package's files live on (None: one pip-gpu does not know)."""
    return _index_of(_file_urls(package), _user_indexes(user_index_args(os.environ), global_options))
