"""uv projects through the shims, set up or not: no command leaves a torch build that cannot run here.

The decision about PyPI's build is tested as a function; the commands run real uv through the
shims against the fixture indexes, whose "PyPI" serves torch 2.11.0 as PyPI does (a CUDA 13.0
build without a local label, needing driver 580) beside torch 2.5.1/2.6.0 (CUDA 12.4).
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
)
from support.shims import (
    CU124_HOST,
    real_bin,
    shell,
    shell_env,
    shims_fixture,  # noqa: F401  (registers the fixture "shims")
    venv_fixture,  # noqa: F401  (registers the fixture "venv")
)

from pip_gpu.host import HostProfile, NvidiaGpu
from pip_gpu.knowledge import load_knowledge
from pip_gpu.uv_lock import (
    locked_extras,
    pypi_build_verdict,
    torch_in_lock,
    uv_lock_selection,
)

PLUGIN = Path(__file__).resolve().parents[1] / "plugin"
H100_HOST = {"PIP_GPU_DRIVER": "580.65.06", "PIP_GPU_COMPUTE_CAPABILITY": "9.0"}
OLD_DRIVER_HOST = {"PIP_GPU_DRIVER": "470.82.01", "PIP_GPU_COMPUTE_CAPABILITY": "8.0"}
PIP_GPU = f"{sys.executable} -m pip_gpu"
SHOW = 'uv run python -c "import torch; print(torch.__version__)"'
# The line setup adds for torch 2.5/2.6's triton: the marker of torch's own Requires-Dist on the
# fixture's variant indexes (Linux x86_64, Python < 3.13).
TRITON = "triton; platform_system == 'Linux' and platform_machine == 'x86_64' and python_version < '3.13'"


def _host(driver: str | None = "535.104.05", os_name: str = "linux", arch: str = "x86_64") -> HostProfile:
    gpus = (NvidiaGpu(0, "NVIDIA A100", (8, 0), "test"),) if driver else ()
    return HostProfile(os_name, arch, "3.11", driver_version=driver, nvidia_gpus=gpus)


# --- the decision about PyPI's build ---------------------------------------------------------


def test_pypi_cuda13_build_needs_driver_580() -> None:
    verdict = pypi_build_verdict("2.11.0", _host(), load_knowledge())
    assert verdict.runs is False
    assert verdict.build == "torch 2.11.0 (PyPI's cu130 build)"
    assert "driver 535.104.05 is older than 580," in verdict.reason
    assert pypi_build_verdict("2.11.0", _host("580.65.06"), load_knowledge()).runs is True


def test_pypi_cuda12_build_runs_on_driver_535_not_470() -> None:
    assert pypi_build_verdict("2.6.0", _host(), load_knowledge()).runs is True
    old = pypi_build_verdict("2.6.0", _host("470.82.01"), load_knowledge())
    assert old.runs is False and "CUDA 12.4" in old.reason


def test_pypi_windows_build_is_cpu_only_and_macos_is_the_build() -> None:
    windows = pypi_build_verdict("2.11.0", _host(os_name="windows"), load_knowledge())
    assert windows.runs is False and "CPU-only" in windows.reason
    assert pypi_build_verdict("2.11.0", _host(None, "macos", "arm64"), load_knowledge()).runs is True


def test_labelled_build_is_judged_by_its_label() -> None:
    assert pypi_build_verdict("2.6.0+cu126", _host(), load_knowledge()).runs is True
    assert pypi_build_verdict("2.11.0+cu130", _host(), load_knowledge()).runs is False


def test_release_newer_than_knowledge_needs_at_least_the_newest_default() -> None:
    verdict = pypi_build_verdict("9.0.0", _host(), load_knowledge())
    assert verdict.runs is False and verdict.reason.startswith("it needs at least")
    assert pypi_build_verdict("9.0.0", _host("580.65.06"), load_knowledge()).runs is None  # cannot tell


def test_lock_reading_keeps_this_platforms_torch() -> None:
    linux = "https://x/torch-2.11.0-cp311-cp311-manylinux_2_28_x86_64.whl"
    mac = "https://x/torch-2.11.0-cp311-none-macosx_11_0_arm64.whl"
    root = {"name": "proj", "source": {"virtual": "."}, "metadata": {"provides-extras": ["cpu"]}}
    lock = {
        "package": [
            root,
            {"name": "torch", "version": "2.11.0", "wheels": [{"url": linux}]},
            {"name": "torch", "version": "2.11.0+mac", "wheels": [{"url": mac}]},
        ]
    }
    assert [t.version for t in torch_in_lock(lock, _host())] == ["2.11.0"]
    assert locked_extras(lock) == ["cpu"]


def test_lock_selection_follows_the_hosts_extra() -> None:
    source = {"registry": "https://x/whl/cu126"}
    lock = {
        "package": [
            {
                "name": "model",
                "source": {"virtual": "."},
                "dependencies": [{"name": "numpy"}, {"name": "pywin32", "marker": "sys_platform == 'win32'"}],
                "optional-dependencies": {
                    "cpu": [{"name": "torch", "version": "2.6.0+cpu"}],
                    "cu126": [{"name": "torch", "version": "2.6.0+cu126", "source": source}],
                },
            },
            {"name": "numpy", "version": "2.1.2"},
            {"name": "pywin32", "version": "306"},
            {"name": "torch", "version": "2.6.0+cpu", "dependencies": [{"name": "filelock"}]},
            {
                "name": "torch",
                "version": "2.6.0+cu126",
                "source": source,
                "dependencies": [{"name": "runtime", "marker": "extra == 'extra-5-model-cu126'"}],
            },
            {"name": "filelock", "version": "3.13.1"},
            {"name": "runtime", "version": "12.6.77"},
        ]
    }
    linux = {"sys_platform": "linux", "platform_machine": "x86_64", "python_version": "3.11"}
    assert uv_lock_selection(lock, "cu126", linux) == {
        "numpy": "2.1.2",
        "torch": "2.6.0+cu126",
        "runtime": "12.6.77",
    }
    assert uv_lock_selection(lock, "cpu", linux) == {
        "numpy": "2.1.2",
        "torch": "2.6.0+cpu",
        "filelock": "3.13.1",
    }
    assert uv_lock_selection(lock, None, linux) == {"numpy": "2.1.2"}


# --- real uv through the shims -----------------------------------------------------------------


@pytest.fixture
def user(shims: Path, venv: Path, index_server: IndexServer, tmp_path: Path) -> dict[str, str]:
    """A uv user's shell on an A100 with driver 535: shims first, uv's real binary after."""
    env = shell_env([shims, real_bin(venv)], index_server, tmp_path, CU124_HOST)
    env["PYTHONPATH"] = str(PLUGIN)
    env["UV_PYTHON"] = sys.executable
    assert index_server.tree is not None
    env["UV_FIND_LINKS"] = str(index_server.tree.root / "whl")  # the CUDA runtimes
    return env


def _project(tmp_path: Path, env: dict[str, str], dependencies: str = "") -> Path:
    project = tmp_path / "model"
    project.mkdir()
    shell("uv init --bare --quiet .", env, cwd=project)
    if dependencies:
        path = project / "pyproject.toml"
        path.write_text(path.read_text().replace("dependencies = []", f"dependencies = [{dependencies}]"))
    return project


pytestmark = pytest.mark.skipif(os.name == "nt", reason="the shims are POSIX shell scripts")


@pytest.mark.slow
def test_uv_add_torch_in_a_fresh_project_sets_it_up(user: dict[str, str], tmp_path: Path) -> None:
    project = _project(tmp_path, user)
    added = shell("uv add torch", user, cwd=project)
    said = [line for line in added.stderr.splitlines() if "configuration" in line]
    assert len(said) == 1 and "extras and indexes cu126, cpu for torch" in said[0]
    text = (project / "pyproject.toml").read_text()
    # triton joins the CUDA extra with a source, so only the PyTorch index serves it (see uv_project)
    assert f'cu126 = ["torch", "{TRITON}"]' in text and 'cpu = ["torch"]' in text
    assert 'name = "pytorch-cu126"' in text and "explicit = true" in text
    assert "dependencies = []" in text  # torch lives in the variant extras only
    lock = (project / "uv.lock").read_text()
    assert 'version = "2.6.0+cu126"' in lock and 'version = "2.6.0+cpu"' in lock
    assert 'version = "2.11.0"' not in lock  # PyPI's CUDA 13.0 build was never locked
    assert shell(SHOW, user, cwd=project).stdout.strip() == "2.6.0+cu126"
    check = shell(PIP_GPU + " check", user, cwd=project)
    assert "OK" in check.stdout and "torch 2.6.0+cu126, triton 3.2.0 as uv.lock locks" in check.stdout

    # check and doctor compare the environment with uv.lock's packages for this host's extra.
    shell("uv sync --quiet --extra cpu", {**user, "PIP_GPU_DISABLE": "1"}, cwd=project)
    check = shell(PIP_GPU + " check", user, cwd=project, check=False)
    assert check.returncode == 1
    assert (
        "torch 2.6.0+cpu is installed; uv.lock for this host (extra cu126) wants 2.6.0+cu126" in check.stdout
    )
    doctor = shell(PIP_GPU + " doctor", user, cwd=project, check=False)
    assert "FAIL  lock" in doctor.stdout and "fix: uv sync --extra cu126" in doctor.stdout

    # In the set-up project, another family member joins every variant's extra.
    shell("uv add torchvision", user, cwd=project)
    text = (project / "pyproject.toml").read_text()
    assert f'cu126 = ["torch", "{TRITON}", "torchvision"]' in text
    assert 'cpu = ["torch", "torchvision"]' in text and "torchvision = [" in text
    assert 'version = "0.21.0+cu126"' in (project / "uv.lock").read_text()
    show = 'uv run python -c "import torch, torchvision; print(torch.__version__, torchvision.__version__)"'
    assert shell(show, user, cwd=project).stdout.strip() == "2.6.0+cu126 0.21.0+cu126"


@pytest.mark.slow
def test_project_locking_pypis_cuda13_torch_stops_before_uv_changes_anything(
    user: dict[str, str], tmp_path: Path
) -> None:
    project = _project(tmp_path, user, '"torch"')
    shell("uv lock --quiet", {**user, "PIP_GPU_DISABLE": "1"}, cwd=project)
    lock = (project / "uv.lock").read_text()
    assert 'version = "2.11.0"' in lock
    pyproject = (project / "pyproject.toml").read_text()
    for command in (SHOW, "uv sync", "uv lock --upgrade"):
        stopped = shell(command, user, cwd=project, check=False)
        assert stopped.returncode == 2, stopped
        assert stopped.stdout == ""
        (line,) = stopped.stderr.splitlines()
        assert "locks torch 2.11.0 (PyPI's cu130 build), which cannot run here" in line
        assert "driver 535.104.05 is older than 580," in line and "`pip-gpu uv setup`" in line
        assert "PIP_GPU_AUTO_SETUP=1" in line
    assert not (project / ".venv").exists()
    assert (project / "uv.lock").read_text() == lock and (project / "pyproject.toml").read_text() == pyproject

    # With consent the shim sets the project up, then runs the host's build.
    done = shell(SHOW, {**user, "PIP_GPU_AUTO_SETUP": "1"}, cwd=project)
    assert done.stdout.strip() == "2.6.0+cu126"
    assert "PIP_GPU_AUTO_SETUP=1: wrote uv's PyTorch configuration" in done.stderr
    text = (project / "pyproject.toml").read_text()
    assert f"""cu126 = ["torch", "{TRITON}"]""" in text


@pytest.mark.slow
def test_project_whose_pypi_torch_runs_here_passes_through(user: dict[str, str], tmp_path: Path) -> None:
    project = _project(tmp_path, user, '"torch"')
    h100 = {**{k: v for k, v in user.items() if not k.startswith("PIP_GPU_")}, **H100_HOST}
    h100["PIP_GPU_PYTORCH_INDEX"] = user["PIP_GPU_PYTORCH_INDEX"]
    pyproject = (project / "pyproject.toml").read_text()
    done = shell(SHOW, h100, cwd=project)
    assert done.stdout.strip() == "2.11.0"
    assert "pip-gpu" not in done.stderr
    assert (project / "pyproject.toml").read_text() == pyproject
    # The same environment on the A100 with driver 535: check names the build and the fact.
    check = shell(PIP_GPU + " check", user, cwd=project, check=False)
    assert check.returncode == 1
    assert "uv.lock locks torch 2.11.0 (PyPI's cu130 build), which cannot run here" in check.stdout


@pytest.mark.slow
def test_torch_that_arrives_through_a_dependency_counts(user: dict[str, str], tmp_path: Path) -> None:
    """fixture-metrics needs torch>=2.0: PyPI's newest (2.11.0, CUDA 13.0) is too new for driver 470."""
    project = _project(tmp_path, user, '"fixture-metrics"')
    old = {**user, **OLD_DRIVER_HOST}
    stopped = shell("uv run python -V", old, cwd=project, check=False)
    assert stopped.returncode == 2
    assert "resolves to torch 2.11.0 (PyPI's cu130 build), which cannot run here" in stopped.stderr
    assert not (project / "uv.lock").exists() and not (project / ".venv").exists()
    shell("uv lock --quiet", {**user, "PIP_GPU_DISABLE": "1"}, cwd=project)
    stopped = shell("uv sync", old, cwd=project, check=False)
    assert stopped.returncode == 2 and "locks torch 2.11.0 (PyPI's cu130 build)" in stopped.stderr
    # On an H100 with driver 580 that build runs: uv goes on untouched.
    h100 = {**{k: v for k, v in user.items() if not k.startswith("PIP_GPU_")}, **H100_HOST}
    h100["PIP_GPU_PYTORCH_INDEX"] = user["PIP_GPU_PYTORCH_INDEX"]
    assert shell("uv run python -V", h100, cwd=project).stderr.count("pip-gpu") == 0


