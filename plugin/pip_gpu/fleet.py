"""``pip-gpu fleet plan``: one torch release for a GPU fleet, and the builds each node needs.

A fleet is described by what its operators already have: ``kubectl get nodes -o json``, whose
NVIDIA GPU Feature Discovery labels carry each node's driver and compute capability, or
``pip-gpu detect --json`` reports collected from the hosts. Each node becomes a
:class:`~pip_gpu.host.HostProfile` and is decided for with the usual rules; the plan then
holds one torch release for the whole fleet (the newest that serves the most nodes) and the
variant each node gets.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Optional

from .errors import UsageError
from .host import AmdGpu, HostProfile, NvidiaGpu, parse_amd_gfx_target, parse_compute_capability
from .ui import printable, shorten
from .variant import Variant

__all__ = ["FleetNode", "FleetPlan", "NodePlan", "nodes_from_file", "nodes_from_json", "plan_fleet"]

# GPU Feature Discovery labels (NVIDIA/k8s-device-plugin, docs/gpu-feature-discovery).
_LABEL = "nvidia.com/"
_DRIVER_FULL = "nvidia.com/cuda.driver-version.full"
_DRIVER_PARTS = ("nvidia.com/cuda.driver-version.major", ".minor", ".revision")
_DRIVER_PARTS_OLD = ("nvidia.com/cuda.driver.major", ".minor", ".rev")  # deprecated names
_RUNTIME_FULL = "nvidia.com/cuda.runtime-version.full"
_RUNTIME_PARTS = ("nvidia.com/cuda.runtime-version.major", ".minor")
_RUNTIME_PARTS_OLD = ("nvidia.com/cuda.runtime.major", ".minor")
_COMPUTE = ("nvidia.com/gpu.compute.major", "nvidia.com/gpu.compute.minor")
_PRODUCT = "nvidia.com/gpu.product"
_COUNT = "nvidia.com/gpu.count"
_GPU_LABELS = (_COMPUTE[0], _COUNT, _DRIVER_FULL, _DRIVER_PARTS[0], _DRIVER_PARTS_OLD[0])
# The AMD GPU operator's node labeller (ROCm/k8s-device-plugin, cmd/k8s-node-labeller): the
# amd.com/ labels and their older beta.amd.com/ twins (also as "beta.amd.com/gpu.family.AI=1").
# None names the gfx target outright: the family is an IP version on recent labellers
# ("GC_11_0_0": graphics core 11.0.0, gfx1100), a two-letter acronym on older ones ("AI"), so the
# PCI device ID ("74a1") is looked up in the knowledge file; a node labelled with a gfx target
# itself (a family "gfx942") is read as it is.
_AMD_PREFIXES = ("amd.com/gpu.", "beta.amd.com/gpu.")
_AMD_GPU_LABELS = tuple(p + k for p in _AMD_PREFIXES for k in ("family", "device-id", "product-name"))
_AMD_CAPACITY = "amd.com/gpu"
# Kubernetes' well-known labels, in the host's own words.
_K8S_OS = {"linux": "linux", "windows": "windows"}
_K8S_ARCH = {"amd64": "x86_64", "arm64": "aarch64", "x86_64": "x86_64", "aarch64": "aarch64"}
_MAX_NODES_FILE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class FleetNode:
    """One node of the fleet, as a host to decide for."""

    name: str
    host: HostProfile
    gpu_product: Optional[str] = None
    gpu_count: int = 0
    vendor: str = "nvidia"  # whose labels describe the GPUs ("amd": the AMD GPU operator's)


@dataclass(frozen=True)
class NodePlan:
    """What one node gets: a variant, or None with the reason nothing runs there."""

    name: str
    variant: Optional[str]
    reason: str
    gpu: str  # "NVIDIA-A100-SXM4-80GB x8 (sm_80), driver 535.104.05", or "no GPU"


@dataclass(frozen=True)
class FleetPlan:
    """One torch release for the fleet, the set of variants, and every node's share."""

    torch: Optional[str]
    variants: tuple[str, ...]
    nodes: tuple[NodePlan, ...]
    notes: tuple[str, ...] = ()  # how it was decided: a variant index that did not answer

    @property
    def unserved(self) -> tuple[NodePlan, ...]:
        return tuple(node for node in self.nodes if node.variant is None)

    def to_json(self) -> dict[str, Any]:
        return {
            "torch": self.torch,
            "variants": list(self.variants),
            "notes": list(self.notes),
            "nodes": [
                {"name": n.name, "variant": n.variant, "reason": n.reason, "gpu": n.gpu} for n in self.nodes
            ],
        }


