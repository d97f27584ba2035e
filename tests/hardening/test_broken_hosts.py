"""Broken hosts: a failing or hanging NVIDIA driver, a hanging or babbling ``nvidia-smi``,
unreadable sysfs/procfs, a read-only environment, a full disk, and indexes that hang, fail or
cut pages short. Each: a clear message, a bounded wait, and the target environment and the
lock files exactly as they were.

Unreadable files and read-only folders are real: the commands run in a user namespace
(``unshare -r``) where files owned by an unmapped user are out of reach even for "root", and a
read-only bind mount (``unshare -rm``) makes a folder really read-only.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.cli import PLUGIN, assert_one_line_error, pip_gpu, tree_snapshot
from support.fake_nvml import A100
from support.index import IndexServer, installed_versions, pip_env, uv_env
from support.locks import THIS_PYTHON

from pip_gpu import lockfile
from pip_gpu.cli import main
from pip_gpu.decide import index as index_module

A100_ON_535 = ["--driver", "535.104.05", "--compute-capability", "8.0"]


def _userns_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    done = subprocess.run(["unshare", "-rm", "true"], capture_output=True, check=False)
    return done.returncode == 0


needs_userns = pytest.mark.skipif(not _userns_works(), reason="needs unshare -rm (user namespaces)")


def _out_of_reach(path: Path) -> None:
    """Owned by a user the namespace does not map, mode 000: unreadable inside ``unshare -r``."""
    os.chown(path, 54321, 54321, follow_symlinks=False)
    path.chmod(0)


# --- NVML ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "code"),
    [
        ({"init_error": 9}, "nvml-driver-not-loaded"),
        ({"init_error": 18}, "nvml-driver-mismatch"),
        ({"init_error": 4}, "nvml-no-permission"),
        ({"init_error": 999}, "nvml-error"),
        ({"hang": "init"}, "nvml-timeout"),
    ],
)
def test_nvml_failures_are_named_and_bounded(host_env, profile: dict[str, object], code: str) -> None:  # type: ignore[no-untyped-def]
    env = host_env(gpus=[A100], **profile)
    started = time.monotonic()
    done = pip_gpu("detect", "--json", env=env, timeout=20)
    assert time.monotonic() - started < 10
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert [p["code"] for p in json.loads(done.stdout)["problems"]] == [code]
    # deciding on such a host: never a silent CPU build, and never a traceback
    explained = pip_gpu("explain", "torch==2.5.1", env=env, timeout=20)
    assert "Traceback" not in explained.stderr and explained.returncode in (0, 2)


# --- nvidia-smi ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "code"),
    [
        ("exec sleep 60", "nvidia-smi-timeout"),
        ("echo 'GPU 0: ???, ???, ???'; echo '\x00\xff garbage'", "nvidia-smi-garbled"),
    ],
)
def test_a_hanging_or_babbling_nvidia_smi(  # type: ignore[no-untyped-def]
    host_env, no_nvml_dir: Path, tmp_path: Path, script: str, code: str
) -> None:
    env = host_env()
    env["LD_LIBRARY_PATH"] = str(no_nvml_dir)  # no NVML, but the kernel module is loaded:
    version = Path(env["PIP_GPU_PROCFS_ROOT"]) / "driver" / "nvidia" / "version"
    version.parent.mkdir(parents=True)
    version.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15\n")
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "nvidia-smi").write_text(f"#!/bin/sh\n{script}\n")
    (tools / "nvidia-smi").chmod(0o755)
    env["PATH"] = f"{tools}:/usr/bin:/bin"
    for command in (["detect", "--json"], ["explain", "torch==2.5.1", "--json"]):
        started = time.monotonic()
        done = pip_gpu(*command, env=env, timeout=30)
        assert time.monotonic() - started < 15, "nvidia-smi was waited for too long"
        assert "Traceback" not in done.stderr, done.stderr
        report = json.loads(done.stdout)
        problems = report["problems"] if command[0] == "detect" else report["host"]["problems"]
        assert code in [p["code"] for p in problems], problems


# --- sysfs and procfs ------------------------------------------------------------------------


@needs_userns
def test_unreadable_sysfs_and_procfs(host_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = host_env(gpus=[A100])
    sys_root, proc_root = Path(env["PIP_GPU_SYSFS_ROOT"]), Path(env["PIP_GPU_PROCFS_ROOT"])
    node = sys_root / "class" / "kfd" / "kfd" / "topology" / "nodes" / "1"
    node.mkdir(parents=True)
    (node / "properties").write_text("gfx_target_version 90402\nsimd_count 1216\n")
    pci = sys_root / "bus" / "pci" / "devices" / "0000:03:00.0"
    pci.mkdir(parents=True)
    for name, value in (("vendor", "0x8086"), ("device", "0x56a0"), ("class", "0x030000")):
        (pci / name).write_text(value + "\n")
    version = proc_root / "driver" / "nvidia" / "version"
    version.parent.mkdir(parents=True)
    version.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15\n")
    for path in (node / "properties", pci / "device", version, proc_root / "driver" / "nvidia", pci):
        _out_of_reach(path)
    done = subprocess.run(
        ["unshare", "-r", sys.executable, "-m", "pip_gpu", "detect", "--json"],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    host = json.loads(done.stdout)
    assert host["driver_version"] == "535.104.05"  # NVML still answers
    assert host["amd_gpus"] == [] and host["intel_gpus"] == []


# --- a read-only target environment ----------------------------------------------------------


@needs_userns
@pytest.mark.slow
def test_a_read_only_environment_is_left_as_it_was(
    fixture_index: IndexServer, tmp_path: Path, installer_venv: tuple[str, Path]
) -> None:
    installer, python = installer_venv
    before = installed_versions(python), tree_snapshot(tmp_path / "venv")
    env = {**pip_env(), **uv_env(tmp_path / "uv-cache"), "PYTHONPATH": str(PLUGIN)}
    env.update(PIP_INDEX_URL=fixture_index.pypi_url, UV_DEFAULT_INDEX=fixture_index.pypi_url)
    venv = tmp_path / "venv"
    command = (
        f"mount --bind -o ro {venv} {venv} && exec {sys.executable} -m pip_gpu install torch==2.5.1 "
        f"--python {python} --installer {installer} --pytorch-index {fixture_index.pytorch_url} "
        + " ".join(A100_ON_535)
    )
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", command],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "Read-only file system" in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"pip-gpu: error: {installer}")
    assert "the installer exited with status" in done.stderr and "Traceback" not in done.stderr
    assert (installed_versions(python), tree_snapshot(venv)) == before


# --- pip-gpu's private scratch folder cannot be made -----------------------------------------

# The shim as its shell script runs it: the shim's name, the real program, the user's arguments.
_SHIM = ["-c", "import sys; from pip_gpu.shim.run import main; sys.exit(main(sys.argv[1:]))", "uv", "{uv}"]


@needs_userns
@pytest.mark.parametrize(
    ("step", "args", "root"),
    [
        ("lock", ["lock", "torch==2.5.1", "--variants", "cpu"], "XDG_RUNTIME_DIR"),
        ("resolution", ["explain", "torch", "fixture-app"], "XDG_RUNTIME_DIR"),
        ("install", ["install", "torch==2.5.1", "--python", "{python}"], "XDG_RUNTIME_DIR"),
        ("install", ["install", "torch==2.5.1", "--python", "{python}"], "XDG_CACHE_HOME"),
        ("shim closure", [*_SHIM, "pip", "install", "fixture-app", "--python={python}"], "XDG_RUNTIME_DIR"),
        ("shim stdin", [*_SHIM, "pip", "install", "-r", "-", "--python", "{python}"], "XDG_RUNTIME_DIR"),
    ],
)
def test_a_private_folder_that_takes_no_file_is_exit_74_from_every_step(
    step: str, args: list[str], root: str, env: dict[str, str], venv: Path, tmp_path: Path
) -> None:
    """Every step that makes pip-gpu's private scratch folder (lock, the resolution of what the
    other requirements need, install, the shim's look at the closure and at standard input)
    fails as install does: one line, a hint naming the variable that put the folder on that
    read-only filesystem (a full or read-only tmpfs at $XDG_RUNTIME_DIR), exit 74."""
    from support.index import uv_bin

    if root == "XDG_RUNTIME_DIR":
        env["XDG_RUNTIME_DIR"] = str(tmp_path / "run")
        folder = tmp_path / "run" / "pip-gpu"
    else:
        env.pop("XDG_RUNTIME_DIR", None)
        folder = Path(env["XDG_CACHE_HOME"]) / "pip-gpu" / "private"
    folder.mkdir(parents=True, mode=0o700)
    python = venv / "bin" / "python"
    argv = [sys.executable, *(a.format(python=python, uv=uv_bin()) for a in args)]
    if argv[1] != "-c":
        argv[1:1] = ["-m", "pip_gpu"]
    command = f"mount --bind -o ro {folder} {folder} && exec {shlex.join(argv)}"
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", command],
        env=env, input="torch==2.5.1\n", capture_output=True, text=True, timeout=120, check=False,
        cwd=tmp_path,
    )  # fmt: skip
    assert_one_line_error(done, f"cannot write pip-gpu's scratch folder ({folder}/", status=74)
    assert "Read-only file system" in done.stderr and f"point {root} at a folder" in done.stderr, step
    assert "TMPDIR" not in done.stderr and not (tmp_path / "pylock.cpu.toml").exists()


# --- a full disk while writing a lock --------------------------------------------------------


@pytest.mark.slow
def test_a_full_disk_while_writing_locks_leaves_the_old_files(
    fixture_index: IndexServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "requirements.in").write_text("torch==2.5.1\n")
    for name in list(os.environ):
        if name.startswith(("PIP_", "UV_")):
            monkeypatch.delenv(name)
    for name, value in uv_env(tmp_path / "uv-cache").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("UV_DEFAULT_INDEX", fixture_index.pypi_url)
    monkeypatch.chdir(tmp_path)
    args = ["lock", "-r", "requirements.in", "--variants", "cpu,cu124", "--python-version", THIS_PYTHON]
    args += ["--pytorch-index", fixture_index.pytorch_url]
    assert main(args) == 0
    old = tree_snapshot(tmp_path)
    (tmp_path / "requirements.in").write_text("torch==2.5.1\nfixture-lib==1.0.0\n")
    writes: list[int] = []

    def no_space(fd: int) -> None:
        writes.append(fd)
        if len(writes) == 2:  # the first file fits, the second does not
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(lockfile.os, "fsync", no_space)
    status = main(args)
    assert status == 74 and len(writes) == 2  # EX_IOERR: the machine's fault, not bad input
    new = tree_snapshot(tmp_path)
    assert {k: v for k, v in new.items() if k != "requirements.in"} == {
        k: v for k, v in old.items() if k != "requirements.in"
    }  # every lock as it was, and no temporary file left behind


def test_a_full_disk_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "pip-gpu-sync.json"
    path.write_text("old\n")

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(lockfile.os, "fsync", no_space)
    with pytest.raises(lockfile.PipGpuError) as caught:
        lockfile.write_atomically(path, b"new\n")
    assert caught.value.message == f"cannot write {path}: No space left on device"
    assert caught.value.exit_code == 74
    assert "pip-gpu-sync.json is unchanged" in caught.value.hint
    assert [p.name for p in tmp_path.iterdir()] == ["pip-gpu-sync.json"] and path.read_text() == "old\n"


# --- indexes that fail -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "needle"),
    [
        ("hang", "did not answer within 1 s"),
        (500, "answered HTTP 500"),
        (404, "no torch release pip-gpu knows satisfies torch==2.6.0"),
        ("truncate", "truncated"),
    ],
)
def test_an_index_pip_gpu_reads_fails_clearly_and_soon(  # type: ignore[no-untyped-def]
    old_knowledge: Path, tmp_path: Path, index_server, failure: object, needle: str
) -> None:
    env = {**pip_env(), "PYTHONPATH": str(PLUGIN), "PIP_GPU_KNOWLEDGE": str(old_knowledge)}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), PIP_GPU_INDEX_TIMEOUT="1")
    index_server.fail("/whl/", failure, hang_s=20)
    started = time.monotonic()
    done = pip_gpu(
        "explain", "torch==2.6.0", "--pytorch-index", index_server.pytorch_url, "--no-gpu", env=env
    )
    assert time.monotonic() - started < 10
    if failure == 404:  # an index without the project: nothing learned, the usual answer
        # (a release that does not exist is bad input: one error line on stderr, issue 16)
        assert_one_line_error(done, needle)
    else:
        assert_one_line_error(done, index_server.pytorch_url, needle)


def test_a_truncated_html_page_is_refused(index_server: IndexServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "ACCEPT", "text/html")
    assert index_module.fetch_project_files(index_server.variant_url("cpu") + "/torch/")  # the page
    index_server.fail("/whl/cpu/torch/", "truncate")
    with pytest.raises(index_module.IndexError_, match="truncated"):
        index_module.fetch_project_files(index_server.variant_url("cpu") + "/torch/", timeout=5)


@pytest.mark.slow
def test_a_lock_against_a_failing_index_writes_nothing(
    fixture_index: IndexServer, index_server: IndexServer, tmp_path: Path
) -> None:
    (tmp_path / "requirements.in").write_text("torch==2.5.1\n")
    env = {**pip_env(), **uv_env(tmp_path / "uv-cache"), "PYTHONPATH": str(PLUGIN)}
    env["UV_DEFAULT_INDEX"] = fixture_index.pypi_url
    args = [
        "lock",
        "-r",
        "requirements.in",
        "--variants",
        "cpu",
        "--pytorch-index",
        fixture_index.pytorch_url,
    ]
    assert pip_gpu(*args, env=env, cwd=tmp_path).returncode == 0
    before = tree_snapshot(tmp_path)
    (tmp_path / "requirements.in").write_text("torch==2.5.1\nfixture-app\n")
    before["requirements.in"] = b"torch==2.5.1\nfixture-app\n"
    index_server.fail("/pypi/", 500)
    done = pip_gpu(*args, env={**env, "UV_NO_CACHE": "1"}, cwd=tmp_path, timeout=120)
    assert done.returncode == 2 and "could not lock" in done.stderr and "Traceback" not in done.stderr
    assert "nothing was written" in done.stderr
    assert tree_snapshot(tmp_path) == before


@pytest.mark.slow
def test_an_install_from_a_failing_index_changes_nothing(  # type: ignore[no-untyped-def]
    index_server, tmp_path: Path, installer_venv: tuple[str, Path]
) -> None:
    installer, python = installer_venv
    before = installed_versions(python), tree_snapshot(tmp_path / "venv")
    env = {**pip_env(), **uv_env(tmp_path / "uv-cache"), "PYTHONPATH": str(PLUGIN)}
    env.update(PIP_INDEX_URL=index_server.pypi_url, UV_DEFAULT_INDEX=index_server.pypi_url)
    index_server.fail("/whl/cu124/torch-", "truncate")  # the wheel itself is cut short
    done = pip_gpu(
        "install", "torch==2.5.1", "--python", str(python), "--installer", installer,
        "--pytorch-index", index_server.pytorch_url, *A100_ON_535, env=env, timeout=180,
    )  # fmt: skip
    assert done.returncode != 0 and "the installer exited with status" in done.stderr, done.stderr
    assert (installed_versions(python), tree_snapshot(tmp_path / "venv")) == before
