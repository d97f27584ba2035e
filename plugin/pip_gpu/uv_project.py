"""uv projects: ``pip-gpu uv setup`` writes uv's own PyTorch configuration; the shims pick the extra.

uv does not apply ``--torch-backend`` to projects or ``uv.lock``. Its documented answer
(docs.astral.sh/uv/guides/integration/pytorch, "Configuring accelerators with optional
dependencies") is one explicit index per variant, ``[tool.uv.sources]`` mapping the torch
family to those indexes by extra, one extra per variant, and ``[tool.uv] conflicts`` between
the extras; ``uv lock`` then records every variant. ``setup`` writes exactly that (plus the
variant list in ``[tool.pip-gpu]``, so every pip-gpu decision in the project stays among
them), and with the shims ``uv sync`` / ``uv run`` add ``--extra <variant>`` for this host
(``pip_gpu.shim.uv_guard``, which decides that extra with :func:`host_variant`).

``pyproject.toml`` is edited with tomlkit, which keeps the user's formatting and comments.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from .errors import UsageError
from .host import HostFlags

if TYPE_CHECKING:
    from .decide.plan import Plan
    from .host import HostProfile
    from .variant import Variant

__all__ = [
    "INDEX_PREFIX",
    "UvSetupOptions",
    "UvSetupResult",
    "host_variant",
    "missing_variant_error",
    "project_variants",
    "uv_setup",
    "variant_outside_project",
]

INDEX_PREFIX = "pytorch-"


def project_variants(data: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{variant: its extra's requirements}`` for the variants set up in a pyproject table.

    A variant counts when an extra of that name exists beside an explicit ``pytorch-<variant>``
    index, whoever wrote them, or when ``[tool.pip-gpu] variants`` names it and a source routes
    that extra to an index (``uv setup`` reuses a project's index under its own name).
    """
    tool = data.get("tool", {})
    uv = tool.get("uv", {})
    extras = data.get("project", {}).get("optional-dependencies", {})
    names = [str(i.get("name", "")) for i in uv.get("index", []) if i.get("explicit")]
    candidates = [n[len(INDEX_PREFIX) :] for n in names if n.startswith(INDEX_PREFIX)]
    routed = {
        str(e.get("extra"))
        for value in uv.get("sources", {}).values()
        for e in _entries(value)
        if isinstance(e, Mapping) and "index" in e and "extra" in e
    }
    candidates += [str(v) for v in tool.get("pip-gpu", {}).get("variants", []) if v in routed]
    return {v: [str(r) for r in extras[v]] for v in dict.fromkeys(candidates) if v in extras}


# --- the variant this host runs ------------------------------------------------------------


def host_variant(variants: Mapping[str, Sequence[str]], project: Path) -> str:
    """The variant among the project's that this host runs, decided as everywhere else."""
    from .decide.plan import decide_for
    from .detect import host_for

    family = _family_requirements(next(iter(variants.values())))
    host = host_for()
    plan = decide_for(family or ["torch"], [], host, cwd=project)
    decision = plan.decision
    if not decision.ok:
        variant_outside_project(plan, host, project, list(variants))
    variant = decision.chosen().variant  # NoBuildRuns, with the reason, when no build runs here
    if variant not in variants:
        raise missing_variant_error(project, variant, list(variants))
    return variant


def _family_requirements(requirements: Sequence[str]) -> list[str]:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    from .knowledge import load_knowledge

    family = {canonicalize_name(m.name) for m in load_knowledge().family}
    out = []
    for text in requirements:
        try:
            if canonicalize_name(Requirement(text).name) in family:
                out.append(text)
        except InvalidRequirement:
            continue
    return out


def missing_variant_error(project: Path, variant: str, variants: Sequence[str]) -> UsageError:
    """This host's variant is not among the project's: name the command that adds it."""
    offered = ", ".join(variants)
    lock = project / "uv.lock"
    where = "pyproject.toml and uv.lock offer" if lock.is_file() else "pyproject.toml offers"
    return UsageError(
        f"this host runs the {variant} build, and {project}'s {where} {offered}",
        f"add it: pip-gpu uv setup --variants {','.join([*variants, variant])}, then uv lock",
    )


