"""The errors pip-gpu reports to people: what failed, the fact behind it, and the way out.

They are rendered once, at the command-line boundary, without a traceback (``--debug``
shows one). Exit statuses are part of the interface that scripts rely on.
"""

from __future__ import annotations

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NO_BUILD",
    "EXIT_OK",
    "EXIT_USAGE",
    "InstallerFailed",
    "NoBuildRuns",
    "PipGpuError",
    "UsageError",
]

EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # `check`/`doctor`: the environment is not what it should be
EXIT_NO_BUILD = 2  # nothing runs here, or bad input: nothing was changed
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


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


class InstallerFailed(PipGpuError):
    """pip or uv itself failed; its exit status becomes ours."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
