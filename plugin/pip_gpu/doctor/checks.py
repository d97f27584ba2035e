"""``pip-gpu doctor``'s checks: why ``torch.cuda.is_available()`` is False, and the command that fixes it.

The chain is walked in the order a cause hides the next one: which torch Python imports, its
build, its family, the driver, the GPUs, NVML, then the environment around the process.
Every check is a pure function over gathered :class:`~pip_gpu.doctor.facts.Facts` that
returns a :class:`Finding`; the report's verdict is the first failure's cause and fix.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

from ..compiled import CompiledArchs
from ..decide.rules import (
    Decision,
    decide,
    gpu_covered_by,
    request_from_requirements,
)
from ..detect.target import TargetEnv
from ..errors import EXIT_CHECK_FAILED, EXIT_OK
from ..host import HostProfile, NvidiaGpu, driver_at_least
from ..knowledge import Build
from ..variant import CPU
from .facts import Facts, Package, TorchCopy

__all__ = [
    "CHECKS",
    "FAILURE",
    "OK",
    "SKIPPED",
    "WARNING",
    "Finding",
    "Report",
    "check_container",
    "check_cuda_build_has_a_gpu",
    "check_cuda_visible_devices",
    "check_driver",
    "check_family",
    "check_gpu_architecture",
    "check_import",
    "check_ld_library_path",
    "check_lock",
    "check_nvml",
    "check_shims",
    "check_torch",
    "check_torch_copies",
    "check_virtualenv",
    "check_wsl",
    "diagnose",
]

OK = "ok"
WARNING = "warning"
FAILURE = "failure"
SKIPPED = "skipped"  # could not be checked: a fact it needs is missing

# NVIDIA_VISIBLE_DEVICES values that ask the NVIDIA Container Toolkit for no GPU at all
# (NVIDIA Container Toolkit docs, "Specialized Configurations with Docker").
_NO_GPU_REQUESTED = ("void", "none", "")


# --- values --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One check's outcome: what it found, the facts behind it, and the way out."""

    check: str  # stable id: "torch", "driver", "nvml", ...
    status: str  # ok | warning | failure | skipped
    summary: str
    evidence: tuple[str, ...] = ()
    fix: Optional[str] = None  # a command where one exists


@dataclass(frozen=True)
class Report:
    """Every finding, in the order the chain is walked, and what it all comes to."""

    findings: tuple[Finding, ...]
    healthy_summary: str  # what a healthy verdict says about the machine
    target: Optional[TargetEnv] = None
    host: Optional[HostProfile] = None
    compiled_archs: Optional[CompiledArchs] = None  # read from the installed torch's CUDA library

    @property
    def failures(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.status == FAILURE)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.status == WARNING)

    @property
    def healthy(self) -> bool:
        return not self.failures

    @property
    def exit_status(self) -> int:
        return EXIT_OK if self.healthy else EXIT_CHECK_FAILED

    @property
    def verdict(self) -> str:
        """The first failure's cause and fix, or "healthy" with what runs where."""
        if self.failures:
            first = self.failures[0]
            return f"{first.summary}. Fix: {first.fix}" if first.fix else first.summary
        text = f"healthy: {self.healthy_summary}"
        if self.warnings:
            count = len(self.warnings)
            text += f" ({count} warning{'s' if count > 1 else ''}: {self.warnings[0].summary})"
        return text


# --- helpers the checks share -------------------------------------------------------------


def _gpu_list(gpus: Sequence[NvidiaGpu]) -> str:
    names: dict[str, int] = {}
    for gpu in gpus:
        names[gpu.name] = names.get(gpu.name, 0) + 1
    return ", ".join(name if n == 1 else f"{n}x {name}" for name, n in names.items())


def _describe_host_gpus(host: HostProfile) -> str:
    """``1 NVIDIA GPU (NVIDIA A100-SXM4-80GB, driver 535.104.05)``."""
    count = len(host.nvidia_gpus)
    driver = f"driver {host.driver_version}" if host.driver_version else "driver unknown"
    if count == 0:
        return f"an NVIDIA driver ({driver}) but no readable GPU"
    return f"{count} NVIDIA GPU{'s' if count > 1 else ''} ({_gpu_list(host.nvidia_gpus)}, {driver})"


def _the_host(facts: Facts) -> str:
    """Whose GPUs doctor speaks of: this machine's, or those of the host the flags describe."""
    return "the host the flags describe" if facts.gpu_facts_given else "this machine"


def _without_nvidia(facts: Facts) -> str:
    """``this machine has no NVIDIA GPU``; for flags, what the host they describe has instead."""
    amd = facts.host.amd_gpus if facts.gpu_facts_given else ()
    if not amd:
        return f"{_the_host(facts)} has no NVIDIA GPU"
    targets = ", ".join(dict.fromkeys(gpu.gfx_target for gpu in amd))
    many = "s" if len(amd) > 1 else ""
    return f"{_the_host(facts)} has {len(amd)} AMD GPU{many} ({targets}) and no NVIDIA GPU"


def _not_found(facts: Facts) -> str:
    """Why a CUDA build has no NVIDIA GPU to run on, in words."""
    if facts.gpu_facts_given:
        return _without_nvidia(facts)
    return "the NVIDIA GPUs could not be read" if facts.host.driver_version else "no NVIDIA GPU was found"


def _sm(gpu: NvidiaGpu) -> str:
    return f"sm_{gpu.compute_capability[0]}{gpu.compute_capability[1]}"


