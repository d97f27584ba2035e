"""``pip-gpu knowledge verify WHEEL...``: how a wheel differs from its row in the knowledge file.

For maintainers adding a release: the knowledge row should be written from the wheels
themselves (their ``version.py``, METADATA and compiled GPU code), not from release notes.
Exit status 0 when every wheel agrees, 1 when any differs, 2 for a file that is not a wheel.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from .compiled import WheelFacts, read_wheel
from .errors import UsageError
from .host import ComputeCapability, format_compute_capability
from .knowledge import Knowledge

__all__ = ["Difference", "WheelCheck", "check_wheel", "check_wheels", "render_check", "verify_json"]

# cuda-toolkit[...]==13.0.3, nvidia-cuda-runtime-cu12==12.4.127, nvidia-cuda-runtime==13.2.1
_CUDA_RUNTIME_PIN = re.compile(
    r"^(cuda-toolkit|nvidia-cuda-runtime(?:-cu\d+)?)\b[^=;]*==\s*(\d+)\.(\d+)", re.IGNORECASE
)


@dataclass(frozen=True)
class Difference:
    field: str  # "python", "sass", "ptx", "version", "build", "cuda-runtime", "release"
    wheel: str
    knowledge: str


@dataclass(frozen=True)
class WheelCheck:
    facts: WheelFacts
    variant: str
    platform: Optional[str]
    python_tags: tuple[str, ...]
    cuda_runtime: Optional[str]  # the CUDA minor the METADATA pins the runtime to, e.g. "13.0"
    differences: tuple[Difference, ...]

    def to_json(self) -> dict[str, Any]:
        compiled = self.facts.compiled
        return {
            "wheel": self.facts.filename,
            "torch": self.facts.version,
            "cuda": self.facts.cuda,
            "hip": self.facts.hip,
            "variant": self.variant,
            "platform": self.platform,
            "python_tags": list(self.python_tags),
            "requires_python": self.facts.requires_python,
            "cuda_runtime_pin": self.cuda_runtime,
            "compiled_archs": None if compiled is None else compiled.to_json(),
            "differences": [vars(d) for d in self.differences],
        }


def _archs(values: Optional[tuple[ComputeCapability, ...]]) -> str:
    if values is None:
        return "unknown"
    return ", ".join(format_compute_capability(v) for v in values) or "none"


def _variant(facts: WheelFacts) -> str:
    label = Version(facts.version).local if facts.version else None
    if label:
        return label
    if facts.cuda:
        return "cu" + "".join(facts.cuda.split(".")[:2])
    if facts.hip:
        return "rocm" + ".".join(facts.hip.split(".")[:2])
    return "cpu"


def _platform_and_pythons(filename: str) -> tuple[Optional[str], tuple[str, ...]]:
    from .decide.discover import platforms_of

    try:
        _, _, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None, ()
    platforms = sorted(platforms_of(tags))
    pythons = set()
    for tag in tags:
        abi_free_threaded = tag.abi.endswith("t") and tag.abi.startswith("cp3")
        if tag.interpreter.startswith("cp3") and tag.interpreter[3:].isdigit():
            pythons.add(f"3.{tag.interpreter[3:]}" + ("t" if abi_free_threaded else ""))
    return (platforms[0] if len(platforms) == 1 else None), tuple(sorted(pythons))


def _python_differences(
    facts: WheelFacts, pythons: tuple[str, ...], listed: tuple[str, ...]
) -> list[Difference]:
    found: list[Difference] = []
    missing = [p for p in pythons if p not in listed]
    if missing:
        found.append(Difference("python", f"wheel for Python {', '.join(missing)}", ", ".join(listed)))
    if facts.requires_python:
        try:
            spec = SpecifierSet(facts.requires_python)
        except InvalidSpecifier:
            return found
        plain = sorted((p for p in listed if not p.endswith("t")), key=Version)
        below = [f"3.{minor}" for minor in range(6, 20)]
        oldest_allowed = next((p for p in below if spec.contains(f"{p}.0")), None)
        if plain and oldest_allowed != plain[0]:
            found.append(
                Difference(
                    "python",
                    f"Requires-Python {facts.requires_python} (oldest {oldest_allowed})",
                    f"oldest {plain[0]} ({', '.join(listed)})",
                )
            )
    return found


def check_wheel(wheel: Path, knowledge: Knowledge) -> WheelCheck:
    """Read the wheel and compare each fact with the knowledge row it belongs to."""
    facts = read_wheel(wheel)
    try:
        version = Version(facts.version)
    except (InvalidVersion, ValueError):  # ValueError: more digits than int() takes
        from .ui import shorten

        raise UsageError(
            f"{wheel}: version.py says {shorten(facts.version, 60)!r}, not a version", "pass a torch wheel"
        ) from None
    variant = _variant(facts)
    platform, pythons = _platform_and_pythons(facts.filename)
    runtime = next(
        (
            f"{m.group(2)}.{m.group(3)}"
            for r in facts.requires_dist
            if (m := _CUDA_RUNTIME_PIN.match(r.strip()))
        ),
        None,
    )
    differences: list[Difference] = []
    series = f"{version.major}.{version.minor}"
    release = knowledge.release(series)
    if release is None:
        differences.append(Difference("release", f"torch {series}", "not in the knowledge file"))
        return WheelCheck(facts, variant, platform, pythons, runtime, tuple(differences))
    if version.public not in release.versions:
        differences.append(Difference("version", version.public, ", ".join(release.versions)))
    differences += _python_differences(facts, pythons, release.python)
    if facts.cuda and runtime and runtime != ".".join(facts.cuda.split(".")[:2]):
        differences.append(
            Difference("cuda-runtime", f"version.py cuda {facts.cuda}", f"METADATA pins {runtime}")
        )
    if platform is not None and version.local is None and release.pypi_default_for(platform) != variant:
        differences.append(
            Difference("pypi-default", f"PyPI wheel is {variant}", str(release.pypi_default_for(platform)))
        )
    build = next((b for b in release.builds if b.variant == variant and b.platform == platform), None)
    if build is None:
        differences.append(
            Difference("build", f"{variant} on {platform}", "no such build in the knowledge file")
        )
    elif facts.compiled is not None:
        if build.sass != facts.compiled.sass:
            differences.append(Difference("sass", _archs(facts.compiled.sass), _archs(build.sass)))
        if (build.ptx or ()) != facts.compiled.ptx or build.ptx is None:
            differences.append(Difference("ptx", _archs(facts.compiled.ptx), _archs(build.ptx)))
    return WheelCheck(facts, variant, platform, pythons, runtime, tuple(differences))


def render_check(check: WheelCheck) -> str:
    head = f"torch {check.facts.version} ({check.platform or 'platform unknown'})"
    compiled = check.facts.compiled
    lines = [f"{head}: " + ("agrees with the knowledge file" if not check.differences else "differs")]
    lines.append(f"  wheel     {check.facts.filename}")
    lines.append(
        f"  read      cuda {check.facts.cuda}, Requires-Python {check.facts.requires_python}, "
        + (f"compiled {compiled.describe()}" if compiled else "no CUDA library")
    )
    for difference in check.differences:
        lines.append(f"  {difference.field}: wheel {difference.wheel}; knowledge file {difference.knowledge}")
    return "\n".join(lines)


def check_wheels(names: Sequence[str], knowledge: Knowledge) -> tuple[WheelCheck, ...]:
    """Every wheel checked against the knowledge file; a name that is no file is bad input."""
    for name in names:
        if not Path(name).is_file():
            raise UsageError(f"{name}: no such file", "pass the path of a torch wheel")
    return tuple(check_wheel(Path(name), knowledge) for name in names)


def verify_json(checks: Sequence[WheelCheck]) -> dict[str, Any]:
    """``knowledge verify --json``: whether all agree, and each wheel's differences."""
    return {"agrees": not any(c.differences for c in checks), "wheels": [c.to_json() for c in checks]}
