"""The ``pip-gpu`` command line: parse arguments, run one command, render its result.

Errors become one message and an exit status here, and nowhere else; ``--debug`` shows
the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from . import __version__
from .errors import EXIT_INTERRUPTED, EXIT_NO_BUILD, EXIT_OK, PipGpuError

__all__ = ["main"]

DESCRIPTION = """\
pip-gpu installs the PyTorch build that really runs on this machine.

It reads the NVIDIA driver and every GPU's compute capability (through NVML), picks the
torch build whose CUDA the driver supports and whose kernels cover the GPUs, and routes
torch, torchvision, torchaudio and the rest of the family to that build's index.
"""

EPILOG = """\
examples:
  pip-gpu detect                     what this machine has
  pip-gpu explain torch==2.5.1       which build runs here, and why the others do not
  pip-gpu explain torch --driver 535.104.05 --compute-capability 8.0 --json
                                     decide for another host (CI, Docker builds)
  pip-gpu install torch torchvision  install the right build with pip or uv

exit status: 0 success; 1 a check found a problem; 2 bad input, or no build runs
(nothing was changed); otherwise the installer's own exit status; 130 interrupted.
"""


def _add_host_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "target host",
        "Decide for another host (CI, Docker builds, a fleet). Facts given here replace the "
        "detected ones; the rest is detected.",
    )
    group.add_argument(
        "--driver", metavar="VERSION", help="NVIDIA driver version, e.g. 535.104.05 [PIP_GPU_DRIVER]"
    )
    group.add_argument(
        "--compute-capability",
        metavar="X.Y",
        action="append",
        help="a GPU's compute capability; repeat for several GPUs [PIP_GPU_COMPUTE_CAPABILITY=8.0,9.0]",
    )
    group.add_argument("--no-gpu", action="store_true", help="the target has no GPU [PIP_GPU_NO_GPU=1]")
    group.add_argument("--platform", choices=("linux", "windows", "macos"), help="target operating system")
    group.add_argument("--arch", choices=("x86_64", "aarch64", "arm64"), help="target CPU architecture")
    group.add_argument("--python-version", metavar="X.Y", help="target Python version")


def _add_decision_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("decision")
    group.add_argument(
        "--variant",
        metavar="NAME",
        help="use this build (cu124, cpu, rocm6.2, xpu); still checked [PIP_GPU_VARIANT]",
    )
    group.add_argument("--force", action="store_true", help="accept a --variant the host cannot run")
    group.add_argument(
        "--pytorch-index",
        metavar="URL",
        help="base of the PyTorch indexes, for mirrors; the variant index is URL/<variant> "
        "[PIP_GPU_PYTORCH_INDEX]",
    )


def build_parser(core_only: bool = False) -> argparse.ArgumentParser:
    """The whole command line; ``core_only``: only detect, explain and matrix.

    ``core_only`` is for a run of one of those three: the other commands' modules (install,
    lock, shim, uv, doctor) import most of the package, and a decision need not pay for them.
    """
    parser = argparse.ArgumentParser(
        prog="pip-gpu",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pip-gpu {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    detect = commands.add_parser(
        "detect",
        help="show what this host has: OS, Python, NVIDIA driver, GPUs",
        description="Show the host as pip-gpu sees it, and where each fact came from.",
    )
    detect.add_argument("--json", action="store_true", help="print JSON")
    _add_host_flags(detect)

    explain = commands.add_parser(
        "explain",
        help="show which torch build runs here, and why the others do not",
        description=(
            "Decide which torch build to install for the requirements (default: torch) and list "
            "every candidate build with the reason it was taken or rejected. Exit status 2 when "
            "no build runs."
        ),
    )
    explain.add_argument(
        "requirements", nargs="*", metavar="REQUIREMENT", help="e.g. torch==2.5.1 torchvision"
    )
    explain.add_argument(
        "-r", "--requirement", action="append", default=[], metavar="FILE", help="requirements file"
    )
    explain.add_argument("--json", action="store_true", help="print JSON")
    explain.add_argument("--all", action="store_true", help="list the candidates of every release")
    _add_host_flags(explain)
    _add_decision_flags(explain)

    matrix = commands.add_parser(
        "matrix",
        help="print pip-gpu's knowledge: CUDA drivers, torch releases and their builds",
        description="Print the knowledge file: driver minimums, releases, builds, GPU architectures.",
    )
    matrix.add_argument("--json", action="store_true", help="print the knowledge as JSON")
    if core_only:
        return parser

    from .install import add_install_parser

    add_install_parser(commands, _add_host_flags, _add_decision_flags)
    from .lock import add_lock_parsers

    add_lock_parsers(commands, _add_host_flags, _add_decision_flags)

    from .shim import add_shim_parser
    from .uv_project import add_uv_parser

    add_shim_parser(commands)
    add_uv_parser(commands, _add_host_flags)
    from .doctor import add_doctor_parser

    add_doctor_parser(commands, _add_host_flags)
    return parser


def _is_core_command(argv: Sequence[str]) -> bool:
    """Whether the command is detect, explain or matrix (only --debug may come before it)."""
    for token in argv:
        if token != "--debug":
            return token in _COMMANDS
    return False


def main(argv: Optional[Sequence[str]] = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(core_only=_is_core_command(arguments))
    args = parser.parse_args(arguments)
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    try:
        result: int = args.handler(args) if hasattr(args, "handler") else _COMMANDS[args.command](args)
        return result
    except PipGpuError as error:
        if args.debug:
            raise
        print(error.render(), file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("pip-gpu: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


# --- shared steps --------------------------------------------------------------------------


def host_from_args(args: argparse.Namespace) -> Any:
    from .detect import detect_host, overrides_from_env
    from .knowledge import load_knowledge

    overrides = overrides_from_env(
        os.environ,
        driver=args.driver,
        compute_capabilities=args.compute_capability,
        no_gpu=args.no_gpu,
        os_name=args.platform,
        arch=args.arch,
        python_version=args.python_version,
    )
    return detect_host(load_knowledge(), overrides)


def emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False))


# --- detect --------------------------------------------------------------------------------


def cmd_detect(args: argparse.Namespace) -> int:
    from .report import render_host

    host = host_from_args(args)
    if args.json:
        emit_json(host.to_json())
    else:
        print(render_host(host))
    return EXIT_OK


# --- explain -------------------------------------------------------------------------------


def cmd_explain(args: argparse.Namespace) -> int:
    from .plan import decide_for
    from .report import decision_json, render_decision

    host = host_from_args(args)
    outcome = decide_for(
        args.requirements,
        args.requirement,
        host,
        variant=args.variant,
        force=args.force,
        pytorch_index=args.pytorch_index,
        cwd=Path.cwd(),
        context=_explain_context(args.requirements, args.requirement),
    )
    constraints = outcome.torch_constraints
    if args.json:
        emit_json(decision_json(outcome.decision, host, constraints=constraints))
    else:
        print(render_decision(outcome.decision, host, show_all=args.all, constraints=constraints))
    return EXIT_OK if outcome.decision.ok else EXIT_NO_BUILD


def _explain_context(requirements: list[str], files: list[str]) -> Any:
    """Other packages given: resolve them (with this interpreter, the user's pip settings) to
    read what they need of torch. Only the family named: nothing to resolve, no subprocess."""
    if not files and all(_names_only_family(text) for text in requirements):
        return None
    from .resolution import ResolutionContext

    return ResolutionContext(python=Path(sys.executable), prefer_installed=False, strict=False)


def _names_only_family(text: str) -> bool:
    from packaging.utils import canonicalize_name

    from .knowledge import load_knowledge

    head = text.split(";")[0].split("@")[0]
    for stop in "[=<>!~ ":
        head = head.split(stop)[0]
    return canonicalize_name(head) in {canonicalize_name(m.name) for m in load_knowledge().family}


# --- matrix --------------------------------------------------------------------------------


def cmd_matrix(args: argparse.Namespace) -> int:
    from .knowledge import load_knowledge
    from .report import knowledge_json, render_knowledge

    knowledge = load_knowledge()
    if args.json:
        emit_json(knowledge_json(knowledge))
    else:
        print(render_knowledge(knowledge))
    return EXIT_OK


_COMMANDS = {"detect": cmd_detect, "explain": cmd_explain, "matrix": cmd_matrix}
