"""``pip-gpu install``: detect -> decide -> route -> run the real installer -> verify.

The installer's own output reaches the user unchanged and its exit status becomes ours.
Nothing is installed when no build runs (exit 2), and after installing we read back what
landed and fail loudly if it is not the build we decided on.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from .decide.plan import Plan, decide_for, rewrite_pins
from .decide.resolution import ResolutionContext, context_for_install
from .decide.rules import Decision
from .detect.target import (
    TargetEnv,
    find_target,
    installed_family_in,
    installed_torch_build,
)
from .errors import (
    BuildDidNotLand,
    InstallerFailed,
    PipGpuError,
    UsageError,
    WrongBuildServed,
    environment_fault,
)
from .host import HostFlags, HostProfile
from .installers import choose_installer, run_command, uv_binary
from .requirements import RewritePin, redact_url
from .route import (
    FamilyFile,
    InstallerCommand,
    Routing,
    family_files_from_report,
    family_from_elsewhere,
    family_required_by_others,
    installer_args,
    pinned_versions,
    pip_command,
    pip_family_download,
    pip_family_probe,
    pip_hashed_command,
    reinstall_command,
    uninstall_command,
    uses_hashes,
    uv_command,
)

if TYPE_CHECKING:
    from .kept_downloads import KeptIndex

__all__ = ["InstallOptions", "InstallResult", "install"]


@dataclass(frozen=True)
class InstallOptions:
    """What ``pip-gpu install`` (or a shim) asks for, typed."""

    requirements: tuple[str, ...] = ()  # requirement specifiers, as given
    requirement_files: tuple[str, ...] = ()  # -r FILE, relative to ``cwd``
    constraint_files: tuple[str, ...] = ()  # -c FILE
    installer: Optional[str] = None  # "pip", "uv", or None: the project's choice, else by the target
    python: Optional[str] = None  # --python: the target interpreter or environment
    system: bool = False  # --system: the python3 on PATH
    dry_run: bool = False
    # The installer's own dry run (a shim's `pip install --dry-run`): the routed commands run
    # with --dry-run, so the installer prints its own "Would install" list; nothing is printed
    # as a script and nothing is installed.
    installer_dry_run: bool = False
    python_from: Optional[str] = None  # how the target was chosen, when not by --python (a shim)
    no_lock: bool = False  # do not re-resolve the pylock.<variant>.toml files in ``cwd``
    # Options of :data:`pip_gpu.route.INSTALLER_OPTIONS` (long name, value or None for a flag).
    passthrough: tuple[tuple[str, Optional[str]], ...] = ()
    host: HostFlags = field(default_factory=HostFlags)
    variant: Optional[str] = None
    force: bool = False  # accept a variant the host cannot run
    pytorch_index: Optional[str] = None
    channel: Optional[str] = None  # --channel: stable, nightly or test (None: the environment's)
    uv_binary: Optional[str] = None  # the very uv a shim was asked to run
    installer_extra: tuple[str, ...] = ()  # a shim's user options, already checked, passed verbatim
    cwd: Optional[Path] = None  # None: the current directory

    def installer_args(self) -> list[str]:
        """The options passed to every installer run."""
        return [*installer_args(self.passthrough), *self.installer_extra]


@dataclass(frozen=True)
class InstallResult:
    """What an install did (or, for a dry run, would do)."""

    decision: Decision
    target: TargetEnv
    installer: str
    # A dry run: every installer run as a script to paste, and as JSON (``--dry-run --json``).
    dry_run_script: str = ""
    dry_run_json: Optional[Mapping[str, Any]] = None
    # The torch family as it landed: (name, version).
    installed: tuple[tuple[str, str], ...] = ()


def install(options: InstallOptions) -> InstallResult:
    """Decide, route, run the installer, verify what landed, and update a lock family here."""
    cwd = options.cwd or Path.cwd()
    if not options.requirements and not options.requirement_files:
        raise UsageError(
            "nothing to install: no requirements given",
            "name them (pip-gpu install torch torchvision) or give a file (-r requirements.txt)",
        )
    target = find_target(options.python, cwd, os.environ, system=options.system, installing=True)
    if options.python_from:
        target = replace(target, chosen_by=options.python_from)
    flags = options.host
    if flags.python_version is None:
        flags = replace(flags, python_version=target.python_version)
    from .detect import host_for

    host = host_for(flags)
    from .config import load_project_config

    installer = choose_installer(options.installer, load_project_config(cwd).installer, target)
    from .config import user_indexes

    passed = options.installer_args()
    # Everything but the family comes from the indexes the one rule names, whichever installer
    # runs: uv is given pip's configuration, or pip uv's, where the installer would not read it.
    passed += user_indexes(os.environ, cwd).args_for(installer, passed)
    context = context_for_install(
        target.python, target.site_packages, installer, passed, os.environ, cwd, options.dry_run
    )

    def decide(context: ResolutionContext) -> Plan:
        return decide_for(
            options.requirements,
            options.requirement_files,
            host,
            variant=options.variant,
            force=options.force,
            pytorch_index=options.pytorch_index,
            cwd=cwd,
            constraint_files=options.constraint_files,
            context=context,
            channel=options.channel,
        )

    # uv (issue 18): one resolution where it can answer both questions. Decided without
    # resolving the other requirements first, then uv's own resolution (which install runs
    # anyway) says whether any of them needs the torch family; only then is the decision
    # made again with what they need. A dry run keeps the two steps it shows.
    one_resolution = installer == "uv" and not options.dry_run
    plan = decide(replace(context, resolve_others=False) if one_resolution else context)
    if one_resolution and not plan.decision.ok:
        plan = decide(context)  # its blocker may name what the other requirements need
    plan.decision.chosen()  # NoBuildRuns, with the reason, when no build runs here
    if plan.index_unreachable and not options.dry_run:
        _unreachable_variant_index(plan, None)  # found silent already: not after pip's retries
    if not options.dry_run and not options.no_lock:
        from .lockfile import find_lock_family

        find_lock_family(cwd)  # a broken lock here is refused now, not after installing

    try:
        from .private import private_scratch

        scratch_folder = private_scratch("install")  # its files may name an index with credentials
    except OSError as exc:  # a full or read-only TMPDIR: the machine's fault, not the input's
        raise environment_fault(exc, "pip-gpu's scratch folder") from None
    with scratch_folder as scratch:
        workdir = Path(scratch)
        uv = uv_binary(options.uv_binary) if installer == "uv" else ""
        resolved: Optional[str] = None
        if one_resolution and plan.decision.index_url and plan.installs_something_else():
            resolved = _uv_resolution_if_alone(
                plan, _routing(plan, target, passed, workdir, rewrite_pins(plan), uv_routed=True), uv
            )
            if resolved is None:
                plan = decide(context)
        decision = plan.decision
        decision.chosen()  # NoBuildRuns, with the reason, when no build runs here
        _announce(plan, target, installer, dry_run=options.dry_run or options.installer_dry_run)
        routing = _routing(plan, target, passed, workdir, rewrite_pins(plan), uv_routed=installer == "uv")
        say = _stderr if not _quiet() else _silent
        # The files a resolution downloads are kept for the install runs (pip on a static mirror).
        kept = None
        if installer == "pip" and not options.dry_run:
            from .kept_downloads import KeptIndex

            kept = KeptIndex(workdir / "same-files")
        try:
            # What runs is settled first (read-only resolutions), so a dry run shows it exactly.
            runs = _planned_runs(
                plan,
                routing,
                installer,
                uv,
                dry_run=options.dry_run,
                say=say,
                resolved=resolved,
                missing=partial(_missing_file, plan, host),
                kept=kept,
            )
            if options.dry_run:
                return InstallResult(
                    decision=decision,
                    target=target,
                    installer=installer,
                    dry_run_script=_dry_run_script(
                        runs, workdir, decision_line=_decision_line(plan, installer)
                    ),
                    dry_run_json=_dry_run_json(plan, host, target, installer, runs, workdir),
                )
            if options.installer_dry_run:
                for run in runs:
                    run_command(replace(run.command, argv=(*run.command.argv, "--dry-run")))
                return InstallResult(decision=decision, target=target, installer=installer)
            before = _versions(_installed_family(target))
            for run in runs:
                run_command(run.command)
            if kept is not None and kept.downloaded:
                from .kept_downloads import restore_origins

                restore_origins(target.site_packages, kept.downloads, kept.origins)
        except InstallerFailed as failure:
            _unreachable_variant_index(plan, failure)
            _with_missing_file(failure, _missing_file(plan, host))
            raise
        finally:
            if kept is not None:
                kept.close()
    installed = _verify(
        plan, target, before, lambda names: _roll_back(plan, target, installer, uv, before, names)
    )
    # issue 4: inside a folder with a pip-gpu lock family, the new requirements join the locks.
    if not options.no_lock:
        from .lock.resolve import write_back_after_install

        try:
            write_back_after_install(options.requirements, options.requirement_files, plan, host, cwd)
        except OSError as exc:
            raise environment_fault(exc, f"the lock files in {cwd} (installed, but not re-locked)") from None
    return InstallResult(decision=decision, target=target, installer=installer, installed=installed)


def _quiet() -> bool:
    from . import ui

    return bool(ui.settings().quiet)


def _announce(plan: Plan, target: TargetEnv, installer: str, *, dry_run: bool = False) -> None:
    """The target, the decision and its notes (left out under -q)."""
    say = _stderr if not _quiet() else _silent
    decision = plan.decision
    doing = f"a dry run: would install with {installer}" if dry_run else f"installing with {installer}"
    say(f"pip-gpu: target {target.python} (Python {target.python_version}, from {target.chosen_by})")
    where = redact_url(decision.index_url) if decision.index_url else "PyPI"
    if _names_family(plan):
        say(f"pip-gpu: torch {decision.torch} -> {decision.variant} from {where}; {doing}")
    else:
        say(f"pip-gpu: torch-family packages, if needed, come from {where} ({decision.variant}); {doing}")
    for note in decision.notes:
        say(f"pip-gpu: note: {note}")


def _uv_resolution_if_alone(plan: Plan, routing: Routing, uv: str) -> Optional[str]:
    """uv's resolution of the request as decided without reading the other requirements, when
    none of them needs a torch-family package (then reading them first would have changed
    nothing); None when one does, or when it fails (the decision is then made with them)."""
    try:
        resolved = _uv_resolution(plan, routing, uv, log=routing.workdir / "trial-resolution.log")
    except InstallerFailed:
        return None
    return None if family_required_by_others(resolved, plan.family_names) else resolved


def _planned_runs(
    plan: Plan,
    routing: Routing,
    installer: str,
    uv: str,
    *,
    dry_run: bool,
    say: Callable[[str], None],
    resolved: Optional[str] = None,
    missing: Callable[[], Optional[str]] = lambda: None,
    kept: Optional[KeptIndex] = None,
) -> list[_DryRun]:
    """The installer runs that install the request, in order, with the resolution settled.

    Where the family comes from is found first by read-only resolutions (a pip dry run on the
    variant index, a ``uv pip compile``), which run for a dry run too: what it prints is then
    exactly what an install runs. A dry run that cannot settle it (the variant index does not
    answer on a build machine, another index fails) shows the runs unsettled, and says why.
    """
    unsettled: Optional[str] = None
    if dry_run and routing.variant_index is not None:
        where = _unreachable(routing.variant_index, timeout=3)
        unsettled = f"{where} does not answer" if where else None
    if unsettled is None:
        try:
            return _settled_runs(plan, routing, installer, uv, resolved, kept=kept)
        except InstallerFailed as failure:
            if not dry_run:
                raise
            # The index answers and lacks the file: the install would fail too, so say so (issue 27).
            _with_missing_file(failure, missing())
            if failure.hint:
                raise
            unsettled = f"settling it failed ({failure.message})"
    say(f"pip-gpu: note: {unsettled}: the dry run shows the runs unsettled")
    lines = list(plan.lines)
    note = f"not settled ({unsettled})"
    if installer == "uv":
        return [_DryRun(uv_command(routing, lines, uv=uv), before=note)]
    if not _names_family(plan):  # no family file to choose: nothing for a dry run on the variant index
        command = replace(pip_command(routing, lines, []), purpose=_EVERYTHING_FROM_YOURS)
        return [
            _DryRun(command, before=f"{note}: a torch-family package another requirement pulls in is routed")
        ]
    probe = pip_family_probe(routing, plan.family_lines(), [], routing.workdir / "family-report.json")
    note += (
        ": pip-gpu replaces each torch-family line with a direct reference to the file the dry run "
        "above picks"
    )
    return [_DryRun(probe), _DryRun(pip_command(routing, lines, []), before=note)]


def _settled_runs(
    plan: Plan,
    routing: Routing,
    installer: str,
    uv: str,
    resolved: Optional[str] = None,
    *,
    kept: Optional[KeptIndex] = None,
) -> list[_DryRun]:
    """``resolved``: uv's resolution of this very plan, when it already ran. ``kept``: the
    runs happen now, so files pip downloads to resolve may be kept for them, there."""
    lines = list(plan.lines)
    if installer == "uv":
        pulled_in: list[str] = []
        if routing.variant_index:
            if resolved is None:
                resolved = _uv_resolution(plan, routing, uv)
            # uv may print a local version without its label (``torch==2.5.1`` for an
            # installed 2.5.1+cu124 kept by an exact pin): only a label that is there and
            # wrong is refused here; the read-back after the run checks the rest.
            labelled = {n: v for n, v in pinned_versions(resolved).items() if "+" in v}
            _refuse_contradicting(plan, labelled, "uv's resolution")
            pulled_in = family_from_elsewhere(resolved, plan.family_names, routing.variant_index)
        command = uv_command(routing, lines, uv=uv, pulled_in=pulled_in)
        return [_DryRun(command, before=_resolved_note(pulled_in))]
    if routing.variant_index is None or uses_hashes(lines, routing.installer_args, routing.global_options):
        return [_DryRun(pip_hashed_command(routing, lines))]
    family, downloaded = _pip_family_files(plan, routing, [], kept=kept)
    same_files = _same_files(plan, routing, downloaded, kept)
    elsewhere: list[str] = []
    if plan.installs_something_else():
        # Something else may bring in a family member (a library that needs torchvision):
        # resolve the whole request first, and route what it would take from elsewhere.
        elsewhere = _pip_family_elsewhere(plan, routing, family, same_files)
        if elsewhere:
            _stderr(
                f"pip-gpu: {', '.join(elsewhere)} pulled in by other requirements: "
                "routed to the variant index"
            )
            family, downloaded = _pip_family_files(plan, routing, elsewhere, kept=kept)
            same_files = _same_files(plan, routing, downloaded, kept) or same_files
    _refuse_contradicting(plan, _wheel_versions(family), "pip's dry run on the variant index")
    command = pip_command(routing, lines, family, same_files=same_files)
    if not family:  # nothing of the family to install: no file was chosen on the variant index
        return [_DryRun(replace(command, purpose=_EVERYTHING_FROM_YOURS))]
    before = "the torch family's files were chosen on the variant index by a pip dry run"
    return [_DryRun(command, before=before + _resolved_note(elsewhere, sep="; "))]


_EVERYTHING_FROM_YOURS = "pip: everything from your indexes (no torch-family package)"


def _contradicting(plan: Plan, versions: Mapping[str, str]) -> list[str]:
    """``name version`` of each labelled family member whose local label is not the decided
    variant's (``torch 2.5.1+cpu`` for cu124): a build that cannot be what was decided."""
    variant = plan.decision.variant
    expected = None if variant == "default" else str(variant)
    return [
        f"{name} {version}"
        for name, version in sorted(versions.items())
        if name in _LABELLED and (version.partition("+")[2] or None) != expected
    ]


