"""A PyTorch build variant: the name of an index and of a wheel's local label.

``cu130``, ``rocm6.4``, ``xpu``, ``cpu`` name both ``https://download.pytorch.org/whl/<name>``
and the ``+<name>`` label of the wheels there. ``default`` is PyPI's own build (no label,
no PyTorch index). A name is parsed once, where it enters pip-gpu (the knowledge file,
``--variant``, a local label, an index URL); the rest asks the value what it is instead of
testing string prefixes.

A :class:`Variant` *is* its name: a ``str`` subclass, so ``str(v)``, JSON, TOML and f-strings
print exactly the name, and code that still compares ``variant == "cpu"`` keeps working while
it is converted. It cannot be built from junk: ``Variant("cu12x")`` is a usage error.
"""

from __future__ import annotations

import re
from typing import Optional

from .errors import UsageError

__all__ = [
    "CHANNELS",
    "CPU",
    "DEFAULT",
    "Variant",
    "append_path",
    "channel_index",
    "parse_variant",
    "variant_index_url",
]

CHANNELS = ("stable", "nightly", "test")
"""PyTorch's channels: releases at ``<base>/<variant>``, nightlies at ``<base>/nightly/<variant>``,
release candidates at ``<base>/test/<variant>`` (pytorch.org "Get started"; test-infra)."""

_CUDA = re.compile(r"cu(?P<major>\d\d)(?P<minor>\d\d?)")  # cu118, cu130; cu92 and older: not served
_ROCM = re.compile(r"rocm(?P<version>\d+\.\d+(?:\.\d+)?)")  # rocm6.2, rocm5.7, rocm6.2.4
_KIND_ORDER = {"default": 0, "cpu": 0, "xpu": 1, "rocm": 2, "cuda": 3}
_PARSED: dict[str, tuple[str, Optional[str]]] = {}  # name -> (kind, version), each name parsed once


def _parse(text: str) -> Optional[tuple[str, Optional[str]]]:
    """(kind, version) of a lower-case name; None when it names no variant."""
    known = _PARSED.get(text)
    if known is not None:
        return known
    parsed: Optional[tuple[str, Optional[str]]] = None
    if text in ("cpu", "xpu", "default"):
        parsed = (text, None)
    elif cuda := _CUDA.fullmatch(text):
        parsed = ("cuda", f"{int(cuda['major'])}.{cuda['minor']}")
    elif rocm := _ROCM.fullmatch(text):
        parsed = ("rocm", rocm["version"])
    if parsed is not None:
        _PARSED[text] = parsed
    return parsed


class Variant(str):
    """One build variant. ``kind``: cuda, rocm, xpu, cpu or default; ``version``: the CUDA or
    ROCm version it is built for (``"13.0"``, ``"6.4"``), None for the others.

    Equal to (and hashed as) its name, so it keys the same dicts and sets the name does.
    """

    __slots__ = ()

    def __new__(cls, name: str) -> Variant:
        if type(name) is cls:
            return name  # already parsed
        text = name.strip().lower()
        if _parse(text) is None:
            raise UsageError(
                f"{name!r} is not a PyTorch build variant",
                "name one as the PyTorch index does: cu130, cu126, rocm6.4, xpu or cpu",
            )
        return super().__new__(cls, text)

    @property
    def name(self) -> str:
        return str(self)

    @property
    def kind(self) -> str:
        return _parse(self)[0]  # type: ignore[index]  # __new__ refused names _parse cannot read

    @property
    def version(self) -> Optional[str]:
        return _parse(self)[1]  # type: ignore[index]

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    @property
    def is_rocm(self) -> bool:
        return self.kind == "rocm"

    @property
    def is_xpu(self) -> bool:
        return self.kind == "xpu"

    @property
    def is_cpu(self) -> bool:
        return self.kind == "cpu"

    @property
    def is_default(self) -> bool:
        """PyPI's own build (macOS, and what plain ``pip install torch`` gets elsewhere)."""
        return self.kind == "default"

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
    def cuda_build(cls, cuda: str) -> Variant:
        """``"12.4"`` (or ``"12.4.1"``) -> cu124: the variant PyTorch names for a CUDA version."""
        return cls("cu" + "".join(cuda.split(".")[:2]))

    @classmethod
    def from_label(cls, label: Optional[str]) -> Optional[Variant]:
        """The variant a wheel's local label names (``2.5.1+cu124`` -> cu124); None for no label
        or one that names no variant (``+git1234``)."""
        if not label:
            return None
        text = label.strip().lower()
        return cls(text) if _parse(text) is not None else None


DEFAULT = Variant("default")
CPU = Variant("cpu")


def parse_variant(name: str) -> Variant:
    """``cu124`` -> CUDA 12.4; ``rocm6.2`` -> ROCm 6.2; ``xpu``, ``cpu``, ``default``.

    A name pip-gpu cannot read is bad input (exit 2), with the shapes it accepts.
    """
    return Variant(name)


def variant_index_url(pytorch_index: str, variant: str) -> Optional[str]:
    """The index serving a variant: ``<base>/<variant>``; None for PyPI's ``default``."""
    if not parse_variant(variant).has_index:
        return None
    return append_path(pytorch_index, variant)


def channel_index(pytorch_index: str, channel: Optional[str]) -> str:
    """The base a channel's variant indexes live under: ``<base>/nightly`` for ``nightly``.

    So :func:`variant_index_url` of it is ``<base>/nightly/<variant>``. A base that already ends
    in the channel's folder (a re-lock reads the base it recorded) is left as it is.
    """
    if channel in (None, "", "stable"):
        return pytorch_index
    from urllib.parse import urlsplit

    if urlsplit(pytorch_index).path.rstrip("/").endswith(f"/{channel}"):
        return pytorch_index
    return append_path(pytorch_index, channel)


def append_path(url: str, *segments: str) -> str:
    """``https://m/whl?token=x`` + ``cu124`` -> ``https://m/whl/cu124?token=x``: the path grows,
    a query string (a mirror's access token) stays where it belongs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    path = "/".join([parts.path.rstrip("/"), *segments])
    return urlunsplit(parts._replace(path=path))
