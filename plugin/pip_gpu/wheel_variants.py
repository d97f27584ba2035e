"""Wheel variants (PEP 825): the file name's label, ``variant.json`` and ``variants.json``,
which labels fit a host, and the PEP's order among those that do.

Plain values and pure functions. The ``nvidia`` namespace is answered from pip-gpu's own host
facts (:class:`NvidiaProvider`): PEP 825 leaves providers to a later PEP (850, a draft), and a
namespace pip-gpu does not know makes a variant not fit, with that as the reason.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

from packaging.tags import Tag
from packaging.utils import BuildTag, NormalizedName, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from .errors import UsageError
from .host import HostProfile, NvidiaGpu

__all__ = [
    "NULL_LABEL",
    "LabelVerdict",
    "NvidiaProvider",
    "Properties",
    "VariantMetadataError",
    "VariantProvider",
    "VariantWheelName",
    "VariantsJson",
    "judge_labels",
    "parse_variant_wheel_filename",
    "parse_variants_json",
    "variants_json_filename",
]

NULL_LABEL = "null"  # PEP 825: the variant with no properties, always fits
_LABEL_RE = re.compile(r"^[0-9a-z_.]+$")
_NAME_RE = re.compile(r"^[a-z0-9_]+$")  # namespaces and feature names
_VALUE_RE = re.compile(r"^[0-9a-z_.]+$")
_SCHEMA_VERSION_RE = re.compile(r"/v(\d+)\.(\d+)\.(\d+)\.json$")

# label -> namespace -> feature -> values, as variant.json and variants.json write it
Properties = Mapping[str, Mapping[str, tuple[str, ...]]]


class VariantMetadataError(UsageError):
    """A variant wheel name, ``variant.json`` or ``variants.json`` that breaks PEP 825."""


@dataclass(frozen=True)
class VariantWheelName:
    """``{name}-{version}(-{build})?-{python}-{abi}-{platform}(-{label})?.whl``, parsed."""

    filename: str
    name: NormalizedName
    version: Version
    build: BuildTag
    tags: frozenset[Tag]
    label: str  # "" for a non-variant wheel (the PEP 825 ``variant_label`` marker's value)

    @property
    def plain_filename(self) -> str:
        """The file name without the label: what installers that predate PEP 825 accept."""
        if not self.label:
            return self.filename
        return self.filename[: -len(f"-{self.label}.whl")] + ".whl"


def parse_variant_wheel_filename(filename: str) -> VariantWheelName:
    """Parse a wheel file name with or without a variant label (ValueError when neither).

    A sixth dash-separated part after the name is the label; the rest is the ordinary wheel
    name, which ``packaging`` parses (it predates PEP 825 and refuses the label itself).
    """
    if not filename.endswith(".whl"):
        raise ValueError(f"not a wheel: {filename!r}")
    parts = filename[: -len(".whl")].split("-")
    label = ""
    plain = filename
    # 5 or 6 parts: an ordinary wheel (6 with a build tag, which starts with a digit);
    # 6 whose third part is not a build tag, or 7: the last part is the variant label.
    if len(parts) == 7 or (len(parts) == 6 and not parts[2][:1].isdigit()):
        label = parts[-1]
        plain = "-".join(parts[:-1]) + ".whl"
        if not _LABEL_RE.match(label):
            raise ValueError(f"invalid variant label {label!r} in {filename!r} (PEP 825: [0-9a-z_.]+)")
    name, version, build, tags = parse_wheel_filename(plain)
    return VariantWheelName(filename, name, version, build, tags, label)


def variants_json_filename(name: str, version: str) -> str:
    """``{name}-{version}-variants.json``, both normalised as in wheel file names."""
    from packaging.utils import canonicalize_name, canonicalize_version

    version = canonicalize_version(version, strip_trailing_zero=False)
    return f"{canonicalize_name(name).replace('-', '_')}-{version}-variants.json"


@dataclass(frozen=True)
class VariantsJson:
    """``variant.json`` (one label) or the index's ``variants.json`` (every label)."""

    schema: str
    namespace_priorities: tuple[str, ...]
    feature_priorities: Mapping[str, tuple[str, ...]]
    value_priorities: Mapping[str, Mapping[str, tuple[str, ...]]]
    variants: Mapping[str, Properties]

    def properties_of(self, label: str) -> Optional[Properties]:
        return {} if label == NULL_LABEL else self.variants.get(label)