def variant_outside_project(plan: Plan, host: HostProfile, project: Path, variants: Sequence[str]) -> None:
    """No offered variant runs here: name the one that would, if any (the project's policy aside)."""
    from packaging.requirements import Requirement

    from .decide.rules import decide, request_from_requirements

    family = [line.requirement for line in plan.family_lines() if line.requirement is not None]
    request = request_from_requirements(family or [Requirement("torch")], plan.knowledge)
    free = decide(request, host, plan.knowledge, pytorch_index=plan.pytorch_index)
    if free.ok and free.variant is not None and free.variant not in variants:
        raise missing_variant_error(project, free.variant, variants)


# --- pip-gpu uv setup --------------------------------------------------------------------------


@dataclass(frozen=True)
class UvSetupOptions:
    """What ``pip-gpu uv setup`` is asked to write.

    ``variants``: None for this host's variant and cpu; ``project``: None for the current folder;
    ``host``: the target-host facts given instead of detected.
    """

    requirements: tuple[str, ...] = ()
    variants: Optional[tuple[str, ...]] = None
    project: Optional[Path] = None
    dry_run: bool = False
    host: HostFlags = field(default_factory=HostFlags)
    pytorch_index: Optional[str] = None


@dataclass(frozen=True)
class UvSetupResult:
    """What ``uv setup`` wrote (or, in a dry run, would write) into ``path``."""

    path: Path
    original: str
    written: str
    variants: tuple[str, ...]
    requirements: tuple[str, ...]
    host_extra: Optional[str]  # the extra this host runs; None when no variant runs here
    dry_run: bool
    notes: tuple[str, ...] = ()  # what torch's metadata on an index changed in the routing


def uv_setup(options: UvSetupOptions) -> UvSetupResult:
    """``uv setup``; a pyproject.toml whose tables have another shape is one error line."""
    from packaging.requirements import InvalidRequirement

    try:
        return _uv_setup(options)
    except (AttributeError, TypeError, KeyError) as exc:
        raise UsageError(
            f"pyproject.toml: a [project] or [tool.uv] value does not have the shape pip-gpu expects ({exc})",
            "check [project] dependencies/optional-dependencies and [tool.uv] conflicts/sources/index "
            "(index is an array of tables: [[tool.uv.index]])",
        ) from None
    except InvalidRequirement as exc:
        raise UsageError(f"pyproject.toml: invalid requirement: {exc}", "fix it, then run again") from None


