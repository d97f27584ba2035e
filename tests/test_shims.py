"""Shims on PATH: plain ``pip`` and ``uv`` get the right build, and nothing else changes.

Every command runs as a user's shell would: PATH holds the shims folder first, then a
folder with the venv's real ``pip`` and the ``uv`` binary. Host profiles come from
``PIP_GPU_*`` variables; the PyTorch index and "PyPI" are the fixture index.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from support.index import (
    IndexServer,
    fixture_index_fixture,  # noqa: F401  (registers the fixture "fixture_index")
    index_server_fixture,  # noqa: F401  (registers the fixture "index_server")
    installed_versions,
    make_venv,
    pip_env,
)
from support.shims import (
    CPU_HOST,
    CU124_HOST,
    pip_gpu,
    real_bin,
    shell,
    shell_env,
    shims_fixture,  # noqa: F401  (registers the fixture "shims")
    venv_fixture,  # noqa: F401  (registers the fixture "venv")
)

from pip_gpu.shim import MARKER, SHIM_NAMES
from pip_gpu.shim_run import pip_script_python

PLUGIN = Path(__file__).resolve().parents[1] / "plugin"
pytestmark = pytest.mark.skipif(os.name == "nt", reason="the shims are POSIX shell scripts")


# --- writing the shims -----------------------------------------------------------------------


def test_shim_install_init_status_uninstall(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    pip_gpu("shim", "install", "--dir", str(folder))
    assert sorted(p.name for p in folder.iterdir()) == sorted([*SHIM_NAMES, MARKER])
    assert all(os.access(folder / name, os.X_OK) for name in SHIM_NAMES)
    line = pip_gpu("shim", "init", "bash", "--dir", str(folder)).stdout
    env = {**pip_env(), "PATH": "/usr/bin:/bin"}
    # sourcing it twice puts the folder first, once
    path = shell(f'{line.strip()}\n{line.strip()}\nprintf %s "$PATH"', env).stdout
    assert path == f"{folder}:/usr/bin:/bin"
    assert "fish_add_path" in pip_gpu("shim", "init", "fish", "--dir", str(folder)).stdout
    status = pip_gpu("shim", "status", "--dir", str(folder)).stdout
    assert "installed: pip, pip3, uv, uvx" in status
    pip_gpu("shim", "uninstall", "--dir", str(folder))
    assert not folder.exists()


def test_shim_install_default_folder_is_xdg(tmp_path: Path) -> None:
    env = {**pip_env(), "XDG_DATA_HOME": str(tmp_path / "data")}
    env.pop("PIP_GPU_SHIMS_DIR", None)
    pip_gpu("shim", "install", env=env)
    assert (tmp_path / "data" / "pip-gpu" / "shims" / "pip").is_file()


def test_pip_script_python_reads_both_launcher_forms(tmp_path: Path) -> None:
    python = Path(sys.executable)
    short = tmp_path / "pip"
    short.write_text(f"#!{python}\nimport sys\n")
    assert pip_script_python(short) == python
    long = tmp_path / "pip-long"
    long.write_text(f"#!/bin/sh\n'''exec' \"{python}\" \"$0\" \"$@\"\n' '''\nimport sys\n")
    assert pip_script_python(long) == python


# --- pass-through ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        "pip --version",
        "pip list",
        "pip list --format json",
        "pip3 --version",
        "uv --version",
        "uv pip list --python {python}",
    ],
)
def test_pass_through_is_byte_identical(
    command: str, shims: Path, venv: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    command = command.format(python=venv)
    real = real_bin(venv)
    through = shell(command, shell_env([shims, real], index_server, tmp_path))
    plain = shell(command, shell_env([real], index_server, tmp_path))
    assert (through.stdout, through.stderr, through.returncode) == (
        plain.stdout,
        plain.stderr,
        plain.returncode,
    )


def test_pass_through_never_starts_python(
    shims: Path, venv: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    """With pip-gpu's interpreter gone, everything but an install still works: no Python ran."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / MARKER).write_text("")
    for name in SHIM_NAMES:
        text = (
            (shims / name)
            .read_text()
            .replace(f"_pg_python='{sys.executable}'", "_pg_python='/nonexistent/python'")
        )
        (broken / name).write_text(text)
        (broken / name).chmod(0o755)
    env = shell_env([broken, real_bin(venv)], index_server, tmp_path)
    assert shell("pip --version", env).stdout.startswith("pip ")
    assert shell("uv --version", env).stdout.startswith("uv ")
    shell(f"uv pip list --python {venv}", env)
    # ... and an install fails closed, in one line naming the way out
    failed = shell("pip install torch==2.5.1", env, check=False)
    assert failed.returncode != 0
    assert failed.stderr.count("\n") == 1 and "PIP_GPU_DISABLE=1" in failed.stderr
    assert "torch" not in installed_versions(venv)