def _archs(build: Build) -> str:
    sass = " ".join(f"sm_{a}{b}" for a, b in build.sass or ())
    ptx = " ".join(f"compute_{a}{b}" for a, b in build.ptx or ())
    return sass + (f", PTX {ptx}" if ptx else ", no PTX")


def _series(version: str) -> str:
    parts = version.split("+")[0].split(".")
    return ".".join(parts[:2])


def _known_build(facts: Facts, torch: Package) -> Optional[Build]:
    """The knowledge file's record of the installed build (its kernels, its platform)."""
    variant = torch.variant
    release = facts.knowledge.release(_series(torch.version))
    if release is None or variant is None:
        return None
    platform = facts.host.platform_tag
    for build in release.builds:
        if build.variant == variant.name and build.platform == platform:
            return build
    if torch.label is None:  # a PyPI wheel without label is the build PyPI serves on this platform
        for build in release.builds:
            if build.variant == release.pypi_default_for(platform) and build.platform == platform:
                return build
    return None


def _decide(facts: Facts, spec: str) -> Decision:
    request = request_from_requirements([Requirement(spec)], facts.knowledge)
    return decide(request, facts.host, facts.knowledge)


def _companions(facts: Facts) -> list[Package]:
    return [p for name, p in sorted(facts.target.packages.items()) if name != "torch"]


def _install(facts: Facts, specs: Sequence[str], *, force: bool = True) -> str:
    argv = ["pip-gpu", "install"]
    if facts.python_flag:
        argv += ["--python", facts.python_flag]
    if force:
        argv.append("--force-reinstall")
    return " ".join([*argv[:2], *map(shlex.quote, argv[2:]), *map(shlex.quote, specs)])


def _replacement(facts: Facts) -> tuple[Optional[str], str, Optional[str]]:
    """The command that puts a build that runs here in place of the installed family.

    The same release when one of its builds runs here, else the newest release that does.
    Returns the command (None when nothing runs), a sentence naming the build or saying why
    none runs, and the variant.
    """
    torch = facts.target.torch
    assert torch is not None
    same = _decide(facts, f"torch=={torch.public_version}")
    if same.ok:
        specs = [f"torch=={torch.public_version}"]
        specs += [f"{p.name}=={p.public_version}" for p in _companions(facts) if _labelled(facts, p)]
        why = f"the {same.variant} build of torch {torch.public_version} runs here"
        return _install(facts, specs), why, same.variant
    newest = _decide(facts, "torch")
    if newest.ok and newest.release is not None:
        series = newest.release.torch
        specs = [f"torch=={series}.*"]
        for package in _companions(facts):
            companion = newest.release.companions.get(package.name)
            if companion is not None:
                specs.append(f"{package.name}=={companion}.*")
        why = (
            f"no build of torch {torch.public_version} runs here; the {newest.variant} build of {series} does"
        )
        return _install(facts, specs), why, newest.variant
    blocker = same.blocker or newest.blocker
    if blocker is None:
        return None, "", None
    return None, blocker.message + (f" ({blocker.hint})" if blocker.hint else ""), None


def _labelled(facts: Facts, package: Package) -> bool:
    member = facts.knowledge.family_member(package.name)
    return member is not None and member.local_label


# --- the checks ----------------------------------------------------------------------------


def check_torch_copies(facts: Facts) -> Finding:
    """Two installs of torch (pip beside conda, user site or PYTHONPATH beside the venv)."""
    copies = facts.target.torch_copies
    records = [(c, m) for c in copies for m in c.metadata]
    if len(copies) <= 1 and len(records) <= 1:
        where = copies[0].location if copies else "nowhere on sys.path"
        return Finding("torch-copies", OK, f"one install of torch ({where})")
    prefix = str(facts.target.target.prefix)
    evidence = tuple(
        f"{c.location}: "
        + ", ".join(([f"torch/ {c.version or '?'}"] if c.package else []) + list(c.metadata))
        + (" (imported)" if c is copies[0] else "")
        for c in copies
    )
    if len(copies) > 1:
        imported = copies[0]
        stray = [c for c in copies if not _inside(c.location, prefix)] or copies[1:]
        others = [c for c in copies if c is not imported]
        summary = (
            f"two installs of torch: {imported.version or 'a copy'} in {_where(facts, imported.location)} "
            f"is the one Python imports, beside {', '.join(_copy(facts, c) for c in others)}"
        )
        return Finding("torch-copies", FAILURE, summary, evidence, _remove_copies(facts, stray))
    # One directory, several metadata records: pip installed over conda (or over an old pip).
    only = copies[0]
    stale = [m for m in only.metadata if only.version is None or not _names_version(m, only.version)]
    summary = (
        f"two installs of torch in {only.location}: {', '.join(only.metadata)} "
        "(pip and conda, or two pip runs, wrote over each other)"
    )
    targets = [str(Path(only.location) / m) for m in (stale or list(only.metadata[1:]))]
    fix = (
        "conda remove --force pytorch"
        if facts.target.conda
        else "rm -rf " + " ".join(map(shlex.quote, targets))
    )
    return Finding("torch-copies", FAILURE, summary, evidence, fix)


def _inside(path: str, prefix: str) -> bool:
    try:
        Path(path).resolve().relative_to(Path(prefix).resolve())
        return True
    except ValueError:
        return False


def _same_dir(a: str, b: str) -> bool:
    return os.path.abspath(a) == os.path.abspath(b)


def _on_pythonpath(facts: Facts, location: str) -> bool:
    return any(_same_dir(location, entry) for entry in facts.machine.pythonpath)


