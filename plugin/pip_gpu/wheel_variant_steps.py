"""``--variant-index``: install, lock, sync and check PEP 825 variant wheels.

Neither pip nor uv (outside its preview) reads variant wheels: both refuse the label in the file
name. So pip-gpu chooses the wheel (:mod:`pip_gpu.decide.variant_wheels`), downloads it with its
hash checked, stores it under its name without the label (the contents, and so the hash, stay
the same), and hands the installer that file by direct reference. What landed is read back from
the installed ``*.dist-info/variant.json``.

The lock is ``pylock.toml`` (PEP 751): every wheel of the locked version, each label's and the
non-variant one, and ``[packages.variants-json]`` locked by hash (PEP 825), so one lock serves
the team's hosts and ``sync`` picks the label per host.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .decide.index import IndexError_, open_index_file
from .decide.variant_wheels import (
    IndexWheel,
    VariantChoice,
    choose_variant_wheel,
    host_tags_fit,
    judge_for_host,
    pick,
    providers_for,
    read_variants_json,
    with_index_credentials,
)
from .detect.target import TargetEnv, find_target
from .errors import BuildDidNotLand, NoBuildRuns, UsageError
from .host import HostFlags, HostProfile
from .lockfile import LockTarget
from .redact import redact_url, strip_credentials
from .requirements import RequirementLine
from .route import InstallerCommand
from .wheel_variants import LabelVerdict, parse_variant_wheel_filename

__all__ = [
    "LOCK_NAME",
    "VariantCheck",
    "VariantInstallOptions",
    "check_variant_lock",
    "choose_all",
    "install_variant_wheels",
    "is_variant_lock",
    "lock_variant_wheels",
    "sync_variant_lock",
]

LOCK_NAME = "pylock.toml"
TOOL_KEY = "wheel-variants"  # [tool.pip-gpu.wheel-variants] marks pip-gpu's variant lock
MAX_WHEEL_BYTES = 8 * 2**30


@dataclass(frozen=True)
class VariantInstallOptions:
    """What ``install``/``sync`` with a variant index need."""

    index_url: str
    requirements: tuple[str, ...]
    installer: Optional[str]
    python: Optional[str]
    system: bool
    host: HostFlags
    cwd: Path
    requirement_files: tuple[str, ...] = ()  # -r: the family from the variant index, the rest passed on
    constraint_files: tuple[str, ...] = ()  # -c: family lines narrow the choice, the rest passed on
    dry_run: bool = False
    installer_output_to_stderr: bool = False  # stdout carries JSON (sync --json)
    # ``install``'s pass-through options (``--pre``, ``--index-url``, ...), as installer arguments
    installer_args: tuple[str, ...] = ()
    verify_files: bool = False  # ``check --verify-files``: every installed file by sha256


@dataclass(frozen=True)
class VariantRequest:
    """One request, read once: the family's requirements (for the variant index, constraints
    folded in, markers evaluated for the target) and every other line (for the installer)."""

    family: tuple[str, ...]
    rest: tuple[RequirementLine, ...]
    global_options: tuple[tuple[str, ...], ...] = ()

    def installer_files(self, folder: Path) -> tuple[list[str], dict[Path, str]]:
        """The installer's arguments for the rest (``-r``/``-c`` files in ``folder``), and the files."""
        from .requirements import render_file

        args: list[str] = []
        files: dict[Path, str] = {}
        wanted = [line for line in self.rest if not line.constraint]
        limits = [line for line in self.rest if line.constraint]
        if wanted:
            files[folder / "requirements.txt"] = render_file(wanted, self.global_options)
            args += ["-r", str(folder / "requirements.txt")]
        if limits:
            files[folder / "constraints.txt"] = render_file(limits)
            args += ["-c", str(folder / "constraints.txt")]
        return args, files


def read_variant_request(
    requirements: Sequence[str],
    requirement_files: Sequence[str],
    constraint_files: Sequence[str],
    cwd: Path,
    host: HostProfile,
) -> VariantRequest:
    """Split the request: the torch family comes from the variant index, the rest from your indexes."""
    from packaging.specifiers import SpecifierSet

    from .decide.plan import marker_environment, read_request

    family_names = _family_names()
    request = read_request(list(requirements), list(requirement_files), cwd, list(constraint_files))
    markers = marker_environment(host)
    wanted: dict[str, SpecifierSet] = {}
    limits: dict[str, SpecifierSet] = {}
    rest: list[RequirementLine] = []
    for line in request.lines:
        if line.name not in family_names or line.requirement is None:
            rest.append(line)
            continue
        if line.is_direct_url:
            raise UsageError(
                f"{line.text} ({line.origin}): a direct URL cannot come from --variant-index",
                "drop the URL to take the family from the variant index, or drop --variant-index",
            )
        requirement = line.requirement
        if requirement.marker is not None and not requirement.marker.evaluate(markers):
            continue
        table = limits if line.constraint else wanted
        table[line.name] = table.get(line.name, SpecifierSet()) & requirement.specifier
    family = tuple(f"{name}{spec & limits.get(name, SpecifierSet())}" for name, spec in wanted.items())
    options = tuple(option for f in request.files for option in f.global_options)
    return VariantRequest(family, tuple(rest), options)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _target_and_host(
    python: Optional[str], system: bool, flags: HostFlags, cwd: Path, installing: bool
) -> tuple[TargetEnv, HostProfile]:
    from .detect import host_for

    target = find_target(python, cwd, os.environ, system=system, installing=installing)
    if flags.python_version is None:
        flags = replace(flags, python_version=target.python_version)
    return target, host_for(flags)


