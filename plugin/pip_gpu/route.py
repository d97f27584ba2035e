"""Routing: turn a decision into installer commands that can only fetch the decided build.

The torch family comes only from the variant index, and nothing else does: the real
``download.pytorch.org/whl/<variant>`` indexes also serve old copies of numpy, pillow,
jinja2 and friends, which must come from the user's own indexes at the versions the user's
requirements allow. And no family name may be taken from another index at a higher version:
pip's ``--extra-index-url`` merges indexes and takes the highest version from any of them,
which is how the December 2022 ``torchtriton`` dependency-confusion attack worked. So:

* uv: the family requirements go into a generated ``pyproject.toml`` whose
  ``[tool.uv.sources]`` send each of them to the variant index, declared ``explicit``
  (uv's own recipe: an explicit index serves only the packages sourced to it); everything
  else is read from the user's requirements with the user's uv configuration.
* pip: pip has no per-package index. A dry run against the variant index alone picks the
  family's files for the target (pip's own tag and version logic); then one run with the
  user's indexes installs everything, each family member as a direct reference
  (``torch @ <variant-index-url>#sha256=...``), so no other index can supply it.
* pip in hash-checking mode: one run, the variant index added to the user's. Every file is
  pinned by version and hash there, so no index can substitute anything, and pip needs
  all hashed requirements in one run.

A family member brought in by something else (torch's ``triton``, a library that needs
torchvision) is found by resolving first and then routed the same way (``install``).

Everything here is pure: it builds argument lists and file contents; ``install`` runs them.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .requirements import (
    RequirementLine,
    RewritePin,
    parse_requirement_args,
    render_file,
    rewrite_line,
)

__all__ = [
    "INDEX_OPTIONS",
    "INSTALLER_OPTIONS",
    "INSTALLER_OPTION_NAMES",
    "VARIANT_INDEX_NAME",
    "FamilyFile",
    "InstallerCommand",
    "InstallerOption",
    "Routing",
    "family_files_from_report",
    "family_from_elsewhere",
    "family_project",
    "family_required_by_others",
    "installer_args",
    "pinned_versions",
    "pip_command",
    "pip_family_download",
    "pip_family_probe",
    "pip_hashed_command",
    "reinstall_command",
    "split_installer_args",
    "uninstall_command",
    "uses_hashes",
    "uv_command",
]


@dataclass(frozen=True)
class InstallerOption:
    """An installer option ``pip-gpu install`` takes itself and passes on unchanged."""

    names: tuple[str, ...]  # the last one is the long name passed on
    takes_value: bool
    help: str = ""  # what it does, in a few words, for ``pip-gpu install --help``

    @property
    def long(self) -> str:
        return self.names[-1]


# pip/uv install options passed to the installer unchanged: ``pip-gpu install``'s own flags
# and the options the pip shim hands over. Rendered in this order (:func:`installer_args`).
INSTALLER_OPTIONS: tuple[InstallerOption, ...] = (
    *(
        InstallerOption(names, takes_value=True, help=words)
        for names, words in (
            (
                ("-i", "--index-url"),
                "your default index (the torch family still comes from the variant index)",
            ),
            (("--extra-index-url",), "another index for everything but the torch family"),
            (("-f", "--find-links"), "a folder or page of wheels to look in"),
            (("--trusted-host",), "a host to trust without valid HTTPS"),
            (("--upgrade-strategy",), "eager or only-if-needed, for dependencies with --upgrade"),
            (("--no-binary",), "packages to build from source (:all: for every one)"),
            (("--only-binary",), "packages to take as wheels only (:all: for every one)"),
            (("--config-settings",), "KEY=VALUE for a package's build backend"),
            (("--cache-dir",), "the installer's cache folder"),
            (("--progress-bar",), "on or off: pip's download progress"),
        )
    ),
    *(
        InstallerOption(names, takes_value=False, help=words)
        for names, words in (
            (
                ("-U", "--upgrade"),
                "take the newest allowed versions (drops the installed torch as a preference)",
            ),
            (("--force-reinstall",), "reinstall even what is already there"),
            (("--no-deps",), "install the named packages without their dependencies"),
            (("--pre",), "allow pre-releases"),
            (("--no-cache-dir",), "do not use the installer's cache"),
            (("--no-index",), "no index at all: only --find-links"),
            (("--prefer-binary",), "prefer an older wheel over a newer source release"),
            (("--require-hashes",), "hash-checking mode: every requirement pinned with --hash"),
            (("--no-build-isolation",), "build in the target environment, not a fresh one"),
            (("--break-system-packages",), "allow installing into an externally managed Python"),
            (("-q", "--quiet"), "less installer output (and no pip-gpu notes)"),
            (("-v", "--verbose"), "more installer output"),
        )
    ),
)
INSTALLER_OPTION_NAMES = frozenset(option.long for option in INSTALLER_OPTIONS)
"""The long names of :data:`INSTALLER_OPTIONS`."""


def installer_args(passed: Sequence[tuple[str, Optional[str]]]) -> list[str]:
    """Pass-through options (long name, value or None) as installer arguments, in table order.

    A flag given twice is passed twice (``-vv``); an option not in the table is refused.
    """
    unknown = [name for name, _ in passed if name not in INSTALLER_OPTION_NAMES]
    if unknown:
        raise ValueError(f"not a pass-through installer option: {unknown[0]}")
    out: list[str] = []
    for option in INSTALLER_OPTIONS:
        for name, value in passed:
            if name != option.long:
                continue
            if option.takes_value:
                out += [name, value or ""]
            else:
                out.append(name)
    return out


# Options that choose where packages come from: the first pip run must not see them.
INDEX_OPTIONS = frozenset(
    {
        "-i",
        "--index-url",
        "--extra-index-url",
        "--no-index",
        "-f",
        "--find-links",
        "--index",
        "--default-index",
    }
)


@dataclass(frozen=True)
class InstallerCommand:
    """One installer run: its argv, environment changes and the files it reads."""

    argv: tuple[str, ...]
    purpose: str
    env: dict[str, str] = field(default_factory=dict)  # set to the value, or removed when ""
    files: dict[Path, str] = field(default_factory=dict)  # written before the run


@dataclass(frozen=True)
class Routing:
    """What every installer command of one install is built from."""

    python: Path  # the target interpreter
    variant_index: Optional[str]  # None: PyPI's own build (macOS)
    global_options: Sequence[tuple[str, ...]]  # from the requirements files
    pins: dict[str, RewritePin]  # how family requirements are rewritten
    installer_args: Sequence[str]  # the user's own installer options
    workdir: Path  # where the generated requirements files go
    required_by_build: tuple[str, ...] = ()  # family members the decided torch itself requires (uv)


_FROM_RE = re.compile(r"^\s+#\s+from\s+(\S+)")
_PINNED_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==")


def family_from_elsewhere(
    annotated: str, family_names: frozenset[str], variant_index: Optional[str]
) -> list[str]:
    """Family members a ``--emit-index-annotation`` resolution takes from another index."""
    elsewhere: list[str] = []
    current: Optional[str] = None
    for line in annotated.splitlines():
        pinned = _PINNED_RE.match(line)
        if pinned:
            current = canonicalize_name(pinned.group(1))
            continue
        found = _FROM_RE.match(line)
        if (
            found
            and current in family_names
            and found.group(1).rstrip("/") != (variant_index or "").rstrip("/")
        ):
            elsewhere.append(current)
    return sorted(set(elsewhere))


def split_installer_args(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split pass-through installer options into (index options, the rest), keeping values."""
    index: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        name = token.split("=", 1)[0]
        if name in INDEX_OPTIONS:
            takes_value = name != "--no-index" and "=" not in token
            index.append(token)
            if takes_value and i + 1 < len(args):
                index.append(args[i + 1])
                i += 1
        else:
            rest.append(token)
        i += 1
    return index, rest


