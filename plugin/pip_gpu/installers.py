"""The real pip and uv: find uv, run an installer command, or hand the process over to one.

The one place that starts an installer. Everything above it builds commands
(:mod:`pip_gpu.route`) and reads results; nothing else spawns pip or uv for an install.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Optional

from .errors import InstallerFailed, UsageError, environment_fault

if TYPE_CHECKING:
    from .detect.target import TargetEnv
    from .route import InstallerCommand

__all__ = ["choose_installer", "environment_with", "exec_replacing", "run_command", "uv_binary"]


def uv_binary(chosen: Optional[str] = None) -> str:
    """The uv to run: ``chosen`` (the very uv a shim was asked to run), else the bundled one."""
    if chosen:
        return chosen
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        raise UsageError("the uv binary is not installed", "pip install uv, or use --installer pip") from None


def choose_installer(requested: Optional[str], configured: Optional[str], target: TargetEnv) -> str:
    """``--installer``, else the project's ``[tool.pip-gpu] installer``, else pip where the
    target has it and uv where it does not."""
    choice = requested or configured or ("pip" if target.has_pip else "uv")
    if choice == "pip" and not target.has_pip:
        raise UsageError(f"{target.python} has no pip", "use --installer uv, or install pip into it")
    return choice


def environment_with(changes: Mapping[str, str]) -> dict[str, str]:
    """This process's environment with ``changes``; an empty value removes the variable."""
    env = dict(os.environ)
    for name, value in changes.items():
        if value:
            env[name] = value
        else:
            env.pop(name, None)
    return env


def run_command(command: InstallerCommand, *, to_stderr: bool = False, log: Optional[Path] = None) -> None:
    """Run the installer in the foreground; Ctrl-C, SIGTERM and SIGHUP reach it, and we wait
    for it to stop. Credentials in its URLs go to a private netrc file, not its argv.
    ``to_stderr``: a resolution step's output goes to stderr (a dry run's stdout is the plan).
    ``log``: its output (stdout and stderr) goes to that file instead: a trial whose failure
    pip-gpu handles itself."""
    from .children import Terminated, finished, private_command, signal_of, start, wait_within

    for path, content in command.files.items():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)  # the uv family project has its own folder
            path.write_text(content, encoding="utf-8")
        except OSError as exc:  # a full disk or a read-only TMPDIR is no bad input (exit 74)
            raise environment_fault(exc, f"the file {path} the installer reads") from None
    with private_command(command.argv, environment_with(command.env)) as (argv, env):
        output: Any = sys.stderr if to_stderr else None
        if log is not None:
            try:
                output = log.open("wb")
            except OSError as exc:
                raise environment_fault(exc, f"the installer's log {log}") from None
        try:
            process = start(argv, env=env, stdout=output, stderr=subprocess.STDOUT if log else None)
        except OSError as exc:
            raise UsageError(f"cannot run {command.argv[0]}: {exc}") from None
        finally:
            if log is not None:
                output.close()  # the child holds its own copy
        try:
            status = wait_within(process, command.purpose)[0]
        except KeyboardInterrupt as interrupt:
            # Ctrl-C in a terminal reaches the whole foreground group, but a signal sent to
            # pip-gpu alone must reach the installer too. Give it time to clean up, then make
            # sure it is gone.
            if process.poll() is None:
                process.send_signal(signal_of(interrupt))
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                process.wait()
            raise
        finally:
            finished(process)
    if status != 0:
        if status < 0 and -status in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", -1)):
            raise KeyboardInterrupt if -status == signal.SIGINT else Terminated(-status)
        raise InstallerFailed(f"{command.purpose}: the installer exited with status {status}", status)


def exec_replacing(real: str, args: Sequence[str]) -> NoReturn:
    """Become the real installer (a shim that routes nothing); on Windows run it and exit with
    its status, since there is no exec."""
    sys.stdout.flush()
    sys.stderr.flush()
    if sys.platform == "win32":
        sys.exit(subprocess.call([real, *args]))
    os.execv(real, [real, *args])
