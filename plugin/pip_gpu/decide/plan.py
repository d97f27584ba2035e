"""From what the user typed to a decision: requirements, project policy, index, host.

This is the glue between the boundaries (files, environment, ``pyproject.toml``) and the
pure decision core; ``explain``, ``install`` and ``lock`` all start here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Optional

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from ..config import ProjectConfig, check_channel, check_index_url, load_project_config
from ..errors import UsageError
from ..host import HostProfile
from ..knowledge import Knowledge, Release, load_knowledge
from ..pins import COMMAND_LINE, canonical_name, plain_pins
from ..redact import redact_url
from ..variant import Variant, append_path, channel_index
from .rules import (
    Decision,
    Offer,
    Policy,
    Published,
    TorchConstraint,
    TorchRequest,
    contradiction,
    decide,
    request_from_pins,
    request_from_requirements,
)

if TYPE_CHECKING:
    from packaging.requirements import Requirement

    from ..requirements import RequirementFile, RequirementLine, RewritePin
    from .resolution import ResolutionContext

__all__ = ["Plan", "RequestLines", "decide_for", "marker_environment", "read_request", "rewrite_pins"]


@dataclass(frozen=True)
class Plan:
    """A decision together with the requirements and settings it was made from."""

    decision: Decision
    knowledge: Knowledge
    read_lines: Callable[[], tuple[RequirementLine, ...]] = field(repr=False, compare=False)
    files: tuple[RequirementFile, ...]
    family_names: frozenset[str]
    pytorch_index: str
    config: ProjectConfig
    torch_constraints: tuple[TorchConstraint, ...] = ()  # issue 13: who asks what of torch
    index_unreachable: str = ""  # the variant index pip-gpu's own read found silent (issue 27)
    others_unread: bool = False  # what the other requirements need of torch could not be read
    reading: str = ""  # that reading's resolution of the whole request (WholeRequest.reading)

    @cached_property
    def lines(self) -> tuple[RequirementLine, ...]:
        """The command line's requirements, then each file's lines (flattened). Read when first
        asked: a plain ``explain torch==2.5.1`` decides without packaging's requirement parser."""
        return self.read_lines()

    def family_lines(self) -> list[RequirementLine]:
        """Family requirements and constraints (a direct URL counts as written by the user)."""
        return [line for line in self.lines if line.name in self.family_names and not line.is_direct_url]

    def other_lines(self) -> list[RequirementLine]:
        family = set(map(id, self.family_lines()))
        return [line for line in self.lines if id(line) not in family]

    def installs_something_else(self) -> bool:
        return any(not line.constraint for line in self.other_lines())


class RequestLines(NamedTuple):
    """The requirements of one request, read once: the command line's, then each file's.

    A NamedTuple: a frozen dataclass costs every ``explain`` its creation when the module loads."""

    lines: tuple[RequirementLine, ...]  # command line, then each file's lines (flattened)
    files: tuple[RequirementFile, ...]


def read_request(
    requirement_args: Sequence[str],
    requirement_files: Sequence[str],
    cwd: Path,
    constraint_files: Sequence[str] = (),
) -> RequestLines:
    """Parse the command line's requirements and read each requirements and constraints file."""
    lines, files = _read_lines(requirement_args, requirement_files, constraint_files, cwd)
    return RequestLines(tuple(lines), tuple(files))


def marker_environment(host: HostProfile) -> dict[str, str]:
    """PEP 508 marker values for the target host (the rest default to this interpreter)."""
    system = {"linux": "Linux", "windows": "Windows", "macos": "Darwin"}.get(host.os, host.os)
    sys_platform = {"linux": "linux", "windows": "win32", "macos": "darwin"}.get(host.os, host.os)
    # as platform.machine() reports it: AMD64/ARM64 on Windows, arm64 on macOS
    machine = {"x86_64": "AMD64" if host.os == "windows" else "x86_64"}.get(host.arch, host.arch)
    if host.arch in ("aarch64", "arm64"):
        machine = {"windows": "ARM64", "macos": "arm64"}.get(host.os, "aarch64")
    return {
        "python_version": host.python_release,
        "platform_system": system,
        "sys_platform": sys_platform,
        "platform_machine": machine,
        "os_name": "nt" if host.os == "windows" else "posix",
    }


