"""``pip-gpu sync`` and ``check``: the lock this host runs, installed exactly and compared.

* ``sync`` picks the locked variant this host runs, by the same rules as ``install``
  restricted to the locked variants (:mod:`pip_gpu.lock.choose`), installs exactly that file
  with hash checking, removes what it does not list, and records what it installed in the
  environment.
* ``check`` says, in words, how the environment differs from the lock this host should use.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from packaging import tags
from packaging.pylock import Package, PackageWheel
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from .. import __version__
from ..config import load_project_config
from ..detect.target import Installed, TargetEnv, find_target, read_installed
from ..errors import PipGpuError, UsageError
from ..host import HostFlags, HostProfile
from ..knowledge import Knowledge, load_knowledge
from ..lockfile import (
    LockFile,
    find_lock_family,
    lock_problems,
    recorded_lines,
    strip_credentials,
    write_atomically,
)
from ..requirements import read_regular_file, read_requirements_file
from ..route import InstallerCommand
from ..variant import Variant
from .choose import (
    choose_lock,
    covers,
    family_gaps,
    no_variant_runs,
    not_covered,
    selected,
    why_not,
)

__all__ = [
    "SEED_PACKAGES",
    "SYNC_RECORD",
    "CheckOptions",
    "CheckReport",
    "Installed",
    "LockCheck",
    "SyncOptions",
    "SyncReport",
    "check",
    "check_environment",
    "differences",
    "index_moved",
    "probe_installed",
    "stale_reasons",
    "sync",
]

SYNC_RECORD = "pip-gpu-sync.json"
# What `uv pip sync` leaves in place although no lock lists it: the environment's own tools.
SEED_PACKAGES = frozenset({"pip", "setuptools", "wheel"})


@dataclass(frozen=True)
class SyncOptions:
    """``pip-gpu sync``: where the locks are, where they go, and for which host."""

    cwd: Path
    lock_dir: Optional[str] = None  # relative to cwd; None: cwd
    installer: Optional[str] = None  # "pip" | "uv"; None: the project's, else by the target
    python: Optional[str] = None
    system: bool = False
    locked: bool = False  # refuse a lock its inputs no longer match
    host: HostFlags = field(default_factory=HostFlags)
    trust_lock_index: bool = False  # install from the recorded PyTorch index, whatever is configured
    dry_run: bool = False  # choose the lock and say what would change; install nothing
    installer_output_to_stderr: bool = False  # stdout is for a --json answer


@dataclass(frozen=True)
class SyncReport:
    """What ``sync`` did (or, for a dry run, would do), for the command line to render."""

    lock_file: Path
    variant: str
    target: TargetEnv
    installer: str
    changes: tuple[str, ...]  # how the environment differed from the lock before the sync
    dry_run: bool
    torch: Optional[str] = None  # the locked torch this host gets

    def to_json(self) -> dict[str, Any]:
        return {
            "lock": self.lock_file.name,
            "variant": self.variant,
            "target": str(self.target.python),
            "prefix": str(self.target.prefix),
            "installer": self.installer,
            "dry_run": self.dry_run,
            "torch": self.torch,
            "changes": list(self.changes),
        }


@dataclass(frozen=True)
class CheckOptions:
    """``pip-gpu check``: which locks, which environment, and for which host."""

    cwd: Path
    lock_dir: Optional[str] = None
    python: Optional[str] = None
    system: bool = False
    host: HostFlags = field(default_factory=HostFlags)
    verify_files: bool = False  # every installed file's sha256, not only sizes and build files
    trust_lock_index: bool = False


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _directory(cwd: Path, lock_dir: Optional[str]) -> Path:
    return (cwd / lock_dir) if lock_dir else cwd


def _output_dir_flag(directory: Path) -> str:
    """`` --output-dir DIR`` for a hint, when the locks are not in the current folder."""
    return "" if directory.resolve() == Path.cwd().resolve() else f" --output-dir {directory}"


def _read_family(directory: Path) -> list[LockFile]:
    family = find_lock_family(directory)
    if not family:
        raise UsageError(
            f"no pip-gpu lock files (pylock.<variant>.toml) in {directory}",
            "write them with pip-gpu lock -r requirements.in",
        )
    return family


def _target_and_host(
    python: Optional[str], system: bool, flags: HostFlags, cwd: Path, installing: bool = False
) -> tuple[TargetEnv, HostProfile]:
    """The target environment, and the host with the target's Python unless a flag names one."""
    from ..detect import host_for

    target = find_target(python, cwd, os.environ, system=system, installing=installing)
    if flags.python_version is None:
        flags = replace(flags, python_version=target.python_version)
    return target, host_for(flags)