def _family_names() -> frozenset[str]:
    from .knowledge import load_knowledge

    return frozenset(canonicalize_name(m.name) for m in load_knowledge().family)


def _split(requirements: Sequence[str]) -> tuple[list[str], list[str]]:
    """(family requirements, the rest): only the torch family comes from the variant index."""
    family = _family_names()
    ours: list[str] = []
    rest: list[str] = []
    for text in requirements:
        try:
            name = canonicalize_name(Requirement(text).name)
        except InvalidRequirement as exc:
            raise UsageError(f"invalid requirement {text!r}: {exc}") from None
        (ours if name in family else rest).append(text)
    return ours, rest


def choose_all(index_url: str, requirements: Sequence[str], host: HostProfile) -> list[VariantChoice]:
    """A choice per family requirement (``torch`` when none is given)."""
    ours, _ = _split(requirements)
    return [choose_variant_wheel(index_url, text, host) for text in ours or ["torch"]]


def _refuse(choice: VariantChoice, host: HostProfile) -> NoBuildRuns:
    gpus = ", ".join(
        f"{g.name} (sm_{g.compute_capability[0]}{g.compute_capability[1]})" for g in host.visible_nvidia_gpus
    )
    driver = f"driver {host.driver_version}" if host.driver_version else "no NVIDIA driver"
    return NoBuildRuns(
        f"no wheel of {choice.requirement} ({choice.package} {choice.version}) fits this host "
        f"({driver}{', ' + gpus if gpus else ''}): {choice.problem}",
        "upgrade the NVIDIA driver, pin another version, or install without --variant-index",
    )


def _download(wheel: IndexWheel, folder: Path) -> Path:
    """The wheel, hash checked, stored under its name without the label."""
    path = folder / wheel.name.plain_filename
    digest = hashlib.sha256()
    shown = redact_url(wheel.url)
    try:
        with open_index_file(wheel.url, timeout=60) as response, path.open("wb") as out:
            total = 0
            while chunk := response.read(1 << 20):
                total += len(chunk)
                if total > MAX_WHEEL_BYTES:
                    raise IndexError_(f"{shown} is larger than {MAX_WHEEL_BYTES // 2**30} GiB")
                digest.update(chunk)
                out.write(chunk)
    except OSError as exc:
        raise IndexError_(
            f"cannot download {shown}: {getattr(exc, 'reason', exc)}", "check the network"
        ) from None
    if wheel.sha256 and digest.hexdigest() != wheel.sha256.lower():
        raise UsageError(
            f"{shown} does not match its hash: sha256 {digest.hexdigest()}, expected {wheel.sha256}",
            "the file changed on the index or was tampered with; nothing was installed",
        )
    return path


def _dist_info(target: TargetEnv, package: str) -> Optional[Path]:
    """The installed ``*.dist-info`` folder of ``package`` (a canonical name) in the target."""
    for folder in target.site_packages:
        try:
            entries = sorted(folder.glob("*.dist-info"))
        except OSError:
            continue
        for entry in entries:
            if canonicalize_name(entry.name[: -len(".dist-info")].partition("-")[0]) == package:
                return entry
    return None


def installed_label(target: TargetEnv, package: str) -> Optional[tuple[str, str]]:
    """(version, label) of ``package`` in the target (label ``""``: a non-variant wheel)."""
    entry = _dist_info(target, package)
    if entry is None:
        return None
    version = entry.name[: -len(".dist-info")].partition("-")[2]
    try:
        data = json.loads((entry / "variant.json").read_text(encoding="utf-8"))
        labels = list(data.get("variants", {}))
    except FileNotFoundError:
        labels = []
    except (OSError, ValueError, AttributeError):
        labels = ["?"]
    return version, (labels[0] if len(labels) == 1 else ",".join(labels))


def _installed_verdict(
    target: TargetEnv, package: str, label: str, host: HostProfile
) -> Optional[LabelVerdict]:
    """The installed label judged for ``host`` from the wheel's own ``variant.json`` (what is on
    disk, whether or not the lock knows the label); None without one that can be read."""
    from .wheel_variants import VariantMetadataError, judge_labels, parse_variants_json

    entry = _dist_info(target, package)
    if entry is None or not label:
        return None
    try:
        metadata = parse_variants_json((entry / "variant.json").read_bytes(), f"{entry.name}/variant.json")
    except (OSError, VariantMetadataError):
        return None
    verdicts = judge_labels(
        metadata, [label], providers_for(host), has_plain_wheel=False, gpu_host=bool(host.visible_nvidia_gpus)
    )
    return next((v for v in verdicts if v.label == label), None)


@dataclass(frozen=True)
class _Fetched:
    """A chosen wheel, downloaded and stored under its name without the label."""

    package: str
    version: str
    label: str
    path: Path
    sha256: str = ""

    @property
    def reference(self) -> str:
        return f"{self.package} @ {self.path.as_uri()}"


