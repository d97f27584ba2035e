"""What pip-gpu knows about CUDA drivers and PyTorch builds, read from ``data/knowledge.json``.

The facts live in one data file, each row with its source and a confidence, so a new CUDA or
torch release is a data change, not a code change. This module only types them.

File shape (``schema`` 1)::

    {
      "schema": 1,
      "pytorch_index": "https://download.pytorch.org/whl",
      "cuda_drivers": [          # minimum driver per CUDA minor version, per OS
        {"cuda": "12.4",
         "linux_minor_compat": "525.60.13", "windows_minor_compat": "527.41",
         "linux_toolkit": "550.54.14", "windows_toolkit": "551.61",
         "confidence": "high", "source": "..."}],
      "minor_version_compat": [  # the rule for a CUDA major: any minor runs on this driver
        {"cuda_major": 13, "linux": "580", "windows": "580", "confidence": "high", "source": "..."}],
      "driver_branches": [       # driver branch -> newest CUDA it supports
        {"branch": 535, "max_cuda": "12.2", "confidence": "high", "source": "..."}],
      "family": [                # the packages pip-gpu routes to the PyTorch index
        {"name": "torchvision", "local_label": true, "source": "..."}],
      "releases": [
        {"torch": "2.5", "versions": ["2.5.0", "2.5.1"],
         "python": ["3.9", "3.10", "3.11", "3.12"],
         "companions": {"torchvision": "0.20", "torchaudio": "2.5"},
         "pypi_default": "cu124",   # the build plain PyPI serves on linux-x86_64
         "pypi_defaults": {"linux-aarch64": "cpu", "windows-x86_64": "cpu", ...},  # per platform
         "python_only_in": {"3.13t": ["2.12.0"]},  # a Python some patch releases lack
         "companion_ranges": {"torchvision": ">=0.29.1"},  # where a companion pins a range
         "confidence": "high", "source": "...",
         "builds": [
           {"variant": "cu124", "platform": "linux-x86_64",
            "sass": ["5.0", "6.0", "7.0", "7.5", "8.0", "8.6", "9.0"], "ptx": [],
            "confidence": "high", "source": "..."},
           {"variant": "cpu", "platform": "linux-x86_64", "confidence": "high", "source": "..."},
           {"variant": "rocm6.2", "platform": "linux-x86_64", "gfx": [], ...},
           {"variant": "default", "platform": "macos-arm64", ...}]}],
      "gpus": [{"name": "NVIDIA A100", "compute_capability": "8.0",    # names for messages
                "architecture": "Ampere", "source": "..."}],
      "gpu_drivers": [{"compute_capability": "12.0", "architecture": "Blackwell (consumer)",
                       "first_cuda": "12.8", "linux": "570.26", "windows": "570.65", ...}],
      "amd_device_ids": [{"device_id": "74a1", "gfx_target": "gfx942", "name": "AMD Instinct MI300X",
                          "source": "..."}],   # PCI device ID -> gfx target (Kubernetes labels)
      "tegra": {"compute_capabilities": ["5.3", "6.2", "7.2", "8.7", "11.0"],
                "jetson_index_hint": "...", "source": "..."}
    }

Pythons are ``"3.12"``; a free-threaded build is its own target, ``"3.14t"`` (wheels tagged
``cp314t``).

A minimum driver of a bare branch (``"580"``) is what NVIDIA states for CUDA 13.x: any driver of
that branch or newer (``580.00`` on a Jetson Thor, ``616.92`` on Windows R615) meets it.

``sass``/``ptx`` of ``null`` mean "not known"; the decision then refuses to vouch for the
build on an NVIDIA GPU rather than guess.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Optional

from .host import ComputeCapability, parse_compute_capability
from .variant import Variant

if TYPE_CHECKING:  # `detect` reads the driver branches without packaging's specifiers
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

__all__ = [
    "Build",
    "CudaDriverRow",
    "DriverBranch",
    "FamilyMember",
    "GpuDriverRow",
    "Knowledge",
    "MinorVersionCompat",
    "Release",
    "Tegra",
    "cuda_of_variant",
    "load_knowledge",
    "variant_sort_key",
]


def cuda_of_variant(variant: str) -> Optional[str]:
    """``"cu124"`` -> ``"12.4"``; None for cpu/rocm/xpu/default and for a name that is no variant.

    Kept for callers that still hold variant names; a :class:`Variant` answers ``.cuda`` itself.
    """
    parsed = Variant.from_label(variant)
    return parsed.cuda if parsed is not None else None


def variant_sort_key(variant: str) -> tuple[int, tuple[int, ...]]:
    """:attr:`Variant.sort_key` of a name (newer CUDA or ROCm last; cpu/default first)."""
    parsed = Variant.from_label(variant)
    return parsed.sort_key if parsed is not None else (0, ())


class CudaDriverRow(NamedTuple):
    """The oldest driver that runs a given CUDA minor version, by OS."""

    cuda: str
    linux_minor_compat: Optional[str]
    windows_minor_compat: Optional[str]
    linux_toolkit: Optional[str]
    windows_toolkit: Optional[str]
    confidence: str
    source: str

    def minimum_driver(self, os: str) -> Optional[str]:
        """Minor-version compatibility minimum: what wheels bundling the CUDA runtime need."""
        return self.windows_minor_compat if os == "windows" else self.linux_minor_compat


class MinorVersionCompat(NamedTuple):
    """The oldest driver that runs every minor version of one CUDA major (NVIDIA's Table 1)."""

    cuda_major: int
    linux: str
    windows: Optional[str]
    confidence: str
    source: str

    def minimum_driver(self, os: str) -> Optional[str]:
        return self.windows if os == "windows" else self.linux


class DriverBranch(NamedTuple):
    branch: int
    max_cuda: str
    confidence: str
    source: str


class GpuDriverRow(NamedTuple):
    """The oldest driver that drives GPUs of a compute capability: the GA driver of the first
    CUDA toolkit that supports the architecture (an older driver predates the GPU)."""

    compute_capability: ComputeCapability
    architecture: str
    first_cuda: str
    linux: str
    windows: str
    confidence: str
    source: str

    def minimum_driver(self, os: str) -> str:
        return self.windows if os == "windows" else self.linux


class FamilyMember(NamedTuple):
    name: str
    local_label: bool  # wheels on the variant index carry "+cu124"-style labels
    source: str


@dataclass(frozen=True)
class Build:
    """One published build of a torch release for one platform."""

    variant: Variant
    platform: str
    sass: Optional[tuple[ComputeCapability, ...]]
    ptx: Optional[tuple[ComputeCapability, ...]]
    gfx: Optional[tuple[str, ...]]
    confidence: str
    source: str
    seen_on_index: bool = False  # its variant index was seen to serve it: unconfirmed rows then count

    def __post_init__(self) -> None:
        if type(self.variant) is not Variant:  # a name given by hand: parsed here, junk refused
            object.__setattr__(self, "variant", Variant(self.variant))

    @property
    def cuda(self) -> Optional[str]:
        return self.variant.cuda

    @property
    def confirmed(self) -> bool:
        """Confirmed by a source, or seen on its index; a row marked unconfirmed (or likely
        wrong) is neither, and does not beat a confirmed build (README "How pip-gpu decides")."""
        return self.confidence != "unconfirmed" or self.seen_on_index


@dataclass(frozen=True)
class Release:
    """A torch release series ("2.5") with its patch versions, companions and builds."""

    torch: str
    versions: tuple[str, ...]
    python: tuple[str, ...]
    companions: dict[str, str]
    builds: tuple[Build, ...]
    confidence: str
    source: str
    pypi_default: Optional[Variant] = None
    unconfirmed_versions: tuple[str, ...] = ()  # likely patch releases not confirmed from a source
    pypi_defaults: Optional[dict[str, Variant]] = None  # platform -> the build PyPI serves there
    python_only_in: Optional[dict[str, tuple[str, ...]]] = None  # "3.13t" -> ("2.12.0",)
    companion_ranges: Optional[dict[str, str]] = None  # "torchvision" -> ">=0.29.1", within the series

    @property
    def version(self) -> Version:
        from packaging.version import Version

        return Version(self.torch)

    def pypi_default_for(self, platform: str) -> Optional[Variant]:
        """The build plain ``pip install torch`` gets from PyPI on this platform."""
        if self.pypi_defaults is not None and platform in self.pypi_defaults:
            return self.pypi_defaults[platform]
        return self.pypi_default if platform == "linux-x86_64" else None

    def companion_specifier(self, name: str) -> Optional[SpecifierSet]:
        """The companion versions that pair with this release: its series, narrowed by a range.

        Since torchvision 0.29.1 companions require ``torch>=X`` instead of ``torch==X``; so
        0.29.1 and 0.29.2 pair with torch 2.15, 0.29.0 (``torch==2.14.0``) does not.
        """
        from packaging.specifiers import SpecifierSet

        series = self.companions.get(name)
        if series is None:
            return None
        spec = SpecifierSet(f"=={series}.*")
        extra = (self.companion_ranges or {}).get(name)
        return spec & SpecifierSet(extra) if extra else spec

    def has_python(self, python: str, version: Optional[str] = None) -> bool:
        """Whether wheels exist for this Python (``"3.12"``, ``"3.14t"``), for a patch if given."""
        if python not in self.python:
            return False
        only = (self.python_only_in or {}).get(python)
        return only is None or version is None or version in only


class Tegra(NamedTuple):
    """Jetson (L4T) integrated GPUs: PyTorch's aarch64 CUDA wheels are server-ARM builds."""

    compute_capabilities: tuple[ComputeCapability, ...]
    jetson_index_hint: str
    source: str


@dataclass(frozen=True)
class Knowledge:
    pytorch_index: str
    cuda_drivers: tuple[CudaDriverRow, ...]
    driver_branches: tuple[DriverBranch, ...]
    family: tuple[FamilyMember, ...]
    releases: tuple[Release, ...]  # newest first
    gpus: tuple[dict[str, str], ...]
    tegra: Optional[Tegra] = None
    minor_version_compat: tuple[MinorVersionCompat, ...] = ()
    amd_device_ids: tuple[dict[str, str], ...] = ()
    gpu_drivers: tuple[GpuDriverRow, ...] = ()

    def gpu_driver_row(self, cc: ComputeCapability) -> Optional[GpuDriverRow]:
        """The minimum driver for GPUs of exactly this compute capability; None when unknown."""
        return next((row for row in self.gpu_drivers if row.compute_capability == cc), None)

    def gpu_names_for(self, cc: ComputeCapability) -> tuple[str, ...]:
        """Product names with this compute capability, for messages (decisions use the number)."""
        wanted = f"{cc[0]}.{cc[1]}"
        return tuple(g["name"] for g in self.gpus if g.get("compute_capability") == wanted)

    def gpu_generation_for(self, cc: ComputeCapability) -> Optional[str]:
        """The architecture the GPU table names for this capability (``(10, 7)`` -> ``Rubin``),
        for messages; the shortest where rows differ (12.0: ``Blackwell``); None when unknown."""
        return self._gpu_generations.get(f"{cc[0]}.{cc[1]}")

    @cached_property
    def _gpu_generations(self) -> dict[str, str]:
        """Compute capability (``"10.7"``) -> :meth:`gpu_generation_for`'s answer, read from the
        GPU table once: a decision asks it of every candidate build."""
        names: dict[str, set[str]] = {}
        for g in self.gpus:
            if g.get("compute_capability") and g.get("architecture"):
                names.setdefault(g["compute_capability"], set()).add(g["architecture"])
        return {cc: min(found, key=lambda n: (len(n), n)) for cc, found in names.items()}

    def amd_gpu_for_device_id(self, device_id: str) -> Optional[dict[str, str]]:
        """The AMD GPU (``gfx_target``, ``name``) of a PCI device ID (``"74a1"``, ``"0x74A1"``)."""
        wanted = device_id.strip().lower().removeprefix("0x")
        return next((row for row in self.amd_device_ids if row["device_id"] == wanted), None)

    def cuda_row(self, cuda: str) -> Optional[CudaDriverRow]:
        for row in self.cuda_drivers:
            if row.cuda == cuda:
                return row
        return None

    def minimum_driver_for(self, cuda: str, os: str) -> Optional[str]:
        row = self.cuda_row(cuda)
        return row.minimum_driver(os) if row else None

    def minimum_driver_for_major(self, cuda_major: int, os: str) -> Optional[str]:
        """The minor-version-compatibility floor of a CUDA major (13 -> ``"580"``, a branch).

        The rule for a CUDA minor the file has no row for (``cu134`` on an index before the
        file knows it); None for a major NVIDIA's table does not cover (CUDA 14), which is
        refused rather than guessed.
        """
        for rule in self.minor_version_compat:
            if rule.cuda_major == cuda_major:
                return rule.minimum_driver(os)
        return None

    def max_cuda_for_driver(self, driver_version: str) -> Optional[str]:
        """The newest CUDA a driver supports, from its branch (``535.104.05`` -> ``12.2``)."""
        try:
            branch = int(driver_version.split(".")[0])
        except ValueError:
            return None
        best: Optional[DriverBranch] = None
        for row in self.driver_branches:
            if row.branch <= branch and (best is None or row.branch > best.branch):
                best = row
        return best.max_cuda if best else None

    def family_member(self, name: str) -> Optional[FamilyMember]:
        from .pins import canonical_name

        wanted = canonical_name(name)
        for member in self.family:
            if canonical_name(member.name) == wanted:
                return member
        return None

    def release(self, series: str) -> Optional[Release]:
        for release in self.releases:
            if release.torch == series:
                return release
        return None

    def variants(self) -> list[Variant]:
        """Every variant some release publishes, cpu/default first, newest CUDA last."""
        found = {b.variant for r in self.releases for b in r.builds}
        return sorted(found, key=lambda v: v.sort_key)


def _ccs(
    values: Optional[list[str]], seen: Optional[dict[tuple[str, ...], tuple[ComputeCapability, ...]]] = None
) -> Optional[tuple[ComputeCapability, ...]]:
    """Compute capabilities of a list; ``seen`` shares the tuple among the builds that list the
    same architectures (most builds of a release do), so loading parses each list once."""
    if values is None:
        return None
    key = tuple(values)
    if seen is not None and key in seen:
        return seen[key]
    parsed = tuple(parse_compute_capability(v) for v in values)
    if seen is not None:
        seen[key] = parsed
    return parsed


def knowledge_from_dict(data: dict[str, Any]) -> Knowledge:
    if data.get("schema") != 1:
        raise ValueError(f"unsupported knowledge schema {data.get('schema')!r}")
    releases = []
    seen: dict[tuple[str, ...], tuple[ComputeCapability, ...]] = {}
    for rel in data["releases"]:
        builds = tuple(
            Build(
                variant=Variant(b["variant"]),
                platform=b["platform"],
                sass=_ccs(b.get("sass"), seen),
                ptx=_ccs(b.get("ptx"), seen),
                gfx=tuple(b["gfx"]) if b.get("gfx") is not None else None,
                confidence=b.get("confidence", "high"),
                source=b.get("source", rel.get("source", "")),
            )
            for b in rel["builds"]
        )
        releases.append(
            Release(
                torch=rel["torch"],
                versions=tuple(rel.get("versions", ())),
                python=tuple(rel["python"]),
                companions=dict(rel.get("companions", {})),
                builds=builds,
                confidence=rel.get("confidence", "high"),
                source=rel.get("source", ""),
                pypi_default=Variant(rel["pypi_default"]) if rel.get("pypi_default") else None,
                unconfirmed_versions=tuple(rel.get("unconfirmed_versions", ())),
                pypi_defaults={k: Variant(v) for k, v in rel["pypi_defaults"].items()}
                if "pypi_defaults" in rel
                else None,
                python_only_in={k: tuple(v) for k, v in rel["python_only_in"].items()}
                if "python_only_in" in rel
                else None,
                companion_ranges=dict(rel["companion_ranges"]) if "companion_ranges" in rel else None,
            )
        )
    releases.sort(key=lambda r: r.version, reverse=True)
    return Knowledge(
        pytorch_index=data["pytorch_index"].rstrip("/"),
        cuda_drivers=tuple(
            CudaDriverRow(
                cuda=row["cuda"],
                linux_minor_compat=row.get("linux_minor_compat"),
                windows_minor_compat=row.get("windows_minor_compat"),
                linux_toolkit=row.get("linux_toolkit"),
                windows_toolkit=row.get("windows_toolkit"),
                confidence=row.get("confidence", "high"),
                source=row["source"],
            )
            for row in data["cuda_drivers"]
        ),
        driver_branches=tuple(
            DriverBranch(
                branch=int(row["branch"]),
                max_cuda=row["max_cuda"],
                confidence=row.get("confidence", "high"),
                source=row["source"],
            )
            for row in data["driver_branches"]
        ),
        family=tuple(
            FamilyMember(name=m["name"], local_label=bool(m["local_label"]), source=m["source"])
            for m in data["family"]
        ),
        releases=tuple(releases),
        gpus=tuple(dict(g) for g in data.get("gpus", [])),
        amd_device_ids=tuple(dict(row) for row in data.get("amd_device_ids", [])),
        minor_version_compat=tuple(
            MinorVersionCompat(
                cuda_major=int(row["cuda_major"]),
                linux=row["linux"],
                windows=row.get("windows"),
                confidence=row.get("confidence", "high"),
                source=row["source"],
            )
            for row in data.get("minor_version_compat", [])
        ),
        tegra=Tegra(
            compute_capabilities=tuple(
                parse_compute_capability(c) for c in data["tegra"]["compute_capabilities"]
            ),
            jetson_index_hint=data["tegra"]["jetson_index_hint"],
            source=data["tegra"]["source"],
        )
        if "tegra" in data
        else None,
        gpu_drivers=tuple(
            GpuDriverRow(
                compute_capability=parse_compute_capability(row["compute_capability"]),
                architecture=row["architecture"],
                first_cuda=row["first_cuda"],
                linux=row["linux"],
                windows=row["windows"],
                confidence=row.get("confidence", "high"),
                source=row["source"],
            )
            for row in data.get("gpu_drivers", [])
        ),
    )


def load_knowledge(path: Optional[str] = None) -> Knowledge:
    """The shipped knowledge file, or another one: ``path``, else ``$PIP_GPU_KNOWLEDGE``."""
    return _load(path or os.environ.get("PIP_GPU_KNOWLEDGE") or None)


@cache
def _load(path: Optional[str]) -> Knowledge:
    if path is not None:
        text = Path(path).read_text(encoding="utf-8")
    else:
        shipped = Path(__file__).with_name("data") / "knowledge.json"
        if shipped.is_file():  # a plain install: skip importlib.resources (its readers, zipfile)
            text = shipped.read_text(encoding="utf-8")
        else:  # pragma: no cover - a zipped package
            from importlib import resources

            text = resources.files("pip_gpu").joinpath("data/knowledge.json").read_text("utf-8")
    return knowledge_from_dict(json.loads(text))
