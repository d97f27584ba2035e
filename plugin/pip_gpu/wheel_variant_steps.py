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
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .decide.index import IndexError_
from .decide.variant_wheels import (
    IndexWheel,
    VariantChoice,
    choose_variant_wheel,
    host_tags_fit,
    judge_for_host,
    pick,
    read_variants_json,
)
from .detect.target import TargetEnv, find_target
from .errors import BuildDidNotLand, NoBuildRuns, UsageError
from .host import HostFlags, HostProfile
from .redact import redact_url
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


def _split(requirements: Sequence[str]) -> tuple[list[str], list[str]]:
    """(family requirements, the rest): only the torch family comes from the variant index."""
    from .knowledge import load_knowledge

    family = {canonicalize_name(m.name) for m in load_knowledge().family}
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
        with urllib.request.urlopen(wheel.url, timeout=60) as response, path.open("wb") as out:
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


def installed_label(target: TargetEnv, package: str) -> Optional[tuple[str, str]]:
    """(version, label) of ``package`` in the target (label ``""``: a non-variant wheel)."""
    for folder in target.site_packages:
        try:
            entries = sorted(folder.glob("*.dist-info"))
        except OSError:
            continue
        for entry in entries:
            name, _, version = entry.name[: -len(".dist-info")].partition("-")
            if canonicalize_name(name) != package:
                continue
            try:
                data = json.loads((entry / "variant.json").read_text(encoding="utf-8"))
                labels = list(data.get("variants", {}))
            except FileNotFoundError:
                labels = []
            except (OSError, ValueError, AttributeError):
                labels = ["?"]
            return version, (labels[0] if len(labels) == 1 else ",".join(labels))
    return None


@dataclass(frozen=True)
class _Fetched:
    """A chosen wheel, downloaded and stored under its name without the label."""

    package: str
    version: str
    label: str
    path: Path


def _fetch(package: str, version: str, wheel: IndexWheel, folder: Path) -> _Fetched:
    return _Fetched(package, version, wheel.label, _download(wheel, folder))


def _install_files(
    target: TargetEnv, installer: Optional[str], files: Sequence[_Fetched], rest: Sequence[str], no_deps: bool
) -> None:
    from .installers import choose_installer, run_command, uv_binary

    chosen = choose_installer(installer, None, target)
    lines = [f"{f.package} @ {f.path.as_uri()}" for f in files]
    # The same version from another file: pip says "already installed" and keeps the old
    # label, uv may too; so a member whose installed label differs is reinstalled, alone.
    replace_label = [
        f for f in files if installed_label(target, f.package) not in (None, (f.version, f.label))
    ]
    extra = ["--no-deps"] if no_deps else []
    if chosen == "pip":
        pip = [str(target.python), "-m", "pip", "install"]
        if replace_label:
            argv = [
                *pip,
                "--force-reinstall",
                "--no-deps",
                *(f"{f.package} @ {f.path.as_uri()}" for f in replace_label),
            ]
            run_command(InstallerCommand(tuple(argv), purpose="pip reinstall of the chosen variant wheels"))
            if no_deps and not rest:
                return
        argv = [*pip, *extra, *lines, *rest]
    else:
        argv = [uv_binary(), "pip", "install", "--python", str(target.python), *extra, *lines, *rest]
        for fetched in replace_label:
            argv += ["--reinstall-package", fetched.package]
    run_command(InstallerCommand(tuple(argv), purpose=f"{chosen} install of the chosen variant wheels"))


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


def install_variant_wheels(options: VariantInstallOptions) -> list[VariantChoice]:
    """Choose, download and install the family's variant wheels; the rest passes through."""
    target, host = _target_and_host(options.python, options.system, options.host, options.cwd, True)
    ours, rest = _split(options.requirements)
    if not ours:
        raise UsageError(
            "--variant-index: no torch-family package in the request",
            "name torch (or another family member), or drop --variant-index",
        )
    choices = [choose_variant_wheel(options.index_url, text, host) for text in ours]
    for choice in choices:
        if choice.wheel is None:
            raise _refuse(choice, host)
    with tempfile.TemporaryDirectory(prefix="pip-gpu-variants-") as folder:
        files = [
            _fetch(c.package, str(c.version), c.wheel, Path(folder)) for c in choices if c.wheel is not None
        ]
        _install_files(target, options.installer, files, rest, no_deps=False)
    _verify(target, [(c.package, str(c.version), c.label or "") for c in choices])
    for choice in choices:
        _say(
            f"pip-gpu: installed {choice.package} {choice.version} variant {choice.label or '(non-variant)'}"
        )
    return choices


# --- the lock ---------------------------------------------------------------------------------