# The family members whose wheels carry the variant as a local label (as ``_verify`` reads them).
_LABELLED = ("torch", "torchvision", "torchaudio")


def _refuse_contradicting(plan: Plan, versions: Mapping[str, str], seen_by: str) -> None:
    """Before installing: refuse the family files the settled resolution picked when their
    label contradicts the decision (an index serving ``+cpu`` wheels as cu124)."""
    wrong = _contradicting(plan, versions)
    if not wrong:
        return
    variant = plan.decision.variant
    where = redact_url(plan.decision.index_url) if plan.decision.index_url else "PyPI"
    raise WrongBuildServed(
        f"{' and '.join(wrong)} is what {seen_by} picks from {where}, but {variant} was decided; "
        "refused before installing: nothing was changed",
        f"that index does not serve {variant} builds under these names: check --pytorch-index "
        f"(or PIP_GPU_PYTORCH_INDEX), or choose the build it serves with --variant",
    )


def _wheel_versions(files: Sequence[FamilyFile]) -> dict[str, str]:
    """The version in each family file's wheel name (an sdist or odd name is left out)."""
    from urllib.parse import unquote, urlsplit

    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    versions: dict[str, str] = {}
    for file in files:
        filename = unquote(urlsplit(file.url).path.rsplit("/", 1)[-1])
        try:
            versions[file.name] = str(parse_wheel_filename(filename)[1])
        except InvalidWheelFilename:
            continue
    return versions


