"""What a shim does once its shell script hands a command to Python.

The script starts Python only for subcommands that can install packages. Here the command
line is read properly (:mod:`.pip`, :mod:`.uv`): when no torch-family project is named (on
the command line, in a requirements file, or through the resolution), or the command is one
pip-gpu leaves alone, the real program replaces this process (``exec``) with the arguments
unchanged. Otherwise the command becomes ``pip-gpu install`` with the very pip or uv the user
invoked, or, for uv projects, ``uv run`` / ``uv sync`` with the extra of the variant this host
runs.

It fails closed: anything unexpected stops with one line naming ``PIP_GPU_DISABLE=1`` and a
non-zero status, and nothing is installed. Only the standard library is imported until a
command is known to involve the family.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..installers import exec_replacing
from .options import Refused, RoutedInstall

if TYPE_CHECKING:
    from ..install import InstallOptions

__all__ = ["main", "windows_main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
_DISABLE_HINT = "set PIP_GPU_DISABLE=1 to run {prog} without pip-gpu (the torch build is then not checked)"


def main(argv: Sequence[str]) -> int:
    """``argv``: the shim's name, the real program, then the user's arguments."""
    name, real, args = argv[0], argv[1], list(argv[2:])
    prog = "uv" if name == "uvx" else name
    from ..children import exit_status_for, forward_termination

    forward_termination()  # SIGTERM/SIGHUP reach a routed installer, as Ctrl-C does
    try:
        if name.startswith("pip"):
            from .pip import pip_action

            action = pip_action(real, args)
        else:
            from .uv import uv_action

            action = uv_action(name, real, args)
        if action is None:
            exec_replacing(real, args)
        if isinstance(action, RoutedInstall):
            return _run_install(action.request, action.environment)
        return action()
    except Refused as refusal:
        from ..ui import printable

        print(f"pip-gpu: {printable(str(refusal))}; {_DISABLE_HINT.format(prog=prog)}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # the reader of our output went away: exit as after SIGPIPE, quietly
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
    except KeyboardInterrupt as interrupt:
        print("pip-gpu: interrupted", file=sys.stderr)
        return exit_status_for(interrupt)
    except Exception as error:
        from ..errors import PipGpuError
        from ..ui import printable

        if isinstance(error, PipGpuError):
            print(printable(error.render(), keep_newlines=True), file=sys.stderr)
            return error.exit_code
        if os.environ.get("PIP_GPU_DEBUG"):
            raise
        disable = _DISABLE_HINT.format(prog=prog)  # not str.capitalize(): PIP_GPU_DISABLE stays as typed
        print(
            f"pip-gpu: unexpected failure in the {name} shim "
            f"({type(error).__name__}: {printable(str(error))}); "
            f"nothing was installed. {disable[:1].upper()}{disable[1:]}.",
            file=sys.stderr,
        )
        return EXIT_FAILED


def windows_main(argv: Sequence[str]) -> int:
    """The ``.cmd`` and ``.ps1`` shims: ``argv`` is the name, the shims folder, the arguments.

    Their shells cannot scan PATH as the POSIX script does, so Python finds the real program:
    the first ``name`` (with a PATHEXT extension on Windows) in a folder without the marker.
    """
    from ..shims import MARKER

    name, folder, args = argv[0], Path(argv[1]), list(argv[2:])
    extensions = [""]
    if sys.platform == "win32":
        extensions = [e.lower() for e in os.environ.get("PATHEXT", ".COM;.EXE;.BAT;.CMD").split(";") if e]
    real = None
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        directory = Path(entry or ".")
        if (directory / MARKER).is_file() or _same_folder(directory, folder):
            continue
        found = next((directory / (name + e) for e in extensions if (directory / (name + e)).is_file()), None)
        if found is not None and os.access(found, os.X_OK):
            real = str(found)
            break
    if real is None:
        print(
            f"pip-gpu: no {name} on PATH after pip-gpu's shims; install it, or run 'pip-gpu shim uninstall'",
            file=sys.stderr,
        )
        return 127
    if os.environ.get("PIP_GPU_DISABLE", "") not in ("", "0", "false", "no"):
        exec_replacing(real, args)
    return main([name, real, *args])


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _run_install(request: InstallOptions, environment: Mapping[str, str]) -> int:
    """``pip-gpu install`` with the options the shim read, and the shim's own settings."""
    from ..errors import PipGpuError
    from ..install import install
    from ..route import INSTALLER_OPTIONS

    takes_no_value = {option.long for option in INSTALLER_OPTIONS if not option.takes_value}
    for name, value in request.passthrough:
        if name in takes_no_value and value is not None:
            raise Refused(f"{name}={value}: {name} takes no value")
    os.environ.update(environment)
    try:
        result = install(request)
    except PipGpuError as error:
        from ..ui import printable

        print(printable(error.render(), keep_newlines=True), file=sys.stderr)
        return error.exit_code
    if request.dry_run:
        print(result.dry_run_script)
    return EXIT_OK