@pytest.mark.slow
def test_disable_and_uv_torch_backend_stay_pure_pass_through(user: dict[str, str], tmp_path: Path) -> None:
    project = _project(tmp_path, user, '"torch"')
    for setting in ({"PIP_GPU_DISABLE": "1"}, {"UV_TORCH_BACKEND": "auto"}):
        done = shell("uv lock", {**user, **setting}, cwd=project)
        assert "pip-gpu" not in done.stderr
    assert 'version = "2.11.0"' in (project / "uv.lock").read_text()


@pytest.mark.slow
def test_set_up_project_whose_lock_lacks_this_hosts_variant(user: dict[str, str], tmp_path: Path) -> None:
    """Set up on a CPU-only laptop (cpu alone), then used on the A100."""
    project = _project(tmp_path, user)
    shell(f"{sys.executable} -m pip_gpu uv setup --variants cpu", user, cwd=project)
    shell("uv lock --quiet", user, cwd=project)
    lock = (project / "uv.lock").read_text()
    stopped = shell(SHOW, user, cwd=project, check=False)
    assert stopped.returncode == 2
    assert (
        "this host runs the cu126 build" in stopped.stderr
        and "pyproject.toml and uv.lock offer cpu" in stopped.stderr
    )
    assert "pip-gpu uv setup --variants cpu,cu126, then uv lock" in stopped.stderr
    assert (project / "uv.lock").read_text() == lock and not (project / ".venv").exists()

    # pyproject.toml offers it now, the lock does not yet: --frozen would use the lock as it is.
    shell(f"{sys.executable} -m pip_gpu uv setup --variants cu126,cpu", user, cwd=project)
    frozen = shell("uv sync --frozen", user, cwd=project, check=False)
    assert frozen.returncode == 2 and "uv.lock records cpu" in frozen.stderr and "uv lock" in frozen.stderr
    assert shell(SHOW, user, cwd=project).stdout.strip() == "2.6.0+cu126"  # uv locks again itself


@pytest.mark.slow
def test_uv_add_of_a_library_that_needs_torch(user: dict[str, str], tmp_path: Path) -> None:
    """uv add resolves first: fixture-metrics brings PyPI's CUDA 13.0 torch; driver 470 cannot run it."""
    project = _project(tmp_path, user)
    old = {**user, **OLD_DRIVER_HOST}
    pyproject = (project / "pyproject.toml").read_text()
    stopped = shell("uv add fixture-metrics", old, cwd=project, check=False)
    assert stopped.returncode == 2
    (line,) = stopped.stderr.splitlines()
    assert "uv add stopped: model would get torch 2.11.0 (PyPI's cu130 build), which cannot run here" in line
    assert "driver 470.82.01 is older than 580" in line
    assert (project / "pyproject.toml").read_text() == pyproject and not (project / "uv.lock").exists()

    done = shell("uv add fixture-metrics", {**old, "PIP_GPU_AUTO_SETUP": "1"}, cwd=project)
    assert "extras and indexes cu118, cpu for torch" in done.stderr
    show = 'uv run python -c "import torch; print(torch.__version__)"'
    assert shell(show, old, cwd=project).stdout.strip() == "2.6.0+cu118"
