"""AMD and Intel GPUs, NVIDIA device nodes and kernel modules, read straight from sysfs/procfs/dev.

These need no vendor library, so they work in slim containers and never load a driver. Every
reader treats an unreadable or malformed file as absent: a half-mounted ``/sys`` must not stop
detection, it just finds less.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..host import AmdGpu, IntelGpu

__all__ = [
    "decode_gfx_target_version",
    "find_amd_gpus",
    "find_intel_gpus",
    "loaded_kernel_modules",
    "nvidia_device_nodes",
    "nvidia_pci_devices",
]

_KFD_NODES = Path("class/kfd/kfd/topology/nodes")
_PCI_DEVICES = Path("bus/pci/devices")

# Names the KFD ``name`` file can hold that say nothing about the product.
_UNINFORMATIVE_AMD_NAMES = frozenset({"", "ip discovery"})

_INTEL_VENDOR = 0x8086
_NVIDIA_VENDOR = 0x10DE
_PCI_CLASS_DISPLAY = 0x03

# Discrete Intel GPU device-id families, from the Linux kernel's
# include/drm/intel/pciids.h (INTEL_DG2_IDS, INTEL_ATS_M_IDS, INTEL_PVC_IDS) and
# include/drm/intel/xe_pciids.h (INTEL_BMG_IDS). (mask, value): id & mask == value.
# DG1 (Iris Xe MAX, 0x4905) is discrete too but left out: PyTorch's XPU builds do not support it.
_INTEL_DISCRETE_FAMILIES: tuple[tuple[int, int, str], ...] = (
    (0xFF00, 0x5600, "DG2: Arc A-series, Arc Pro A-series, Data Center GPU Flex (0x56c*)"),
    (0xFFE0, 0xE200, "BMG: Arc B-series (0xe20x, 0xe21x)"),
    (0xFFF0, 0x0BD0, "PVC: Data Center GPU Max"),
)

# A few well-known products for readable output; everything else is "Intel GPU <id>".
_INTEL_NAMES = {
    0x56A0: "Intel Arc A770",
    0x56A1: "Intel Arc A750",
    0x56A2: "Intel Arc A580",
    0x56A5: "Intel Arc A380",
    0x56A6: "Intel Arc A310",
    0x56C0: "Intel Data Center GPU Flex 170",
    0x56C1: "Intel Data Center GPU Flex 140",
    0x0BD5: "Intel Data Center GPU Max 1550",
    0x0BDA: "Intel Data Center GPU Max 1100",
    0xE20B: "Intel Arc B580",
    0xE20C: "Intel Arc B570",
}


def _read_text(path: Path) -> Optional[str]:
    """File contents, or None when missing, unreadable, a directory, or not text."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None


def _list_dir(path: Path) -> list[Path]:
    """Directory entries sorted by name; [] when the directory cannot be listed."""
    try:
        return sorted(path.iterdir(), key=lambda p: p.name)
    except (OSError, ValueError):
        return []


def _parse_int(text: Optional[str], base: int = 10) -> Optional[int]:
    if text is None:
        return None
    try:
        return int(text.strip(), base)
    except ValueError:
        return None


def _parse_kfd_properties(text: str) -> dict[str, int]:
    """KFD ``properties`` files are ``key value`` lines with integer values."""
    props: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            value = _parse_int(parts[1])
            if value is not None:
                props[parts[0]] = value
    return props


def decode_gfx_target_version(version: int) -> Optional[str]:
    """KFD's ``gfx_target_version`` (major*10000 + minor*100 + stepping) -> LLVM target name.

    Minor and stepping are single hex digits in the target name: 90010 -> ``gfx90a``,
    90402 -> ``gfx942``, 110000 -> ``gfx1100``. None for 0 (a CPU node) or an encoding we do not
    understand, rather than a made-up target.
    """
    if version <= 0:
        return None
    major, minor, stepping = version // 10000, (version // 100) % 100, version % 100
    if minor > 0xF or stepping > 0xF:
        return None
    return f"gfx{major}{minor:x}{stepping:x}"


def _kfd_node_key(path: Path) -> tuple[int, str]:
    return (int(path.name), "") if path.name.isdigit() else (1 << 30, path.name)


