"""How pip-gpu shows hosts, decisions and its knowledge: readable tables and stable JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional

from .host import HostProfile, format_compute_capability
from .knowledge import Build, Knowledge
from .redact import redact_url

if TYPE_CHECKING:  # `detect` renders a host without the decision's imports (packaging.requirements)
    from .decide.rules import Decision

__all__ = ["decision_json", "knowledge_json", "render_decision", "render_host", "render_knowledge"]


def _table(rows: list[list[str]], indent: str = "  ") -> str:
    if not rows:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        lines.append(indent + "  ".join(cells).rstrip())
    return "\n".join(lines)


def render_host(host: HostProfile) -> str:
    src = host.sources
    libc = f", {host.libc}" if host.libc else ""
    lines = [
        f"Platform   {host.os} {host.arch}{libc}, Python {host.python_version}"
        f"   [{src.get('os', '?')}; python: {src.get('python_version', '?')}]"
    ]
    if host.driver_version:
        cuda = f", supports CUDA <= {host.cuda_driver_version}" if host.cuda_driver_version else ""
        lines.append(
            f"Driver     NVIDIA {host.driver_version}{cuda}   [{src.get('driver_version', '?')}"
            + (f"; cuda: {src['cuda_driver_version']}" if "cuda_driver_version" in src else "")
            + "]"
        )
    elif "driver_version" in src:  # where detection looked
        lines.append(f"Driver     no NVIDIA driver   [{src['driver_version']}]")
    elif src.get("nvidia_gpus", "").startswith(("--", "PIP_GPU_")):  # --no-gpu: not looked for
        lines.append(f"Driver     none   [{src['nvidia_gpus']}]")
    else:
        lines.append("Driver     no NVIDIA driver found")
    if host.tegra:
        lines.append(f"Jetson     a Tegra (L4T) board: {host.tegra}")
    if host.nvidia_gpus:
        rows = [["#", "GPU", "capability", "memory", "UUID", "visible", "source"]]
        for gpu in host.nvidia_gpus:
            rows.append(
                [
                    str(gpu.index),
                    gpu.name,
                    f"{format_compute_capability(gpu.compute_capability)} "
                    f"(sm_{gpu.compute_capability[0]}{gpu.compute_capability[1]})",
                    f"{gpu.memory_total_mib} MiB" if gpu.memory_total_mib is not None else "-",
                    gpu.uuid or "-",
                    "yes" if gpu.visible else "no",
                    gpu.source,
                ]
            )
        lines.append("NVIDIA GPUs")
        lines.append(_table(rows))
        if host.cuda_visible_devices is not None:
            lines.append(f"  CUDA_VISIBLE_DEVICES={host.cuda_visible_devices!r}")
    else:
        lines.append("NVIDIA GPUs none")
    for amd in host.amd_gpus:
        lines.append(f"AMD GPU    {amd.name} ({amd.gfx_target})   [{amd.source}]")
    for igpu in host.intel_gpus:
        kind = "discrete" if igpu.discrete else "integrated"
        lines.append(f"Intel GPU  {igpu.name} ({igpu.pci_device_id}, {kind})   [{igpu.source}]")
    for problem in host.problems:
        lines.append(f"Problem    {problem.message}")
        if problem.hint:
            lines.append(f"           hint: {problem.hint}")
    return "\n".join(lines)


def decision_json(
    decision: Decision, host: HostProfile, *, constraints: Sequence[Any] = ()
) -> dict[str, Any]:
    """The object ``explain --json`` prints; keys are a stable interface for scripts.

    ``constraints``: :class:`~pip_gpu.resolution.TorchConstraint` values, who asks what of torch.
    """
    chosen_release = decision.release.torch if decision.release is not None else None

    def version_of(series: str) -> str:
        # A candidate of the chosen release installs what the decision says (2.5.1 for
        # torch==2.5.1); one of another release is known by its series only.
        return decision.torch if series == chosen_release and decision.torch else series

    data: dict[str, Any] = {
        "variant": decision.variant,
        "index_url": redact_url(decision.index_url) if decision.index_url else None,
        "torch": decision.torch,
        "release": chosen_release,
        "cuda": decision.build.cuda if decision.build else None,
        "host": host.to_json(),
        "candidates": [
            {
                "variant": c.variant,
                "torch": version_of(c.torch),
                "release": c.torch,
                "platform": c.platform,
                "ok": c.ok,
                "chosen": (c.torch, c.variant) == (chosen_release, decision.variant),
                "reason": c.reason,
            }
            for c in decision.candidates
        ],
        "notes": list(decision.notes),
        "constraints": [c.to_json() for c in constraints],
    }
    if decision.blocker is not None:
        data["error"] = decision.blocker.message
        data["hint"] = decision.blocker.hint
    return data


def render_decision(
    decision: Decision, host: HostProfile, *, show_all: bool = False, constraints: Sequence[Any] = ()
) -> str:
    gpus = ", ".join(
        f"{g.name} (sm_{g.compute_capability[0]}{g.compute_capability[1]})" for g in host.visible_nvidia_gpus
    )
    driver = f"driver {host.driver_version}" if host.driver_version else "no NVIDIA driver"
    amd = ", ".join(f"AMD {g.gfx_target}" for g in host.amd_gpus)
    lines = [
        f"Host: {host.platform_tag}, Python {host.python_version}, {driver}"
        + (f", {gpus}" if gpus else "")
        + (f", {amd}" if amd else "")
    ]
    blocker = decision.blocked()
    if blocker is None:
        where = redact_url(decision.index_url) if decision.index_url else "PyPI (no PyTorch index)"
        lines.insert(0, f"torch {decision.torch} -> {decision.variant}   from {where}")
    else:
        lines.insert(0, f"No build runs: {blocker.message}")
        lines.insert(1, f"  ways out: {blocker.hint}")
    if constraints:
        lines.append("Torch constraints:")
        lines += [f"  {redact_url(c.describe())}" for c in constraints]
    for note in decision.notes:
        lines.append(f"Note: {note}")
    shown = decision.candidates
    if not show_all and host.nvidia_gpus:
        # On an NVIDIA host the ROCm and XPU builds are never in question.
        shown = tuple(c for c in shown if not (c.variant.is_rocm or c.variant.is_xpu))
    if not show_all and decision.release is not None:
        newest_first = [c for c in shown if _series_key(c.torch) >= _series_key(decision.release.torch)]
        hidden = len(shown) - len(newest_first)
        shown = tuple(newest_first)
    else:
        hidden = 0
    rows = [["torch", "variant", "verdict", "reason"]]
    for c in shown:
        chosen = decision.release is not None and (c.torch, c.variant) == (
            decision.release.torch,
            decision.variant,
        )
        verdict = "CHOSEN" if chosen else ("runs" if c.ok else "no")
        rows.append([c.torch, c.variant, verdict, c.reason])
    if len(rows) > 1:
        lines.append("")
        lines.append(_table(rows))
    if hidden:
        lines.append(f"  ... and {hidden} builds of older releases (--all lists every candidate)")
    return "\n".join(lines)


def _series_key(series: str) -> tuple[int, ...]:
    return tuple(int(p) for p in series.split(".") if p.isdigit())


def _archs(build: Build) -> str:
    if build.gfx is not None:
        return " ".join(build.gfx)
    if build.cuda is None:
        return "-"
    if build.sass is None:
        return "unknown"
    sass = " ".join(f"{a}{b}" for a, b in build.sass)
    ptx = " +PTX " + " ".join(f"{a}{b}" for a, b in build.ptx) if build.ptx else ""
    return f"sm {sass}{ptx}"


def render_knowledge(knowledge: Knowledge) -> str:
    out = ["CUDA -> minimum NVIDIA driver (minor-version compatibility)"]
    rows = [["CUDA", "Linux", "Windows", "confidence"]]
    for row in knowledge.cuda_drivers:
        rows.append(
            [row.cuda, row.linux_minor_compat or "-", row.windows_minor_compat or "-", row.confidence]
        )
    out.append(_table(rows))
    out.append("")
    out.append("torch releases and their builds")
    rows = [["torch", "python", "variant", "platform", "architectures", "confidence"]]
    for release in knowledge.releases:
        plain = [p for p in release.python if not p.endswith("t")]
        py = f"{plain[0]}-{plain[-1]}" if plain else "-"
        py += "".join(f" {p}" for p in release.python if p.endswith("t"))
        for build in sorted(release.builds, key=lambda b: (b.platform, b.variant.sort_key)):
            rows.append([release.torch, py, build.variant, build.platform, _archs(build), build.confidence])
    out.append(_table(rows))
    return "\n".join(out)


def _ccs(values: Optional[tuple[tuple[int, int], ...]]) -> Optional[list[str]]:
    return None if values is None else [format_compute_capability(v) for v in values]


def knowledge_json(knowledge: Knowledge) -> dict[str, Any]:
    return {
        "pytorch_index": knowledge.pytorch_index,
        "cuda_drivers": [row._asdict() for row in knowledge.cuda_drivers],
        "driver_branches": [row._asdict() for row in knowledge.driver_branches],
        "family": [m._asdict() for m in knowledge.family],
        "releases": [
            {
                "torch": r.torch,
                "versions": list(r.versions),
                "python": list(r.python),
                "companions": r.companions,
                "pypi_default": r.pypi_default,
                "pypi_defaults": r.pypi_defaults,
                "python_only_in": None
                if r.python_only_in is None
                else {k: list(v) for k, v in r.python_only_in.items()},
                "companion_ranges": r.companion_ranges,
                "confidence": r.confidence,
                "source": r.source,
                "builds": [
                    {
                        "variant": b.variant,
                        "platform": b.platform,
                        "cuda": b.cuda,
                        "sass": _ccs(b.sass),
                        "ptx": _ccs(b.ptx),
                        "gfx": list(b.gfx) if b.gfx is not None else None,
                        "confidence": b.confidence,
                        "source": b.source,
                    }
                    for b in r.builds
                ],
            }
            for r in knowledge.releases
        ],
        "gpus": list(knowledge.gpus),
        "tegra": None
        if knowledge.tegra is None
        else {
            "compute_capabilities": _ccs(knowledge.tegra.compute_capabilities),
            "jetson_index_hint": knowledge.tegra.jetson_index_hint,
            "source": knowledge.tegra.source,
        },
    }