def _resolved_note(pulled_in: Sequence[str], sep: str = "") -> str:
    if not pulled_in:
        return ""
    return f"{sep}routed because other requirements pull them in: {', '.join(pulled_in)}"


def _pip_family_files(
    plan: Plan, routing: Routing, pulled_in: Sequence[str], *, kept: Optional[KeptIndex] = None
) -> tuple[list[FamilyFile], Optional[Path]]:
    """The files pip takes for the family on the variant index, and the folder they were
    downloaded into (None: found by a dry run, left on the index).

    ``kept``, when the runs happen now, on an index without PEP 658 metadata (a static
    mirror), where a dry run would download every wheel to read it and the install would
    download them again: pip downloads the family with its dependencies once into ``kept``'s
    folder, and the install takes the files from there (:mod:`pip_gpu.kept_downloads`, issue 25).
    """
    family = plan.family_lines()
    if not any(not line.constraint for line in family) and not pulled_in:
        return [], None
    names = [line.name for line in family if line.name and not line.constraint] + list(pulled_in)
    if (
        kept is not None
        and routing.variant_index
        and not _announces_metadata(routing.variant_index, names[0])
    ):
        from .kept_downloads import family_in

        try:
            earlier, downloaded = kept.new_download()
        except OSError as exc:  # a full or read-only TMPDIR: the machine's fault, not the input's
            raise environment_fault(exc, "pip-gpu's download folder") from None
        _settle(pip_family_download(routing, family, pulled_in, downloaded, earlier=earlier))
        files, origins = family_in(downloaded, routing.variant_index, plan.family_names)
        kept.origins.update(origins)
        return files, downloaded
    report = routing.workdir / "family-report.json"
    _settle(pip_family_probe(routing, family, pulled_in, report))
    return family_files_from_report(_read_report(report), plan.family_names), None


