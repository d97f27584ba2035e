"""errors.py: which failure is which exit status, and the file pip-gpu could not write."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from pip_gpu.errors import (
    EXIT_ENVIRONMENT,
    EnvironmentFault,
    PipGpuError,
    UsageError,
    environment_fault,
)
from pip_gpu.installers import run_command
from pip_gpu.route import InstallerCommand


def test_a_file_the_installer_reads_that_cannot_be_written_is_an_environment_fault(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    ran = tmp_path / "ran"
    command = InstallerCommand(
        argv=("touch", str(ran)),
        purpose="test",
        files={blocker / "scratch" / "requirements.txt": "torch\n"},
    )
    with pytest.raises(EnvironmentFault) as caught:
        run_command(command)
    assert caught.value.exit_code == EXIT_ENVIRONMENT == 74
    assert not isinstance(caught.value, UsageError)
    assert f"cannot write the file {blocker / 'scratch' / 'requirements.txt'}" in caught.value.message
    assert not ran.exists()  # the installer never started


@pytest.mark.parametrize(
    ("number", "hint"),
    [
        (errno.ENOSPC, "free some disk space"),
        (errno.EROFS, "mounted read-only"),
        (errno.EACCES, "fix the permissions"),
        (errno.ENOTDIR, "check the folder"),
    ],
)
def test_each_environment_fault_names_its_way_out(number: int, hint: str) -> None:
    import os

    error = environment_fault(OSError(number, os.strerror(number), "/x/y"), "the lock files in /x")
    assert error.exit_code == 74
    assert error.message == f"cannot write the lock files in /x (/x/y): {os.strerror(number)}"
    assert hint in error.hint
    assert isinstance(error, PipGpuError)
