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
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
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


def _requires_dist(metadata: bytes) -> list[Requirement]:
    from email.parser import HeaderParser

    from packaging.requirements import InvalidRequirement, Requirement

    headers = HeaderParser().parsestr(metadata.decode("utf-8", errors="replace"))
    out: list[Requirement] = []
    for text in headers.get_all("Requires-Dist") or ():
        try:
            out.append(Requirement(text))
        except InvalidRequirement:
            continue
    return out


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
) -> list[TorchConstraint]:
    """What exact pins and wheels of other family members (xformers, torchao, fbgemm-gpu...)
    require of torch and its companions, read from their metadata on the variant indexes.

    ``direct``: the names the decision reads itself (torch and its companions).
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
            from .index import IndexError_, fetch_project_files

            for index in variant_indexes:
                try:
                    # the project page keeps the index's query string (a mirror's token)
                    files = fetch_project_files(append_path(index, line.name, ""), timeout=timeout)
                except IndexError_:
                    continue
                match = next((f for f in files if _wheel_version(f.filename) == pinned), None)
                if match is None:
                    match = next((f for f in files if _wheel_public(f.filename) == pinned.public), None)
                if match is not None:
                    metadata = _fetch(match.url.split("#", 1)[0] + ".metadata", timeout)
                    if metadata is not None:
                        break
        if metadata is None:
            continue
        for requirement in _requires_dist(metadata):
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


def _pip_command(context: ResolutionContext) -> Optional[list[str]]:
    """A pip that can resolve for the target: its own, else pip-gpu's with ``--python``."""
    import subprocess
    import sys
    from importlib.util import find_spec

    probe = subprocess.run(
        [
            str(context.python),
            "-I",
            "-c",
            "import importlib.util as u; print(u.find_spec('pip') is not None)",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if probe.stdout.strip() == "True":
        return [str(context.python), "-m", "pip"]
    if find_spec("pip") is not None:
        return [sys.executable, "-m", "pip", "--python", str(context.python)]
    return None


def closure_requirements(
    others: Sequence[RequirementLine],
    global_options: Sequence[tuple[str, ...]],
    family: Collection[str],
    context: ResolutionContext,
) -> list[TorchConstraint]:
    """What the packages the other requirements bring in require of the torch family.

    One ``pip install --dry-run --ignore-installed --report`` of those requirements against the
    user's indexes: pip resolves from metadata (PEP 658) and installs nothing. Only non-family
    packages speak: the family packages pip happened to pick from the default index say nothing
    about which torch the request needs.
    """

    wanted = [line for line in others if not line.constraint]
    if not wanted:
        return []
    key = (
        render_file(wanted, global_options),
        render_file([line for line in others if line.constraint]),
        str(context.python),
        context.index_args,
    )
    if key not in _RESOLVED:  # `lock` decides once per variant: one resolution serves them all
        _RESOLVED[key] = _resolve_closure(others, wanted, global_options, family, context)
    return list(_RESOLVED[key])


_RESOLVED: dict[tuple[str, str, str, tuple[str, ...]], list[TorchConstraint]] = {}


def _resolve_closure(
    others: Sequence[RequirementLine],
    wanted: Sequence[RequirementLine],
    global_options: Sequence[tuple[str, ...]],
    family: Collection[str],
    context: ResolutionContext,
) -> list[TorchConstraint]:
    import json
    import subprocess
    import tempfile

    pip = _pip_command(context)
    if pip is None:
        raise ResolutionFailed(
            "cannot tell whether the other requirements need torch: no pip to resolve them with",
            "install pip into the target or next to pip-gpu, or name torch's version yourself",
        )
    with tempfile.TemporaryDirectory(prefix="pip-gpu-resolve-") as scratch:
        folder = Path(scratch)
        requirements = folder / "others.txt"
        requirements.write_text(render_file(wanted, global_options), encoding="utf-8")
        argv = [*pip, "install", "--dry-run", "--ignore-installed", "--quiet"]
        argv += ["--report", str(folder / "report.json"), *context.index_args, "-r", str(requirements)]
        constraint_lines = [line for line in others if line.constraint]
        if constraint_lines:
            constraints = folder / "constraints.txt"
            constraints.write_text(render_file(constraint_lines), encoding="utf-8")
            argv += ["-c", str(constraints)]
        env = dict(context.env)
        env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, check=False)
        try:
            report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            report = None
    if done.returncode != 0 or not isinstance(report, dict):
        why = next((line.strip() for line in reversed(done.stderr.splitlines()) if line.strip()), "no output")
        raise ResolutionFailed(
            f"resolving the other requirements, to read what they need of torch, failed: {redact_url(why)}",
            "check those requirements and your indexes (the same pip run fails without pip-gpu)",
        )
    return constraints_from_report(report, family)


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
) -> WholeRequest:
    """All the request's torch-family constraints with their provenance (see the module doc)."""
    from packaging.requirements import Requirement

    constraints = constraints_of_lines(lines, family, variants)
    constraints += member_constraints(lines, family, direct, variant_indexes)
    added: list[RequirementLine] = []
    preferences: list[Installed] = []
    notes: list[str] = []
    if context is not None:
        others = [line for line in lines if line.name not in family] if context.resolve_others else []
        try:
            downstream = closure_requirements(others, global_options, family, context)
        except ResolutionFailed as failure:
            if context.strict:
                raise
            notes.append(f"not counted, what the other requirements need of torch: {failure.message}")
            downstream = []
        constraints += downstream
        # Family members other packages pin (vllm pins xformers): their torch, in turn.
        pinned_members = [
            RequirementLine(f"{c.package}{c.specifier}", Requirement(f"{c.package}{c.specifier}"), c.package)
            for c in downstream
            if c.package not in direct
        ]
        constraints += member_constraints(pinned_members, family, direct, variant_indexes)
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
        sources = ", ".join(sorted({c.source for c in mine}))
        added.append(RequirementLine(str(requirement), requirement, package, origin=f"required by {sources}"))
    return WholeRequest(tuple(constraints), tuple(added), tuple(preferences), tuple(notes))


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
    notes = [*whole.notes] + [
        f"{line.name} pulled in by other requirements: {line.origin[len('required by ') :]} "
        f"requires {line.text}"
        for line in whole.added_lines
    ]
    blocker = decision.blocked()
    if blocker is not None:
        hint = blocker.hint
        if whole.derived() and plain_request != request:
            without = decide_with(plain_request)
            if without.ok:
                askers = ", ".join(sorted({c.source for c in whole.derived()}))
                hint = (
                    f"without what {askers} requires, torch {without.torch} ({without.variant}) "
                    f"would run here; {hint}"
                )
        message = blocker.message
        if whole.derived() and not decision.candidates:  # no release admits every demand
            demands = "; ".join(c.describe() for c in whole.constraints if str(c.specifier))
            message = f"no torch release satisfies every torch requirement of this request: {demands}"
        return replace(decision, blocker=Blocker(message, hint), notes=(*decision.notes, *notes))

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
    """The user's indexes, as pip options, for the resolution that reads downstream requirements.

    pip's own options and ``PIP_*`` variables reach that pip run as they are; uv's
    (``--default-index``, ``--index``, ``UV_DEFAULT_INDEX``, ``UV_INDEX``...) are translated.
    """
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
    if installer == "uv":
        default = env.get("UV_DEFAULT_INDEX") or env.get("UV_INDEX_URL")
        if default and "--index-url" not in out:
            out = ["--index-url", default, *out]
        for variable in ("UV_INDEX", "UV_EXTRA_INDEX_URL"):
            for entry in (env.get(variable) or "").split():
                out += [
                    "--extra-index-url",
                    entry.partition("=")[2] if "=" in entry.split("://")[0] else entry,
                ]
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
