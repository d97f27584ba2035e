"""The errors pip-gpu reports to people: what failed, the fact behind it, and the way out.

They are rendered once, at the command-line boundary, without a traceback (``--debug``
shows one). Exit statuses are part of the interface that scripts rely on.
"""

from __future__ import annotations

import errno

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_CLOSED_OUTPUT",
    "EXIT_ENVIRONMENT",
    "EXIT_INTERRUPTED",
    "EXIT_NO_BUILD",
    "EXIT_OK",
    "EXIT_USAGE",
    "BuildDidNotLand",
    "EnvironmentFault",
    "InstallerFailed",
    "NoBuildRuns",
    "PipGpuError",
    "UsageError",
    "WrongBuildServed",
    "environment_fault",
]

EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # `check`/`doctor`: the environment is not what it should be
EXIT_NO_BUILD = 2  # nothing runs here, or bad input: nothing was changed
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 74  # EX_IOERR (sysexits.h): pip-gpu could not write its own files
EXIT_INTERRUPTED = 130  # 128 + SIGINT; SIGTERM and SIGHUP give 128 + their number
EXIT_CLOSED_OUTPUT = 141  # 128 + SIGPIPE: the reader of the output went away
# Otherwise: the installer's own exit status (InstallerFailed).


class PipGpuError(Exception):
    """A failure with a message for people and a hint at the way out."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        text = f"pip-gpu: error: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class UsageError(PipGpuError):
    """Bad input: a malformed requirement, an unknown variant, conflicting flags."""


class NoBuildRuns(PipGpuError):
    """No published build of the requested release runs on the target host."""

    exit_code = EXIT_NO_BUILD


class EnvironmentFault(PipGpuError):
    """The machine, not the input: a full disk, a read-only filesystem, a permission denied
    while pip-gpu writes its own files (its scratch folder, lock files, staged files)."""

    exit_code = EXIT_ENVIRONMENT


def environment_fault(exc: OSError, writing: str) -> EnvironmentFault:
    """``writing`` (what pip-gpu was writing) failed with ``exc``: the error with its way out."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        hint = "free some disk space (or raise the quota), then run again"
    elif exc.errno == errno.EROFS:
        hint = "the filesystem is mounted read-only: run where pip-gpu can write (TMPDIR, the folder)"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        hint = "fix the permissions, or run where pip-gpu can write (TMPDIR, the folder)"
    else:
        hint = "check the folder and the filesystem (TMPDIR for the scratch folder), then run again"
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) not in writing else ""
    return EnvironmentFault(f"cannot write {writing}{where}: {reason}", hint)


class BuildDidNotLand(PipGpuError):
    """The installer succeeded, but what landed is not the build decided on (a failed check)."""

    exit_code = EXIT_CHECK_FAILED


class WrongBuildServed(PipGpuError):
    """The settled resolution picks a build whose label contradicts the decision (an index
    serving ``+cpu`` wheels under cu124); refused before anything is installed."""

    exit_code = EXIT_CHECK_FAILED


class InstallerFailed(PipGpuError):
    """pip or uv itself failed; its exit status becomes ours."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