def _same_files(
    plan: Plan, routing: Routing, downloaded: Optional[Path], kept: Optional[KeptIndex]
) -> Optional[str]:
    """The URL of the local index of downloaded files the user's indexes serve byte for byte
    (None: there are none)."""
    if downloaded is None or kept is None or routing.variant_index is None:
        return None
    from .decide.resolution import index_args_for
    from .kept_downloads import same_files_folder, user_places

    places = user_places(index_args_for("pip", routing.installer_args, os.environ), routing.global_options)
    if places is None:
        return None
    same = same_files_folder(downloaded, routing.variant_index, places, plan.family_names, kept.root)
    if not same:
        return None
    if not _quiet():  # pip names the local index among its own ("Looking in indexes: ...")
        _stderr(
            f"pip-gpu: note: {len(same)} files downloaded from the variant index are the very files "
            f"your indexes serve (same sha256): pip takes them from disk through {kept.url}"
        )
    return kept.url


def _announces_metadata(index: str, name: str) -> bool:
    """Whether the index serves PEP 658 metadata beside ``name``'s files (unknown: yes)."""
    from .decide.index import IndexError_, fetch_project_files

    try:
        files = fetch_project_files(f"{index.rstrip('/')}/{name}/")
    except IndexError_:
        return True
    return not files or any(file.core_metadata for file in files)