def _rendered(
    lines: Sequence[RequirementLine],
    pins: dict[str, RewritePin],
    global_options: Sequence[tuple[str, ...]] = (),
) -> str:
    return render_file([rewrite_line(line, pins) for line in lines], global_options)


def _requirement_files(
    routing: Routing,
    stem: str,
    lines: Sequence[RequirementLine],
    global_options: Sequence[tuple[str, ...]],
    *,
    positional: bool = False,
) -> tuple[list[str], dict[Path, str]]:
    """``-r`` (and ``-c`` when there are constraint lines) arguments and the files behind them.

    ``positional``: the file as a plain argument, as ``uv pip compile`` takes it.
    """
    workdir, pins = routing.workdir, routing.pins
    requirements = workdir / f"{stem}.txt"
    args = [str(requirements)] if positional else ["-r", str(requirements)]
    files = {requirements: _rendered([ln for ln in lines if not ln.constraint], pins, global_options)}
    constraint_lines = [ln for ln in lines if ln.constraint]
    if constraint_lines:
        constraints = workdir / f"{stem}-constraints.txt"
        args += ["-c", str(constraints)]
        files[constraints] = _rendered(constraint_lines, pins)
    return args, files


VARIANT_INDEX_NAME = "pip-gpu-variant"
"""The name the variant index gets in generated uv configuration."""


