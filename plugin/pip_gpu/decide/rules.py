"""The decision: which torch release and which build (cu124, cpu, rocm6.2, ...) runs here.

A pure function of the request, the host and the knowledge: no I/O, no environment, so
every rule can be tested over a table of hosts and every answer explained.

Rules (see README "How pip-gpu decides"):

1. Candidate releases are those the requirements admit (a torch specifier, or one implied by
   a companion such as ``torchvision==0.20.1``) and that publish wheels for the target Python.
2. A build runs on the host when its platform matches, the driver is at least the minimum
   for the build's CUDA on this OS (minor-version compatibility), and every visible GPU's
   compute capability is covered by SASS of the same major and a minor <= the GPU's, or by
   PTX for an architecture <= the GPU's (PTX is JIT-compiled forward).
3. Take the newest release with a build that runs; among its builds the newest CUDA. A
   build the knowledge marks unconfirmed does not beat a confirmed one of an older release
   unless its index was seen to serve it. With no NVIDIA GPU: ``cpu``, or the ROCm/XPU build
   when such a device is there and published. macOS: the ``default`` variant (PyPI's wheels).
4. A forced variant (``--variant`` or a ``+cu121`` label in a pin) is still checked and
   refused when it cannot run, unless forced.
5. Nothing runs: no decision, an error naming the blocking fact and the ways out. Never a
   silent CPU build on a machine with an NVIDIA GPU.
6. A free-threaded Python (``3.14t``) is a target of its own: only releases with ``cp314t``
   wheels are candidates. A Jetson (Tegra) GPU on aarch64 is vouched for only by a build with
   SASS for its exact capability: PyTorch's aarch64 CUDA wheels are server-ARM (SBSA) builds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Optional

from packaging.specifiers import Specifier, SpecifierSet
from packaging.version import Version

from ..errors import NoBuildRuns, UsageError
from ..host import ComputeCapability, HostProfile, NvidiaGpu, driver_at_least
from ..knowledge import (
    Build,
    GpuDriverRow,
    Knowledge,
    Release,
)
from ..pins import canonical_name, exact_version_in
from ..redact import redact_url
from ..variant import Variant, variant_index_url

if TYPE_CHECKING:  # a plain request is read without packaging.requirements (see plain_pins)
    from packaging.requirements import Requirement

__all__ = [
    "Blocker",
    "Candidate",
    "ChosenBuild",
    "Decision",
    "Offer",
    "Policy",
    "Published",
    "TorchConstraint",
    "TorchRequest",
    "build_runs_on",
    "contradiction",
    "decide",
    "gpu_covered_by",
    "minimum_driver_of_major",
    "request_from_pins",
    "request_from_requirements",
    "tegra_gpus",
]

TORCH = "torch"
MACOS_VARIANT = Variant("default")


class Policy(NamedTuple):
    """A project's ``[tool.pip-gpu]`` choices that bear on the decision."""

    allowed_variants: Optional[frozenset[str]] = None  # names; a Variant equals its name
    preferred_variant: Optional[str] = None


@dataclass(frozen=True)
class TorchRequest:
    """What the requirements ask of the torch family, reduced to what the decision needs."""

    torch_specifier: SpecifierSet = field(default_factory=SpecifierSet)
    companion_specifiers: tuple[tuple[str, SpecifierSet], ...] = ()
    exact_torch: Optional[str] = None  # "2.5.1" when torch is pinned exactly
    forced_variant: Optional[Variant] = None
    force: bool = False
    described_as: str = "torch"  # how to name the request in messages

    def admits(self, release: Release, *, newest: bool = False) -> tuple[bool, str]:
        """Whether the torch and companion specifiers leave some version of this release.

        The newest series may have patch releases the knowledge file does not list yet.
        """
        versions = _series_versions(release.torch) if newest else _versions(release)
        if not any(self.torch_specifier.contains(v, prereleases=True) for v in versions):
            return False, f"{self.described_as} excludes torch {release.torch}"
        for name, spec in self.companion_specifiers:
            series = release.companions.get(name)
            allowed = release.companion_specifier(name)
            if series is None or allowed is None:
                return False, f"torch {release.torch} has no {name} release"
            pairing = [v for v in _series_versions(series) if allowed.contains(v, prereleases=True)]
            if not any(spec.contains(v, prereleases=True) for v in pairing):
                return False, f"{name}{spec} does not pair with torch {release.torch} ({name} {series}.x)"
        return True, ""


class Offer(NamedTuple):
    """What one variant index was seen to serve: torch by series, and pinned members' versions."""

    url: str  # the variant index, credentials removed, for messages
    torch: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]  # series -> (versions, platforms)
    members: Mapping[str, tuple[str, ...]] = {}  # canonical name -> versions, for pinned members

    def torch_versions(self, platform: Optional[str] = None) -> list[str]:
        """Every torch version it serves (for ``platform``), oldest first."""
        found = {
            v
            for versions, platforms in self.torch.values()
            if platform in (None, *platforms)
            for v in versions
        }
        return sorted(found, key=Version)

    def carries(self) -> str:
        """``torch 2.14.0, 2.14.1`` (the newest few), or ``no torch``: for messages."""
        versions = self.torch_versions()
        if not versions:
            return "no torch"
        shown = versions[-4:]
        return f"torch {', '.join(shown)}" + (
            f" (and {len(versions) - 4} older)" if len(versions) > 4 else ""
        )

    def lacks(
        self, release: Release, platform: str, exact: Optional[str], pinned: Sequence[tuple[str, str]]
    ) -> str:
        """Why this index cannot serve the build (empty when it can), in words."""
        if not self.torch:
            return f"{self.url} does not carry torch"
        series = self.torch.get(release.torch)
        if series is None:
            return f"{self.url} does not carry torch {exact or release.torch} (it has {self.carries()})"
        versions, platforms = series
        if platform not in platforms:
            return f"{self.url} has no torch {release.torch} for {platform}"
        if exact is not None and not any(Version(v) == Version(exact) for v in versions):
            return f"{self.url} does not carry torch {exact} (it has torch {', '.join(versions)})"
        for name, version in pinned:
            served = self.members.get(name, ())
            if not any(Version(v) == Version(version) or Version(v).public == version for v in served):
                return f"{self.url} does not carry {name}=={version}"
        return ""


