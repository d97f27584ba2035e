"""Team lockfiles: ``pip-gpu lock``, ``sync`` and ``check`` with real uv and real pip.

Every run is isolated from this machine's pip/uv configuration: the only indexes are the
fixture's PyTorch-like ``/whl/<variant>`` (``--pytorch-index``) and its stand-in PyPI
(``UV_DEFAULT_INDEX`` / ``PIP_INDEX_URL``), which plants torch-family names at 99.0.0.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.pylock import Pylock
from support.index import (
    IndexServer,
    fixture_index_fixture,  # noqa: F401  (registers the fixture "fixture_index")
    installed_versions,
    make_venv,
    pip_env,
    run,
    uv_env,
)

from pip_gpu import lockfile
from pip_gpu.decide.plan import decide_for
from pip_gpu.host import HostProfile
from pip_gpu.knowledge import load_knowledge
from pip_gpu.lock import resolve as lock_module

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PLUGIN = Path(__file__).resolve().parents[1] / "plugin"
VARIANTS = ("cu121", "cu124", "cpu")
REQUIREMENTS_IN = "torch==2.5.1\ntorchvision\nfixture-app\n"
A100_ON_535 = ["--driver", "535.104.05", "--compute-capability", "8.0"]
OLD_DRIVER = ["--driver", "470.82.01", "--compute-capability", "8.0"]
SEED = {"pip", "setuptools", "wheel"}


# --- helpers ---------------------------------------------------------------------------------


def _env(index: IndexServer, cache: Path) -> dict[str, str]:
    """pip and uv both blind to this machine's configuration; PyPI is the fixture's."""
    env = {**pip_env(cache / "pip"), **uv_env(cache / "uv")}
    env["UV_DEFAULT_INDEX"] = index.pypi_url
    env["PIP_INDEX_URL"] = index.pypi_url
    env["PYTHONPATH"] = str(PLUGIN)
    return env


def _pip_gpu(
    args: list[str], env: dict[str, str], cwd: Path, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "pip_gpu", *args], env=env, cwd=cwd, check=check)


def _lock_args(index: IndexServer, *extra: str) -> list[str]:
    return [
        "lock",
        "-r",
        "requirements.in",
        "--variants",
        ",".join(VARIANTS),
        "--pytorch-index",
        index.pytorch_url,
        *extra,
    ]


def _read(path: Path) -> dict[str, object]:
    data: dict[str, object] = tomllib.loads(path.read_text(encoding="utf-8"))
    return data


def _locked_versions(path: Path) -> dict[str, str]:
    return {p["name"]: p["version"] for p in _read(path)["packages"]}  # type: ignore[attr-defined]


def _without_seed(versions: dict[str, str]) -> dict[str, str]:
    return {name: version for name, version in versions.items() if name not in SEED}


def _copy_project(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination)
    return destination


class Project:
    def __init__(self, directory: Path, env: dict[str, str], first_run: dict[str, bytes]) -> None:
        self.directory = directory
        self.env = env
        self.first_run = first_run


@pytest.fixture(scope="module")
def project(fixture_index: IndexServer, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A project locked once for cu121, cu124 and cpu; tests that change it work on a copy."""
    root = tmp_path_factory.mktemp("lock")
    directory = root / "project"
    directory.mkdir()
    (directory / "requirements.in").write_text(REQUIREMENTS_IN, encoding="utf-8")
    env = _env(fixture_index, root / "cache")
    _pip_gpu(_lock_args(fixture_index), env, directory)
    files = {v: (directory / f"pylock.{v}.toml").read_bytes() for v in VARIANTS}
    return Project(directory, env, files)


# --- lock ------------------------------------------------------------------------------------


