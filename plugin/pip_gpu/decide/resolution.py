"""What the whole request asks of torch, and who asks it.

A torch release can be demanded by more than the lines that name torch: a pin on another
family member (``xformers==0.0.28.post2`` is built for exactly one torch), a downstream
package's own requirement (``vllm==0.6.4.post1`` requires ``torch==2.5.1``), a direct URL or a
local wheel of a family member (its variant), and what the target environment already holds
(a preference, as uv treats installed packages). This module finds those constraints, each
with where it came from, so the decision chooses among the releases the whole request admits
and says which package demands what when nothing is left.

Family members' requirements are read from their core metadata on the variant index (PEP 658 /
PEP 714 ``<file>.metadata``); downstream packages' from a ``pip install --dry-run --report``
resolution of the other requirements against the user's own indexes (pip resolves from
metadata alone and installs nothing). Never pip's or uv's internals: their command lines and
standard files only.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from packaging.specifiers import SpecifierSet

from ..errors import PipGpuError
from ..pins import canonical_name
from ..requirements import (
    RequirementLine,
    exact_version_of,
    redact_url,
    render_file,
)
from ..variant import Variant, append_path
from .rules import Blocker, Decision, TorchConstraint, TorchRequest
from .torch_requires import requires_dist

# packaging's requirement, marker and wheel-name parsers (with packaging.tags: ~15 ms) load in the
# functions that read metadata and URLs; a plain request's decision needs none of them.
if TYPE_CHECKING:
    from packaging.requirements import Requirement

__all__ = [
    "Installed",
    "ResolutionContext",
    "TorchConstraint",
    "closure_requirements",
    "constraints_of_lines",
    "installed_preference",
    "member_constraints",
    "parse_resolution",
    "variant_of_link",
]

TORCH = "torch"


@dataclass(frozen=True)
class Installed:
    """The torch build the target environment holds: a preference, never a requirement."""

    version: str  # "2.5.1+cu124"
    public: str  # "2.5.1"
    variant: Optional[Variant]  # cu124; None for PyPI's unlabelled build
    source: str = "installed"  # or the lock file it was read from: "pylock.cu124.toml"


@dataclass(frozen=True)
class ResolutionContext:
    """What reading the whole request needs beyond the requirements: the target and indexes.

    ``index_args``: pip options choosing the user's indexes (``--index-url``,
    ``--extra-index-url``, ``--find-links``, ``--no-index``). ``site_packages``: the target's
    folders, to read what is installed.
    """

    python: Path
    index_args: tuple[str, ...] = ()
    site_packages: tuple[Path, ...] = ()
    prefer_installed: bool = True
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    strict: bool = True  # a resolution that fails is an error (install); else a note (explain)
    lock_folder: Optional[Path] = None  # where pip-gpu's pylock.<variant>.toml files may be
    # The variant indexes the reading takes the family from; empty: those of the builds that
    # run here (``lock`` names its variants', so one reading serves every variant it locks).
    family_indexes: tuple[str, ...] = ()
    # False: leave the other requirements unresolved (``install`` with uv reads the same answer
    # from its one ``uv pip compile`` and decides again with them only when they need torch).
    resolve_others: bool = True


class ResolutionFailed(PipGpuError):
    """The other requirements could not be resolved to read what they need of torch."""


# --- the lines the user wrote ------------------------------------------------------------------


def variant_of_link(link: str, variants: Collection[str]) -> Optional[Variant]:
    """The build a direct URL or local wheel of a family member is: its local label, else a
    ``/whl/<variant>/`` folder in its URL."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(link).path or link)
    filename = path.rsplit("/", 1)[-1]
    if filename.endswith(".whl"):
        from packaging.utils import InvalidWheelFilename, parse_wheel_filename

        try:
            _, version, _, _ = parse_wheel_filename(filename)
        except InvalidWheelFilename:
            version = None
        if version is not None and version.local in variants:
            return Variant.from_label(version.local)
    for segment in reversed(path.split("/")[:-1]):
        if segment in variants:
            return Variant.from_label(segment)
    return None


def constraints_of_lines(
    lines: Sequence[RequirementLine], family: Collection[str], variants: Collection[str]
) -> list[TorchConstraint]:
    """The family lines as written: where each torch-family requirement came from."""
    found: list[TorchConstraint] = []
    for line in lines:
        if line.name is None or line.name not in family:
            continue
        source = line.origin if not line.constraint else f"{line.origin} (constraint)"
        if line.link is not None:
            variant = variant_of_link(line.link, variants)
            if variant is not None:
                found.append(
                    TorchConstraint(line.name, SpecifierSet(), redact_url(line.text), "direct-url", variant)
                )
            continue
        if line.requirement is not None and str(line.requirement.specifier):
            found.append(TorchConstraint(line.name, line.requirement.specifier, source, "requested"))
    return found


# --- family members' own torch pins --------------------------------------------------------------


def _fetch(url: str, timeout: float) -> Optional[bytes]:
    from .index import read_index_file  # the HTTP client only when a member's metadata is read

    return read_index_file(url, timeout=timeout)