class Published(NamedTuple):
    """What the variant indexes pip-gpu read publish: a build is a candidate only where it is
    served. Variants not read (not asked, or the index did not answer) are taken on trust."""

    offers: Mapping[Variant, Offer]
    pinned: tuple[tuple[str, str], ...] = ()  # family members pinned exactly: (name, version)

    def lacks(self, build: Build, release: Release, exact: Optional[str]) -> str:
        offer = self.offers.get(build.variant)
        if offer is None or not build.variant.has_index:
            return ""
        return offer.lacks(release, build.platform, exact, self.pinned)


class TorchConstraint(NamedTuple):
    """One requirement on a torch-family package, and the package or file that makes it."""

    package: str  # canonical family name it constrains: "torch", "torchvision", "xformers"
    specifier: SpecifierSet
    source: str  # "fixture-llm==0.6.4.post1", "xformers==0.0.28.post2", "command line"
    kind: str  # "requested", "family-member", "downstream", "direct-url"
    variant: Optional[Variant] = None  # a build this constraint forces (direct URL, local wheel)

    def describe(self) -> str:
        """``vllm==0.6.4.post1 requires torch==2.5.1``."""
        if self.kind == "requested":
            return f"{self.source} asks {self.package}{self.specifier}"
        if self.kind == "direct-url":
            return f"{self.source} is a {self.variant} build"
        return f"{self.source} requires {self.package}{self.specifier}"

    def to_json(self) -> dict[str, Any]:
        return {
            "package": self.package,
            "specifier": str(self.specifier),
            "source": redact_url(self.source),
            "kind": self.kind,
            "variant": self.variant,
            "text": redact_url(self.describe()),
        }


class Candidate(NamedTuple):
    """One build considered, and why it was taken or not."""

    variant: Variant
    torch: str
    platform: str
    ok: bool
    reason: str


class Blocker(NamedTuple):
    """Why nothing was chosen: the blocking fact and the ways out."""

    message: str
    hint: str


class ChosenBuild(NamedTuple):
    """What a decision that found a build chose: every part set, nothing to assert."""

    variant: Variant
    torch: str  # "2.5.1" when pinned, else the series "2.5"
    release: Release
    build: Build
    index_url: Optional[str]  # None for PyPI's ``default`` build (no PyTorch index)


@dataclass(frozen=True)
class Decision:
    """The outcome: a variant and release, or a blocker; always the candidates considered.

    Ask it with :meth:`chosen` (the build, or :class:`NoBuildRuns`) and :meth:`blocked` (the
    blocker, or None) rather than testing its optional attributes one by one.
    """

    variant: Optional[Variant]
    torch: Optional[str]  # "2.5.1" when pinned, else the series "2.5"
    release: Optional[Release]
    build: Optional[Build]
    index_url: Optional[str]
    candidates: tuple[Candidate, ...]
    notes: tuple[str, ...] = ()
    blocker: Optional[Blocker] = None

    @property
    def ok(self) -> bool:
        return self.blocker is None

    def chosen(self) -> ChosenBuild:
        """The chosen build; :class:`NoBuildRuns` (exit 2) with the blocker when none runs."""
        if self.blocker is not None:
            raise NoBuildRuns(self.blocker.message, self.blocker.hint)
        if self.variant is None or self.torch is None or self.release is None or self.build is None:
            raise ValueError("a decision without a blocker must name its build")  # a bug, not input
        return ChosenBuild(self.variant, self.torch, self.release, self.build, self.index_url)

    def blocked(self) -> Optional[Blocker]:
        """Why nothing was chosen; None when a build was."""
        return self.blocker

    @classmethod
    def refused(
        cls, blocker: Blocker, candidates: Sequence[Candidate] = (), notes: Sequence[str] = ()
    ) -> Decision:
        """A decision that found no build."""
        return cls(None, None, None, None, None, tuple(candidates), tuple(notes), blocker)


# --- the requirement side ------------------------------------------------------------------


def request_from_requirements(
    requirements: Iterable[Requirement],
    knowledge: Knowledge,
    *,
    variant: Optional[str] = None,
    force: bool = False,
) -> TorchRequest:
    """Reduce the torch-family requirements to a :class:`TorchRequest`.

    A local label in an exact pin (``torch==2.5.1+cu121``) forces that variant, as does
    ``variant``; two different forced variants are a usage error. A direct URL is taken as
    written: it says nothing about the index.
    """
    pins = [(req.name, req.specifier, str(req)) for req in requirements if not req.url]
    return request_from_pins(pins, knowledge, variant=variant, force=force)