def _where(facts: Facts, location: str) -> str:
    if _on_pythonpath(facts, location):
        return f"{location} (on PYTHONPATH)"
    if facts.target.user_site and _same_dir(location, facts.target.user_site):
        return f"{location} (the user site)"
    if _same_dir(location, str(facts.cwd)):
        return f"{location} (the current directory)"
    return location


def _copy(facts: Facts, copy: TorchCopy) -> str:
    return f"{copy.version or 'another'} in {_where(facts, copy.location)}"


def _names_version(metadata: str, version: str) -> bool:
    """``torch-2.5.1+cu124.dist-info`` names ``2.5.1+cu124`` (compared as PEP 440 versions)."""
    stem = metadata.rsplit(".", 1)[0]
    named = stem.split("-")[1] if stem.count("-") >= 1 else ""
    try:
        return Version(named) == Version(version)
    except InvalidVersion:
        return named == version


def _remove_copies(facts: Facts, stray: Sequence[TorchCopy]) -> str:
    """Drop the stray copies from PYTHONPATH, or remove them; never a source tree in the cwd."""
    if any(_same_dir(c.location, str(facts.cwd)) for c in stray):
        return f"run Python from another directory: the torch/ in {facts.cwd} shadows the installed one"
    if any(_on_pythonpath(facts, c.location) for c in stray):
        keep = [p for p in facts.machine.pythonpath if not any(_same_dir(p, c.location) for c in stray)]
        return f"export PYTHONPATH={shlex.quote(os.pathsep.join(keep))}" if keep else "unset PYTHONPATH"
    paths = []
    for copy in stray:
        if copy.package:
            paths.append(str(Path(copy.location) / "torch"))
        paths += [str(Path(copy.location) / m) for m in copy.metadata]
    return "rm -rf " + " ".join(map(shlex.quote, paths))


def _damaged(facts: Facts, packages: Sequence[Package]) -> tuple[list[str], Optional[str]]:
    """Which of ``packages`` have installed files that are not what their RECORD lists (a full
    disk, a killed install), in words, and the command that puts them back."""
    broken = facts.target.broken or {}
    found = [p for p in packages if p.name in broken]
    if not found:
        return [], None
    words = [f"{p.describe()} is damaged: {broken[p.name]}" for p in found]
    if facts.lock is not None and facts.lock.files:
        return words, "pip-gpu sync"
    return words, _install(facts, [f"{p.name}=={p.public_version}" for p in found])


def check_torch(facts: Facts) -> Finding:
    """Which torch is installed, and whether its build can use this machine's GPUs."""
    torch = facts.target.torch
    host = facts.host
    if torch is None:
        return Finding(
            "torch",
            FAILURE,
            f"torch is not installed in {facts.target.target.prefix}",
            (f"python: {facts.target.target.python} ({facts.target.target.chosen_by})",),
            _install(facts, ["torch"], force=False),
        )
    evidence = (
        f"{torch.describe()} in {torch.location}",
        f"torch/version.py: cuda={torch.cuda!r}, hip={torch.hip!r}"
        if torch.build_info
        else "torch/version.py not found",
    )
    damaged, reinstall = _damaged(facts, [torch])
    if damaged:
        return Finding(
            "torch", FAILURE, f"{damaged[0]} (a failed or interrupted install?)", evidence, reinstall
        )
    variant = torch.variant
    has_nvidia = bool(host.nvidia_gpus)
    if variant is None:
        return Finding(
            "torch", WARNING, f"{torch.describe()}: its build (CUDA, ROCm or CPU) cannot be read", evidence
        )
    if not variant.is_cuda and has_nvidia:
        kind = "a CPU-only" if variant.kind == "cpu" else f"a {variant} (not CUDA)"
        command, why, _ = _replacement(facts)
        return Finding(
            "torch",
            FAILURE,
            f"{torch.describe()} is {kind} build; {_the_host(facts)} has {_describe_host_gpus(host)}",
            (*evidence, why),
            command,
        )
    if not variant.is_cuda:
        here = _without_nvidia(facts) if facts.gpu_facts_given else "no NVIDIA GPU here"
        return Finding("torch", OK, f"{torch.describe()} ({variant} build); {here}", evidence)
    if not has_nvidia:
        where = _not_found(facts)
        return Finding(
            "torch",
            WARNING,
            f"{torch.describe()} is a CUDA {torch.cuda_version} build but {where}: it will run on the CPU",
            evidence,
        )
    return Finding(
        "torch",
        OK,
        f"{torch.describe()} is a CUDA {torch.cuda_version} build; {_describe_host_gpus(host)}",
        evidence,
    )


def check_family(facts: Facts) -> Finding:
    """torchvision, torchaudio and the rest carry torch's variant and belong to its release."""
    torch = facts.target.torch
    if torch is None:
        return Finding("family", SKIPPED, "torch is not installed")
    companions = _companions(facts)
    if not companions:
        return Finding("family", OK, "only torch of the family is installed")
    evidence = tuple(f"{p.describe()} ({p.variant or 'build unknown'})" for p in [torch, *companions])
    damaged, reinstall = _damaged(facts, companions)
    if damaged:
        summary = "; ".join(damaged) + " (a failed or interrupted install?)"
        return Finding("family", FAILURE, summary, evidence, reinstall)
    mixed = [
        p
        for p in companions
        if _labelled(facts, p)
        and p.variant is not None
        and torch.variant is not None
        and p.variant != torch.variant
    ]
    release = facts.knowledge.release(_series(torch.version))
    unpaired: list[tuple[Package, str]] = []
    if release is not None:
        for package in companions:
            wanted = release.companions.get(package.name)
            if wanted is not None and _series(package.version) != wanted:
                unpaired.append((package, wanted))
    if not mixed and not unpaired:
        return Finding(
            "family", OK, f"{', '.join(p.describe() for p in companions)} match {torch.describe()}", evidence
        )
    specs = [f"torch=={torch.public_version}"]
    wanted_series = dict((p.name, w) for p, w in unpaired)
    for package in companions:
        if package.name in wanted_series:
            specs.append(f"{package.name}=={wanted_series[package.name]}.*")
        elif _labelled(facts, package):
            specs.append(f"{package.name}=={package.public_version}")
    if mixed:
        summary = (
            "mixed torch family variants: "
            + ", ".join(f"{p.describe()} is {p.variant}" for p in mixed)
            + f", but {torch.describe()} is {torch.variant}"
        )
    else:
        summary = "torch family releases that do not belong together: " + ", ".join(
            f"{p.describe()} pairs with torch other than {_series(torch.version)} "
            f"(torch {_series(torch.version)} needs {p.name} {w}.x)"
            for p, w in unpaired
        )
    return Finding("family", FAILURE, summary, evidence, _install(facts, specs))