# --- reading the fleet ---------------------------------------------------------------------


def nodes_from_file(path: Path, *, python_version: str) -> list[FleetNode]:
    """Nodes from a ``kubectl get nodes -o json`` file or ``pip-gpu detect --json`` output."""
    try:
        if not path.is_file():
            raise UsageError(f"{path}: not a regular file", "pass the output of `kubectl get nodes -o json`")
        if path.stat().st_size > _MAX_NODES_FILE_BYTES:
            raise UsageError(f"{path}: larger than {_MAX_NODES_FILE_BYTES // 2**20} MiB", "")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(
            f"cannot read the node list {path}: {exc}",
            "pass `kubectl get nodes -o json` or `pip-gpu detect --json` output",
        ) from None
    return nodes_from_json(data, where=str(path), python_version=python_version)


def nodes_from_json(data: Any, *, where: str, python_version: str) -> list[FleetNode]:
    """Kubernetes ``List``/``NodeList``/``Node`` objects, or detect reports (one or a list)."""
    if isinstance(data, Mapping) and isinstance(data.get("items"), list):
        items: list[Any] = data["items"]
    elif isinstance(data, list):
        items = data
    else:
        items = [data]
    nodes: list[FleetNode] = []
    read: dict[Hashable, FleetNode] = {}  # nodes with the same labels are read once
    for position, item in enumerate(items):
        context = f"{where}: item {position}"
        if not isinstance(item, Mapping):
            raise UsageError(
                f"{context} is not an object", "expected Kubernetes Node objects or detect reports"
            )
        if item.get("kind") == "Node" or "metadata" in item:
            same = _labels_kind(item)
            if same is not None and same in read:
                nodes.append(_renamed(read[same], item["metadata"]["name"]))
                continue
            nodes.append(_node_from_kubernetes(item, context, python_version))
            if same is not None:
                read[same] = nodes[-1]
        elif "os" in item and "nvidia_gpus" in item:
            nodes.append(
                _node_from_detect(item, context, where if len(items) == 1 else f"{where}[{position}]")
            )
        else:
            raise UsageError(
                f"{context} is neither a Kubernetes Node nor a `pip-gpu detect --json` report",
                "pass `kubectl get nodes -o json` or `pip-gpu detect --json` output",
            )
    if not nodes:
        raise UsageError(f"{where}: no nodes", "the node list is empty")
    duplicates = _twice(n.name for n in nodes)
    if duplicates:
        raise UsageError(f"{where}: node names appear twice: {', '.join(duplicates)}", "")
    return nodes


# Labels that name one node, not its kind (GPU Feature Discovery stamps each node's run).
_PER_NODE_LABELS = frozenset(["kubernetes.io/hostname", "nvidia.com/gfd.timestamp"])


def _labels_kind(item: Mapping[str, Any]) -> Optional[Hashable]:
    """Every label but the per-node ones, and the AMD GPU count of ``status.capacity``: two
    nodes with the same are read alike. None when the node is malformed (it is read on its
    own, and its error names it)."""
    metadata = item.get("metadata")
    if not isinstance(metadata, Mapping) or not isinstance(metadata.get("name"), str):
        return None
    labels = metadata.get("labels") or {}
    if not isinstance(labels, Mapping):
        return None
    status = item.get("status")
    capacity = status.get("capacity") if isinstance(status, Mapping) else None
    gpus = capacity.get(_AMD_CAPACITY) if isinstance(capacity, Mapping) else None  # AMD's count
    try:
        kind = (frozenset(labels.items()) - _per_node_items(labels), gpus)
        hash(kind)
        return kind
    except TypeError:  # a label value that is a list or an object: read on its own
        return None


