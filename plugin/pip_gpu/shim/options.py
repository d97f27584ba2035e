"""Reading the command line a shim was given, as the real program would read it.

pip (optparse) and uv (clap) take options before and after the subcommand, values attached
(``-rfile``, ``--index-url=URL``) or separate, and pip accepts unique prefixes of long options.
The front ends (:mod:`.pip`, :mod:`.uv`) describe each program's options in an
:class:`OptionTable`; :func:`parse_options` splits a command line by it. Standard library only:
a shim that passes its command through never loads more.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Union

if TYPE_CHECKING:
    from ..install import InstallOptions

__all__ = [
    "Action",
    "OptionTable",
    "Parsed",
    "Refused",
    "RoutedInstall",
    "family_names",
    "first_word",
    "names_family",
    "parse_options",
    "reads_stdin",
    "unparse",
]


# Names of standard input as a path: pip and uv open them like any file, and read the pipe.
_STDIN_PATHS = frozenset(["-", "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"])


def reads_stdin(path: str) -> bool:
    """Whether a ``-r``/``-c`` value is standard input: ``-``, ``/dev/stdin`` and its aliases,
    or any other name of the pipe or terminal on file descriptor 0."""
    if path in _STDIN_PATHS:
        return True
    import os
    import stat

    try:
        named, ours = os.stat(path), os.fstat(0)
    except (OSError, ValueError):
        return False
    return not stat.S_ISREG(named.st_mode) and (named.st_dev, named.st_ino) == (ours.st_dev, ours.st_ino)


class Refused(Exception):
    """The shim cannot route this command safely; nothing was run."""


@dataclass(frozen=True)
class RoutedInstall:
    """``pip-gpu install`` with the options a front end read, and the shim's settings.

    ``environment``: ``PIP_*`` variables for the pip runs (pip options that pip-gpu install
    does not take, passed the way pip reads them anyway).
    """

    request: InstallOptions
    environment: Mapping[str, str] = field(default_factory=dict)


# What a front end decides: None (the real program, unchanged), a routed install, or a
# prepared run of its own (the real program with other arguments, a refusal's exit status).
Action = Optional[Union[RoutedInstall, Callable[[], int]]]


@dataclass
class Parsed:
    """A command line split into options (in order, with values) and positional arguments."""

    options: list[tuple[str, Optional[str]]] = field(default_factory=list)
    positionals: list[str] = field(default_factory=list)

    def values(self, *names: str) -> list[str]:
        return [value for name, value in self.options if name in names and value is not None]

    def has(self, *names: str) -> bool:
        return any(name in names for name, _ in self.options)


@dataclass(frozen=True)
class OptionTable:
    """Which options a program knows, and which of them take a value."""

    long_values: frozenset[str]
    long_flags: frozenset[str]
    short_values: str
    short_flags: str
    abbreviations: bool = False  # optparse (pip) accepts unique prefixes of long options

    def expand(self, name: str) -> str:
        if not self.abbreviations or name in self.long_values or name in self.long_flags:
            return name
        matches = [known for known in (*self.long_values, *self.long_flags) if known.startswith(name)]
        return matches[0] if len(matches) == 1 else name


def parse_options(tokens: Sequence[str], table: OptionTable, *, stop_at_positional: bool = False) -> Parsed:
    """Split tokens the way optparse or clap would; unknown long options are taken as flags."""
    parsed = Parsed()
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token == "--":
            parsed.positionals += tokens[i:]
            break
        if token.startswith("--"):
            name, eq, value = token.partition("=")
            name = table.expand(name)
            if name in table.long_values and not eq:
                value = tokens[i] if i < len(tokens) else ""
                i += 1
            parsed.options.append((name, value if (eq or name in table.long_values) else None))
        elif token.startswith("-") and len(token) > 1:
            j = 1
            while j < len(token):
                letter = token[j]
                if letter in table.short_values:
                    attached = token[j + 1 :].lstrip("=")
                    if not attached:
                        attached = tokens[i] if i < len(tokens) else ""
                        i += 1
                    parsed.options.append((f"-{letter}", attached))
                    break
                parsed.options.append((f"-{letter}", None))
                j += 1
        else:
            parsed.positionals.append(token)
            if stop_at_positional:
                parsed.positionals += tokens[i:]
                break
    return parsed


def first_word(tokens: Sequence[str], table: OptionTable) -> int:
    """Index of the first positional (the subcommand), or -1."""
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "--":
            return -1
        if not token.startswith("-") or token == "-":
            return i
        name = table.expand(token.split("=", 1)[0])
        takes_value = (token.startswith("--") and name in table.long_values and "=" not in token) or (
            not token.startswith("--") and len(token) == 2 and token[1] in table.short_values
        )
        i += 2 if takes_value else 1
    return -1


def unparse(options: Sequence[tuple[str, Optional[str]]]) -> list[str]:
    """Options back into tokens, each value attached (``--name=value``)."""
    return [name if value is None else f"{name}={value}" for name, value in options]


# A requirement that is a name, perhaps with extras and a version specifier: nothing else
# (no marker, URL or path), so the name is all there is to read.
_PLAIN_REQUIREMENT = re.compile(
    r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[[\w.,\s-]*\])?\s*(?:[<>=!~]=?[\w.*+!\s,<>=~-]*)?"
)


def _canonical(name: str) -> str:
    """PEP 503's normalized name (what ``packaging.utils.canonicalize_name`` returns for it)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def family_names() -> frozenset[str]:
    """The torch family's canonical names, from the knowledge file."""
    from ..knowledge import load_knowledge

    return frozenset(_canonical(member.name) for member in load_knowledge().family)


def names_family(
    requirements: Iterable[str],
    files: Iterable[str],
    constraints: Iterable[str],
    *,
    routed_by_uv: bool = False,
) -> bool:
    """Whether any requirement, on the command line or in a file, is a torch-family project.

    ``routed_by_uv``: uv itself will read the files with the variant index added, so a
    ``pyproject.toml`` or ``pylock.toml`` that names the family counts instead of stopping.
    """
    requirements, files, constraints = list(requirements), list(files), list(constraints)
    if not (requirements or files or constraints):
        return False  # nothing to read: keep packaging and the knowledge file unloaded
    family = family_names()
    plain = [_PLAIN_REQUIREMENT.fullmatch(text) for text in requirements]
    if any(_canonical(match[1]) in family for match in plain if match):
        return True
    requirements = [text for text, match in zip(requirements, plain) if match is None]
    if not (requirements or files or constraints):
        return False  # only plain names, none of the family: the requirements module stays unloaded
    from ..requirements import parse_requirement_args, read_requirements_file

    lines = []
    for text in requirements:
        try:
            lines += parse_requirement_args([text])
        except Exception:
            continue  # not a requirement pip-gpu understands: the installer reports it
    for path, constraint in [*((f, False) for f in files), *((f, True) for f in constraints)]:
        if reads_stdin(path) or not Path(path).is_file():
            continue  # stdin, a URL or a missing file: the installer reports it
        if not path.endswith((".txt", ".in")) and not re.search(r"\.(txt|in)$|requirements", path):
            # pyproject.toml, setup.cfg, ...: not a requirements file; look for the names
            text = Path(path).read_text(encoding="utf-8", errors="replace").lower()
            if any(re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])", text) for name in family):
                if routed_by_uv:
                    return True
                raise Refused(f"{path} names the torch family, and pip-gpu reads only requirements files")
            continue
        lines += read_requirements_file(Path(path), constraint=constraint).lines
    return any(line.name in family for line in lines)
