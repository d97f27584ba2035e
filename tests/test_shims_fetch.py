"""`pip download|wheel` of the torch family through the shims: the host's build, nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.index import IndexServer
from support.shims import CPU_HOST, real_bin, shell, shell_env, shims_fixture, venv_fixture

pytestmark = pytest.mark.slow
shims = shims_fixture
venv = venv_fixture


def test_pip_download_torch_fetches_the_host_build_and_its_dependencies(  # type: ignore[no-untyped-def]
    shims: Path, venv: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    env = shell_env([shims, real_bin(venv), Path("/usr/bin"), Path("/bin")], index_server, tmp_path)
    done = shell("pip download torch==2.5.1 torchvision -d wheels -q", env, cwd=tmp_path)
    assert "torch 2.5.1 -> cu124" in done.stderr
    files = sorted(p.name for p in (tmp_path / "wheels").iterdir())
    assert "torch-2.5.1+cu124-py3-none-any.whl" in files
    assert "torchvision-0.20.1+cu124-py3-none-any.whl" in files
    assert "filelock-3.13.1-py3-none-any.whl" in files  # the variant index's, never the planted 99.0.0
    assert not index_server.contacted("/pypi/")


def test_pip_wheel_for_a_cpu_host(shims: Path, venv: Path, index_server: IndexServer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = shell_env([shims, real_bin(venv), Path("/usr/bin"), Path("/bin")], index_server, tmp_path, CPU_HOST)
    shell("pip wheel torch==2.5.1 --no-deps -w out -q", env, cwd=tmp_path)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["torch-2.5.1+cpu-py3-none-any.whl"]


def test_mixing_the_family_with_other_packages_is_refused(  # type: ignore[no-untyped-def]
    shims: Path, venv: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    env = shell_env([shims, real_bin(venv), Path("/usr/bin"), Path("/bin")], index_server, tmp_path)
    done = shell("pip download torch==2.5.1 fixture-lib -d wheels", env, cwd=tmp_path, check=False)
    assert done.returncode == 2
    assert "fixture-lib" in done.stderr and "PIP_GPU_DISABLE=1" in done.stderr
    assert not (tmp_path / "wheels").exists()
