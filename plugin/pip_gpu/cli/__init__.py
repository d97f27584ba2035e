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

from .. import __version__
from ..errors import (
    EXIT_CHECK_FAILED,
    EXIT_NO_BUILD,
    EXIT_OK,
    EXIT_USAGE,
    PipGpuError,
    UsageError,
)

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

global options (before or after the command): --debug, -q/--quiet, -v/--verbose, and
--json for the commands that print JSON.

exit status: 0 success; 1 a check found a problem; 2 bad input, or no build runs
(nothing was changed); otherwise the installer's own exit status; 130 interrupted;
141 the output was closed early (as after SIGPIPE: `pip-gpu matrix | head`).
"""

# A process whose reader went away exits as one killed by SIGPIPE would: 128 + 13.
EXIT_CLOSED_OUTPUT = 128 + 13


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


def _add_host_flags(parser: argparse.ArgumentParser, many: bool = False) -> None:
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


def _add_decision_flags(parser: argparse.ArgumentParser) -> None:
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


class _Parser(argparse.ArgumentParser):
    """argparse, except that a closed stdout under ``--help`` is not ignored (exit 141)."""

    def _print_message(self, message: str, file: Optional[Any] = None) -> None:
        if message:
            (file or sys.stderr).write(message)


def build_parser(core_only: bool = False) -> argparse.ArgumentParser:
    """The whole command line; ``core_only``: only detect, explain and matrix.

    ``core_only`` is for a run of one of those three: the other commands' modules (install,
    lock, shim, uv, doctor) import most of the package, and a decision need not pay for them.
    """
    parser = _Parser(
        prog="pip-gpu",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pip-gpu {__version__}")
    parser.add_argument("--debug", dest="global_debug", action="store_true", help="show tracebacks")
    parser.add_argument(
        "-q", "--quiet", dest="global_quiet", action="count", default=0, help="no progress or notes"
    )
    parser.add_argument(
        "-v", "--verbose", dest="global_verbose", action="count", default=0, help="more detail"
    )
    parser.add_argument(
        "--json", dest="global_json", action="store_true", help="print JSON (commands that can)"
    )
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
    explain.add_argument(
        "--offline",
        action="store_true",
        help="do not ask the index whether a torch release newer than pip-gpu knows exists [PIP_GPU_OFFLINE]",
    )
    _add_host_flags(explain)
    _add_decision_flags(explain)

    matrix = commands.add_parser(
        "matrix",
        help="print pip-gpu's knowledge: CUDA drivers, torch releases and their builds",
        description="Print the knowledge file: driver minimums, releases, builds, GPU architectures.",
    )
    matrix.add_argument("--json", action="store_true", help="print the knowledge as JSON")
    if core_only:
        _add_global_options(commands)
        return parser

    from ..install import add_install_parser

    add_install_parser(commands, _add_host_flags, _add_decision_flags)
    from ..lock.resolve import add_lock_parsers

    add_lock_parsers(commands, _add_host_flags, _add_decision_flags)

    from ..shims import add_shim_parser
    from ..uv_project import add_uv_parser

    add_shim_parser(commands)
    add_uv_parser(commands, _add_host_flags)
    from ..doctor.checks import add_doctor_parser

    add_doctor_parser(commands, _add_host_flags)
    _add_fleet_parser(commands)
    from ..verify import add_knowledge_parser

    add_knowledge_parser(commands)
    _add_global_options(commands)
    return parser


def _add_fleet_parser(commands: Any) -> None:
    fleet = commands.add_parser(
        "fleet",
        help="plan one torch release and the builds a GPU fleet needs",
        description="Decide for every node of a fleet without its GPUs.",
    )
    actions = fleet.add_subparsers(dest="fleet_command", metavar="ACTION", required=True)
    plan = actions.add_parser(
        "plan",
        help="which variant each node gets, and the nodes nothing runs on",
        description=(
            "Read `kubectl get nodes -o json` (NVIDIA GPU Feature Discovery labels: driver version, "
            "compute capability, product, count; nodes without them are CPU nodes) or `pip-gpu detect "
            "--json` reports, decide for each node, and print one torch release for the fleet, the "
            "variant each node gets and the nodes nothing runs on. Exit status 0 when every node is "
            "served, 1 when some node is not, 2 on bad input."
        ),
    )
    plan.add_argument(
        "requirements", nargs="*", metavar="REQUIREMENT", help="e.g. torch==2.5.1 (default: torch)"
    )
    plan.add_argument(
        "-r", "--requirement", action="append", default=[], metavar="FILE", help="requirements file"
    )
    plan.add_argument(
        "--nodes", action="append", default=[], metavar="FILE", required=True, help="node list (repeatable)"
    )
    plan.add_argument(
        "--fewest", action="store_true", help="the fewest variants that still serve every servable node"
    )
    plan.add_argument(
        "--python-version", metavar="X.Y", help="the nodes' Python for Kubernetes nodes (default: this one)"
    )
    plan.add_argument(
        "--pytorch-index", metavar="URL", help="base of the PyTorch indexes [PIP_GPU_PYTORCH_INDEX]"
    )
    plan.add_argument("--json", action="store_true", help="print JSON")
    plan.set_defaults(handler=cmd_fleet_plan)


def cmd_fleet_plan(args: argparse.Namespace) -> int:
    from ..fleet import FleetPlanOptions, make_fleet_plan, render_plan

    python_version = args.python_version or "{}.{}".format(*sys.version_info[:2])
    options = FleetPlanOptions(
        requirements=tuple(args.requirements),
        requirement_files=tuple(args.requirement),
        node_files=tuple(Path(p) for p in args.nodes),
        python_version=python_version,
        fewest=args.fewest,
        pytorch_index=args.pytorch_index,
        cwd=Path.cwd(),
    )
    plan = make_fleet_plan(options)
    if args.json:
        emit_json(plan.to_json())
    else:
        print(render_plan(plan))
    return EXIT_CHECK_FAILED if plan.unserved else EXIT_OK


def _add_global_options(commands: Any) -> None:
    """--debug, -q and -v after the command too, on every command and action that lacks them."""
    for sub in _leaf_parsers(commands):
        known = sub._option_string_actions
        if "--debug" not in known:
            sub.add_argument("--debug", action="store_true", default=False, help=argparse.SUPPRESS)
        if "-q" not in known:
            sub.add_argument("-q", "--quiet", action="count", default=0, help="no progress or notes")
        if "-v" not in known:
            sub.add_argument("-v", "--verbose", action="count", default=0, help="more detail")


def _leaf_parsers(commands: Any) -> list[argparse.ArgumentParser]:
    found: list[argparse.ArgumentParser] = []
    for sub in dict.fromkeys(commands.choices.values()):
        found.append(sub)
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                found += _leaf_parsers(action)
    return found


_GLOBAL_FLAGS = frozenset({"--debug", "-q", "--quiet", "-v", "--verbose", "--json", "-qq", "-vv"})


def _is_core_command(argv: Sequence[str]) -> bool:
    """Whether the command is detect, explain or matrix (global flags may come before it)."""
    for token in argv:
        if token not in _GLOBAL_FLAGS:
            return token in _COMMANDS
    return False


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; a closed stdout (``pip-gpu matrix | head``) ends it quietly."""
    try:
        status = _main(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()  # a reader that left early shows up here, not at interpreter exit
        return status
    except BrokenPipeError:
        return _closed_output()
    except SystemExit as exit_:  # argparse's --help and usage errors may meet a closed pipe too
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            return _closed_output()
        raise exit_ from None


def _closed_output() -> int:
    """The reader went away: drop what is left for stdout, exit as after SIGPIPE."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return EXIT_CLOSED_OUTPUT


def _main(arguments: list[str]) -> int:
    parser = build_parser(core_only=_is_core_command(arguments))
    args = parser.parse_args(arguments)
    args.debug = bool(getattr(args, "debug", False) or args.global_debug)
    from ..children import forward_termination

    forward_termination()  # SIGTERM/SIGHUP reach the installers, as Ctrl-C does
    try:
        _settle_global_options(args)
        result: int = args.handler(args) if hasattr(args, "handler") else _COMMANDS[args.command](args)
        return result
    except PipGpuError as error:
        if args.debug:
            raise
        print(render_error(error), file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt as interrupt:
        from ..children import exit_status_for

        print("pip-gpu: interrupted", file=sys.stderr)
        return exit_status_for(interrupt)
    except BrokenPipeError:
        raise  # the reader went away: main() ends quietly
    except Exception as error:  # the last line of defence: one line, never a traceback
        if args.debug:
            raise
        from ..redact import redact_url

        print(
            f"pip-gpu: error: unexpected {type(error).__name__}: {redact_url(str(error))}\n"
            "  hint: this is a bug in pip-gpu; --debug shows the traceback to report",
            file=sys.stderr,
        )
        return EXIT_USAGE


def render_error(error: PipGpuError) -> str:
    """The error and its hint; "error:" in red on a terminal that wants colour."""
    from ..ui import colour

    text = error.render()
    head = "pip-gpu: error:"
    return colour(head, "red", sys.stderr) + text[len(head) :] if text.startswith(head) else text


def headline(text: str, ok: bool) -> str:
    """The first line (a verdict) in green or red on a terminal that wants colour."""
    from ..ui import colour

    first, newline, rest = text.partition("\n")
    return colour(first, "green" if ok else "red") + newline + rest


def _settle_global_options(args: argparse.Namespace) -> None:
    """Merge the options given before the command with those after it; refuse what does nothing."""
    from .. import ui

    if args.command is None:
        raise UsageError("no command given", "pip-gpu --help lists the commands; start with pip-gpu detect")
    if args.global_json:
        if not hasattr(args, "json"):
            raise UsageError(
                f"--json does not apply to pip-gpu {_command_name(args)}",
                "detect, explain, matrix, install --dry-run, check and doctor print JSON",
            )
        args.json = True
    quiet = args.global_quiet + int(getattr(args, "quiet", 0) or 0)
    verbose = args.global_verbose + int(getattr(args, "verbose", 0) or 0)
    if args.command == "install":  # its -q/-v go to the installer too: so do the global ones
        quiet += int(getattr(args, "pt_--quiet", 0) or 0)
        verbose += int(getattr(args, "pt_--verbose", 0) or 0)
        for name, count in (("pt_--quiet", args.global_quiet), ("pt_--verbose", args.global_verbose)):
            if count:
                setattr(args, name, (getattr(args, name) or 0) + count)
    if quiet and verbose:
        raise UsageError("-q and -v contradict each other", "give one of them")
    if hasattr(args, "verbose"):
        args.verbose = verbose
    if hasattr(args, "quiet"):
        args.quiet = quiet
    ui.configure(quiet=quiet, verbose=verbose)


def _command_name(args: argparse.Namespace) -> str:
    actions = [
        str(getattr(args, name)) for name in ("shim_command", "uv_command") if getattr(args, name, None)
    ]
    return " ".join([args.command, *actions])


# --- shared steps --------------------------------------------------------------------------


def host_from_args(args: argparse.Namespace) -> Any:
    from ..detect import detect_host, overrides_from_env
    from ..knowledge import load_knowledge

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
    host = host_from_args(args)
    if args.json:
        emit_json(host.to_json())
    else:
        from ..report import render_host

        print(render_host(host))
    return EXIT_OK


# --- explain -------------------------------------------------------------------------------


def cmd_explain(args: argparse.Namespace) -> int:
    from ..decide.plan import decide_for
    from ..report import decision_json, render_decision

    host = host_from_args(args)
    outcome = decide_for(
        args.requirements,
        args.requirement,
        host,
        variant=args.variant,
        force=args.force,
        pytorch_index=args.pytorch_index,
        cwd=Path.cwd(),
        offline=args.offline,
        context=_explain_context(args.requirements, args.requirement),
    )
    decision = outcome.decision
    constraints = outcome.torch_constraints
    if args.json:
        emit_json(decision_json(decision, host, constraints=constraints))
    elif not decision.ok and not decision.candidates and decision.blocker is not None:
        # Nothing was even considered (pins that contradict each other, a Python no release
        # supports): bad input, reported on stderr like every other error.
        raise UsageError(decision.blocker.message, decision.blocker.hint)
    else:
        rendered = render_decision(decision, host, show_all=args.all, constraints=constraints)
        print(headline(rendered, decision.ok))
    return EXIT_OK if outcome.decision.ok else EXIT_NO_BUILD


def _explain_context(requirements: list[str], files: list[str]) -> Any:
    """Other packages given: resolve them (with this interpreter, the user's pip settings) to
    read what they need of torch. Only the family named: nothing to resolve, no subprocess."""
    if not files and all(_names_only_family(text) for text in requirements):
        return None
    from ..decide.resolution import ResolutionContext

    return ResolutionContext(python=Path(sys.executable), prefer_installed=False, strict=False)


def _names_only_family(text: str) -> bool:
    from packaging.utils import canonicalize_name

    from ..knowledge import load_knowledge

    head = text.split(";")[0].split("@")[0]
    for stop in "[=<>!~ ":
        head = head.split(stop)[0]
    return canonicalize_name(head) in {canonicalize_name(m.name) for m in load_knowledge().family}


# --- matrix --------------------------------------------------------------------------------


def cmd_matrix(args: argparse.Namespace) -> int:
    from ..knowledge import load_knowledge
    from ..report import knowledge_json, render_knowledge

    knowledge = load_knowledge()
    if args.json:
        emit_json(knowledge_json(knowledge))
    else:
        print(render_knowledge(knowledge))
    return EXIT_OK


_COMMANDS = {"detect": cmd_detect, "explain": cmd_explain, "matrix": cmd_matrix}
