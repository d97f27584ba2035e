"""Which lock, and which targets, a host gets: pure rules over lock files and host values.

``sync`` and ``check`` choose the lock this host runs by the decision core's own rules
restricted to the locked variants; ``lock`` turns the ``--platform/--arch/--python-version``
values into targets. Nothing here reads a file, starts a process or asks the network.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Optional

from packaging.markers import default_environment
from packaging.pylock import Package
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ..decide.plan import marker_environment
from ..decide.rules import Decision, Policy, decide, request_from_requirements
from ..errors import NoBuildRuns, UsageError
from ..host import HostProfile
from ..knowledge import Knowledge
from ..lockfile import LockFile, LockRecord, LockTarget
from ..variant import parse_variant

__all__ = [
    "LockChoice",
    "choose_lock",
    "combine_targets",
    "covers",
    "environment_marker",
    "family_gaps",
    "host_at",
    "marker_values",
    "no_variant_runs",
    "not_covered",
    "platform_marker",
    "selected",
    "target_of",
    "why_not",
]


def target_of(host: HostProfile) -> LockTarget:
    """The lock target a host is: its platform, architecture and Python."""
    return LockTarget.make(host.os, host.arch, host.python_version, "host")


def host_at(host: HostProfile, target: LockTarget) -> HostProfile:
    """``host``'s GPU facts on ``target``'s platform, architecture and Python."""
    return host.with_changes(os=target.os, arch=target.arch, python_version=target.python_version)


def combine_targets(
    base: Sequence[LockTarget],
    platforms: Sequence[str],
    arches: Sequence[str],
    pythons: Sequence[str],
    host: HostProfile,
) -> list[LockTarget]:
    """Every combination of the flags' values; a dimension no flag names comes from ``base``
    (configured, recorded, or this host's targets)."""
    if not (platforms or arches or pythons):
        return sorted(set(base))
    places: list[tuple[str, str]]
    if not platforms and not arches:
        places = sorted({(t.os, t.arch) for t in base})
    else:
        os_names = list(platforms) or sorted({t.os for t in base})
        arch_names: list[Optional[str]] = list(arches) or [None]
        places = []
        for os_name in os_names:
            for arch in arch_names:
                if arch is None:  # the platform's architecture in the base targets, else this host's
                    known = sorted({t.arch for t in base if t.os == os_name})
                    default = host.arch if os_name != "macos" or host.arch != "x86_64" else "arm64"
                    places += [(os_name, a) for a in (known or [default])]
                else:
                    places.append((os_name, arch))
    versions = list(pythons) or sorted({t.python_version for t in base})
    return sorted(
        {LockTarget.make(o, a, v, "--platform/--arch/--python-version") for o, a in places for v in versions}
    )


# --- PEP 508 markers for a target ------------------------------------------------------------


def marker_values(host: HostProfile) -> dict[str, str]:
    """Every PEP 508 marker value on ``host``: packaging's values for this interpreter, with
    those pip-gpu knows of the target (platform, architecture, Python) put over them."""
    values = {key: str(value) for key, value in default_environment().items()}
    target = marker_environment(host)
    if values["python_version"] != target["python_version"]:
        # another Python: its full version is unknown, its first release stands for it
        values["python_full_version"] = f"{target['python_version']}.0"
    values.update(target)
    return values


def platform_marker(host: HostProfile) -> str:
    values = marker_environment(host)
    return (
        f"sys_platform == '{values['sys_platform']}' and platform_machine == '{values['platform_machine']}'"
    )


def environment_marker(host: HostProfile) -> str:
    """The PEP 751 ``environments`` entry of one target."""
    return f"{platform_marker(host)} and python_version == '{marker_environment(host)['python_version']}'"


def selected(lock: LockFile, env: Mapping[str, str]) -> list[Package]:
    """The lock's packages whose markers hold in the target environment."""
    values = dict(env, extra="")
    return [p for p in lock.pylock.packages if p.marker is None or p.marker.evaluate(values)]


def family_gaps(
    packages: Sequence[Package],
    targets: Sequence[LockTarget],
    family: Collection[str],
    actual: Optional[Mapping[str, str]] = None,
) -> list[str]:
    """Where a lock would not install its torch family, in words (empty: it always does).

    A lock pip-gpu wrote installs torch on every target it covers, and holds no family entry
    whose ``marker`` excludes every one of them; a ``marker`` added by hand that drops torch
    (``sys_platform == 'win32'`` in a Linux lock) would install the rest without it.
    ``actual``: the target interpreter's own marker values, checked too.
    """
    names = {canonicalize_name(name) for name in family}
    members = [p for p in packages if canonicalize_name(str(p.name)) in names]
    torches = [p for p in members if canonicalize_name(str(p.name)) == "torch"]
    places: list[tuple[str, dict[str, str]]] = [
        (str(t), marker_values(HostProfile(os=t.os, arch=t.arch, python_version=t.python_version)))
        for t in targets
    ]
    if actual is not None:
        places.append(("the target environment", dict(actual)))

    def holds(package: Package, values: Mapping[str, str]) -> bool:
        return package.marker is None or package.marker.evaluate(dict(values, extra=""))

    problems: list[str] = []
    if torches:
        for where, values in places:
            if not any(holds(p, values) for p in torches):
                markers = " / ".join(str(p.marker) for p in torches if p.marker is not None)
                problems.append(
                    f"torch's marker ({markers}) leaves it out on {where}, which the lock covers: "
                    "sync would install the rest without torch"
                )
    for package in members:
        if package.marker is not None and places and not any(holds(package, v) for _, v in places):
            problems.append(
                f"{canonicalize_name(str(package.name))}'s marker {package.marker} holds on none of the "
                "targets the lock covers"
            )
    return problems


# --- choosing the lock for a host ------------------------------------------------------------


def _torch_requirement(record: LockRecord) -> Requirement:
    return Requirement(f"torch=={record.torch}" if record.torch else f"torch=={record.torch_release}.*")


@dataclass(frozen=True)
class LockChoice:
    lock: Optional[LockFile]
    decision: Decision  # the (last) decision made; its candidates explain the locked variants


def choose_lock(
    family: Sequence[LockFile],
    host: HostProfile,
    knowledge: Knowledge,
    preferred_variant: Optional[str] = None,
) -> LockChoice:
    """The core's rules restricted to the locked variants: newest CUDA that runs here."""
    by_release: dict[str, list[LockFile]] = {}
    for lock in family:
        by_release.setdefault(str(_torch_requirement(lock.record)), []).append(lock)
    best: Optional[tuple[LockFile, Decision]] = None
    last: Optional[Decision] = None
    for requirement, locks in sorted(by_release.items()):
        request = request_from_requirements([Requirement(requirement)], knowledge)
        policy = Policy(
            allowed_variants=frozenset(lock.variant for lock in locks),
            preferred_variant=preferred_variant,
        )
        decision = decide(request, host, knowledge, policy=policy)
        last = decision
        if not decision.ok:
            continue
        chosen = next(lock for lock in locks if lock.variant == decision.variant)
        if best is None or parse_variant(chosen.variant).sort_key > parse_variant(best[0].variant).sort_key:
            best = (chosen, decision)
    if best is not None:
        return LockChoice(best[0], best[1])
    assert last is not None
    return LockChoice(None, last)


def covers(lock: LockFile, host: HostProfile) -> bool:
    """The lock is resolved for this host's platform, architecture and Python."""
    return target_of(host) in lock.record.covered


def why_not(lock: LockFile, host: HostProfile, knowledge: Knowledge) -> str:
    """Why this host cannot run the locked build, in the words a person would use."""
    record = lock.record
    request = request_from_requirements([_torch_requirement(record)], knowledge)
    decision = decide(request, host, knowledge, policy=Policy(allowed_variants=frozenset({record.variant})))
    reasons = [c.reason for c in decision.candidates if c.variant == record.variant and not c.ok]
    if not covers(lock, host):
        return f"it is locked for {', '.join(map(str, record.covered))} and this host is {target_of(host)}"
    if not reasons:
        return f"pip-gpu knows no {record.variant} build of torch {record.torch or record.torch_release}"
    reason = reasons[0]
    if reason.startswith("driver ") and host.driver_version:
        max_cuda = knowledge.max_cuda_for_driver(host.driver_version)
        minimum = knowledge.minimum_driver_for(record.cuda, host.os) if record.cuda else None
        if max_cuda:
            needs = f" ({record.variant} needs >= {minimum})" if minimum else ""
            return f"this driver ({host.driver_version}) supports CUDA <= {max_cuda}{needs}"
    return reason


def no_variant_runs(
    family: Sequence[LockFile], host: HostProfile, knowledge: Knowledge, output_dir_flag: str = ""
) -> NoBuildRuns:
    """No locked variant runs here: why not, and the ``lock`` command that adds one that does.

    ``output_dir_flag``: `` --output-dir DIR`` when the locks are not in the current folder.
    """
    locked = sorted({lock.variant for lock in family}, key=lambda v: parse_variant(v).sort_key)
    reasons = "; ".join(f"{lock.variant}: {why_not(lock, host, knowledge)}" for lock in family)
    record = family[0].record
    request = request_from_requirements([_torch_requirement(record)], knowledge)
    unrestricted = decide(request, host, knowledge)
    if unrestricted.ok and unrestricted.variant is not None:
        variants = sorted({*locked, unrestricted.variant}, key=lambda v: parse_variant(v).sort_key)
        hint = (
            f"lock a build that runs here: pip-gpu lock --variants {','.join(variants)}{output_dir_flag}"
            f" (torch {record.torch or record.torch_release} -> {unrestricted.variant})"
        )
    else:
        assert unrestricted.blocker is not None
        hint = unrestricted.blocker.hint
    return NoBuildRuns(f"no locked variant ({', '.join(locked)}) runs on this host: {reasons}", hint)


def not_covered(
    family: Sequence[LockFile], host: HostProfile, where: str, output_dir_flag: str = ""
) -> UsageError:
    """No lock of the family is resolved for this host's target: which are, and the command
    that adds this one (every combination of the flags is locked, the old targets included)."""
    here = target_of(host)
    covered = sorted({t for lock in family for t in lock.record.covered})
    requested = sorted({*family[0].record.inputs.targets, here})
    flags = [f"--platform {o}" for o in sorted({t.os for t in requested})]
    arches = sorted({t.arch for t in requested})
    if len(arches) > 1 or arches != [here.arch]:
        flags += [f"--arch {a}" for a in arches]
    flags += [f"--python-version {v}" for v in sorted({t.python_version for t in requested})]
    return UsageError(
        f"the locks in {where} cover {', '.join(map(str, covered))}, not this host ({here})",
        f"add it: pip-gpu lock {' '.join(flags)}{output_dir_flag}",
    )
