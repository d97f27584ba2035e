"""Flags shared by several commands, and the typed values they become.

Only the command line sees ``argparse``: a handler turns its ``Namespace`` into typed options
here (:func:`host_flags`) and hands those to the step it runs.
"""

from __future__ import annotations

import argparse
from typing import Any, Optional

from ..host import HostFlags
from ..variant import CHANNELS

__all__ = ["add_decision_flags", "add_host_flags", "add_target_flags", "host_flags"]


class _Once(argparse.Action):
    """A single-value flag: given twice, it is refused, never silently overridden."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Optional[str] = None) -> None:
        if getattr(namespace, self.dest, None) is not None:
            raise argparse.ArgumentError(
                self, f"given twice ({getattr(namespace, self.dest)} and {values}); give it once"
            )
        setattr(namespace, self.dest, values)


class _Several(argparse.Action):
    """A flag that takes several values, repeated or comma-separated (``--platform linux,windows``)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Optional[str] = None) -> None:
        given = [part.strip() for part in str(values).split(",") if part.strip()]
        allowed = self.metavar_choices
        for value in given:
            if allowed and value not in allowed:
                raise argparse.ArgumentError(
                    self, f"invalid choice: {value!r} (choose from {', '.join(allowed)})"
                )
        if not given:
            raise argparse.ArgumentError(self, "names no value")
        setattr(
            namespace, self.dest, list(dict.fromkeys([*(getattr(namespace, self.dest, None) or []), *given]))
        )

    metavar_choices: tuple[str, ...] = ()


def _several(choices: tuple[str, ...]) -> type[_Several]:
    return type("_SeveralOf", (_Several,), {"metavar_choices": choices})


def add_host_flags(parser: argparse.ArgumentParser, many: bool = False) -> None:
    """``many``: --platform, --arch and --python-version take several values (``lock``)."""
    group = parser.add_argument_group(
        "target host",
        "Decide for another host (CI, Docker builds, a fleet). Facts given here replace the "
        "detected ones; the rest is detected.",
    )
    group.add_argument(
        "--driver",
        metavar="VERSION",
        action=_Once,
        help="NVIDIA driver version, e.g. 535.104.05 [PIP_GPU_DRIVER]",
    )
    group.add_argument(
        "--compute-capability",
        metavar="X.Y",
        action="append",
        help="a GPU's compute capability; repeat for several GPUs [PIP_GPU_COMPUTE_CAPABILITY=8.0,9.0]",
    )
    group.add_argument(
        "--amd-gfx",
        metavar="GFX",
        action="append",
        help="an AMD GPU's gfx target (rocminfo names it), the AMD counterpart of "
        "--compute-capability; repeat for several GPUs [PIP_GPU_AMD_GFX=gfx1100,gfx90a]",
    )
    group.add_argument("--no-gpu", action="store_true", help="the target has no GPU [PIP_GPU_NO_GPU=1]")
    platforms, arches = ("linux", "windows", "macos"), ("x86_64", "aarch64", "arm64")
    if many:
        several = " (repeat, or comma-separate, for several)"
        group.add_argument(
            "--platform",
            action=_several(platforms),
            metavar="{linux,windows,macos}",
            help="target OS" + several,
        )
        group.add_argument(
            "--arch",
            action=_several(arches),
            metavar="{x86_64,aarch64,arm64}",
            help="target CPU architecture" + several,
        )
        group.add_argument(
            "--python-version", action=_several(()), metavar="X.Y", help="target Python" + several
        )
        return
    group.add_argument("--platform", choices=platforms, action=_Once, help="target operating system")
    group.add_argument("--arch", choices=arches, action=_Once, help="target CPU architecture")
    group.add_argument("--python-version", metavar="X.Y", action=_Once, help="target Python version")


def add_target_flags(parser: argparse.ArgumentParser) -> None:
    """``--python`` and ``--system``: where the packages go (or which environment is read)."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--python",
        metavar="PYTHON",
        help="target interpreter or virtual environment (default: $VIRTUAL_ENV, else ./.venv)",
    )
    where.add_argument(
        "--system", action="store_true", help="target the python3 on PATH, outside any virtual environment"
    )


def add_decision_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("decision")
    group.add_argument(
        "--variant",
        metavar="NAME",
        action=_Once,
        help="use this build (cu124, cpu, rocm6.2, xpu); still checked [PIP_GPU_VARIANT]",
    )
    group.add_argument("--force", action="store_true", help="accept a --variant the host cannot run")
    group.add_argument(
        "--pytorch-index",
        metavar="URL",
        action=_Once,
        help="base of the PyTorch indexes, for mirrors; the variant index is URL/<variant> "
        "[PIP_GPU_PYTORCH_INDEX]",
    )
    group.add_argument(
        "--channel",
        choices=CHANNELS,
        action=_Once,
        help="stable (default), or nightly / test: the variant index is URL/nightly/<variant> "
        "(URL/test/<variant>), decided from what that channel publishes, pre-releases included "
        "[PIP_GPU_CHANNEL; [tool.pip-gpu] channel]",
    )
    group.add_argument(  # issue 26: PEP 825 variant wheels (pip_gpu.cli.variants)
        "--variant-index",
        metavar="URL",
        action=_Once,
        help="an index serving the torch family as PEP 825 variant wheels [PIP_GPU_VARIANT_INDEX]",
    )


def host_flags(args: argparse.Namespace) -> HostFlags:
    """The target-host flags as given; the rest is detected."""
    ccs = getattr(args, "compute_capability", None) or ()
    return HostFlags(
        driver=getattr(args, "driver", None),
        compute_capabilities=tuple(ccs),
        amd_gfx=tuple(getattr(args, "amd_gfx", None) or ()),
        no_gpu=bool(getattr(args, "no_gpu", False)),
        platform=_one(getattr(args, "platform", None)),
        arch=_one(getattr(args, "arch", None)),
        python_version=_one(getattr(args, "python_version", None)),
    )


def _one(value: Any) -> Optional[str]:
    """``lock`` takes several platforms: the first one stands for this host's decision."""
    if isinstance(value, list):
        return str(value[0]) if value else None
    return None if value is None else str(value)


def passthrough_dest(long: str) -> str:
    """``pt_--quiet``: the global -q/-v are merged into these (:mod:`pip_gpu.cli`)."""
    return f"pt_{long}"


def passed_options(args: argparse.Namespace) -> list[tuple[str, Optional[str]]]:
    """The pass-through installer options ``install`` was given (long name, value or None for
    a flag); none for a command without them."""
    from ..route import INSTALLER_OPTIONS

    passed: list[tuple[str, Optional[str]]] = []
    for option in INSTALLER_OPTIONS:
        given = getattr(args, passthrough_dest(option.long), None)
        if option.takes_value:
            passed += [(option.long, value) for value in given or ()]
        else:
            passed += [(option.long, None)] * (given or 0)
    return passed
