"""Detection: find out what the host has. Each outside boundary is one module here.

``detect_host`` asks NVML first (the driver's own library), then ``/proc`` and ``nvidia-smi``
when NVML cannot answer, then sysfs for AMD and Intel GPUs. Facts given as flags or
``PIP_GPU_*`` variables replace the detected ones, so CI can decide for a fleet it is not on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import UsageError
from ..host import (
    AmdGpu,
    ComputeCapability,
    HostFlags,
    HostProblem,
    HostProfile,
    NvidiaGpu,
    parse_amd_gfx_target,
    parse_compute_capability,
)
from ..knowledge import Knowledge
from . import platform as host_platform

__all__ = ["HostOverrides", "apply_cuda_visible_devices", "detect_host", "host_for", "overrides_from_env"]

NVML_TIMEOUT_S = 2.0
NVIDIA_SMI_TIMEOUT_S = 2.0
OS_NAMES = ("linux", "windows", "macos")
ARCH_NAMES = ("x86_64", "aarch64", "arm64")


@dataclass(frozen=True)
class HostOverrides:
    """Facts given instead of detected (flags, or their ``PIP_GPU_*`` equivalents)."""

    driver: Optional[str] = None
    compute_capabilities: tuple[ComputeCapability, ...] = ()
    no_gpu: bool = False
    os: Optional[str] = None
    arch: Optional[str] = None
    python_version: Optional[str] = None
    origin: Mapping[str, str] = None  # type: ignore[assignment]  # fact -> "--driver" / "PIP_GPU_DRIVER"
    amd_gfx: tuple[str, ...] = ()  # the target's AMD GPUs, by gfx target

    def __post_init__(self) -> None:
        if self.origin is None:
            object.__setattr__(self, "origin", {})
        if self.no_gpu and (self.driver or self.compute_capabilities or self.amd_gfx):
            raise UsageError(
                "--no-gpu contradicts --driver/--compute-capability/--amd-gfx",
                "give either --no-gpu, or the driver and GPUs of the target host",
            )
        if self.os is not None and self.os not in OS_NAMES:
            raise UsageError(f"unknown platform {self.os!r}", f"use one of: {', '.join(OS_NAMES)}")
        if self.arch is not None and self.arch not in ARCH_NAMES:
            raise UsageError(f"unknown architecture {self.arch!r}", f"use one of: {', '.join(ARCH_NAMES)}")
        if self.driver is not None:
            parts = self.driver.split(".")
            # ASCII digits, as nvidia-smi prints them; 6 each at most (a 5,000-digit part once
            # reached int()'s limit on digits and the catch-all error)
            if not (1 <= len(parts) <= 3 and all(_number(p, 6) for p in parts)):
                raise UsageError(
                    f"{_shorten(self.driver)!r} is not an NVIDIA driver version",
                    "write it as nvidia-smi does: 535.104.05",
                )
        if self.python_version is not None:
            parts = self.python_version.removesuffix("t").split(".")
            if len(parts) != 2 or not all(_number(p, 3) for p in parts):
                raise UsageError(
                    f"{_shorten(self.python_version)!r} is not a Python version",
                    "write it as 3.11, or 3.14t for a free-threaded Python",
                )

    @property
    def gives_nvidia_facts(self) -> bool:
        return self.no_gpu or self.driver is not None or bool(self.compute_capabilities)

    @property
    def gives_gpu_facts(self) -> bool:
        """The target's GPUs are given (NVIDIA, AMD or none): this machine's are not looked at."""
        return self.gives_nvidia_facts or bool(self.amd_gfx)


def _number(text: str, digits: int) -> bool:
    """ASCII digits, at most ``digits`` of them."""
    return 0 < len(text) <= digits and text.isascii() and text.isdigit()


def _shorten(text: str) -> str:
    from ..ui import shorten

    return shorten(text, 40)


def parse_capabilities(values: list[str], origin: str) -> tuple[ComputeCapability, ...]:
    found: list[ComputeCapability] = []
    for value in values:
        for item in value.split(","):
            if not item.strip():
                continue
            try:
                found.append(parse_compute_capability(item))
            except ValueError as exc:
                raise UsageError(f"{origin}: {exc}", "for example: --compute-capability 8.6") from None
    return tuple(found)


def parse_gfx_targets(values: list[str], origin: str) -> tuple[str, ...]:
    """``["gfx1100,gfx90a", "gfx942"]`` -> each target once, in order; bad input is a UsageError."""
    found: list[str] = []
    for value in values:
        for item in value.split(","):
            if not item.strip():
                continue
            try:
                found.append(parse_amd_gfx_target(item))
            except ValueError as exc:
                raise UsageError(
                    f"{origin}: {exc}", "rocminfo or amd-smi names it; for example: --amd-gfx gfx1100"
                ) from None
    return tuple(found)


def _truthy(value: str, name: str) -> bool:
    word = value.strip().lower()
    if word in ("", "0", "false", "no", "off"):
        return False
    if word in ("1", "true", "yes", "on"):
        return True
    raise UsageError(f"{name}={value!r} is neither on nor off", f"set {name}=1, or unset it")


def overrides_from_env(
    env: Mapping[str, str],
    *,
    driver: Optional[str] = None,
    compute_capabilities: Optional[list[str]] = None,
    no_gpu: bool = False,
    os_name: Optional[str] = None,
    arch: Optional[str] = None,
    python_version: Optional[str] = None,
    amd_gfx: Optional[list[str]] = None,
) -> HostOverrides:
    """Flags first, then ``PIP_GPU_DRIVER``, ``PIP_GPU_COMPUTE_CAPABILITY``, ``PIP_GPU_AMD_GFX``,
    ``PIP_GPU_NO_GPU``.

    Flags win over the environment: ``--no-gpu`` hides the variables' GPU facts, and
    ``--driver``/``--compute-capability`` hide ``PIP_GPU_NO_GPU``. Flags that contradict each
    other, or variables that do with no flag to settle it, are refused.
    """
    origin: dict[str, str] = {}
    flag_gives_gpu = driver is not None or bool(compute_capabilities) or bool(amd_gfx)
    ccs: tuple[ComputeCapability, ...] = ()
    gfx: tuple[str, ...] = ()
    if amd_gfx:
        gfx = parse_gfx_targets(amd_gfx, "--amd-gfx")
        origin["amd_gpus"] = "--amd-gfx"
    if compute_capabilities:
        ccs = parse_capabilities(compute_capabilities, "--compute-capability")
        origin["nvidia_gpus"] = "--compute-capability"
    if driver is not None:
        origin["driver_version"] = "--driver"
    if no_gpu:
        origin["nvidia_gpus"] = "--no-gpu"  # HostOverrides refuses it next to --driver/-cc
    else:
        env_no_gpu = _truthy(env.get("PIP_GPU_NO_GPU", ""), "PIP_GPU_NO_GPU")
        if driver is None and env.get("PIP_GPU_DRIVER", "").strip():
            driver = env["PIP_GPU_DRIVER"].strip()
            origin["driver_version"] = "PIP_GPU_DRIVER"
        if not ccs and env.get("PIP_GPU_COMPUTE_CAPABILITY", "").strip():
            ccs = parse_capabilities([env["PIP_GPU_COMPUTE_CAPABILITY"]], "PIP_GPU_COMPUTE_CAPABILITY")
            origin["nvidia_gpus"] = "PIP_GPU_COMPUTE_CAPABILITY"
        if not gfx and env.get("PIP_GPU_AMD_GFX", "").strip():
            gfx = parse_gfx_targets([env["PIP_GPU_AMD_GFX"]], "PIP_GPU_AMD_GFX")
            origin["amd_gpus"] = "PIP_GPU_AMD_GFX"
        if env_no_gpu and not flag_gives_gpu:
            variables = ("PIP_GPU_DRIVER", "PIP_GPU_COMPUTE_CAPABILITY", "PIP_GPU_AMD_GFX")
            given = [name for name in variables if name in origin.values()]
            if given:
                raise UsageError(
                    f"PIP_GPU_NO_GPU={env['PIP_GPU_NO_GPU']} contradicts {' and '.join(given)}",
                    "unset one of them, or settle it with a flag (--no-gpu, or --driver and "
                    "--compute-capability, or --amd-gfx): flags win over the environment",
                )
            no_gpu = True
            origin["nvidia_gpus"] = "PIP_GPU_NO_GPU"
    if os_name:
        origin["os"] = "--platform"
    if arch:
        origin["arch"] = "--arch"
    if python_version:
        origin["python_version"] = "--python-version"
    return HostOverrides(
        driver=driver,
        compute_capabilities=ccs,
        no_gpu=no_gpu,
        os=os_name,
        arch=arch,
        python_version=python_version,
        origin=origin,
        amd_gfx=gfx,
    )


def apply_cuda_visible_devices(gpus: tuple[NvidiaGpu, ...], value: Optional[str]) -> tuple[NvidiaGpu, ...]:
    """Mark the GPUs a CUDA process will see under ``CUDA_VISIBLE_DEVICES``.

    CUDA reads a comma-separated list of indices or UUID prefixes and stops at the first
    entry it cannot match; ``-1`` or an empty value hides every GPU (CUDA C++ Programming
    Guide, "CUDA Environment Variables").
    """
    if value is None:
        return gpus
    visible: list[int] = []
    for raw in value.split(","):
        entry = raw.strip()
        match: Optional[NvidiaGpu] = None
        if entry.lstrip("-").isdigit():
            number = int(entry)
            match = next((g for g in gpus if g.index == number), None)
        elif entry:
            wanted = entry if entry.startswith(("GPU-", "MIG-")) else f"GPU-{entry}"
            hits = [g for g in gpus if g.uuid and g.uuid.startswith(wanted)]
            match = hits[0] if len(hits) == 1 else None
        if match is None or match.index in visible:
            break
        visible.append(match.index)
    return tuple(
        NvidiaGpu(
            index=g.index,
            name=g.name,
            compute_capability=g.compute_capability,
            source=g.source,
            memory_total_mib=g.memory_total_mib,
            uuid=g.uuid,
            visible=g.index in visible,
        )
        for g in gpus
    )


def detect_host(
    knowledge: Knowledge,
    overrides: HostOverrides = HostOverrides(),
    env: Optional[Mapping[str, str]] = None,
) -> HostProfile:
    """The host profile: detected facts, with the overridden ones replaced."""
    env = os.environ if env is None else env
    sources: dict[str, str] = {}
    problems: list[HostProblem] = []
    os_name = overrides.os or host_platform.current_os()
    sources["os"] = overrides.origin.get("os", "platform")
    arch = overrides.arch or host_platform.current_arch()
    sources["arch"] = overrides.origin.get("arch", "platform")
    python_version = overrides.python_version or host_platform.current_python_version()
    sources["python_version"] = overrides.origin.get("python_version", "running interpreter")
    other_machine = overrides.os is not None and overrides.os != host_platform.current_os()
    libc = None if other_machine else host_platform.current_libc()

    driver: Optional[str] = None
    cuda: Optional[str] = None
    gpus: tuple[NvidiaGpu, ...] = ()
    visible_env = env.get("CUDA_VISIBLE_DEVICES")
    if not overrides.gives_gpu_facts and not other_machine:
        driver, cuda, gpus, nvidia_sources, nvidia_problems = _detect_nvidia(env)
        sources.update(nvidia_sources)
        problems.extend(nvidia_problems)
    elif overrides.driver is None and overrides.compute_capabilities and not other_machine:
        driver, cuda, _, nvidia_sources, nvidia_problems = _detect_nvidia(env)
        sources.update(nvidia_sources)
        problems.extend(nvidia_problems)
    if overrides.driver is not None:
        driver = overrides.driver
        sources["driver_version"] = overrides.origin.get("driver_version", "--driver")
        cuda = knowledge.max_cuda_for_driver(driver)
        sources["cuda_driver_version"] = "driver branch table (knowledge file)"
    if overrides.compute_capabilities:
        gpus = tuple(
            NvidiaGpu(
                index=i,
                name=f"GPU {i}",
                compute_capability=cc,
                source=overrides.origin.get("nvidia_gpus", "--compute-capability"),
            )
            for i, cc in enumerate(overrides.compute_capabilities)
        )
        sources["nvidia_gpus"] = overrides.origin.get("nvidia_gpus", "--compute-capability")
        visible_env = None  # the given GPUs are the target's visible ones
    if overrides.no_gpu:
        driver, cuda, gpus = None, None, ()
        sources["nvidia_gpus"] = overrides.origin.get("nvidia_gpus", "--no-gpu")
    gpus = apply_cuda_visible_devices(gpus, visible_env)

    amd: tuple = ()  # type: ignore[type-arg]
    intel: tuple = ()  # type: ignore[type-arg]
    if overrides.amd_gfx:
        origin = overrides.origin.get("amd_gpus", "--amd-gfx")
        amd = tuple(AmdGpu(gfx_target=g, name="AMD GPU", source=origin) for g in overrides.amd_gfx)
        sources["amd_gpus"] = origin
    elif os_name == "linux" and not other_machine and not overrides.gives_nvidia_facts:
        from . import sysfs

        sys_root = Path(env.get("PIP_GPU_SYSFS_ROOT", "/sys"))
        amd = sysfs.find_amd_gpus(sys_root)
        intel = sysfs.find_intel_gpus(sys_root)
        sources["amd_gpus"] = sources["intel_gpus"] = f"sysfs ({sys_root})"
    tegra: Optional[str] = None
    if (
        os_name == "linux"
        and arch in ("aarch64", "arm64")
        and not other_machine
        and not overrides.gives_gpu_facts
    ):
        from .tegra import find_tegra

        tegra = find_tegra(
            Path(env.get("PIP_GPU_ROOT", "/")),
            Path(env.get("PIP_GPU_PROCFS_ROOT", "/proc")),
            Path(env.get("PIP_GPU_SYSFS_ROOT", "/sys")),
        )
        if tegra:
            sources["tegra"] = tegra
    return HostProfile(
        os=os_name,
        arch=host_platform.normalize_arch(arch, os_name),
        python_version=python_version,
        libc=libc,
        driver_version=driver,
        cuda_driver_version=cuda,
        nvidia_gpus=gpus,
        amd_gpus=amd,
        intel_gpus=intel,
        cuda_visible_devices=visible_env,
        sources=sources,
        problems=tuple(problems),
        tegra=tegra,
    )


def _detect_nvidia(
    env: Mapping[str, str],
) -> tuple[Optional[str], Optional[str], tuple[NvidiaGpu, ...], dict[str, str], list[HostProblem]]:
    """NVML, then /proc and nvidia-smi when NVML cannot answer."""
    from .nvml import library_name, query_nvml

    sources: dict[str, str] = {}
    problems: list[HostProblem] = []
    report = query_nvml(timeout_s=NVML_TIMEOUT_S)
    driver, cuda, gpus = report.driver_version, report.cuda_driver_version, report.gpus
    if driver:
        sources["driver_version"] = "nvml"
    if cuda:
        sources["cuda_driver_version"] = "nvml"
    if gpus or report.problem is None:
        sources["nvidia_gpus"] = "nvml"
    if report.problem is None:
        return driver, cuda, gpus, sources, problems
    if report.problem.code != "nvml-not-found":
        problems.append(report.problem)

    from .procfs import read_nvidia_proc_version

    proc_root = Path(env.get("PIP_GPU_PROCFS_ROOT", "/proc"))
    proc_driver = read_nvidia_proc_version(proc_root)
    if proc_driver and not driver:
        driver = proc_driver
        sources["driver_version"] = f"procfs ({proc_root}/driver/nvidia/version)"
    if report.problem.code == "nvml-not-found" and not proc_driver:
        # no NVIDIA driver: no NVIDIA GPU; nvidia-smi needs that driver too, so it is not run
        import shutil

        smi_path = shutil.which("nvidia-smi", path=env.get("PATH"))
        looked_smi = "nvidia-smi (not on PATH)"
        if smi_path is not None:
            looked_smi = f"nvidia-smi ({smi_path}, not run without a driver)"
        sources["driver_version"] = (
            f"not found: looked in NVML ({library_name()}: not found), "
            f"{proc_root}/driver/nvidia/version (absent), {looked_smi}"
        )
        return driver, cuda, gpus, sources, problems

    from .nvidia_smi import query_nvidia_smi

    smi = query_nvidia_smi(timeout_s=NVIDIA_SMI_TIMEOUT_S)
    reportable = smi.problem is not None and smi.problem.code != "nvidia-smi-not-found"
    if smi.problem is not None and reportable and all(p.code != smi.problem.code for p in problems):
        problems.append(smi.problem)
    if smi.driver_version and not driver:
        driver = smi.driver_version
        sources["driver_version"] = "nvidia-smi"
    if smi.cuda_driver_version and not cuda:
        cuda = smi.cuda_driver_version
        sources["cuda_driver_version"] = "nvidia-smi"
    if smi.gpus and not gpus:
        gpus = smi.gpus
        sources["nvidia_gpus"] = "nvidia-smi"
    if report.problem.code == "nvml-not-found" and proc_driver and not gpus:
        problems.append(report.problem)
    return driver, cuda, gpus, sources, problems


def host_for(flags: Optional[HostFlags] = None, env: Optional[Mapping[str, str]] = None) -> HostProfile:
    """The target host: ``flags`` first, then the ``PIP_GPU_*`` variables, then detection."""
    from ..knowledge import load_knowledge

    flags = flags or HostFlags()
    env = os.environ if env is None else env
    overrides = overrides_from_env(
        env,
        driver=flags.driver,
        compute_capabilities=list(flags.compute_capabilities) or None,
        no_gpu=flags.no_gpu,
        os_name=flags.platform,
        arch=flags.arch,
        python_version=flags.python_version,
        amd_gfx=list(flags.amd_gfx) or None,
    )
    return detect_host(load_knowledge(), overrides, env)