def request_from_pins(
    pins: Iterable[tuple[str, SpecifierSet, str]],
    knowledge: Knowledge,
    *,
    variant: Optional[str] = None,
    force: bool = False,
) -> TorchRequest:
    """:func:`request_from_requirements` over ``(name, specifier, text)`` triples: what a
    plain request (``torch==2.5.1``) is read into without ``packaging.requirements``."""
    torch_spec = SpecifierSet()
    companions: dict[str, SpecifierSet] = {}
    exact: Optional[str] = None
    forced: dict[str, str] = {}  # variant -> where it came from
    described: list[str] = []
    companion_names = {canonical_name(n) for r in knowledge.releases for n in r.companions}

    if variant is not None:
        forced[variant] = f"--variant {variant}"
    for written_name, specifier, text in pins:
        name = canonical_name(written_name)
        public = _without_local_labels(specifier, text)
        pinned = exact_version_in(specifier)
        label = pinned.local if pinned is not None else None
        if label is not None:
            forced.setdefault(label, text)
        described.append(f"{written_name}{specifier}" if str(specifier) else written_name)
        if name == TORCH:
            torch_spec &= public
            if pinned is not None:
                exact = pinned.public
        elif name in companion_names:
            companions[name] = companions.get(name, SpecifierSet()) & public

    if len(forced) > 1:
        sources = "; ".join(f"{v} (from {src})" for v, src in sorted(forced.items()))
        raise UsageError(
            f"the requirements force different variants: {sources}",
            "every torch-family package must use one variant; drop or align the local labels",
        )
    forced_name = next(iter(forced), None)
    forced_variant = Variant.from_label(forced_name)  # parsed here, where it enters
    if forced_name is not None and (forced_variant is None or forced_variant not in knowledge.variants()):
        known = ", ".join(knowledge.variants())
        raise UsageError(
            f"unknown variant {forced_name[:40]!r}{'...' if len(forced_name) > 40 else ''}",
            f"pip-gpu knows these variants: {known}",
        )
    return TorchRequest(
        torch_specifier=torch_spec,
        companion_specifiers=tuple(sorted(companions.items())),
        exact_torch=exact,
        forced_variant=forced_variant,
        force=force,
        described_as=" ".join(described) or "torch",
    )


def _without_local_labels(spec: SpecifierSet, text: str) -> SpecifierSet:
    """``==2.5.1+cu121`` -> ``==2.5.1``: the decision compares public versions."""
    labels: set[str] = set()
    kept = []
    for item in spec:
        if item.operator in ("==", "===") and "+" in item.version:
            public, _, local = item.version.partition("+")
            labels.add(local)
            kept.append(Specifier(f"=={public}"))
        else:
            kept.append(item)
    if len(labels) > 1:
        raise UsageError(f"{text!r} pins two different local labels")
    return SpecifierSet(",".join(str(s) for s in kept))


def _versions(release: Release) -> tuple[str, ...]:
    known = release.versions + release.unconfirmed_versions
    return known or tuple(_series_versions(release.torch))


def _known_spelling(exact: str, release: Release) -> str:
    """``2.9`` -> ``2.9.0``: the listed version equal to a pin under PEP 440 padding."""
    for version in _versions(release):
        if Version(version) == Version(exact):
            return version
    return exact


def _series_versions(series: str) -> list[str]:
    """Plausible patch versions of a series, to test specifiers against it."""
    return [f"{series}.{patch}" for patch in range(0, 20)]


# --- the host side -------------------------------------------------------------------------


def gpu_covered_by(cc: ComputeCapability, build: Build) -> Optional[bool]:
    """Whether the build carries code this GPU runs; None when the build's archs are unknown.

    A cubin for sm_XY runs on the same major with minor >= Y; PTX for compute_XY is JIT
    compiled on any GPU of capability >= X.Y (NVIDIA CUDA C++ Programming Guide,
    "Binary Compatibility" and "PTX Compatibility").
    """
    if build.sass is None:
        return None
    if any(s[0] == cc[0] and s[1] <= cc[1] for s in build.sass):
        return True
    return any(p <= cc for p in (build.ptx or ()))


def build_runs_on(build: Build, host: HostProfile, knowledge: Knowledge) -> tuple[bool, str]:
    """Whether this build runs on this host, and the reason in words either way."""
    if build.platform != host.platform_tag:
        return False, f"no {build.variant} build for {host.platform_tag}"
    cuda = build.cuda
    if cuda is None:
        return True, _why_non_cuda_runs(build, host)
    for gpu in tegra_gpus(host, knowledge):
        if build.sass is None or gpu.compute_capability not in build.sass:
            return False, (
                f"{_describe_gpu(gpu, knowledge)} is a Jetson (Tegra) GPU; this {build.variant} build is a "
                "server-ARM (SBSA) build without its exact architecture"
            )
    minimum = knowledge.minimum_driver_for(cuda, host.os)
    inferred = ""
    if minimum is None:  # a CUDA version newer than the file (cu134 on an index): by rule
        minimum = minimum_driver_of_major(knowledge, cuda, host.os)
        if minimum is None:
            return False, (
                f"CUDA {cuda} is of a CUDA major version pip-gpu does not know, so the driver it needs "
                "cannot be inferred"
            )
        inferred = f" (inferred: CUDA {cuda.split('.')[0]}.x needs driver >= {minimum})"
    if host.driver_version is None:
        return False, "no NVIDIA driver (pass --driver for another host)"
    if not driver_at_least(host.driver_version, minimum):
        return False, (
            f"driver {host.driver_version} is older than {minimum}, the minimum for CUDA {cuda} on {host.os}"
        )
    for gpu, needed in _gpus_the_driver_predates(host, knowledge):
        return False, _predates(gpu, needed, host)
    gpus = _gpus_for_decision(host)
    for gpu in gpus:
        covered = gpu_covered_by(gpu.compute_capability, build)
        if covered is None:
            return False, f"the GPU architectures compiled into this {build.variant} build are not known"
        if not covered:
            return False, f"{_describe_gpu(gpu)} is not covered ({_describe_archs(build)})"
    archs = ", ".join(sorted({_describe_coverage(g, build, knowledge) for g in gpus})) or "no GPU given"
    return True, f"driver {host.driver_version} >= {minimum} (CUDA {cuda}){inferred}; covers {archs}"