def check_driver(facts: Facts) -> Finding:
    """The driver is new enough for the installed build's CUDA (minor-version compatibility)."""
    torch = facts.target.torch
    host = facts.host
    if torch is None or torch.cuda_version is None:
        return Finding("driver", SKIPPED, "no CUDA build of torch is installed")
    cuda = torch.cuda_version
    if host.driver_version is None:
        if facts.gpu_facts_given:  # NVML was not asked: "see nvml" would point nowhere
            return Finding("driver", SKIPPED, "the flags describe a host without an NVIDIA driver")
        return Finding("driver", SKIPPED, "no NVIDIA driver was found (see nvml)")
    minimum = facts.knowledge.minimum_driver_for(cuda, host.os)
    if minimum is None:
        return Finding(
            "driver", WARNING, f"pip-gpu does not know the minimum driver for CUDA {cuda} on {host.os}"
        )
    evidence = (
        f"driver {host.driver_version} ({host.sources.get('driver_version', '?')}), "
        f"supports CUDA <= {host.cuda_driver_version or '?'}",
        f"CUDA {cuda} on {host.os} needs driver >= {minimum} (minor-version compatibility)",
    )
    if driver_at_least(host.driver_version, minimum):
        return Finding(
            "driver", OK, f"driver {host.driver_version} >= {minimum}, the minimum for CUDA {cuda}", evidence
        )
    command, why, variant = _replacement(facts)
    fix = f"upgrade the NVIDIA driver to >= {minimum}"
    if command:
        fix += f", or install the {variant} build, which runs on this driver: {command}"
    return Finding(
        "driver",
        FAILURE,
        f"{torch.describe()} needs NVIDIA driver >= {minimum} (CUDA {cuda} on {host.os}); this driver is "
        f"{host.driver_version} (CUDA <= {host.cuda_driver_version or '?'})",
        (*evidence, why),
        fix,
    )


def _build_from_binary(facts: Facts, known: Optional[Build], torch: Package) -> tuple[Optional[Build], str]:
    """The installed build's architectures: the binary's over the knowledge file's, and why."""
    compiled = facts.compiled_archs
    if compiled is None or not (compiled.sass or compiled.ptx):
        return known, f"knowledge file: {known.source}" if known else ""
    if known is not None and known.cuda is None:
        known = None  # version.py unread or wrong: the binary carries CUDA code all the same
    origin = f"read from {compiled.path}"
    in_file = None if known is None or known.sass is None else (known.sass, known.ptx or ())
    if in_file is not None and in_file != (compiled.sass, compiled.ptx):
        assert known is not None
        origin += f"; the knowledge file says {_archs(known)}, the binary wins"
    variant = torch.variant or CPU  # no label: the binary's archs say the rest
    base = known or Build(variant, facts.host.platform_tag, None, None, None, "high", "")
    return replace(base, sass=compiled.sass, ptx=compiled.ptx, source=origin), origin


def check_gpu_architecture(facts: Facts) -> Finding:
    """Every visible GPU's architecture is compiled into the build (SASS, or PTX to JIT)."""
    torch = facts.target.torch
    host = facts.host
    in_binary = facts.compiled_archs is not None and bool(
        facts.compiled_archs.sass or facts.compiled_archs.ptx
    )
    if torch is None or (torch.cuda_version is None and not in_binary):
        return Finding("gpu-arch", SKIPPED, "no CUDA build of torch is installed")
    gpus = host.visible_nvidia_gpus or host.nvidia_gpus
    if not gpus:
        if facts.gpu_facts_given:
            return Finding("gpu-arch", SKIPPED, "the flags describe a host without an NVIDIA GPU")
        return Finding("gpu-arch", SKIPPED, "no NVIDIA GPU could be read")
    build, origin = _build_from_binary(facts, _known_build(facts, torch), torch)
    if build is None or build.sass is None:
        return Finding(
            "gpu-arch",
            WARNING,
            f"pip-gpu does not know which GPU architectures {torch.describe()} carries",
            tuple(f"GPU {g.index}: {g.name} ({_sm(g)})" for g in gpus),
        )
    evidence = (
        f"{torch.describe()} carries {_archs(build)} ({origin})",
        *(f"GPU {g.index}: {g.name} ({_sm(g)})" for g in gpus),
    )
    uncovered = [g for g in gpus if not gpu_covered_by(g.compute_capability, build)]
    if not uncovered:
        return Finding("gpu-arch", OK, f"{torch.describe()} covers {_gpu_list(gpus)}", evidence)
    gpu = uncovered[0]
    lowest = min(build.sass + (build.ptx or ()), default=(0, 0))
    age = "too old" if gpu.compute_capability < lowest else "too new"
    command, why, _ = _replacement(facts)
    return Finding(
        "gpu-arch",
        FAILURE,
        f"{gpu.name} ({_sm(gpu)}) is {age} for {torch.describe()}, which carries {_archs(build)}"
        + (f"; {why}" if command else ""),
        (*evidence, why),
        command or why,
    )


