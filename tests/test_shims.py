"""Shims on PATH: plain ``pip`` and ``uv`` get the right build, and nothing else changes.

Every command runs as a user's shell would: PATH holds the shims folder first, then a
folder with the venv's real ``pip`` and the ``uv`` binary. Host profiles come from
``PIP_GPU_*`` variables; the PyTorch index and "PyPI" are the fixture index.
"""

from __future__ import annotations

import os
import subprocess
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
    run,
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

from pip_gpu.shim.pip import pip_interpreter
from pip_gpu.shims import MARKER, SHIM_NAMES

PLUGIN = Path(__file__).resolve().parents[1] / "plugin"
pytestmark = pytest.mark.skipif(os.name == "nt", reason="the shims are POSIX shell scripts")


# --- writing the shims -----------------------------------------------------------------------


def test_shim_install_init_status_uninstall(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    pip_gpu("shim", "install", "--dir", str(folder))
    assert sorted(p.name for p in folder.iterdir()) == sorted([*SHIM_NAMES, MARKER])
    assert all(os.access(folder / name, os.X_OK) for name in SHIM_NAMES)
    hook = pip_gpu("shim", "init", "bash", "--dir", str(folder)).stdout
    env = {**pip_env(), "PATH": "/usr/bin:/bin"}
    # sourcing it twice puts the folder first, once
    path = run(["bash", "-c", f'{hook}\n{hook}\nprintf %s "$PATH"'], env=env).stdout
    assert path == f"{folder}:/usr/bin:/bin"
    plain = pip_gpu("shim", "init", "sh", "--dir", str(folder)).stdout
    path = shell(f'{plain}\n{plain}\nprintf %s "$PATH"', env).stdout
    assert path == f"{folder}:/usr/bin:/bin"
    status = pip_gpu("shim", "status", "--dir", str(folder)).stdout
    assert "installed: pip, pip3, uv, uvx" in status
    bare = pip_gpu("shim", "status", "--dir", str(folder), env={**os.environ, "PATH": str(tmp_path)}).stdout
    assert "  uvx: NOT shimmed (no uvx on PATH at all: put the shims folder on PATH)" in bare, bare
    assert "None" not in bare  # never Python's None in words for a person
    pip_gpu("shim", "uninstall", "--dir", str(folder))
    assert not folder.exists()


def test_shim_install_default_folder_is_xdg(tmp_path: Path) -> None:
    env = {**pip_env(), "XDG_DATA_HOME": str(tmp_path / "data")}
    env.pop("PIP_GPU_SHIMS_DIR", None)
    pip_gpu("shim", "install", env=env)
    assert (tmp_path / "data" / "pip-gpu" / "shims" / "pip").is_file()


def test_the_interpreter_of_pip_is_asked_of_pip_not_read_from_a_shebang(venv: Path, tmp_path: Path) -> None:
    # pip's own launcher, and a pyenv-like wrapper: a bash script whose #! names bash
    assert pip_interpreter(venv.parent / "pip").parent == venv.parent
    wrapper = tmp_path / "pip"
    wrapper.write_text(f'#!/usr/bin/env bash\nset -e\nexec "{venv}" -m pip "$@"\n')
    wrapper.chmod(0o755)
    found = pip_interpreter(wrapper)
    assert found.parent == venv.parent and found.name.startswith("python")


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
    assert "torch 2.5.1 -> cpu" in done.stderr
    # pip's --dry-run keeps its meaning: pip's own list, of the routed files; nothing installed
    assert "Would install" in done.stdout and "torch-2.5.1+cpu" in done.stdout, done.stdout
    assert f"pip-gpu: target {venv.parent}/python" in done.stderr and "from the pip you ran)" in done.stderr
    assert "torch" not in installed_versions(venv)


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


def test_uv_pip_install_into_the_venv_whose_python_is_first_on_path_is_routed(
    shims: Path, venv: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    """No VIRTUAL_ENV, no .venv: uv takes the first ``python`` on PATH when it is a venv's (a
    venv's bin/ put on PATH by direnv or a wrapper), and so does the shim, or uv's own torch
    would go in unchecked."""
    env = shell_env([shims, real_bin(venv), venv.parent], index_server, tmp_path, CPU_HOST)
    env.pop("VIRTUAL_ENV", None)
    done = shell("uv pip install --dry-run torch==2.5.1", env, cwd=tmp_path)
    assert f"pip-gpu: target {venv.parent}/python" in done.stderr, done.stderr
    assert "torch 2.5.1 -> cpu" in done.stderr and " + torch==2.5.1+cpu" in done.stderr, done.stderr


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
    # triton as the cu124 torch's own metadata on its index names it, with torch's marker
    triton = "triton; platform_system == 'Linux' and platform_machine == 'x86_64' and python_version < '3.13'"
    assert f'cu124 = ["torch==2.5.1", "{triton}"]' in text
    assert 'cpu = ["torch==2.5.1"]' in text and "explicit = true" in text

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


# --- wrappers, activated venvs, Windows ------------------------------------------------------


@pytest.mark.slow
def test_a_pyenv_like_wrapper_installs_into_the_interpreter_it_runs(
    shims: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    # pyenv's, asdf's and mise's `pip` are bash scripts: the shim must not take bash for Python
    python = make_venv(tmp_path / "venv", with_pip=True)
    wrappers = tmp_path / "pyenv-shims"
    wrappers.mkdir()
    (wrappers / "pip").write_text(f'#!/usr/bin/env bash\nexec "{python}" -m pip "$@"\n')
    (wrappers / "pip").chmod(0o755)
    env = shell_env([shims, wrappers, Path("/usr/bin"), Path("/bin")], index_server, tmp_path, CPU_HOST)
    done = shell("pip install torch==2.5.1", env, cwd=tmp_path)
    assert f"target {python.parent}" in done.stderr and "torch 2.5.1 -> cpu" in done.stderr
    assert installed_versions(python)["torch"] == "2.5.1+cpu"


def test_the_bash_hook_keeps_the_shims_first_after_a_venv_is_activated(
    shims: Path, venv: Path, tmp_path: Path
) -> None:
    hook = pip_gpu("shim", "init", "bash", "--dir", str(shims)).stdout
    session = (
        f"{hook}\n"
        f"source {venv.parent}/activate\n"
        'echo "pip is $(command -v pip)"\n'
        "pip --version\n"
        "deactivate\n"
        'echo "PATH is $PATH"\n'
    )
    env = {**pip_env(), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    # An interactive bash, as a terminal has it: the hook runs before every prompt.
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-i"],
        env=env,
        input=session,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert f"pip is {shims}/pip\n" in done.stdout
    assert f"from {venv.parents[1]}" in done.stdout  # the shim handed over to the venv's own pip
    assert f"PATH is {shims}:/usr/bin:/bin\n" in done.stdout


def test_the_other_shells_get_a_hook_that_runs_before_every_prompt(shims: Path) -> None:
    zsh = pip_gpu("shim", "init", "zsh", "--dir", str(shims)).stdout
    assert "add-zsh-hook precmd _pip_gpu_shims_first" in zsh and f"local d='{shims}'" in zsh
    fish = pip_gpu("shim", "init", "fish", "--dir", str(shims)).stdout
    assert "function _pip_gpu_shims_first --on-event fish_prompt" in fish
    assert "set -gx PATH $d (string match -v -- $d $PATH)" in fish and f"set -l d '{shims}'" in fish
    powershell = pip_gpu("shim", "init", "powershell", "--dir", str(shims)).stdout
    assert f"$global:PipGpuShims = '{shims}'" in powershell
    assert "function global:prompt { Set-PipGpuShimsFirst; & $global:PipGpuPrompt }" in powershell


def test_windows_shims_are_cmd_and_ps1_files_that_reach_the_real_program(venv: Path, tmp_path: Path) -> None:
    folder = tmp_path / "win-shims"
    windows_python = r"C:\Program Files\Python311\python.exe"
    done = pip_gpu(
        "shim", "install", "--dir", str(folder), "--platform", "windows", "--windows-python", windows_python
    )
    assert "pip.cmd" in done.stdout and "Invoke-Expression" in done.stdout
    names = {*(f"{n}.cmd" for n in SHIM_NAMES), *(f"{n}.ps1" for n in SHIM_NAMES), MARKER}
    assert {p.name for p in folder.iterdir()} == names
    cmd = (folder / "pip.cmd").read_bytes().decode()
    assert cmd.startswith("@echo off\r\n") and "\r\nexit /b %ERRORLEVEL%\r\n" in cmd
    assert f'"{windows_python}" -E -c "' in cmd and f'"{PLUGIN}" pip "%~dp0." %*' in cmd
    ps1 = (folder / "uv.ps1").read_text()
    assert f"& '{windows_python}' -E -c '" in ps1 and f"'{PLUGIN}' uv $PSScriptRoot @args" in ps1
    # Python can run the line both hand over to: here with this machine's interpreter
    code = cmd.split(' -E -c "', 1)[1].split('"', 1)[0]
    env = {**pip_env(), "PATH": os.pathsep.join([str(folder), str(real_bin(venv))])}
    through = run([sys.executable, "-E", "-c", code, str(PLUGIN), "pip", str(folder), "--version"], env=env)
    direct = run([str(real_bin(venv) / "pip"), "--version"], env=env)
    assert through.stdout == direct.stdout and through.stdout.startswith("pip ")
    assert "installed: pip, pip3, uv, uvx" in pip_gpu("shim", "status", "--dir", str(folder)).stdout
    assert "pip.cmd" in pip_gpu("shim", "uninstall", "--dir", str(folder)).stdout
    assert not folder.exists()