def _uv_setup(options: UvSetupOptions) -> UvSetupResult:
    import tomlkit
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from .decide.plan import decide_for
    from .detect import host_for
    from .knowledge import load_knowledge
    from .redact import strip_credentials
    from .variant import Variant, variant_index_url

    folder = Path(options.project or os.getcwd()).absolute()
    path = folder / "pyproject.toml"
    if not path.is_file():
        raise UsageError(
            f"no pyproject.toml in {folder}", "create the project first (uv init), or pass --project"
        )
    try:
        original = path.read_text(encoding="utf-8")
        document = tomlkit.parse(original)
    except (OSError, UnicodeDecodeError, tomlkit.exceptions.TOMLKitError) as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}", "fix the file, then run again") from None
    knowledge = load_knowledge()
    family_names: set[str] = {canonicalize_name(m.name) for m in knowledge.family}
    project = document.setdefault("project", tomlkit.table())
    new_extras = "optional-dependencies" not in project
    extras = project.setdefault("optional-dependencies", tomlkit.table())
    tool = document.setdefault("tool", tomlkit.table(is_super_table=True))
    # What an earlier `uv setup` wrote; a recipe the project wrote itself is merged into, never owned.
    owned = {str(v) for v in tool.get("pip-gpu", {}).get("variants", [])}

    requirements = list(options.requirements)
    dependencies = project.get("dependencies")
    moved: list[str] = []
    if dependencies is not None:
        # The family moves into the variant extras: left in the plain dependencies it would
        # come from PyPI whatever the extra.
        moved = [str(d) for d in dependencies if canonicalize_name(Requirement(str(d)).name) in family_names]
        for item in moved:
            dependencies.remove(item)
        if moved and not len(dependencies):
            project["dependencies"] = tomlkit.array()
    replace = bool(requirements or moved)
    requirements = requirements or moved or _requirements_in_extras(extras, family_names) or ["torch"]
    for text in requirements:
        if canonicalize_name(Requirement(text).name) not in family_names:
            raise UsageError(f"{text} is not a torch-family project", "name torch, torchvision, ...")

    host = host_for(options.host)
    plan = decide_for(requirements, [], host, pytorch_index=options.pytorch_index, cwd=folder)
    team = [str(v) for v in tool.get("pip-gpu", {}).get("variants", [])]
    if options.variants is not None:
        variants = list(options.variants)
    elif team:
        # The variants an earlier setup wrote for the team stay (a CPU laptop keeps the CUDA
        # extras); this host's joins them when the project's policy lets a build run here.
        here = [str(plan.decision.variant)] if plan.decision.ok else []
        variants = list(dict.fromkeys([*team, *here]))
    else:
        if not plan.decision.ok:
            raise UsageError("no build runs on this host; name the variants", "--variants cu124,cpu")
        variants = list(dict.fromkeys([str(plan.decision.variant), "cpu"]))
    known = set(knowledge.variants())
    unknown = [v for v in variants if v not in known]
    if unknown:
        raise UsageError(f"unknown variant(s) {', '.join(unknown)}", f"known: {', '.join(sorted(known))}")
    dropped = owned - set(variants)

    uv = tool.setdefault("uv", tomlkit.table())
    # created in the order uv's guide writes them: conflicts, sources, indexes
    conflicts = uv.setdefault("conflicts", tomlkit.array())
    new_sources = "sources" not in uv
    sources = uv.setdefault("sources", tomlkit.table())
    urls = {}
    readable: dict[str, str] = {}  # with the credentials, to read torch's metadata there
    for variant in variants:
        # credentials stay in the user's configuration (netrc, UV_INDEX_*), never in the project
        url = variant_index_url(plan.pytorch_index, variant)
        urls[variant] = strip_credentials(url) if url else url
        if url:
            readable[variant] = url
    index_names = _merge_indexes(tomlkit, uv, urls)

    for variant in dropped:
        extras.pop(variant, None)
    notes: list[str] = []
    for variant in variants:
        value = Variant.from_label(variant)  # every known variant parses; None serves no companion
        wanted = [r for r in requirements if _serves(canonicalize_name(Requirement(r).name), value)]
        torch_specifier = ",".join(
            str(Requirement(r).specifier) for r in wanted if canonicalize_name(Requirement(r).name) == "torch"
        )
        needs = _torch_needs_on_index(readable[variant], torch_specifier, family_names, value)
        notes += [f"{variant}: {note}" for note in needs.notes]
        current = extras.get(variant)
        if variant in owned and isinstance(current, list):
            # setup wrote the companion lines of its own extras: those torch no longer names go
            _drop_stale_companions(current, needs, wanted)
        extras[variant] = _merge_extra(tomlkit, current, wanted, needs.lines, replace=replace)

    notes += _user_index_notes(folder)
    conflicts_before = conflicts.as_string()
    _merge_conflicts(tomlkit, conflicts, variants, dropped)
    if not conflicts:
        del uv["conflicts"]
    elif conflicts.as_string() != conflicts_before:  # the project's own layout stays when untouched
        conflicts.multiline(True)

    served: dict[str, list[str]] = {}  # family name -> the variants whose extra asks for it
    for variant in variants:
        for text in extras[variant]:
            name = canonicalize_name(Requirement(str(text)).name)
            if name in family_names:
                served.setdefault(name, []).append(variant)
    for source_name in [str(n) for n in sources if str(n) in _ALL_COMPANIONS]:
        # a companion source of setup's own extra whose extra no longer asks for it goes
        stale = [v for v in owned & set(variants) if v not in served.get(source_name, [])]
        if isinstance(sources[source_name], Mapping) and _extra_of(sources[source_name]) in stale:
            del sources[source_name]
        else:
            _drop_source_entries(sources[source_name], stale)
    dropping = {str(n) for n in sources if any(_extra_of(e) in dropped for e in _entries(sources[n]))}
    for source_name in sorted(set(served) | dropping):
        _merge_source(tomlkit, sources, source_name, served.get(source_name, []), index_names, dropped)
    for source_name in [str(n) for n in sources if not len(_entries(sources[n]))]:
        del sources[source_name]
    _drop_unused_indexes(tomlkit, uv, dropped, sources)

    _without_empty_header(uv)
    settings = tool.setdefault("pip-gpu", tomlkit.table())
    settings["variants"] = variants
    # New tables end with a blank line, as people write them.
    for table, new in ((extras, new_extras), (sources, new_sources)):
        if new:
            table.add(tomlkit.nl())
    _one_blank_line_before_new_tables(tomlkit, document)
    written = tomlkit.dumps(document)
    host_extra = _host_extra(written, requirements, host, options.pytorch_index)
    if not options.dry_run:
        path.write_text(written, encoding="utf-8")
    return UvSetupResult(
        path,
        original,
        written,
        tuple(variants),
        tuple(requirements),
        host_extra,
        options.dry_run,
        tuple(notes),
    )