def check_nvml(facts: Facts) -> Finding:
    """NVML answers: the driver is installed, loaded, matches its library, and may be used."""
    host = facts.host
    machine = facts.machine
    if facts.gpu_facts_given:
        return Finding("nvml", SKIPPED, "the driver and GPUs were given as flags; NVML was not asked")
    problem = next((p for p in host.problems if p.code.startswith("nvml-")), None)
    evidence = tuple(
        line
        for line in (
            f"/dev/nvidia*: {', '.join(machine.nvidia_nodes) or 'none'}",
            "kernel modules: "
            + (
                ", ".join(sorted(m for m in machine.kernel_modules if m.startswith(("nvidia", "nouveau"))))
                or "none"
            ),
            f"NVIDIA PCI devices: {', '.join(machine.nvidia_pci) or 'none'}",
            f"driver {host.driver_version} ({host.sources.get('driver_version')})"
            if host.driver_version
            else "",
            f"NVML: {problem.message}" if problem else "",
        )
        if line
    )
    nouveau = "nouveau" in machine.kernel_modules and "nvidia" not in machine.kernel_modules
    if nouveau:
        installed = problem is not None and problem.code == "nvml-driver-not-loaded"
        fix = (
            "echo 'blacklist nouveau' | sudo tee /etc/modprobe.d/blacklist-nouveau.conf "
            "&& sudo update-initramfs -u && sudo reboot"
            if installed
            else "install the NVIDIA driver (it blacklists nouveau; e.g. sudo ubuntu-drivers install), "
            "then reboot"
        )
        return Finding(
            "nvml",
            FAILURE,
            "the open-source nouveau driver is loaded instead of nvidia, so CUDA cannot run",
            evidence,
            fix,
        )
    if problem is None:
        if host.driver_version is not None:
            return Finding(
                "nvml",
                OK,
                f"NVML answers: driver {host.driver_version}, {len(host.nvidia_gpus)} GPU(s)",
                evidence,
            )
        if machine.container and not machine.nvidia_nodes:
            return Finding(
                "nvml", SKIPPED, "no NVIDIA driver inside this container (see container)", evidence
            )
        if machine.nvidia_pci:
            return Finding(
                "nvml",
                FAILURE,
                f"an NVIDIA GPU is on the PCI bus ({machine.nvidia_pci[0]}) "
                "but no NVIDIA driver is installed",
                evidence,
                "install the NVIDIA driver (e.g. sudo ubuntu-drivers install), then reboot",
            )
        return Finding("nvml", OK, "no NVIDIA driver and no NVIDIA GPU on this machine", evidence)
    if problem.code == "nvml-driver-mismatch":
        loaded = machine.kernel_module_version
        module = f" (the loaded kernel module is {loaded})" if loaded else ""
        return Finding(
            "nvml",
            FAILURE,
            f"NVIDIA driver/library version mismatch{module}: the driver was upgraded without a reboot",
            evidence,
            "sudo reboot  (or unload and reload the nvidia kernel modules)",
        )
    if problem.code == "nvml-driver-not-loaded":
        return Finding(
            "nvml",
            FAILURE,
            "the NVIDIA driver is installed but its kernel module is not loaded",
            evidence,
            "sudo modprobe nvidia",
        )
    if problem.code == "nvml-no-permission":
        nodes = (
            " ".join(str(machine.dev_root / n) for n in machine.nvidia_nodes) or f"{machine.dev_root}/nvidia*"
        )
        group = machine.node_group
        fix = (
            f'sudo usermod -aG {group} "$USER"  (then log in again)'
            if group and group != "root"
            else f"sudo chmod a+rw {nodes}"
        )
        denied = machine.inaccessible_nodes
        return Finding(
            "nvml",
            FAILURE,
            "no permission to use the NVIDIA device nodes"
            + (f" ({', '.join(denied)} not readable and writable)" if denied else ""),
            evidence,
            fix,
        )
    if problem.code == "nvml-not-found" and machine.nvidia_nodes:
        return Finding(
            "nvml",
            FAILURE,
            f"{machine.dev_root}/nvidia* exist but the NVIDIA driver library (libnvidia-ml) is missing",
            evidence,
            "in a container: docker run --gpus all (the NVIDIA Container Toolkit mounts the driver "
            "libraries); on a host: reinstall the NVIDIA driver",
        )
    return Finding("nvml", FAILURE, problem.message, evidence, problem.hint or None)


