"""Lock for the team: one ``pylock.<variant>.toml`` per variant covering every platform,
architecture and Python the team uses, chosen by the host at ``sync``, kept across re-locks.

Real uv resolves each target against the fixture indexes (whose torch builds also carry
``win_amd64`` CPython wheels, as download.pytorch.org's do); real uv and pip install.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.pylock import Pylock
from support import index as support_index
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
from pip_gpu.knowledge import load_knowledge

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PLUGIN = Path(__file__).resolve().parents[1] / "plugin"
A100_ON_535 = ["--driver", "535.104.05", "--compute-capability", "8.0"]
THIS_PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
FOUR_TARGETS = ["linux-x86_64-3.10", "linux-x86_64-3.11", "windows-x86_64-3.10", "windows-x86_64-3.11"]
FAMILY = [m.name for m in load_knowledge().family]


def _env(index: IndexServer, cache: Path) -> dict[str, str]:
    env = {**pip_env(cache / "pip"), **uv_env(cache / "uv")}
    env["UV_DEFAULT_INDEX"] = index.pypi_url
    env["PIP_INDEX_URL"] = index.pypi_url
    env["PYTHONPATH"] = str(PLUGIN)
    return env


def _pip_gpu(
    args: list[str], env: dict[str, str], cwd: Path, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "pip_gpu", *args], env=env, cwd=cwd, check=check)


def _lock(path: Path) -> lockfile.LockFile:
    lock = lockfile.read_lock(path)
    assert lock is not None
    return lock


def _versions(path: Path, name: str) -> dict[str, str]:
    """marker (or "") -> version of every entry of ``name`` in the lock."""
    return {str(p.marker or ""): str(p.version) for p in _lock(path).pylock.packages if p.name == name}


def _project(root: Path, requirements: str) -> Path:
    directory = root / "project"
    directory.mkdir(parents=True)
    (directory / "requirements.in").write_text(requirements, encoding="utf-8")
    return directory


def _team_lock(index: IndexServer, root: Path, pythons: tuple[str, ...]) -> tuple[Path, dict[str, str]]:
    """cu124 and cpu, Linux and Windows, for ``pythons``: the issue's team lock."""
    directory = _project(root, "torch==2.5.1\ntorchvision\nfixture-app\n")
    env = _env(index, root / "cache")
    versions = [arg for python in pythons for arg in ("--python-version", python)]
    done = _pip_gpu(
        ["lock", "-r", "requirements.in", "--variants", "cu124,cpu", "--platform", "linux",
         "--platform", "windows", *versions, "--pytorch-index", index.pytorch_url],
        env,
        directory,
    )  # fmt: skip
    assert "wrote pylock.cu124.toml" in done.stderr and "wrote pylock.cpu.toml" in done.stderr
    return directory, env


@pytest.fixture(scope="module")
def team(fixture_index: IndexServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The issue's team lock: cu124 and cpu, Linux and Windows, Python 3.10 and 3.11."""
    return _team_lock(fixture_index, tmp_path_factory.mktemp("team"), ("3.10", "3.11"))


@pytest.fixture(scope="module")
def team_here(
    team: tuple[Path, dict[str, str]], fixture_index: IndexServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, str]]:
    """The team lock, with this interpreter's Python among its targets (so sync runs here on
    any Python the suite runs on; the fixture index has Windows wheels for 3.9 to 3.12)."""
    if THIS_PYTHON in ("3.10", "3.11"):
        return team
    return _team_lock(fixture_index, tmp_path_factory.mktemp("team-here"), (THIS_PYTHON, "3.11"))


# --- lock: one file per variant, every target ------------------------------------------------