def _per_node_items(labels: Mapping[str, Any]) -> frozenset[tuple[str, Any]]:
    return frozenset((key, labels[key]) for key in _PER_NODE_LABELS if key in labels)


def _renamed(node: FleetNode, name: str) -> FleetNode:
    """A copy of ``node`` with another name (``dataclasses.replace`` costs 10 times more)."""
    clone = object.__new__(FleetNode)
    clone.__dict__.update(node.__dict__)
    object.__setattr__(clone, "name", name)
    return clone


# What GPU Feature Discovery and nvidia-smi write: ASCII digits, a few of them (a 5,000-digit
# version once reached int()'s limit on digits and the catch-all error).
_DIGITS = re.compile(r"[0-9]{1,6}")
_DRIVER = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,6}){0,2}")
_RUNTIME = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){0,2}")
_MOST_GPUS = 1024  # GPUs on one node: a count beyond is a typo, and costs memory per GPU
_LABELS_HINT = "check the node's GPU Feature Discovery labels (kubectl get node NAME -o json)"


def _node_from_detect(item: Mapping[str, Any], context: str, name: str) -> FleetNode:
    try:
        host = HostProfile.from_json(dict(item))
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(
            f"{context}: not a valid detect report ({shorten(str(exc), 80)})",
            "re-run `pip-gpu detect --json`",
        ) from None
    for field_name, value, pattern in (
        ("driver_version", host.driver_version, _DRIVER),
        ("cuda_driver_version", host.cuda_driver_version, _RUNTIME),
    ):
        if value is not None and not (isinstance(value, str) and pattern.fullmatch(value)):
            raise UsageError(
                f"{context}: {field_name} {shorten(str(value), 40)!r} is not a version",
                "re-run `pip-gpu detect --json`",
            )
    if len(host.nvidia_gpus) > _MOST_GPUS:
        raise UsageError(
            f"{context}: {len(host.nvidia_gpus)} GPUs on one host", "re-run `pip-gpu detect --json`"
        )
    product = host.nvidia_gpus[0].name if host.nvidia_gpus else None
    return FleetNode(name, host, product, len(host.nvidia_gpus))


def _node_from_kubernetes(item: Mapping[str, Any], context: str, python_version: str) -> FleetNode:
    metadata = item.get("metadata")
    if not isinstance(metadata, Mapping) or not isinstance(metadata.get("name"), str):
        raise UsageError(f"{context}: a Node without metadata.name", "")
    name = metadata["name"]
    raw_labels = metadata.get("labels") or {}
    if not isinstance(raw_labels, Mapping):
        raise UsageError(f"node {name}: metadata.labels is not an object", "")
    labels = {str(k): str(v) for k, v in raw_labels.items()}
    os_name = _K8S_OS.get(labels.get("kubernetes.io/os", "linux"))
    arch = _K8S_ARCH.get(labels.get("kubernetes.io/arch", "amd64"))
    if os_name is None or arch is None:
        raise UsageError(
            f"node {name}: unsupported platform "
            f"{labels.get('kubernetes.io/os')}/{labels.get('kubernetes.io/arch')}",
            "pip-gpu plans for linux and windows nodes on amd64 or arm64",
        )
    sources = {"os": "kubernetes.io/os", "arch": "kubernetes.io/arch", "python_version": "--python-version"}
    base = HostProfile(os=os_name, arch=arch, python_version=python_version, sources=sources)
    if not any(label in labels for label in _GPU_LABELS):
        if any(key.startswith(_AMD_PREFIXES) for key in labels):
            return _amd_node(name, base, labels, item)
        return FleetNode(name, base)

    driver = labels.get(_DRIVER_FULL) or _joined(labels, _DRIVER_PARTS) or _joined(labels, _DRIVER_PARTS_OLD)
    runtime = (
        labels.get(_RUNTIME_FULL) or _joined(labels, _RUNTIME_PARTS) or _joined(labels, _RUNTIME_PARTS_OLD)
    )
    product = labels.get(_PRODUCT)
    count_text = labels.get(_COUNT, "1")
    if not _DIGITS.fullmatch(count_text) or int(count_text) > _MOST_GPUS:
        raise UsageError(
            f"node {name}: {_COUNT}={shorten(count_text, 40)!r} is not a GPU count (0 to {_MOST_GPUS})",
            _LABELS_HINT,
        )
    count = int(count_text)
    for label, value, pattern in ((_DRIVER_FULL, driver, _DRIVER), (_RUNTIME_FULL, runtime, _RUNTIME)):
        if value is not None and not pattern.fullmatch(value):
            what = "an NVIDIA driver version" if pattern is _DRIVER else "a CUDA version"
            raise UsageError(f"node {name}: {label}={shorten(value, 40)!r} is not {what}", _LABELS_HINT)
    missing = [label for label in (*_COMPUTE,) if label not in labels]
    if driver is None:
        missing.append(_DRIVER_FULL)
    if missing:
        # A GPU node whose labels are incomplete cannot be decided for: say so, do not guess.
        return FleetNode(name, base.with_changes(problems=()), product, count)
    try:
        cc = parse_compute_capability(f"{labels[_COMPUTE[0]]}.{labels[_COMPUTE[1]]}")
    except ValueError as exc:
        raise UsageError(f"node {name}: {exc}", "") from None
    gpus = tuple(
        NvidiaGpu(
            index=i, name=product or "NVIDIA GPU", compute_capability=cc, source="gpu-feature-discovery"
        )
        for i in range(max(count, 1))
    )
    host = base.with_changes(
        driver_version=driver,
        cuda_driver_version=runtime,
        nvidia_gpus=gpus,
        sources={
            **sources,
            "driver_version": "gpu-feature-discovery",
            "nvidia_gpus": "gpu-feature-discovery",
        },
    )
    return FleetNode(name, host, product, count)