def check_cuda_visible_devices(facts: Facts) -> Finding:
    """``CUDA_VISIBLE_DEVICES`` hides no GPU by accident and names only GPUs that exist."""
    value = facts.machine.cuda_visible_devices
    gpus = facts.host.nvidia_gpus
    if value is None:
        return Finding("cuda-visible-devices", OK, "CUDA_VISIBLE_DEVICES is not set")
    if facts.gpu_facts_given:
        # The GPUs come from flags, but the variable is this environment's, and torch reads it
        # whatever told pip-gpu about the GPUs: apply it to the GPUs given.
        from ..detect import apply_cuda_visible_devices

        gpus = apply_cuda_visible_devices(gpus, value)
    if not gpus:
        return Finding(
            "cuda-visible-devices", SKIPPED, f"CUDA_VISIBLE_DEVICES={value!r}; no NVIDIA GPU was read"
        )
    visible = [g for g in gpus if g.visible]
    entries = [e.strip() for e in value.split(",")]
    existing = ",".join(str(g.index) for g in gpus)
    evidence = (f"CUDA_VISIBLE_DEVICES={value!r}", f"GPUs: {', '.join(f'{g.index} {g.name}' for g in gpus)}")
    bad = entries[len(visible)] if len(visible) < len(entries) else None
    if not visible:
        if bad is None or bad in ("", "-1"):
            summary = f"CUDA_VISIBLE_DEVICES={value!r} hides every GPU: torch sees 0 of {len(gpus)}"
            fix = "unset CUDA_VISIBLE_DEVICES"
        else:
            summary = (
                f"CUDA_VISIBLE_DEVICES={value!r} names GPU {bad}, which does not exist here "
                f"(GPUs {existing}): torch sees none"
            )
            fix = f"export CUDA_VISIBLE_DEVICES={existing}"
        return Finding("cuda-visible-devices", FAILURE, summary, evidence, fix)
    if bad is not None:
        shown = ",".join(str(g.index) for g in visible)
        return Finding(
            "cuda-visible-devices",
            WARNING,
            f"CUDA_VISIBLE_DEVICES={value!r} names GPU {bad}, which does not exist; CUDA stops there "
            f"and sees only {shown}",
            evidence,
            f"export CUDA_VISIBLE_DEVICES={shown}",
        )
    return Finding(
        "cuda-visible-devices",
        OK,
        f"CUDA_VISIBLE_DEVICES={value!r}: {len(visible)} of {len(gpus)} GPUs visible",
        evidence,
    )


def check_container(facts: Facts) -> Finding:
    """Inside a container, the GPUs were passed in (NVIDIA Container Toolkit)."""
    machine = facts.machine
    if machine.container is None:
        return Finding("container", OK, "not in a container")
    requested = machine.nvidia_visible_devices
    evidence = (
        machine.container,
        f"NVIDIA_VISIBLE_DEVICES={requested!r}"
        if requested is not None
        else "NVIDIA_VISIBLE_DEVICES is not set",
        f"/dev/nvidia*: {', '.join(machine.nvidia_nodes) or 'none'}",
    )
    if machine.nvidia_nodes:
        return Finding(
            "container", OK, f"in a container with {len(machine.nvidia_nodes)} /dev/nvidia* nodes", evidence
        )
    host = facts.host
    if host.nvidia_gpus and not facts.gpu_facts_given:
        # NVML (or nvidia-smi) reaches the GPUs through the driver's device nodes, as CUDA does: the
        # GPUs were passed in, wherever the nodes are. "Will run on the CPU" would contradict it.
        source = host.sources.get("nvidia_gpus", "NVML")
        return Finding(
            "container",
            OK,
            f"in a container, and {source} reads {_describe_host_gpus(host)}: the GPUs were passed in",
            evidence,
        )
    requested_gpus = requested is not None and requested.strip().lower() not in _NO_GPU_REQUESTED
    torch = facts.target.torch
    cuda_build = torch is not None and torch.cuda_version is not None
    if not requested_gpus and not machine.nvidia_pci:
        if cuda_build and facts.gpu_facts_given:
            # The GPUs come from flags: they describe another host, not this container.
            return Finding(
                "container",
                SKIPPED,
                "in a container without GPUs; the NVIDIA facts come from flags, so this container "
                "is not the host checked",
                evidence,
            )
        if cuda_build:
            return Finding(
                "container",
                WARNING,
                "in a container without GPUs: the CUDA build of torch will run on the CPU",
                evidence,
                "docker run --gpus all ...  (if this container should have GPUs)",
            )
        return Finding(
            "container", OK, "in a container without GPUs, with no CUDA build to use them", evidence
        )
    why = (
        f"although NVIDIA_VISIBLE_DEVICES={requested}"
        if requested_gpus
        else f"although the host has an NVIDIA GPU ({machine.nvidia_pci[0]})"
    )
    return Finding(
        "container",
        FAILURE,
        f"running in a container without /dev/nvidia* {why}: the GPUs were not passed in "
        "(NVIDIA Container Toolkit not set up, or the container not started with GPUs)",
        evidence + tuple(f"NVIDIA PCI device: {d}" for d in machine.nvidia_pci),
        "docker run --gpus all ...  (install the NVIDIA Container Toolkit and run "
        "`sudo nvidia-ctk runtime configure --runtime=docker` first; Kubernetes: request nvidia.com/gpu)",
    )


def check_wsl(facts: Facts) -> Finding:
    """Under WSL2, the Windows driver's libcuda is mapped in."""
    machine = facts.machine
    if not machine.wsl:
        return Finding("wsl", OK, "not WSL")
    if machine.wsl_libcuda_present:
        return Finding("wsl", OK, f"WSL2 with {machine.wsl_libcuda}")
    return Finding(
        "wsl",
        FAILURE,
        f"WSL2 without {machine.wsl_libcuda}: the Windows NVIDIA driver's CUDA support does not reach Linux",
        ("/proc/version mentions Microsoft", f"{machine.wsl_libcuda}: missing"),
        "install the current NVIDIA driver on Windows (not inside WSL), "
        "then run `wsl --shutdown` from Windows",
    )