def test_each_variant_file_covers_the_four_targets(team: tuple[Path, dict[str, str]]) -> None:
    directory, _ = team
    assert sorted(p.name for p in directory.glob("pylock.*.toml")) == ["pylock.cpu.toml", "pylock.cu124.toml"]
    for variant in ("cu124", "cpu"):
        path = directory / f"pylock.{variant}.toml"
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        pylock = Pylock.from_dict(data)  # the standard's own validation
        lock = _lock(path)
        assert [t.tag for t in lock.record.covered] == FOUR_TARGETS
        assert [t.tag for t in lock.record.inputs.targets] == FOUR_TARGETS
        assert not lock.record.not_covered
        assert [str(m) for m in pylock.environments or ()] == [
            'sys_platform == "linux" and platform_machine == "x86_64" and python_version == "3.10"',
            'sys_platform == "linux" and platform_machine == "x86_64" and python_version == "3.11"',
            'sys_platform == "win32" and platform_machine == "AMD64" and python_version == "3.10"',
            'sys_platform == "win32" and platform_machine == "AMD64" and python_version == "3.11"',
        ]
        # the hardening checks sync applies hold for the merged file too
        assert lockfile.lock_problems(pylock.packages, lock.record, FAMILY) == []
        # torch: one entry for every target, its wheels the union of what each target uses
        (torch,) = [p for p in pylock.packages if p.name == "torch"]
        assert torch.marker is None and str(torch.version) == f"2.5.1+{variant}"
        assert sorted(w.name or "" for w in torch.wheels or ()) == [
            f"torch-2.5.1+{variant}-cp310-cp310-win_amd64.whl",
            f"torch-2.5.1+{variant}-cp311-cp311-win_amd64.whl",
            f"torch-2.5.1+{variant}-py3-none-any.whl",
        ]


def test_a_package_only_some_targets_need_carries_a_marker(team: tuple[Path, dict[str, str]]) -> None:
    """The CUDA build needs triton and the CUDA runtime on Linux x86_64 only."""
    directory, _ = team
    linux = "sys_platform == 'linux' and platform_machine == 'x86_64'"
    for name in ("triton", "nvidia-cuda-runtime-cu12"):
        (entry,) = [p for p in _lock(directory / "pylock.cu124.toml").pylock.packages if p.name == name]
        assert entry.marker is not None
        assert entry.marker.evaluate(
            {"sys_platform": "linux", "platform_machine": "x86_64", "python_version": "3.10"}
        )
        assert not entry.marker.evaluate(
            {"sys_platform": "win32", "platform_machine": "AMD64", "python_version": "3.11"}
        )
        assert linux in str(_lock(directory / "pylock.cu124.toml").path.read_text(encoding="utf-8"))
    assert "triton" not in {p.name for p in _lock(directory / "pylock.cpu.toml").pylock.packages}


