"""Ctrl-C during an install: the installer is told, pip-gpu exits 130, nothing is half done."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support.cli import pip_gpu_argv_with_default_signals
from support.index import installed_versions, make_venv, pip_env, uv_env

PLUGIN = Path(__file__).resolve().parents[2] / "plugin"

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_sigint_reaches_the_installer_and_exits_130(  # type: ignore[no-untyped-def]
    tmp_path: Path, index_server, installer: str
) -> None:
    python = make_venv(tmp_path / "venv", with_pip=installer == "pip")
    before = installed_versions(python)
    env = {**pip_env(), **uv_env(tmp_path / "uv-cache"), "PYTHONPATH": str(PLUGIN)}
    env.update(PIP_INDEX_URL=index_server.pypi_url, UV_DEFAULT_INDEX=index_server.pypi_url)
    # the installer is mid-download (its files: pip-gpu's own read of the page must not hang)
    index_server.fail("/whl/cu124/torch-", "hang", hang_s=20)
    process = subprocess.Popen(
        pip_gpu_argv_with_default_signals("install", "torch==2.5.1", "--python", str(python),
         "--installer", installer, "--pytorch-index", index_server.pytorch_url,
         "--driver", "535.104.05", "--compute-capability", "8.0"),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not index_server.contacted("/whl/cu124/torch-") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert index_server.contacted("/whl/cu124/torch-"), "the installer never asked for torch"
    os.kill(process.pid, signal.SIGINT)  # pip-gpu alone, as `kill -INT` would
    started = time.monotonic()
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert time.monotonic() - started < 15  # the installer stopped, it was not waited out
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert installed_versions(python) == before