def test_lock_writes_one_valid_pep751_file_per_variant(project: Project, fixture_index: IndexServer) -> None:
    for variant in VARIANTS:
        path = project.directory / f"pylock.{variant}.toml"
        data = _read(path)
        pylock = Pylock.from_dict(data)
        packages = {str(p.name): p for p in pylock.packages}
        assert str(packages["torch"].version) == f"2.5.1+{variant}"
        assert str(packages["torchvision"].version) == f"0.20.1+{variant}"
        assert packages["torch"].index == fixture_index.variant_url(variant)
        # the whole environment, each file with its sha256 and size, each package with its index
        assert {"fixture-app", "fixture-lib", "sympy", "filelock"} <= set(packages)
        for package in pylock.packages:
            assert package.index, package.name
            assert package.wheels
            for wheel in package.wheels:
                assert len(wheel.hashes["sha256"]) == 64 and wheel.size
        # only the torch family from the variant index; everything else from the user's index
        assert packages["filelock"].index == fixture_index.pypi_url
        assert packages["fixture-app"].index == fixture_index.pypi_url
        # the build's own family dependencies are routed too, and only where the build has them
        assert ("triton" in packages) == variant.startswith("cu")
        if "triton" in packages:
            assert packages["triton"].index == fixture_index.variant_url(variant)
        assert ("nvidia-cuda-runtime-cu12" in packages) == variant.startswith("cu")

        record = data["tool"]["pip-gpu"]  # type: ignore[index]
        assert record["variant"] == variant
        assert record["index"] == fixture_index.variant_url(variant)
        assert record["torch"] == "2.5.1" and record["torch-release"] == "2.5"
        assert record["pip-gpu-version"]
        assert record["inputs"]["files"] == {
            "requirements.in": ["torch==2.5.1", "torchvision", "fixture-app"]
        }
        # one target when none is named: this host and the target interpreter's Python
        this = f"linux-x86_64-{sys.version_info[0]}.{sys.version_info[1]}"
        assert record["inputs"]["targets"] == record["targets"] == [this]
        assert record["inputs-digest"].startswith("sha256:")
        if variant == "cpu":
            assert "cuda" not in record and "minimum-driver" not in record
        else:
            assert record["cuda"] == f"12.{variant[-1]}"
            assert record["minimum-driver"]["linux"] == "525.60.13"
            assert "8.0" in record["gpu-architectures"]["sass"]
    digests = {
        _read(project.directory / f"pylock.{v}.toml")["tool"]["pip-gpu"]["inputs-digest"] for v in VARIANTS
    }  # type: ignore[index]
    assert len(digests) == 1


def test_a_second_run_leaves_the_files_byte_identical(project: Project, fixture_index: IndexServer) -> None:
    result = _pip_gpu(_lock_args(fixture_index), project.env, project.directory)
    assert "unchanged pylock.cu124.toml" in result.stderr
    for variant in VARIANTS:
        assert (project.directory / f"pylock.{variant}.toml").read_bytes() == project.first_run[variant]