def test_disable_is_pure_pass_through(
    shims: Path, venv: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    env = shell_env([shims, real_bin(venv)], index_server, tmp_path)
    env["PIP_GPU_DISABLE"] = "1"
    shown = shell("pip install --dry-run --no-deps torch==2.5.1", env)
    assert "pip-gpu" not in shown.stdout + shown.stderr
    assert "Would install torch-2.5.1\n" in shown.stdout  # "PyPI"'s build, unchecked: as asked


def test_pip_install_without_the_family_is_the_real_pip(
    shims: Path, venv: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    env = shell_env([shims, real_bin(venv)], index_server, tmp_path)
    done = shell("pip install --dry-run fixture-lib", env)
    assert "pip-gpu" not in done.stdout + done.stderr
    assert "Would install fixture-lib-1.1.0" in done.stdout


# --- pip install through the shim ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("host", "label"), [(CU124_HOST, "cu124"), (CPU_HOST, "cpu")])
def test_pip_install_torch_gets_the_host_build(
    host: dict[str, str], label: str, shims: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    python = make_venv(tmp_path / "venv", with_pip=True)
    real = tmp_path / "real"
    real.mkdir()
    (real / "pip").symlink_to(python.parent / "pip")
    env = shell_env([shims, real], index_server, tmp_path, host)
    done = shell("pip install torch==2.5.1", env, cwd=tmp_path)
    assert f"torch 2.5.1 -> {label}" in done.stderr
    assert installed_versions(python)["torch"] == f"2.5.1+{label}"


@pytest.mark.slow
def test_pip_install_reads_requirements_files(
    shims: Path, venv: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    (tmp_path / "requirements.txt").write_text("torch==2.5.1\n")
    env = shell_env([shims, real_bin(venv)], index_server, tmp_path, CPU_HOST)
    done = shell("pip install --dry-run -r requirements.txt", env, cwd=tmp_path)
    assert (
        "torch 2.5.1 -> cpu" in done.stderr and f"--index-url {index_server.pytorch_url}/cpu" in done.stdout
    )


def test_pip_unsupported_option_with_the_family_fails_closed(
    shims: Path, venv: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    env = shell_env([shims, real_bin(venv)], index_server, tmp_path)
    done = shell(f"pip install --target {tmp_path / 't'} torch==2.5.1", env, check=False)
    assert done.returncode == 2
    assert "--target" in done.stderr and "PIP_GPU_DISABLE=1" in done.stderr
    assert not (tmp_path / "t").exists()


# --- uv pip install through the shim ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("host", "label"), [(CU124_HOST, "cu124"), (CPU_HOST, "cpu")])
def test_uv_pip_install_torch_gets_the_host_build(
    host: dict[str, str], label: str, shims: Path, venv: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    python = make_venv(tmp_path / "uvvenv", with_pip=False)
    env = shell_env([shims, real_bin(venv)], index_server, tmp_path, host)
    env["VIRTUAL_ENV"] = str(python.parent.parent)
    done = shell("uv pip install torch==2.5.1", env, cwd=tmp_path)
    assert f"torch 2.5.1 -> {label}" in done.stderr
    assert installed_versions(python)["torch"] == f"2.5.1+{label}"


# --- uv projects -------------------------------------------------------------------------------

PYPROJECT = """\
[project]
name = "model"
version = "0.1.0"
requires-python = ">=3.9"
# the team's pins
dependencies = [
    "fixture-lib",
    "torch==2.5.1",  # tested with
]
"""


@pytest.mark.slow
def test_uv_project_setup_lock_and_run(
    shims: Path, venv: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    project = tmp_path / "model"
    project.mkdir()
    (project / "pyproject.toml").write_text(PYPROJECT)
    env = shell_env([shims, real_bin(venv)], index_server, tmp_path)
    env["PYTHONPATH"] = str(PLUGIN)
    env["UV_PYTHON"] = sys.executable
    # The fixture's "PyPI" lacks the older CUDA runtimes real PyPI has; its flat folder has them.
    assert index_server.tree is not None
    env["UV_FIND_LINKS"] = str(index_server.tree.root / "whl")
    shell(f"{sys.executable} -m pip_gpu uv setup --variants cu121,cu124,cpu", env, cwd=project)
    text = (project / "pyproject.toml").read_text()
    assert "# the team's pins" in text and '"fixture-lib",' in text
    assert 'cu124 = ["torch==2.5.1"]' in text and "explicit = true" in text

    shell("uv lock", env, cwd=project)
    lock = (project / "uv.lock").read_text()
    for label in ("cu121", "cu124", "cpu"):
        assert f'version = "2.5.1+{label}"' in lock

    show = 'uv run python -c "import torch; print(torch.__version__)"'
    assert shell(show, env, cwd=project).stdout.strip() == "2.5.1+cu124"
    cpu_env = {k: v for k, v in env.items() if not k.startswith("PIP_GPU_")} | {
        "PIP_GPU_NO_GPU": "1",
        "PIP_GPU_PYTORCH_INDEX": index_server.pytorch_url,
    }
    assert shell(show, cpu_env, cwd=project).stdout.strip() == "2.5.1+cpu"
    # without pip-gpu, plain uv with the extra still works
    plain = {**env, "PIP_GPU_DISABLE": "1"}
    assert (
        shell(show.replace("uv run", "uv run --extra cu121"), plain, cwd=project).stdout.strip()
        == "2.5.1+cu121"
    )
