"""The plain requirements a decision reads: a project name and version specifiers.

``torch``, ``torch==2.5.1``, ``torchvision>=0.20,<0.21`` are read here with
``packaging.specifiers`` alone. ``packaging.requirements`` (markers, the tokenizer, and through
``packaging.utils`` the tags module with logging, subprocess and sysconfig: about 15 ms) loads
only for what needs it: extras, markers, URLs, files, the lines handed to an installer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Optional

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

__all__ = ["COMMAND_LINE", "canonical_name", "exact_version_in", "exact_versions", "plain_pins"]

COMMAND_LINE = "command line"  # where a requirement given as an argument comes from
_SEPARATORS = re.compile(r"[-_.]+")
# A name, then specifiers separated by commas: nothing else (no extras, markers, URLs, paths).
_SPEC = r"(?:===|~=|==|!=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+"
_PLAIN = re.compile(
    rf"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*((?:{_SPEC}(?:\s*,\s*{_SPEC})*)?)\s*"
)


# Longer than any plain pin: requirements.py refuses it with its reason (a 100,000-character name).
_LONGEST_PLAIN = 256
_LONG_NUMBER = re.compile(r"[0-9]{40,}")


def canonical_name(name: str) -> str:
    """PEP 503 normalisation (``Torch_Vision`` -> ``torch-vision``), exactly as
    ``packaging.utils.canonicalize_name`` does, without importing ``packaging.tags``."""
    return _SEPARATORS.sub("-", name).lower()


def plain_pins(args: Sequence[str]) -> Optional[list[tuple[str, SpecifierSet, str]]]:
    """``(name, specifier, text)`` for each argument when every one is a plain name with version
    specifiers; None when any needs packaging's full requirement parser (which then says what is
    wrong, if anything). ``text`` is written as ``str(Requirement)`` writes it."""
    pins: list[tuple[str, SpecifierSet, str]] = []
    for arg in args:
        if len(arg) > _LONGEST_PLAIN or _LONG_NUMBER.search(arg):
            return None  # packaging's parser is not needed, but the bounds and their error are
        match = _PLAIN.fullmatch(arg)
        if match is None:
            return None
        try:
            specifier = SpecifierSet(re.sub(r"\s+", "", match.group(2)))
        except InvalidSpecifier:
            return None
        name = match.group(1)
        pins.append((name, specifier, f"{name}{specifier}"))
    return pins


def exact_versions(specifier: SpecifierSet) -> list[Version]:
    """The versions its ``==X.Y.Z``/``===X.Y.Z`` clauses name (``==2.5.*`` names none)."""
    versions: list[Version] = []
    for spec in sorted(specifier, key=str):
        if spec.operator in ("==", "===") and not spec.version.endswith(".*"):
            try:
                versions.append(Version(spec.version))
            except InvalidVersion:
                continue  # "===" may hold any string
    return versions


def exact_version_in(specifier: SpecifierSet) -> Optional[Version]:
    """The one version an ``==X.Y.Z`` or ``===X.Y.Z`` pin allows; None if none or several."""
    versions = set(exact_versions(specifier))
    return versions.pop() if len(versions) == 1 else None