def _amd_label(labels: Mapping[str, str], what: str) -> Optional[str]:
    """``amd.com/gpu.<what>``, else its ``beta.amd.com/`` twin, else ``beta.amd.com/gpu.<what>.<value>=1``."""
    for prefix in _AMD_PREFIXES:
        if labels.get(prefix + what, "").strip():
            return labels[prefix + what].strip()
    flagged = f"{_AMD_PREFIXES[1]}{what}."
    return next((key[len(flagged) :] for key in sorted(labels) if key.startswith(flagged)), None)


def gfx_from_family(family: str) -> Optional[str]:
    """``GC_11_0_0`` -> ``gfx1100``, ``GC_9_4_2`` -> ``gfx942``, ``gfx90a`` -> itself; None for "AI"."""
    try:
        return parse_amd_gfx_target(family)
    except ValueError:
        pass
    parts = family.upper().removeprefix("GC_").split("_") if family.upper().startswith("GC_") else []
    if len(parts) == 3 and all(p.isdigit() for p in parts) and int(parts[1]) <= 0xF and int(parts[2]) <= 0xF:
        return f"gfx{int(parts[0])}{int(parts[1]):x}{int(parts[2]):x}"
    return None


def _amd_node(name: str, base: HostProfile, labels: Mapping[str, str], item: Mapping[str, Any]) -> FleetNode:
    """An AMD GPU node from the node labeller's labels; without a gfx target it is left unserved."""
    from .knowledge import load_knowledge

    family, device = _amd_label(labels, "family"), _amd_label(labels, "device-id")
    product = _amd_label(labels, "product-name")
    gfx, source = (gfx_from_family(family), "amd.com/gpu.family") if family else (None, "")
    known = load_knowledge().amd_gpu_for_device_id(device) if device else None
    if gfx is None and known is not None:
        gfx, source = known["gfx_target"], f"amd.com/gpu.device-id ({known['name']})"
    status = item.get("status")
    capacity = status.get("capacity") if isinstance(status, Mapping) else None
    raw_count = capacity.get(_AMD_CAPACITY) if isinstance(capacity, Mapping) else None
    count = int(raw_count) if isinstance(raw_count, (int, str)) and _DIGITS.fullmatch(str(raw_count)) else 1
    if count > _MOST_GPUS:
        raise UsageError(
            f"node {name}: {_AMD_CAPACITY}={count} is not a GPU count (0 to {_MOST_GPUS})", _LABELS_HINT
        )
    product = (product or (known or {}).get("name") or "AMD GPU").replace("_", " ")
    if gfx is None:
        return FleetNode(name, base, product, max(count, 1), vendor="amd")
    gpus = tuple(AmdGpu(gfx_target=gfx, name=product, source=source) for _ in range(max(count, 1)))
    host = base.with_changes(amd_gpus=gpus, sources={**base.sources, "amd_gpus": source})
    return FleetNode(name, host, product, len(gpus), vendor="amd")