@dataclass(frozen=True)
class FamilyFile:
    """The file pip picked for one family member on the variant index."""

    name: str  # normalized project name
    url: str
    sha256: Optional[str]


def _routed(line: RequirementLine, family_names: Collection[str]) -> bool:
    """A family requirement pip-gpu sends to the variant index (not a URL, path or constraint)."""
    return (
        line.name in family_names
        and line.requirement is not None
        and not line.constraint
        and not line.editable
        and not line.is_direct_url
    )


def family_project(variant_index: str, dependencies: Sequence[str]) -> str:
    """A ``pyproject.toml`` holding the family requirements, each sourced to the explicit variant index."""
    import tomli_w

    names = sorted({canonicalize_name(Requirement(d).name) for d in dependencies})
    document = {
        "project": {"name": "pip-gpu-torch-family", "version": "0", "dependencies": list(dependencies)},
        "tool": {
            "uv": {
                "sources": {name: {"index": VARIANT_INDEX_NAME} for name in names},
                "index": [{"name": VARIANT_INDEX_NAME, "url": variant_index, "explicit": True}],
            }
        },
    }
    return tomli_w.dumps(document)


def uv_command(
    routing: Routing,
    lines: Sequence[RequirementLine],
    *,
    uv: str,
    subcommand: str = "install",
    pulled_in: Sequence[str] = (),
) -> InstallerCommand:
    """One uv run: the family from the explicit variant index, the rest as the user's uv has it.

    ``pulled_in``: family members other requirements bring in, routed the same way.
    """
    family_names = routing.pins.keys()
    positional = subcommand == "compile"
    argv = [uv, "pip", subcommand, "--python", str(routing.python), *routing.installer_args]
    if routing.variant_index is None or uses_hashes(lines, routing.installer_args, routing.global_options):
        # No variant index (macOS: PyPI's build), or every file pinned by hash: then the
        # variant index joins the user's, every index is searched for each pin (as pip
        # does), and the hashes decide what may be installed.
        if routing.variant_index is not None:
            argv += ["--index", f"{VARIANT_INDEX_NAME}={routing.variant_index}"]
            if "--index-strategy" not in argv:  # uv takes the option once
                argv += ["--index-strategy", "unsafe-best-match"]
        all_args, all_files = _requirement_files(
            routing, "requirements", lines, routing.global_options, positional=positional
        )
        return InstallerCommand(argv=tuple(argv + all_args), purpose="uv: everything", files=all_files)
    routed = [rewrite_line(line, routing.pins) for line in lines if _routed(line, family_names)]
    named = {line.name for line in routed}
    dependencies = [str(line.requirement) for line in routed if line.requirement is not None]
    dependencies += [
        str(rewrite_line(parse_requirement_args([name])[0], routing.pins).requirement)
        for name in dict.fromkeys((*pulled_in, *routing.required_by_build))
        if canonicalize_name(name) not in named
    ]
    others = [line for line in lines if not _routed(line, family_names)]
    files: dict[Path, str] = {}
    file_args: list[str] = []
    if dependencies:
        project = routing.workdir / "torch-family" / "pyproject.toml"
        files[project] = family_project(routing.variant_index, dependencies)
        file_args += [str(project)] if positional else ["-r", str(project)]
    if others or routing.global_options or not dependencies:
        more_args, more_files = _requirement_files(
            routing, "requirements", others, routing.global_options, positional=positional
        )
        file_args += more_args
        files.update(more_files)
    return InstallerCommand(
        argv=tuple(argv + file_args),
        purpose="uv: the torch family from the variant index (explicit), everything else from your indexes",
        files=files,
    )