def test_sync_installs_cu124_on_this_linux_host(
    team_here: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    directory, env = team_here
    python = make_venv(tmp_path / "venv", with_pip=False)
    done = _pip_gpu(["sync", "--python", str(python), *A100_ON_535], env, directory)
    assert "this host runs cu124" in done.stderr
    versions = installed_versions(python)
    assert versions["torch"] == "2.5.1+cu124" and versions["triton"] == "3.1.0"
    assert _pip_gpu(["check", "--python", str(python), *A100_ON_535], env, directory).returncode == 0


def test_pip_sync_installs_the_wheel_and_markers_for_this_host(
    team_here: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """pip's path picks the wheel that fits here (not a win_amd64 one) and applies the markers."""
    directory, env = team_here
    python = make_venv(tmp_path / "venv", with_pip=True)
    done = _pip_gpu(["sync", "--installer", "pip", "--python", str(python), "--no-gpu"], env, directory)
    assert "this host runs cpu" in done.stderr
    versions = installed_versions(python)
    assert versions["torch"] == "2.5.1+cpu" and "triton" not in versions


def test_sync_refuses_a_family_that_does_not_cover_this_host(
    team: tuple[Path, dict[str, str]], fixture_index: IndexServer, tmp_path: Path
) -> None:
    directory, env = team
    other = "3.10" if THIS_PYTHON != "3.10" else "3.11"
    copy = tmp_path / "project"
    (copy).mkdir()
    shutil.copy(directory / "requirements.in", copy / "requirements.in")
    _pip_gpu(
        [
            "lock",
            "-r",
            "requirements.in",
            "--variants",
            "cu124",
            "--platform",
            "linux,windows",
            "--python-version",
            other,
            "--pytorch-index",
            fixture_index.pytorch_url,
        ],
        env,
        copy,
    )
    python = make_venv(tmp_path / "venv", with_pip=False)
    before = installed_versions(python)
    done = _pip_gpu(["sync", "--python", str(python), *A100_ON_535], env, copy, check=False)
    assert done.returncode == 2, done.stderr
    assert (
        f"cover linux-x86_64-{other}, windows-x86_64-{other}, not this host (linux-x86_64-{THIS_PYTHON})"
        in (done.stderr)
    )
    versions = sorted({other, THIS_PYTHON})
    assert (
        "hint: add it: pip-gpu lock --platform linux --platform windows "
        + " ".join(f"--python-version {v}" for v in versions)
    ) in done.stderr
    assert "Traceback" not in done.stderr
    assert installed_versions(python) == before
    checked = _pip_gpu(["check", "--python", str(python), *A100_ON_535], env, copy, check=False)
    assert checked.returncode == 1 and f"not this host (linux-x86_64-{THIS_PYTHON})" in checked.stdout


def test_targets_a_variant_is_not_published_for_are_named(fixture_index: IndexServer, tmp_path: Path) -> None:
    directory = _project(tmp_path, "torch==2.5.1\nfixture-app\n")
    env = _env(fixture_index, tmp_path / "cache")
    done = _pip_gpu(
        [
            "lock",
            "--variants",
            "cu124",
            "-r",
            "requirements.in",
            "--platform",
            "linux,macos",
            "--python-version",
            "3.11",
            "--pytorch-index",
            fixture_index.pytorch_url,
        ],
        env,
        directory,
    )
    assert "pylock.cu124.toml does not cover macos-arm64-3.11: " in done.stderr
    lock = _lock(directory / "pylock.cu124.toml")
    assert [t.tag for t in lock.record.covered] == ["linux-x86_64-3.11"]
    ((target, why),) = lock.record.not_covered
    assert target.tag == "macos-arm64-3.11" and "no cu124 build for macos-arm64" in why
    # a variant that covers none of the targets is refused, nothing written
    refused = _pip_gpu(
        ["lock", "--variants", "cu124", "--platform", "macos", "--pytorch-index", fixture_index.pytorch_url],
        env,
        directory,
        check=False,
    )
    assert refused.returncode == 2 and "cannot lock for macos-arm64-3.11" in refused.stderr
    assert _lock(directory / "pylock.cu124.toml").record == lock.record


# --- different versions per target, [tool.pip-gpu] targets, and stable re-locks ---------------


def test_project_targets_and_a_version_per_python(fixture_index: IndexServer, tmp_path: Path) -> None:
    """numpy 2.1.2 needs Python >= 3.10: the 3.9 target locks 1.26.4, each under its marker."""
    directory = _project(tmp_path, "torch==2.5.1\nnumpy\n")
    (directory / "pyproject.toml").write_text(
        '[tool.pip-gpu]\ntargets = ["linux-x86_64-3.9", "linux-x86_64-3.11"]\n', encoding="utf-8"
    )
    env = _env(fixture_index, tmp_path / "cache")
    args = [
        "lock",
        "-r",
        "requirements.in",
        "--variants",
        "cpu",
        "--pytorch-index",
        fixture_index.pytorch_url,
    ]
    _pip_gpu(args, env, directory)
    path = directory / "pylock.cpu.toml"
    assert _versions(path, "numpy") == {
        'python_version == "3.9"': "1.26.4",
        'python_version == "3.11"': "2.1.2",
    }
    lock = _lock(path)
    assert [t.tag for t in lock.record.covered] == ["linux-x86_64-3.11", "linux-x86_64-3.9"]
    assert lockfile.lock_problems(lock.pylock.packages, lock.record, FAMILY) == []
    # a re-lock keeps each target's version (the lock is filtered per target for uv)
    again = _pip_gpu(["lock"], env, directory)
    assert "unchanged pylock.cpu.toml" in again.stderr
    # a malformed target is one error line
    (directory / "pyproject.toml").write_text('[tool.pip-gpu]\ntargets = ["linux-3.11"]\n', encoding="utf-8")
    bad = _pip_gpu(["lock"], env, directory, check=False)
    assert bad.returncode == 2 and "'linux-3.11' is not a target" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.fixture
def growing_index(tmp_path: Path) -> Iterator[tuple[IndexServer, object]]:
    """A private index whose stand-in PyPI can gain a newer numpy while it is served."""
    module = support_index.pytorch_index
    root = tmp_path / "index"
    tree = module.build_index(root)
    with module.serve(root, tree=tree) as server:
        yield server, module


def _add_numpy(module: object, root: Path, version: str, monkeypatch: pytest.MonkeyPatch) -> None:
    original = module._pypi_dists  # type: ignore[attr-defined]

    def with_newer() -> list[object]:
        newer = module._Dist("numpy", version, module._module("numpy", version), (), ">=3.10")  # type: ignore[attr-defined]
        return [*original(), newer]

    monkeypatch.setattr(module, "_pypi_dists", with_newer)
    module.build_index(root)  # type: ignore[attr-defined]


def test_relock_keeps_versions_until_upgrade(
    growing_index: tuple[IndexServer, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, module = growing_index
    directory = _project(tmp_path, "torch==2.5.1\nnumpy\nfixture-app\n")
    env = _env(server, tmp_path / "cache")
    _pip_gpu(
        [
            "lock",
            "-r",
            "requirements.in",
            "--variants",
            "cu124,cpu",
            "--python-version",
            "3.10,3.11",
            "--pytorch-index",
            server.pytorch_url,
        ],
        env,
        directory,
    )
    paths = [directory / "pylock.cu124.toml", directory / "pylock.cpu.toml"]
    for path in paths:
        assert _versions(path, "numpy") == {"": "2.1.2"}
    locked = {path: path.read_bytes() for path in paths}

    _add_numpy(module, server.root, "2.2.0", monkeypatch)  # a newer numpy appears on PyPI
    again = _pip_gpu(["lock"], env, directory)
    assert {path: path.read_bytes() for path in paths} == locked, again.stderr

    moved = _pip_gpu(["lock", "--upgrade-package", "numpy"], env, directory)
    assert "wrote pylock.cu124.toml" in moved.stderr
    for path in paths:
        assert _versions(path, "numpy") == {"": "2.2.0"}
        assert _versions(path, "torch") == {"": f"2.5.1+{_lock(path).variant}"}

    for path, data in locked.items():  # back to the old locks: --upgrade moves everything
        path.write_bytes(data)
    _pip_gpu(["lock", "--upgrade"], env, directory)
    for path in paths:
        assert _versions(path, "numpy") == {"": "2.2.0"}


def test_the_inputs_digest_covers_targets_and_index() -> None:
    linux = lockfile.LockTarget.parse("linux-x86_64-3.11")
    base = lockfile.LockInputs(
        requirements=("torch",), files=(), targets=(linux,), pytorch_index="https://download.pytorch.org/whl"
    )
    other_python = lockfile.LockInputs(
        requirements=("torch",),
        files=(),
        targets=(lockfile.LockTarget.parse("linux-x86_64-3.10"),),
        pytorch_index="https://download.pytorch.org/whl",
    )
    other_index = lockfile.LockInputs(
        requirements=("torch",), files=(), targets=(linux,), pytorch_index="https://mirror.example/whl"
    )
    more_requirements = lockfile.LockInputs(
        requirements=("torch", "numpy"),
        files=(),
        targets=(linux,),
        pytorch_index="https://download.pytorch.org/whl",
    )
    digests = {i.digest() for i in (base, other_python, other_index, more_requirements)}
    assert len(digests) == 4


# --- single-value flags are never silently overridden ----------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["sync", "--platform", "linux", "--platform", "windows"],
        ["explain", "--python-version", "3.10", "--python-version", "3.11"],
        ["explain", "--driver", "535.104.05", "--driver", "550.54.14"],
        ["install", "torch", "--variant", "cu124", "--variant", "cpu", "--dry-run"],
    ],
)
def test_repeated_single_value_flags_are_refused(argv: list[str], tmp_path: Path) -> None:
    done = run(
        [sys.executable, "-m", "pip_gpu", *argv],
        env={**pip_env(), "PYTHONPATH": str(PLUGIN)},
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 2
    assert "given twice" in done.stderr and "Traceback" not in done.stderr


def test_lock_refuses_an_unknown_platform_in_a_list(tmp_path: Path) -> None:
    done = run(
        [sys.executable, "-m", "pip_gpu", "lock", "torch", "--platform", "linux,solaris"],
        env={**pip_env(), "PYTHONPATH": str(PLUGIN)},
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 2 and "invalid choice: 'solaris'" in done.stderr