def _user_index_notes(folder: Path) -> list[str]:
    """pip-gpu's own commands take a pip user's mirror (README "Installing"); ``uv lock`` and
    ``uv sync`` in the project read only uv's configuration, which setup does not write."""
    from .config import user_indexes
    from .redact import redact_url

    indexes = user_indexes(os.environ, folder)
    if indexes.source != "pip" or indexes.other_agrees or not indexes.urls:
        return []
    where = redact_url(indexes.urls[0])
    return [
        f"pip-gpu takes the packages outside the torch family from {where} ({indexes.origin}); "
        f"uv lock and uv sync here read only uv's configuration: set UV_DEFAULT_INDEX={where}, or "
        "add it to pyproject.toml as a [[tool.uv.index]] with default = true"
    ]


def _without_empty_header(uv: Any) -> None:
    """``[tool.uv]`` holding only sub-tables (sources, indexes) is written without its own empty
    header, as people write it; a header with the project's comments under it stays."""
    import tomlkit.items

    plain = [
        item
        for key, item in uv.value.body
        if not isinstance(item, (tomlkit.items.Whitespace, tomlkit.items.Null))
        and not isinstance(item, (tomlkit.items.Table, tomlkit.items.AoT))
    ]
    if not plain and hasattr(uv, "_is_super_table"):
        uv._is_super_table = True  # tomlkit sets it only in the constructor


def _one_blank_line_before_new_tables(tomlkit: Any, document: Any) -> None:
    """tomlkit starts a table it adds with a newline even where the text before already ends in
    a blank line (setup's new tables end with one): drop that newline, so one blank line stays
    between tables. Tables read from the file start with no newline and are left as they are."""
    import tomlkit.items

    def tables(container: Any) -> Any:
        for _, item in container.body:
            if isinstance(item, tomlkit.items.Table):
                yield item
                yield from tables(item.value)
            elif isinstance(item, tomlkit.items.AoT):
                for entry in item.body:
                    yield entry
                    yield from tables(entry.value)

    for table in list(tables(document)):
        indent = table.trivia.indent
        if not indent.startswith("\n"):
            continue
        with_it = tomlkit.dumps(document)
        table.trivia.indent = indent[1:]
        without = tomlkit.dumps(document)
        # the first place the two differ is where the newline goes; what comes before is the same
        at = next((i for i, (a, b) in enumerate(zip(with_it, without)) if a != b), len(without))
        if not without[:at].endswith("\n\n"):
            table.trivia.indent = indent


def _drop_stale_companions(current: Any, needs: _TorchNeeds, wanted: Sequence[str]) -> None:
    """Remove the Triton-companion lines of setup's own extra that torch's metadata no longer
    names: the ``<name>; sys_platform == 'linux'`` line earlier versions wrote for every
    extra, and any line for a companion the variant index does not host (uv lock fails on
    it). Other lines the project wrote itself stay."""
    from packaging.markers import Marker
    from packaging.requirements import InvalidRequirement, Requirement

    keep = {str(Requirement(text)) for text in [*needs.lines, *wanted]}
    for item in list(current):
        try:
            requirement = Requirement(str(item))
        except InvalidRequirement:
            continue
        legacy = str(requirement.marker) == str(Marker(_LINUX)) and not str(requirement.specifier)
        stale = legacy or requirement.name in needs.not_hosted
        if requirement.name in _ALL_COMPANIONS and str(requirement) not in keep and stale:
            current.remove(item)