def _without_index_options(global_options: Sequence[tuple[str, ...]]) -> list[tuple[str, ...]]:
    return [opt for opt in global_options if opt and opt[0].split("=", 1)[0] not in INDEX_OPTIONS]


def _variant_only(routing: Routing) -> tuple[list[str], dict[str, str], list[tuple[str, ...]]]:
    """pip arguments, environment and file options that leave the variant index as the only index."""
    assert routing.variant_index is not None
    # pip.conf and PIP_* may add indexes and find-links. An environment variable beats the
    # config file; an empty one is ignored, but a blank one reads as an empty list.
    env = {
        "PIP_INDEX_URL": routing.variant_index,
        "PIP_EXTRA_INDEX_URL": " ",
        "PIP_FIND_LINKS": " ",
        "PIP_NO_INDEX": "",
    }
    return ["--index-url", routing.variant_index], env, _without_index_options(routing.global_options)


def pip_family_probe(
    routing: Routing,
    family: Sequence[RequirementLine],
    pulled_in: Sequence[str],
    report: Path,
    *,
    downloaded: Optional[Path] = None,
) -> InstallerCommand:
    """A pip dry run against the variant index alone: which files the family would be.

    pip resolves the family with its dependencies for the target interpreter, as if nothing
    were installed, and writes its choice to ``report`` (``--report``, pip >= 22.2). Only
    the family members among it are used; everything else is left to the user's indexes.
    ``downloaded``: the folder :func:`pip_family_download` filled; the dry run reads only it.
    """
    index_args, env, keep, file_args, files = _family_run_parts(routing, family, pulled_in)
    if downloaded is not None:
        index_args = ["--no-index", "--find-links", str(downloaded)]
    argv = [str(routing.python), "-m", "pip", "install", *index_args, *keep, *file_args]
    argv += ["--dry-run", "--ignore-installed", "--quiet", "--report", str(report)]
    return InstallerCommand(
        argv=tuple(argv),
        purpose="pip: choosing the torch family's files on the variant index (dry run)",
        env=env,
        files=files,
    )


# pip install options ``pip download`` does not take: they say how to install, not what.
_INSTALL_ONLY = frozenset({"-U", "--upgrade", "--force-reinstall", "--break-system-packages"})


def pip_family_download(
    routing: Routing,
    family: Sequence[RequirementLine],
    pulled_in: Sequence[str],
    dest: Path,
    *,
    earlier: Sequence[Path] = (),
) -> InstallerCommand:
    """``pip download`` of what :func:`pip_family_probe` resolves, into ``dest``.

    On an index without PEP 658 metadata pip must download every wheel to read its
    dependencies; kept here, the install takes the files from ``dest``, so each is fetched
    once. ``earlier``: folders of an earlier download of this install, read first (pip takes
    a local file over the same file on an index), so a second resolution fetches nothing twice.
    """
    index_args, env, keep, file_args, files = _family_run_parts(routing, family, pulled_in)
    for folder in earlier:
        index_args = [*index_args, "--find-links", str(folder)]
    args: list[str] = []
    skip_value = False
    for arg in keep:
        name = arg.split("=", 1)[0]
        if skip_value:
            skip_value = False
        elif name == "--upgrade-strategy":
            skip_value = "=" not in arg
        elif name not in _INSTALL_ONLY:
            args.append(arg)
    argv = [str(routing.python), "-m", "pip", "download", *index_args, *args, *file_args]
    argv += ["--quiet", "--dest", str(dest)]
    return InstallerCommand(
        argv=tuple(argv),
        purpose="pip: downloading the torch family's files from the variant index (once)",
        env=env,
        files=files,
    )