def _joined(labels: Mapping[str, str], names: Sequence[str]) -> Optional[str]:
    """``major``, ``.minor``, ``.revision`` labels joined as one version, when all are there."""
    prefix = names[0].rsplit(".", 1)[0]
    keys = [names[0], *(prefix + suffix for suffix in names[1:])]
    if not all(key in labels for key in keys):
        return None
    return ".".join(labels[key] for key in keys)


def _twice(names: Iterable[str]) -> list[str]:
    """The names that appear more than once, sorted (in one pass: fleets have 100,000 nodes)."""
    from collections import Counter

    return sorted(name for name, count in Counter(names).items() if count > 1)


def host_kind(host: HostProfile) -> Hashable:
    """What a decision reads of a host, as a key: nodes of one kind get one decision.

    Every field but ``sources`` (where a fact came from does not change what runs): the
    platform, Python, driver, every GPU with its capability, and anything a later field adds.
    """
    kind = tuple(getattr(host, f.name) for f in fields(host) if f.name != "sources")
    try:
        hash(kind)
    except TypeError:  # a field of a type that cannot be hashed: its text stands for it
        return repr(kind)
    return kind


def gpu_summary(node: FleetNode) -> str:
    host = node.host
    if host.amd_gpus:
        targets = sorted({g.gfx_target for g in host.amd_gpus})
        return f"{node.gpu_product or host.amd_gpus[0].name} x{len(host.amd_gpus)} ({', '.join(targets)})"
    if not host.nvidia_gpus:
        if node.gpu_count and node.vendor == "amd":
            return f"{node.gpu_product or 'AMD GPU'} x{node.gpu_count}, no gfx target in its labels"
        if node.gpu_count:
            return f"{node.gpu_product or 'NVIDIA GPU'} x{node.gpu_count}, labels incomplete"
        return "no GPU"
    ccs = sorted({f"sm_{g.compute_capability[0]}{g.compute_capability[1]}" for g in host.nvidia_gpus})
    product = node.gpu_product or host.nvidia_gpus[0].name
    return f"{product} x{len(host.nvidia_gpus)} ({', '.join(ccs)}), driver {host.driver_version or 'unknown'}"


# --- planning ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeOptions:
    """What the usual decision says of one node: the runnable (release, variant) pairs."""

    node: FleetNode
    runnable: Mapping[str, Mapping[str, str]]  # release series -> variant -> reason it runs
    blocker: Optional[str]  # why nothing runs at all (None when something does)


