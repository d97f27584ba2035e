"""The loaded NVIDIA kernel module's version, from ``/proc/driver/nvidia/version``.

The kernel module is what actually runs CUDA; reading its version needs neither NVML nor
nvidia-smi, and comparing it with the userspace library's version explains a
"Driver/library version mismatch".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

__all__ = ["read_nvidia_proc_version"]

# "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023"
# "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.15  Release Build  (...)"
# The version is the first whitespace-delimited dotted number after "Kernel Module".
_VERSION_RE = re.compile(r"^\s*NVRM version:.*?\bKernel Module\b.*?(?<!\S)(\d+\.\d+(?:\.\d+)?)(?!\S)")


def read_nvidia_proc_version(proc_root: Path = Path("/proc")) -> Optional[str]:
    """The NVIDIA kernel module version (e.g. ``"535.104.05"``); None if absent or unreadable."""
    try:
        text = (proc_root / "driver" / "nvidia" / "version").read_text(encoding="utf-8", errors="replace")
    except (OSError, ValueError):
        return None
    lines = text.splitlines()
    if not lines:
        return None
    match = _VERSION_RE.match(lines[0])
    return match.group(1) if match else None