def decide_for(
    requirement_args: Sequence[str],
    requirement_files: Sequence[str],
    host: HostProfile,
    *,
    variant: Optional[str] = None,
    force: bool = False,
    pytorch_index: Optional[str] = None,
    cwd: Path,
    constraint_files: Sequence[str] = (),
    env: Optional[Mapping[str, str]] = None,
    knowledge: Optional[Knowledge] = None,
    offline: bool = False,
    context: Optional[ResolutionContext] = None,
    request_lines: Optional[RequestLines] = None,
    channel: Optional[str] = None,
) -> Plan:
    """Read the requirements and settings, and decide for ``host``.

    ``request_lines``: the requirements already read (:func:`read_request`), for a caller that
    decides several times for one request (``lock``: once per variant and target).

    ``context``: the target and the user's indexes, to read what the other requirements need
    of torch and what is installed (``install`` gives it; without it only the family lines and
    their own pins count). An open request also asks the index whether a torch series newer
    than the knowledge file exists (see :func:`_with_newer_release`); ``offline`` or
    ``PIP_GPU_OFFLINE=1`` skips it.

    ``channel`` (else ``PIP_GPU_CHANNEL``, else ``[tool.pip-gpu] channel``): ``nightly`` or
    ``test`` route to ``<index>/nightly/<variant>`` or ``<index>/test/<variant>`` and decide from
    what that channel publishes, pre-releases included (:func:`_channel_releases`).
    """
    env = os.environ if env is None else env
    knowledge = knowledge or load_knowledge()
    config = load_project_config(cwd)
    family_names = frozenset(canonical_name(m.name) for m in knowledge.family)
    index = (
        pytorch_index or env.get("PIP_GPU_PYTORCH_INDEX") or config.pytorch_index or knowledge.pytorch_index
    ).rstrip("/")
    channel = _channel(channel, env, config, index)
    index = channel_index(index, channel)
    forced = variant or env.get("PIP_GPU_VARIANT") or None
    read_already = request_lines is not None
    pins = (
        None
        if requirement_files or constraint_files or context or read_already
        else _plain(requirement_args, knowledge)
    )
    if pins is not None:
        # torch and its companions, each a name and specifiers: the whole request is these lines.
        read_lines: Callable[[], tuple[RequirementLine, ...]] = partial(_parsed_args, tuple(requirement_args))
        files: list[RequirementFile] = []
        check_index_url(index, _index_source(pytorch_index, env, config))
        family_pins = [pin for pin in pins if canonical_name(pin[0]) in family_names]
        constraints = tuple(
            TorchConstraint(canonical_name(name), spec, COMMAND_LINE, "requested")
            for name, spec, _ in family_pins
            if str(spec)
        )
        request = request_from_pins(family_pins or [_TORCH_PIN], knowledge, variant=forced, force=force)
        asks_family = bool(family_pins)
        whole = None
    else:
        if request_lines is not None:
            lines, files = list(request_lines.lines), list(request_lines.files)
        else:
            lines, files = _read_lines(requirement_args, requirement_files, constraint_files, cwd)
        check_index_url(index, _index_source(pytorch_index, env, config))
        # issue 13: what the whole request asks of torch (other family pins, downstream packages,
        # direct URLs, the installed build), with provenance; see resolution.py.
        from .resolution import describe_request, read_whole_request

        markers = marker_environment(host)
        family_requirements: list[Requirement] = [
            line.requirement
            for line in lines
            if line.requirement is not None
            and line.name in family_names
            and (line.requirement.marker is None or line.requirement.marker.evaluate(markers))
        ]
        plain_request = _request(family_requirements, knowledge, forced, force)
        if context is not None and contradiction(plain_request, knowledge) is not None:
            # Pins that contradict each other are the request's own fault: said before any
            # index is read (the decision below names them), not after a failed resolution.
            context = None
        whole = read_whole_request(
            lines,
            [opt for f in files for opt in f.global_options],
            family_names,
            _decided_names(knowledge),
            _variant_indexes(index, knowledge, variant),
            knowledge.variants(),
            context,
            _reading_indexes(plain_request, host, knowledge, index, config) if context else (),
            forced_first=variant is not None
            and any(v == variant and v.has_index for v in knowledge.variants()),
        )
        derived = whole.decision_requirements(_decided_names(knowledge))
        lines += whole.added_lines
        asks_family = any(line.name in family_names for line in lines)
        request = _request(
            family_requirements + derived, knowledge, forced or _url_variant(whole.forced_variants()), force
        )
        request = replace(request, described_as=describe_request(request.described_as, whole))
        constraints = whole.constraints
        read_lines = partial(tuple, lines)
    policy = Policy(allowed_variants=config.variants, preferred_variant=config.preferred_variant)
    if channel != "stable":
        knowledge = _channel_releases(knowledge, index, channel, request.forced_variant)
    elif _asks_for_a_newer_release(request, knowledge):
        knowledge = _learn_from_index(knowledge, index, request.forced_variant)

    published: Optional[Published] = None  # what the variant indexes serve, once read

    def decide_with(wanted: TorchRequest) -> Decision:
        assert knowledge is not None  # reassigned below when the index teaches a newer release
        return decide(wanted, host, knowledge, pytorch_index=index, policy=policy, published=published)

    decision = decide_with(request)
    offline = offline or env.get(OFFLINE_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on")
    if channel == "stable" and _is_open(request, knowledge):
        knowledge, decision = _with_newer_release(
            request, host, knowledge, decision, index, policy, offline, env
        )
    if channel == "stable" and not offline:
        knowledge, decision = _unconfirmed_on_index(request, host, knowledge, decision, index, policy, env)
    unreachable = ""
    # Only where the torch family is installed (``install numpy`` needs no variant index), and
    # not on a channel (its releases are what it publishes already).
    if channel == "stable" and not offline and asks_family:
        from .discover import freshness_timeout

        published, decision, unreachable = _among_published(
            decision,
            lambda seen: decide(request, host, knowledge, pytorch_index=index, policy=policy, published=seen),
            index,
            _pinned_members(constraints),
            freshness_timeout(dict(env)),
        )
    if whole is not None:
        from .resolution import settle

        asks = bool(family_requirements or derived or whole.added_lines)
        decision = settle(decision, request, whole, decide_with, plain_request, asks_for_family=asks)
    return Plan(
        decision=decision,
        knowledge=knowledge,
        read_lines=read_lines,
        files=tuple(files),
        family_names=family_names,
        pytorch_index=index,
        config=config,
        torch_constraints=constraints,
        index_unreachable=unreachable,
        others_unread=whole is not None and whole.others_unread,
        reading=whole.reading if whole is not None else "",
    )


PUBLISHED_TRIES = 12  # variants read one after another before the decision is taken as it is


def _among_published(
    decision: Decision,
    decide_among: Callable[[Published], Decision],
    index: str,
    pinned: tuple[tuple[str, str], ...],
    timeout: float,
) -> tuple[Optional[Published], Decision, str]:
    """Decide among the builds the variant indexes publish (issue 27): read the index of the
    build decided; when it lacks that build (a mirror a release behind, one without the
    host's variant, a pinned xformers only the older indexes serve), decide again without it.

    Returns what was read, the decision, and the index that did not answer (the decision is
    then the knowledge file's, with a note).
    """
    from .discover import read_offers

    first_notes = decision.notes  # the freshness look-up's, kept through the decisions below

    def decide_again(seen: Published) -> Decision:
        again = decide_among(seen)
        return replace(again, notes=tuple(dict.fromkeys((*first_notes, *again.notes))))

    offers: dict[Variant, Offer] = {}
    members = [name for name, _ in pinned]
    for _ in range(PUBLISHED_TRIES):
        variant = decision.variant
        if variant is None or not variant.has_index or variant in offers:
            break
        answer = read_offers(index, [variant], members, timeout_s=timeout)
        offers.update(answer.offers)
        if answer.problem:
            note = (
                f"could not read what {redact_url(answer.unreachable)} carries ({answer.problem}); "
                "decided from the knowledge file"
            )
            said = any(answer.problem in n for n in decision.notes)  # the freshness look-up's note
            notes = decision.notes if said else (*decision.notes, note)
            return None, replace(decision, notes=notes), answer.unreachable
        decision = decide_again(Published(dict(offers), pinned))
    lacking = [c for c in decision.candidates if any(c.reason.startswith(o.url) for o in offers.values())]
    if not decision.ok and lacking:
        # Nothing it carries runs here: read the other variants too, so the error names them.
        others = [c.variant for c in decision.candidates if c.variant.has_index and c.variant not in offers]
        answer = read_offers(index, list(dict.fromkeys(others))[:PUBLISHED_TRIES], (), timeout_s=timeout)
        offers.update(answer.offers)
        decision = decide_again(Published(dict(offers), pinned))
    return (Published(offers, pinned) if offers else None), decision, ""


def _pinned_members(constraints: Sequence[TorchConstraint]) -> tuple[tuple[str, str], ...]:
    """Family members other than torch pinned exactly (``xformers==0.0.28.post3``,
    ``torchvision==0.20.1``): each must be on the variant index the decision picks."""
    from ..pins import exact_version_in

    pinned: dict[str, str] = {}
    for constraint in constraints:
        exact = exact_version_in(constraint.specifier)
        if constraint.package != "torch" and exact is not None and constraint.kind != "family-member":
            pinned[constraint.package] = exact.public
    return tuple(sorted(pinned.items()))


_TORCH_PIN = ("torch", SpecifierSet(), "torch")  # no family line given: torch, any version


def _plain(
    requirement_args: Sequence[str], knowledge: Knowledge
) -> Optional[list[tuple[str, SpecifierSet, str]]]:
    """The command line's requirements as ``(name, specifier, text)`` when the request is plain:
    torch, its companions or unrelated names, each with version specifiers only. Another family
    member (``xformers==0.0.28``) is not: its metadata on the index says what it needs of torch."""
    pins = plain_pins(requirement_args)
    if pins is None:
        return None
    family = {canonical_name(m.name) for m in knowledge.family}
    decided = _decided_names(knowledge)
    names = [canonical_name(name) for name, _, _ in pins]
    return pins if all(name in decided or name not in family for name in names) else None


def _parsed_args(requirement_args: tuple[str, ...]) -> tuple[RequirementLine, ...]:
    from ..requirements import parse_requirement_args  # packaging.requirements: only when asked

    return tuple(parse_requirement_args(requirement_args))


def _read_lines(
    requirement_args: Sequence[str],
    requirement_files: Sequence[str],
    constraint_files: Sequence[str],
    cwd: Path,
) -> tuple[list[RequirementLine], list[RequirementFile]]:
    """The command line's requirements, then each file's (nested files flattened)."""
    from ..requirements import parse_requirement_args, read_requirements_file

    lines = list(parse_requirement_args(requirement_args))
    files: list[RequirementFile] = []
    for path in requirement_files:
        parsed = read_requirements_file(cwd / path)
        files.append(parsed)
        lines.extend(parsed.lines)
    for path in constraint_files:
        parsed = read_requirements_file(cwd / path, constraint=True)
        files.append(parsed)
        lines.extend(parsed.lines)
    return lines, files


def _request(
    requirements: list[Requirement], knowledge: Knowledge, forced: Optional[str], force: bool
) -> TorchRequest:
    """The request the family requirements make; plain ``torch`` when there are none."""
    if not requirements:
        return request_from_pins([_TORCH_PIN], knowledge, variant=forced, force=force)
    return request_from_requirements(requirements, knowledge, variant=forced, force=force)


OFFLINE_VARIABLE = "PIP_GPU_OFFLINE"


def _beyond(newest: Version) -> list[str]:
    """Versions a release after ``newest`` may carry, to test a specifier against."""
    major, minor = newest.major, newest.minor
    beyond = [f"{major}.{minor + step}.{patch}" for step in (1, 2, 3) for patch in range(3)]
    return [*beyond, f"{major + 1}.0.0", f"{major + 1}.1.0"]


def _is_open(request: TorchRequest, knowledge: Knowledge) -> bool:
    """``torch`` or ``torch>=2.14``: no exact pin, and a newer release than the file's would do."""
    if not knowledge.releases or request.exact_torch is not None:
        return False
    spec = request.torch_specifier
    return any(spec.contains(v, prereleases=False) for v in _beyond(knowledge.releases[0].version))


def _with_newer_release(
    request: TorchRequest,
    host: HostProfile,
    knowledge: Knowledge,
    decision: Decision,
    index: str,
    policy: Policy,
    offline: bool,
    env: Mapping[str, str],
) -> tuple[Knowledge, Decision]:
    """Ask the variant index the host would use for a newer torch series; take it when it runs.

    The question is bounded (a few seconds) and its answer cached for hours; without an answer
    the decision stands, with a note saying so.
    """

    newest = knowledge.releases[0].torch
    variant = decision.variant or request.forced_variant
    if variant is None or not variant.has_index:
        return knowledge, decision  # nothing decided, or PyPI's own builds (macOS): no variant index
    if offline:
        note = (
            f"did not ask the index for a torch release newer than {newest} (offline); "
            "decided from the knowledge file"
        )
        return knowledge, replace(decision, notes=(*decision.notes, note))
    from .discover import freshness_timeout, look_for_newer, with_releases

    timeout = freshness_timeout(dict(env))
    answer = look_for_newer(knowledge, index, _variants_to_ask(variant, host), timeout_s=timeout)
    if not answer.answered:
        note = (
            f"could not ask the index for a torch release newer than {newest} ({answer.problem}); "
            "decided from the knowledge file"
        )
        return knowledge, replace(decision, notes=(*decision.notes, note))
    if not answer.releases:
        return knowledge, decision
    learned = with_releases(knowledge, answer.releases)
    fresher = decide(request, host, learned, pytorch_index=index, policy=policy)
    found = ", ".join(r.torch for r in answer.releases)
    if fresher.ok and fresher.release is not None and fresher.release in answer.releases and fresher.build:
        note = (
            f"torch {fresher.release.torch} is newer than pip-gpu's knowledge (newest {newest}): found on "
            f"the {fresher.build.variant} index; {fresher.build.source.split('; ', 1)[-1]} (not confirmed)"
        )
        return learned, replace(fresher, notes=(*fresher.notes, note))
    learned_series = {r.torch for r in answer.releases}
    why = sorted({c.reason for c in fresher.candidates if c.torch in learned_series and not c.ok})
    note = f"the index has torch {found}, newer than pip-gpu's knowledge, but no build of it runs here" + (
        f" ({'; '.join(why)})" if why else ""
    )
    return knowledge, replace(decision, notes=(*decision.notes, note))


def _unconfirmed_on_index(
    request: TorchRequest,
    host: HostProfile,
    knowledge: Knowledge,
    decision: Decision,
    index: str,
    policy: Policy,
    env: Mapping[str, str],
) -> tuple[Knowledge, Decision]:
    """A newer build the knowledge file marks unconfirmed was passed over for a confirmed one
    (2.15 ``rocm7.2``): ask its variant index, and let the index decide. When it serves that
    release the build counts as confirmed and the decision is made again; otherwise it stands,
    with a note saying what the index said."""
    chosen = decision.release
    if chosen is None:
        return knowledge, decision
    unconfirmed = {
        (release.torch, build.variant, build.platform)
        for release in knowledge.releases
        if release.version > chosen.version
        for build in release.builds
        if not build.confirmed
    }
    passed = {
        (c.torch, c.variant, c.platform)
        for c in decision.candidates
        if c.ok and (c.torch, c.variant, c.platform) in unconfirmed
    }
    if not passed:
        return knowledge, decision
    from .discover import freshness_timeout, index_serves

    timeout = freshness_timeout(dict(env))
    seen: set[tuple[str, str, str]] = set()
    notes: list[str] = []
    for series, variant, platform in sorted(passed):
        served, problem = index_serves(index, variant, series, platform, timeout_s=timeout)
        where = redact_url(append_path(index, variant))
        if served:
            seen.add((series, variant, platform))
        elif served is None:
            if any(problem in note for note in decision.notes):
                continue  # the freshness look-up said so already
            notes.append(f"could not ask {where} whether it serves torch {series} ({problem})")
        else:
            notes.append(f"{where} does not serve torch {series} for {platform}")
    if not seen:
        return knowledge, replace(decision, notes=(*decision.notes, *notes))
    confirmed = replace(
        knowledge,
        releases=tuple(
            replace(
                release,
                builds=tuple(
                    replace(b, seen_on_index=True) if (release.torch, b.variant, b.platform) in seen else b
                    for b in release.builds
                ),
            )
            if any(release.torch == s for s, _, _ in seen)
            else release
            for release in knowledge.releases
        ),
    )
    again = decide(request, host, confirmed, pytorch_index=index, policy=policy)
    said = [
        f"torch {series} {variant} is not confirmed in pip-gpu's knowledge, but "
        f"{redact_url(append_path(index, variant))} serves it"
        for series, variant, _ in sorted(seen)
    ]
    kept = [
        n for n in decision.notes if n not in again.notes and "not confirmed in pip-gpu's knowledge" not in n
    ]
    return confirmed, replace(again, notes=(*kept, *again.notes, *notes, *said))


def _variants_to_ask(variant: Variant, host: HostProfile) -> list[str]:
    """The host's variant, then the next CUDA versions its driver runs (``cu134``: learnable)."""
    cuda = variant.cuda
    if cuda is None or host.cuda_driver_version is None:
        return [variant]
    try:
        driver_max = Version(host.cuda_driver_version)
    except InvalidVersion:
        return [variant]
    major, minor = (int(p) for p in cuda.split("."))
    later = [f"{major}.{minor + step}" for step in range(1, 6)] + [f"{major + 1}.{m}" for m in range(3)]
    newer = [c for c in later if Version(c) <= driver_max][:3]
    return [variant, *(f"cu{c.replace('.', '')}" for c in newer)]


def _url_variant(forced: Mapping[Variant, str]) -> Optional[Variant]:
    """The one variant the direct URLs and wheels of family members are built for."""
    if len(forced) > 1:
        sources = "; ".join(f"{v} (from {src})" for v, src in sorted(forced.items()))
        raise UsageError(
            f"the requirements force different variants: {sources}",
            "every torch-family package must use one variant; take all the wheels from one index",
        )
    return next(iter(forced), None)


MEMBER_INDEX_TRIES = 8


def _decided_names(knowledge: Knowledge) -> frozenset[str]:
    """torch and its companions: the names the decision reads directly."""
    return frozenset({"torch"} | {canonical_name(n) for r in knowledge.releases for n in r.companions})


def _variant_indexes(index: str, knowledge: Knowledge, forced: Optional[str]) -> list[str]:
    """Where to read family members' metadata: a forced variant first, then CUDA newest first."""
    from ..variant import variant_index_url

    ordered = sorted(
        (v for v in knowledge.variants() if v.has_index),
        key=lambda v: (v == forced, v.is_cuda, v.sort_key),
        reverse=True,
    )
    # A family member lives on (nearly) every CUDA index; a few tries find it or nothing will.
    return [url for url in (variant_index_url(index, v) for v in ordered) if url][:MEMBER_INDEX_TRIES]


READING_INDEXES = 6


def _reading_indexes(
    request: TorchRequest, host: HostProfile, knowledge: Knowledge, index: str, config: ProjectConfig
) -> list[str]:
    """Where the reading of the other requirements takes the torch family from: the variant
    indexes of the builds that run here for the family lines, the one decided first."""
    from ..variant import variant_index_url

    policy = Policy(allowed_variants=config.variants, preferred_variant=config.preferred_variant)
    decision = decide(request, host, knowledge, pytorch_index=index, policy=policy)
    ordered = list(dict.fromkeys(c.variant for c in decision.candidates if c.ok))
    if decision.variant in ordered:
        ordered.remove(decision.variant)
        ordered.insert(0, decision.variant)
    urls = [variant_index_url(index, variant) for variant in ordered]
    return [url for url in urls if url][:READING_INDEXES]


def _asks_for_a_newer_release(request: TorchRequest, knowledge: Knowledge) -> bool:
    """No known release will do, and the torch pin reaches past the newest one known.

    Only then is the index worth asking: a pin that contradicts itself or names a patch
    that never existed is answered from the knowledge file, without the network.
    """
    if not knowledge.releases or not str(request.torch_specifier):
        return False
    newest = knowledge.releases[0]
    if any(request.admits(r, newest=r is newest)[0] for r in knowledge.releases):
        return False
    if request.exact_torch is not None:
        return Version(request.exact_torch) > newest.version
    return any(request.torch_specifier.contains(v, prereleases=True) for v in _beyond(newest.version))


def _variants_beyond(knowledge: Knowledge, forced_variant: Optional[str]) -> set[str]:
    """The variant indexes a newer release may fill: the newest known release's, and the next
    CUDA minor versions after each of its CUDA builds."""
    newest = knowledge.releases[0]
    variants: set[str] = {b.variant for b in newest.builds if b.variant.has_index}
    for build in newest.builds:  # the next CUDA minor versions a newer release may add
        cuda = build.cuda
        if cuda is not None:
            major, minor = (int(p) for p in cuda.split("."))
            variants.update(f"cu{major}{minor + step}" for step in (1, 2))
    if forced_variant is not None:
        variants.add(forced_variant)
    return variants


def _channel(flag: Optional[str], env: Mapping[str, str], config: ProjectConfig, index: str) -> str:
    """``--channel``, else ``PIP_GPU_CHANNEL``, else ``[tool.pip-gpu] channel``, else the channel
    whose folder the base already is (``.../whl/nightly``: a lock records that base), else stable."""
    if flag:
        return check_channel(flag, "--channel")
    if env.get("PIP_GPU_CHANNEL", "").strip():
        return check_channel(env["PIP_GPU_CHANNEL"].strip(), "PIP_GPU_CHANNEL")
    if config.channel:
        return config.channel
    from urllib.parse import urlsplit

    try:
        folder = urlsplit(index).path.rstrip("/").rsplit("/", 1)[-1]
    except ValueError:  # "http://[::1": check_index_url names it, with its source
        return "stable"
    return folder if folder in ("nightly", "test") else "stable"


def _channel_releases(
    knowledge: Knowledge, index: str, channel: str, forced_variant: Optional[str]
) -> Knowledge:
    """The nightly or test channel: the candidates are the releases that channel publishes.

    Read from its variant indexes (pre-releases admitted here only), decided by the usual
    rules; GPU architectures are assumed from the newest known build of the same CUDA, as for
    any release the knowledge file lacks. A variant the channel does not serve is skipped.
    """
    from ..redact import redact_url
    from .discover import discover_releases, merge_releases
    from .index import IndexError_

    found: list[Release] = []
    problems: list[str] = []
    for variant in sorted(_variants_beyond(knowledge, forced_variant), key=_variant_key):
        try:
            found += discover_releases(knowledge, index, [variant], prereleases=True, include_known=True)
        except IndexError_ as error:
            problems.append(error.message)
    releases = merge_releases(found)
    if not releases:
        raise IndexError_(
            f"the {channel} channel at {redact_url(index)} publishes no torch pip-gpu can read"
            + (f" ({problems[0]})" if problems else ""),
            "check --pytorch-index (the channel is its nightly/ or test/ folder), or use --channel stable",
        )
    return replace(knowledge, releases=releases)


def _learn_from_index(knowledge: Knowledge, index: str, forced_variant: Optional[str]) -> Knowledge:
    """A torch release newer than the knowledge file: read the variant indexes themselves."""
    from .discover import discover_releases, with_releases

    newest = knowledge.releases[0]
    variants = _variants_beyond(knowledge, forced_variant)
    from .index import IndexError_

    try:
        learned = discover_releases(knowledge, index, sorted(variants, key=_variant_key))
    except IndexError_ as error:
        raise IndexError_(
            f"the requested torch is newer than pip-gpu knows ({newest.torch}), and looking it up "
            f"on the index failed: {error.message}",
            error.hint,
        ) from None
    return with_releases(knowledge, learned) if learned else knowledge


def _variant_key(name: str) -> tuple[int, tuple[int, ...]]:
    """Order of index names to read: newer CUDA last (a guessed ``cu131`` parses like any)."""
    variant = Variant.from_label(name)
    return variant.sort_key if variant is not None else (0, ())


def rewrite_pins(plan: Plan) -> dict[str, RewritePin]:
    """What each family member's requirement must add so the resolver takes the decided build.

    torch is held to the decided release series (``==2.5.*``) and companions to theirs
    (``torchvision==0.20.*``); exact pins get the variant's local label where its wheels
    carry one. Other family members are only routed.
    """
    decision = plan.decision.chosen()
    label = decision.variant if decision.variant.has_index else None
    from ..requirements import RewritePin

    pins: dict[str, RewritePin] = {}
    for member in plan.knowledge.family:
        held: Optional[SpecifierSet] = None
        if member.name == "torch":
            held = SpecifierSet(f"=={decision.release.torch}.*")
            if any(Version(v).is_prerelease for v in decision.release.versions):
                # a channel's nightly or candidate: named in the pin, pip and uv admit pre-releases
                held &= SpecifierSet(f">={decision.release.torch}.0.dev0")
        elif member.name in decision.release.companions:
            held = decision.release.companion_specifier(member.name)
        pins[canonical_name(member.name)] = RewritePin(
            specifier=held if held is not None else SpecifierSet(),
            local_label=label if member.local_label else None,
        )
    return pins


def _index_source(flag: Optional[str], env: Mapping[str, str], config: ProjectConfig) -> str:
    if flag:
        return "--pytorch-index"
    if env.get("PIP_GPU_PYTORCH_INDEX"):
        return "PIP_GPU_PYTORCH_INDEX"
    return f"{config.path} [tool.pip-gpu] pytorch-index" if config.pytorch_index else "the knowledge file"