def lock_variant_wheels(
    index_url: str, requirements: Sequence[str], host: HostProfile, directory: Path
) -> tuple[Path, list[VariantChoice]]:
    """Write ``pylock.toml``: every wheel of each chosen version, and its variants.json by hash."""
    import tomli_w

    from .lockfile import write_atomically

    _, rest = _split(requirements)
    if rest:
        raise UsageError(
            f"--variant-index locks the torch family only; {', '.join(rest)} is not a family package",
            "lock the other packages with pip-gpu lock without --variant-index",
        )
    choices = choose_all(index_url, requirements, host)
    packages: list[dict[str, Any]] = []
    for choice in choices:
        entry: dict[str, Any] = {"name": choice.package, "version": str(choice.version), "index": index_url}
        if choice.variants_json_url:
            entry["variants-json"] = {
                "url": choice.variants_json_url,
                "hashes": {"sha256": choice.variants_json_sha256},
            }
        entry["wheels"] = [
            {
                "name": w.name.filename,
                "url": w.url,
                **({"size": w.size} if w.size else {}),
                "hashes": {"sha256": w.sha256},
            }
            for w in sorted(choice.wheels, key=lambda w: w.name.filename)
            if w.sha256
        ]
        packages.append(entry)
    document = {
        "lock-version": "1.0",
        "created-by": "pip-gpu",
        "packages": packages,
        "tool": {
            "pip-gpu": {
                TOOL_KEY: {"variant-index": index_url, "requirements": list(requirements) or ["torch"]}
            }
        },
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    _validate(document, path.name)
    write_atomically(path, tomli_w.dumps(document).encode("utf-8"))
    return path, choices


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


def _choose_locked(document: Mapping[str, Any], host: HostProfile) -> list[LockedChoice]:
    """Each locked package's wheel for ``host``, judged with the locked variants.json (hash checked)."""
    chosen: list[LockedChoice] = []
    for package in document["packages"]:
        wheels = []
        for entry in package.get("wheels", []):
            parsed = parse_variant_wheel_filename(entry["name"])
            if host_tags_fit(parsed.tags, host):
                wheels.append(
                    IndexWheel(parsed, entry["url"], entry["hashes"].get("sha256"), entry.get("size"))
                )
        table = package.get("variants-json")
        if table is None:
            chosen.append(
                LockedChoice(package["name"], package["version"], wheels[0] if wheels else None, ())
            )
            continue
        metadata, _ = read_variants_json(
            table["url"], table["hashes"]["sha256"], f"the hash {LOCK_NAME} locks"
        )
        verdicts = judge_for_host(metadata, wheels, host)
        chosen.append(
            LockedChoice(package["name"], package["version"], pick(verdicts, wheels), tuple(verdicts))
        )
    return chosen


def sync_variant_lock(options: VariantInstallOptions) -> list[LockedChoice]:
    """Install the label of each locked package that fits this host; refuse (exit 2, nothing
    changed) when none does or the locked variants.json changed."""
    directory = options.cwd
    document = _read_lock(directory)
    if document is None:
        raise UsageError(
            f"no {LOCK_NAME} written with --variant-index in {directory}",
            "write it with pip-gpu lock --variant-index URL",
        )
    target, host = _target_and_host(options.python, options.system, options.host, options.cwd, True)
    choices = _choose_locked(document, host)
    for choice in choices:
        if choice.wheel is None:
            reasons = "; ".join(f"{v.label or 'non-variant'}: {v.reason}" for v in choice.verdicts)
            raise NoBuildRuns(
                f"no locked wheel of {choice.package} {choice.version} fits this host: {reasons}; "
                "nothing was changed",
                "re-lock a newer version (pip-gpu lock --variant-index URL), or upgrade the NVIDIA driver",
            )
    with tempfile.TemporaryDirectory(prefix="pip-gpu-variants-") as folder:
        files = [_fetch(c.package, c.version, c.wheel, Path(folder)) for c in choices if c.wheel is not None]
        _install_files(target, options.installer, files, (), no_deps=True)
    _verify(target, [(c.package, c.version, c.wheel.label if c.wheel else "") for c in choices])
    for choice in choices:
        label = choice.wheel.label if choice.wheel else ""
        shown = label or "(non-variant)"
        _say(f"pip-gpu: synced {choice.package} {choice.version} variant {shown} from {LOCK_NAME}")
    return choices


@dataclass(frozen=True)
class VariantCheck:
    """``check``'s answer for a variant lock."""

    lock_file: Path
    problems: tuple[str, ...]
    installed: Mapping[str, str]  # package -> "version variant label"

    @property
    def ok(self) -> bool:
        return not self.problems


def check_variant_lock(options: VariantInstallOptions) -> VariantCheck:
    """Each locked package installed at its version, with a label that fits the host and is the
    one ``sync`` picks here."""
    directory = options.cwd
    document = _read_lock(directory)
    if document is None:
        raise UsageError(f"no {LOCK_NAME} written with --variant-index in {directory}")
    target, host = _target_and_host(options.python, options.system, options.host, options.cwd, False)
    problems: list[str] = []
    installed: dict[str, str] = {}
    for choice in _choose_locked(document, host):
        landed = installed_label(target, choice.package)
        if landed is None:
            problems.append(f"{choice.package} is not installed; the lock wants {choice.version}")
            continue
        version, label = landed
        shown = label or "(non-variant)"
        installed[choice.package] = f"{version} variant {shown}"
        if version != choice.version:
            problems.append(f"{choice.package} {version} is installed; the lock wants {choice.version}")
            continue
        verdict = next((v for v in choice.verdicts if v.label == label), None)
        if verdict is not None and not verdict.fits:
            problems.append(
                f"{choice.package} {version} variant {shown} does not fit this host: {verdict.reason}"
            )
        elif choice.wheel is not None and choice.wheel.label != label:
            problems.append(
                f"{choice.package} {version} variant {shown} is installed; for this host the lock's best is "
                f"{choice.wheel.label or '(non-variant)'}"
            )
        elif choice.wheel is None:
            problems.append(f"no locked wheel of {choice.package} {choice.version} fits this host")
    return VariantCheck(directory / LOCK_NAME, tuple(problems), installed)
