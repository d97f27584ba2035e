"""Routing as the real PyTorch index needs it: only the torch family comes from the variant
index; everything else from the user's own indexes, through pip and through uv, in installs
and in locks.

The fixture variant indexes host old copies of common packages (numpy 1.26.4) as
download.pytorch.org does; the stand-in PyPI has numpy 2.x, plain CUDA torch builds and
every family name planted at 99.0.0.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from support.cli import PLUGIN, assert_one_line_error, pip_gpu
from support.index import (
    IndexServer,
    installed_versions,
    make_venv,
    pip_env,
    pytorch_index,
    uv_env,
)

from pip_gpu.config import pip_index_settings
from pip_gpu.detect.target import installed_family_in
from pip_gpu.lock.resolve import user_index_args

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

A100_ON_535 = ["--driver", "535.104.05", "--compute-capability", "8.0"]
NEW_NUMPY = pytorch_index.PYPI_NUMPY


def _env(index: IndexServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**pip_env(tmp_path / "pip-cache"), **uv_env(tmp_path / "uv-cache"), "PYTHONPATH": str(PLUGIN)}
    env.update(PIP_INDEX_URL=index.pypi_url, UV_DEFAULT_INDEX=index.pypi_url)
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env.update(extra)
    return env


@pytest.mark.parametrize("request_numpy", ["numpy", "numpy>=2"])
def test_numpy_comes_from_the_default_index_and_torch_from_the_variant_index(
    index_server: IndexServer, tmp_path: Path, installer_venv: tuple[str, Path], request_numpy: str
) -> None:
    installer, python = installer_venv
    done = pip_gpu(
        "install", "torch==2.5.1", request_numpy, "--python", str(python), "--installer", installer,
        "--pytorch-index", index_server.pytorch_url, *A100_ON_535,
        env=_env(index_server, tmp_path), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    versions = installed_versions(python)
    assert versions["numpy"] == NEW_NUMPY  # not the variant index's 1.26.4
    assert versions["torch"] == "2.5.1+cu124" and versions["triton"] == "3.1.0"
    fetched = {r.path for r in index_server.requests if r.method == "GET"}
    assert f"/pypi/packages/numpy-{NEW_NUMPY}-py3-none-any.whl" in fetched
    assert "/whl/cu124/torch-2.5.1+cu124-py3-none-any.whl" in fetched
    assert not any(path.startswith("/whl/numpy-") for path in fetched)
    # the installer spoke for itself, and the verification names what landed
    assert "numpy" in done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("pip-gpu: verified: torch 2.5.1+cu124 (CUDA 12.4)")


def test_a_cuda_13_torch_takes_its_cuda_libraries_from_the_default_index(
    index_server: IndexServer, tmp_path: Path, installer_venv: tuple[str, Path]
) -> None:
    """The 2.9+ shape: cuda-toolkit[...] extras and nvidia-cudnn-cu13 are ordinary packages
    (PyPI's), triton~=3.5 is the family's (the variant index's)."""
    installer, python = installer_venv
    done = pip_gpu(
        "install", "torch==2.9.1", "numpy", "--python", str(python), "--installer", installer,
        "--variant", "cu130", "--pytorch-index", index_server.pytorch_url,
        "--driver", "580.82.07", "--compute-capability", "9.0",
        env=_env(index_server, tmp_path), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    versions = installed_versions(python)
    assert versions["torch"] == "2.9.1+cu130" and versions["numpy"] == NEW_NUMPY
    assert {"cuda-toolkit", "nvidia-cublas", "nvidia-cuda-runtime", "nvidia-cudnn-cu13"} <= set(versions)
    fetched = {r.path for r in index_server.requests if r.method == "GET"}
    assert "/whl/triton-3.5.1-py3-none-any.whl" in fetched
    for wheel in ("cuda_toolkit-13.0.2", "nvidia_cudnn_cu13-9.13.0.50", "nvidia_cublas-13.0.2.14"):
        assert f"/pypi/packages/{wheel}-py3-none-any.whl" in fetched
        # pip's dry run against the variant index (which picks the family's files) may read
        # these there too; uv's resolution reads metadata only, so nothing else touches them
        if installer == "uv":
            assert f"/whl/{wheel}-py3-none-any.whl" not in fetched
    assert done.stderr.strip().splitlines()[-1].startswith("pip-gpu: verified: torch 2.9.1+cu130 (CUDA 13.0)")


def test_lock_records_the_same_sources(index_server: IndexServer, tmp_path: Path) -> None:
    (tmp_path / "requirements.in").write_text("torch==2.5.1\nnumpy\n")
    done = pip_gpu(
        "lock", "-r", "requirements.in", "--variants", "cu124,cpu",
        "--pytorch-index", index_server.pytorch_url,
        env=_env(index_server, tmp_path), cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for variant in ("cu124", "cpu"):
        packages = {
            p["name"]: p for p in tomllib.loads((tmp_path / f"pylock.{variant}.toml").read_text())["packages"]
        }
        assert (packages["numpy"]["version"], packages["numpy"]["index"]) == (
            NEW_NUMPY,
            index_server.pypi_url,
        )
        assert packages["torch"]["index"] == index_server.variant_url(variant)
        # only the family members the build needs: a CPU build pulls no triton
        assert ("triton" in packages) == (variant == "cu124")
        if variant == "cu124":
            assert packages["triton"]["index"] == index_server.variant_url(variant)


def test_a_cpu_build_routes_no_triton(index_server: IndexServer, tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv", with_pip=False)
    done = pip_gpu(
        "install", "torch==2.5.1", "--python", str(python), "--installer", "uv", "--variant", "cpu",
        "--pytorch-index", index_server.pytorch_url, *A100_ON_535, env=_env(index_server, tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert installed_versions(python)["torch"] == "2.5.1+cpu" and "triton" not in installed_versions(python)
    assert not any("triton" in r.path for r in index_server.requests)
    assert done.stderr.strip().splitlines()[-1].startswith("pip-gpu: verified: torch 2.5.1+cpu (CPU)")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_an_unreachable_variant_index_is_named_with_the_way_out(
    index_server: IndexServer, tmp_path: Path, installer: str
) -> None:
    port = _closed_port()
    gone = f"http://alice:s3cr3t@127.0.0.1:{port}/whl"
    python = make_venv(tmp_path / "venv", with_pip=installer == "pip")
    done = pip_gpu(
        "install", "torch==2.5.1", "numpy", "--python", str(python), "--installer", installer,
        "--pytorch-index", gone,
        *A100_ON_535, env=_env(index_server, tmp_path, UV_HTTP_RETRIES="0"), timeout=180,
    )  # fmt: skip
    assert_one_line_error(done, f"127.0.0.1:{port}", "cannot be reached", "--pytorch-index")
    assert done.stderr.strip().splitlines()[-1].startswith("  hint: ")
    assert f"127.0.0.1:{port}" in done.stderr.strip().splitlines()[-1]
    assert "s3cr3t" not in done.stdout + done.stderr


def test_lock_takes_the_index_from_pip_configuration(index_server: IndexServer, tmp_path: Path) -> None:
    """A pip user's mirror (pip.conf, PIP_INDEX_URL) is where the lock comes from, not pypi.org."""
    config = tmp_path / "pip.conf"
    config.write_text(f"[global]\nindex-url = {index_server.pypi_url}\n")
    env = _env(index_server, tmp_path, PIP_CONFIG_FILE=str(config))
    for name in ("PIP_INDEX_URL", "UV_DEFAULT_INDEX"):
        del env[name]
    (tmp_path / "requirements.in").write_text("torch==2.5.1\nfixture-app\n")
    done = pip_gpu(
        "lock", "-r", "requirements.in", "--variants", "cpu", "--pytorch-index", index_server.pytorch_url,
        env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    packages = {p["name"]: p for p in tomllib.loads((tmp_path / "pylock.cpu.toml").read_text())["packages"]}
    assert packages["fixture-app"]["index"] == index_server.pypi_url


def test_pip_configuration_is_read_as_pip_reads_it(tmp_path: Path) -> None:
    config = tmp_path / "pip.conf"
    config.write_text(
        "[global]\nindex-url = https://mirror.example/simple\nextra-index-url =\n"
        "    https://a.example/simple\n    https://b.example/simple\n"
        "[install]\nfind-links = /wheels\n"
    )
    env = {"PIP_CONFIG_FILE": str(config), "HOME": str(tmp_path)}
    assert pip_index_settings(env) == {
        "index-url": ["https://mirror.example/simple"],
        "extra-index-url": ["https://a.example/simple", "https://b.example/simple"],
        "find-links": ["/wheels"],
    }
    # a variable beats the files; uv's own settings beat pip's
    env["PIP_INDEX_URL"] = "https://env.example/simple"
    assert user_index_args(env)[:2] == ["--default-index", "https://env.example/simple"]
    assert "--index-strategy" in user_index_args(env)  # pip merges its indexes
    assert user_index_args({**env, "UV_DEFAULT_INDEX": "https://uv.example/simple"}) == []
    assert pip_index_settings({"PIP_CONFIG_FILE": "/dev/null", "HOME": str(tmp_path)}) == {}


def test_version_py_is_read_as_python_reads_it(tmp_path: Path) -> None:
    """Real wheels write ``cuda: Optional[str] = '13.0'``; older ones ``cuda = '12.4'``."""
    site = tmp_path / "site"
    (site / "torch").mkdir(parents=True)
    (site / "torch-2.14.1+cu130.dist-info").mkdir()
    (site / "torch-2.14.1+cu130.dist-info" / "METADATA").write_text("Name: torch\nVersion: 2.14.1+cu130\n")
    (site / "torch" / "version.py").write_text(
        "from typing import Optional\n__version__ = '2.14.1+cu130'\ndebug = False\n"
        "cuda: Optional[str] = '13.0'\nhip: Optional[str] = None\n"
    )
    assert installed_family_in((site,))["torch"] == {"version": "2.14.1+cu130", "cuda": "13.0", "hip": None}