def check_ld_library_path(facts: Facts) -> Finding:
    """No CUDA toolkit's libcudart on LD_LIBRARY_PATH in front of the one torch bundles."""
    runtimes = facts.machine.cuda_runtime_dirs
    torch = facts.target.torch
    if not runtimes:
        return Finding("ld-library-path", OK, "no libcudart on LD_LIBRARY_PATH")
    evidence = tuple(f"{r.directory}: libcudart {r.version or '?'}" for r in runtimes)
    if torch is None or torch.cuda_version is None:
        return Finding(
            "ld-library-path", OK, "libcudart on LD_LIBRARY_PATH, but no CUDA build of torch", evidence
        )
    wanted = torch.cuda_version
    older = [r for r in runtimes if r.version is not None and _older(r.version, wanted)]
    if not older:
        return Finding(
            "ld-library-path",
            WARNING,
            f"LD_LIBRARY_PATH holds a CUDA toolkit's libcudart ({runtimes[0].directory}); "
            f"torch loads its own CUDA {wanted} runtime, but this one may shadow it",
            evidence,
        )
    first = older[0]
    keep = [p for p in facts.machine.ld_library_path if p not in {r.directory for r in older}]
    fix = f"export LD_LIBRARY_PATH={shlex.quote(os.pathsep.join(keep))}" if keep else "unset LD_LIBRARY_PATH"
    return Finding(
        "ld-library-path",
        FAILURE,
        f"LD_LIBRARY_PATH puts {first.directory} (libcudart {first.version}, an old CUDA toolkit) "
        f"in front of the CUDA {wanted} runtime that {torch.describe()} bundles",
        evidence,
        fix,
    )


def _older(version: str, wanted: str) -> bool:
    have = [int(p) for p in version.split(".")]
    need = [int(p) for p in wanted.split(".")]
    if len(have) == 1:
        return have[0] < need[0]
    return have < need[: len(have)]


def check_virtualenv(facts: Facts) -> Finding:
    """torch goes into a virtual environment (or conda env), not a system Python."""
    target = facts.target.target
    if target.is_virtualenv:
        return Finding("virtualenv", OK, f"virtual environment {target.prefix}")
    if facts.target.conda:
        return Finding("virtualenv", OK, f"conda environment {target.prefix}")
    torch = facts.target.torch
    specs = [f"torch=={torch.public_version}" if torch else "torch"]
    specs += [f"{p.name}=={p.public_version}" for p in _companions(facts)]
    fix = f"python{target.python_version} -m venv .venv && pip-gpu install --python .venv " + " ".join(
        map(shlex.quote, specs)
    )
    summary = f"{target.python} is a system Python outside any virtual environment"
    evidence = (f"sys.prefix == sys.base_prefix == {target.prefix}", f"chosen by {target.chosen_by}")
    if facts.machine.container:
        return Finding("virtualenv", WARNING, summary + " (usual in a container image)", evidence, fix)
    return Finding(
        "virtualenv",
        FAILURE,
        summary + ": torch installed there mixes with the system's packages",
        evidence,
        fix,
    )


def check_lock(facts: Facts) -> Finding:
    """When a pip-gpu lock family is here, the environment matches the lock for this host.

    The comparison itself is ``pip-gpu check``'s (gathered into ``facts.lock``); doctor only
    reports it.
    """
    lock = facts.lock
    if lock is None or not lock.files:
        return Finding("lock", OK, f"no pip-gpu lock (pylock.<variant>.toml) or uv.lock in {facts.cwd}")
    evidence = tuple(str(p) for p in lock.files)
    result = lock.check
    if result is None:
        if lock.error is None:
            return Finding("lock", WARNING, f"this check could not run: {lock.crash}")
        return Finding(
            "lock", FAILURE, f"the lock cannot be checked: {lock.error}", evidence, lock.error_hint
        )
    differences = list(result.differences)
    lock_file = result.lock_file
    if lock_file is not None and result.runs_here:
        evidence = (f"lock for this host: {lock_file}", *evidence)
    elif not result.runs_here:
        evidence = ("no lock here runs on this host (pip-gpu sync refuses too)", *evidence)
    if result.ok:
        return Finding(
            "lock",
            OK,
            f"the environment matches the lock{f' ({Path(lock_file).name})' if lock_file else ''}",
            evidence,
        )
    fix = result.fix
    if not result.runs_here:
        summary = "no lock here runs on this host" + (f": {'; '.join(differences)}" if differences else "")
        return Finding("lock", FAILURE, summary, (*evidence, *differences), str(fix))
    summary = "the environment does not match the lock" + (
        f": {'; '.join(differences)}" if differences else ""
    )
    return Finding("lock", FAILURE, summary, (*evidence, *differences), str(fix))


def check_cuda_build_has_a_gpu(facts: Facts) -> Finding:
    """A CUDA build with no NVIDIA GPU to use runs on the CPU only: not healthy (check and sync
    choose another build for this host too). Last in the chain, so that a cause found earlier
    (the driver, a container without devices) is the verdict."""
    torch = facts.target.torch
    host = facts.host
    if torch is None or torch.variant is None or not torch.variant.is_cuda:
        return Finding("cuda-build", OK, "no CUDA build of torch to run")
    if host.nvidia_gpus:
        return Finding("cuda-build", OK, f"the CUDA build has {_describe_host_gpus(host)} to run on")
    where = _not_found(facts)
    command, why, _ = _replacement(facts) if not host.driver_version else (None, "", None)
    return Finding(
        "cuda-build",
        FAILURE,
        f"{torch.describe()} is a CUDA {torch.cuda_version} build but {where}: it will run on the CPU",
        (why,) if why else (),
        command,
    )


_BYPASS = "`python -m pip` (and a pip run by its full path) bypasses the shims"


