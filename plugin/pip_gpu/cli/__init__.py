"""The ``pip-gpu`` command line: parse arguments, run one command, render its result.

Errors become one message and an exit status here, and nowhere else; ``--debug`` shows
the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, Optional, cast

from .. import __version__
from ..errors import EXIT_USAGE, PipGpuError, UsageError
from .flags import add_decision_flags, add_host_flags

__all__ = ["main"]

# The decision path: their parsers alone are built, and none of the install machinery loads.
_CORE_COMMANDS = ("detect", "explain", "matrix")

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

exit status: 0 success; 1 a check found a problem (or the build that landed is not
the one decided); 2 bad input, or no build runs (nothing was changed); 74 pip-gpu
could not write its own files (full disk, read-only filesystem, permission denied:
EX_IOERR); otherwise the installer's own exit status; 130 interrupted;
141 the output was closed early (as after SIGPIPE: `pip-gpu matrix | head`).
"""

# The width of the formatter that only checks a new argument's metavar (its text is dropped).
_CHECK_WIDTH = 80

# A process whose reader went away exits as one killed by SIGPIPE would: 128 + 13.
EXIT_CLOSED_OUTPUT = 128 + 13


class _Parser(argparse.ArgumentParser):
    """argparse, except that a closed stdout under ``--help`` is not ignored (exit 141)."""

    def _print_message(self, message: str, file: Optional[Any] = None) -> None:
        if message:
            (file or sys.stderr).write(message)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        # argparse formats every new argument once, to check its metavar; that check needs no
        # terminal width, and asking for one imports shutil (with bz2, lzma, fnmatch): time
        # every command paid, its help printed or not.
        self._checking_argument = True
        try:
            return super().add_argument(*args, **kwargs)
        finally:
            self._checking_argument = False

    def _get_formatter(self) -> argparse.HelpFormatter:
        if getattr(self, "_checking_argument", False):
            formatter_class = cast("type[argparse.HelpFormatter]", self.formatter_class)
            return formatter_class(prog=self.prog, width=_CHECK_WIDTH)
        return super()._get_formatter()

    def error(self, message: str) -> NoReturn:
        """A usage error as every other error: one line and a hint, not argparse's usage block."""
        hint = f"{self.prog} --help lists its options"
        pair = re.fullmatch(r"argument (\S+): not allowed with argument (\S+)", message)
        if pair:  # a mutually exclusive pair, as --python and --system
            hint = f"give {pair.group(2)} or {pair.group(1)}, not both"
        self.exit(2, render_error(UsageError(message, hint)) + "\n")


def build_parser(core_command: Optional[str] = None) -> argparse.ArgumentParser:
    """The whole command line; ``core_command``: only that one of detect, explain and matrix.

    ``core_command`` is for a run of one of those three: the other commands' modules (install,
    lock, shim, uv, doctor) import most of the package, and a decision need not pay for them,
    nor for building the parsers of the two it does not run.
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
    # prog given: argparse would otherwise format the usage to find it, which asks the terminal
    # its width (see _Parser.add_argument); it is the usage's first word either way.
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", prog=parser.prog)

    from . import core

    core.add_parsers(commands, only=core_command)
    if core_command is not None:
        _add_global_options(commands)
        return parser

    from . import install as install_cli

    install_cli.add_install_parser(commands)
    from . import lock as lock_cli

    lock_cli.add_lock_parsers(commands, add_host_flags, add_decision_flags)

    from . import shim as shim_cli
    from . import uv as uv_cli

    shim_cli.add_shim_parser(commands)
    uv_cli.add_uv_parser(commands)
    from . import doctor as doctor_cli

    doctor_cli.add_parsers(commands)
    from . import fleet

    fleet.add_parsers(commands)
    from . import knowledge as knowledge_cli

    knowledge_cli.add_parsers(commands)
    _add_global_options(commands)
    return parser


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


def _core_command(argv: Sequence[str]) -> Optional[str]:
    """The command when it is detect, explain or matrix (global flags may come before it)."""
    for token in argv:
        if token not in _GLOBAL_FLAGS:
            return token if token in _CORE_COMMANDS else None
    return None


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
    parser = build_parser(core_command=_core_command(arguments))
    args = parser.parse_args(arguments)
    args.debug = bool(getattr(args, "debug", False) or args.global_debug)
    from ..children import forward_termination

    forward_termination()  # SIGTERM/SIGHUP reach the installers, as Ctrl-C does
    try:
        _settle_global_options(args)
        result: int = args.handler(args)
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
        from ..ui import printable

        print(
            f"pip-gpu: error: unexpected {type(error).__name__}: {printable(redact_url(str(error)))}\n"
            "  hint: this is a bug in pip-gpu; --debug shows the traceback to report",
            file=sys.stderr,
        )
        return EXIT_USAGE


def render_error(error: PipGpuError) -> str:
    """The error and its hint; "error:" in red on a terminal that wants colour."""
    from ..ui import colour, printable

    text = printable(error.render(), keep_newlines=True)  # what the error quotes came from outside
    head = "pip-gpu: error:"
    return colour(head, "red", sys.stderr) + text[len(head) :] if text.startswith(head) else text


def _settle_global_options(args: argparse.Namespace) -> None:
    """Merge the options given before the command with those after it; refuse what does nothing."""
    from .. import ui

    if args.command is None:
        raise UsageError("no command given", "pip-gpu --help lists the commands; start with pip-gpu detect")
    if args.global_json:
        if not hasattr(args, "json"):
            raise UsageError(
                f"--json does not apply to pip-gpu {_command_name(args)}",
                "detect, explain, matrix, install --dry-run, lock, sync, check, doctor and fleet plan "
                "print JSON",
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
