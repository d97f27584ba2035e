"""What a machine is, as far as choosing a PyTorch build goes.

Plain frozen values: detection (``pip_gpu.detect``) fills them in, flags may override them,
and the decision core reads them. Every fact names where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Optional

__all__ = [
    "AmdGpu",
    "ComputeCapability",
    "HostFlags",
    "HostProblem",
    "HostProfile",
    "IntelGpu",
    "NvidiaGpu",
    "driver_at_least",
    "parse_amd_gfx_target",
    "parse_compute_capability",
]

ComputeCapability = tuple[int, int]


@dataclass(frozen=True)
class HostFlags:
    """Target-host facts given instead of detected (``--driver``, ``--compute-capability``, ...).

    Raw, as typed: :func:`pip_gpu.detect.host_for` checks them, merges the ``PIP_GPU_*``
    variables and detects the rest. The default is "detect everything".
    """

    driver: Optional[str] = None
    compute_capabilities: tuple[str, ...] = ()
    no_gpu: bool = False
    platform: Optional[str] = None
    arch: Optional[str] = None
    python_version: Optional[str] = None
    amd_gfx: tuple[str, ...] = ()  # AMD GPUs by LLVM gfx target (``--amd-gfx gfx1100``)

    def as_argv(self) -> tuple[str, ...]:
        """The flags that give these facts again: a command pip-gpu suggests describes the same host."""
        argv: list[str] = []
        if self.driver is not None:
            argv += ["--driver", self.driver]
        for value in self.compute_capabilities:
            argv += ["--compute-capability", value]
        for value in self.amd_gfx:
            argv += ["--amd-gfx", value]
        if self.no_gpu:
            argv.append("--no-gpu")
        for flag, given in (
            ("--platform", self.platform),
            ("--arch", self.arch),
            ("--python-version", self.python_version),
        ):
            if given is not None:
                argv += [flag, given]
        return tuple(argv)


@lru_cache(maxsize=256)
def driver_at_least(driver: str, minimum: str) -> bool:
    """Whether NVIDIA driver ``driver`` is ``minimum`` or newer (535.104.05 >= 525.60.13).

    Driver versions are dotted numbers, so PEP 440 ordering compares them correctly; one
    that does not parse is never new enough. Remembered: a decision asks it of every
    candidate build (hundreds for ``explain torch``), of a handful of pairs.
    """
    from packaging.version import InvalidVersion, Version

    try:
        return Version(driver) >= Version(minimum)
    except InvalidVersion:
        return False


def parse_compute_capability(text: str) -> ComputeCapability:
    """``"8.6"``, ``"sm_86"`` or ``"86"`` -> ``(8, 6)``; ValueError otherwise."""
    raw = text.strip().lower()
    if len(raw) > 16 or not raw.isascii():  # "sm_120a" is 7; a 5,000-digit major is no GPU
        raise ValueError(f"not a compute capability: {text[:20]!r}{'...' if len(text) > 20 else ''}")
    for prefix in ("sm_", "compute_"):
        if raw.startswith(prefix):
            raw = raw[len(prefix) :]
            raw = raw[:-1] if raw.endswith(("a", "f")) else raw
            if raw.isdigit() and 2 <= len(raw) <= 4:
                return int(raw[:-1]), int(raw[-1])
            raise ValueError(f"not a compute capability: {text!r}")
    if "." in raw:
        major, _, minor = raw.partition(".")
        if major.isdigit() and len(major) <= 3 and minor.isdigit() and len(minor) == 1:
            return int(major), int(minor)
    elif raw.isdigit() and 2 <= len(raw) <= 4:
        return int(raw[:-1]), int(raw[-1])
    raise ValueError(f"not a compute capability: {text!r} (expected MAJOR.MINOR such as 8.6)")


def parse_amd_gfx_target(text: str) -> str:
    """``"gfx1100"``, ``"GFX90a"`` or ``"gfx90a:sramecc+:xnack-"`` -> ``"gfx90a"``; ValueError otherwise.

    An AMD GPU's LLVM processor name, as ``rocminfo`` and ``amd-smi`` print it (LLVM
    AMDGPUUsage, "Processors"): ``gfx`` then the major version and two hex digits (minor,
    stepping). Target features after ``:`` do not change which ROCm build lists it.
    """
    raw = text.strip().lower().split(":", 1)[0]
    body = raw[3:] if raw.startswith("gfx") else ""
    if 3 <= len(body) <= 4 and body[:-2].isdigit() and all(c in "0123456789abcdef" for c in body[-2:]):
        return raw
    raise ValueError(f"not an AMD gfx target: {text!r} (expected a name such as gfx1100 or gfx90a)")


def format_compute_capability(cc: ComputeCapability) -> str:
    return f"{cc[0]}.{cc[1]}"


@dataclass(frozen=True)
class NvidiaGpu:
    """One NVIDIA GPU as NVML (or a flag) reports it."""

    index: int
    name: str
    compute_capability: ComputeCapability
    source: str
    memory_total_mib: Optional[int] = None
    uuid: Optional[str] = None
    visible: bool = True  # False when CUDA_VISIBLE_DEVICES hides it from the target process


@dataclass(frozen=True)
class AmdGpu:
    """An AMD GPU from the ROCm KFD topology (its LLVM gfx target decides ROCm support)."""

    gfx_target: str  # e.g. "gfx90a"
    name: str
    source: str


@dataclass(frozen=True)
class IntelGpu:
    """An Intel GPU found on the PCI bus (candidate for PyTorch's XPU builds)."""

    pci_device_id: str  # e.g. "0x56a0"
    name: str
    discrete: bool
    source: str


@dataclass(frozen=True)
class HostProblem:
    """Something detection ran into: what happened, and what the user can do."""

    code: str  # stable identifier, e.g. "nvml-driver-mismatch"
    message: str
    hint: str = ""


@dataclass(frozen=True)
class HostProfile:
    """The target host: platform, Python, NVIDIA driver and GPUs, other accelerators."""

    os: str  # "linux" | "windows" | "macos"
    arch: str  # "x86_64" | "aarch64" | "arm64"
    python_version: str  # "3.11"; "3.14t" for a free-threaded (no-GIL) build, a target of its own
    libc: Optional[str] = None  # "glibc 2.36" | "musl 1.2" | None
    driver_version: Optional[str] = None  # "535.104.05"
    cuda_driver_version: Optional[str] = None  # "12.2": the newest CUDA the driver supports
    nvidia_gpus: tuple[NvidiaGpu, ...] = ()
    amd_gpus: tuple[AmdGpu, ...] = ()
    intel_gpus: tuple[IntelGpu, ...] = ()
    cuda_visible_devices: Optional[str] = None
    sources: dict[str, str] = field(default_factory=dict)
    problems: tuple[HostProblem, ...] = ()
    tegra: Optional[str] = None  # evidence of a Jetson (L4T) board, e.g. "/etc/nv_tegra_release: R36"

    @property
    def free_threaded(self) -> bool:
        return self.python_version.endswith("t")

    @property
    def python_release(self) -> str:
        """``"3.14"`` for both 3.14 and 3.14t: what PEP 508 ``python_version`` markers see."""
        return self.python_version.rstrip("t")

    @property
    def visible_nvidia_gpus(self) -> tuple[NvidiaGpu, ...]:
        return tuple(gpu for gpu in self.nvidia_gpus if gpu.visible)

    @property
    def platform_tag(self) -> str:
        """The platform key the knowledge file uses: ``linux-x86_64``, ``windows-x86_64``..."""
        arch = "arm64" if self.os == "macos" and self.arch in ("aarch64", "arm64") else self.arch
        if self.os != "macos" and arch == "arm64":
            arch = "aarch64"
        return f"{self.os}-{arch}"

    def with_changes(self, **changes: Any) -> HostProfile:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The shape ``pip-gpu detect --json`` prints (and ``explain --json`` embeds)."""
        return {
            "os": self.os,
            "arch": self.arch,
            "libc": self.libc,
            "python_version": self.python_version,
            "driver_version": self.driver_version,
            "cuda_driver_version": self.cuda_driver_version,
            "cuda_visible_devices": self.cuda_visible_devices,
            "nvidia_gpus": [
                {
                    "index": gpu.index,
                    "name": gpu.name,
                    "compute_capability": format_compute_capability(gpu.compute_capability),
                    "memory_total_mib": gpu.memory_total_mib,
                    "uuid": gpu.uuid,
                    "visible": gpu.visible,
                    "source": gpu.source,
                }
                for gpu in self.nvidia_gpus
            ],
            "amd_gpus": [
                {"gfx_target": gpu.gfx_target, "name": gpu.name, "source": gpu.source}
                for gpu in self.amd_gpus
            ],
            "intel_gpus": [
                {
                    "pci_device_id": gpu.pci_device_id,
                    "name": gpu.name,
                    "discrete": gpu.discrete,
                    "source": gpu.source,
                }
                for gpu in self.intel_gpus
            ],
            "sources": dict(sorted(self.sources.items())),
            "problems": [{"code": p.code, "message": p.message, "hint": p.hint} for p in self.problems],
            "tegra": self.tegra,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HostProfile:
        """Inverse of :meth:`to_json` (recorded fixtures, ``--host-file``)."""
        return cls(
            os=data["os"],
            arch=data["arch"],
            libc=data.get("libc"),
            python_version=data["python_version"],
            driver_version=data.get("driver_version"),
            cuda_driver_version=data.get("cuda_driver_version"),
            cuda_visible_devices=data.get("cuda_visible_devices"),
            nvidia_gpus=tuple(
                NvidiaGpu(
                    index=g["index"],
                    name=g["name"],
                    compute_capability=parse_compute_capability(g["compute_capability"]),
                    memory_total_mib=g.get("memory_total_mib"),
                    uuid=g.get("uuid"),
                    visible=g.get("visible", True),
                    source=g.get("source", "recorded"),
                )
                for g in data.get("nvidia_gpus", [])
            ),
            amd_gpus=tuple(
                AmdGpu(gfx_target=g["gfx_target"], name=g["name"], source=g.get("source", ""))
                for g in data.get("amd_gpus", [])
            ),
            intel_gpus=tuple(
                IntelGpu(
                    pci_device_id=g["pci_device_id"],
                    name=g["name"],
                    discrete=g.get("discrete", True),
                    source=g.get("source", ""),
                )
                for g in data.get("intel_gpus", [])
            ),
            sources=dict(data.get("sources", {})),
            problems=tuple(
                HostProblem(code=p["code"], message=p["message"], hint=p.get("hint", ""))
                for p in data.get("problems", [])
            ),
            tegra=data.get("tegra"),
        )
