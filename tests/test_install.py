"""`pip-gpu install` with real pip and real uv into real virtual environments.

The PyTorch-like index (``fixtures/pytorch_index.py``) is served on 127.0.0.1; its "PyPI"
holds the ordinary packages and planted attackers (``filelock 99.0.0`` and
``nvidia-cuda-runtime-cu12 99.0.0``) that a merged-index resolver would take.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from support import cli

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib
from support.index import fixture_env, installed_versions, make_venv, site_packages

A100_ON_535 = ("--driver", "535.104.05", "--compute-capability", "8.0")

pytestmark = pytest.mark.slow


def pip_gpu(*args: str, env: Mapping[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``pip-gpu install ARGS``."""
    return cli.pip_gpu("install", *args, env=env, cwd=cwd, timeout=300)


@pytest.fixture
def env(fixture_index, tmp_path: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """pip and uv isolated from this machine's config, pointed at the fixture "PyPI"."""
    return fixture_env(fixture_index, tmp_path / "uv-cache")


@pytest.fixture(scope="module")
def pip_venv_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One venv with pip, copied per test: `python -m venv` is the slow part."""
    return make_venv(tmp_path_factory.mktemp("template") / "venv", with_pip=True).parents[1]


def fresh_pip_venv(template: Path, where: Path) -> Path:
    target = where / "venv"
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", str(template), str(target)], check=True)
    # venv scripts carry absolute shebangs; pip-gpu runs pip as a module, so the copy works
    return target / "bin" / "python"


def assert_no_attacker(python: Path) -> None:
    versions = installed_versions(python)
    assert versions.get("filelock") != "99.0.0"
    assert versions.get("nvidia-cuda-runtime-cu12") != "99.0.0"
    assert not (site_packages(python) / "filelock" / "PWNED").exists()


# --- the "Done when", per installer ------------------------------------------------


def test_uv_installs_the_cu124_pair_and_never_the_planted_packages(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    python = make_venv(tmp_path / "venv", with_pip=False)
    done = pip_gpu("torch==2.5.1", "torchvision", "filelock", "--python", str(python), *A100_ON_535, env=env)
    assert done.returncode == 0, done.stderr
    versions = installed_versions(python)
    assert versions["torch"] == "2.5.1+cu124"
    assert versions["torchvision"] == "0.20.1+cu124"
    assert versions["nvidia-cuda-runtime-cu12"] == "12.4.127"
    assert_no_attacker(python)
    assert "installing with uv" in done.stderr  # no pip in the target: uv is the default
    assert "verified: torch 2.5.1+cu124 (CUDA 12.4)" in done.stderr


def test_pip_installs_the_cu124_pair_and_never_the_planted_packages(  # type: ignore[no-untyped-def]
    env, tmp_path: Path, pip_venv_template: Path, fixture_index
) -> None:
    python = fresh_pip_venv(pip_venv_template, tmp_path)
    done = pip_gpu(
        "torch==2.5.1",
        "torchvision",
        "filelock",
        "fixture-app",
        "--python",
        str(python),
        *A100_ON_535,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    versions = installed_versions(python)
    assert (versions["torch"], versions["torchvision"]) == ("2.5.1+cu124", "0.20.1+cu124")
    assert versions["fixture-app"] == "1.0.0" and versions["fixture-lib"] == "1.1.0"  # from "PyPI"
    assert_no_attacker(python)
    assert "installing with pip" in done.stderr


def test_no_gpu_installs_the_cpu_build(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    python = make_venv(tmp_path / "venv", with_pip=False)
    done = pip_gpu("torch==2.5.1", "torchvision", "--python", str(python), "--no-gpu", env=env)
    assert done.returncode == 0, done.stderr
    versions = installed_versions(python)
    assert (versions["torch"], versions["torchvision"]) == ("2.5.1+cpu", "0.20.1+cpu")
    assert "nvidia-cuda-runtime-cu12" not in versions


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_channel_nightly_installs_from_the_nightly_folder(  # type: ignore[no-untyped-def]
    env, tmp_path: Path, pip_venv_template: Path, installer: str
) -> None:
    """--channel nightly: <index>/nightly/<variant>, decided from what it publishes (a dev
    pre-release of a torch newer than pip-gpu's knowledge), admitted there and only there."""
    python = fresh_pip_venv(pip_venv_template, tmp_path) if installer == "pip" else make_venv(tmp_path / "v")
    env = {**env, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = pip_gpu(
        "torch",
        "--channel",
        "nightly",
        "--no-gpu",
        "--installer",
        installer,
        "--python",
        str(python),
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert installed_versions(python)["torch"] == "2.16.0.dev20261207+cpu"
    assert f"torch 2.16 -> cpu from {env['PIP_GPU_PYTORCH_INDEX']}/nightly/cpu" in done.stderr


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_amd_gfx_installs_the_rocm_build_with_its_triton(  # type: ignore[no-untyped-def]
    env, tmp_path: Path, pip_venv_template: Path, installer: str
) -> None:
    """--amd-gfx gfx1100: torch 2.5.1+rocm6.2 from /whl/rocm6.2 with the pytorch-triton-rocm it
    pins from there too, never the planted one on "PyPI"."""
    python = fresh_pip_venv(pip_venv_template, tmp_path) if installer == "pip" else make_venv(tmp_path / "v")
    amd = ("--amd-gfx", "gfx1100", "--installer", installer, "--python", str(python))
    done = pip_gpu("torch==2.5.1", *amd, env=env)
    assert done.returncode == 0, done.stderr
    versions = installed_versions(python)
    assert (versions["torch"], versions["pytorch-triton-rocm"]) == ("2.5.1+rocm6.2", "3.1.0")
    assert f"torch 2.5.1 -> rocm6.2 from {env['PIP_GPU_PYTORCH_INDEX']}/rocm6.2" in done.stderr
    assert "verified: torch 2.5.1+rocm6.2 (ROCm 6.2.41133-dd7f95766)" in done.stderr
    assert not (site_packages(python) / "pytorch_triton_rocm" / "PWNED").exists()


def test_amd_gfx_outside_every_rocm_build_gets_the_cpu_build_or_a_refusal(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from support.cli import assert_one_line_error

    python = make_venv(tmp_path / "venv", with_pip=False)
    done = pip_gpu("torch==2.5.1", "--amd-gfx", "gfx1036", "--python", str(python), env=env)
    assert done.returncode == 0, done.stderr
    assert installed_versions(python)["torch"] == "2.5.1+cpu"
    assert "no ROCm build of torch 2.5 supports this AMD GPU (gfx1036 not in this ROCm build)" in done.stderr
    forced = pip_gpu(
        "torch==2.5.1", "--amd-gfx", "gfx1036", "--variant", "rocm6.2", "--python", str(python), env=env
    )
    assert_one_line_error(forced, "rocm6.2 cannot run here", "gfx1036 not in this ROCm build", "--force")
    assert installed_versions(python)["torch"] == "2.5.1+cpu"  # nothing changed


def test_channel_decides_from_what_it_publishes_and_stable_admits_no_pre_release(  # type: ignore[no-untyped-def]
    env, tmp_path: Path
) -> None:
    def explain(*args: str, cwd: Path = tmp_path, **extra: str) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-m", "pip_gpu", "explain", *args, "--json"],
            env={**env, "XDG_CACHE_HOME": str(tmp_path / "cache"), **extra},
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    h100 = ("--driver", "580.65.06", "--compute-capability", "9.0")
    nightly = explain("torch", *h100, PIP_GPU_CHANNEL="nightly")
    assert (nightly["torch"], nightly["variant"]) == ("2.16", "cu130")
    assert nightly["index_url"] == f"{env['PIP_GPU_PYTORCH_INDEX']}/nightly/cu130"
    assert {c["torch"] for c in nightly["candidates"]} == {"2.16"}  # only what the channel publishes
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text('[tool.pip-gpu]\nchannel = "nightly"\n')
    assert explain("torch", "--no-gpu", cwd=project)["index_url"].endswith("/whl/nightly/cpu")
    stable = explain("torch>=2.6", "--no-gpu")  # the stable folders hold no 2.16 pre-release
    assert stable["torch"] != "2.16" and "/nightly/" not in stable["index_url"]
    bad = subprocess.run(
        [sys.executable, "-m", "pip_gpu", "explain", "torch", "--no-gpu"],
        env={**env, "PIP_GPU_CHANNEL": "beta"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "PIP_GPU_CHANNEL: unknown channel 'beta'" in bad.stderr


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_driver_too_old_for_every_build_installs_nothing(  # type: ignore[no-untyped-def]
    env, tmp_path: Path, pip_venv_template: Path, index_server, installer: str
) -> None:
    python = fresh_pip_venv(pip_venv_template, tmp_path)
    before = installed_versions(python)
    done = pip_gpu(
        "torch==2.5.1", "--python", str(python), "--installer", installer,
        "--driver", "440.33.01", "--compute-capability", "8.0", env=env,
    )  # fmt: skip
    assert done.returncode == 2
    assert "440.33.01" in done.stderr and ">= 450.80.02" in done.stderr
    assert installed_versions(python) == before
    assert not index_server.requests  # no installer ever ran


def test_requirements_file_with_nested_files_markers_and_hashes(  # type: ignore[no-untyped-def]
    env, tmp_path: Path, pip_venv_template: Path, fixture_index
) -> None:
    """pip's hash-checking mode: every line pinned and hashed, as pip-compile writes them."""
    tree = fixture_index.tree

    def hashed(index: str, project: str, version: str) -> str:
        wheel = next(w for w in tree.files_for(index, project) if w.version == version)
        return f"{project}=={version.split('+')[0]} \\\n    --hash=sha256:{wheel.sha256}\n"

    (tmp_path / "torch.txt").write_text(
        "# the framework\n"
        + hashed("cu124", "torch", "2.5.1+cu124")
        + hashed("cu124", "torchvision", "0.20.1+cu124")
        + 'torchaudio==2.5.1 ; sys_platform == "no-such-platform"\n'
    )
    deps = [
        ("filelock", "3.13.1"), ("typing-extensions", "4.12.2"), ("sympy", "1.13.1"), ("mpmath", "1.3.0"),
        ("networkx", "3.3"), ("jinja2", "3.1.4"), ("markupsafe", "2.1.5"), ("fsspec", "2024.6.1"),
        ("numpy", "1.26.4"), ("pillow", "11.0.0"), ("nvidia-cuda-runtime-cu12", "12.4.127"),
        ("triton", "3.1.0"),
    ]  # fmt: skip
    (tmp_path / "requirements.txt").write_text(
        "-r torch.txt\n" + "".join(hashed("cu124", name, version) for name, version in deps)
    )
    python = fresh_pip_venv(pip_venv_template, tmp_path)
    done = pip_gpu("-r", "requirements.txt", "--python", str(python), *A100_ON_535, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    versions = installed_versions(python)
    assert versions["torch"] == "2.5.1+cu124" and versions["torchvision"] == "0.20.1+cu124"
    assert "torchaudio" not in versions  # its marker excludes this platform

    # A hash that does not match the decided wheel: pip refuses, and nothing changes.
    (tmp_path / "torch.txt").write_text("torch==2.5.1 --hash=sha256:" + "0" * 64 + "\n")
    (tmp_path / "requirements.txt").write_text("-r torch.txt\n")
    python = fresh_pip_venv(pip_venv_template, tmp_path / "second")
    done = pip_gpu("-r", "requirements.txt", "--python", str(python), *A100_ON_535, env=env, cwd=tmp_path)
    assert done.returncode != 0
    assert "torch" not in installed_versions(python)


def test_dry_run_prints_the_commands_and_installs_nothing(env, tmp_path: Path, index_server) -> None:  # type: ignore[no-untyped-def]
    python = make_venv(tmp_path / "venv", with_pip=False)
    done = pip_gpu("torch==2.5.1", "torchvision", "--python", str(python), "--dry-run", *A100_ON_535, env=env)
    assert done.returncode == 0, done.stderr
    # the family goes to the variant index as an explicit index, by name
    assert f'url = "{index_server.pytorch_url}/cu124"' in done.stdout and "explicit = true" in done.stdout
    assert '[tool.uv.sources.torch]\nindex = "pip-gpu-variant"' in done.stdout
    assert "torch==2.5.1+cu124" in done.stdout and "torchvision==0.20.*" in done.stdout
    assert "torch" not in installed_versions(python)
    # Settling the run reads the indexes (a uv pip compile); it downloads no wheel.
    assert not [r for r in index_server.requests if r.path.endswith(".whl")]


def test_credentials_in_index_urls_never_reach_the_output(env, tmp_path: Path, fixture_index) -> None:  # type: ignore[no-untyped-def]
    python = make_venv(tmp_path / "venv", with_pip=False)
    secret_index = fixture_index.pytorch_url.replace("http://", "http://alice:s3cr3t-token@")
    done = pip_gpu(
        "torch==2.5.1",
        "--python",
        str(python),
        "--dry-run",
        "--pytorch-index",
        secret_index,
        *A100_ON_535,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "s3cr3t-token" not in done.stdout + done.stderr
    assert "alice" not in done.stdout + done.stderr or "***" in done.stdout


def test_a_library_that_needs_torchvision_gets_it_from_the_variant_index_under_pip(  # type: ignore[no-untyped-def]
    env, tmp_path: Path, pip_venv_template: Path
) -> None:
    python = fresh_pip_venv(pip_venv_template, tmp_path)
    # The variant is pinned: plain torch's newest release is newer than the fixture index.
    done = pip_gpu("fixture-vision-app", "--python", str(python), "--variant", "cu124", *A100_ON_535, env=env)
    assert done.returncode == 0, done.stderr
    versions = installed_versions(python)
    assert versions["fixture-vision-app"] == "1.0.0"
    assert versions["torchvision"].endswith("+cu124") and versions["torch"].endswith("+cu124")
    assert "pulled in by other requirements" in done.stderr


def test_target_environment_comes_from_virtual_env(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    python = make_venv(tmp_path / "venv", with_pip=False)
    env = {**env, "VIRTUAL_ENV": str(python.parents[1])}
    done = pip_gpu("torch==2.5.1", "--no-gpu", "--dry-run", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"target {python} " in done.stderr and "from VIRTUAL_ENV" in done.stderr


def test_python_that_is_not_an_interpreter_is_refused(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "python").write_text("not a program")
    done = pip_gpu("torch", "--python", str(tmp_path / "python"), "--no-gpu", env=env)
    assert done.returncode == 2 and "not a working Python interpreter" in done.stderr
    assert "Traceback" not in done.stderr


def test_dry_run_json_gives_the_decision_and_the_exact_commands(env, tmp_path: Path, index_server) -> None:  # type: ignore[no-untyped-def]
    import json

    python = make_venv(tmp_path / "venv", with_pip=False)
    done = pip_gpu(
        "torch==2.5.1",
        "--python",
        str(python),
        "--dry-run",
        "--json",
        "--installer",
        "uv",
        *A100_ON_535,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert (plan["decision"]["variant"], plan["installer"]) == ("cu124", "uv")
    (command,) = plan["commands"]
    family = tomllib.loads(command["files"]["$d/torch-family/pyproject.toml"])
    # torch's own triton is routed too: the settled run knows torch brings it in
    assert family["project"]["dependencies"] == ["torch==2.5.1+cu124", "triton"]
    assert family["tool"]["uv"]["sources"] == {
        "torch": {"index": "pip-gpu-variant"},
        "triton": {"index": "pip-gpu-variant"},
    }
    assert family["tool"]["uv"]["index"] == [
        {"name": "pip-gpu-variant", "url": f"{index_server.pytorch_url}/cu124", "explicit": True}
    ]
    assert not [r for r in index_server.requests if r.path.endswith(".whl")]


# --- the dry run shows every run, and can be pasted (issue 16) -------------------------------


def test_a_pip_dry_run_is_a_script_that_installs_what_the_install_would(  # type: ignore[no-untyped-def]
    env, tmp_path: Path, pip_venv_template: Path
) -> None:
    python = fresh_pip_venv(pip_venv_template, tmp_path / "pasted")
    args = ("torch==2.5.1", "fixture-lib", "--installer", "pip", "--python", str(python), *A100_ON_535)
    done = pip_gpu(*args, "--dry-run", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    script = done.stdout
    assert "1 installer run" in script
    # the family as a direct reference to the variant index's file, settled by a pip dry run
    assert re.search(r"^torch @ http://127\.0\.0\.1:\d+/whl/cu124/torch-2\.5\.1", script, re.MULTILINE), (
        script
    )
    assert "\nfixture-lib\n" in script and "chosen on the variant index by a pip dry run" in script
    assert "/pip-gpu-" not in script  # no path into pip-gpu's deleted temporary folder
    assert "torch" not in installed_versions(python)
    pasted = subprocess.run(
        ["bash", "-c", script], env=dict(env), cwd=tmp_path, capture_output=True, text=True
    )
    assert pasted.returncode == 0, pasted.stderr
    versions = installed_versions(python)
    assert versions["torch"] == "2.5.1+cu124" and versions["fixture-lib"] == "1.1.0"


def test_one_run_is_not_called_run_1_of_2(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import json

    args = ("torch==2.5.1", "--installer", "pip", "--python", sys.executable, "--dry-run", *A100_ON_535)
    text = pip_gpu(*args, env=env, cwd=tmp_path).stdout
    assert "1 installer run;" in text or "1 installer run\n" in text
    assert "of 2" not in text and "# pip: the torch family from the variant index's files" in text
    plan = json.loads(pip_gpu(*args, "--json", env=env, cwd=tmp_path).stdout)
    (command,) = plan["commands"]
    assert "of 2" not in command["purpose"]


def test_dry_run_json_lists_the_pip_run_with_its_files(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import json

    args = ("torch==2.5.1", "fixture-lib", "--installer", "pip", "--python", sys.executable, *A100_ON_535)
    plan = json.loads(pip_gpu(*args, "--dry-run", "--json", env=env, cwd=tmp_path).stdout)
    (command,) = plan["commands"]
    requirements = command["files"]["$d/requirements.txt"]
    assert re.search(r"^torch @ .*/whl/cu124/torch-2\.5\.1", requirements, re.MULTILINE), requirements
    assert "fixture-lib" in requirements.splitlines()
    assert command["argv"][-2:] == ["-r", "$d/requirements.txt"]
    assert "pip dry run" in command["before"]
    assert not any("/pip-gpu-" in a for c in plan["commands"] for a in c["argv"])


# --- the machine's faults are not bad input (exit 74, EX_IOERR) ------------------------------


def test_a_scratch_folder_that_cannot_be_made_is_exit_74_and_installs_nothing(  # type: ignore[no-untyped-def]
    env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from pip_gpu.cli import main

    python = make_venv(tmp_path / "venv", with_pip=False)
    before = installed_versions(python)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # Every folder pip-gpu would make its private scratch folder in goes under a regular file:
    # the OS refuses (ENOTDIR), as it would a full or read-only disk. $XDG_RUNTIME_DIR/pip-gpu
    # and <cache>/pip-gpu/private are tried first (private.py), then TMPDIR, which is named.
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(blocker / "run"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "cache"))
    monkeypatch.setattr("tempfile.tempdir", str(blocker / "tmp"))
    status = main(["install", "torch==2.5.1", "--python", str(python), *A100_ON_535])
    monkeypatch.setattr("tempfile.tempdir", None)
    err = capsys.readouterr().err
    assert status == 74, err
    assert f"pip-gpu: error: cannot write pip-gpu's scratch folder ({blocker / 'tmp'}" in err
    assert "Not a directory" in err and "  hint: " in err and "Traceback" not in err
    assert installed_versions(python) == before


def test_a_build_that_did_not_land_is_a_failed_check_not_the_installers_status() -> None:
    from pip_gpu.errors import EXIT_CHECK_FAILED, BuildDidNotLand, InstallerFailed

    assert BuildDidNotLand("x").exit_code == EXIT_CHECK_FAILED == 1
    assert not issubclass(BuildDidNotLand, InstallerFailed)


def test_pip_on_a_mirror_without_pep658_metadata_downloads_every_file_once(  # type: ignore[no-untyped-def]
    env, tmp_path: Path, pip_venv_template: Path, index_server
) -> None:
    """A static mirror serves no ``.metadata``: choosing the family's files must read the
    wheels, and the install must not fetch any of them a second time: not torch, and not
    torch's dependencies, which the user's index serves byte for byte (issue 25)."""
    index_server.no_metadata = True
    python = fresh_pip_venv(pip_venv_template, tmp_path)
    (tmp_path / "tmp").mkdir()
    env = {**env, "TMPDIR": str(tmp_path / "tmp")}  # where the downloads go: on disk, not the private tmpfs
    done = pip_gpu("torch==2.5.1", "--installer", "pip", "--python", str(python), *A100_ON_535, env=env)
    assert done.returncode == 0, done.stderr
    assert installed_versions(python)["torch"] == "2.5.1+cu124"
    assert not list((tmp_path / "tmp").iterdir())  # and removed afterwards
    gets = [r.path for r in index_server.requests if r.method == "GET"]
    assert not [p for p in gets if p.endswith(".metadata")]  # the mirror really serves none
    wheels = [p.rsplit("/", 1)[-1] for p in gets if p.endswith(".whl")]
    assert (
        "torch-2.5.1+cu124-py3-none-any.whl" in wheels
        and "nvidia_cuda_runtime_cu12-12.4.127-py3-none-any.whl" in wheels
    )
    assert sorted(wheels) == sorted(set(wheels)), wheels  # each file once
    assert "verified: torch 2.5.1+cu124 (CUDA 12.4)" in done.stderr
    assert "WARNING" not in done.stderr
    assert (
        "pip-gpu: note: 9 files downloaded from the variant index are the very files your indexes serve"
        in (done.stderr)
    )
    # pip freeze names the variant index's file, not the deleted scratch copy it was installed from
    frozen = subprocess.run(
        [str(python), "-m", "pip", "freeze"], capture_output=True, text=True, check=True
    ).stdout
    torch_line = next(line for line in frozen.splitlines() if line.startswith("torch"))
    assert torch_line.startswith(
        f"torch @ {index_server.variant_url('cu124')}/torch-2.5.1%2Bcu124-py3-none-any.whl"
    )
    assert "file:" not in frozen
    checked = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout


def test_pip_on_a_static_mirror_downloads_again_what_the_users_indexes_serve_otherwise(  # type: ignore[no-untyped-def]
    env, tmp_path: Path, pip_venv_template: Path, index_server
) -> None:
    """A file the user's indexes do not serve byte for byte (another index lists other bytes
    under its name) comes from the user's indexes, as without pip-gpu: only the same bytes
    are taken from the variant index's download."""
    import hashlib
    import uuid
    import zipfile

    index_server.no_metadata = True
    name = "filelock-3.13.1-py3-none-any.whl"
    rebuilt = index_server.root / "pypi" / f"rebuilt-{uuid.uuid4().hex[:8]}"
    (rebuilt / "simple" / "filelock").mkdir(parents=True)
    original = index_server.root / "pypi" / "packages" / name
    with zipfile.ZipFile(original) as old, zipfile.ZipFile(rebuilt / name, "w") as new:
        for item in old.infolist():
            new.writestr(item, old.read(item))
        new.comment = b"rebuilt by another mirror"
    digest = hashlib.sha256((rebuilt / name).read_bytes()).hexdigest()
    url_path = f"/pypi/{rebuilt.name}/{name}"
    page = rebuilt / "simple" / "filelock"
    (page / "index.html").write_text(f'<a href="{url_path}#sha256={digest}">{name}</a>\n')
    listed = {"filename": name, "url": url_path, "hashes": {"sha256": digest}}
    (page / "index.json").write_text(
        json.dumps({"meta": {"api-version": "1.0"}, "name": "filelock", "files": [listed]})
    )
    extra = f"{index_server.base_url}/pypi/{rebuilt.name}/simple"
    python = fresh_pip_venv(pip_venv_template, tmp_path)
    done = pip_gpu(
        "torch==2.5.1",
        "--installer",
        "pip",
        "--extra-index-url",
        extra,
        "--python",
        str(python),
        *A100_ON_535,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    gets = [r.path for r in index_server.requests if r.method == "GET" and r.path.endswith(".whl")]
    filelock = [p for p in gets if p.endswith(name)]
    assert filelock[0] == f"/whl/{name}" and len(filelock) == 2, (
        filelock
    )  # the variant index's, then the user's
    assert filelock[1] in (f"/pypi/packages/{name}", url_path)
    others = [p.rsplit("/", 1)[-1] for p in gets if not p.endswith(name)]
    assert sorted(others) == sorted(set(others)), others  # the rest once
