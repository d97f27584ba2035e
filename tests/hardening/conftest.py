"""What the bad-input and no-traceback tests share: a real target venv, and an environment in
which any installer run would fail (both indexes on the discard port) and host facts come
from flags, so each case shows pip-gpu's own answer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.cli import PLUGIN
from support.index import IndexServer

NOWHERE = "http://127.0.0.1:9/simple"  # the discard port: any installer run would fail


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real target environment (no pip: the cheapest venv there is)."""
    folder = tmp_path_factory.mktemp("target") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    return folder


@pytest.fixture
def env(tmp_path: Path, fixture_index: IndexServer) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "VIRTUAL_ENV"))}
    environment.update(
        PYTHONPATH=str(PLUGIN),
        PIP_INDEX_URL=NOWHERE,
        UV_DEFAULT_INDEX=NOWHERE,
        PIP_CONFIG_FILE=os.devnull,
        UV_NO_CONFIG="1",
        PIP_GPU_PYTORCH_INDEX=fixture_index.pytorch_url,
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        PIP_GPU_SYSFS_ROOT=str(tmp_path / "no-sys"),
        PIP_GPU_PROCFS_ROOT=str(tmp_path / "no-proc"),
    )
    return environment