def check_shims(facts: Facts) -> Finding:
    """Whether plain ``pip`` goes through pip-gpu's shims; ``python -m pip`` never does."""
    machine = facts.machine
    shims = machine.shim_dirs
    if not shims:
        return Finding(
            "shims",
            OK,
            f"no pip-gpu shims on PATH: plain pip and uv do not check the torch build "
            f"(pip-gpu shim install adds them; {_BYPASS})",
        )
    first_pip = machine.first_pip
    if first_pip is not None and Path(first_pip).parent not in {Path(d) for d in shims}:
        entries = [entry or "." for entry in machine.path]
        return Finding(
            "shims",
            WARNING,
            f"pip-gpu's shims ({shims[0]}) are on PATH, but {first_pip} comes first (an activated venv?): "
            f"plain pip bypasses them",
            (f"PATH: {os.pathsep.join(entries)}",),
            'eval "$(pip-gpu shim init bash)" (or zsh, fish, powershell): its hook keeps the shims first',
        )
    return Finding("shims", OK, f"pip and uv go through pip-gpu's shims ({shims[0]}); {_BYPASS}")


CHECKS: tuple[Callable[[Facts], Finding], ...] = (
    check_torch_copies,
    check_torch,
    check_family,
    check_driver,
    check_gpu_architecture,
    check_nvml,
    check_cuda_visible_devices,
    check_container,
    check_wsl,
    check_ld_library_path,
    check_virtualenv,
    check_lock,
    check_shims,
    check_cuda_build_has_a_gpu,
)


def check_import(facts: Facts) -> Finding:
    """What importing torch did: is_available(), the device count, a tensor op on GPU 0."""
    if facts.target.torch is None:
        return Finding("import", SKIPPED, "torch is not installed")
    done = facts.torch_import
    if done is None:
        return Finding("import", SKIPPED, "torch was not imported")
    if done.timed_out:
        return Finding(
            "import",
            FAILURE,
            f"importing torch and initialising CUDA took longer than {done.timeout_s:g} s",
            (),
            "check `dmesg` for NVRM/Xid errors and whether `nvidia-smi` answers",
        )
    if done.launch_error is not None:
        return Finding(
            "import", FAILURE, f"{facts.target.target.python} could not be run: {done.launch_error}"
        )
    stderr = done.stderr
    if not done.reported:
        return Finding(
            "import", FAILURE, f"importing torch crashed the interpreter (exit {done.returncode})", stderr
        )
    if done.error is not None:
        return Finding("import", FAILURE, f"importing torch failed: {done.error}", stderr)
    evidence = (
        f"torch {done.version}: torch.cuda.is_available() = {done.available}, "
        f"device_count() = {done.device_count}",
        *stderr,
    )
    gpus = facts.host.visible_nvidia_gpus
    if done.available and done.device_count:
        return Finding(
            "import",
            OK,
            f"torch.cuda.is_available() is True: {done.device_count} device(s), {done.device}; "
            f"a tensor op on cuda:0 gave {done.tensor}",
            evidence,
        )
    if gpus:
        return Finding(
            "import",
            FAILURE,
            f"torch.cuda.is_available() is False although {len(gpus)} NVIDIA GPU(s) are visible"
            + (f": {stderr[-1]}" if stderr else ""),
            evidence,
        )
    return Finding(
        "import", OK, "torch imports; torch.cuda.is_available() is False, as expected here", evidence
    )


def diagnose(
    facts: Facts,
    *,
    run_import: bool = False,
    checks: Sequence[Callable[[Facts], Finding]] = CHECKS,
) -> Report:
    """Run every check over the facts, and with ``run_import`` report what importing torch did."""
    findings = [_run_check(check, facts) for check in checks]
    if run_import:
        findings.append(_run_check(check_import, facts))
    findings = [replace(f, fix=_for_the_same_host(facts, f.fix)) if f.fix else f for f in findings]
    return Report(
        tuple(findings), _healthy_summary(facts), facts.target.target, facts.host, facts.compiled_archs
    )


# pip-gpu's commands that decide for a host (all take the host flags); sync and check also read
# the target interpreter (--python)
_HOST_COMMAND = re.compile(r"\bpip-gpu (install|sync|check|lock)\b")


def _for_the_same_host(facts: Facts, fix: str) -> str:
    """A fix names the host and the interpreter doctor checked: the host flags as given (a
    command without them would decide for this machine), and --python where doctor had it."""

    def same(match: re.Match[str]) -> str:
        argv = list(facts.host_argv)
        if facts.python_flag and match.group(1) in ("sync", "check") and "--python" not in fix:
            argv = ["--python", facts.python_flag, *argv]
        return " ".join([match.group(0), *map(shlex.quote, argv)])

    return _HOST_COMMAND.sub(same, fix)


def _run_check(check: Callable[[Facts], Finding], facts: Facts) -> Finding:
    """One check; a crash in it is reported as a warning, not a traceback that hides the rest."""
    try:
        return check(facts)
    except Exception as error:  # doctor runs on broken machines: keep going
        name = check.__name__.replace("check_", "", 1).replace("_", "-")
        return Finding(name, WARNING, f"this check could not run: {error!r}")


def _healthy_summary(facts: Facts) -> str:
    torch = facts.target.torch
    what = torch.describe() if torch else "torch"
    if facts.host.nvidia_gpus:
        where = "the host the flags describe, with" if facts.gpu_facts_given else "this machine's"
        return f"{what} runs on {where} {_describe_host_gpus(facts.host)}"
    return f"{what}, and {_without_nvidia(facts)}"