def plan_fleet(
    options: Sequence[NodeOptions], releases_newest_first: Sequence[str], *, fewest: bool
) -> FleetPlan:
    """Choose one release for the fleet and a variant per node.

    The release is the newest among those serving the most nodes. Without ``fewest`` each node
    takes its best build of that release (the newest CUDA that runs); with ``fewest`` the set
    of variants is the smallest that still serves every node the release can serve, and each
    node takes the newest of that set that runs on it.
    """
    served_by = {
        release: sum(1 for o in options if o.runnable.get(release)) for release in releases_newest_first
    }
    candidates = [r for r in releases_newest_first if served_by[r] > 0]
    release = max(candidates, key=lambda r: served_by[r], default=None)  # max keeps the first: newest
    if release is None:
        reasons = (o.blocker or "no build of the requested torch runs here" for o in options)
        return FleetPlan(None, (), tuple(_unserved(o, why) for o, why in zip(options, reasons)))

    per_node = {o.node.name: o.runnable.get(release, {}) for o in options}
    every = {v for runs in per_node.values() for v in runs}
    allowed = _fewest_variants(per_node) if fewest else every
    nodes: list[NodePlan] = []
    # Nodes of one kind share their options (one object): their answer is worked out once.
    answers: dict[tuple[int, Optional[str]], tuple[Optional[str], str]] = {}
    summaries: dict[tuple[int, Optional[str], int], str] = {}
    for option in options:
        same = (id(option.runnable), option.blocker)
        known = answers.get(same)
        if known is not None:
            node = option.node
            look = (id(node.host), node.gpu_product, node.gpu_count)
            gpu = summaries.get(look) or summaries.setdefault(look, gpu_summary(node))
            nodes.append(NodePlan(node.name, known[0], known[1], gpu))
            continue
        runs = {v: why for v, why in per_node[option.node.name].items() if v in allowed}
        if not runs:
            reason = option.blocker or (
                f"no build of torch {release} runs here"
                + (f" (it serves the other {served_by[release]} nodes)" if served_by[release] else "")
            )
            if option.runnable:
                newest = next(r for r in releases_newest_first if option.runnable.get(r))
                reason += f"; torch {newest} would"
            nodes.append(_unserved(option, reason))
            answers[same] = (None, reason)
            continue
        variant = max(runs, key=_variant_key)
        nodes.append(NodePlan(option.node.name, variant, runs[variant], gpu_summary(option.node)))
        answers[same] = (variant, runs[variant])
    variants = tuple(sorted({n.variant for n in nodes if n.variant}, key=_variant_key, reverse=True))
    return FleetPlan(release, variants, tuple(nodes))


@functools.cache
def _variant_key(variant: str) -> tuple[int, tuple[int, ...]]:
    """Newer CUDA last: a variant name (from a decision's candidates) parsed as a Variant."""
    return Variant(variant).sort_key


def _fleet_hint(hint: str) -> str:
    """An install's ways out, as a fleet plan can take them: ``fleet plan`` (and ``lock
    --fleet``) has no ``--variant``, so the way out that forces a CPU build is left out."""
    return "; or ".join(way for way in hint.split("; or ") if "--variant cpu" not in way)


def _unserved(option: NodeOptions, reason: str) -> NodePlan:
    return NodePlan(option.node.name, None, reason, gpu_summary(option.node))


def _fewest_variants(per_node: Mapping[str, Mapping[str, str]]) -> set[str]:
    """The smallest set of variants that covers every node something covers.

    Exact (the variants of one release are few); among equally small sets, the one whose
    variants are newest wins.
    """
    servable = {frozenset(runs) for runs in per_node.values() if runs}  # one per kind of node
    every = sorted({v for runs in servable for v in runs}, key=_variant_key, reverse=True)
    for size in range(1, len(every) + 1):
        covers = [
            set(combo)
            for combo in itertools.combinations(every, size)
            if all(runs & set(combo) for runs in servable)
        ]
        if covers:
            return max(covers, key=lambda c: sorted((_variant_key(v) for v in c), reverse=True))
    return set()


def options_from_candidates(
    node: FleetNode, candidates: Iterable[Any], blocker: Optional[str]
) -> NodeOptions:
    """Group a decision's candidates (``Candidate``) into runnable variants per release."""
    runnable: dict[str, dict[str, str]] = {}
    for candidate in candidates:
        if candidate.ok:
            runnable.setdefault(candidate.torch, {})[candidate.variant] = candidate.reason.removesuffix(
                "; not the newest"
            )
    if node.gpu_count and node.vendor == "amd" and not node.host.amd_gpus:
        missing = (
            "its AMD GPU labels name no gfx target (need amd.com/gpu.family=GC_X_Y_Z, or an "
            "amd.com/gpu.device-id pip-gpu knows)"
        )
        return NodeOptions(node, {}, missing)
    if node.gpu_count and not node.host.nvidia_gpus and not node.host.amd_gpus:
        missing = f"its GPU labels are incomplete (need {_COMPUTE[0]}, {_COMPUTE[1]} and {_DRIVER_FULL})"
        return NodeOptions(node, {}, missing)
    return NodeOptions(node, runnable, None if runnable else blocker)