def find_amd_gpus(sys_root: Path = Path("/sys")) -> tuple[AmdGpu, ...]:
    """GPU nodes of the ROCm KFD topology; their gfx target decides which ROCm builds run.

    KFD is what the ROCm runtime itself enumerates, so a GPU listed here is one ROCm can see
    (``/dev/kfd`` permissions aside). CPU nodes (``simd_count 0``) are skipped.
    """
    nodes_dir = sys_root / _KFD_NODES
    gpus: list[AmdGpu] = []
    for node in sorted(_list_dir(nodes_dir), key=_kfd_node_key):
        text = _read_text(node / "properties")
        if text is None:
            continue
        props = _parse_kfd_properties(text)
        if props.get("simd_count", 0) == 0:
            continue
        gfx = decode_gfx_target_version(props.get("gfx_target_version", 0))
        if gfx is None:
            continue
        name = (_read_text(node / "name") or "").strip()
        if name.lower() in _UNINFORMATIVE_AMD_NAMES:
            name = f"AMD GPU ({gfx})"
        gpus.append(AmdGpu(gfx_target=gfx, name=name, source=f"sysfs:{node}"))
    return tuple(gpus)


def is_discrete_intel_device(device_id: int) -> bool:
    """Whether an Intel PCI device id belongs to a discrete GPU family (see the table's source)."""
    return any(device_id & mask == value for mask, value, _ in _INTEL_DISCRETE_FAMILIES)


def find_intel_gpus(sys_root: Path = Path("/sys")) -> tuple[IntelGpu, ...]:
    """Intel display-class PCI devices: candidates for PyTorch's XPU builds.

    Read from PCI sysfs rather than a vendor tool because none is needed (or usually installed)
    to tell an Arc card from an integrated GPU.
    """
    gpus: list[IntelGpu] = []
    for device in _list_dir(sys_root / _PCI_DEVICES):
        vendor = _parse_int(_read_text(device / "vendor"), 16)
        if vendor != _INTEL_VENDOR:
            continue
        pci_class = _parse_int(_read_text(device / "class"), 16)
        if pci_class is None or pci_class >> 16 != _PCI_CLASS_DISPLAY:
            continue
        device_id = _parse_int(_read_text(device / "device"), 16)
        if device_id is None:
            continue
        id_text = f"0x{device_id:04x}"
        gpus.append(
            IntelGpu(
                pci_device_id=id_text,
                name=_INTEL_NAMES.get(device_id, f"Intel GPU {id_text}"),
                discrete=is_discrete_intel_device(device_id),
                source=f"sysfs:{device}",
            )
        )
    return tuple(gpus)


def nvidia_device_nodes(dev_root: Path = Path("/dev")) -> tuple[str, ...]:
    """Names of ``/dev/nvidia*`` nodes, sorted.

    Lets diagnostics tell "container started without GPU access" (no nodes) from "driver
    problem" (nodes present, NVML fails).
    """
    return tuple(p.name for p in _list_dir(dev_root) if p.name.startswith("nvidia"))


def loaded_kernel_modules(proc_root: Path = Path("/proc")) -> frozenset[str]:
    """Module names from ``/proc/modules``; empty when unreadable.

    Tells ``nouveau`` (no CUDA possible) from ``nvidia`` when NVML is missing.
    """
    text = _read_text(proc_root / "modules")
    if text is None:
        return frozenset()
    return frozenset(line.split(maxsplit=1)[0] for line in text.splitlines() if line.strip())


def nvidia_pci_devices(sys_root: Path = Path("/sys")) -> tuple[str, ...]:
    """NVIDIA display controllers on the PCI bus, whatever driver is bound to them.

    ``"0000:01:00.0 [10de:2330] driver=nouveau"``. Tells "an NVIDIA GPU with no (or the wrong)
    driver" from "no NVIDIA GPU at all" when NVML cannot answer.
    """
    found: list[str] = []
    for device in _list_dir(sys_root / _PCI_DEVICES):
        if _parse_int(_read_text(device / "vendor"), 16) != _NVIDIA_VENDOR:
            continue
        pci_class = _parse_int(_read_text(device / "class"), 16)
        if pci_class is None or pci_class >> 16 != _PCI_CLASS_DISPLAY:
            continue
        device_id = _parse_int(_read_text(device / "device"), 16)
        ident = f"10de:{device_id:04x}" if device_id is not None else "10de:????"
        try:
            driver = (device / "driver").resolve(strict=True).name
        except (OSError, RuntimeError):
            driver = "none"
        found.append(f"{device.name} [{ident}] driver={driver}")
    return tuple(found)
