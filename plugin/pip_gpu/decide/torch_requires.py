"""Which torch-family packages torch's own wheels on a variant index require.

Read from the wheels' core metadata on the index (PEP 658 / PEP 714 ``<file>.metadata``), never
from the wheels: ``pytorch-triton-rocm`` for a ROCm torch, ``triton`` for a CUDA torch on Linux.
Install routes what a ROCm or XPU torch needs there; ``uv-project setup`` names each variant's
needs, with the platforms under which each wheel needs them, in the project's extras.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..variant import append_path
from .index import fetch_project_files, read_index_file

if TYPE_CHECKING:
    from packaging.requirements import Requirement
    from packaging.version import Version


def requires_dist(metadata: bytes) -> list[Requirement]:
    """A core metadata file's ``Requires-Dist`` lines; one that does not parse is left out."""
    from email.parser import HeaderParser

    from packaging.requirements import InvalidRequirement, Requirement

    headers = HeaderParser().parsestr(metadata.decode("utf-8", errors="replace"))
    out: list[Requirement] = []
    for text in headers.get_all("Requires-Dist") or ():
        try:
            out.append(Requirement(text))
        except InvalidRequirement:
            continue
    return out


@dataclass(frozen=True)
class WheelRequires:
    """One torch wheel's family requirements outside extras; ``platform``: its platform tag."""

    platform: str
    requirements: tuple[Requirement, ...]


@dataclass(frozen=True)
class TorchRequires:
    """What the newest accepted torch on an index requires of the family, per wheel read.

    ``version`` None: no torch wheel there is accepted. ``wheels`` empty with a version: no
    accepted wheel's metadata could be read.
    """

    version: Version | None
    wheels: tuple[WheelRequires, ...] = ()


def torch_requires_on_index(
    index: str,
    family: Collection[str],
    *,
    accepts: Callable[[Version], bool],
    timeout: float,
    per_platform: bool,
) -> TorchRequires:
    """The family members (``torch`` itself aside) that the newest torch ``accepts`` admits on
    ``index`` requires, outside extras.

    ``per_platform``: one wheel per platform tag (what ``uv lock`` takes for every platform);
    else one wheel, for an install on this host. Raises :class:`IndexError_` when torch's page
    on the index cannot be read.
    """
    from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

    files = fetch_project_files(append_path(index, "torch", ""), timeout=timeout)
    wheels: dict[Version, dict[str, str]] = {}  # version -> {platform tag: url}
    for file in files:
        try:
            _, version, _, tags = parse_wheel_filename(file.filename)
        except InvalidWheelFilename:
            continue
        if accepts(version):
            platform = min(tags, key=str).platform  # the first tag, as uv_project always read it
            wheels.setdefault(version, {})[platform] = file.url.split("#", 1)[0]
    if not wheels:
        return TorchRequires(None)
    newest = max(wheels)
    chosen = wheels[newest] if per_platform else dict([max(wheels[newest].items(), key=lambda i: i[1])])
    read: list[WheelRequires] = []
    for platform, url in chosen.items():
        metadata = read_index_file(url + ".metadata", timeout=timeout)
        if metadata is None:
            continue
        needs = tuple(
            r
            for r in requires_dist(metadata)
            if canonicalize_name(r.name) in family
            and canonicalize_name(r.name) != "torch"
            and not (r.marker is not None and "extra" in str(r.marker))
        )
        read.append(WheelRequires(platform, needs))
    return TorchRequires(newest, tuple(read))