def _fetch(package: str, version: str, wheel: IndexWheel, folder: Path) -> _Fetched:
    return _Fetched(package, version, wheel.label, _download(wheel, folder), wheel.sha256 or "")


def _install_commands(
    target: TargetEnv,
    chosen: str,
    files: Sequence[_Fetched],
    rest: tuple[list[str], dict[Path, str]],
    no_deps: bool,
    named: bool = True,
    installer_args: Sequence[str] = (),
) -> list[InstallerCommand]:
    """The installer runs: the chosen wheels by direct reference, the rest (``-r``/``-c`` files)
    as the installer resolves it from your indexes. ``named``: the references go on the command
    line (else the rest's files hold them, hash-checked with the rest: ``sync``).
    ``installer_args``: the user's pass-through options, given to the run that resolves the rest."""
    from .installers import uv_binary

    rest_args, rest_files = rest
    lines = [f.reference for f in files] if named else []
    # The same version from another file: pip says "already installed" and keeps the old
    # label, uv may too; so a member whose installed label differs is reinstalled, alone.
    replace_label = [
        f for f in files if installed_label(target, f.package) not in (None, (f.version, f.label))
    ]
    extra = ["--no-deps", *installer_args] if no_deps else list(installer_args)
    purpose = f"{chosen} install of the chosen variant wheels"
    if chosen == "uv":
        argv = [uv_binary(), "pip", "install", "--python", str(target.python), *extra, *lines, *rest_args]
        for fetched in replace_label:
            argv += ["--reinstall-package", fetched.package]
        return [InstallerCommand(tuple(argv), purpose=purpose, files=rest_files)]
    pip = [str(target.python), "-m", "pip", "install"]
    commands = []
    if replace_label:
        relabel = [f.reference for f in replace_label]
        commands.append(
            InstallerCommand(
                (*pip, "--force-reinstall", "--no-deps", *relabel),
                purpose="pip reinstall of the chosen variant wheels",
            )
        )
        if no_deps and not rest_args:
            return commands
    commands.append(InstallerCommand((*pip, *extra, *lines, *rest_args), purpose=purpose, files=rest_files))
    return commands


def _install_files(
    target: TargetEnv,
    installer: Optional[str],
    files: Sequence[_Fetched],
    rest: tuple[list[str], dict[Path, str]],
    no_deps: bool,
    named: bool = True,
    to_stderr: bool = False,
    installer_args: Sequence[str] = (),
) -> None:
    from .installers import choose_installer, run_command

    chosen = choose_installer(installer, None, target)
    for command in _install_commands(target, chosen, files, rest, no_deps, named, installer_args):
        run_command(command, to_stderr=to_stderr)


def _verify(target: TargetEnv, choices: Sequence[tuple[str, str, str]]) -> None:
    for package, version, label in choices:
        landed = installed_label(target, package)
        if landed != (version, label):
            shown = (
                "not installed" if landed is None else f"{landed[0]} variant {landed[1] or '(non-variant)'}"
            )
            raise BuildDidNotLand(
                f"{package} {version} variant {label or '(non-variant)'} was installed, "
                f"but the environment holds {shown}",
                "run pip-gpu check for the whole difference",
            )


@dataclass(frozen=True)
class VariantDryRun:
    """What ``install --dry-run`` would do: the choices, and the installer runs."""

    choices: tuple[VariantChoice, ...]
    installer: str
    python: Path
    commands: tuple[InstallerCommand, ...]
    host: HostProfile

    def to_json(self, index_url: str) -> dict[str, Any]:
        first = self.choices[0]
        return {
            "dry_run": True,
            **first.to_json(),
            "index_url": redact_url(index_url),
            "installer": self.installer,
            "python": str(self.python),
            "host": self.host.to_json(),
            "packages": [c.to_json() for c in self.choices],
            "commands": [
                {
                    "purpose": c.purpose,
                    "argv": [redact_url(a) for a in c.argv],
                    "files": {str(path): redact_url(text) for path, text in c.files.items()},
                }
                for c in self.commands
            ],
        }

    def script(self) -> str:
        """The runs as a shell script; the wheels are downloaded (hash checked) to ``$d`` first."""
        import shlex

        lines = [f"# pip-gpu install --dry-run --variant-index: {len(self.commands)} installer run(s)"]
        lines.append("d=$(mktemp -d)  # the chosen wheels, stored without their label, and the files")
        for choice in self.choices:
            wheel = choice.wheel
            assert wheel is not None
            lines.append(
                f"# {choice.package} {choice.version} variant {choice.label or '(non-variant)'}: "
                f"{redact_url(wheel.url)} (sha256 {wheel.sha256}) -> $d/{wheel.name.plain_filename}"
            )
        for command in self.commands:
            lines.append(f"# {command.purpose}")
            for path, text in command.files.items():
                lines.append(f"cat > \"$d/{path.name}\" <<'PIP_GPU_EOF'")
                lines.extend(redact_url(line) for line in text.splitlines())
                lines.append("PIP_GPU_EOF")
            words = [redact_url(a).replace(DRY_RUN_FOLDER.as_uri(), "file://$d") for a in command.argv]
            lines.append(
                " ".join(
                    '"$d' + w[len(str(DRY_RUN_FOLDER)) :] + '"'
                    if w.startswith(str(DRY_RUN_FOLDER))
                    else shlex.quote(w)
                    for w in words
                )
            )
        return "\n".join(lines)


