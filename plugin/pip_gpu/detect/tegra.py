"""Jetson boards: NVIDIA's integrated GPUs on L4T, told apart from server ARM (SBSA) machines.

PyTorch's aarch64 CUDA wheels are SBSA builds; on a Jetson they do not run, and NVML may not
even see the GPU. The board says what it is in two places: L4T writes ``/etc/nv_tegra_release``,
and the device tree's ``compatible`` strings name ``nvidia,tegra...`` (Linux kernel
``Documentation/devicetree/bindings/arm/tegra.yaml``). Both are read under overridable roots.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

__all__ = ["find_tegra"]


def _read(path: Path) -> Optional[bytes]:
    try:
        return path.read_bytes()[:4096]
    except (OSError, ValueError):
        return None


def find_tegra(root: Path, proc_root: Path, sys_root: Path) -> Optional[str]:
    """Evidence that this is a Jetson (Tegra) board, in words; None on anything else."""
    release = _read(root / "etc" / "nv_tegra_release")
    if release is not None:
        first = release.decode("utf-8", "replace").strip().splitlines()[:1]
        text = first[0].lstrip("# ").split(", GCID")[0] if first else ""
        return f"{root / 'etc' / 'nv_tegra_release'}: {text}".rstrip(": ")
    for tree in (proc_root / "device-tree", sys_root / "firmware" / "devicetree" / "base"):
        compatible = _read(tree / "compatible")
        if compatible is None:
            continue
        names = [n.decode("ascii", "replace") for n in compatible.split(b"\0") if n]
        tegra = [n for n in names if n.startswith("nvidia,tegra")]
        if tegra:
            return f"{tree / 'compatible'}: {tegra[0]}"
    return None
