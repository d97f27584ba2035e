"""Choose among an index's variant wheels (PEP 825) for a host: read the project page and the
version's ``variants.json``, judge every label with pip-gpu's providers, take the best.

The decision core for ``--variant-index``; what fits and the order live in
:mod:`pip_gpu.wheel_variants`, the page reading in :mod:`pip_gpu.decide.index`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Optional
from urllib.parse import quote

from packaging.requirements import Requirement
from packaging.tags import Tag
from packaging.utils import canonicalize_name
from packaging.version import Version

from ..errors import UsageError
from ..host import HostProfile
from ..redact import redact_url, split_userinfo, url_origin
from ..wheel_variants import (
    LabelVerdict,
    NvidiaProvider,
    VariantProvider,
    VariantsJson,
    VariantWheelName,
    judge_labels,
    parse_variant_wheel_filename,
    parse_variants_json,
    variants_json_filename,
)
from .index import IndexError_, fetch_project_files, index_timeout, read_index_file

__all__ = [
    "IndexWheel",
    "VariantChoice",
    "VariantsJsonTampered",
    "choose_variant_wheel",
    "host_tags_fit",
    "judge_for_host",
    "pick",
    "providers_for",
    "read_variants_json",
    "with_index_credentials",
]

MAX_VARIANTS_JSON_BYTES = 4 * 2**20


class VariantsJsonTampered(UsageError):
    """A ``variants.json`` whose bytes do not match the hash the index page or the lock names."""


@dataclass(frozen=True)
class IndexWheel:
    """One wheel file on the variant index."""

    name: VariantWheelName
    url: str
    sha256: Optional[str]
    size: Optional[int] = None

    @property
    def label(self) -> str:
        return self.name.label


@dataclass(frozen=True)
class VariantChoice:
    """The wheel chosen for one requirement, with every label's verdict for the host."""

    package: str
    requirement: str
    version: Optional[str]
    wheel: Optional[IndexWheel]
    verdicts: tuple[LabelVerdict, ...]
    wheels: tuple[IndexWheel, ...]  # every wheel of that version the target's tags admit
    variants_json_url: Optional[str] = None
    variants_json_sha256: Optional[str] = None
    problem: str = ""  # why nothing was chosen

    @property
    def label(self) -> Optional[str]:
        return None if self.wheel is None else self.wheel.label

    def to_json(self) -> dict[str, Any]:
        return {
            "package": self.package,
            "version": self.version,
            "variant_label": self.label,
            "wheel": None
            if self.wheel is None
            else {
                "filename": self.wheel.name.filename,
                "url": redact_url(self.wheel.url),
                "sha256": self.wheel.sha256,
            },
            "variants_json": None
            if self.variants_json_url is None
            else {"url": redact_url(self.variants_json_url), "sha256": self.variants_json_sha256},
            "candidates": [
                {"variant_label": v.label, "ok": v.fits, "reason": v.reason, "properties": list(v.properties)}
                for v in self.verdicts
            ],
        }


def host_tags_fit(tags: frozenset[Tag], host: HostProfile) -> bool:
    """Whether a wheel's tags admit the target host's Python and platform (not an installer's
    full tag list: enough to tell a torch wheel for cp312 on Linux x86_64 from the others)."""
    release = host.python_release.replace(".", "")
    cp = f"cp{release}"
    pythons = {"py3", f"py{release}", cp}
    abis = {"none", "abi3", cp + ("t" if host.free_threaded else "")}
    arch = {"x86_64": ("x86_64", "amd64"), "aarch64": ("aarch64", "arm64"), "arm64": ("arm64", "aarch64")}
    arches = arch.get(host.arch, (host.arch,))
    for tag in tags:
        if tag.interpreter not in pythons or tag.abi not in abis:
            continue
        platform = tag.platform
        if platform == "any":
            return True
        linux = platform.startswith(("manylinux", "musllinux", "linux"))
        if host.os == "linux" and linux and platform.endswith(arches):
            return True
        if (
            host.os == "windows"
            and platform in {f"win_{a}" for a in ("amd64", "arm64")}
            and platform.endswith(arches)
        ):
            return True
        if (
            host.os == "macos"
            and platform.startswith("macosx")
            and platform.endswith((*arches, "universal2"))
        ):
            return True
    return False


def with_index_credentials(url: str, index_url: str) -> str:
    """``url`` with the index URL's ``user:password@`` when it has none and lives on the index's
    origin (scheme, host, port), as pip lends an index's credentials to its files; the index
    page's links and a lock's URLs carry none (the lock must not)."""
    if not index_url or split_userinfo(url)[2] or url_origin(url) != url_origin(index_url):
        return url
    _, _, user, password = split_userinfo(index_url)
    if not user:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{rest}"