def minimum_driver_of_major(knowledge: Knowledge, cuda: str, os: str) -> Optional[str]:
    """The driver minimum of a CUDA version the knowledge file does not list, by rule: under
    minor-version compatibility every minor of a major needs the same driver (13.x: R580), as
    the file's rule for that major says (else its rows of that major). None for a major the
    file does not know."""
    major = cuda.split(".")[0]
    stated = knowledge.minimum_driver_for_major(int(major), os)  # NVIDIA's rule for the major
    if stated is not None:
        return stated
    minimums = [
        m
        for row in knowledge.cuda_drivers
        if row.cuda.split(".")[0] == major and (m := knowledge.minimum_driver_for(row.cuda, os))
    ]
    return min(minimums, key=Version) if minimums else None


def _why_non_cuda_runs(build: Build, host: HostProfile) -> str:
    if build.variant.is_rocm:
        if not host.amd_gpus:
            return "for an AMD GPU, and this host has none (it would run on the CPU)"
        if build.gfx is None:  # as for unknown CUDA architectures: not vouched for, not guessed
            return "runs on the CPU only: the gfx targets of this ROCm build are not known"
        missing = sorted({g.gfx_target for g in host.amd_gpus} - set(build.gfx))
        if missing:
            return f"runs on the CPU only: {', '.join(missing)} not in this ROCm build"
        return "ROCm build for the AMD GPU"
    if build.variant.is_xpu:
        if _discrete_intel(host):
            return "XPU build for the Intel GPU"
        return "for an Intel GPU, and this host has no discrete one (it would run on the CPU)"
    return "CPU build"


def tegra_gpus(host: HostProfile, knowledge: Knowledge) -> tuple[NvidiaGpu, ...]:
    """The GPUs that are Jetson iGPUs: all of a detected Tegra board's, or a Tegra capability on aarch64."""
    if host.platform_tag != "linux-aarch64":
        return ()
    gpus = _gpus_for_decision(host)
    if host.tegra:
        return gpus
    known = knowledge.tegra.compute_capabilities if knowledge.tegra else ()
    return tuple(g for g in gpus if g.compute_capability in known)


def _gpus_for_decision(host: HostProfile) -> tuple[NvidiaGpu, ...]:
    """The GPUs the target process will see; all of them when CUDA_VISIBLE_DEVICES hides all."""
    return host.visible_nvidia_gpus or host.nvidia_gpus


def _describe_gpu(gpu: NvidiaGpu, knowledge: Optional[Knowledge] = None) -> str:
    """``NVIDIA H100 (sm_90)``; a GPU given only by its capability gets the product names."""
    name = gpu.name
    if knowledge is not None and gpu.source.startswith(("--", "PIP_GPU_")):
        products = knowledge.gpu_names_for(gpu.compute_capability)
        if products:
            name += f" ({'; '.join(products[:2])})" if len(products) <= 2 else f" ({products[0]}, ...)"
    return f"{name} (sm_{gpu.compute_capability[0]}{gpu.compute_capability[1]})"


def _describe_coverage(gpu: NvidiaGpu, build: Build, knowledge: Knowledge) -> str:
    """``GPU 0 (sm_107, Rubin) through sm_100 kernels``: the GPU, its generation where the GPU
    table knows it, and the code that runs on it when that is not its own architecture."""
    cc = gpu.compute_capability
    generation = knowledge.gpu_generation_for(cc)
    text = f"{gpu.name} (sm_{cc[0]}{cc[1]}" + (f", {generation})" if generation else ")")
    if cc in (build.sass or ()):
        return text
    sass = [s for s in build.sass or () if s[0] == cc[0] and s[1] <= cc[1]]
    if sass:
        return text + f" through sm_{max(sass)[0]}{max(sass)[1]} kernels"
    ptx = max(p for p in build.ptx or () if p <= cc)
    return text + f" through PTX compute_{ptx[0]}{ptx[1]} (compiled when first run)"


def _describe_archs(build: Build) -> str:
    sass = " ".join(f"sm_{a}{b}" for a, b in build.sass or ())
    ptx = " ".join(f"compute_{a}{b}" for a, b in build.ptx or ())
    return f"build has {sass}" + (f", PTX {ptx}" if ptx else ", no PTX")


def _discrete_intel(host: HostProfile) -> bool:
    return any(gpu.discrete for gpu in host.intel_gpus)


def _has_nvidia(host: HostProfile) -> bool:
    return bool(host.nvidia_gpus) or host.driver_version is not None or host.tegra is not None


# --- the decision --------------------------------------------------------------------------