DRY_RUN_FOLDER = Path(tempfile.gettempdir()) / "pip-gpu-variants-dry-run"  # shown as $d


def install_variant_wheels(
    options: VariantInstallOptions,
) -> tuple[list[VariantChoice], Optional[VariantDryRun]]:
    """Choose, download and install the family's variant wheels; the rest passes through.
    A dry run chooses and returns the runs it would make, downloading and installing nothing."""
    from .installers import choose_installer

    target, host = _target_and_host(
        options.python, options.system, options.host, options.cwd, not options.dry_run
    )
    request = read_variant_request(
        options.requirements, options.requirement_files, options.constraint_files, options.cwd, host
    )
    if not request.family:
        raise UsageError(
            "--variant-index: no torch-family package in the request",
            "name torch (or another family member), or drop --variant-index",
        )
    choices = [choose_variant_wheel(options.index_url, text, host) for text in request.family]
    for choice in choices:
        if choice.wheel is None:
            raise _refuse(choice, host)
    installer = choose_installer(options.installer, None, target)
    from .config import user_indexes

    # As plain install: everything but the family from the indexes the one rule names, whichever
    # installer runs (uv is given pip's configuration, or pip uv's).
    passed = [*options.installer_args]
    passed += user_indexes(os.environ, options.cwd).args_for(installer, passed)
    if options.dry_run:
        files = [
            _Fetched(c.package, str(c.version), c.label or "", DRY_RUN_FOLDER / c.wheel.name.plain_filename)
            for c in choices
            if c.wheel is not None
        ]
        rest = request.installer_files(DRY_RUN_FOLDER)
        commands = _install_commands(target, installer, files, rest, no_deps=False, installer_args=passed)
        return choices, VariantDryRun(tuple(choices), installer, target.python, tuple(commands), host)
    with tempfile.TemporaryDirectory(prefix="pip-gpu-variants-") as folder:
        files = [
            _fetch(c.package, str(c.version), c.wheel, Path(folder)) for c in choices if c.wheel is not None
        ]
        _install_files(
            target,
            installer,
            files,
            request.installer_files(Path(folder)),
            no_deps=False,
            installer_args=passed,
        )
    _verify(target, [(c.package, str(c.version), c.label or "") for c in choices])
    for choice in choices:
        _say(
            f"pip-gpu: installed {choice.package} {choice.version} variant {choice.label or '(non-variant)'}"
        )
    return choices, None


# --- the lock ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VariantLockOptions:
    """``lock --variant-index``: what to lock, for which targets, and where."""

    index_url: str
    requirements: tuple[str, ...]
    host: HostFlags  # the GPU facts (the label this host takes is reported)
    cwd: Path
    directory: Path
    requirement_files: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()  # every combination of these is a target, as plain ``lock``
    arches: tuple[str, ...] = ()
    python_versions: tuple[str, ...] = ()


@dataclass(frozen=True)
class VariantLock:
    """What ``lock --variant-index`` wrote."""

    path: Path
    choices: tuple[VariantChoice, ...]  # the family, for the first target
    targets: tuple[LockTarget, ...]
    others: tuple[str, ...]  # the ordinary entries, "name version"

    def to_json(self) -> dict[str, Any]:
        """``lock --json``: the file, its targets, each family member's labels and this host's."""
        return {
            "locks": [
                {
                    "file": str(self.path),
                    "targets": [str(t) for t in self.targets],
                    "packages": [
                        {
                            "package": c.package,
                            "version": c.version,
                            "variant_labels": sorted(w.label for w in c.wheels),
                            "variant_label": c.label,  # this host's (None: none fits)
                        }
                        for c in self.choices
                    ],
                    "others": list(self.others),
                }
            ]
        }


def _lock_targets(options: VariantLockOptions, host: HostProfile) -> list[LockTarget]:
    """The flags' combinations over ``[tool.pip-gpu] targets``, else this host with the target
    interpreter's Python (plain ``lock``'s rule, less the targets other locks record)."""
    from .config import load_project_config
    from .lock.choose import combine_targets

    configured = load_project_config(options.cwd).targets
    if configured:
        base = [LockTarget.parse(t, "[tool.pip-gpu] targets") for t in configured]
    else:
        python = find_target(None, options.cwd, os.environ).python_version
        base = [LockTarget.make(host.os, host.arch, python, "this host")]
    return combine_targets(base, options.platforms, options.arches, options.python_versions, host)


def _family_entry(
    package: str, choices: Sequence[tuple[LockTarget, VariantChoice]], index_url: str
) -> dict[str, Any]:
    """One family member's entry: every target's wheels of the one version, and variants.json."""
    versions = {str(c.version) for _, c in choices}
    if len(versions) > 1:
        taken = ", ".join(f"{t}: {c.version}" for t, c in choices)
        raise UsageError(
            f"--variant-index: the targets take different versions of {package} ({taken})",
            f"pin one version ({package}==...) for every target",
        )
    first = choices[0][1]
    entry: dict[str, Any] = {
        "name": package,
        "version": str(first.version),
        "index": strip_credentials(index_url),
    }
    if first.variants_json_url:
        entry["variants-json"] = {
            "url": strip_credentials(first.variants_json_url),
            "hashes": {"sha256": first.variants_json_sha256},
        }
    wheels = {w.name.filename: w for _, c in choices for w in c.wheels if w.sha256}
    entry["wheels"] = [
        {
            "name": w.name.filename,
            "url": strip_credentials(w.url),
            **({"size": w.size} if w.size else {}),
            "hashes": {"sha256": w.sha256},
        }
        for _, w in sorted(wheels.items())
    ]
    return entry