def _family_run_parts(
    routing: Routing, family: Sequence[RequirementLine], pulled_in: Sequence[str]
) -> tuple[list[str], dict[str, str], list[str], list[str], dict[Path, str]]:
    """Index arguments, environment, the user's other options, ``-r`` arguments
    and files of a pip run that resolves the family on the variant index alone."""
    index_args, env, options = _variant_only(routing)
    _, other_args = split_installer_args(routing.installer_args)
    keep = [a for a in other_args if a not in ("-v", "--verbose", "-q", "--quiet")]
    lines = [line for line in family if _routed(line, routing.pins.keys())]
    lines += [
        line for line in parse_requirement_args(list(pulled_in)) if line.name not in {ln.name for ln in lines}
    ]
    file_args, files = _requirement_files(routing, "family", lines, options)
    return index_args, env, keep, file_args, files


def family_files_from_report(report: Mapping[str, Any], family_names: Collection[str]) -> list[FamilyFile]:
    """The family members of a pip ``--report`` and the file pip chose for each."""
    found: list[FamilyFile] = []
    for item in report.get("install", []):
        name = canonicalize_name(str(item.get("metadata", {}).get("name", "")))
        info = item.get("download_info") or {}
        if name not in family_names or not info.get("url"):
            continue
        hashes = (info.get("archive_info") or {}).get("hashes") or {}
        found.append(FamilyFile(name=name, url=str(info["url"]), sha256=hashes.get("sha256")))
    return found


def _direct_reference(line: Optional[RequirementLine], file: FamilyFile) -> RequirementLine:
    """``name[extras] @ url#sha256=... ; marker``: this file and no other index's."""
    url = file.url.split("#", 1)[0] + (f"#sha256={file.sha256}" if file.sha256 else "")
    extras = marker = ""
    if line is not None and line.requirement is not None:
        if line.requirement.extras:
            extras = f"[{','.join(sorted(line.requirement.extras))}]"
        if line.requirement.marker is not None:
            marker = f" ; {line.requirement.marker}"
    return parse_requirement_args([f"{file.name}{extras} @ {url}{marker}"])[0]


def pip_command(
    routing: Routing,
    lines: Sequence[RequirementLine],
    family_files: Sequence[FamilyFile],
    *,
    same_files: Optional[str] = None,
) -> InstallerCommand:
    """One pip run with the user's indexes: the family as direct references to the variant index.

    ``same_files``: a local index of files already downloaded that the user's indexes serve
    byte for byte (:mod:`pip_gpu.kept_downloads`), added last so pip does not fetch them again.
    """
    chosen = {file.name: file for file in family_files}
    out: list[RequirementLine] = []
    for line in lines:
        file = chosen.pop(line.name or "", None) if _routed(line, routing.pins.keys()) else None
        out.append(_direct_reference(line, file) if file else line)
    out += [_direct_reference(None, file) for file in chosen.values()]  # brought in by the family
    file_args, files = _requirement_files(routing, "requirements", out, routing.global_options)
    argv = [str(routing.python), "-m", "pip", "install", *routing.installer_args, *file_args]
    if same_files is not None:
        argv += ["--extra-index-url", same_files]
    return InstallerCommand(
        argv=tuple(argv),
        purpose="pip: the torch family from the variant index's files, everything else from your indexes",
        files=files,
    )