def decide(
    request: TorchRequest,
    host: HostProfile,
    knowledge: Knowledge,
    *,
    pytorch_index: Optional[str] = None,
    policy: Optional[Policy] = None,
    published: Optional[Published] = None,
) -> Decision:
    """Choose the build of torch that runs on ``host``, or say exactly why none does.

    ``published``: what the variant indexes were seen to serve; a build that runs but is not
    served there is no candidate (a mirror one release behind, one without the host's variant).
    """
    policy = policy or Policy()
    base = pytorch_index or knowledge.pytorch_index
    notes: list[str] = []
    if host.nvidia_gpus and not host.visible_nvidia_gpus:
        notes.append(
            f"CUDA_VISIBLE_DEVICES={host.cuda_visible_devices!r} hides every GPU; "
            f"deciding for all {len(host.nvidia_gpus)} of them"
        )
    candidates: list[Candidate] = []
    admitted: list[Release] = []
    for release in knowledge.releases:
        ok, why = request.admits(release, newest=release is knowledge.releases[0])
        if not ok:
            continue
        if not release.has_python(host.python_version, _exact_in(request, release)):
            for build in release.builds:
                if build.platform == host.platform_tag:
                    candidates.append(
                        Candidate(
                            build.variant,
                            release.torch,
                            build.platform,
                            False,
                            _no_wheels_for_python(host, release, request),
                        )
                    )
            continue
        admitted.append(release)

    picks: list[tuple[Release, Build]] = []  # each release's pick, newest release first
    unpublished: list[tuple[Release, Build, str]] = []  # builds that run here but the index lacks
    for release in admitted:
        runnable: list[Build] = []
        builds = [b for b in release.builds if b.platform == host.platform_tag]
        for build in sorted(builds, key=lambda b: b.variant.sort_key, reverse=True):
            ok, why = _consider(build, request, host, knowledge, policy)
            missing = published.lacks(build, release, _exact_in(request, release)) if ok and published else ""
            if missing:
                ok, why = False, missing
                unpublished.append((release, build, missing))
            candidates.append(Candidate(build.variant, release.torch, build.platform, ok, why))
            if ok:
                runnable.append(build)
        if runnable:  # older releases' builds are listed for explanation, marked as not chosen
            picks.append((release, _pick(runnable, host, policy)))

    chosen, passed_over = _newest_confirmed(picks)
    if chosen is None:
        blocker = (
            _policy_blocker(request, host, knowledge, admitted, policy)
            or _unpublished_blocker(request, host, unpublished, published)
            or _blocker(request, host, knowledge, admitted, candidates)
        )
        return Decision.refused(blocker, candidates, notes)

    release, build = chosen
    if passed_over is not None:
        notes.append(
            f"torch {passed_over[0].torch} {passed_over[1].variant} is not confirmed in pip-gpu's knowledge; "
            f"torch {release.torch} {build.variant} is the newest confirmed build that runs here"
        )
    if published is not None:
        notes += _lagging_notes(release, build, unpublished, published)
    if build.variant.is_cpu and host.amd_gpus:
        outside = sorted(
            {
                c.reason.split(": ", 1)[1]
                for c in candidates
                if c.torch == release.torch and "CPU only:" in c.reason
            }
        )
        if outside:
            notes.append(
                f"no ROCm build of torch {release.torch} supports this AMD GPU ({outside[0]}); the CPU build"
            )
    cuda = build.cuda
    if cuda is not None and knowledge.minimum_driver_for(cuda, host.os) is None:
        notes.append(
            f"CUDA {cuda} is not in pip-gpu's knowledge: the driver it needs (>= "
            f"{minimum_driver_of_major(knowledge, cuda, host.os)}) is inferred from the rule for CUDA "
            f"{cuda.split('.')[0]}.x (minor-version compatibility), not confirmed"
        )
    if request.force and request.forced_variant is not None:
        ok, why = build_runs_on(build, host, knowledge)
        if not ok:
            notes.append(f"--force: installing {build.variant} although {why}")
    torch_version = release.torch
    if request.exact_torch is not None:
        torch_version = _known_spelling(request.exact_torch, release)
        if torch_version not in release.versions:
            notes.append(
                f"torch {torch_version} is not confirmed in pip-gpu's knowledge; "
                f"deciding from what is known of torch {release.torch}"
            )
    unconfirmed = (passed_over[0].torch, passed_over[1].variant) if passed_over else None
    candidates = [
        c
        if not (c.ok and (c.torch, c.variant) != (release.torch, build.variant))
        else Candidate(
            c.variant,
            c.torch,
            c.platform,
            True,
            c.reason + ("; not confirmed" if (c.torch, c.variant) == unconfirmed else "; not the newest"),
        )
        for c in candidates
    ]
    return Decision(
        variant=build.variant,
        torch=torch_version,
        release=release,
        build=build,
        index_url=variant_index_url(base, build.variant),
        candidates=tuple(candidates),
        notes=tuple(notes),
    )


def _unpublished_blocker(
    request: TorchRequest,
    host: HostProfile,
    unpublished: Sequence[tuple[Release, Build, str]],
    published: Optional[Published],
) -> Optional[Blocker]:
    """Builds run here, but the index serves none of them: name the index and what it carries."""
    if not unpublished or published is None:
        return None
    # The reason from a folder that carries some torch says the most (a 404 folder says least).
    telling = [u for u in unpublished if not u[2].endswith("does not carry torch")]
    _, build, why = (telling or unpublished)[0]
    carried = sorted(
        (v for v, offer in published.offers.items() if offer.torch_versions(host.platform_tag)),
        key=lambda v: v.sort_key,
        reverse=True,
    )
    runs = ", ".join(dict.fromkeys(b.variant for _, b, _ in unpublished))
    index = published.offers[build.variant].url.rsplit("/", 1)[0]
    carries = f"; {index} carries {', '.join(carried)}" if carried else ""
    if request.exact_torch is not None or request.forced_variant is not None:
        message = f"{request.described_as}: {why}"
        others = [str(b.variant) for _, b, _ in unpublished if b.variant != build.variant]
        if others:
            message += f"; nor do its {', '.join(dict.fromkeys(others))} folders"
        message += carries if why.endswith("does not carry torch") else ""
    else:
        message = f"no build of {request.described_as} that runs here ({runs}) is on {index}: {why}{carries}"
    return Blocker(
        message,
        "choose a version or variant the index carries, or point --pytorch-index (PIP_GPU_PYTORCH_INDEX) "
        "at an index that has it",
    )


