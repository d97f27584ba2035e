"""A torch release newer than the knowledge file is learned from the variant indexes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support.index import installed_versions, make_venv, pip_env, uv_env

from pip_gpu.discover import releases_from_files
from pip_gpu.index import IndexFile

PLUGIN = Path(__file__).resolve().parents[1] / "plugin"


def test_wheel_names_say_versions_platforms_and_pythons() -> None:
    names = [
        "torch-2.15.0+cu130-cp311-cp311-manylinux_2_28_x86_64.whl",
        "torch-2.15.0+cu130-cp312-cp312-manylinux_2_28_aarch64.whl",
        "torch-2.15.0+cu130-cp312-cp312-win_amd64.whl",
        "torch-2.15.1+cu130-cp313-cp313-manylinux_2_28_x86_64.whl",
        "torch-2.15.1+cpu-cp313-cp313-manylinux_2_28_x86_64.whl",  # another variant's label
        "torch-2.16.0.dev20261101+cu130-cp313-cp313-manylinux_2_28_x86_64.whl",  # nightly
        "not-a-wheel.tar.gz",
    ]
    found = releases_from_files([IndexFile(n, n, None, None) for n in names], "cu130")
    assert found == {
        "2.15": {
            "versions": ["2.15.0", "2.15.1"],
            "python": ["3.11", "3.12", "3.13"],
            "platforms": ["linux-aarch64", "linux-x86_64", "windows-x86_64"],
        }
    }


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip_gpu", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_unknown_release_is_discovered_decided_and_installed(  # type: ignore[no-untyped-def]
    old_knowledge: Path, tmp_path: Path, index_server
) -> None:
    env = {**pip_env(), **uv_env(tmp_path / "uv-cache")}
    env.update(
        PYTHONPATH=str(PLUGIN),
        PIP_GPU_KNOWLEDGE=str(old_knowledge),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        UV_DEFAULT_INDEX=index_server.pypi_url,
    )
    host = (
        "--pytorch-index",
        index_server.pytorch_url,
        "--driver",
        "560.35.03",
        "--compute-capability",
        "8.0",
    )
    done = run("explain", "torch==2.6.0", *host, "--json", env=env)
    assert done.returncode == 0, done.stderr
    decision = json.loads(done.stdout)
    assert (decision["variant"], decision["torch"]) == ("cu126", "2.6.0")
    chosen = next(c for c in decision["candidates"] if c["variant"] == "cu126")
    assert chosen["ok"]
    assert index_server.contacted("/whl/cu126/torch/")

    index_server.clear_requests()  # the second time, the cache answers
    assert json.loads(run("explain", "torch==2.6.0", *host, "--json", env=env).stdout)["variant"] == "cu126"
    assert not index_server.contacted("/whl/")

    python = make_venv(tmp_path / "venv", with_pip=False)
    done = run("install", "torch==2.6.0", "--python", str(python), *host, env=env)
    assert done.returncode == 0, done.stderr
    assert installed_versions(python)["torch"] == "2.6.0+cu126"