def _family_dependencies(choice: VariantChoice, folder: Path) -> list[str]:
    """What the chosen wheel (for a host no label fits: the first label's) requires of packages
    outside the family: its PEP 658 metadata, else its own METADATA (downloaded, hash checked)."""
    import email.parser
    import zipfile

    from .decide.index import index_timeout, read_index_file

    wheel = choice.wheel or (choice.wheels[0] if choice.wheels else None)
    if wheel is None:
        return []
    data = read_index_file(wheel.url + ".metadata", timeout=index_timeout())
    if data is None or not data.startswith(b"Metadata-Version"):
        folder = folder / (wheel.label or "non-variant")  # every label's file has the same plain name
        path = folder / wheel.name.plain_filename
        if not path.is_file():  # the same wheel for another target: read already
            folder.mkdir(parents=True, exist_ok=True)
            path = _download(wheel, folder)
        with zipfile.ZipFile(path) as archive:
            inside = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            data = archive.read(inside)
    family = _family_names()
    wanted = []
    for text in email.parser.BytesParser().parsebytes(data).get_all("Requires-Dist") or []:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        if canonicalize_name(requirement.name) in family or "extra" in str(requirement.marker or ""):
            continue  # a family member comes from the variant index when named; extras are not asked for
        wanted.append(str(requirement))
    return wanted


def _resolve_others(
    target: LockTarget,
    host: HostProfile,
    request: VariantRequest,
    dependencies: Sequence[str],
    folder: Path,
) -> Optional[tuple[tuple[str, str], dict[str, Any], dict[str, str]]]:
    """uv's PEP 751 resolution of everything else (and the family's own dependencies) for one
    target, from your indexes, as plain ``lock`` resolves it; None when there is nothing else."""
    from .installers import run_command, uv_binary
    from .lock.choose import platform_marker
    from .lock.resolve import index_of_package, user_index_args, uv_python_platform
    from .lockfile import load_toml

    wanted = [line for line in request.rest if not line.constraint]
    if not wanted and not dependencies:
        return None
    folder.mkdir(parents=True)
    rest_args, rest_files = request.installer_files(folder)
    if dependencies:
        extra = folder / "family-dependencies.txt"
        rest_files[extra] = "".join(f"{text}\n" for text in dependencies)
        rest_args += ["-r", str(extra)]
    out = folder / "pylock.toml"
    argv = [
        uv_binary(), "pip", "compile", "--quiet", "--no-header", "--format", "pylock.toml", "-o", str(out),
        "--python-version", target.python_version, "--python-platform", uv_python_platform(target),
        *user_index_args(os.environ), *(arg for arg in rest_args if arg != "-r"),  # sources: positional
    ]  # fmt: skip
    run_command(
        InstallerCommand(tuple(argv), f"uv resolution of the other packages for {target}", files=rest_files),
        to_stderr=True,
    )
    resolved = load_toml(out.read_text(encoding="utf-8"), "uv's lock output")
    family = _family_names()
    resolved["packages"] = [
        p for p in resolved.get("packages", []) if canonicalize_name(str(p.get("name", ""))) not in family
    ]
    indexes = {}
    for package in resolved["packages"]:
        found = index_of_package(package, request.global_options)
        if found:
            indexes[str(package["name"])] = strip_credentials(found)
    return (platform_marker(host), target.python_version), resolved, indexes