def _lagging_notes(
    release: Release, build: Build, unpublished: Sequence[tuple[Release, Build, str]], published: Published
) -> list[str]:
    """A newer release runs here but the index does not carry it (a mirror behind): say so."""
    newer = [(r, b) for r, b, _ in unpublished if r.version > release.version]
    if not newer:
        return []
    first = newer[0][0]
    lacking: list[Variant] = sorted({b.variant for r, b in newer if r is first}, key=lambda v: v.sort_key)
    variants = ", ".join(lacking)
    offer = published.offers.get(build.variant)
    series = offer.torch.get(release.torch) if offer is not None else None
    installing = series[0][-1] if series and series[0] else release.torch
    if offer is None or build.variant not in lacking:  # the variants it lacks are other folders
        index = next(iter(published.offers.values())).url.rsplit("/", 1)[0]
        return [
            f"torch {first.torch} exists ({variants}) but {index} carries none of those builds; "
            f"installing {installing} ({build.variant})"
        ]
    where = offer.url
    return [
        f"torch {first.torch} exists ({variants}) but {where} does not carry it yet; installing {installing}"
    ]


def _consider(
    build: Build, request: TorchRequest, host: HostProfile, knowledge: Knowledge, policy: Policy
) -> tuple[bool, str]:
    if build.platform != host.platform_tag:
        return False, f"built for {build.platform}, the host is {host.platform_tag}"
    if request.forced_variant is not None and build.variant != request.forced_variant:
        return False, f"not the requested variant {request.forced_variant}"
    if policy.allowed_variants is not None and build.variant not in policy.allowed_variants:
        return False, "not allowed by [tool.pip-gpu] variants"
    ok, why = build_runs_on(build, host, knowledge)
    if build.variant.is_rocm and host.amd_gpus and "CPU only" in why:
        ok = False  # the AMD GPU's gfx target is not in this build: asked for by name, it is refused
    if request.forced_variant is not None:
        # An explicit variant is what the user asked for: check it, and allow --force.
        if ok or request.force:
            return True, why if ok else f"forced: {why}"
        return False, why
    if host.os == "macos":
        return build.variant.is_default, why
    if build.variant.is_cuda:
        return ok, why
    if _has_nvidia(host):
        kind = {"rocm": "ROCm", "xpu": "XPU"}.get(build.variant.kind, "CPU-only")
        return False, f"{kind} build; this host has an NVIDIA GPU"
    if build.variant.is_rocm:
        return (ok and bool(host.amd_gpus) and "CPU only" not in why), why
    if build.variant.is_xpu:
        return (ok and _discrete_intel(host)), why
    return ok, why


def _newest_confirmed(
    picks: Sequence[tuple[Release, Build]],
) -> tuple[Optional[tuple[Release, Build]], Optional[tuple[Release, Build]]]:
    """The newest release's pick, unless it is unconfirmed and an older release has a confirmed
    one of the same kind (a GPU build for a GPU build): then that, and the one passed over.

    A row the knowledge file marks unconfirmed or likely wrong (2.15 ``rocm7.2``) does not beat
    a confirmed row; once its index is seen to serve it, it counts as confirmed.
    """
    if not picks:
        return None, None
    newest = picks[0]
    if newest[1].confirmed:
        return newest, None
    for older in picks[1:]:
        if older[1].confirmed and (newest[1].variant.is_cpu or not older[1].variant.is_cpu):
            return older, newest
    return newest, None


def _pick(runnable: Sequence[Build], host: HostProfile, policy: Policy) -> Build:
    """Among one release's runnable builds: the preferred one, else the newest CUDA/ROCm.

    Builds the knowledge file marks unconfirmed (unadvertised cu129 wheels, say) are taken
    only when no confirmed build runs; the CPU build only when no GPU build does (an AMD
    host gets an unconfirmed ROCm build before a confirmed CPU one).
    """
    if policy.preferred_variant is not None:
        for build in runnable:
            if build.variant == policy.preferred_variant:
                return build
    accelerated = [b for b in runnable if not b.variant.is_cpu] or list(runnable)
    confirmed = [b for b in accelerated if b.confirmed]
    return max(confirmed or accelerated, key=lambda b: b.variant.sort_key)


def _exact_in(request: TorchRequest, release: Release) -> Optional[str]:
    """The pinned patch version when the pin falls in this release, else None."""
    if request.exact_torch is None:
        return None
    return _known_spelling(request.exact_torch, release)


def _no_wheels_for_python(host: HostProfile, release: Release, request: TorchRequest) -> str:
    only = (release.python_only_in or {}).get(host.python_version)
    if only and host.python_version in release.python:
        pinned = _exact_in(request, release)
        return f"no wheels for Python {host.python_version} in torch {pinned} (only {', '.join(only)})"
    return f"no wheels for Python {host.python_version} (torch {release.torch}: {', '.join(release.python)})"


