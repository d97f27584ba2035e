"""Routing: turn a decision into installer commands that can only fetch the decided build.

The torch family comes only from the variant index. No package that index serves may be
shadowed by a higher version of the same name elsewhere: pip's ``--extra-index-url`` merges
indexes and takes the highest version from any of them, which is how the December 2022
``torchtriton`` dependency-confusion attack worked. So:

* uv: one ``uv pip install`` with the variant index as a named ``--index`` and
  ``--index-strategy first-index`` (a package found on the variant index is only ever taken
  from there); the user's default index and uv settings stay in charge of everything else.
* pip: two runs. First the family alone with the variant index as the *only* index (what
  PyTorch's own instructions do); then everything else from the user's indexes, with a
  constraints file pinning the family and every dependency it brought in to what was just
  installed, so the second run cannot swap any of them for another index's version.
* pip in hash-checking mode: one run, the variant index added to the user's. Every file is
  pinned by version and hash there, so no index can substitute anything, and pip needs
  all hashed requirements in one run.

Everything here is pure: it builds argument lists and file contents; ``install`` runs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from .requirements import RequirementLine, RewritePin, render_file, rewrite_line

__all__ = [
    "INDEX_OPTIONS",
    "InstallerCommand",
    "Routing",
    "pip_family_command",
    "pip_hashed_command",
    "pip_rest_command",
    "split_installer_args",
    "uses_hashes",
    "uv_command",
]

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


def uv_command(
    routing: Routing, lines: Sequence[RequirementLine], *, uv: str, subcommand: str = "install"
) -> InstallerCommand:
    argv = [uv, "pip", subcommand, "--python", str(routing.python)]
    if routing.variant_index is not None:
        argv += ["--index", f"pytorch={routing.variant_index}", "--index-strategy", "first-index"]
    file_args, files = _requirement_files(
        routing, "requirements", lines, routing.global_options, positional=subcommand == "compile"
    )
    argv += [*routing.installer_args, *file_args]
    return InstallerCommand(
        argv=tuple(argv),
        purpose="uv: everything, the torch family from the variant index only",
        files=files,
    )


def _without_index_options(global_options: Sequence[tuple[str, ...]]) -> list[tuple[str, ...]]:
    return [opt for opt in global_options if opt and opt[0].split("=", 1)[0] not in INDEX_OPTIONS]


def pip_family_command(routing: Routing, family: Sequence[RequirementLine]) -> InstallerCommand:
    """The first pip run: the family, from the variant index and nothing else."""
    _, other_args = split_installer_args(routing.installer_args)
    argv = [str(routing.python), "-m", "pip", "install"]
    env: dict[str, str] = {}
    options = list(routing.global_options)
    if routing.variant_index is not None:
        argv += ["--index-url", routing.variant_index]
        # pip.conf and PIP_* may add indexes and find-links. An environment variable beats
        # the config file; an empty one is ignored, but a blank one reads as an empty list.
        env = {
            "PIP_INDEX_URL": routing.variant_index,
            "PIP_EXTRA_INDEX_URL": " ",
            "PIP_FIND_LINKS": " ",
            "PIP_NO_INDEX": "",
        }
        options = _without_index_options(routing.global_options)
    file_args, files = _requirement_files(routing, "family", family, options)
    argv += [*other_args, *file_args]
    return InstallerCommand(
        argv=tuple(argv),
        purpose="pip, run 1 of 2: the torch family from the variant index only",
        env=env,
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


def pip_rest_command(
    routing: Routing, others: Sequence[RequirementLine], *, constraints: Sequence[str]
) -> InstallerCommand:
    """The second pip run: everything else, with the family's closure held where it is."""
    held = routing.workdir / "held-family.txt"
    no_rewriting = replace(routing, pins={})
    file_args, files = _requirement_files(no_rewriting, "others", others, routing.global_options)
    files[held] = "".join(f"{pin}\n" for pin in constraints)
    argv = [str(routing.python), "-m", "pip", "install", *routing.installer_args, *file_args, "-c", str(held)]
    return InstallerCommand(
        argv=tuple(argv),
        purpose="pip, run 2 of 2: everything else from your indexes, the torch family held in place",
        files=files,
    )