def lock_variant_wheels(options: VariantLockOptions) -> VariantLock:
    """Write ``pylock.toml``: for each family member every wheel of the chosen version (each
    target's) and its variants.json by hash; every other package as plain ``lock`` locks it."""
    from .detect import host_for
    from .lock.choose import environment_marker, host_at
    from .lockfile import merge_resolutions, render_lock, write_atomically

    this_host = host_for(replace(options.host, platform=None, arch=None, python_version=None))
    targets = _lock_targets(options, this_host)
    files = [str(options.cwd / f) for f in options.requirement_files]
    family: dict[str, list[tuple[LockTarget, VariantChoice]]] = {}
    parts = []
    environments = []
    with tempfile.TemporaryDirectory(prefix="pip-gpu-variant-lock-") as scratch:
        for number, target in enumerate(targets):
            host = host_at(this_host, target)
            environments.append(environment_marker(host))
            request = read_variant_request(options.requirements, files, (), options.cwd, host)
            if not request.family and request.rest:
                raise UsageError(
                    "--variant-index: no torch-family package in the request",
                    "name torch (or another family member), or drop --variant-index",
                )
            choices = [
                choose_variant_wheel(options.index_url, text, host) for text in request.family or ("torch",)
            ]
            dependencies: list[str] = []
            for choice in choices:
                family.setdefault(choice.package, []).append((target, choice))
                dependencies += _family_dependencies(choice, Path(scratch) / "wheels")
            part = _resolve_others(target, host, request, dependencies, Path(scratch) / f"resolve-{number}")
            if part is not None:
                parts.append(part)
    others = merge_resolutions(parts) if parts else {"packages": []}
    packages = [_family_entry(name, chosen, options.index_url) for name, chosen in family.items()]
    packages += others["packages"]
    packages.sort(key=lambda p: (str(p["name"]), str(p.get("version", ""))))
    document: dict[str, Any] = {"lock-version": "1.0", "environments": environments}
    if "requires-python" in others:
        document["requires-python"] = others["requires-python"]
    document["created-by"] = "pip-gpu"
    document["packages"] = packages
    document["tool"] = {
        "pip-gpu": {
            TOOL_KEY: {
                "variant-index": strip_credentials(options.index_url),
                "requirements": [strip_credentials(r) for r in options.requirements],
                "requirement-files": list(options.requirement_files),
                "targets": [str(t) for t in targets],
            }
        }
    }
    options.directory.mkdir(parents=True, exist_ok=True)
    path = options.directory / LOCK_NAME
    _validate(document, path.name)
    write_atomically(path, render_lock(document).encode("utf-8"))
    return VariantLock(
        path,
        tuple(c for _, c in (chosen[0] for chosen in family.values())),
        tuple(targets),
        tuple(f"{p['name']} {p.get('version', '')}".strip() for p in others["packages"]),
    )


def is_variant_lock(directory: Path) -> bool:
    """Whether ``directory/pylock.toml`` is a lock pip-gpu wrote with ``--variant-index``."""
    try:
        return _read_lock(directory) is not None
    except UsageError:
        return True  # it says it is one; reading it again reports what is wrong


def _read_lock(directory: Path) -> Optional[dict[str, Any]]:
    path = directory / LOCK_NAME
    if not path.is_file():
        return None
    from .lockfile import load_toml

    text = path.read_text(encoding="utf-8", errors="replace")
    if TOOL_KEY not in text:
        return None
    document = load_toml(text, path.name)
    if TOOL_KEY not in document.get("tool", {}).get("pip-gpu", {}):
        return None
    _validate(document, path.name)
    return document


def _validate(document: Mapping[str, Any], where: str) -> None:
    """PEP 751 as ``packaging`` checks it, with each variant wheel's name read without its label
    (``packaging`` predates PEP 825 and refuses the label)."""
    from packaging.pylock import Pylock, PylockValidationError

    copy = json.loads(json.dumps(document))
    for package in copy.get("packages", []):
        package.pop("variants-json", None)
        for wheel in package.get("wheels", []):
            try:
                wheel["name"] = parse_variant_wheel_filename(str(wheel.get("name"))).plain_filename
            except ValueError as exc:
                raise UsageError(f"{where}: {exc}", "re-lock with pip-gpu lock --variant-index URL") from None
        original: Mapping[str, Any] = next(
            (p for p in document["packages"] if p.get("name") == package.get("name")), {}
        )
        json_table = original.get("variants-json")
        if json_table is not None and not (
            isinstance(json_table, dict)
            and json_table.get("url")
            and json_table.get("hashes", {}).get("sha256")
        ):
            raise UsageError(
                f"{where}: [packages.variants-json] of {package.get('name')} needs url and hashes.sha256"
            )
    try:
        Pylock.from_dict(copy)
    except PylockValidationError as exc:
        raise UsageError(
            f"{where} is not a valid PEP 751 lock: {exc}", "re-lock with pip-gpu lock --variant-index URL"
        ) from None


@dataclass(frozen=True)
class LockedChoice:
    package: str
    version: str
    wheel: Optional[IndexWheel]
    verdicts: tuple[LabelVerdict, ...]


def _choose_locked(document: Mapping[str, Any], host: HostProfile, index_url: str) -> list[LockedChoice]:
    """Each locked package's wheel for ``host``, judged with the locked variants.json (hash checked).
    The lock holds no credentials: ``index_url`` (the variant index as configured) lends its
    own to the URLs on its origin, else the netrc file's are sent."""
    chosen: list[LockedChoice] = []
    for package in document["packages"]:
        if not _is_family_entry(package):
            continue
        wheels = []
        for entry in package.get("wheels", []):
            parsed = parse_variant_wheel_filename(entry["name"])
            if host_tags_fit(parsed.tags, host):
                url = with_index_credentials(entry["url"], index_url)
                wheels.append(IndexWheel(parsed, url, entry["hashes"].get("sha256"), entry.get("size")))
        table = package.get("variants-json")
        if table is None:
            chosen.append(
                LockedChoice(package["name"], package["version"], wheels[0] if wheels else None, ())
            )
            continue
        metadata, _ = read_variants_json(
            with_index_credentials(table["url"], index_url),
            table["hashes"]["sha256"],
            f"the hash {LOCK_NAME} locks",
        )
        verdicts = judge_for_host(metadata, wheels, host)
        chosen.append(
            LockedChoice(package["name"], package["version"], pick(verdicts, wheels), tuple(verdicts))
        )
    return chosen


def _is_family_entry(package: Mapping[str, Any]) -> bool:
    return "variants-json" in package or canonicalize_name(str(package.get("name", ""))) in _family_names()