# --- the target environment ------------------------------------------------------------------


def probe_installed(python: Path, verify: Sequence[str] = (), *, hash_all: bool = False) -> Installed:
    """Marker values and distributions of the target; ``verify``: those names' files are
    checked against their RECORD (present and of the recorded size; the sha256 of the files
    that name the build, or with ``hash_all`` of every file)."""
    from ..ui import progress

    what = (
        f"checking the sha256 of every installed file of {len(verify)} packages against their RECORD"
        if hash_all
        else f"checking the installed files of {len(verify)} packages against their RECORD"
    )
    with progress(what):
        return read_installed(python, verify, hash_all=hash_all)


def _reread(target: TargetEnv, before: Installed) -> Installed:
    """The distributions after an install, read from site-packages: no interpreter started."""
    if not target.site_packages:
        return probe_installed(target.python)
    from importlib import metadata

    dists: dict[str, str] = {}
    for dist in metadata.distributions(path=[str(p) for p in target.site_packages]):
        name = dist.metadata["Name"]
        if name and not os.path.basename(str(getattr(dist, "_path", ""))).startswith("~"):
            dists.setdefault(canonicalize_name(name), dist.version)
    return Installed(markers=before.markers, dists=dists)


# --- comparing -------------------------------------------------------------------------------


def _same_version(a: Optional[str], b: Optional[str]) -> bool:
    if a is None or b is None:
        return a is b
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def differences(
    lock: LockFile, installed: Installed, names: Optional[frozenset[str]] = None, *, runs_here: bool = True
) -> list[str]:
    """Each way the environment differs from the lock, in words; ``names`` limits the packages.

    ``runs_here``: the lock is the one chosen for this host (else only the one the environment
    was synced from, and it is not called this machine's).
    """
    wanted = {
        str(p.name): str(p.version) if p.version is not None else None
        for p in selected(lock, installed.markers)
        if names is None or p.name in names
    }
    have = {
        name: version
        for name, version in installed.dists.items()
        # pip, setuptools and wheel come with a venv: they count only where the lock lists them
        # (torch itself requires setuptools on some Pythons)
        if (names is None and (name not in SEED_PACKAGES or name in wanted))
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


def stale_reasons(family: Sequence[LockFile], directory: Path) -> list[str]:
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
    read: dict[str, Optional[tuple[str, ...]]] = {}  # each recorded file read once
    for lock in family:
        inputs = lock.record.inputs
        files = []
        for path, _ in inputs.files:
            if path not in read:
                try:
                    read[path] = recorded_lines(read_requirements_file(directory / path).lines)
                except UsageError:
                    read[path] = None
            lines = read[path]
            if lines is None:
                reasons.append(f"{path}, recorded in {lock.path.name}, cannot be read")
            files.append((path, lines or ()))
        current = replace(inputs, files=tuple(files)).digest()
        if current != lock.record.inputs_digest:
            changed = [p for (p, old), (_, new) in zip(inputs.files, files) if old != new]
            what = (
                f"{', '.join(changed)} changed" if changed else "its recorded inputs do not match its digest"
            )
            reasons.append(f"{lock.path.name} is stale: {what} since it was locked")
    return list(dict.fromkeys(reasons))


def _foreign_sources(
    lock: LockFile,
    packages: Sequence[Package],
    knowledge: Knowledge,
    markers: Optional[Mapping[str, str]] = None,
) -> list[str]:
    """Files that do not come from the indexes the lock records (see
    :func:`pip_gpu.lockfile.lock_problems`), and markers that leave the torch family out of a
    target the lock covers (:func:`pip_gpu.lock.choose.family_gaps`), in words."""
    family = [m.name for m in knowledge.family]
    return [
        *lock_problems(packages, lock.record, family),
        *family_gaps(packages, lock.record.covered, family, markers),
    ]


def _check_sources(
    lock: LockFile, packages: Sequence[Package], knowledge: Knowledge, markers: Mapping[str, str]
) -> None:
    """Refuse, before installing, a lock that points outside the indexes it records or that
    would leave torch out here."""
    problems = _foreign_sources(lock, packages, knowledge, markers)
    if problems:
        from ..ui import some_of

        shown = some_of(problems)
        raise UsageError(
            f"{lock.path.name} is not what pip-gpu lock writes: {shown}; nothing was installed",
            "the file was edited or tampered with: restore it from version control, or re-resolve it "
            "with pip-gpu lock",
        )


TRUST_LOCK_INDEX_FLAG = "--trust-lock-index"


def index_moved(family: Sequence[LockFile], directory: Path) -> list[str]:
    """Locks whose recorded PyTorch index is not the one configured here, in words.

    ``PIP_GPU_PYTORCH_INDEX`` or ``[tool.pip-gpu] pytorch-index`` says where the torch family
    comes from; a lock re-pointed at another server (every URL, hash and the recorded index
    edited consistently) passes every check a lock makes of itself, so the configured index
    is the one fact outside the file. Nothing configured: the recorded index is the lock's.
    """
    from ..redact import redact_url

    variable = os.environ.get("PIP_GPU_PYTORCH_INDEX")
    configured, source = (
        (variable, "PIP_GPU_PYTORCH_INDEX")
        if variable
        else (load_project_config(directory).pytorch_index, "[tool.pip-gpu] pytorch-index")
    )
    if not configured:
        return []
    wanted = strip_credentials(configured).rstrip("/")
    # a lock made with --channel nightly (or test) records that channel's folder of the index
    same = {wanted, f"{wanted}/nightly", f"{wanted}/test"}
    return [
        f"{lock.path.name} was locked from the PyTorch index {redact_url(lock.record.inputs.pytorch_index)}, "
        f"but {source} names {redact_url(configured)}"
        for lock in family
        if strip_credentials(lock.record.inputs.pytorch_index).rstrip("/") not in same
    ]


def _check_environments(lock: LockFile, installed: Installed) -> None:
    environments = lock.pylock.environments or ()
    if environments and not any(
        marker.evaluate(dict(installed.markers, extra="")) for marker in environments
    ):
        raise UsageError(
            f"{lock.path.name} is locked for {' or '.join(str(m) for m in environments)}; the target is "
            f"{installed.markers['sys_platform']} {installed.markers['platform_machine']}, Python "
            f"{installed.markers['python_version']}",
            "re-lock for this target with pip-gpu lock --platform/--arch/--python-version",
        )


# --- sync ------------------------------------------------------------------------------------


def sync(options: SyncOptions) -> SyncReport:
    """Install exactly the lock this host runs (a dry run: only say what would change); raises
    when the installed result does not match it."""
    from ..installers import choose_installer
    from ..installers import run_command as run_installer

    def run_command(command: InstallerCommand) -> None:
        run_installer(command, to_stderr=options.installer_output_to_stderr)

    directory = _directory(options.cwd, options.lock_dir)
    family = _read_family(directory)
    target, host = _target_and_host(
        options.python, options.system, options.host, options.cwd, installing=True
    )
    knowledge = load_knowledge()
    stale = stale_reasons(family, directory)
    if stale and options.locked:
        raise UsageError(
            "--locked: " + "; ".join(stale), "re-resolve with pip-gpu lock, or sync without --locked"
        )
    moved = [] if options.trust_lock_index else index_moved(family, directory)
    if moved:
        raise UsageError(
            "; ".join(moved) + "; nothing was installed",
            "re-lock from the configured index with pip-gpu lock, or pass "
            f"{TRUST_LOCK_INDEX_FLAG} to install from the index the lock records",
        )
    for reason in stale:
        _say(f"pip-gpu: warning: {reason}")
    covering = [lock for lock in family if covers(lock, host)]
    if not covering:
        refused = not_covered(family, host, str(directory), _output_dir_flag(directory))
        raise UsageError(f"{refused.message}; nothing was changed", refused.hint)
    config = load_project_config(directory)
    choice = choose_lock(covering, host, knowledge, config.preferred_variant)
    if choice.lock is None:
        raise no_variant_runs(covering, host, knowledge, _output_dir_flag(directory))
    lock = choice.lock
    installer = choose_installer(options.installer, config.installer, target)
    installed = probe_installed(target.python)
    _check_environments(lock, installed)
    _check_sources(lock, lock.pylock.packages, knowledge, installed.markers)  # before anything changes
    doing = "a dry run: would install" if options.dry_run else "installing"
    _say(
        f"pip-gpu: target {target.python} (Python {target.python_version}, from {target.chosen_by})\n"
        f"pip-gpu: this host runs {lock.variant}: {doing} {lock.path.name} with {installer}"
    )
    changes = tuple(differences(lock, installed))
    locked_torch = next((p for p in selected(lock, installed.markers) if p.name == "torch"), None)
    report = SyncReport(
        lock_file=lock.path,
        variant=lock.variant,
        target=target,
        installer=installer,
        changes=changes,
        dry_run=options.dry_run,
        torch=str(locked_torch.version) if locked_torch is not None and locked_torch.version else None,
    )
    if options.dry_run:
        return report
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
                    env=_uv_pylock_preview(),
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
    torch = next((p for p in selected(lock, after.markers) if p.name == "torch"), None)
    what = f"torch {torch.version}" if torch is not None else lock.variant
    _say(f"pip-gpu: synced {target.prefix} to {lock.path.name} ({what})")
    return report


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


def _pip_sync(
    lock: LockFile, target: TargetEnv, installed: Installed, run: Callable[[InstallerCommand], None]
) -> None:
    """pip, any version: every locked file by URL with its hash, no resolution, then removals.

    pip >= 26.1 reads pylock.toml itself, but the environments pip-gpu meets often have an
    older pip. A requirements file of ``name @ url --hash=sha256:...`` lines installed with
    ``--no-deps --require-hashes`` is what a PEP 751 installer does: the exact files, checked
    against the lock's hashes, nothing resolved and no index consulted.

    The files are downloaded first (``pip download``, hashes checked) and installed from
    there, so that each wheel's own metadata is compared with the lock before anything
    changes: a file named ``torch-2.5.1+cu124`` whose metadata says ``2.5.1+cpu`` is refused,
    not installed and then found wrong.
    """
    packages = selected(lock, installed.markers)
    lines = [_pinned_line(package, installed.markers) for package in packages]
    pip = (str(target.python), "-m", "pip")
    with tempfile.TemporaryDirectory(prefix="pip-gpu-sync-") as scratch:
        requirements = Path(scratch) / "locked-requirements.txt"
        downloads = Path(scratch) / "files"
        run(
            InstallerCommand(
                argv=(
                    *pip,
                    "download",
                    "--no-deps",
                    "--require-hashes",
                    "--dest",
                    str(downloads),
                    "-r",
                    str(requirements),
                ),
                purpose=f"pip: downloading the files of {lock.path.name}",
                files={requirements: "".join(f"{line}\n" for line in lines)},
            )
        )
        found = _downloaded_wheels(downloads)
        _check_contents(lock, packages, found)
        local = Path(scratch) / "downloaded-requirements.txt"
        run(
            InstallerCommand(
                argv=(*pip, "install", "--no-deps", "--require-hashes", "--no-index", "-r", str(local)),
                purpose=f"pip: installing exactly {lock.path.name}",
                files={
                    local: "".join(f"{_local_line(p, found, line)}\n" for p, line in zip(packages, lines))
                },
            )
        )
    # --no-deps installed exactly the listed packages: whatever else was there before stays.
    listed = {str(p.name) for p in packages}
    extra = sorted(name for name in installed.dists if name not in listed | SEED_PACKAGES)
    if extra:
        run(
            InstallerCommand(
                argv=(*pip, "uninstall", "--yes", *extra),
                purpose=f"pip: removing what {lock.path.name} does not list",
            )
        )


def _downloaded_wheels(folder: Path) -> dict[str, tuple[Path, Optional[str]]]:
    """Each downloaded file by its project name: its path and the version its own metadata
    states (wheels: ``*.dist-info/METADATA``; None for an sdist, whose metadata is built)."""
    import zipfile
    from email.parser import HeaderParser

    found: dict[str, tuple[Path, Optional[str]]] = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.suffix != ".whl":  # an sdist: its metadata is built when it is installed
            with contextlib.suppress(ValueError):
                found.setdefault(str(parse_sdist_filename(path.name)[0]), (path, None))
            continue
        name = str(canonicalize_name(parse_wheel_filename(path.name)[0]))
        version: Optional[str] = None
        try:
            with zipfile.ZipFile(path) as wheel:
                entry = next(
                    n for n in wheel.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")
                )
                headers = HeaderParser().parsestr(wheel.read(entry).decode("utf-8", errors="replace"))
            name = str(canonicalize_name(headers.get("Name", name)))
            version = headers.get("Version")
        except (OSError, zipfile.BadZipFile, StopIteration, KeyError):
            version = "unreadable"
        found[name] = (path, version)
    return found


def _check_contents(
    lock: LockFile, packages: Sequence[Package], found: Mapping[str, tuple[Path, Optional[str]]]
) -> None:
    """Refuse, before installing, files whose own metadata is not the locked project and version."""
    problems = []
    for package in packages:
        name = str(canonicalize_name(str(package.name)))
        if name not in found:
            problems.append(f"{name}'s file was not downloaded, or its metadata names another project")
            continue
        version = found[name][1]
        if (
            version is not None
            and package.version is not None
            and not _same_version(version, str(package.version))
        ):
            problems.append(
                f"{name}'s file {found[name][0].name} holds {name} {version}, "
                f"not the locked {package.version}"
            )
    if problems:
        raise UsageError(
            f"{lock.path.name}: " + "; ".join(problems) + "; nothing was installed",
            "the index serves files that are not what their names and the lock say: fix the index "
            "(or --pytorch-index), then re-resolve with pip-gpu lock",
        )


def _local_line(package: Package, found: Mapping[str, tuple[Path, Optional[str]]], line: str) -> str:
    """The locked line with the downloaded file in place of the URL (the same hashes)."""
    path = found[str(canonicalize_name(str(package.name)))][0]
    hashes = line.split(" ", 3)[3] if line.count(" ") >= 3 else ""
    return f"{package.name} @ {path.resolve().as_uri()} {hashes}".rstrip()


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


def _uv_pylock_preview() -> dict[str, str]:
    """uv reads pylock.toml as a preview feature and warns on every sync unless it is named
    (uv 0.13: "Pass `--preview-features pylock` to disable this warning"); as a variable, a uv
    that does not know it ignores it. The user's own preview features are kept."""
    features = [f for f in os.environ.get("UV_PREVIEW_FEATURES", "").split(",") if f.strip()]
    return {"UV_PREVIEW_FEATURES": ",".join([*features, *([] if "pylock" in features else ["pylock"])])}


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


@dataclass(frozen=True)
class CheckReport:
    """``check``'s answer with what it was asked about, for the command line to render."""

    result: LockCheck
    directory: Path
    target: TargetEnv


def check_environment(
    directory: Path,
    target: TargetEnv,
    host: HostProfile,
    *,
    trust_lock_index: bool = False,
    verify_files: bool = False,
) -> LockCheck:
    """Compare an environment with the lock chosen for ``host`` (``check`` and ``doctor``).

    Installed files are compared with their RECORD by presence and size, and by sha256 for
    the files that name the build; ``verify_files``: every file by sha256.
    """
    if not find_lock_family(directory) and (directory / "uv.lock").is_file():
        from ..uv_lock import check_uv_project

        uv = check_uv_project(directory, probe_installed(target.python), host)
        return LockCheck(directory / "uv.lock", uv.variant, uv.problems, uv.installed, uv.fix)
    family = _read_family(directory)
    knowledge = load_knowledge()
    family_names = frozenset(canonicalize_name(m.name) for m in knowledge.family)
    locked = {canonicalize_name(str(p.name)) for lock in family for p in lock.pylock.packages}
    installed = probe_installed(target.python, verify=sorted(locked | family_names), hash_all=verify_files)
    problems = list(stale_reasons(family, directory))
    if not trust_lock_index:
        problems.extend(
            f"{reason} (pip-gpu sync refuses it without {TRUST_LOCK_INDEX_FLAG})"
            for reason in index_moved(family, directory)
        )
    unfinished = _unfinished_sync(target.prefix)
    if unfinished:
        problems.append(unfinished)
    covering = [lock for lock in family if covers(lock, host)]
    choice = (
        choose_lock(covering, host, knowledge, load_project_config(directory).preferred_variant)
        if covering
        else None
    )
    lock = choice.lock if choice else None
    runs_here = lock is not None
    fix = "pip-gpu sync"
    if not covering:
        refused = not_covered(family, host, str(directory), _output_dir_flag(directory))
        fix = str(refused.hint)
        problems.append(f"{refused.message}; {refused.hint}")
    elif lock is None:
        # As sync decides: no lock is meant for this host. Say so, and compare with the lock
        # the environment came from, without calling it this machine's.
        refusal = no_variant_runs(covering, host, knowledge, _output_dir_flag(directory))
        fix = refusal.hint or refusal.message
        lock = _lock_meant_for(family, installed, target.prefix)
        for candidate in family if lock is None else [lock]:
            problems.append(f"the lock pins {candidate.variant} but {why_not(candidate, host, knowledge)}")
        if lock is None:
            problems.append(str(refusal.hint))
    if lock is not None:
        problems.extend(
            f"{lock.path.name}: {p}"
            for p in _foreign_sources(lock, lock.pylock.packages, knowledge, installed.markers)
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


def check(options: CheckOptions) -> CheckReport:
    """How the target environment differs from the lock chosen for the host."""
    directory = _directory(options.cwd, options.lock_dir)
    target, host = _target_and_host(options.python, options.system, options.host, options.cwd)
    return CheckReport(
        check_environment(
            directory,
            target,
            host,
            trust_lock_index=options.trust_lock_index,
            verify_files=options.verify_files,
        ),
        directory,
        target,
    )


def _lock_meant_for(family: Sequence[LockFile], installed: Installed, prefix: Path) -> Optional[LockFile]:
    """When no locked build runs here: the lock the environment was synced from or looks like."""
    try:
        synced = json.loads((prefix / SYNC_RECORD).read_text(encoding="utf-8")).get("lock-file")
    except (OSError, ValueError, AttributeError):
        synced = None
    for lock in family:
        if lock.path.name == synced:
            return lock
    torch = installed.dists.get("torch")
    label = Variant.from_label(Version(torch).local) if torch else None
    for lock in family:
        if label is not None and lock.variant == label.name:
            return lock
    return family[0] if len(family) == 1 else None