def _drop_source_entries(value: Any, extras: Sequence[str]) -> None:
    if isinstance(value, list):
        for entry in [e for e in value if _extra_of(e) in extras]:
            value.remove(entry)


# Triton companions: torch's GPU wheels require these from the variant index on Linux; a direct
# requirement with a source keeps uv from taking a planted higher version from the default
# index (the torchtriton dependency-confusion attack, pytorch.org/blog/compromised-nightly-
# dependency). uv applies [tool.uv.sources] to direct requirements only, so each is named.
# Which ones, and on which platforms, torch's own metadata on the variant index says
# (:func:`_torch_needs_on_index`); these names are the guess when it cannot be read.
_LINUX = "sys_platform == 'linux'"


def _companions(variant: Optional[Variant]) -> tuple[str, ...]:
    if variant is None:
        return ()
    if variant.is_cuda:
        return ("triton",)
    if variant.is_rocm:
        return ("pytorch-triton-rocm",)
    if variant.kind == "xpu":
        return ("pytorch-triton-xpu",)
    return ()


_ALL_COMPANIONS = frozenset({"triton", "pytorch-triton", "pytorch-triton-rocm", "pytorch-triton-xpu"})


def _serves(name: str, variant: Optional[Variant]) -> bool:
    """Whether ``variant``'s index serves a family name: a Triton companion only its own builds'."""
    if name not in _ALL_COMPANIONS:
        return True
    return name in _companions(variant) or (
        name == "pytorch-triton" and variant is not None and variant.is_cuda
    )


@dataclass(frozen=True)
class _TorchNeeds:
    """The family members one variant's torch requires, as extra lines (``triton; <marker>``)."""

    lines: tuple[str, ...]
    notes: tuple[str, ...] = ()
    not_hosted: tuple[str, ...] = ()  # members torch names that the index does not host


# A wheel's platform tag -> the marker that selects it (uv forks its lock on these).
_PLATFORM_MARKERS = (
    ("win_amd64", "sys_platform == 'win32' and platform_machine == 'AMD64'"),
    ("win_arm64", "sys_platform == 'win32' and platform_machine == 'ARM64'"),
    ("x86_64", "sys_platform == 'linux' and platform_machine == 'x86_64'"),
    ("aarch64", "sys_platform == 'linux' and platform_machine == 'aarch64'"),
    ("macosx", "sys_platform == 'darwin'"),
)


def _platform_marker(platform_tag: str) -> Optional[str]:
    if platform_tag == "any":
        return None
    if platform_tag.startswith("macosx"):
        return "sys_platform == 'darwin'"
    for suffix, marker in _PLATFORM_MARKERS:
        if platform_tag.endswith(suffix) and (suffix.startswith("win") or "linux" in platform_tag):
            return marker
    return None


def _quoted_once(marker: str) -> str:
    """A marker as a TOML string inside double quotes reads best with single-quoted values."""
    return marker.replace('"', "'") if "'" not in marker else marker