def _pip_family_elsewhere(
    plan: Plan, routing: Routing, family: Sequence[FamilyFile], same_files: Optional[str] = None
) -> list[str]:
    """Family members the whole request would take from an index other than the variant index."""
    report = routing.workdir / "request-report.json"
    command = pip_command(routing, list(plan.lines), family, same_files=same_files)
    quiet = [a for a in command.argv if a not in ("-v", "--verbose")]
    _settle(
        InstallerCommand(
            argv=(*quiet, "--dry-run", "--quiet", "--report", str(report)),
            purpose="pip: checking what the other requirements pull in (dry run)",
            env=command.env,
            files=command.files,
        )
    )
    routed = {file.url.split("#", 1)[0] for file in family}
    # A family wheel the user gave as a direct URL or path is installed as written, not pulled in.
    written = {line.name for line in plan.lines if line.is_direct_url}
    found = family_files_from_report(_read_report(report), plan.family_names)
    return sorted({f.name for f in found if f.url.split("#", 1)[0] not in routed and f.name not in written})


def _read_report(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PipGpuError(
            f"pip wrote no readable --report ({exc})", "pip-gpu needs pip >= 22.2 in the target environment"
        ) from None
    return data


def _uv_resolution(plan: Plan, routing: Routing, uv: str, log: Optional[Path] = None) -> str:
    """What uv would install, each package with the index it comes from (``uv pip compile``).

    uv's sources route only direct requirements; what torch or another library brings in
    (``triton``, torchvision) is found from this resolution and then routed as if the user
    had named it. It also shows the family's files before anything is installed.
    ``log``: a trial (:func:`_uv_resolution_if_alone`), which also needs the ``# via`` lines
    in one known shape whatever the user's uv configuration says; a uv too old for those
    flags fails the trial, and the install then takes the two-step path.
    """
    out = routing.workdir / "resolved.txt"
    compile_routing = replace(
        routing,
        installer_args=[
            *_uv_resolution_args(routing.installer_args),
            *("--quiet", "--no-header"),
            *(("--annotate", "--annotation-style", "split") if log is not None else ()),
        ],
    )
    command = uv_command(compile_routing, list(plan.lines), uv=uv, subcommand="compile")
    _settle(
        replace(
            command,
            argv=(*command.argv, "--emit-index-annotation", "-o", str(out)),
            purpose="uv: checking where each package would come from (resolution only)",
        ),
        log=log,
    )
    return out.read_text(encoding="utf-8")


def _settle(command: InstallerCommand, log: Optional[Path] = None) -> None:
    """A read-only resolution (output to stderr or ``log``), saying what it does on a terminal
    when it takes longer than a second."""
    from .ui import progress

    with progress(command.purpose):
        run_command(command, to_stderr=True, log=log)


# uv pip install options that uv pip compile does not take.
_INSTALL_ONLY = frozenset(
    {
        "--reinstall",
        "--force-reinstall",
        "--break-system-packages",
        "--exact",
        "--strict",
        "--compile-bytecode",
        "--no-deps",
        "--require-hashes",
        "--user",
        "--system",
    }
)


def _uv_resolution_args(installer_args: Sequence[str]) -> list[str]:
    """The install's options a ``uv pip compile`` takes (its own ``--quiet`` replaces -q/-v)."""
    chatter = {"-q", "--quiet", "-v", "--verbose", "-qq", "-vv"}
    return [a for a in installer_args if a.split("=", 1)[0] not in _INSTALL_ONLY and a not in chatter]


def _missing_file(plan: Plan, host: HostProfile) -> Optional[str]:
    """Why the variant index has no torch file of the decided build for the target, read afresh."""
    decision = plan.decision
    if decision.index_url is None or decision.torch is None:
        return None
    if not any(not line.constraint for line in plan.family_lines()):
        return None  # no torch-family file is installed: its absence explains nothing
    from .decide.discover import missing_torch_file

    return missing_torch_file(decision.index_url, decision.torch, host.platform_tag, host.python_version)


def _with_missing_file(failure: InstallerFailed, why: Optional[str]) -> None:
    """An installer failure pip-gpu can explain ends with the fact and a hint, like its own errors."""
    if why and not failure.hint:  # said once (a dry run's failure passes here twice)
        failure.message = f"{failure.message}: {why}"
        failure.hint = (
            "`pip-gpu explain` shows what was decided and why; pin a torch version the index carries, "
            "or point --pytorch-index (PIP_GPU_PYTORCH_INDEX) at an index that has it"
        )


def _unreachable_variant_index(plan: Plan, failure: Optional[InstallerFailed]) -> None:
    """When the variant index cannot be reached, say that, not the resolver's words: after a
    failed run, or before any when pip-gpu's own read found it silent (``failure`` None)."""
    index = plan.decision.index_url
    where = _unreachable(index, timeout=10 if failure else 3) if index else None
    if index is None or where is None:
        return
    raise PipGpuError(
        f"the variant index {redact_url(index)} ({where}) cannot be reached, so the torch family "
        "could not be fetched",
        f"check the network and the proxy settings (HTTPS_PROXY, NO_PROXY) for {where}, "
        "or pass --pytorch-index URL of a mirror that can be reached",
    ) from failure


def _unreachable(index: str, timeout: float = 10) -> Optional[str]:
    """``host:port`` when the index does not answer at all; None when it answers anything."""
    import urllib.error
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(index)
    where = parts.netloc.rpartition("@")[2] or redact_url(index)  # host:port, no credentials
    # Asked without the credentials: an answer of any kind (401 included) means it is there.
    anonymous = urllib.parse.urlunsplit((parts.scheme, where, parts.path.rstrip("/") + "/", "", ""))
    try:
        with urllib.request.urlopen(anonymous, timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # it answers: the installer's own message says what was wrong
    except (OSError, ValueError):
        return where


def _global_options(plan: Plan) -> list[tuple[str, ...]]:
    return [opt for f in plan.files for opt in f.global_options]


def _routing(
    plan: Plan,
    target: TargetEnv,
    installer_args: Sequence[str],
    workdir: Path,
    pins: dict[str, RewritePin],
    uv_routed: bool = False,
) -> Routing:
    return Routing(
        python=target.python,
        variant_index=plan.decision.index_url,
        global_options=_global_options(plan),
        pins=pins,
        installer_args=installer_args,
        workdir=workdir,
        required_by_build=_family_the_build_requires(plan, target.python_version)
        if uv_routed and any(not line.constraint for line in plan.family_lines())
        else (),  # ``install numpy`` reads nothing of the variant index
    )


def _family_the_build_requires(plan: Plan, python_version: str) -> tuple[str, ...]:
    """Family members a ROCm or XPU torch requires on this target, from its metadata on the
    variant index (PEP 658): ``pytorch-triton-rocm``, ``pytorch-triton-xpu``.

    uv's sources route direct requirements only, and a resolution against the user's indexes
    cannot find what only the variant index has (PyPI has no ``pytorch-triton-rocm`` 3.x and no
    ``pytorch-triton-xpu``); named up front, they are routed like the rest. Empty when the
    metadata cannot be read.
    """
    from packaging.version import Version

    from .decide.discover import freshness_timeout
    from .decide.index import IndexError_
    from .decide.torch_requires import torch_requires_on_index
    from .pins import canonical_name

    decision = plan.decision.chosen()
    if decision.index_url is None or not (decision.variant.is_rocm or decision.variant.is_xpu):
        return ()  # a CUDA torch's triton is on PyPI too: the resolution below finds and routes it
    key = (decision.index_url, decision.torch, str(decision.variant), python_version)
    if key in _BUILD_REQUIRES:
        return _BUILD_REQUIRES[key]
    wanted = Version(decision.torch)  # "2.5.1" when pinned, else the series "2.15"
    label = str(decision.variant)

    def this_build(version: Version) -> bool:
        public = Version(version.public)
        same = public == wanted if len(wanted.release) > 2 else public.release[:2] == wanted.release[:2]
        return same and version.local == label

    try:
        read = torch_requires_on_index(
            decision.index_url,
            plan.family_names,
            accepts=this_build,
            timeout=freshness_timeout(),  # bounded like the freshness look-up: without it, uv finds less
            per_platform=False,
        )
    except IndexError_:
        return ()  # the install's own run says what is wrong with the index
    plain = python_version.rstrip("t")
    environment = {"python_version": plain, "python_full_version": f"{plain}.0", "extra": ""}
    found = tuple(
        sorted(
            {
                canonical_name(r.name)
                for wheel in read.wheels
                for r in wheel.requirements
                if r.marker is None or r.marker.evaluate(environment)
            }
        )
    )
    _BUILD_REQUIRES[key] = found
    return found


_BUILD_REQUIRES: dict[tuple[str, str, str, str], tuple[str, ...]] = {}  # read once per install


def _silent(message: str) -> None:
    """-q: pip-gpu's notes are left out; errors and the installer's output are not."""


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class _DryRun:
    """One installer run as a dry run shows it; ``before``: what pip-gpu settled before it."""

    command: InstallerCommand
    before: str = ""


def _decision_line(plan: Plan, installer: str) -> str:
    """The script's first line, worded as :func:`_announce` words the decision."""
    decision = plan.decision
    where = redact_url(decision.index_url) if decision.index_url else "PyPI"
    if not _names_family(plan):
        return f"torch-family packages, if needed, from {where} ({decision.variant}), with {installer}"
    return f"torch {decision.torch} -> {decision.variant} from {where}, with {installer}"


def _names_family(plan: Plan) -> bool:
    """Whether the request itself names a torch-family package (not only as a constraint)."""
    return any(not line.constraint for line in plan.family_lines())


def _in_dir(text: str, workdir: Path) -> str:
    """A path in the temporary folder as ``$d/name``: the script makes its own folder."""
    return text.replace(str(workdir), "$d")


def _dry_run_json(
    plan: Plan,
    host: Any,
    target: TargetEnv,
    installer: str,
    runs: Sequence[_DryRun],
    workdir: Path,
) -> dict[str, Any]:
    """``install --dry-run --json``: the decision and every installer run in order, each with
    the content of the files it reads; ``$d`` in ``argv`` is a new empty folder holding them."""
    from .report import decision_json

    commands = []
    for run in runs:
        command = run.command
        entry: dict[str, Any] = {
            "purpose": command.purpose,
            "argv": [_in_dir(redact_url(a), workdir) for a in command.argv],
            "env": {name: redact_url(value) for name, value in command.env.items()},
            "files": {
                _in_dir(str(path), workdir): redact_url(content) for path, content in command.files.items()
            },
        }
        if run.before:
            entry["before"] = run.before
        commands.append(entry)
    return {
        "decision": decision_json(plan.decision, host),
        "target": {
            "python": str(target.python),
            "python_version": target.python_version,
            "chosen_by": target.chosen_by,
        },
        "installer": installer,
        "dir": "$d: a new empty folder for the files each command reads",
        "commands": commands,
    }


def _dry_run_script(runs: Sequence[_DryRun], workdir: Path, decision_line: str) -> str:
    """Every run in order as one shell script that can be pasted: the files written inline."""
    count = len(runs)
    lines = [
        f"# pip-gpu install --dry-run: {decision_line}; {count} installer run{'s' if count != 1 else ''}",
        "d=$(mktemp -d)  # the files the runs read",
    ]
    for run in runs:
        command = run.command
        lines.append(f"# {command.purpose}")
        if run.before:
            lines.append(f"# {run.before}")
        for path, content in command.files.items():
            where = _in_dir(str(path), workdir)
            if path.parent != workdir:
                lines.append(f'mkdir -p "{_in_dir(str(path.parent), workdir)}"')
            lines.append(f"cat > \"{where}\" <<'PIP_GPU_EOF'")
            lines.extend(redact_url(line) for line in content.splitlines())
            lines.append("PIP_GPU_EOF")
        prefix: list[str] = []
        if command.env:  # one command a person can paste: env -u NAME NAME=value ... argv
            prefix = ["env"]
            prefix += [f"-u {name}" for name, value in command.env.items() if not value]
            prefix += [
                f"{name}={shlex.quote(redact_url(value))}" for name, value in command.env.items() if value
            ]
        lines.append(" ".join([*prefix, *(_shell_word(redact_url(a), workdir) for a in command.argv)]))
    return "\n".join(lines)


def _shell_word(argument: str, workdir: Path) -> str:
    if argument.startswith(str(workdir)):
        return '"$d' + argument[len(str(workdir)) :] + '"'
    return shlex.quote(argument)


def _installed_family(target: TargetEnv) -> dict[str, dict[str, Optional[str]]]:
    return (
        installed_family_in(target.site_packages)
        if target.site_packages
        else installed_torch_build(target.python)
    )


def _versions(installed: Mapping[str, Mapping[str, Optional[str]]]) -> dict[str, str]:
    return {name: str(info["version"]) for name, info in installed.items() if info and info.get("version")}


def _verify(
    plan: Plan,
    target: TargetEnv,
    before: Mapping[str, str],
    roll_back: Callable[[Sequence[str]], list[str]],
) -> tuple[tuple[str, str], ...]:
    """Read back what landed and compare it with the decision; the family as it landed.

    A member this install put in place whose label contradicts the decision is rolled back
    (``roll_back`` gets the names and says what it did) and the install fails naming what is
    left (exit 1). A member it left as it was ``before`` did not land now: a note, not a failure.
    """
    decision = plan.decision
    installed = _installed_family(target)
    versions = _versions(installed)
    landed = {name: version for name, version in versions.items() if before.get(name) != version}
    for entry in _contradicting(plan, {n: v for n, v in versions.items() if n not in landed}):
        _stderr(
            f"pip-gpu: note: {entry} was installed before and this install left it alone; "
            f"it is not the {decision.variant} build decided here (pip-gpu install "
            f"{entry.split(' ', 1)[0]} replaces it)"
        )
    wrong = _contradicting(plan, landed)
    if wrong:
        done = roll_back([entry.split(" ", 1)[0] for entry in wrong])
        now = _versions(_installed_family(target))
        left = ", ".join(f"{name} {version}" for name, version in sorted(now.items()))
        raise BuildDidNotLand(
            "; ".join(f"{entry} landed, but {decision.variant} was decided" for entry in wrong)
            + " (another requirement or index overrode the routing); "
            + (f"rolled back: {'; '.join(done)}; " if done else "")
            + f"left installed in {target.prefix}: {left or 'no torch-family package'}",
            "that build does not match this host's decision: install again with an exact pin "
            "(torch==X.Y.Z) or check the --pytorch-index mirror",
        )
    torch_info = installed.get("torch")
    if torch_info and not _contradicting(plan, {k: v for k, v in versions.items() if k == "torch"}):
        cuda = torch_info.get("cuda")
        detail = (
            f"CUDA {cuda}"
            if cuda
            else ("ROCm " + str(torch_info.get("hip")) if torch_info.get("hip") else "CPU")
        )
        _stderr(
            f"pip-gpu: verified: torch {torch_info['version']} ({detail}) is installed in {target.prefix}"
        )
    return tuple(sorted(_versions(installed).items()))


def _roll_back(
    plan: Plan,
    target: TargetEnv,
    installer: str,
    uv: str,
    before: Mapping[str, str],
    names: Sequence[str],
) -> list[str]:
    """Put the family members ``names`` back as they were ``before`` the install: remove what
    was added, reinstall the earlier version of what was replaced. Says what it did."""
    from .variant import variant_index_url

    done: list[str] = []
    after = _versions(_installed_family(target))
    added = [name for name in names if name not in before]
    # A member this install left as it was is not undone; the error names it with the rest.
    replaced = [
        f"{name}=={before[name]}" for name in names if name in before and after.get(name) != before[name]
    ]
    try:
        if added:
            run_command(uninstall_command(installer, target.python, uv, added), to_stderr=True)
            done.append(f"removed {', '.join(added)}")
        if replaced:
            labels = {pin.partition("+")[2] for pin in replaced}
            label = labels.pop() if len(labels) == 1 else ""
            index = variant_index_url(plan.pytorch_index, label) if label else None
            run_command(reinstall_command(installer, target.python, uv, index, replaced), to_stderr=True)
            done.append(f"put back {', '.join(replaced)}")
    except PipGpuError as failure:  # what could not be undone is named with what is left
        done.append(f"the rollback failed ({failure.message})")
    return done
