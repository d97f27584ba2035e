"""Shims on PATH, as a user's shell has them: the folders, the environment, the commands.

Import ``shims_fixture`` and ``venv_fixture`` into a test module to get the fixtures ``shims``
(the shims folder, written once per module) and ``venv`` (a venv with pip whose ``pip`` and
``uv`` sit in a folder of their own, ``real_bin(venv)``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from support.index import IndexServer, make_venv, pip_env, run, uv_bin, uv_env

__all__ = [
    "CPU_HOST",
    "CU124_HOST",
    "pip_gpu",
    "real_bin",
    "shell",
    "shell_env",
    "shims_fixture",
    "venv_fixture",
]

PLUGIN = Path(__file__).resolve().parents[2] / "plugin"
CU124_HOST = {"PIP_GPU_DRIVER": "535.104.05", "PIP_GPU_COMPUTE_CAPABILITY": "8.0"}
CPU_HOST = {"PIP_GPU_NO_GPU": "1"}


def pip_gpu(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = dict(env if env is not None else pip_env())
    environment["PYTHONPATH"] = str(PLUGIN)
    return run([sys.executable, "-m", "pip_gpu", *args], env=environment)


@pytest.fixture(scope="module", name="shims")
def shims_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("shims") / "shims"
    pip_gpu("shim", "install", "--dir", str(folder))
    return folder


@pytest.fixture(scope="module", name="venv")
def venv_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with pip; its pip and uv sit in ``real``, a folder of their own."""
    base = tmp_path_factory.mktemp("pipvenv")
    python = make_venv(base / "venv", with_pip=True)
    real = base / "real"
    real.mkdir()
    for name in ("pip", "pip3"):
        (real / name).symlink_to(python.parent / name)
    (real / "uv").symlink_to(uv_bin())
    return python


def real_bin(python: Path) -> Path:
    return python.parent.parent.parent / "real"


def shell_env(
    folders: list[Path], server: IndexServer, tmp: Path, host: Mapping[str, str] = CU124_HOST
) -> dict[str, str]:
    """A user's environment: these folders on PATH, isolated pip and uv, a host profile."""
    env = pip_env(tmp / "pip-cache")
    env.update(uv_env(tmp / "uv-cache"))
    env.update(
        PATH=os.pathsep.join(map(str, folders)),
        PIP_INDEX_URL=server.pypi_url,
        UV_DEFAULT_INDEX=server.pypi_url,
        PIP_GPU_PYTORCH_INDEX=server.pytorch_url,
        **host,
    )
    for name in ("PIP_GPU_DRIVER", "PIP_GPU_COMPUTE_CAPABILITY", "PIP_GPU_NO_GPU", "PYTHONPATH"):
        if name not in host:
            env.pop(name, None)
    return env


def shell(
    command: str, env: Mapping[str, str], cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command line through /bin/sh, so PATH lookup is the shell's, as for a user."""
    return run(["/bin/sh", "-c", command], env=dict(env), cwd=cwd, check=check)