def _torch_needs_on_index(
    index: str, torch_specifier: str, family: set[str], variant: Optional[Variant]
) -> _TorchNeeds:
    """The family members torch's wheels on ``index`` require (their PEP 658 metadata), and
    only those that ``index`` hosts, with the markers under which each wheel requires them.

    The wheels read are those of the newest torch ``torch_specifier`` admits there, one per
    platform: what ``uv lock`` takes for the extra. A member torch names but the index does not
    host (a mirror of torch and torchvision only) is left to the project's other indexes, as
    uv would take it without pip-gpu. When the index or the metadata cannot be read, the
    variant's usual companion on Linux is routed if the index hosts it (the earlier rule).
    """
    from packaging.markers import InvalidMarker, Marker
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.utils import canonicalize_name

    from .decide.index import IndexError_, fetch_project_files, index_timeout
    from .decide.torch_requires import torch_requires_on_index
    from .redact import redact_url
    from .variant import append_path

    timeout = index_timeout()
    shown = redact_url(index)
    hosted: dict[str, bool] = {}

    def hosts(name: str) -> bool:
        if name not in hosted:
            try:
                hosted[name] = bool(fetch_project_files(append_path(index, name, ""), timeout=timeout))
            except IndexError_:
                hosted[name] = True  # cannot tell: route it, as before
        return hosted[name]

    def guessed(why: str) -> _TorchNeeds:
        names = [n for n in _companions(variant) if n in family and hosts(n)]
        note = f"{why}; routing {', '.join(names)} for Linux as torch's builds there usually need it"
        return _TorchNeeds(tuple(f"{n}; {_LINUX}" for n in names), (note,) if names else ())

    try:
        specifier = SpecifierSet(torch_specifier)
    except InvalidSpecifier:
        specifier = SpecifierSet()
    try:
        found_on_index = torch_requires_on_index(
            index,
            family,
            accepts=lambda version: specifier.contains(version, prereleases=True),
            timeout=timeout,
            per_platform=True,
        )
    except IndexError_ as error:
        return guessed(f"cannot read torch's page on {shown} ({error.message})")
    newest = found_on_index.version
    if newest is None:
        asked = f"torch{torch_specifier}" if torch_specifier else "torch"
        return _TorchNeeds((), (f"{shown} has no wheel of {asked}: uv lock will not find one there",))
    needs: dict[str, list[tuple[Optional[str], Optional[str]]]] = {}  # name -> [(platform, marker)]
    read = len(found_on_index.wheels)
    for wheel in found_on_index.wheels:
        for requirement in wheel.requirements:
            marker = str(requirement.marker) if requirement.marker is not None else None
            needs.setdefault(str(canonicalize_name(requirement.name)), []).append(
                (_platform_marker(wheel.platform), marker)
            )
    if not read:
        return guessed(f"torch {newest}'s metadata on {shown} cannot be read")
    lines: list[str] = []
    notes: list[str] = []
    for name, found in sorted(needs.items()):
        if not hosts(name):
            notes.append(
                f"torch {newest} on {shown} requires {name}, which that index does not host: "
                "uv takes it from the project's other indexes"
            )
            continue
        markers = {marker for _, marker in found}
        if len(found) == read and len(markers) == 1:
            only = markers.pop()
            lines.append(f"{name}; {_quoted_once(only)}" if only else name)
            continue
        parts = []
        for platform, marker in found:
            if platform is None or marker is None:
                parts.append(f"({platform or marker})" if (platform or marker) else "")
            else:
                parts.append(f"({platform}) and ({marker})")
        if "" in parts:
            lines.append(name)
            continue
        try:
            combined = str(Marker(" or ".join(dict.fromkeys(parts))))
        except InvalidMarker:
            combined = _LINUX
        lines.append(f"{name}; {_quoted_once(combined)}")
    return _TorchNeeds(tuple(lines), tuple(notes), tuple(n for n in needs if not hosts(n)))