def test_a_variant_the_platform_lacks_is_refused_by_name(project: Project, tmp_path: Path) -> None:
    (tmp_path / "requirements.in").write_text(REQUIREMENTS_IN, encoding="utf-8")
    result = _pip_gpu(
        ["lock", "-r", "requirements.in", "--variants", "cu124,cu999", "--platform", "linux"],
        project.env,
        tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert "cu999" in result.stderr and "cu124 (" not in result.stderr
    assert not list(tmp_path.glob("pylock.*"))


def test_variants_all_is_every_build_the_release_publishes(tmp_path: Path) -> None:
    host = HostProfile(os="linux", arch="x86_64", python_version="3.11")
    plan = decide_for(["torch==2.5.1"], [], host, cwd=tmp_path)
    release = load_knowledge().release("2.5")
    assert release is not None
    expected = {b.variant for b in release.builds if b.platform == "linux-x86_64"}
    assert set(lock_module.published_variants(plan, host)) == expected
    assert {"cpu", "cu121", "cu124"} <= expected


def test_lock_on_the_nightly_channel_records_it_and_a_relock_keeps_it(
    project: Project, fixture_index: IndexServer, tmp_path: Path
) -> None:
    directory = tmp_path / "nightly"
    directory.mkdir()
    env = {**project.env, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    args = ["lock", "torch", "--no-gpu", "--pytorch-index", fixture_index.pytorch_url]
    _pip_gpu([*args, "--channel", "nightly"], env, directory)
    lock = directory / "pylock.cpu.toml"
    assert _locked_versions(lock)["torch"] == "2.16.0.dev20261207+cpu"
    assert f"{fixture_index.pytorch_url}/nightly" in lock.read_text(encoding="utf-8")
    written = lock.read_bytes()
    _pip_gpu(args, env, directory)  # a re-lock without --channel stays on the recorded channel
    assert lock.read_bytes() == written


def test_a_lock_with_lock_version_2_is_refused_in_one_line(project: Project, tmp_path: Path) -> None:
    text = project.first_run["cu124"].decode().replace('lock-version = "1.0"', 'lock-version = "2.0"')
    (tmp_path / "pylock.cu124.toml").write_text(text, encoding="utf-8")
    result = _pip_gpu(["check", *A100_ON_535], project.env, tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "pip-gpu: error: pylock.cu124.toml: lock-version 2.0 is not supported "
        "(pip-gpu reads PEP 751 lock-version 1.x)"
    ]


def test_an_invalid_lock_is_never_written(tmp_path: Path) -> None:
    path = tmp_path / "pylock.cu124.toml"
    path.write_text("old\n", encoding="utf-8")
    with pytest.raises(lockfile.UsageError, match="packages"):
        lockfile.write_lock(path, 'lock-version = "1.0"\ncreated-by = "pip-gpu"\n')
    assert path.read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["pylock.cu124.toml"]


def test_a_lock_read_back_in_the_same_process_is_the_text_on_disk(project: Project, tmp_path: Path) -> None:
    """Texts validated before writing are not parsed again when read back; a file changed
    since (the same process reading it again) is read as it now is, and refused when invalid."""
    path = tmp_path / "pylock.cu124.toml"
    text = project.first_run["cu124"].decode()
    assert lockfile.write_lock(path, text)
    read = lockfile.read_lock(path)
    assert read is not None and read.pylock == lockfile.validate_lock_text(text, "fresh")
    assert read.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    newer = text.replace('lock-version = "1.0"', 'lock-version = "2.0"')
    path.write_text(newer, encoding="utf-8")
    with pytest.raises(lockfile.UsageError, match=r"lock-version 2\.0 is not supported"):
        lockfile.read_lock(path)


# --- sync and check --------------------------------------------------------------------------


@pytest.mark.slow
def test_sync_with_pip_installs_the_cu124_set_and_check_enforces_it(
    project: Project, fixture_index: IndexServer, tmp_path: Path
) -> None:
    python = make_venv(tmp_path / "venv", with_pip=True)
    venv = ["--python", str(python)]
    result = _pip_gpu(["sync", "--installer", "pip", *venv, *A100_ON_535], project.env, project.directory)
    assert "this host runs cu124" in result.stderr
    wanted = _locked_versions(project.directory / "pylock.cu124.toml")
    assert _without_seed(installed_versions(python)) == wanted
    assert wanted["torch"] == "2.5.1+cu124"
    record = json.loads((tmp_path / "venv" / "pip-gpu-sync.json").read_text(encoding="utf-8"))
    assert record["lock-file"] == "pylock.cu124.toml" and record["variant"] == "cu124"
    assert record["lock-dir"] == str(project.directory.resolve())

    check = _pip_gpu(["check", *venv, *A100_ON_535], project.env, project.directory)
    assert "OK" in check.stdout and "torch 2.5.1+cu124" in check.stdout

    # someone swaps in the CPU build: check fails and says so
    run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--index-url",
            fixture_index.variant_url("cpu"),
            "torch==2.5.1+cpu",
        ],
        env=pip_env(tmp_path / "pip-cache"),
    )
    check = _pip_gpu(["check", *venv, *A100_ON_535], project.env, project.directory, check=False)
    assert check.returncode == 1
    assert (
        "torch 2.5.1+cpu is installed; the lock for this machine (pylock.cu124.toml) wants 2.5.1+cu124"
        in check.stdout
    )
    as_json = json.loads(
        _pip_gpu(["check", "--json", *venv, *A100_ON_535], project.env, project.directory, check=False).stdout
    )
    assert as_json["ok"] is False and as_json["lock"] == "pylock.cu124.toml"
    assert as_json["installed"]["torch"] == "2.5.1+cpu"

    # a host the lock cannot serve: check says why
    old = _pip_gpu(["check", *venv, *OLD_DRIVER], project.env, project.directory, check=False)
    assert old.returncode == 1
    assert "the lock pins cu124 but this driver (470.82.01) supports CUDA <= 11.4" in old.stdout

    # sync puts the locked build back and removes what the lock does not list
    run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--index-url",
            fixture_index.pypi_url,
            "fixture-vision-app",
        ],
        env=pip_env(tmp_path / "pip-cache"),
    )
    _pip_gpu(["sync", *venv, *A100_ON_535], project.env, project.directory)
    assert _without_seed(installed_versions(python)) == wanted
    _pip_gpu(["check", *venv, *A100_ON_535], project.env, project.directory)