def uses_hashes(
    lines: Sequence[RequirementLine], installer_args: Sequence[str], global_options: Sequence[tuple[str, ...]]
) -> bool:
    """pip's hash-checking mode: any hash, or ``--require-hashes`` anywhere."""
    return (
        any(line.hashes for line in lines)
        or "--require-hashes" in installer_args
        or any(opt and opt[0] == "--require-hashes" for opt in global_options)
    )


def pip_hashed_command(routing: Routing, lines: Sequence[RequirementLine]) -> InstallerCommand:
    """One pip run for a fully hashed set: the variant index beside the user's indexes."""
    argv = [str(routing.python), "-m", "pip", "install"]
    if routing.variant_index is not None:
        argv += ["--extra-index-url", routing.variant_index]
    file_args, files = _requirement_files(routing, "hashed", lines, routing.global_options)
    argv += [*routing.installer_args, *file_args]
    return InstallerCommand(
        argv=tuple(argv),
        purpose="pip, hash-checking mode: every file pinned by hash, the variant index added",
        files=files,
    )


def pinned_versions(annotated: str) -> dict[str, str]:
    """``name -> version`` of every ``name==version`` line of a ``uv pip compile`` output."""
    versions: dict[str, str] = {}
    for line in annotated.splitlines():
        pinned = _PINNED_RE.match(line)
        if pinned:
            versions[canonicalize_name(pinned.group(1))] = line[pinned.end() :].split(";", 1)[0].split()[0]
    return versions


# --- rolling back a build that contradicts the decision --------------------------------------


def uninstall_command(installer: str, python: Path, uv: str, names: Sequence[str]) -> InstallerCommand:
    """Remove ``names`` from the target (what an install added against the decision)."""
    if installer == "uv":
        argv = [uv, "pip", "uninstall", "--python", str(python), *names]
    else:
        argv = [str(python), "-m", "pip", "uninstall", "--yes", *names]
    return InstallerCommand(argv=tuple(argv), purpose=f"{installer}: removing {', '.join(names)} (rollback)")


def reinstall_command(
    installer: str, python: Path, uv: str, index: Optional[str], pins: Sequence[str]
) -> InstallerCommand:
    """Put back ``name==version`` pins (what was installed before), from ``index`` when given."""
    where = ["--index-url", index] if index else []
    if installer == "uv":
        argv = [uv, "pip", "install", "--python", str(python), "--no-deps", *where, *pins]
    else:
        argv = [str(python), "-m", "pip", "install", "--no-deps", *where, *pins]
    purpose = f"{installer}: putting back {', '.join(pins)} (rollback)"
    return InstallerCommand(argv=tuple(argv), purpose=purpose)


def family_required_by_others(annotated: str, family_names: frozenset[str]) -> list[str]:
    """``"fixture-app requires torchvision"`` for each family member that a package outside the
    family requires, read from the ``# via`` annotations of a ``uv pip compile`` output.

    Requirements files (``-r``, ``-c``), the generated family project and family members do
    not count: only another package needing the family changes what the request asks of torch.
    """
    found: list[str] = []
    current: Optional[str] = None
    in_via = False
    for line in annotated.splitlines():
        pinned = _PINNED_RE.match(line)
        if pinned:
            current, in_via = canonicalize_name(pinned.group(1)), False
            continue
        comment = line.strip()
        if not comment.startswith("#") or current not in family_names:
            in_via = False
            continue
        text = comment.lstrip("#").strip()
        if text.startswith("via"):
            in_via = True
            text = text[3:].strip()
        elif not (in_via and comment.startswith("#   ")):
            in_via = False
            continue
        for source in text.split(","):
            source = source.strip()
            if not source or source.startswith(("-r ", "-c ", "-e ", "pip-gpu-torch-family")):
                continue
            requirer = canonicalize_name(source.split(" ", 1)[0])
            if requirer not in family_names:
                found.append(f"{requirer} requires {current}")
    return sorted(set(found))