def _requirements_in_extras(extras: Mapping[str, Any], family: set[str]) -> list[str]:
    """The torch family an existing recipe asks for, without build labels (``torch==2.5.1+cpu``
    -> ``torch==2.5.1``) and without the Triton companions, which each variant adds itself."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    found: dict[str, str] = {}
    for requirements in extras.values():
        for text in requirements if isinstance(requirements, list) else []:
            try:
                requirement = Requirement(str(text))
            except InvalidRequirement:
                continue
            name = canonicalize_name(requirement.name)
            if name in family and name not in _ALL_COMPANIONS and name not in found:
                found[name] = _without_local_label(requirement)
    return list(found.values())


def _without_local_label(requirement: Any) -> str:
    from packaging.specifiers import SpecifierSet

    specs = [f"{s.operator}{s.version.split('+')[0]}" for s in requirement.specifier]
    requirement.specifier = SpecifierSet(",".join(specs))
    return str(requirement)


def _normalized_url(url: str) -> str:
    """One spelling per place: no credentials, lower-case scheme and host, no default port or
    trailing slash."""
    from urllib.parse import urlsplit, urlunsplit

    from .redact import strip_credentials

    parts = urlsplit(strip_credentials(url.strip()))
    host = (parts.hostname or "").lower()
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port in (None, default) else f"{host}:{port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), parts.query, ""))


def _merge_indexes(tomlkit: Any, uv: Any, urls: Mapping[str, Optional[str]]) -> dict[str, str]:
    """``{variant: index name}``: the project's own index where one points at the same place,
    else a new explicit ``pytorch-<variant>``; refused when that name points elsewhere."""
    from .redact import redact_url

    indexes = uv.setdefault("index", tomlkit.aot())
    names: dict[str, str] = {}
    for variant, url in urls.items():
        if url is None:
            raise UsageError(
                f"the {variant} build comes from PyPI itself, not a PyTorch index",
                "leave it out of --variants; uv installs it without an extra",
            )
        name = INDEX_PREFIX + variant
        same = [e for e in indexes if _normalized_url(str(e.get("url", ""))) == _normalized_url(url)]
        same.sort(key=lambda e: str(e.get("name", "")) != name)  # its own name first
        if same:
            names[variant] = str(same[0].get("name", name))
            continue
        taken = [e for e in indexes if str(e.get("name", "")) == name]
        if taken:
            raise UsageError(
                f"cannot merge: [[tool.uv.index]] {name} points at {redact_url(str(taken[0].get('url')))}, "
                f"not at {redact_url(url)}; pyproject.toml left unchanged",
                "point it at the same place, rename it, or pass --pytorch-index for the base it uses",
            )
        entry = tomlkit.table()
        entry["name"] = name
        entry["url"] = url
        entry["explicit"] = True
        entry.add(tomlkit.nl())
        indexes.append(entry)
        names[variant] = name
    return names


def _merge_extra(
    tomlkit: Any, current: Any, wanted: Sequence[str], covered: Sequence[str], *, replace: bool
) -> Any:
    """The extra with ``wanted`` in it; the project's other lines (and their comments) stay, and
    its own pin of a wanted name stays unless the user named requirements this time.

    A ``covered`` line (a Triton companion on Linux) is added unless a line for that name
    already reaches at least as far: without a marker, or with the same one.
    """
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    if current is None:
        current = _multiline(tomlkit, [])
    if not isinstance(current, list):
        raise TypeError(f"an optional-dependencies extra is {type(current).__name__}, not a list")

    def lines_for(name: str) -> list[int]:
        return [i for i, item in enumerate(current) if canonicalize_name(Requirement(str(item)).name) == name]

    for text in wanted:
        at = lines_for(canonicalize_name(Requirement(text).name))
        if not at:
            current.append(text)
        elif replace and str(current[at[0]]) != text:
            current[at[0]] = text
    for text in covered:
        line = Requirement(text)
        present = [Requirement(str(current[i])).marker for i in lines_for(canonicalize_name(line.name))]
        if not any(marker is None or marker == line.marker for marker in present):
            current.append(text)
    return current


def _entries(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _extra_of(entry: Any) -> Optional[str]:
    return str(entry.get("extra")) if isinstance(entry, Mapping) and "extra" in entry else None


def _merge_source(
    tomlkit: Any,
    sources: Any,
    name: str,
    variants: Sequence[str],
    index_names: Mapping[str, str],
    dropped: set[str],
) -> None:
    """``name``'s sources with one entry per variant extra; the project's own entries stay.

    Refused when an entry would overlap or contradict: uv takes one source per requirement, so
    an entry for every extra (no ``extra`` key) or another place for the same extra cannot be
    extended safely.
    """
    current = sources.get(name)
    if current is None:
        current = sources[name] = tomlkit.array()
    elif isinstance(current, Mapping):
        single = current
        current = sources[name] = tomlkit.array()
        current.append(single)
    elif not isinstance(current, list):
        raise TypeError(f"tool.uv.sources.{name} is {type(current).__name__}")
    for entry in list(current):
        if not isinstance(entry, Mapping):
            raise TypeError(f"tool.uv.sources.{name} holds {type(entry).__name__}")
        if entry.get("extra") in dropped and entry.get("extra") not in variants:
            current.remove(entry)
    if not variants:
        return
    for entry in current:
        if "index" not in entry:
            where = next((k for k in ("git", "url", "path", "workspace") if k in entry), "non-index")
            raise UsageError(
                f"cannot merge: [tool.uv.sources] {name} comes from a {where} source, not an index; "
                "pyproject.toml left unchanged",
                f"remove that source to let pip-gpu route {name} to the PyTorch indexes",
            )
        if entry.get("extra") is None and "group" not in entry:
            marker = f" (marker {entry['marker']})" if "marker" in entry else ""
            raise UsageError(
                f"cannot merge: [tool.uv.sources] {name} sends every extra to index {entry['index']}"
                f"{marker}; a source per variant extra would overlap it; pyproject.toml left unchanged",
                'give that entry an extra (extra = "..."), or remove it, then run again',
            )
    for variant in variants:
        mine = [e for e in current if e.get("extra") == variant]
        if mine and all(str(e.get("index")) != index_names[variant] for e in mine):
            raise UsageError(
                f"cannot merge: [tool.uv.sources] {name} sends extra {variant} to index "
                f"{mine[0].get('index')}, not {index_names[variant]}; pyproject.toml left unchanged",
                "point that entry at the same index, or remove it, then run again",
            )
        if not mine:
            current.append(_inline(tomlkit, {"index": index_names[variant], "extra": variant}))
    current.multiline(True)


def _merge_conflicts(tomlkit: Any, conflicts: Any, variants: Sequence[str], dropped: set[str]) -> None:
    """One conflict set holding every variant extra; the project's other sets and items stay."""
    for group in list(conflicts):
        for item in [
            i for i in group if isinstance(i, Mapping) and i.get("extra") in dropped - set(variants)
        ]:
            group.remove(item)
        if len(group) < 2:
            conflicts.remove(group)
    if len(variants) < 2:  # uv rejects a conflict set of one extra
        return

    def extras_of(group: Any) -> set[str]:
        return {str(i.get("extra")) for i in group if isinstance(i, Mapping) and "package" not in i}

    group = next((g for g in conflicts if extras_of(g) & set(variants)), None)
    if group is None:
        conflicts.append(_inline_array(tomlkit, [{"extra": v} for v in variants]))
        return
    for variant in variants:
        if variant not in extras_of(group):
            group.append(_inline(tomlkit, {"extra": variant}))