def _names(value: Any, where: str, pattern: re.Pattern[str]) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and pattern.match(v) for v in value):
        raise VariantMetadataError(f"{where} must be a list of names matching {pattern.pattern}")
    return tuple(value)


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise VariantMetadataError(f"{where} must be a JSON object")
    for key in value:
        if not isinstance(key, str):
            raise VariantMetadataError(f"{where} has a key that is not a string")
    return value


def parse_variants_json(data: bytes, where: str) -> VariantsJson:
    """Read and check ``variant.json``/``variants.json`` (PEP 825 "Variant metadata")."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise VariantMetadataError(f"{where} is not JSON: {exc}") from None
    document = _table(document, where)
    schema = document.get("$schema")
    if not isinstance(schema, str):
        raise VariantMetadataError(f"{where} has no $schema")
    version = _SCHEMA_VERSION_RE.search(schema)
    if version is None or int(version.group(1)) > 1:
        # PEP 825: an unknown format version means the variant wheels are unsupported
        raise VariantMetadataError(
            f"{where}: unknown variant metadata format {schema}",
            "pip-gpu reads the PEP 825 formats 0.x and 1.x",
        )
    priorities = _table(document.get("default-priorities"), f"{where} default-priorities")
    namespaces = _names(priorities.get("namespace"), f"{where} default-priorities.namespace", _NAME_RE)
    features = {
        ns: _names(names, f"{where} default-priorities.feature.{ns}", _NAME_RE)
        for ns, names in _table(priorities.get("feature", {}), f"{where} default-priorities.feature").items()
    }
    values: dict[str, dict[str, tuple[str, ...]]] = {}
    for ns, by_feature in _table(
        priorities.get("property", {}), f"{where} default-priorities.property"
    ).items():
        values[ns] = {
            feature: _names(v, f"{where} default-priorities.property.{ns}.{feature}", _VALUE_RE)
            for feature, v in _table(by_feature, f"{where} default-priorities.property.{ns}").items()
        }
    variants: dict[str, Properties] = {}
    for label, by_namespace in _table(document.get("variants"), f"{where} variants").items():
        if not _LABEL_RE.match(label):
            raise VariantMetadataError(f"{where}: invalid variant label {label!r}")
        properties: dict[str, Mapping[str, tuple[str, ...]]] = {}
        for ns, by_feature in _table(by_namespace, f"{where} variants.{label}").items():
            if not _NAME_RE.match(ns):
                raise VariantMetadataError(f"{where}: invalid namespace {ns!r} in variant {label}")
            if ns not in namespaces:
                raise VariantMetadataError(
                    f"{where}: variant {label} uses namespace {ns!r}, "
                    "which default-priorities.namespace does not list"
                )
            properties[ns] = {
                feature: _names(v, f"{where} variants.{label}.{ns}.{feature}", _VALUE_RE)
                for feature, v in _table(by_feature, f"{where} variants.{label}.{ns}").items()
            }
        variants[label] = properties
    return VariantsJson(schema, namespaces, features, values, variants)


# --- providers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureVerdict:
    """Whether one feature of a variant fits the host, and the fact that decided it."""

    namespace: str
    feature: str
    fits: bool
    reason: str


class VariantProvider(Protocol):
    """What PEP 850 calls a provider: one namespace's answers for one host."""

    @property
    def namespace(self) -> str: ...

    def feature_order(self) -> tuple[str, ...]: ...

    def judge(self, feature: str, values: Sequence[str]) -> FeatureVerdict: ...

    def value_fits(self, feature: str, value: str) -> bool: ...

    def value_rank(self, feature: str, value: str) -> tuple[Any, ...]: ...


def _sm_arch(value: str) -> Optional[tuple[tuple[int, int], str]]:
    """``"86_real"`` -> ((8, 6), "real"); ``"120_virtual"`` -> ((12, 0), "virtual")."""
    digits, _, kind = value.partition("_")
    if kind not in ("real", "virtual") or not digits.isdigit() or len(digits) < 2:
        return None
    return (int(digits[:-1]), int(digits[-1])), kind