def read_variants_json(url: str, sha256: Optional[str], where: str) -> tuple[VariantsJson, str]:
    """Fetch ``variants.json``; refuse it when its sha256 is not the one the page or lock names."""
    shown = redact_url(url)
    data = read_index_file(url, timeout=index_timeout(), limit=MAX_VARIANTS_JSON_BYTES + 1)
    if data is None:
        raise IndexError_(f"cannot read {shown}", "check the network and the variant index")
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256.lower():
        raise VariantsJsonTampered(
            f"{shown} does not match {where}: sha256 {digest}, expected {sha256}",
            "the index's variant metadata changed or was tampered with; "
            "re-lock with pip-gpu lock if the change is expected",
        )
    return parse_variants_json(data, shown), digest


def providers_for(host: HostProfile) -> list[VariantProvider]:
    """pip-gpu's providers for ``host``; a driver without its CUDA version (a fleet node) gets
    it from the knowledge file's driver branch table."""
    driver_cuda = None
    if host.cuda_driver_version is None and host.driver_version:
        from ..knowledge import load_knowledge

        driver_cuda = load_knowledge().max_cuda_for_driver(host.driver_version)
    return [NvidiaProvider(host, driver_cuda=driver_cuda)]


def judge_for_host(
    metadata: VariantsJson, wheels: Sequence[IndexWheel], host: HostProfile
) -> list[LabelVerdict]:
    """Every label of ``wheels`` judged for ``host`` (pip-gpu's providers), best first."""
    labels = sorted({w.label for w in wheels if w.label})
    return judge_labels(
        metadata,
        labels,
        providers_for(host),
        has_plain_wheel=any(not w.label for w in wheels),
        gpu_host=bool(host.visible_nvidia_gpus),
    )


def pick(verdicts: Sequence[LabelVerdict], wheels: Sequence[IndexWheel]) -> Optional[IndexWheel]:
    """The wheel of the best label that fits (several wheels of a label: the first listed)."""
    for verdict in verdicts:
        if verdict.fits:
            return next(w for w in wheels if w.label == verdict.label)
    return None


def choose_variant_wheel(index_url: str, requirement: str, host: HostProfile) -> VariantChoice:
    """The newest version the requirement admits with a wheel that fits ``host``, and its wheel."""
    req = Requirement(requirement)
    name = canonicalize_name(req.name)
    files = fetch_project_files(f"{index_url.rstrip('/')}/{name}/")
    if not files:
        raise UsageError(
            f"the variant index {redact_url(index_url)} has no project {name}",
            "check --variant-index, or install it without --variant-index",
        )
    by_version: dict[Version, list[IndexWheel]] = {}
    metadata_files = {
        f.filename: replace(f, url=with_index_credentials(f.url, index_url))
        for f in files
        if f.filename.endswith("-variants.json")
    }
    for file in files:
        try:
            parsed = parse_variant_wheel_filename(file.filename)
        except ValueError:
            continue
        if parsed.name == name and host_tags_fit(parsed.tags, host):
            url = with_index_credentials(file.url, index_url)
            by_version.setdefault(parsed.version, []).append(IndexWheel(parsed, url, file.sha256, file.size))
    versions = sorted((v for v in by_version if req.specifier.contains(v, prereleases=True)), reverse=True)
    if not versions:
        raise UsageError(
            f"the variant index has no {name} wheel for {requirement} on {host.platform_tag}, "
            f"Python {host.python_version}",
            "check the requirement, or the variant index",
        )
    first: Optional[VariantChoice] = None
    for version in versions:
        wheels = by_version[version]
        choice = _choose_among(name, requirement, str(version), wheels, metadata_files, host)
        if choice.wheel is not None:
            return choice
        first = first or choice
    assert first is not None
    return first


def _choose_among(
    name: str,
    requirement: str,
    version: str,
    wheels: list[IndexWheel],
    metadata_files: dict[str, Any],
    host: HostProfile,
) -> VariantChoice:
    if not any(w.label for w in wheels):  # an ordinary release: nothing to judge
        return VariantChoice(name, requirement, version, wheels[0], (), tuple(wheels))
    listed = metadata_files.get(variants_json_filename(name, version))
    if listed is None:
        # PEP 825: without the index-level file every variant wheel is incompatible
        verdicts = [
            LabelVerdict(w.label, False, f"the index lists no {variants_json_filename(name, version)}")
            for w in wheels
            if w.label
        ]
        plain = [w for w in wheels if not w.label]
        chosen = plain[0] if plain and not host.visible_nvidia_gpus else None
        return VariantChoice(
            name, requirement, version, chosen, tuple(verdicts), tuple(wheels), problem=verdicts[0].reason
        )
    metadata, digest = read_variants_json(listed.url, listed.sha256, "the hash on the index page")
    verdicts = judge_for_host(metadata, wheels, host)
    chosen = pick(verdicts, wheels)
    problem = "" if chosen else "; ".join(f"{v.label or 'non-variant'}: {v.reason}" for v in verdicts)
    return VariantChoice(
        name, requirement, version, chosen, tuple(verdicts), tuple(wheels), listed.url, digest, problem
    )