def render_plan(plan: FleetPlan) -> str:
    """The plan as a table, then the set of variants and the unserved nodes."""
    rows = [["node", "gpu", "variant", "reason"]]
    rows += [[printable(n.name), printable(n.gpu), n.variant or "-", printable(n.reason)] for n in plan.nodes]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(row)).rstrip()
        for row in rows
    ]
    head = f"torch {plan.torch}: " if plan.torch else "no torch release serves any node: "
    head += ", ".join(plan.variants) if plan.variants else "no variant"
    out = [head, "", *lines]
    if plan.unserved:
        out += [
            "",
            f"{len(plan.unserved)} node(s) unserved: " + ", ".join(printable(n.name) for n in plan.unserved),
        ]
    return "\n".join(out)


# --- the command ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetPlanOptions:
    """``pip-gpu fleet plan``, as typed values."""

    requirements: tuple[str, ...]
    requirement_files: tuple[str, ...]
    node_files: tuple[Path, ...]
    python_version: str
    fewest: bool = False
    pytorch_index: Optional[str] = None
    cwd: Path = Path(".")


def make_fleet_plan(options: FleetPlanOptions) -> FleetPlan:
    """Read the node files, decide for every node, and plan one release for the fleet."""
    from .decide.plan import decide_for
    from .knowledge import load_knowledge

    if not options.node_files:
        raise UsageError("no node list given", "pass --nodes FILE (kubectl get nodes -o json > nodes.json)")
    nodes: list[FleetNode] = []
    for path in options.node_files:
        nodes.extend(nodes_from_file(path, python_version=options.python_version))
    twice = _twice(n.name for n in nodes)
    if twice:
        raise UsageError(f"node names appear in more than one file: {', '.join(twice)}", "")
    knowledge = load_knowledge()
    per_node: list[NodeOptions] = []
    releases: list[str] = []
    spelled: dict[str, str] = {}  # series -> the version decided ("2.5" -> "2.5.1" when pinned)
    # Decided once per kind of host (a fleet is many copies of a few machines), then mapped.
    decided: dict[Hashable, tuple[tuple[Any, ...], Optional[str]]] = {}
    # Nodes read alike share one host object, and so one NodeOptions' runnable and blocker.
    shared: dict[tuple[int, bool], NodeOptions] = {}
    from_file: list[str] = []  # the decisions' notes that an index did not answer
    for node in nodes:
        known = shared.get((id(node.host), bool(node.gpu_count)))
        if known is None:
            kind = host_kind(node.host)
            if kind not in decided:
                plan = decide_for(
                    options.requirements,
                    options.requirement_files,
                    node.host,
                    pytorch_index=options.pytorch_index,
                    cwd=options.cwd,
                    knowledge=knowledge,
                )
                knowledge = plan.knowledge  # releases learned from the index serve every node
                decision = plan.decision
                from_file += [n for n in decision.notes if n.endswith(_FROM_FILE) and n not in from_file]
                blocked = decision.blocked()
                blocker = (
                    "; ".join(filter(None, (blocked.message, _fleet_hint(blocked.hint)))) if blocked else None
                )
                decided[kind] = (tuple(decision.candidates), blocker)
                releases.extend(c.torch for c in decision.candidates if c.torch not in releases)
                if decision.release is not None and decision.torch is not None:
                    spelled[decision.release.torch] = decision.torch
            candidates, blocker = decided[kind]
            known = shared[id(node.host), bool(node.gpu_count)] = options_from_candidates(
                node, candidates, blocker
            )
        per_node.append(NodeOptions(node, known.runnable, known.blocker))
    newest_first = [r.torch for r in knowledge.releases if r.torch in releases]
    fleet = plan_fleet(per_node, newest_first, fewest=options.fewest)
    notes = (_from_file_note(from_file),) if from_file else ()
    torch = None if fleet.torch is None else spelled.get(fleet.torch, fleet.torch)
    return FleetPlan(torch, fleet.variants, fleet.nodes, notes)


_FROM_FILE = "; decided from the knowledge file"


def _from_file_note(notes: Sequence[str]) -> str:
    """One note for the whole plan where the decisions fell back on the knowledge file: the
    first index's own words, and how many others did not answer either."""
    first = notes[0].removesuffix(_FROM_FILE)
    others = len(notes) - 1
    more = f", nor {others} other variant index{'es' if others > 1 else ''}" if others else ""
    return f"{first}{more}; the plan is decided from the knowledge file"