@pytest.mark.slow
def test_sync_with_uv_and_a_host_no_locked_variant_runs_on(project: Project, tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv", with_pip=False)
    venv = ["--python", str(python)]
    _pip_gpu(["sync", "--installer", "uv", *venv, *A100_ON_535], project.env, project.directory)
    wanted = _locked_versions(project.directory / "pylock.cu124.toml")
    assert installed_versions(python) == wanted
    _pip_gpu(["check", *venv, *A100_ON_535], project.env, project.directory)
    record = (tmp_path / "venv" / "pip-gpu-sync.json").read_bytes()

    # driver 470 runs none of cu121, cu124 and (with an NVIDIA GPU) cpu: exit 2, nothing changes
    result = _pip_gpu(["sync", *venv, *OLD_DRIVER], project.env, project.directory, check=False)
    assert result.returncode == 2
    assert "no locked variant (cpu, cu121, cu124) runs on this host" in result.stderr
    assert "this driver (470.82.01) supports CUDA <= 11.4" in result.stderr
    assert "pip-gpu lock --variants cpu,cu118,cu121,cu124" in result.stderr
    assert installed_versions(python) == wanted
    assert (tmp_path / "venv" / "pip-gpu-sync.json").read_bytes() == record


@pytest.mark.slow
@pytest.mark.skipif(
    sys.version_info < (3, 10), reason="pip >= 26.1, which reads pylock files, needs Python >= 3.10"
)
def test_plain_pip_installs_the_same_set_from_the_lock(project: Project, tmp_path: Path) -> None:
    """pip >= 26.1 reads pylock.toml itself: no pip-gpu involved."""
    wheels = tmp_path / "wheels"
    fetched = subprocess.run(  # through this machine's own pip configuration (a mirror or PyPI)
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            str(wheels),
            "pip>=26.1",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    # PyPI is reachable wherever this suite runs (CI included): no wheel is a failure, not a skip.
    assert fetched.returncode == 0 and list(wheels.glob("pip-*.whl")), (
        f"could not fetch a pip >= 26.1 wheel: {fetched.stderr.strip()[-300:]}"
    )
    python = make_venv(tmp_path / "venv", with_pip=True)
    env = pip_env(tmp_path / "pip-cache")
    run([python, "-m", "pip", "install", "--quiet", next(wheels.glob("pip-*.whl"))], env=env)
    run([python, "-m", "pip", "install", "-r", project.directory / "pylock.cu124.toml"], env=env)
    assert _without_seed(installed_versions(python)) == _locked_versions(
        project.directory / "pylock.cu124.toml"
    )


@pytest.mark.slow
def test_a_stale_lock_is_reported_and_sync_locked_refuses_it(project: Project, tmp_path: Path) -> None:
    directory = _copy_project(project.directory, tmp_path / "project")
    (directory / "requirements.in").write_text(REQUIREMENTS_IN + "fixture-lib==1.0.0\n", encoding="utf-8")
    python = make_venv(tmp_path / "venv", with_pip=False)
    venv = ["--python", str(python)]
    result = _pip_gpu(["sync", "--locked", *venv, *A100_ON_535], project.env, directory, check=False)
    assert result.returncode == 2
    assert "pylock.cpu.toml is stale: requirements.in changed since it was locked" in result.stderr
    assert installed_versions(python) == {}
    check = _pip_gpu(["check", *venv, *A100_ON_535], project.env, directory, check=False)
    assert check.returncode == 1
    assert "stale" in check.stdout
    assert (
        "torch 2.5.1+cu124 is not installed; the lock for this machine (pylock.cu124.toml) wants it"
        in check.stdout
    )


@pytest.mark.slow
def test_install_in_a_locked_project_writes_the_decision_back(
    project: Project, fixture_index: IndexServer, tmp_path: Path
) -> None:
    directory = _copy_project(project.directory, tmp_path / "project")
    python = make_venv(tmp_path / "venv", with_pip=False)
    install = ["install", "fixture-lib==1.0.0", "--installer", "uv", "--python", str(python)]
    install += [*A100_ON_535, "--pytorch-index", fixture_index.pytorch_url]

    _pip_gpu([*install, "--no-lock"], project.env, directory)
    for variant in VARIANTS:
        assert (directory / f"pylock.{variant}.toml").read_bytes() == project.first_run[variant]

    result = _pip_gpu(install, project.env, directory)
    assert "re-locking" in result.stderr
    for variant in VARIANTS:
        path = directory / f"pylock.{variant}.toml"
        Pylock.from_dict(_read(path))
        assert _locked_versions(path)["fixture-lib"] == "1.0.0"
        assert _locked_versions(path)["torch"] == f"2.5.1+{variant}"
        record = _read(path)["tool"]["pip-gpu"]  # type: ignore[index]
        assert record["inputs"]["requirements"] == ["fixture-lib==1.0.0"]
    # the re-resolved family matches its inputs: sync --locked accepts it
    _pip_gpu(["sync", "--locked", "--python", str(python), *A100_ON_535], project.env, directory)
    assert installed_versions(python)["fixture-lib"] == "1.0.0"