def _blocker(
    request: TorchRequest,
    host: HostProfile,
    knowledge: Knowledge,
    admitted: Sequence[Release],
    candidates: Sequence[Candidate],
) -> Blocker:
    """The blocking fact and the ways out, as specific as the candidates allow."""
    tegra = _tegra_blocker(request, host, knowledge, admitted)
    if tegra is not None:
        return tegra
    if not admitted:
        if candidates:  # admitted by the requirement but not for this Python
            return Blocker(
                f"no torch release matching {request.described_as} has wheels for "
                f"Python {host.python_version}",
                "use another Python (--python-version for another host) or another torch version",
            )
        contradicting = contradiction(request, knowledge)
        if contradicting is not None:
            return contradicting
        newest = knowledge.releases[0].torch if knowledge.releases else "?"
        return Blocker(
            f"no torch release pip-gpu knows satisfies {request.described_as}",
            f"pip-gpu knows torch 1.13 to {newest}; check the version pins",
        )
    if not any(b.platform == host.platform_tag for r in admitted for b in r.builds):
        return Blocker(
            f"no torch release matching {request.described_as} is published for {host.platform_tag}",
            "check --platform/--arch, or choose another torch version",
        )
    if _has_nvidia(host) and not host.nvidia_gpus:
        problem = next(iter(host.problems), None)
        detail = f": {problem.message}" if problem else ""
        return Blocker(
            f"an NVIDIA driver ({host.driver_version}) is installed but its GPUs could not be read{detail}",
            (problem.hint + "; or " if problem and problem.hint else "")
            + "pass --compute-capability X.Y, or --variant cpu for a CPU-only build",
        )
    if host.driver_version is None and host.nvidia_gpus:
        return Blocker(
            "the NVIDIA driver version is not known, so no CUDA build can be vouched for",
            "pass --driver VERSION (or PIP_GPU_DRIVER) for the target host, or --variant cpu",
        )
    if request.forced_variant is not None:
        reasons = {c.reason for c in candidates if c.variant == request.forced_variant}
        detail = "; ".join(sorted(reasons)) or f"no {request.forced_variant} build for {host.platform_tag}"
        return Blocker(
            f"the requested variant {request.forced_variant} cannot run here: {detail}",
            "choose another variant, or pass --force to install it anyway",
        )
    predated = _gpus_the_driver_predates(host, knowledge)
    gpu_minimum = max((Version(row.minimum_driver(host.os)) for _, row in predated), default=None)
    build_minimum = _driver_that_would_help(admitted, host, knowledge)
    if gpu_minimum is not None and (build_minimum is None or gpu_minimum > Version(build_minimum)):
        # no torch release helps: the driver cannot drive the GPU at all
        gpu, row = max(predated, key=lambda found: Version(found[1].minimum_driver(host.os)))
        return Blocker(
            f"no build of {request.described_as} runs on this host: {_predates(gpu, row, host)}",
            f"upgrade the NVIDIA driver to >= {row.minimum_driver(host.os)} (no torch build runs on "
            f"this GPU before that); or pass --variant cpu for a CPU-only build",
        )
    ways: list[str] = []
    gpus = _gpus_for_decision(host)
    needed_driver = _driver_that_would_help(admitted, host, knowledge)
    fact = _main_reason(candidates)
    if needed_driver:
        ways.append(f"upgrade the NVIDIA driver to >= {needed_driver}")
    other = _newest_runnable_outside(request, host, knowledge)
    if other:
        newer = all(Version(other) > r.version for r in admitted)
        ways.append(
            f"use torch {other} ({'torch==' + other + '.*' if newer else 'torch<=' + other}), "
            "the newest release with a build that runs here"
        )
    if not needed_driver and not other:
        combined = _driver_and_release_that_would_run(host, knowledge)
        if combined:
            ways.append(f"upgrade the NVIDIA driver to >= {combined[0]} and use torch {combined[1]}")
    ways.append("pass --variant cpu for a CPU-only build")
    what = f"no build of {request.described_as} runs on this host"
    if gpus:
        what += f" ({', '.join(sorted({_describe_gpu(g) for g in gpus}))}, driver {host.driver_version})"
    return Blocker(f"{what}: {fact}", "; or ".join(ways))


_POLICY = "[tool.pip-gpu] variants"


def _policy_blocker(
    request: TorchRequest,
    host: HostProfile,
    knowledge: Knowledge,
    admitted: Sequence[Release],
    policy: Policy,
) -> Optional[Blocker]:
    """Nothing the project's ``variants`` allows runs: say so, name the variants pip-gpu does not
    know, and offer only ways out the policy allows (``--variant`` cannot step outside it)."""
    allowed = policy.allowed_variants
    if allowed is None or request.forced_variant is not None or not admitted:
        return None
    unrestricted = Policy(preferred_variant=policy.preferred_variant)

    def runnable(releases: Sequence[Release], within: Policy) -> list[tuple[str, str]]:
        return [
            (release.torch, str(build.variant))
            for release in releases
            for build in release.builds
            if build.platform == host.platform_tag and _consider(build, request, host, knowledge, within)[0]
        ]

    would_run = sorted({v for _, v in runnable(admitted, unrestricted)}, key=lambda v: Variant(v).sort_key)
    known = {str(v) for v in knowledge.variants()}
    built = sorted(
        {b.variant for r in admitted for b in r.builds if b.platform == host.platform_tag},
        key=lambda v: v.sort_key,
        reverse=True,
    )
    unknown = sorted(v for v in allowed if v not in known)
    if not would_run and not unknown:
        return None  # the policy is not what blocks: the usual blocker names the host's fact
    listed = ", ".join(sorted(allowed))
    what = f"no build of {request.described_as} that {_POLICY} allows ({listed}) runs on this host"
    if unknown:
        names = ", ".join(unknown)
        what += f": {names} {'is not a variant' if len(unknown) == 1 else 'are not variants'} pip-gpu knows"
        what += f" (torch {admitted[0].torch} is built as {', '.join(map(str, built))})"
    else:
        what += f": only {', '.join(reversed(would_run))} would"
    ways: list[str] = []
    if would_run:
        runs = ", ".join(reversed(would_run))
        ways.append(f"add {would_run[-1]} to {_POLICY} (of this request's builds, {runs} run here)")
    outside = [
        r
        for r in knowledge.releases
        if not request.admits(r)[0]
        and r.has_python(host.python_version)
        and any(
            b.platform == host.platform_tag
            and b.variant in allowed
            and _consider(b, TorchRequest(), host, knowledge, policy)[0]
            for b in r.builds
        )
    ]
    if outside:
        newest = outside[0].torch
        ways.append(
            f"use torch {newest} (torch=={newest}.*), the newest release with a build it allows that runs"
        )
    if not ways:
        ways.append(f"name a variant that runs here in {_POLICY}, or remove the key")
    return Blocker(what, "; or ".join(ways))