@dataclass(frozen=True)
class _LockedOther:
    """An ordinary locked package (not from the variant index) this host installs."""

    name: str
    version: str
    hashes: tuple[str, ...]  # "sha256:..." of each of its files

    @property
    def line(self) -> str:
        return " ".join([f"{self.name}=={self.version}", *(f"--hash={h}" for h in self.hashes)])


def _locked_others(document: Mapping[str, Any], host: HostProfile) -> list[_LockedOther]:
    """The lock's ordinary packages whose marker holds on ``host`` (PEP 751 ``marker``)."""
    from packaging.markers import Marker

    from .lock.choose import marker_values

    values = dict(marker_values(host), extra="")
    others = []
    for package in document["packages"]:
        if _is_family_entry(package) or (
            package.get("marker") and not Marker(package["marker"]).evaluate(values)
        ):
            continue
        files = [*package.get("wheels", []), *([package["sdist"]] if "sdist" in package else [])]
        hashes = tuple(f"sha256:{f['hashes']['sha256']}" for f in files if f.get("hashes", {}).get("sha256"))
        others.append(_LockedOther(str(package["name"]), str(package.get("version", "")), hashes))
    return others


def _not_covered(document: Mapping[str, Any], host: HostProfile) -> Optional[str]:
    """Why the lock does not serve this host's platform and Python (None: it does, or it names no targets)."""
    from .lock.choose import target_of

    targets = document.get("tool", {}).get("pip-gpu", {}).get(TOOL_KEY, {}).get("targets")
    here = str(target_of(host))
    if not targets or here in targets:
        return None
    return f"{LOCK_NAME} covers {', '.join(targets)}; this host is {here}"


@dataclass(frozen=True)
class VariantSync:
    """What ``sync`` did with a variant lock (or, for a dry run, would do)."""

    lock_file: Path
    prefix: Path
    dry_run: bool
    chosen: tuple[tuple[str, str, str], ...]  # (package, version, label) for this host
    changes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "lock": self.lock_file.name,
            "prefix": str(self.prefix),
            "dry_run": self.dry_run,
            "packages": [{"package": p, "version": v, "variant_label": label} for p, v, label in self.chosen],
            "changes": list(self.changes),
        }


def _changes(
    target: TargetEnv, chosen: Sequence[tuple[str, str, str]], others: Sequence[_LockedOther]
) -> list[str]:
    """What syncing would change in the target, in words."""
    changes = []
    for package, version, label in chosen:
        wanted = f"{version} variant {label or '(non-variant)'}"
        landed = installed_label(target, package)
        if landed is None:
            changes.append(f"install {package} {wanted}")
        elif landed != (version, label):
            changes.append(f"{package} {landed[0]} variant {landed[1] or '(non-variant)'} -> {wanted}")
    for other in others:
        found = installed_label(target, canonicalize_name(other.name))
        if found is None:
            changes.append(f"install {other.name} {other.version}")
        elif found[0] != other.version:
            changes.append(f"{other.name} {found[0]} -> {other.version}")
    return changes


def sync_variant_lock(options: VariantInstallOptions) -> VariantSync:
    """Install the label of each locked package that fits this host; refuse (exit 2, nothing
    changed) when none does or the locked variants.json changed. A dry run says what would
    change and installs nothing."""
    directory = options.cwd
    document = _read_lock(directory)
    if document is None:
        raise UsageError(
            f"no {LOCK_NAME} written with --variant-index in {directory}",
            "write it with pip-gpu lock --variant-index URL",
        )
    target, host = _target_and_host(
        options.python, options.system, options.host, options.cwd, not options.dry_run
    )
    uncovered = _not_covered(document, host)
    if uncovered:
        raise NoBuildRuns(
            f"{uncovered}; nothing was changed",
            f"add it: pip-gpu lock --variant-index URL --platform {host.os} --python-version "
            f"{host.python_version} (with the other targets)",
        )
    choices = _choose_locked(document, host, options.index_url)
    for choice in choices:
        if choice.wheel is None:
            reasons = "; ".join(f"{v.label or 'non-variant'}: {v.reason}" for v in choice.verdicts)
            raise NoBuildRuns(
                f"no locked wheel of {choice.package} {choice.version} fits this host: {reasons}; "
                "nothing was changed",
                "re-lock a newer version (pip-gpu lock --variant-index URL), or upgrade the NVIDIA driver",
            )
    chosen = tuple((c.package, c.version, c.wheel.label if c.wheel else "") for c in choices)
    others = _locked_others(document, host)
    report = VariantSync(
        directory / LOCK_NAME, target.prefix, options.dry_run, chosen, tuple(_changes(target, chosen, others))
    )
    if options.dry_run:
        return report
    with tempfile.TemporaryDirectory(prefix="pip-gpu-variants-") as folder:
        files = [_fetch(c.package, c.version, c.wheel, Path(folder)) for c in choices if c.wheel is not None]
        # one hash-checked requirements file: the fetched wheels and the ordinary packages
        locked = Path(folder) / "locked.txt"
        lines = [f"{f.reference} --hash=sha256:{f.sha256}" for f in files]
        lines += [other.line for other in others]
        text = "".join(f"{line}\n" for line in lines)
        rest = (["-r", str(locked)], {locked: text})
        _install_files(
            target, options.installer, files, rest, True, False, options.installer_output_to_stderr
        )
    _verify(target, chosen)
    for package, version, label in chosen:
        _say(f"pip-gpu: synced {package} {version} variant {label or '(non-variant)'} from {LOCK_NAME}")
    return report


