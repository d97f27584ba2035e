"""The platform half of the host: operating system, CPU architecture, libc, Python."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

__all__ = ["current_arch", "current_libc", "current_os", "current_python_version", "normalize_arch"]

_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}


def current_os() -> str:
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "win32":
        return "windows"
    if sys.platform == "darwin":
        return "macos"
    return sys.platform


def normalize_arch(machine: str, os_name: str) -> str:
    """``AMD64`` -> ``x86_64``; Arm is ``arm64`` on macOS and ``aarch64`` elsewhere."""
    arch = _ARCH_ALIASES.get(machine.lower(), machine.lower())
    if arch == "aarch64" and os_name == "macos":
        return "arm64"
    return arch


def current_arch() -> str:
    # os.uname() is what platform.machine() reads on POSIX; the platform module itself (a
    # dozen regular expressions compiled on import) is left to the systems without it.
    if hasattr(os, "uname"):
        return normalize_arch(os.uname().machine, current_os())
    import platform

    return normalize_arch(platform.machine(), current_os())


def current_libc() -> Optional[str]:
    """``"glibc 2.36"`` or ``"musl"``: manylinux vs musllinux wheels depend on it."""
    if current_os() != "linux":
        return None
    try:
        value = os.confstr("CS_GNU_LIBC_VERSION")  # "glibc 2.36"
    except (AttributeError, ValueError, OSError):
        value = None
    if value:
        return value
    if any(Path("/lib").glob("ld-musl-*.so.1")):
        return "musl"
    return None


def current_python_version() -> str:
    """``"3.12"``, or ``"3.14t"`` for a free-threaded build (its wheels are tagged ``cp314t``)."""
    abiflags = getattr(sys, "abiflags", None)  # POSIX: "t" marks the free-threaded build
    if abiflags is not None:
        free_threaded = "t" in abiflags
    else:  # Windows: the build's configuration says it (reading it costs a module load)
        import sysconfig

        free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    suffix = "t" if free_threaded else ""
    return f"{sys.version_info[0]}.{sys.version_info[1]}{suffix}"
