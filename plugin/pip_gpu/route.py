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

Everything here is pure: it builds argument lists and file contents; ``install`` runs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .requirements import RequirementLine, RewritePin, render_file, rewrite_line

__all__ = [
    "INDEX_OPTIONS",
    "InstallerCommand",
    "pip_family_command",
    "pip_rest_command",
    "split_installer_args",
    "uv_command",
]

# Options that choose where packages come from: the first pip run must not see them.
INDEX_OPTIONS = frozenset(
    {"-i", "--index-url", "--extra-index-url", "--no-index", "-f", "--find-links", "--index", "--default-index"}
)
# pip's own "where from" settings that pip.conf or PIP_* could add behind our back.
_PIP_INDEX_ENV = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX")


@dataclass(frozen=True)
class InstallerCommand:
    """One installer run: its argv, environment changes and the files it reads."""

    argv: tuple[str, ...]
    purpose: str
    env: dict[str, str] = field(default_factory=dict)  # set (value) or removed ("")
    files: dict[Path, str] = field(default_factory=dict)  # written before the run


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
    lines: Sequence[RequirementLine], pins: dict[str, RewritePin], global_options: Sequence[tuple[str, ...]] = ()
) -> str:
    return render_file([rewrite_line(line, pins) for line in lines], global_options)


def uv_command(
    *,
    uv: str,
    python: Path,
    variant_index: Optional[str],
    lines: Sequence[RequirementLine],
    global_options: Sequence[tuple[str, ...]],
    pins: dict[str, RewritePin],
    installer_args: Sequence[str],
    workdir: Path,
    subcommand: str = "install",
) -> InstallerCommand:
    requirements = workdir / "requirements.txt"
    argv = [uv, "pip", subcommand, "--python", str(python)]
    if variant_index is not None:
        argv += ["--index", f"pytorch={variant_index}", "--index-strategy", "first-index"]
    argv += [*installer_args, "-r", str(requirements)]
    return InstallerCommand(
        argv=tuple(argv),
        purpose="uv: everything, the torch family from the variant index only",
        files={requirements: _rendered(lines, pins, global_options)},
    )


def _without_index_options(global_options: Sequence[tuple[str, ...]]) -> list[tuple[str, ...]]:
    return [opt for opt in global_options if opt and opt[0].split("=", 1)[0] not in INDEX_OPTIONS]


def pip_family_command(
    *,
    python: Path,
    variant_index: Optional[str],
    family: Sequence[RequirementLine],
    global_options: Sequence[tuple[str, ...]],
    pins: dict[str, RewritePin],
    installer_args: Sequence[str],
    workdir: Path,
) -> InstallerCommand:
    """The first pip run: the family, from the variant index and nothing else."""
    requirements = workdir / "family.txt"
    _, other_args = split_installer_args(installer_args)
    argv = [str(python), "-m", "pip", "install"]
    env: dict[str, str] = {}
    if variant_index is not None:
        argv += ["--index-url", variant_index]
        # pip.conf and PIP_* may add indexes and find-links; an environment variable beats
        # the config file, and an empty one is ignored, so point them at harmless values.
        env = {
            "PIP_INDEX_URL": variant_index,
            "PIP_EXTRA_INDEX_URL": variant_index,
            "PIP_FIND_LINKS": str(workdir / "no-links"),
            "PIP_NO_INDEX": "",
        }
    argv += [*other_args, "-r", str(requirements)]
    files = {
        requirements: _rendered(family, pins, _without_index_options(global_options) if variant_index else global_options)
    }
    return InstallerCommand(
        argv=tuple(argv),
        purpose="pip, run 1 of 2: the torch family from the variant index only",
        env=env,
        files=files,
    )


def pip_rest_command(
    *,
    python: Path,
    others: Sequence[RequirementLine],
    global_options: Sequence[tuple[str, ...]],
    installer_args: Sequence[str],
    constraints: Sequence[str],
    workdir: Path,
) -> InstallerCommand:
    """The second pip run: everything else, with the family's closure held where it is."""
    requirements = workdir / "others.txt"
    constraints_file = workdir / "family-constraints.txt"
    argv = [str(python), "-m", "pip", "install", *installer_args, "-r", str(requirements), "-c", str(constraints_file)]
    return InstallerCommand(
        argv=tuple(argv),
        purpose="pip, run 2 of 2: everything else from your indexes, the torch family held in place",
        files={
            requirements: render_file(list(others), global_options),
            constraints_file: "".join(f"{pin}\n" for pin in constraints),
        },
    )


def pip_index_env_names() -> tuple[str, ...]:
    return _PIP_INDEX_ENV