@dataclass(frozen=True)
class LabelCheck:
    """One installed family member's label, judged for the host ``check`` answers for."""

    package: str
    version: str
    label: str
    verdict: Optional[LabelVerdict]  # None: no verdict (not installed, or another version)
    best: Optional[str]  # the locked label sync picks for this host; None when none fits

    def to_json(self) -> dict[str, Any]:
        failing = [] if self.verdict is None else [f for f in self.verdict.features if not f.fits]
        return {
            "package": self.package,
            "version": self.version,
            "variant_label": self.label,
            "fits": None if self.verdict is None else self.verdict.fits,
            "failing": [
                {"namespace": f.namespace, "feature": f.feature, "reason": f.reason} for f in failing
            ],
            "best": self.best,
        }


@dataclass(frozen=True)
class VariantCheck:
    """``check``'s answer for a variant lock."""

    lock_file: Path
    problems: tuple[str, ...]
    installed: Mapping[str, str]  # package -> "version variant label"
    labels: tuple[LabelCheck, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def fix(self) -> Optional[str]:
        """The way out: sync, unless no locked label fits this host."""
        if self.ok:
            return None
        if any(c.best is None for c in self.labels):
            return (
                "no locked label fits this host: upgrade the NVIDIA driver, or re-lock a version "
                "with a label that fits (pip-gpu lock --variant-index URL)"
            )
        return "pip-gpu sync (installs the locked label that fits this host)"


def _damaged(target: TargetEnv, document: Mapping[str, Any], host: HostProfile, hash_all: bool) -> list[str]:
    """Locked packages whose installed files differ from their RECORD, as plain ``check`` reads
    them: present and of the recorded size, the files that name the build by sha256; with
    ``hash_all`` (``--verify-files``) every file by sha256."""
    from .detect.target import read_installed
    from .ui import progress

    names = sorted(
        {canonicalize_name(other.name) for other in _locked_others(document, host)}
        | {
            canonicalize_name(str(p.get("name", "")))
            for p in document.get("packages", [])
            if _is_family_entry(p)
        }
    )
    how = "the sha256 of every installed file" if hash_all else "the installed files"
    with progress(f"checking {how} of {len(names)} packages against their RECORD"):
        found = read_installed(target.python, names, hash_all=hash_all)
    return [
        f"{name} {found.dists.get(name, '')} is damaged: {why}; reinstall it with pip-gpu sync"
        for name, why in sorted(found.broken.items())
    ]


def check_variant_lock(options: VariantInstallOptions) -> VariantCheck:
    """Each locked package installed at its version, with a label that fits the host and is the
    one ``sync`` picks here. A label that no longer fits (the driver or the GPU changed since
    ``sync``) is named with the property that fails, read from the installed wheel's own
    ``variant.json``."""
    directory = options.cwd
    document = _read_lock(directory)
    if document is None:
        raise UsageError(f"no {LOCK_NAME} written with --variant-index in {directory}")
    target, host = _target_and_host(options.python, options.system, options.host, options.cwd, False)
    uncovered = _not_covered(document, host)
    if uncovered:
        return VariantCheck(directory / LOCK_NAME, (uncovered,), {})
    problems: list[str] = []
    installed: dict[str, str] = {}
    labels: list[LabelCheck] = []
    problems += _damaged(target, document, host, options.verify_files)
    for other in _locked_others(document, host):
        found = installed_label(target, canonicalize_name(other.name))
        if found is None:
            problems.append(f"{other.name} is not installed; the lock wants {other.version}")
        elif found[0] != other.version:
            problems.append(f"{other.name} {found[0]} is installed; the lock wants {other.version}")
    for choice in _choose_locked(document, host, options.index_url):
        best = None if choice.wheel is None else choice.wheel.label
        landed = installed_label(target, choice.package)
        if landed is None:
            problems.append(f"{choice.package} is not installed; the lock wants {choice.version}")
            continue
        version, label = landed
        shown = label or "(non-variant)"
        installed[choice.package] = f"{version} variant {shown}"
        if version != choice.version:
            problems.append(f"{choice.package} {version} is installed; the lock wants {choice.version}")
            labels.append(LabelCheck(choice.package, version, label, None, best))
            continue
        verdict = _installed_verdict(target, choice.package, label, host) or next(
            (v for v in choice.verdicts if v.label == label), None
        )
        labels.append(LabelCheck(choice.package, version, label, verdict, best))
        if verdict is not None and not verdict.fits:
            problems.append(
                f"{choice.package} {version} variant {shown} does not fit this host: {verdict.reason}"
            )
        elif choice.wheel is not None and best != label:
            problems.append(
                f"{choice.package} {version} variant {shown} is installed; for this host the lock's best is "
                f"{best or '(non-variant)'}"
            )
        elif choice.wheel is None:
            problems.append(f"no locked wheel of {choice.package} {choice.version} fits this host")
    return VariantCheck(directory / LOCK_NAME, tuple(problems), installed, tuple(labels))