def _version_or_zero(text: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        return Version("0")


def _sm(gpu: NvidiaGpu) -> str:
    return f"{gpu.name} (sm_{gpu.compute_capability[0]}{gpu.compute_capability[1]})"


def _runs_on(arch: tuple[tuple[int, int], str], gpu: NvidiaGpu) -> bool:
    """SASS (real) runs on the same major and an equal or higher minor; PTX (virtual) on any
    GPU at least as new, through the driver's JIT (CUDA C Programming Guide, "Binary
    Compatibility" and "PTX Compatibility")."""
    (major, minor), kind = arch
    cc = gpu.compute_capability
    if kind == "real":
        return cc[0] == major and cc[1] >= minor
    return cc >= (major, minor)


@dataclass(frozen=True)
class NvidiaProvider:
    """The ``nvidia`` namespace, answered from pip-gpu's host facts (driver, every visible GPU)."""

    host: HostProfile
    namespace: str = "nvidia"
    # The newest CUDA the driver supports when the host does not say (a fleet node's labels
    # give the driver only): from the knowledge file's driver branch table.
    driver_cuda: Optional[str] = None

    def feature_order(self) -> tuple[str, ...]:
        return ("cuda_version_lower_bound", "sm_arch")

    def _driver_cuda(self) -> Optional[Version]:
        cuda = self.host.cuda_driver_version or self.driver_cuda
        try:
            return Version(cuda) if cuda else None
        except InvalidVersion:
            return None

    def value_fits(self, feature: str, value: str) -> bool:
        if feature == "cuda_version_lower_bound":
            cuda = self._driver_cuda()
            try:
                return cuda is not None and cuda >= Version(value)
            except InvalidVersion:
                return False
        if feature == "sm_arch":
            arch = _sm_arch(value)
            return arch is not None and any(_runs_on(arch, gpu) for gpu in self.host.visible_nvidia_gpus)
        return False

    def value_rank(self, feature: str, value: str) -> tuple[Any, ...]:
        """Smaller is preferred: the newest CUDA first; SASS before PTX, newest architecture first."""
        if feature == "cuda_version_lower_bound":
            version = _version_or_zero(value)
            return (-version.major, -version.minor, value)
        arch = _sm_arch(value)
        if arch is None:
            return (1, value)
        (major, minor), kind = arch
        return (0 if kind == "real" else 1, -major, -minor)

    def judge(self, feature: str, values: Sequence[str]) -> FeatureVerdict:
        shown = f"nvidia :: {feature}"
        if feature == "cuda_version_lower_bound":
            cuda = self._driver_cuda()
            lowest = min(values, key=_version_or_zero) if values else "?"
            if cuda is None:
                return FeatureVerdict(
                    self.namespace, feature, False, f"{shown} :: {lowest} needs an NVIDIA driver; none found"
                )
            fitting = [v for v in values if self.value_fits(feature, v)]
            if fitting:
                return FeatureVerdict(
                    self.namespace,
                    feature,
                    True,
                    f"{shown} :: {fitting[0]}: driver {self.host.driver_version} supports CUDA {cuda}",
                )
            return FeatureVerdict(
                self.namespace,
                feature,
                False,
                f"{shown} :: {', '.join(values)} needs CUDA >= {lowest}; "
                f"driver {self.host.driver_version} supports CUDA {cuda}",
            )
        if feature == "sm_arch":
            gpus = self.host.visible_nvidia_gpus
            if not gpus:
                return FeatureVerdict(self.namespace, feature, False, f"{shown}: this host has no NVIDIA GPU")
            archs = [(v, _sm_arch(v)) for v in values]
            uncovered = [gpu for gpu in gpus if not any(a and _runs_on(a, gpu) for _, a in archs)]
            if uncovered:
                return FeatureVerdict(
                    self.namespace,
                    feature,
                    False,
                    f"{shown}: {', '.join(_sm(g) for g in uncovered)} not covered by {' '.join(values)}",
                )
            covering = {_sm(gpu): next(v for v, a in archs if a and _runs_on(a, gpu)) for gpu in gpus}
            return FeatureVerdict(
                self.namespace,
                feature,
                True,
                f"{shown}: " + ", ".join(f"{value} covers {gpu}" for gpu, value in covering.items()),
            )
        return FeatureVerdict(self.namespace, feature, False, f"{shown}: a feature pip-gpu does not know")


# --- which labels fit, and in which order ---------------------------------------------------


@dataclass(frozen=True)
class LabelVerdict:
    """One label of a package version: whether it fits the host, why, and its rank."""

    label: str  # "" for the non-variant wheel
    fits: bool
    reason: str
    properties: tuple[str, ...] = ()  # "namespace :: feature :: value", as in the PEP
    features: tuple[FeatureVerdict, ...] = field(default=(), compare=False)


def _judge_one(label: str, properties: Properties, providers: Mapping[str, VariantProvider]) -> LabelVerdict:
    flat = tuple(
        f"{ns} :: {feature} :: {value}"
        for ns, by_feature in sorted(properties.items())
        for feature, values in sorted(by_feature.items())
        for value in values
    )
    verdicts: list[FeatureVerdict] = []
    for ns, by_feature in properties.items():
        provider = providers.get(ns)
        for feature, values in by_feature.items():
            if provider is None:
                verdicts.append(
                    FeatureVerdict(
                        ns, feature, False, f"{ns} :: {feature}: namespace {ns!r} has no provider in pip-gpu"
                    )
                )
            else:
                verdicts.append(provider.judge(feature, values))
    failed = [v for v in verdicts if not v.fits]
    if failed:
        return LabelVerdict(label, False, "; ".join(v.reason for v in failed), flat, tuple(verdicts))
    reason = "; ".join(v.reason for v in verdicts) if verdicts else "null variant: no properties, always fits"
    return LabelVerdict(label, True, reason, flat, tuple(verdicts))


def judge_labels(
    metadata: VariantsJson,
    labels: Sequence[str],
    providers: Sequence[VariantProvider],
    *,
    has_plain_wheel: bool,
    gpu_host: bool,
) -> list[LabelVerdict]:
    """Every label (and ``""``, the non-variant wheel) with its verdict: those that fit first,
    in PEP 825 "Variant ordering" (namespace, feature, then value priorities: the index's
    ``default-priorities`` first, the provider's order after; more properties win a tie; then
    the label), then ``null``, then the non-variant wheel; those that do not fit after.

    On a host with an NVIDIA GPU the non-variant wheel never fits when variants were offered:
    pip-gpu installs no silent CPU build there (README "How pip-gpu decides", rule 5).
    """
    by_namespace = {p.namespace: p for p in providers}
    verdicts: list[LabelVerdict] = []
    for label in dict.fromkeys(labels):
        properties = metadata.properties_of(label)
        if properties is None:
            verdicts.append(LabelVerdict(label, False, f"label {label} is not in the index's variants.json"))
        else:
            verdicts.append(_judge_one(label, properties, by_namespace))
    fitting = [v for v in verdicts if v.fits and v.label != NULL_LABEL]
    order = _pep825_order(metadata, [v.label for v in fitting], by_namespace)
    ranked = sorted(fitting, key=lambda v: order.index(v.label))
    ranked += [v for v in verdicts if v.fits and v.label == NULL_LABEL]
    if has_plain_wheel:
        if gpu_host and verdicts:
            ranked.append(
                LabelVerdict(
                    "", False, "non-variant wheel: this host has an NVIDIA GPU, and no silent CPU build"
                )
            )
        else:
            ranked.append(LabelVerdict("", True, "non-variant wheel: ordered after every variant"))
    return ranked + [v for v in verdicts if not v.fits]


def _pep825_order(
    metadata: VariantsJson, labels: Sequence[str], providers: Mapping[str, VariantProvider]
) -> list[str]:
    namespace_order = list(metadata.namespace_priorities)
    feature_order: dict[str, list[str]] = {}
    value_order: dict[tuple[str, str], list[str]] = {}
    seen: dict[tuple[str, str], set[str]] = {}
    for label in labels:
        for ns, by_feature in (metadata.properties_of(label) or {}).items():
            for feature, values in by_feature.items():
                seen.setdefault((ns, feature), set()).update(values)
    for ns in namespace_order:
        provider = providers.get(ns)
        order = list(metadata.feature_priorities.get(ns, ()))
        order += [f for f in (provider.feature_order() if provider else ()) if f not in order]
        order += sorted({f for (n, f) in seen if n == ns} - set(order))
        feature_order[ns] = order
        for feature in order:
            compatible = [
                v
                for v in seen.get((ns, feature), ())
                if provider is not None and provider.value_fits(feature, v)
            ]
            ranked = sorted(compatible, key=lambda v: provider.value_rank(feature, v) if provider else (v,))
            preferred = [v for v in metadata.value_priorities.get(ns, {}).get(feature, ()) if v in compatible]
            value_order[(ns, feature)] = preferred + [v for v in ranked if v not in preferred]

    def keys(label: str) -> list[tuple[int, int, int]]:
        result = []
        for ns, by_feature in (metadata.properties_of(label) or {}).items():
            for feature, values in by_feature.items():
                order = value_order[(ns, feature)]
                best = min(order.index(v) for v in values if v in order)
                result.append((namespace_order.index(ns), feature_order[ns].index(feature), best))
        return sorted(result)

    def compare(a: str, b: str) -> int:
        ka, kb = keys(a), keys(b)
        for x, y in zip(ka, kb):
            if x != y:
                return -1 if x < y else 1
        if len(ka) != len(kb):
            return -1 if len(ka) > len(kb) else 1
        return -1 if a < b else (1 if a > b else 0)

    return sorted(labels, key=functools.cmp_to_key(compare))
