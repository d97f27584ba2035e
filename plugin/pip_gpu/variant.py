"""A PyTorch build variant: the name of an index and of a wheel's local label.

``cu130``, ``rocm6.4``, ``xpu``, ``cpu`` name both ``https://download.pytorch.org/whl/<name>``
and the ``+<name>`` label of the wheels there. ``default`` is PyPI's own build (no label,
no PyTorch index). A name is parsed once, here; the rest of pip-gpu asks the value what it is
instead of testing string prefixes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from .errors import UsageError

__all__ = ["DEFAULT", "Variant", "parse_variant"]

_CUDA = re.compile(r"cu(?P<major>\d\d)(?P<minor>\d)")  # cu118, cu124, cu130 (cu92 and older: not served)
_ROCM = re.compile(r"rocm(?P<version>\d+\.\d+(?:\.\d+)?)")  # rocm6.2, rocm5.7, rocm6.2.4
_KIND_ORDER = {"default": 0, "cpu": 0, "xpu": 1, "rocm": 2, "cuda": 3}


@dataclass(frozen=True)
class Variant:
    """One build variant. ``kind``: cuda, rocm, xpu, cpu or default; ``version``: the CUDA or
    ROCm version it is built for (``"13.0"``, ``"6.4"``), None for the others."""

    name: str
    kind: str
    version: Optional[str] = None

    def __str__(self) -> str:
        return self.name

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    @property
    def is_rocm(self) -> bool:
        return self.kind == "rocm"

    @property
    def has_index(self) -> bool:
        """Whether the build lives on a PyTorch variant index (all but PyPI's ``default``)."""
        return self.kind != "default"

    @property
    def cuda(self) -> Optional[str]:
        """``"12.4"`` for cu124; None for a build without CUDA."""
        return self.version if self.is_cuda else None

    @property
    def sort_key(self) -> tuple[int, tuple[int, ...]]:
        """cpu/default first, then xpu, ROCm, and CUDA last, each by version (newest last)."""
        numbers = tuple(int(part) for part in (self.version or "0").split("."))
        return (_KIND_ORDER[self.kind], numbers)

    @classmethod
    def from_label(cls, label: Optional[str]) -> Optional[Variant]:
        """The variant a wheel's local label names (``2.5.1+cu124`` -> cu124); None for no label
        or one that names no variant (``+git1234``)."""
        if not label:
            return None
        try:
            return parse_variant(label)
        except UsageError:
            return None


DEFAULT = Variant("default", "default")


def parse_variant(name: str) -> Variant:
    """``cu124`` -> CUDA 12.4; ``rocm6.2`` -> ROCm 6.2; ``xpu``, ``cpu``, ``default``.

    A name pip-gpu cannot read is bad input (exit 2), with the shapes it accepts.
    """
    text = name.strip().lower()
    if text in ("cpu", "xpu"):
        return Variant(text, text)
    if text == "default":
        return DEFAULT
    cuda = _CUDA.fullmatch(text)
    if cuda:
        return Variant(text, "cuda", f"{int(cuda['major'])}.{cuda['minor']}")
    rocm = _ROCM.fullmatch(text)
    if rocm:
        return Variant(text, "rocm", rocm["version"])
    raise UsageError(
        f"{name!r} is not a PyTorch build variant",
        "name one as the PyTorch index does: cu130, cu126, rocm6.4, xpu or cpu",
    )