def _wheel_metadata(link: str, timeout: float) -> Optional[bytes]:
    """A family wheel's METADATA: from the file itself when local, else its PEP 658 twin."""
    import zipfile

    parts = urllib.parse.urlsplit(link)
    if parts.scheme in ("", "file"):
        path = Path(urllib.parse.unquote(parts.path) if parts.scheme else link)
        if path.suffix != ".whl" or not path.is_file():
            return None
        try:
            with zipfile.ZipFile(path) as wheel:
                name = next((n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")), None)
                return wheel.read(name) if name else None
        except (OSError, zipfile.BadZipFile):
            return None
    if parts.scheme in ("http", "https") and parts.path.endswith(".whl"):
        return _fetch(urllib.parse.urlunsplit(parts._replace(fragment="")) + ".metadata", timeout)
    return None


def member_constraints(
    lines: Sequence[RequirementLine],
    family: Collection[str],
    direct: Collection[str],
    variant_indexes: Sequence[str],
    *,
    timeout: float = 10.0,
    forced_first: bool = False,
) -> list[TorchConstraint]:
    """What exact pins and wheels of other family members (xformers, torchao, fbgemm-gpu...)
    require of torch and its companions, read from their metadata on the variant indexes.

    ``direct``: the names the decision reads itself (torch and its companions).
    ``forced_first``: the first index is the variant the command names (``--variant``, a
    lock's variant): read alone first, as it nearly always has the member; the others (read
    at once) only when it does not.
    """
    found: list[TorchConstraint] = []
    for line in lines:
        if line.name is None or line.name not in family or line.name in direct:
            continue
        metadata: Optional[bytes] = None
        source = redact_url(line.text)
        if line.link is not None:
            metadata = _wheel_metadata(line.link, timeout)
        elif line.requirement is not None:
            pinned = exact_version_of(line.requirement)
            if pinned is None:
                continue  # an open range says nothing about one torch release
            # Here, not at the top: the index client (http.client, ssl, html.parser: about
            # 20 ms) stays off the decision path unless a family member is pinned.
            from concurrent.futures import ThreadPoolExecutor

            from .index import IndexError_, fetch_project_files

            def page(index: str, name: str = line.name) -> list[Any]:
                try:
                    # the project page keeps the index's query string (a mirror's token)
                    return fetch_project_files(append_path(index, name, ""), timeout=timeout)
                except IndexError_:
                    return []

            # every variant index at once (most answer 404 quickly), then the first that has it
            alone = list(variant_indexes[:1]) if forced_first else []
            rest = variant_indexes[len(alone) :]

            def pages_of(first: Sequence[str], others: Sequence[str]) -> Iterator[list[Any]]:
                yield from (page(index) for index in first)
                with ThreadPoolExecutor(max_workers=max(1, len(others))) as pool:
                    yield from list(pool.map(page, others))

            for files in pages_of(alone, rest):
                match = next((f for f in files if _wheel_version(f.filename) == pinned), None)
                if match is None:
                    match = next((f for f in files if _wheel_public(f.filename) == pinned.public), None)
                if match is not None:
                    metadata = _fetch(match.url.split("#", 1)[0] + ".metadata", timeout)
                    if metadata is not None:
                        break
        if metadata is None:
            continue
        for requirement in requires_dist(metadata):
            name = canonical_name(requirement.name)
            if name in direct and str(requirement.specifier) and requirement.marker is None:
                found.append(TorchConstraint(name, requirement.specifier, source, "family-member"))
    return found


def _wheel_version(filename: str) -> Any:
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        return parse_wheel_filename(filename)[1]
    except InvalidWheelFilename:
        return None


def _wheel_public(filename: str) -> Optional[str]:
    version = _wheel_version(filename)
    return None if version is None else str(version.public)


# --- downstream packages, through a resolution ---------------------------------------------------


@dataclass(frozen=True)
class Closure:
    """What the other requirements need of the family, and a conflict the whole request has.

    ``conflict``: uv's explanation when the request with its family lines cannot be resolved
    while the other requirements alone can (``torch==2.13.0`` with a torchaudio whose
    metadata needs another torch): the request cannot be met whatever build is chosen.
    """

    constraints: tuple[TorchConstraint, ...]
    conflict: str = ""
    notes: tuple[str, ...] = ()
    # The whole request's resolution (``uv pip compile`` output, annotated), when it resolved.
    resolution: str = ""


def closure_requirements(
    others: Sequence[RequirementLine],
    global_options: Sequence[tuple[str, ...]],
    family: Collection[str],
    context: ResolutionContext,
    family_lines: Sequence[RequirementLine] = (),
    family_indexes: Sequence[str] = (),
) -> Closure:
    """What the packages the other requirements bring in require of the torch family.

    One ``uv pip compile`` of the request in the world the install will use: every family
    name from ``family_indexes`` (the variant indexes whose builds run here, through a local
    index that serves only the family), everything else from the user's indexes. It works
    when the user's default index has no torch at all, and uv's resolver answers a conflict
    in seconds where pip would backtrack. Only non-family packages speak: their own
    requirements, read from their core metadata (PEP 658), say what they need of the family.
    """
    wanted = [line for line in others if not line.constraint]
    members = {line.name for line in family_lines if not line.constraint and line.requirement is not None}
    if not wanted and len(members) < 2:
        return Closure(())  # torch alone: the decision itself reads everything it needs
    if not wanted:
        # Family members together (torch==2.13.0 with torchaudio): their own metadata on the
        # decided variant index may need another torch; uv says so in seconds, pip backtracks.
        family_indexes = family_indexes[:1]
    key = (
        render_file([*family_lines, *wanted], global_options),
        render_file([line for line in others if line.constraint]),
        str(context.python),
        context.index_args,
        tuple(family_indexes),
    )
    if key not in _RESOLVED:  # `lock` decides once per variant: one resolution serves them all
        _RESOLVED[key] = _read_closure(others, family_lines, global_options, family, context, family_indexes)
    return _RESOLVED[key]


_RESOLVED: dict[tuple[str, str, str, tuple[str, ...], tuple[str, ...]], Closure] = {}

# The step's name in its errors; a note that already says what was not counted drops it.
_READING = "reading what the other requirements need of torch"

# The user's index settings as uv reads them from its environment: replaced in the reading's
# environment by the ones pip-gpu passes (credentials stay out of the child's argv).
_UV_INDEX_VARIABLES = frozenset(
    {
        "UV_INDEX",
        "UV_DEFAULT_INDEX",
        "UV_INDEX_URL",
        "UV_EXTRA_INDEX_URL",
        "UV_FIND_LINKS",
        "UV_NO_INDEX",
        "UV_INDEX_STRATEGY",
    }
)
FAMILY_INDEX_NAME = "pip-gpu-family"


def _uv_binary() -> str:
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        raise ResolutionFailed(
            "cannot tell whether the other requirements need torch: uv, which reads them, is not installed",
            "pip install uv next to pip-gpu, or name torch's version yourself",
        ) from None


def reading_environment(
    index_args: Sequence[str], env: Mapping[str, str], family_index: Optional[str]
) -> dict[str, str]:
    """uv's environment for the reading: the user's indexes (pip-style options, as
    :func:`index_args_for` gives them) in uv's variables, the family index first.

    Index URLs may carry credentials (``user:token@``, ``?token=``): the environment is
    readable by the same user only, where a child's argv is readable by every local user.
    """
    if not index_args:  # nothing given for this command: the indexes the user set up
        index_args = index_args_for("uv", (), env)
    child = {k: v for k, v in env.items() if k not in _UV_INDEX_VARIABLES}
    default: Optional[str] = None
    extras: list[str] = []
    links: list[str] = []
    no_index = False
    pairs = list(index_args)
    i = 0
    while i < len(pairs):
        option = pairs[i]
        if option == "--no-index":
            no_index = True
            i += 1
            continue
        value = pairs[i + 1] if i + 1 < len(pairs) else ""
        if option == "--index-url":
            default = value
        elif option == "--extra-index-url":
            extras.append(value)
        elif option == "--find-links":
            links.append(value)
        i += 2
    indexes = [f"{FAMILY_INDEX_NAME}={family_index}"] if family_index and not no_index else []
    indexes += extras
    if indexes:
        child["UV_INDEX"] = " ".join(indexes)
    if default:
        child["UV_DEFAULT_INDEX"] = default
    if links:
        child["UV_FIND_LINKS"] = ",".join(links)
    if no_index:
        child["UV_NO_INDEX"] = "1"
    # The family index answers for every family name; the rest falls through to the user's.
    # Where the user's own indexes are several and pip's merging reads them (pip's
    # configuration, or pip's options for pip), uv takes the best version of all of them as
    # the one rule gives it to uv (config.UserIndexes.args_for): first-index would take
    # sympy from whichever index lists it first, even one without the version torch pins.
    # The family index still comes first, and a variant index's build (``+cu124``) sorts
    # above the same release elsewhere; a family name the variant indexes lack may then come
    # from those indexes (the install itself routes the family either way).
    from ..config import user_indexes

    merged = bool(extras) and user_indexes(env).source != "uv"
    child["UV_INDEX_STRATEGY"] = "unsafe-best-match" if merged else "first-index"
    child.setdefault("UV_HTTP_TIMEOUT", "30")  # an index that never answers is named, not waited on
    return child


def _read_closure(
    others: Sequence[RequirementLine],
    family_lines: Sequence[RequirementLine],
    global_options: Sequence[tuple[str, ...]],
    family: Collection[str],
    context: ResolutionContext,
    family_indexes: Sequence[str],
) -> Closure:
    family_index: Optional[str] = None
    if family_indexes:
        from .family_index import family_index as build
        from .index import IndexError_, IndexUnreachable

        try:
            family_index = build(family_indexes, family).as_uri()
        except IndexUnreachable as failure:
            # Requirements that bring in no family member at all (``numpy``) need no variant
            # index to say so; for the others, as install says it when the installer cannot
            # reach the index: host and port (no credentials) and the way out.
            if not family_lines and _brings_no_family(others, global_options, family, context):
                return Closure(())
            raise ResolutionFailed(
                f"{_READING}: the variant index at {failure.where} cannot be reached ({failure.message})",
                f"check the network and the proxy settings (HTTPS_PROXY, NO_PROXY) for {failure.where}, "
                "or pass --pytorch-index URL of a mirror that can be reached",
            ) from None
        except IndexError_ as failure:
            raise ResolutionFailed(
                f"{_READING}: {failure.message}",
                failure.hint or "check the network, or --pytorch-index for a mirror",
            ) from None
    try:
        resolved = _uv_compile([*family_lines, *others], global_options, context, family_index)
    except ResolutionConflict as whole_failure:
        if not family_lines:
            raise
        if not any(not line.constraint for line in others):
            return Closure((), whole_failure.message)
        # The other requirements alone: when they resolve, the family lines are what conflicts.
        resolved = _uv_compile(others, global_options, context, family_index)
        found, notes = _constraints_of_resolution(resolved, family, others, context)
        return Closure(tuple(found), whole_failure.message, tuple(notes))
    found, notes = _constraints_of_resolution(resolved, family, others, context)
    return Closure(tuple(found), "", tuple(notes), resolved)


def _brings_no_family(
    others: Sequence[RequirementLine],
    global_options: Sequence[tuple[str, ...]],
    family: Collection[str],
    context: ResolutionContext,
) -> bool:
    """Whether the other requirements, resolved from the user's indexes alone, bring in no
    torch-family package (and nothing named only by a path or URL, which could)."""
    try:
        resolved = _uv_compile(others, global_options, context, None)
    except ResolutionFailed:
        return False
    return all(name and name not in family for name, *_ in parse_resolution(resolved))


def _uv_compile(
    lines: Sequence[RequirementLine],
    global_options: Sequence[tuple[str, ...]],
    context: ResolutionContext,
    family_index: Optional[str],
) -> str:
    """``uv pip compile`` of ``lines`` for the target: pins, ``# via`` and ``# from`` lines."""
    import subprocess

    from ..private import private_scratch

    uv = _uv_binary()
    # the requirements copy keeps the files' index options, credentials included
    with private_scratch("resolve") as scratch:
        folder = Path(scratch)
        requirements = folder / "request.txt"
        # requirement files' own index options stay in the file, with any credentials in them
        wanted = [line for line in lines if not line.constraint]
        requirements.write_text(render_file(wanted, global_options), encoding="utf-8")
        argv = [uv, "pip", "compile", str(requirements), "--python", str(context.python)]
        argv += ["--quiet", "--no-header", "--annotate", "--annotation-style", "split"]
        argv += ["--emit-index-annotation", "--output-file", str(folder / "resolved.txt")]
        constraint_lines = [line for line in lines if line.constraint]
        if constraint_lines:
            constraints = folder / "constraints.txt"
            constraints.write_text(render_file(constraint_lines), encoding="utf-8")
            argv += ["--constraints", str(constraints)]
        env = reading_environment(context.index_args, context.env, family_index)
        from ..ui import progress

        try:
            with progress("uv: resolving the other requirements to read what they need of torch"):
                done = subprocess.run(
                    argv,
                    capture_output=True,
                    text=True,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    timeout=600,
                    check=False,
                )
        except subprocess.TimeoutExpired:
            raise ResolutionFailed(
                f"{_READING}: uv did not finish within 600 s",
                "check your indexes (one may not answer), or name torch's version yourself",
            ) from None
        try:
            resolved = (folder / "resolved.txt").read_text(encoding="utf-8")
        except OSError:
            resolved = ""
    if done.returncode != 0:
        raise _failure(done.stderr or done.stdout)
    return resolved


class ResolutionConflict(ResolutionFailed):
    """uv proved the requirements cannot all be met (not a network or input failure)."""


def _failure(output: str) -> ResolutionFailed:
    """uv's error, in one line: a conflict names the demands, a fetch names the index."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", output)
    marks = "\u00d7\u2570\u2500\u25b6 "  # uv's error decoration
    lines = [line.strip().lstrip(marks).strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("hint:", "warning:"))]
    lines = [line[len("error:") :].strip() if line.startswith("error:") else line for line in lines]
    missing = any("not found in the" in line or "no versions of" in line.lower() for line in lines)
    if not missing and any("unsatisfiable" in line for line in lines):
        reasons = [line for line in lines if not line.startswith(("No solution found", "Caused by"))]
        return ResolutionConflict(
            f"the request cannot be resolved: {redact_url(' '.join(reasons))}",
            "change the requirements that conflict (the versions named are what the indexes offer)",
        )
    fetched = re.search(r"(?:Failed to fetch:? |for url \()`?((?:https?|file)://[^`\s)]+)", text)
    if fetched and any("Connect" in line or "connect" in line or "timed out" in line for line in lines):
        return ResolutionFailed(
            f"the index at {redact_url(fetched[1])} cannot be reached ({redact_url(lines[-1])})",
            "check the network and that index's URL (a requirements file's --index-url or "
            "--extra-index-url counts), or remove it",
        )
    why = redact_url(" ".join(lines[-3:]) if lines else "no output")
    return ResolutionFailed(
        f"resolving the other requirements, to read what they need of torch, failed: {why}",
        "check those requirements and your indexes (the same uv pip compile fails without pip-gpu)",
    )


_PIN_RE = r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*(==|@)\s*(\S+)"


def parse_resolution(text: str) -> list[tuple[str, str, str, list[str], Optional[str]]]:
    """``(name, "==" or "@", version or URL, via, index)`` for each package of a ``uv pip
    compile`` output written with ``--annotation-style split`` and ``--emit-index-annotation``."""
    import re

    entries: list[tuple[str, str, str, list[str], Optional[str]]] = []
    in_via = False
    for line in text.splitlines():
        if not line.strip():
            continue
        stripped = line.strip()
        if not line.startswith((" ", "#")):
            if stripped.startswith(("-e ", "--editable ")):
                entries.append(("", "@", stripped.split(None, 1)[1], [], None))
            else:
                match = re.match(_PIN_RE, stripped)
                if match:
                    entries.append((canonical_name(match[1]), match[2], match[3], [], None))
                else:  # a path or URL as the user wrote it: uv does not print its name
                    entries.append(("", "@", stripped, [], None))
            in_via = False
            continue
        if not entries or not stripped.startswith("#"):
            continue
        comment = stripped.lstrip("#").strip()
        name, how, value, via, _ = entries[-1]
        if comment.startswith("from "):
            entries[-1] = (name, how, value, via, comment[5:].strip())
            in_via = False
        elif comment.startswith("via"):
            rest = comment[3:].strip()
            via.extend(part.strip() for part in rest.split(",") if part.strip())
            in_via = not rest
        elif in_via and stripped.startswith("#   "):
            via.append(comment)
    return entries


def _constraints_of_resolution(
    resolved: str, family: Collection[str], others: Sequence[RequirementLine], context: ResolutionContext
) -> tuple[list[TorchConstraint], list[str]]:
    """The family requirements of the packages that bring a family member in, from their own
    core metadata; where it cannot be read, the version uv's resolution picks for them."""
    from concurrent.futures import ThreadPoolExecutor

    entries = parse_resolution(resolved)
    family_set = set(family)
    by_name = {name: (how, value, index) for name, how, value, _, index in entries if name}
    askers: dict[str, list[tuple[str, str]]] = {}  # parent -> [(family member, its resolved version)]
    for name, how, value, via, _ in entries:
        if name not in family_set:
            continue
        for source in via:
            if source.startswith(("-r ", "-c ", "-e ", "--")):
                continue
            parent = canonical_name(source.split(" ", 1)[0])
            if parent and parent not in family_set:
                askers.setdefault(parent, []).append((name, value if how == "==" else ""))
    extras_of = {
        line.name: set(line.requirement.extras)
        for line in others
        if line.name is not None and line.requirement is not None
    }

    # a local wheel or project the user named by path: uv prints the path, not the name
    links = {line.name: line.link for line in others if line.name is not None and line.link is not None}

    def read(parent: str) -> tuple[list[TorchConstraint], Optional[str]]:
        how, value, index = by_name.get(parent, ("@", links.get(parent) or "", None))
        source = f"{parent}=={value}" if how == "==" else parent
        metadata = _metadata_of(parent, how, value, index, context) if value else None
        pulled = {member for member, _ in askers[parent]}
        if metadata is not None:
            found = _family_requirements(metadata, pulled, source, extras_of.get(parent, set()))
            if found:
                return found, None
        # Its metadata could not be read (a local project, an index without PEP 658): it accepts
        # at least what uv's resolution picks for it.
        found = [
            TorchConstraint(member, SpecifierSet(f"=={version.split('+', 1)[0]}"), source, "downstream")
            for member, version in askers[parent]
            if version
        ]
        note = f"{source}'s own requirements could not be read; counted as needing what uv's resolution picks"
        return found, note

    with ThreadPoolExecutor(max_workers=min(8, max(1, len(askers)))) as pool:
        results = list(pool.map(read, sorted(askers)))
    constraints = [c for found, _ in results for c in found]
    notes = [note for _, note in results if note]
    return constraints, notes


def _family_requirements(
    metadata: bytes, pulled: Collection[str], source: str, extras: Collection[str]
) -> list[TorchConstraint]:
    """The requirements in ``metadata`` on the family members it was seen to pull in."""
    from packaging.markers import default_environment

    environment = {k: str(v) for k, v in default_environment().items()}
    found: list[TorchConstraint] = []
    for requirement in requires_dist(metadata):
        name = canonical_name(requirement.name)
        if name not in pulled:
            continue
        marker = requirement.marker
        applies = marker is None or any(
            marker.evaluate({**environment, "extra": extra}) for extra in ["", *extras]
        )
        if not applies and marker is not None and "extra" in str(marker):
            applies = True  # an extra another package asks for: uv's resolution took it
        if applies:
            found.append(TorchConstraint(name, requirement.specifier, source, "downstream"))
    return found


def _metadata_of(
    name: str, how: str, value: str, index: Optional[str], context: ResolutionContext
) -> Optional[bytes]:
    """A resolved package's core metadata: its file's PEP 658 twin on the index it came from,
    or the wheel itself when it is a local file or a direct URL."""
    if how == "@":
        return _wheel_metadata(value, timeout=10.0)
    if not index or index.startswith("file:"):
        return _find_links_metadata(name, value, index)
    from .index import IndexError_, fetch_project_files

    base = _with_credentials(index, context)
    try:
        files = fetch_project_files(append_path(base, name, ""), timeout=10.0)
    except IndexError_:
        return None
    matching = [f for f in files if _wheel_version_text(f.filename) == value]
    for file in sorted(matching, key=lambda f: not f.core_metadata):
        url = file.url.split("#", 1)[0]
        metadata = _fetch(url + ".metadata", 10.0) if file.core_metadata else None
        if metadata is None and (file.size or 0) <= 64 * 2**20:
            metadata = _remote_wheel_metadata(url)
        if metadata is not None:
            return metadata
    return None


def _wheel_version_text(filename: str) -> Optional[str]:
    version = _wheel_version(filename)
    return None if version is None else str(version)


def _remote_wheel_metadata(url: str) -> Optional[bytes]:
    """METADATA out of a remote wheel (an index without PEP 658), for wheels of modest size."""
    import io
    import zipfile

    data = _fetch(url, 30.0)
    if data is None:
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as wheel:
            name = next((n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")), None)
            return wheel.read(name) if name else None
    except (OSError, zipfile.BadZipFile):
        return None


def _find_links_metadata(name: str, version: str, index: Optional[str]) -> Optional[bytes]:
    """A package from a local folder (``--find-links``, a local index): its wheel's METADATA."""
    if not index:
        return None
    folder = Path(urllib.parse.unquote(urllib.parse.urlsplit(index).path))
    if not folder.is_dir():
        return None
    for wheel in [*folder.glob("*.whl"), *folder.glob(f"{name}/*.whl")]:
        if _wheel_version_text(wheel.name) == version and canonical_name(wheel.name.split("-")[0]) == name:
            return _wheel_metadata(str(wheel), timeout=10.0)
    return None


def _with_credentials(index: str, context: ResolutionContext) -> str:
    """The index URL as the user gave it (uv's ``# from`` annotation leaves credentials out)."""
    from ..redact import strip_credentials

    given = [v for v in context.index_args if "://" in v]
    for url in given:
        url = url.partition("=")[2] if "=" in url.split("://")[0] else url
        if strip_credentials(url).rstrip("/") == strip_credentials(index).rstrip("/"):
            return url
    return index


def constraints_from_report(report: Mapping[str, Any], family: Collection[str]) -> list[TorchConstraint]:
    """Family requirements of the non-family packages in a pip installation report."""
    from packaging.markers import InvalidMarker
    from packaging.requirements import InvalidRequirement, Requirement

    environment = {k: str(v) for k, v in (report.get("environment") or {}).items()}
    found: list[TorchConstraint] = []
    for item in report.get("install") or ():
        metadata = item.get("metadata") or {}
        name = canonical_name(str(metadata.get("name", "")))
        if not name or name in family:
            continue
        source = f"{metadata.get('name')}=={metadata.get('version')}"
        extras = [""] + [str(e) for e in item.get("requested_extras") or ()]
        for text in metadata.get("requires_dist") or ():
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue
            wanted = canonical_name(requirement.name)
            if wanted not in family:
                continue
            try:
                applies = requirement.marker is None or any(
                    requirement.marker.evaluate({**environment, "extra": extra}) for extra in extras
                )
            except InvalidMarker:
                applies = True
            if applies:
                found.append(TorchConstraint(wanted, requirement.specifier, source, "downstream"))
    return found


# --- what is installed ---------------------------------------------------------------------------


def installed_preference(site_packages: Sequence[Path], variants: Iterable[str]) -> Optional[Installed]:
    """The torch the target holds, if any; its local label is its variant."""
    if not site_packages:
        return None
    from importlib import metadata

    folders = [str(p) for p in site_packages]
    dist = next(iter(metadata.distributions(name=TORCH, path=folders)), None)
    version = dist.version if dist is not None else None
    if not version:
        return None
    public, _, label = version.partition("+")
    known = set(variants)
    return Installed(version, public, Variant.from_label(label) if label in known else None)


def locked_preferences(folder: Optional[Path]) -> list[Installed]:
    """The torch each of the folder's locks holds: preferred, as uv prefers its lock's versions."""
    if folder is None or not any(folder.glob("pylock.*.toml")):
        return []
    from ..lockfile import find_lock_family

    return [
        Installed(f"{lock.record.torch}+{lock.variant}", lock.record.torch, variant, lock.path.name)
        for lock in find_lock_family(folder)
        if lock.record.torch
        and (variant := Variant.from_label(lock.variant)) is not None
        and variant.has_index
    ]


# --- the whole request -------------------------------------------------------------------------


@dataclass(frozen=True)
class WholeRequest:
    """Every torch-family constraint of a request, and the family lines it adds.

    ``added_lines``: family packages that other packages need but the user did not name
    (``torch==2.5.1`` for ``vllm==0.6.4.post1``); installing them first, from the variant index,
    is what makes the rest resolve against the decided build.
    """

    constraints: tuple[TorchConstraint, ...]
    added_lines: tuple[RequirementLine, ...]
    preferences: tuple[Installed, ...] = ()  # the installed torch first, then the folder's locks
    notes: tuple[str, ...] = ()
    conflict: str = ""  # uv's words when the request cannot be resolved whatever build is chosen
    others_unread: bool = False  # the reading failed: what the other requirements need is unknown
    # The reading's resolution of the whole request (Closure.resolution): ``lock`` routes the
    # family members it shows coming with exactly pinned ones before its own first uv run.
    reading: str = ""

    def decision_requirements(self, direct: Collection[str]) -> list[Requirement]:
        """The derived constraints the decision reads: those on torch and its companions."""
        from packaging.requirements import Requirement

        return [
            Requirement(f"{c.package}{c.specifier}")
            for c in self.constraints
            if c.kind in ("family-member", "downstream") and c.package in direct and str(c.specifier)
        ]

    def forced_variants(self) -> dict[Variant, str]:
        """variant -> the direct URL or wheel that forces it."""
        return {c.variant: c.source for c in self.constraints if c.variant is not None}

    def derived(self) -> list[TorchConstraint]:
        return [c for c in self.constraints if c.kind != "requested"]


def read_whole_request(
    lines: Sequence[RequirementLine],
    global_options: Sequence[tuple[str, ...]],
    family: Collection[str],
    direct: Collection[str],
    variant_indexes: Sequence[str],
    variants: Collection[str],
    context: Optional[ResolutionContext],
    reading_indexes: Sequence[str] = (),
    *,
    forced_first: bool = False,
) -> WholeRequest:
    """All the request's torch-family constraints with their provenance (see the module doc).

    ``reading_indexes``: the variant indexes the family is read from when the other
    requirements are resolved (those of the builds that run here).
    """
    from packaging.requirements import Requirement

    constraints = constraints_of_lines(lines, family, variants)
    constraints += member_constraints(lines, family, direct, variant_indexes, forced_first=forced_first)
    added: list[RequirementLine] = []
    preferences: list[Installed] = []
    notes: list[str] = []
    conflict = ""
    unread = False
    reading = ""
    if context is not None:
        others = [line for line in lines if line.name not in family] if context.resolve_others else []
        written = [line for line in lines if line.name in family]
        try:
            where = context.family_indexes or tuple(reading_indexes)
            closure = closure_requirements(others, global_options, family, context, written, where)
        except ResolutionFailed as failure:
            if context.strict or isinstance(failure, ResolutionConflict):
                raise
            reason = failure.message.removeprefix(f"{_READING}: ")
            # Without other requirements the reading checks the named family members against
            # each other (torchvision's own torch pin): say that, not "the other requirements".
            unchecked = (
                "what the other requirements need of torch"
                if others
                else f"what {_listed({line.name or '' for line in written})} need of each other"
            )
            notes.append(f"not counted, {unchecked}: {reason}")
            closure = Closure(())
            unread = True
        downstream = list(closure.constraints)
        notes += closure.notes
        conflict = closure.conflict
        reading = closure.resolution
        constraints += downstream
        # Family members other packages pin (vllm pins xformers): their torch, in turn.
        pinned_members = [
            RequirementLine(f"{c.package}{c.specifier}", Requirement(f"{c.package}{c.specifier}"), c.package)
            for c in downstream
            if c.package not in direct
        ]
        constraints += member_constraints(
            pinned_members, family, direct, variant_indexes, forced_first=forced_first
        )
        if context.prefer_installed:
            installed = installed_preference(context.site_packages, variants)
            preferences += [installed] if installed is not None else []
            preferences += locked_preferences(context.lock_folder)
    # torch and companions that only other packages require join the install as they require
    # them, so they come from the variant index at the release the decision reads.
    named = {line.name for line in lines if not line.constraint}
    derived = [c for c in constraints if c.kind in ("family-member", "downstream") and c.package in direct]
    for package in sorted({c.package for c in derived} - named):
        mine = [c for c in derived if c.package == package]
        specifier = SpecifierSet(",".join(str(c.specifier) for c in mine if str(c.specifier)))
        requirement = Requirement(f"{package}{specifier}")
        sources = {c.source for c in mine}
        origin = f"required by {_listed(sources)}"
        added.append(RequirementLine(str(requirement), requirement, package, origin=origin))
        notes.append(f"{package} pulled in by other requirements: {_who_requires(sources)} {requirement}")
    return WholeRequest(
        tuple(constraints), tuple(added), tuple(preferences), tuple(notes), conflict, unread, reading
    )


def _listed(names: Collection[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``: sorted, as a sentence names them."""
    ordered = sorted(names)
    return ordered[0] if len(ordered) == 1 else f"{', '.join(ordered[:-1])} and {ordered[-1]}"


def _who_requires(names: Collection[str]) -> str:
    """``a requires`` or ``a and b require``: the verb agrees with the list."""
    return f"{_listed(names)} {'requires' if len(set(names)) == 1 else 'require'}"


def describe_request(request_text: str, whole: WholeRequest) -> str:
    """How messages name the request: the user's lines, then who else asks what."""
    derived = [c.describe() for c in whole.derived()]
    if not derived:
        return request_text
    return f"{request_text} ({'; '.join(derived)})"


def settle(
    decision: Decision,
    request: TorchRequest,
    whole: WholeRequest,
    decide_with: Callable[[TorchRequest], Decision],
    plain_request: TorchRequest,
    *,
    asks_for_family: bool = True,
) -> Decision:
    """Apply what is installed as a preference, and name the constraints in notes and errors.

    ``asks_for_family``: False when nothing in the request names or pulls in the torch family
    (``install requests``): the installed torch is left alone, so no note says it is replaced.

    The installed torch is kept when the request admits it and the usual rules say its build
    runs here (as uv keeps installed packages that satisfy a request). When the request needs
    another torch, a note says so, printed before anything changes.
    """
    notes = list(whole.notes)
    blocker = decision.blocked()
    if blocker is not None:
        hint = blocker.hint
        if whole.derived() and plain_request != request:
            without = decide_with(plain_request)
            if without.ok:
                askers = _who_requires({c.source for c in whole.derived()})
                hint = (
                    f"without what {askers}, torch {without.torch} ({without.variant}) would run here; {hint}"
                )
        message = blocker.message
        if whole.derived() and not decision.candidates:  # no release admits every demand
            demands = "; ".join(c.describe() for c in whole.constraints if str(c.specifier))
            message = f"no torch release satisfies every torch requirement of this request: {demands}"
        return replace(decision, blocker=Blocker(message, hint), notes=(*decision.notes, *notes))
    if whole.conflict:  # the decision's demands agree, but the packages' own metadata do not
        hint = "change the requirements that conflict (the versions named are what the indexes offer)"
        return replace(decision, blocker=Blocker(whole.conflict, hint), notes=(*decision.notes, *notes))

    def runs(pref: Installed) -> bool:
        series = ".".join(pref.public.split(".")[:2])
        return any(c.ok and c.torch == series and c.variant == pref.variant for c in decision.candidates)

    order = {(c.torch, c.variant): i for i, c in reversed(list(enumerate(decision.candidates)))}

    def rank(pref: Installed) -> tuple[bool, int]:  # the installed build, then the best locked one
        series = ".".join(pref.public.split(".")[:2])
        place = order.get((series, pref.variant), len(order)) if pref.variant else len(order)
        return pref.source != "installed", place

    for pref in sorted(whole.preferences, key=rank):
        if pref.variant is None or not runs(pref):
            continue
        if not request.torch_specifier.contains(pref.public, prereleases=True):
            continue
        keep = replace(
            request,
            torch_specifier=request.torch_specifier & SpecifierSet(f"=={pref.public}"),
            exact_torch=pref.public,
            forced_variant=pref.variant,
        )
        kept = decide_with(keep)
        if kept.ok:
            if (kept.torch, kept.variant) != (decision.torch, decision.variant):
                where = "the installed torch" if pref.source == "installed" else f"torch from {pref.source}:"
                notes.append(f"keeping {where} {pref.version}: the request admits it and it runs here")
            return replace(kept, notes=(*kept.notes, *notes))
    installed = next((p for p in whole.preferences if p.source == "installed"), None)
    if (
        installed is not None
        and asks_for_family
        and (installed.public, installed.variant) != (decision.torch, decision.variant)
    ):
        why = [
            c.describe()
            for c in whole.constraints
            if c.package == TORCH and not c.specifier.contains(installed.public, prereleases=True)
        ]
        if not why and installed.variant is None:
            why = ["it carries no variant label (a build from PyPI or elsewhere), so it is not checked"]
        elif not why and not runs(installed):
            why = [f"its {installed.variant} build does not run here"]
        elif not why:
            why = [c.describe() for c in whole.constraints if c.package != TORCH] or [
                "the request excludes it"
            ]
        notes.append(
            f"torch {installed.version} is installed, but this request needs torch {decision.torch} "
            f"({decision.variant}): {'; '.join(why)}; it will be replaced"
        )
    return replace(decision, notes=(*decision.notes, *notes))


def index_args_for(installer: str, installer_args: Sequence[str], env: Mapping[str, str]) -> tuple[str, ...]:
    """The user's indexes, as pip-style options, for the reading of what the other requirements
    need of torch: the command's options (pip's or uv's spelling), then the indexes the one
    rule names (:func:`pip_gpu.config.user_indexes`), whichever ``installer`` installs."""
    out: list[str] = []
    tokens = list(installer_args)
    i = 0
    while i < len(tokens):
        name, equals, value = tokens[i].partition("=")
        if name in (
            "-i",
            "--index-url",
            "--default-index",
            "--extra-index-url",
            "--index",
            "-f",
            "--find-links",
        ):
            if not equals:
                value = tokens[i + 1] if i + 1 < len(tokens) else ""
                i += 1
            url = value.partition("=")[2] if name == "--index" and "=" in value.split("://")[0] else value
            option = {"-i": "--index-url", "--default-index": "--index-url", "--index": "--extra-index-url"}
            out += [option.get(name, "--find-links" if name == "-f" else name), url]
        elif name == "--no-index":
            out.append(name)
        i += 1
    # The one rule for where everything but the family comes from (config.user_indexes): uv's
    # configuration, else pip's, else PyPI; the command's own default index wins.
    from ..config import user_indexes

    configured = user_indexes(env)
    if "--index-url" not in out and "--no-index" not in out:
        if configured.no_index:
            out.append("--no-index")
        elif configured.index_url:
            out = ["--index-url", configured.index_url, *out]
    seen = set(zip(out, out[1:]))
    for url in configured.extra_index_urls:
        out += ["--extra-index-url", url] if ("--extra-index-url", url) not in seen else []
    for place in configured.find_links:
        out += ["--find-links", place] if ("--find-links", place) not in seen else []
    return tuple(out)


def context_for_install(
    python: Path,
    site_packages: Sequence[Path],
    installer: str,
    installer_args: Sequence[str],
    env: Mapping[str, str],
    lock_folder: Optional[Path] = None,
    dry_run: bool = False,
) -> ResolutionContext:
    """``pip-gpu install``'s view: the target, the user's indexes, installed torch preferred
    unless ``--upgrade``/``--force-reinstall`` asks otherwise. A dry run shows what it can (a
    resolution that fails is a note); a real install refuses to guess."""
    upgrading = any(a in ("-U", "--upgrade", "--force-reinstall", "--reinstall") for a in installer_args)
    return ResolutionContext(
        python=python,
        index_args=index_args_for(installer, installer_args, env),
        site_packages=tuple(site_packages),
        prefer_installed=not upgrading,
        env=dict(env),
        lock_folder=lock_folder,
        strict=not dry_run,
    )