def _drop_unused_indexes(tomlkit: Any, uv: Any, dropped: set[str], sources: Mapping[str, Any]) -> None:
    """Indexes of variants no longer set up go, unless a source still names them."""
    used = {
        str(e.get("index")) for value in sources.values() for e in _entries(value) if isinstance(e, Mapping)
    }
    indexes = uv.get("index", [])
    for position in reversed(range(len(indexes))):
        name = str(indexes[position].get("name", ""))
        if name in {INDEX_PREFIX + v for v in dropped} and name not in used:
            del indexes[position]
            if len(indexes) and not indexes[-1].as_string().endswith("\n\n"):
                indexes[-1].add(tomlkit.nl())  # the blank line before the next table stays


def _host_extra(
    written: str, requirements: Sequence[str], host: Any, pytorch_index: Optional[str]
) -> Optional[str]:
    """The extra this host runs, decided as the shims will decide it in the project as written."""
    import tempfile

    from .decide.plan import decide_for

    with tempfile.TemporaryDirectory(prefix="pip-gpu-uv-setup-") as folder:
        Path(folder, "pyproject.toml").write_text(written, encoding="utf-8")
        plan = decide_for(list(requirements), [], host, pytorch_index=pytorch_index, cwd=Path(folder))
    return str(plan.decision.variant) if plan.decision.ok else None


def _inline(tomlkit: Any, item: Mapping[str, str]) -> Any:
    """``{ index = "...", extra = "..." }``, spaced as uv's documentation writes it."""
    body = ", ".join(f"{key} = {tomlkit.string(value).as_string()}" for key, value in item.items())
    return tomlkit.parse(f"item = {{ {body} }}")["item"]


def _inline_array(tomlkit: Any, items: Sequence[Mapping[str, str]]) -> Any:
    array = tomlkit.array()
    for item in items:
        array.append(_inline(tomlkit, item))
    return array


def _multiline(tomlkit: Any, items: Sequence[str]) -> Any:
    array = tomlkit.array()
    array.extend(items)
    return array