def _gpus_the_driver_predates(
    host: HostProfile, knowledge: Knowledge
) -> list[tuple[NvidiaGpu, GpuDriverRow]]:
    """The GPUs this driver is too old to drive at all (a Blackwell board on driver 535): no
    CUDA build of any release runs on them until the driver is upgraded."""
    if host.driver_version is None:
        return []
    found = []
    for gpu in _gpus_for_decision(host):
        row = knowledge.gpu_driver_row(gpu.compute_capability)
        if row is not None and not driver_at_least(host.driver_version, row.minimum_driver(host.os)):
            found.append((gpu, row))
    return found


def _predates(gpu: NvidiaGpu, row: GpuDriverRow, host: HostProfile) -> str:
    return (
        f"{_describe_gpu(gpu)} needs an NVIDIA driver >= {row.minimum_driver(host.os)} on {host.os}, "
        f"the first for {row.architecture} GPUs (CUDA {row.first_cuda}); driver {host.driver_version} "
        "predates it"
    )


def _tegra_blocker(
    request: TorchRequest, host: HostProfile, knowledge: Knowledge, admitted: Sequence[Release]
) -> Optional[Blocker]:
    """A Jetson board: say so, and name NVIDIA's Jetson wheels, unless a variant was forced."""
    if request.forced_variant is not None or not admitted or not (host.tegra or tegra_gpus(host, knowledge)):
        return None
    gpus = tegra_gpus(host, knowledge)
    exact = [
        b
        for r in admitted
        for b in r.builds
        if b.platform == host.platform_tag
        and b.cuda is not None
        and gpus
        and all(b.sass is not None and g.compute_capability in b.sass for g in gpus)
    ]
    if exact:  # a build for this device exists (Thor: sm_110): the blocker is elsewhere
        return None
    what = ", ".join(sorted({_describe_gpu(g, knowledge) for g in gpus})) or "its integrated GPU"
    evidence = f" ({host.tegra})" if host.tegra else ""
    hint = knowledge.tegra.jetson_index_hint if knowledge.tegra else "use NVIDIA's Jetson wheels"
    return Blocker(
        f"this is a Jetson (Tegra) board{evidence}: PyTorch's aarch64 CUDA wheels for "
        f"{request.described_as} are server-ARM (SBSA) builds and do not run on {what}",
        f"{hint}; or pass --variant cpu for a CPU-only build",
    )


def contradiction(request: TorchRequest, knowledge: Knowledge) -> Optional[Blocker]:
    """Pins that each name a real release, but not the same one: say which pairs with which.

    A fault of the request itself, known without reading any index."""
    torch_only = TorchRequest(torch_specifier=request.torch_specifier)
    torch_series = [r.torch for r in knowledge.releases if torch_only.admits(r)[0]]
    if not torch_series or not request.companion_specifiers:
        return None
    for name, spec in request.companion_specifiers:
        alone = TorchRequest(companion_specifiers=((name, spec),))
        pairs_with = [r.torch for r in knowledge.releases if alone.admits(r)[0]]
        if pairs_with and not set(pairs_with) & set(torch_series):
            torch_text = f"torch{request.torch_specifier}" if str(request.torch_specifier) else "torch"
            return Blocker(
                f"{torch_text} and {name}{spec} do not belong together: {name}{spec} pairs with "
                f"torch {', '.join(sorted(pairs_with, key=Version))}",
                f"pin versions of one release (torch {torch_series[0]} pairs with "
                f"{name} {knowledge.release(torch_series[0]).companions.get(name, '?')}.x), or drop one pin",  # type: ignore[union-attr]
            )
    return None


def _main_reason(candidates: Sequence[Candidate]) -> str:
    """The driver fact and the architecture fact that rejected the most builds."""
    driver = [c.reason for c in candidates if not c.ok and c.reason.startswith("driver")]
    arch = [c.reason for c in candidates if not c.ok and "not covered" in c.reason]
    facts = [reasons[0] for reasons in (driver, arch) if reasons]
    return "; ".join(facts) if facts else "no published build fits"


def _driver_and_release_that_would_run(host: HostProfile, knowledge: Knowledge) -> Optional[tuple[str, str]]:
    """Outside the request: the newest release covering the GPUs, and the driver it needs."""
    gpus = _gpus_for_decision(host)
    for release in knowledge.releases:
        if not release.has_python(host.python_version):
            continue
        minimums = [
            knowledge.minimum_driver_for(b.cuda, host.os)
            for b in release.builds
            if b.platform == host.platform_tag
            and b.cuda is not None
            and all(gpu_covered_by(g.compute_capability, b) for g in gpus)
        ]
        known = [m for m in minimums if m]
        if known:
            return min(known, key=Version), release.torch
    return None


def _driver_that_would_help(
    admitted: Sequence[Release], host: HostProfile, knowledge: Knowledge
) -> Optional[str]:
    """The lowest driver minimum among builds that cover every GPU but need a newer driver."""
    best: Optional[str] = None
    gpus = _gpus_for_decision(host)
    for release in admitted:
        for build in release.builds:
            if build.platform != host.platform_tag or build.cuda is None:
                continue
            if not all(gpu_covered_by(g.compute_capability, build) for g in gpus):
                continue
            minimum = knowledge.minimum_driver_for(build.cuda, host.os)
            if minimum and (best is None or Version(minimum) < Version(best)):
                best = minimum
    if best is not None and host.driver_version and driver_at_least(host.driver_version, best):
        return None
    return best


def _newest_runnable_outside(request: TorchRequest, host: HostProfile, knowledge: Knowledge) -> Optional[str]:
    """The newest release the requirement excludes but that would run here."""
    for release in knowledge.releases:
        if request.admits(release)[0] or not release.has_python(host.python_version):
            continue
        for build in release.builds:
            if build.cuda is not None and build_runs_on(build, host, knowledge)[0]:
                return release.torch
    return None
