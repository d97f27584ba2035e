"""Two kinds of target detection: a Jetson (Tegra) board, and a free-threaded Python.

Jetson boards are faked as files under the overridable roots (``PIP_GPU_ROOT`` for
``/etc/nv_tegra_release``, ``PIP_GPU_PROCFS_ROOT``/``PIP_GPU_SYSFS_ROOT`` for the device tree),
with the strings real L4T releases write there. No free-threaded CPython is installed on the
machines these tests run on, so one is stood in for by the real interpreter started through a
wrapper that makes ``sysconfig`` report ``Py_GIL_DISABLED = 1``, which is all the probe reads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support.fake_nvml import FakeGpu

from pip_gpu.detect import HostOverrides, detect_host
from pip_gpu.detect.platform import current_python_version
from pip_gpu.detect.target import probe
from pip_gpu.detect.tegra import find_tegra
from pip_gpu.knowledge import load_knowledge

PLUGIN = Path(__file__).resolve().parents[1] / "plugin"
L4T_RELEASE = (
    "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8\n"
)
ORIN_COMPATIBLE = b"nvidia,p3768-0000+p3767-0005\0nvidia,p3767-0005\0nvidia,tegra234\0"
GRACE_COMPATIBLE = b"nvidia,grace\0arm,sbsa\0"


def roots(tmp_path: Path) -> tuple[Path, Path, Path]:
    root, proc, sys_root = tmp_path / "fs", tmp_path / "proc", tmp_path / "sys"
    for folder in (root, proc, sys_root):
        folder.mkdir(parents=True, exist_ok=True)
    return root, proc, sys_root


def test_l4t_release_file_names_the_board(tmp_path: Path) -> None:
    root, proc, sys_root = roots(tmp_path)
    (root / "etc").mkdir()
    (root / "etc" / "nv_tegra_release").write_text(L4T_RELEASE)
    assert find_tegra(root, proc, sys_root) == f"{root}/etc/nv_tegra_release: R36 (release), REVISION: 4.3"


def test_device_tree_compatible_strings(tmp_path: Path) -> None:
    root, proc, sys_root = roots(tmp_path)
    tree = sys_root / "firmware" / "devicetree" / "base"
    tree.mkdir(parents=True)
    (tree / "compatible").write_bytes(GRACE_COMPATIBLE)
    assert find_tegra(root, proc, sys_root) is None  # a Grace server is SBSA, not Tegra
    (tree / "compatible").write_bytes(ORIN_COMPATIBLE)
    assert find_tegra(root, proc, sys_root) == f"{tree}/compatible: nvidia,tegra234"


def test_detected_only_on_linux_aarch64(tmp_path: Path) -> None:
    root, proc, sys_root = roots(tmp_path)
    (root / "etc").mkdir()
    (root / "etc" / "nv_tegra_release").write_text(L4T_RELEASE)
    env = {"PIP_GPU_ROOT": str(root), "PIP_GPU_PROCFS_ROOT": str(proc), "PIP_GPU_SYSFS_ROOT": str(sys_root)}
    knowledge = load_knowledge()
    board = detect_host(knowledge, HostOverrides(arch="aarch64"), env)
    assert board.tegra is not None and "R36" in board.tegra
    assert board.sources["tegra"] == board.tegra
    assert detect_host(knowledge, HostOverrides(arch="x86_64"), env).tegra is None


def test_explain_on_a_jetson_refuses_the_server_arm_wheels(tmp_path: Path) -> None:
    root, proc, sys_root = roots(tmp_path)
    tree = proc / "device-tree"
    tree.mkdir()
    (tree / "compatible").write_bytes(ORIN_COMPATIBLE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_GPU_")}
    env.update(
        PYTHONPATH=str(PLUGIN),
        PIP_GPU_ROOT=str(root),
        PIP_GPU_PROCFS_ROOT=str(proc),
        PIP_GPU_SYSFS_ROOT=str(sys_root),
        PIP_GPU_OFFLINE="1",
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip_gpu",
            "explain",
            "torch",
            "--arch",
            "aarch64",
            "--python-version",
            "3.10",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    first = done.stdout.splitlines()[0]
    assert first.startswith("No build runs: this is a Jetson (Tegra) board (")
    assert "nvidia,tegra234" in first
    assert "NVIDIA's Jetson wheels" in done.stdout
    cpu = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip_gpu",
            "explain",
            "torch",
            "--arch",
            "aarch64",
            "--variant",
            "cpu",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert json.loads(cpu.stdout)["variant"] == "cpu"
    detect = subprocess.run(
        [sys.executable, "-m", "pip_gpu", "detect", "--arch", "aarch64"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert f"Jetson     a Tegra (L4T) board: {tree}/compatible: nvidia,tegra234" in detect.stdout


THOR_L4T_RELEASE = "# R38 (release), REVISION: 2.0, GCID: 41844464, BOARD: generic, EABI: aarch64\n"


def test_explain_on_a_jetson_thor_with_driver_580_00_decides_a_cuda_13_build(
    tmp_path: Path, host_env: Callable[..., dict[str, str]]
) -> None:
    """JetPack 7's driver reports 580.00; CUDA 13.x needs the R580 branch, not 580.65.06 (AUDIT-2026-12)."""
    thor = FakeGpu("NVIDIA Thor", "11.0", 125772, "GPU-7e1d0c2b-3a4f-4b5c-8d6e-9f0a1b2c3d4e")
    env = host_env(driver="580.00", cuda=13000, gpus=[thor])
    root = tmp_path / "fs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "nv_tegra_release").write_text(THOR_L4T_RELEASE)
    env.update(PIP_GPU_ROOT=str(root), PIP_GPU_OFFLINE="1", XDG_CACHE_HOME=str(tmp_path / "cache"))
    argv = [sys.executable, "-m", "pip_gpu", "explain", "torch", "--arch", "aarch64"]
    argv += ["--python-version", "3.12"]
    done = subprocess.run([*argv, "--json"], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    decision = json.loads(done.stdout)
    assert decision["variant"].startswith("cu13"), decision
    assert decision["host"]["tegra"] and "R38" in decision["host"]["tegra"]
    assert decision["host"]["nvidia_gpus"][0]["name"] == "NVIDIA Thor"
    chosen = next(c for c in decision["candidates"] if c["ok"] and c["variant"] == decision["variant"])
    assert "driver 580.00 >= 580 (CUDA 13." in chosen["reason"]
    older = subprocess.run(
        [*argv, "--driver", "575.57.08", "--compute-capability", "11.0"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert older.returncode == 2 and "older than 580, the minimum for CUDA 13." in older.stdout + older.stderr
    older_torch = [*argv[:4], "torch==2.8.0", *argv[5:]]
    without_sm110 = subprocess.run(older_torch, env=env, capture_output=True, text=True)
    assert without_sm110.returncode == 2
    assert "Jetson" in without_sm110.stdout and "sbsa/cu130" in without_sm110.stdout  # Thor's index


# --- free-threaded Pythons -----------------------------------------------------------------


def free_threaded_python(folder: Path) -> Path:
    """This interpreter, reporting Py_GIL_DISABLED = 1 to whatever code it is given with -c."""
    prelude = (
        "import sys, sysconfig; real = sysconfig.get_config_var; "
        "sysconfig.get_config_var = lambda name: 1 if name == 'Py_GIL_DISABLED' else real(name); "
        "code = sys.argv[1]; sys.argv = ['-c']; exec(code)"
    )
    script = folder / "python3.11t"
    script.write_text(f'#!/bin/sh\n# "$1" is -I, "$2" is -c\nexec {sys.executable} -I -c "{prelude}" "$3"\n')
    script.chmod(0o755)
    return script


def test_target_probe_reports_a_free_threaded_interpreter(tmp_path: Path) -> None:
    assert probe(Path(sys.executable), "--python").python_version == f"3.{sys.version_info[1]}"
    target = probe(free_threaded_python(tmp_path), "--python")
    assert target.python_version == f"3.{sys.version_info[1]}t"


def test_running_interpreter_free_threaded(monkeypatch: pytest.MonkeyPatch) -> None:
    import sysconfig

    assert not current_python_version().endswith("t")
    sysconfig.get_config_vars()  # read (and kept) before the ABI flags are changed under it
    monkeypatch.setattr(sys, "abiflags", "t", raising=False)  # POSIX: the ABI flags say it
    assert current_python_version() == f"3.{sys.version_info[1]}t"
    # Windows has no sys.abiflags: the build's configuration says it
    monkeypatch.delattr(sys, "abiflags")
    assert current_python_version() == f"3.{sys.version_info[1]}"
    real = sysconfig.get_config_var
    monkeypatch.setattr(
        sysconfig, "get_config_var", lambda name: 1 if name == "Py_GIL_DISABLED" else real(name)
    )
    assert current_python_version() == f"3.{sys.version_info[1]}t"


def test_python_version_flag_takes_the_free_threaded_spelling(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(PLUGIN), "PIP_GPU_OFFLINE": "1"}
    base = [
        sys.executable,
        "-m",
        "pip_gpu",
        "explain",
        "torch",
        "--driver",
        "580.65.06",
        "--compute-capability",
        "9.0",
    ]
    done = subprocess.run(
        [*base, "--python-version", "3.14t", "--json"], env=env, capture_output=True, text=True
    )
    decision = json.loads(done.stdout)
    assert (decision["torch"], decision["variant"]) == ("2.15", "cu132")
    bad = subprocess.run([*base, "--python-version", "3.14x"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr == (
        "pip-gpu: error: '3.14x' is not a Python version\n"
        "  hint: write it as 3.11, or 3.14t for a free-threaded Python\n"
    )
