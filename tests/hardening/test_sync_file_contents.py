"""A locked file whose name says one build and whose contents are another: ``sync --installer
pip`` refuses it before changing anything, instead of installing it and failing afterwards."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import PLUGIN, assert_one_line_error, pip_gpu, tree_snapshot
from support.index import IndexServer, installed_versions, make_venv, pip_env, serve, uv_env
from support.locks import fixture_lock, fixture_lock_text

A100_ON_535 = ["--driver", "535.104.05", "--compute-capability", "8.0"]

pytestmark = pytest.mark.slow


@pytest.fixture
def cpu_inside_cu124(fixture_index: IndexServer, tmp_path: Path) -> Iterator[tuple[IndexServer, str]]:
    """A copy of the fixture index whose ``torch-2.5.1+cu124`` file holds the +cpu wheel, and a
    cu124 lock whose hash and size are that file's (made from the index as it serves it)."""
    assert fixture_index.tree is not None
    root = tmp_path / "mislabelled"
    shutil.copytree(fixture_index.root, root)
    gpu = next(w for w in fixture_index.tree.files_for("cu124", "torch") if w.version == "2.5.1+cu124")
    cpu = next(w for w in fixture_index.tree.files_for("cpu", "torch") if w.version == "2.5.1+cpu")
    shutil.copy(root / cpu.url_path.lstrip("/"), root / gpu.url_path.lstrip("/"))
    with serve(root, tree=fixture_index.tree) as server:
        text = fixture_lock_text(server, "cu124")
        text = text.replace(gpu.sha256, cpu.sha256).replace(f"size = {gpu.size}\n", f"size = {cpu.size}\n")
        yield server, text


def test_sync_with_pip_refuses_a_cu124_file_holding_a_cpu_torch_before_changing_anything(
    cpu_inside_cu124: tuple[IndexServer, str], tmp_path: Path
) -> None:
    server, text = cpu_inside_cu124
    env = {**pip_env(tmp_path / "pip-cache"), **uv_env(tmp_path / "uv-cache"), "PYTHONPATH": str(PLUGIN)}
    project = tmp_path / "project"
    project.mkdir()
    python = make_venv(tmp_path / "venv")
    # the environment starts as a good lock left it: torch 2.5.1+cpu and filelock
    fixture_lock(server, project, "cpu")
    done = pip_gpu("sync", "--python", str(python), "--installer", "pip", "--no-gpu", env=env, cwd=project)
    assert done.returncode == 0, done.stderr
    before = tree_snapshot(tmp_path / "venv")
    (project / "pylock.cpu.toml").unlink()
    (project / "pylock.cu124.toml").write_text(text)
    done = pip_gpu(
        "sync", "--python", str(python), "--installer", "pip", *A100_ON_535, env=env, cwd=project, timeout=180
    )
    assert_one_line_error(done, "pylock.cu124.toml", "2.5.1+cpu", "nothing was installed")
    assert tree_snapshot(tmp_path / "venv") == before
    assert installed_versions(python)["torch"] == "2.5.1+cpu"


def test_sync_with_pip_still_installs_an_honest_cu124_lock(
    fixture_index: IndexServer, tmp_path: Path
) -> None:
    env = {**pip_env(tmp_path / "pip-cache"), **uv_env(tmp_path / "uv-cache"), "PYTHONPATH": str(PLUGIN)}
    project = tmp_path / "project"
    project.mkdir()
    python = make_venv(tmp_path / "venv")
    fixture_lock(fixture_index, project, "cu124")
    done = pip_gpu(
        "sync", "--python", str(python), "--installer", "pip", *A100_ON_535, env=env, cwd=project, timeout=180
    )
    assert done.returncode == 0, done.stderr
    assert installed_versions(python)["torch"] == "2.5.1+cu124"
