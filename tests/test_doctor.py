"""``pip-gpu doctor`` names the broken link and its fix, for each way a GPU setup breaks.

Real virtual environments hold synthetic torch builds from the fixture index (installed by
plain pip), the real nvidia-ml-py binding loads the fake ``libnvidia-ml.so.1`` with a
profile per scenario, and ``/dev``, ``/proc``, ``/sys`` and ``/`` are fake trees. Each
scenario runs ``python -m pip_gpu doctor --json`` in a subprocess, as a user would, and
checks the verdict line: the cause, then ``Fix:`` and the command.

Not covered here (no GPU on the machines these tests run on): ``doctor --import`` against a
real torch on a real GPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest
from support.fake_nvml import (
    A100,
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_LIB_RM_VERSION_MISMATCH,
    NVML_ERROR_NO_PERMISSION,
    FakeGpu,
    nvml_env,
    write_nvml_profile,
)
from support.index import IndexServer, make_venv, pip_env, run, site_packages, uv_bin

import pip_gpu
from pip_gpu.detect.target import probe
from pip_gpu.doctor import DoctorOptions, doctor
from pip_gpu.doctor.checks import Finding, check_torch, diagnose
from pip_gpu.doctor.facts import Facts, cuda_runtime_dirs, gather_lock, gather_machine, gather_target
from pip_gpu.host import HostFlags, HostProfile, NvidiaGpu
from pip_gpu.knowledge import load_knowledge

RTX_5090 = FakeGpu("NVIDIA GeForce RTX 5090", "12.0", 32607, "GPU-5a09e1c2-3b4d-4e5f-8a6b-7c8d9e0f1a2b")
TESLA_K80 = FakeGpu("Tesla K80", "3.7", 11441, "GPU-0c3f2a1b-9e8d-4c7b-a6f5-e4d3c2b1a098")
KERNEL_MODULE_VERSION = (
    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n"
    "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
)
PLUGIN = Path(pip_gpu.__file__).parents[1]  # the directory that puts this checkout's pip_gpu first
ISSUE_VERDICT = (
    "torch 2.5.1+cpu is a CPU-only build; this machine has 1 NVIDIA GPU (NVIDIA A100-SXM4-80GB, "
    "driver 535.104.05). Fix: pip-gpu install --force-reinstall torch==2.5.1"
)


# --- environments, built once for the module ----------------------------------------------


@dataclass(frozen=True)
class Envs:
    cu124: Path  # torch 2.5.1+cu124, torchvision 0.20.1+cu124: the healthy GPU setup
    cpu: Path  # torch 2.5.1+cpu
    mixed: Path  # torch 2.5.1+cu124, torchvision 0.20.1+cpu
    unpaired: Path  # torch 2.5.1+cu124, torchvision 0.19.1+cu124 (belongs to torch 2.4)
    empty: Path  # no torch at all
    broken: Path  # torch 2.5.1+cu124 whose import fails as a missing libcudart does
    stray_cpu: Path  # a directory holding torch 2.5.1+cpu (for PYTHONPATH)
    stray_cu124: Path  # a directory holding torch 2.5.1+cu124 (for a system Python)


def _pip_install(server: IndexServer, variant: str, specs: Sequence[str], *, python: Path) -> None:
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps"]
    run([*pip, "--index-url", server.variant_url(variant), *specs], env=pip_env())


def _pip_target(server: IndexServer, variant: str, spec: str, directory: Path) -> Path:
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(directory)]
    run([*pip, "--index-url", server.variant_url(variant), spec], env=pip_env())
    return directory


@pytest.fixture(scope="module")
def envs(fixture_index: IndexServer, tmp_path_factory: pytest.TempPathFactory) -> Envs:
    root = tmp_path_factory.mktemp("doctor-envs")

    def venv(name: str) -> Path:
        return make_venv(root / name, with_pip=False)

    cu124, cpu, mixed, unpaired, empty, broken = (
        venv(n) for n in ("cu124", "cpu", "mixed", "unpaired", "empty", "broken")
    )
    _pip_install(
        fixture_index,
        "cu124",
        ["torch==2.5.1+cu124", "torchvision==0.20.1+cu124", "triton==3.1.0"],
        python=cu124,
    )
    _pip_install(fixture_index, "cpu", ["torch==2.5.1+cpu"], python=cpu)
    _pip_install(fixture_index, "cu124", ["torch==2.5.1+cu124"], python=mixed)
    _pip_install(fixture_index, "cpu", ["torchvision==0.20.1+cpu"], python=mixed)
    _pip_install(fixture_index, "cu124", ["torch==2.5.1+cu124", "torchvision==0.19.1+cu124"], python=unpaired)
    shutil.copytree(site_packages(cu124), site_packages(broken), dirs_exist_ok=True)
    _as_built(
        site_packages(broken),
        "torch/__init__.py",
        b'raise OSError("libcudart.so.12: cannot open shared object file: No such file or directory")\n',
    )
    return Envs(
        cu124=cu124,
        cpu=cpu,
        mixed=mixed,
        unpaired=unpaired,
        empty=empty,
        broken=broken,
        stray_cpu=_pip_target(fixture_index, "cpu", "torch==2.5.1+cpu", root / "stray-cpu"),
        stray_cu124=_pip_target(fixture_index, "cu124", "torch==2.5.1+cu124", root / "stray-cu124"),
    )


# --- a fake machine ------------------------------------------------------------------------


def fake_machine(
    root: Path,
    *,
    nodes: Sequence[str] = ("nvidia0", "nvidiactl", "nvidia-uvm"),
    modules: Sequence[str] = ("nvidia_uvm", "nvidia_drm", "nvidia"),
    proc_version: str = "Linux version 6.1.0-18-amd64 (debian-kernel@lists.debian.org)",
    nvidia_proc_version: Optional[str] = KERNEL_MODULE_VERSION,
    dockerenv: bool = False,
    wsl_libcuda: bool = False,
    nvidia_pci_driver: Optional[str] = "nvidia",
) -> dict[str, str]:
    """Fake /dev, /proc, /sys and / trees; returns the PIP_GPU_* variables pointing at them."""
    dev, proc, sys_root, fs = root / "dev", root / "proc", root / "sys", root / "fs"
    for folder in (dev, proc / "1", sys_root, fs):
        folder.mkdir(parents=True, exist_ok=True)
    for node in nodes:
        (dev / node).write_text("")
    (proc / "modules").write_text(
        "".join(f"{m} 1234 0 - Live 0x0000000000000000\n" for m in ("ext4", *modules))
    )
    (proc / "version").write_text(proc_version + "\n")
    (proc / "1" / "cgroup").write_text("0::/\n")
    if nvidia_proc_version is not None:
        (proc / "driver" / "nvidia").mkdir(parents=True, exist_ok=True)
        (proc / "driver" / "nvidia" / "version").write_text(nvidia_proc_version)
    if nvidia_pci_driver is not None:
        device = sys_root / "bus" / "pci" / "devices" / "0000:01:00.0"
        device.mkdir(parents=True, exist_ok=True)
        (device / "vendor").write_text("0x10de\n")
        (device / "class").write_text("0x030200\n")
        (device / "device").write_text("0x20b2\n")
        driver = sys_root / "bus" / "pci" / "drivers" / nvidia_pci_driver
        driver.mkdir(parents=True, exist_ok=True)
        if not (device / "driver").is_symlink():
            (device / "driver").symlink_to(driver)
    if dockerenv:
        (fs / ".dockerenv").write_text("")
    if wsl_libcuda:
        (fs / "usr" / "lib" / "wsl" / "lib").mkdir(parents=True, exist_ok=True)
        (fs / "usr" / "lib" / "wsl" / "lib" / "libcuda.so").write_text("")
    return {
        "PIP_GPU_DEV_ROOT": str(dev),
        "PIP_GPU_PROCFS_ROOT": str(proc),
        "PIP_GPU_SYSFS_ROOT": str(sys_root),
        "PIP_GPU_ROOT": str(fs),
    }


_SCRUBBED = (
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "LD_LIBRARY_PATH",
    "PYTHONPATH",
    "PIP_GPU_DRIVER",
    "PIP_GPU_COMPUTE_CAPABILITY",
    "PIP_GPU_NO_GPU",
)


@dataclass(frozen=True)
class Outcome:
    rc: int
    data: dict[str, Any]
    stdout: str
    stderr: str = ""

    @property
    def verdict(self) -> str:
        return str(self.data["verdict"])

    def status(self, check: str) -> str:
        return next(str(f["status"]) for f in self.data["findings"] if f["check"] == check)

    def finding(self, check: str) -> dict[str, Any]:
        return next(f for f in self.data["findings"] if f["check"] == check)


def doctor_run(
    tmp_path: Path,
    nvml_dir: Path,
    *,
    python: Optional[Path] = None,
    venv: Optional[Path] = None,
    gpus: Sequence[FakeGpu] = (A100,),
    driver: str = "535.104.05",
    cuda: int = 12020,
    init_error: Optional[int] = None,
    machine: Optional[Mapping[str, str]] = None,
    env: Optional[Mapping[str, str]] = None,
    args: Sequence[str] = (),
    as_json: bool = True,
) -> Outcome:
    """``python -m pip_gpu doctor`` against the fake NVML (``nvml_dir``) and a fake machine."""
    base = {k: v for k, v in pip_env().items() if k not in _SCRUBBED and not k.startswith("PIP_GPU_")}
    base["PYTHONNOUSERSITE"] = "1"
    base.update(machine if machine is not None else fake_machine(tmp_path / "machine"))
    if venv is not None:
        base["VIRTUAL_ENV"] = str(venv.parent.parent)
    profile = write_nvml_profile(
        tmp_path / "nvml.txt", driver=driver, cuda=cuda, gpus=gpus, init_error=init_error
    )
    full = nvml_env(nvml_dir, profile, base=base)
    for key, value in (env or {}).items():
        if key in ("PYTHONPATH", "LD_LIBRARY_PATH"):
            full[key] = full[key] + os.pathsep + value
        else:
            full[key] = value
    argv = [sys.executable, "-m", "pip_gpu", "doctor", *args]
    if python is not None:
        argv += ["--python", str(python)]
    if as_json:
        argv.append("--json")
    done = subprocess.run(argv, env=full, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    data = json.loads(done.stdout) if as_json else {}
    return Outcome(done.returncode, data, done.stdout, done.stderr)


# --- healthy -------------------------------------------------------------------------------


def test_healthy_gpu_setup_is_reported_healthy(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    out = doctor_run(tmp_path, fake_nvml_dir, python=envs.cu124)
    assert out.rc == 0
    assert out.verdict == (
        "healthy: torch 2.5.1+cu124 runs on this machine's 1 NVIDIA GPU "
        "(NVIDIA A100-SXM4-80GB, driver 535.104.05)"
    )
    assert out.data["healthy"] is True
    assert {f["check"]: f["status"] for f in out.data["findings"]} == {
        "torch-copies": "ok",
        "torch": "ok",
        "family": "ok",
        "driver": "ok",
        "gpu-arch": "ok",
        "nvml": "ok",
        "cuda-visible-devices": "ok",
        "container": "ok",
        "wsl": "ok",
        "ld-library-path": "ok",
        "virtualenv": "ok",
        "lock": "ok",
        "shims": "ok",
        "cuda-build": "ok",
    }
    assert "driver 535.104.05 >= 525.60.13" in out.finding("driver")["summary"]
    assert "covers NVIDIA A100-SXM4-80GB" in out.finding("gpu-arch")["summary"]


def test_healthy_cpu_machine_with_a_cpu_build(envs: Envs, no_nvml_dir: Path, tmp_path: Path) -> None:
    machine = fake_machine(
        tmp_path / "m", nodes=(), modules=(), nvidia_proc_version=None, nvidia_pci_driver=None
    )
    out = doctor_run(tmp_path, no_nvml_dir, python=envs.cpu, gpus=(), machine=machine)
    assert out.rc == 0
    assert out.verdict == "healthy: torch 2.5.1+cpu, and this machine has no NVIDIA GPU"
    assert out.status("nvml") == "ok"
    assert out.status("driver") == "skipped"


def test_text_report_puts_the_verdict_first(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    out = doctor_run(tmp_path, fake_nvml_dir, python=envs.cu124, as_json=False)
    lines = out.stdout.splitlines()
    assert out.rc == 0
    assert lines[0].startswith("healthy: torch 2.5.1+cu124 runs")
    assert any(line.split()[:2] == ["ok", "gpu-arch"] for line in lines)


# --- the twelve broken setups of the issue, and their relatives ---------------------------


def test_cpu_build_on_a_gpu_host(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    out = doctor_run(tmp_path, fake_nvml_dir, venv=envs.cpu)  # chosen through VIRTUAL_ENV
    assert out.rc == 1
    assert out.verdict == ISSUE_VERDICT
    assert "the cu124 build of torch 2.5.1 runs here" in out.finding("torch")["evidence"]


def test_mixed_family_variants(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    out = doctor_run(tmp_path, fake_nvml_dir, python=envs.mixed)
    assert out.rc == 1
    assert out.verdict.startswith(
        "mixed torch family variants: torchvision 0.20.1+cpu is cpu, but torch 2.5.1+cu124 is cu124. Fix: "
    )
    assert out.verdict.endswith(
        f"pip-gpu install --python {envs.mixed} --force-reinstall torch==2.5.1 torchvision==0.20.1"
    )


def test_family_releases_that_do_not_belong_together(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    out = doctor_run(tmp_path, fake_nvml_dir, python=envs.unpaired)
    assert out.rc == 1
    assert "torchvision 0.19.1+cu124" in out.verdict
    assert "torch 2.5 needs torchvision 0.20.x" in out.verdict
    assert out.verdict.endswith("--force-reinstall torch==2.5.1 'torchvision==0.20.*'")


def test_driver_too_old_for_the_build(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    out = doctor_run(tmp_path, fake_nvml_dir, python=envs.cu124, driver="470.82.01", cuda=11040)
    assert out.rc == 1
    assert out.verdict == (
        "torch 2.5.1+cu124 needs NVIDIA driver >= 525.60.13 (CUDA 12.4 on linux); this driver is "
        "470.82.01 (CUDA <= 11.4). Fix: upgrade the NVIDIA driver to >= 525.60.13, or install the cu118 "
        f"build, which runs on this driver: pip-gpu install --python {envs.cu124} --force-reinstall "
        "torch==2.5.1 torchvision==0.20.1"
    )
    assert "the cu118 build of torch 2.5.1 runs here" in out.finding("driver")["evidence"]


def test_gpu_too_new_for_the_build(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    out = doctor_run(
        tmp_path, fake_nvml_dir, python=envs.cu124, gpus=(RTX_5090,), driver="570.86.10", cuda=12080
    )
    assert out.rc == 1
    assert out.verdict.startswith(
        "NVIDIA GeForce RTX 5090 (sm_120) is too new for torch 2.5.1+cu124, which carries sm_50 sm_60 "
        "sm_70 sm_75 sm_80 sm_86 sm_90, no PTX; no build of torch 2.5.1 runs here; the "
    )
    assert ". Fix: pip-gpu install" in out.verdict
    # No build of 2.5 has sm_120: the fix moves to the newest release with one that runs here.
    assert "--force-reinstall 'torch==2." in out.verdict
    assert "'torchvision==0." in out.verdict
    assert out.status("driver") == "ok"


def test_gpu_too_old_for_the_build(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    out = doctor_run(tmp_path, fake_nvml_dir, python=envs.cu124, gpus=(TESLA_K80,))
    assert out.rc == 1
    assert out.verdict.startswith("Tesla K80 (sm_37) is too old for torch 2.5.1+cu124")
    assert out.verdict.endswith(
        f"Fix: pip-gpu install --python {envs.cu124} --force-reinstall torch==2.5.1 torchvision==0.20.1"
    )
    assert "the cu118 build of torch 2.5.1 runs here" in out.finding("gpu-arch")["evidence"]


def test_nvml_driver_library_mismatch(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    out = doctor_run(
        tmp_path, fake_nvml_dir, python=envs.cu124, init_error=NVML_ERROR_LIB_RM_VERSION_MISMATCH
    )
    assert out.rc == 1
    assert out.verdict == (
        "NVIDIA driver/library version mismatch (the loaded kernel module is 535.104.05): the driver was "
        "upgraded without a reboot. Fix: sudo reboot  (or unload and reload the nvidia kernel modules)"
    )
    assert out.status("torch") == "warning"  # a CUDA build, but the GPUs cannot be read


def test_nouveau_loaded_instead_of_nvidia(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    machine = fake_machine(
        tmp_path / "m",
        nodes=(),
        modules=("nouveau", "drm_kms_helper"),
        nvidia_proc_version=None,
        nvidia_pci_driver="nouveau",
    )
    out = doctor_run(
        tmp_path, fake_nvml_dir, python=envs.cu124, init_error=NVML_ERROR_DRIVER_NOT_LOADED, machine=machine
    )
    assert out.rc == 1
    assert out.verdict == (
        "the open-source nouveau driver is loaded instead of nvidia, so CUDA cannot run. Fix: "
        "echo 'blacklist nouveau' | sudo tee /etc/modprobe.d/blacklist-nouveau.conf && "
        "sudo update-initramfs -u && sudo reboot"
    )
    assert any("driver=nouveau" in line for line in out.finding("nvml")["evidence"])


def test_nouveau_without_the_nvidia_driver(envs: Envs, no_nvml_dir: Path, tmp_path: Path) -> None:
    machine = fake_machine(
        tmp_path / "m", nodes=(), modules=("nouveau",), nvidia_proc_version=None, nvidia_pci_driver="nouveau"
    )
    out = doctor_run(tmp_path, no_nvml_dir, python=envs.cpu, gpus=(), machine=machine)
    assert out.rc == 1
    assert out.verdict.startswith("the open-source nouveau driver is loaded instead of nvidia")
    assert "Fix: install the NVIDIA driver" in out.verdict


def test_gpu_on_the_bus_without_any_driver(envs: Envs, no_nvml_dir: Path, tmp_path: Path) -> None:
    machine = fake_machine(
        tmp_path / "m", nodes=(), modules=(), nvidia_proc_version=None, nvidia_pci_driver="none"
    )
    out = doctor_run(tmp_path, no_nvml_dir, python=envs.cu124, gpus=(), machine=machine)
    assert out.rc == 1
    assert out.verdict.startswith(
        "an NVIDIA GPU is on the PCI bus (0000:01:00.0 [10de:20b2] driver=none) "
        "but no NVIDIA driver is installed"
    )


def test_driver_not_loaded(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    machine = fake_machine(tmp_path / "m", nodes=(), modules=(), nvidia_proc_version=None)
    out = doctor_run(
        tmp_path, fake_nvml_dir, python=envs.cu124, init_error=NVML_ERROR_DRIVER_NOT_LOADED, machine=machine
    )
    assert out.verdict == (
        "the NVIDIA driver is installed but its kernel module is not loaded. Fix: sudo modprobe nvidia"
    )


def test_no_permission_on_the_device_nodes(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    out = doctor_run(tmp_path, fake_nvml_dir, python=envs.cu124, init_error=NVML_ERROR_NO_PERMISSION)
    assert out.rc == 1
    assert out.verdict.startswith("no permission to use the NVIDIA device nodes. Fix: ")
    assert "nvidia0" in out.verdict or "usermod" in out.verdict


def test_cuda_visible_devices_hides_every_gpu(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    out = doctor_run(tmp_path, fake_nvml_dir, python=envs.cu124, env={"CUDA_VISIBLE_DEVICES": ""})
    assert out.rc == 1
    assert out.verdict == (
        "CUDA_VISIBLE_DEVICES='' hides every GPU: torch sees 0 of 1. Fix: unset CUDA_VISIBLE_DEVICES"
    )


def test_cuda_visible_devices_names_a_gpu_that_does_not_exist(
    envs: Envs, fake_nvml_dir: Path, tmp_path: Path
) -> None:
    out = doctor_run(tmp_path, fake_nvml_dir, python=envs.cu124, env={"CUDA_VISIBLE_DEVICES": "3"})
    assert out.rc == 1
    assert out.verdict == (
        "CUDA_VISIBLE_DEVICES='3' names GPU 3, which does not exist here (GPUs 0): torch sees none. "
        "Fix: export CUDA_VISIBLE_DEVICES=0"
    )
    partly = doctor_run(
        tmp_path, fake_nvml_dir, python=envs.cu124, gpus=(A100, A100), env={"CUDA_VISIBLE_DEVICES": "0,7,1"}
    )
    assert partly.rc == 0
    assert partly.status("cuda-visible-devices") == "warning"
    assert partly.finding("cuda-visible-devices")["fix"] == "export CUDA_VISIBLE_DEVICES=0"


def test_container_without_gpu_devices(envs: Envs, no_nvml_dir: Path, tmp_path: Path) -> None:
    machine = fake_machine(
        tmp_path / "m", nodes=(), modules=(), nvidia_proc_version=None, nvidia_pci_driver=None, dockerenv=True
    )
    out = doctor_run(
        tmp_path,
        no_nvml_dir,
        python=envs.cu124,
        gpus=(),
        machine=machine,
        env={"NVIDIA_VISIBLE_DEVICES": "all"},
    )
    assert out.rc == 1
    assert out.verdict.startswith(
        "running in a container without /dev/nvidia* although NVIDIA_VISIBLE_DEVICES=all: the GPUs were not "
        "passed in (NVIDIA Container Toolkit not set up, or the container not started with GPUs). "
        "Fix: docker run --gpus all"
    )
    assert out.status("nvml") == "skipped"


def test_container_without_devices_on_a_gpu_host(envs: Envs, no_nvml_dir: Path, tmp_path: Path) -> None:
    # No NVIDIA_VISIBLE_DEVICES, but sysfs shows the host's GPU on the PCI bus.
    machine = fake_machine(tmp_path / "m", nodes=(), modules=(), nvidia_proc_version=None, dockerenv=True)
    out = doctor_run(tmp_path, no_nvml_dir, python=envs.cu124, gpus=(), machine=machine)
    assert out.rc == 1
    assert out.verdict.startswith(
        "running in a container without /dev/nvidia* although the host has an NVIDIA GPU "
        "(0000:01:00.0 [10de:20b2] driver=nvidia)"
    )
    cpu_only = fake_machine(
        tmp_path / "c", nodes=(), modules=(), nvidia_proc_version=None, nvidia_pci_driver=None, dockerenv=True
    )
    quiet = doctor_run(tmp_path, no_nvml_dir, python=envs.cu124, gpus=(), machine=cpu_only)
    # A CUDA build in a CPU-only container runs, but on the CPU: not what pip-gpu installs for
    # this host (check and sync would choose the cpu build), so not "healthy" (issue 16).
    assert quiet.rc == 1 and "will run on the CPU" in quiet.verdict and "healthy" not in quiet.verdict
    assert quiet.status("container") == "warning"


def test_a_container_whose_gpus_nvml_reads_is_healthy_without_a_cpu_warning(
    envs: Envs, fake_nvml_dir: Path, tmp_path: Path
) -> None:
    # issue 25: NVML read the A100 in a container where doctor saw no /dev/nvidia*, and the verdict
    # was "healthy: ... (1 warning: in a container without GPUs: ... will run on the CPU)". NVML
    # reaches the GPUs through the driver's device nodes, as CUDA does: the GPUs were passed in.
    machine = fake_machine(tmp_path / "m", nodes=(), nvidia_pci_driver=None, dockerenv=True)
    out = doctor_run(tmp_path, fake_nvml_dir, python=envs.cu124, machine=machine)
    gpus = "1 NVIDIA GPU (NVIDIA A100-SXM4-80GB, driver 535.104.05)"
    assert (out.rc, out.verdict) == (0, f"healthy: torch 2.5.1+cu124 runs on this machine's {gpus}")
    container = out.finding("container")
    assert container["summary"] == f"in a container, and nvml reads {gpus}: the GPUs were passed in"
    assert "CPU" not in out.stdout


def test_container_with_gpu_devices_passes(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    machine = fake_machine(tmp_path / "m", dockerenv=True)
    out = doctor_run(
        tmp_path, fake_nvml_dir, python=envs.cu124, machine=machine, env={"NVIDIA_VISIBLE_DEVICES": "all"}
    )
    assert out.rc == 0
    assert out.finding("container")["summary"] == "in a container with 3 /dev/nvidia* nodes"


def test_toolkit_libcudart_first_on_ld_library_path(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    toolkit = tmp_path / "usr" / "local" / "cuda-11.8" / "lib64"
    toolkit.mkdir(parents=True)
    for name in ("libcudart.so", "libcudart.so.11.0", "libcudart.so.11.8.89"):
        (toolkit / name).write_text("")
    out = doctor_run(tmp_path, fake_nvml_dir, python=envs.cu124, env={"LD_LIBRARY_PATH": str(toolkit)})
    assert out.rc == 1
    assert out.verdict == (
        f"LD_LIBRARY_PATH puts {toolkit} (libcudart 11.8, an old CUDA toolkit) in front of the CUDA 12.4 "
        f"runtime that torch 2.5.1+cu124 bundles. Fix: export LD_LIBRARY_PATH={fake_nvml_dir}"
    )


def test_newer_toolkit_on_ld_library_path_is_a_warning(
    envs: Envs, fake_nvml_dir: Path, tmp_path: Path
) -> None:
    toolkit = tmp_path / "cuda-12.6" / "lib64"
    toolkit.mkdir(parents=True)
    (toolkit / "libcudart.so.12").write_text("")
    out = doctor_run(tmp_path, fake_nvml_dir, python=envs.cu124, env={"LD_LIBRARY_PATH": str(toolkit)})
    assert out.rc == 0
    assert out.status("ld-library-path") == "warning"
    assert out.verdict.startswith("healthy: torch 2.5.1+cu124 runs")
    assert "1 warning: LD_LIBRARY_PATH holds a CUDA toolkit's libcudart" in out.verdict


def _system_python() -> Path:
    for name in (f"python{sys.version_info[0]}.{sys.version_info[1]}", "python3"):
        candidate = Path(sys.base_prefix) / "bin" / name
        if candidate.exists():
            return candidate
    pytest.skip("no base interpreter next to this venv's")


def test_system_python_outside_a_virtualenv(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    system = _system_python()
    out = doctor_run(tmp_path, fake_nvml_dir, python=system, env={"PYTHONPATH": str(envs.stray_cu124)})
    assert out.rc == 1
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    # The finding itself, not the verdict: a base interpreter with a torch of its own fails
    # the torch-copies check first, and this one must still be reported.
    finding = out.finding("virtualenv")
    assert finding["status"] == "failure"
    assert f"{finding['summary']}. Fix: {finding['fix']}" == (
        f"{system} is a system Python outside any virtual environment: torch installed there mixes with "
        f"the system's packages. Fix: python{version} -m venv .venv && pip-gpu install --python .venv "
        "torch==2.5.1"
    )


def test_system_python_in_a_container_is_a_warning(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    system = _system_python()
    machine = fake_machine(tmp_path / "m", dockerenv=True)
    out = doctor_run(
        tmp_path, fake_nvml_dir, python=system, machine=machine, env={"PYTHONPATH": str(envs.stray_cu124)}
    )
    if out.status("torch-copies") != "ok":
        pytest.skip("the base interpreter has a torch of its own")
    assert out.status("virtualenv") == "warning"
    assert out.rc == 0


def test_two_installs_of_torch(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    out = doctor_run(tmp_path, fake_nvml_dir, python=envs.cu124, env={"PYTHONPATH": str(envs.stray_cpu)})
    assert out.rc == 1
    site = probe_site(envs.cu124)
    assert out.verdict == (
        f"two installs of torch: 2.5.1+cpu in {envs.stray_cpu} (on PYTHONPATH) is the one Python imports, "
        f"beside 2.5.1+cu124 in {site}. Fix: export PYTHONPATH={PLUGIN}"
    )


def test_torch_source_tree_in_the_current_directory(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("")
    (tmp_path / "torch" / "version.py").write_text("__version__ = '2.6.0a0+git1234567'\ncuda = None\n")
    out = doctor_run(tmp_path, fake_nvml_dir, python=envs.cu124)
    assert out.rc == 1
    assert out.verdict.startswith(
        f"two installs of torch: 2.6.0a0+git1234567 in {tmp_path} (the current directory) is the one "
        "Python imports, beside 2.5.1+cu124 in "
    )
    assert out.verdict.endswith(
        f"Fix: run Python from another directory: the torch/ in {tmp_path} shadows the installed one"
    )


def test_two_metadata_records_in_one_site_packages(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    # pip over conda: a second torch-*.dist-info beside the one torch/ package.
    venv = tmp_path / "pip-over-conda"
    shutil.copytree(envs.cu124.parent.parent, venv, symlinks=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "torch-2.4.0.dist-info").mkdir()
    (site / "torch-2.4.0.dist-info" / "METADATA").write_text("Name: torch\nVersion: 2.4.0\n")
    out = doctor_run(tmp_path, fake_nvml_dir, python=venv / "bin" / "python")
    assert out.rc == 1
    assert out.verdict.startswith(
        f"two installs of torch in {site}: torch-2.4.0.dist-info, torch-2.5.1+cu124.dist-info"
    )
    assert out.verdict.endswith(f"Fix: rm -rf {site / 'torch-2.4.0.dist-info'}")


def _as_built(site: Path, relative: str, content: bytes) -> None:
    """``relative`` with ``content``, as a wheel built that way installs it: its RECORD agrees
    (an installed file changed behind RECORD's back is damage, which doctor reports first)."""
    import base64
    import hashlib

    (site / relative).write_bytes(content)
    digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
    for record in site.glob("*.dist-info/RECORD"):
        lines = record.read_text().splitlines()
        if any(line.startswith(relative + ",") for line in lines):
            fixed = [f"{relative},sha256={digest},{len(content)}" if line.startswith(relative + ",") else line
                     for line in lines]  # fmt: skip
            record.write_text("\n".join(fixed) + "\n")


def probe_site(python: Path) -> Path:
    return site_packages(python)


def _lock_here(server: IndexServer, directory: Path, requirements: str) -> None:
    """A real lock family, written by ``pip-gpu lock`` against the fixture index."""
    (directory / "requirements.in").write_text(requirements)
    env = {**pip_env(), "PYTHONPATH": str(PLUGIN)}
    env.update(UV_DEFAULT_INDEX=server.pypi_url, UV_NO_CONFIG="1", UV_CACHE_DIR=str(directory / ".uv-cache"))
    run(
        [sys.executable, "-m", "pip_gpu", "lock", "-r", "requirements.in", "--variants", "cu124",
         "--pytorch-index", server.pytorch_url, "--python-version",
         f"{sys.version_info[0]}.{sys.version_info[1]}"],
        env=env,
        cwd=directory,
    )  # fmt: skip


def test_matching_lock_passes(envs: Envs, tmp_path: Path, fixture_index: IndexServer) -> None:
    _lock_here(fixture_index, tmp_path, "torch==2.5.1\ntorchvision==0.20.1\n")
    # every locked package, the dependencies too (check compares them all): installed from the lock
    python = make_venv(tmp_path / "synced", with_pip=False)
    env = {**pip_env(), "UV_NO_CONFIG": "1", "UV_CACHE_DIR": str(tmp_path / ".uv-cache")}
    run([uv_bin(), "pip", "sync", "--python", str(python), str(tmp_path / "pylock.cu124.toml")], env=env)
    report = diagnose(in_process_facts(python, tmp_path))
    lock = next(f for f in report.findings if f.check == "lock")
    assert (lock.status, lock.summary) == ("ok", "the environment matches the lock (pylock.cu124.toml)")


def test_stale_lock(envs: Envs, tmp_path: Path, fixture_index: IndexServer) -> None:
    """The requirements changed after locking: the lock no longer says what the team wants."""
    _lock_here(fixture_index, tmp_path, "torch==2.5.1\ntorchvision==0.20.1\n")
    (tmp_path / "requirements.in").write_text("torch==2.5.1\ntorchvision==0.20.1\ntorchaudio\n")
    report = diagnose(in_process_facts(envs.cu124, tmp_path))
    assert report.exit_status == 1
    assert report.verdict.startswith("the environment does not match the lock: pylock.cu124.toml is stale")
    assert "requirements.in changed" in report.verdict
    assert report.verdict.endswith(f"Fix: pip-gpu sync --python {envs.cu124}")  # the target checked


def test_lock_of_another_build_fails(envs: Envs, tmp_path: Path, fixture_index: IndexServer) -> None:
    _lock_here(fixture_index, tmp_path, "torch==2.5.1\n")
    report = diagnose(in_process_facts(envs.cpu, tmp_path))
    lock = next(f for f in report.findings if f.check == "lock")
    assert lock.status == "failure"
    assert (
        "torch 2.5.1+cpu is installed; the lock for this machine (pylock.cu124.toml) wants 2.5.1+cu124"
        in (lock.summary)
    )


def in_process_facts(python: Path, cwd: Path, machine_root: Optional[Path] = None) -> Facts:
    knowledge = load_knowledge()
    host = HostProfile(
        os="linux",
        arch="x86_64",
        python_version=f"{sys.version_info[0]}.{sys.version_info[1]}",
        driver_version="535.104.05",
        cuda_driver_version="12.2",
        nvidia_gpus=(NvidiaGpu(0, A100.name, (8, 0), "nvml"),),
        sources={"driver_version": "nvml", "nvidia_gpus": "nvml"},
    )
    machine_env = fake_machine(machine_root or cwd / "machine")
    target = probe(python, "--python")
    return Facts(
        host=host,
        knowledge=knowledge,
        machine=gather_machine(machine_env),
        target=gather_target(target, [m.name for m in knowledge.family], env=pip_env()),
        python_flag=str(python),
        cwd=cwd,
        lock=gather_lock(cwd, target, host),
    )


def test_wsl_without_libcuda(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    wsl = "Linux version 5.15.153.1-microsoft-standard-WSL2 (root@941d701f84f1)"
    out = doctor_run(
        tmp_path, fake_nvml_dir, python=envs.cu124, machine=fake_machine(tmp_path / "a", proc_version=wsl)
    )
    assert out.rc == 1
    assert out.verdict.startswith("WSL2 without ")
    assert out.verdict.endswith(
        "/usr/lib/wsl/lib/libcuda.so: the Windows NVIDIA driver's CUDA support does not reach Linux. "
        "Fix: install the current NVIDIA driver on Windows (not inside WSL), "
        "then run `wsl --shutdown` from Windows"
    )
    good = doctor_run(
        tmp_path,
        fake_nvml_dir,
        python=envs.cu124,
        machine=fake_machine(tmp_path / "b", proc_version=wsl, wsl_libcuda=True),
    )
    assert good.rc == 0
    assert good.finding("wsl")["summary"].startswith("WSL2 with ")


def test_torch_not_installed(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    out = doctor_run(tmp_path, fake_nvml_dir, python=envs.empty)
    assert out.rc == 1
    assert out.verdict == (
        f"torch is not installed in {envs.empty.parent.parent}. "
        f"Fix: pip-gpu install --python {envs.empty} torch"
    )


def test_a_killed_pip_leaves_no_torch_that_doctor_calls_healthy(
    envs: Envs, fake_nvml_dir: Path, tmp_path: Path
) -> None:
    """Issue 17: pip renames the dist-info it replaces to ``~orch-...`` and leaves it when killed
    between the rename and the new install; that leftover is not torch, and nothing is healthy."""
    venv = tmp_path / "killed"
    shutil.copytree(envs.cu124.parent.parent, venv, symlinks=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    real = next(site.glob("torch-*.dist-info"))
    leftover = real.with_name("~orch-2.4.1+cu124.dist-info")
    real.rename(leftover)
    metadata = leftover / "METADATA"
    metadata.write_text(metadata.read_text().replace("Version: 2.5.1+cu124", "Version: 2.4.1+cu124"))
    python = venv / "bin" / "python"
    out = doctor_run(tmp_path, fake_nvml_dir, python=python)
    assert out.rc == 1 and out.data["healthy"] is False
    assert out.verdict == f"torch is not installed in {venv}. Fix: pip-gpu install --python {python} torch"
    assert "2.4.1" not in out.stdout


def test_host_flags_skip_nvml(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    out = doctor_run(
        tmp_path,
        fake_nvml_dir,
        python=envs.cu124,
        args=["--driver", "550.54.15", "--compute-capability", "9.0"],
    )
    assert out.rc == 0
    assert out.status("nvml") == "skipped"
    assert "covers GPU 0" in out.finding("gpu-arch")["summary"]


# --- --import ------------------------------------------------------------------------------


def _torch_copy(envs: Envs, tmp_path: Path) -> Path:
    """A venv holding a copy of the cu124 environment's packages, free to damage."""
    python = make_venv(tmp_path / "venv", with_pip=False)
    shutil.copytree(site_packages(envs.cu124), site_packages(python), dirs_exist_ok=True)
    return python


def _change_in_place(path: Path, old: bytes, new: bytes) -> None:
    text = path.read_bytes()
    assert old in text and len(old) == len(new)
    path.write_bytes(text.replace(old, new))


def test_a_torch_file_changed_in_place_is_damage(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    """Same size, other bytes: only the RECORD's sha256 tells; no lock is needed to see it.

    By default the files that name the build (``version.py``) are hashed; any other file is
    hashed with ``--verify-files`` only, and its size is compared always."""
    python = _torch_copy(envs, tmp_path)
    init = site_packages(python) / "torch" / "cuda" / "__init__.py"
    _change_in_place(init, b"return False", b"return True ")
    damaged = "torch 2.5.1+cu124 is damaged: 0 of its 8 files are missing and 1 differ from its RECORD"

    out = doctor_run(tmp_path, fake_nvml_dir, python=python)
    assert out.rc == 0 and out.data["healthy"] is True, out.stdout
    shown = {"PIP_GPU_PROGRESS_AFTER": "0"}  # -v: the progress of a terminal, piped
    out = doctor_run(tmp_path, fake_nvml_dir, python=python, args=["-v", "--verify-files"], env=shown)
    assert out.rc == 1 and out.verdict.startswith(damaged), out.verdict
    assert "pip-gpu: checking the sha256 of every installed file of the torch family: done in" in out.stderr

    init.write_bytes(init.read_bytes() + b"# grown\n")  # another size: seen without hashing
    out = doctor_run(tmp_path, fake_nvml_dir, python=python)
    assert out.rc == 1 and out.verdict.startswith(damaged), out.verdict


def test_a_build_file_changed_in_place_is_damage_by_default(
    envs: Envs, fake_nvml_dir: Path, tmp_path: Path
) -> None:
    """``version.py`` says which build this is: its sha256 is checked without ``--verify-files``."""
    python = _torch_copy(envs, tmp_path)
    _change_in_place(site_packages(python) / "torch" / "version.py", b"12.4", b"11.8")
    out = doctor_run(tmp_path, fake_nvml_dir, python=python)
    assert out.rc == 1
    assert out.verdict.startswith(
        "torch 2.5.1+cu124 is damaged: 0 of its 8 files are missing and 1 differ from its RECORD"
    )


def test_import_reports_is_available_false_on_a_gpu_host(
    envs: Envs, fake_nvml_dir: Path, tmp_path: Path
) -> None:
    # The synthetic torch's cuda.is_available() is always False: everything static is fine,
    # yet torch sees no GPU, which only --import can tell.
    out = doctor_run(tmp_path, fake_nvml_dir, python=envs.cu124, args=["--import"])
    assert out.rc == 1
    assert out.verdict == "torch.cuda.is_available() is False although 1 NVIDIA GPU(s) are visible"
    assert out.finding("import")["evidence"][0] == (
        "torch 2.5.1+cu124: torch.cuda.is_available() = False, device_count() = 0"
    )


def test_import_on_a_machine_without_gpu(envs: Envs, no_nvml_dir: Path, tmp_path: Path) -> None:
    machine = fake_machine(
        tmp_path / "m", nodes=(), modules=(), nvidia_proc_version=None, nvidia_pci_driver=None
    )
    out = doctor_run(tmp_path, no_nvml_dir, python=envs.cpu, gpus=(), machine=machine, args=["--import"])
    assert out.rc == 0
    assert out.finding("import")["summary"] == (
        "torch imports; torch.cuda.is_available() is False, as expected here"
    )


def test_import_error_text_is_reported(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    out = doctor_run(tmp_path, fake_nvml_dir, python=envs.broken, args=["--import"])
    assert out.rc == 1
    assert out.verdict == (
        "importing torch failed: OSError: libcudart.so.12: cannot open shared object file: "
        "No such file or directory"
    )


# --- the step, in process -------------------------------------------------------------------


def test_the_doctor_step_reads_the_target_and_the_machine_it_is_given(envs: Envs, tmp_path: Path) -> None:
    flags = HostFlags(driver="535.104.05", compute_capabilities=("8.0",))
    env = {**fake_machine(tmp_path / "machine"), "PATH": "/usr/bin:/bin"}
    report = doctor(DoctorOptions(host=flags, python=str(envs.cu124), cwd=tmp_path, env=env))
    assert report.healthy and report.exit_status == 0, report.verdict
    assert report.target is not None and report.target.python == envs.cu124
    assert report.host is not None and report.host.python_version == report.target.python_version
    assert report.verdict.startswith(
        "healthy: torch 2.5.1+cu124 runs on the host the flags describe, with 1 NVIDIA GPU"
    )
    assert "import" not in [f.check for f in report.findings]
    empty = doctor(DoctorOptions(host=flags, python=str(envs.empty), run_import=True, cwd=tmp_path, env=env))
    assert (empty.findings[-1].check, empty.findings[-1].status) == ("import", "skipped")
    assert empty.verdict.startswith(f"torch is not installed in {envs.empty.parent.parent}")


# --- pieces --------------------------------------------------------------------------------


def test_cuda_runtime_versions_from_file_names(tmp_path: Path) -> None:
    soname_only = tmp_path / "cuda-11.8" / "lib64"
    soname_only.mkdir(parents=True)
    (soname_only / "libcudart.so.11.0").write_text("")
    bare = tmp_path / "opt" / "lib"
    bare.mkdir(parents=True)
    (bare / "libcudart.so.12").write_text("")
    found = cuda_runtime_dirs([str(tmp_path / "missing"), str(soname_only), str(bare)])
    assert [(r.position, r.version) for r in found] == [(1, "11.8"), (2, "12")]


def test_container_from_cgroup(tmp_path: Path) -> None:
    env = fake_machine(tmp_path)
    (Path(env["PIP_GPU_PROCFS_ROOT"]) / "1" / "cgroup").write_text("12:pids:/kubepods/burstable/pod1234\n")
    machine = gather_machine(env)
    assert machine.container == "/proc/1/cgroup: 12:pids:/kubepods/burstable/pod1234"


def test_import_gives_up_after_the_timeout(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    hung = tmp_path / "hung"
    (hung / "torch").mkdir(parents=True)
    (hung / "torch" / "__init__.py").write_text("import time\ntime.sleep(60)\n")
    out = doctor_run(
        tmp_path,
        fake_nvml_dir,
        python=envs.cu124,
        env={"PYTHONPATH": str(hung)},
        args=["--import", "--import-timeout", "1"],
    )
    assert out.rc == 1
    assert out.finding("import")["summary"] == "importing torch and initialising CUDA took longer than 1 s"


def test_a_crashing_check_does_not_hide_the_others(envs: Envs, tmp_path: Path) -> None:
    def check_broken(facts: Facts) -> Finding:
        raise RuntimeError("boom")

    report = diagnose(in_process_facts(envs.cu124, tmp_path), checks=(check_broken, check_torch))
    assert [(f.check, f.status) for f in report.findings] == [("broken", "warning"), ("torch", "ok")]
    assert report.healthy


# --- doctor, check and sync agree (issue 16) -------------------------------------------------


def test_a_cuda_build_on_a_host_without_gpus_is_not_healthy(
    envs: Envs, fake_nvml_dir: Path, tmp_path: Path
) -> None:
    out = doctor_run(tmp_path, fake_nvml_dir, python=envs.cu124, args=["--no-gpu"])
    assert out.rc == 1 and out.data["healthy"] is False
    assert "will run on the CPU" in out.verdict and "healthy" not in out.verdict
    assert "Fix: pip-gpu install" in out.verdict  # the build this host gets instead
    # NVML was not asked: the skipped checks say the flags' host has none, not "see nvml"
    assert out.finding("driver")["summary"] == "the flags describe a host without an NVIDIA driver"
    assert out.finding("gpu-arch")["summary"] == "the flags describe a host without an NVIDIA GPU"


def test_amd_host_flags_name_the_host_they_describe(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    # issue 25: --amd-gfx was answered with "this machine has no NVIDIA GPU", and the fix left the
    # flags out (run as printed, it would decide for this machine)
    amd = "the host the flags describe has 1 AMD GPU (gfx1100) and no NVIDIA GPU"
    cpu = doctor_run(tmp_path, fake_nvml_dir, python=envs.cpu, args=["--amd-gfx", "gfx1100"])
    assert (cpu.rc, cpu.verdict) == (0, f"healthy: torch 2.5.1+cpu, and {amd}")
    assert cpu.finding("nvml")["summary"] == "the driver and GPUs were given as flags; NVML was not asked"
    cuda = doctor_run(tmp_path, fake_nvml_dir, python=envs.cu124, args=["--amd-gfx", "gfx1100"])
    assert cuda.rc == 1
    assert cuda.verdict == (
        f"torch 2.5.1+cu124 is a CUDA 12.4 build but {amd}: it will run on the CPU. "
        f"Fix: pip-gpu install --amd-gfx gfx1100 --python {envs.cu124} --force-reinstall torch==2.5.1 "
        "torchvision==0.20.1"
    )


def test_fixes_repeat_the_host_flags(
    envs: Envs, fake_nvml_dir: Path, tmp_path: Path, fixture_index: IndexServer
) -> None:
    # issue 25: a fix the user copies must describe the host doctor checked
    flags = ["--driver", "535.104.05", "--compute-capability", "8.0"]
    out = doctor_run(tmp_path, fake_nvml_dir, python=envs.cpu, args=flags)
    assert out.verdict == (
        "torch 2.5.1+cpu is a CPU-only build; the host the flags describe has 1 NVIDIA GPU (GPU 0, "
        f"driver 535.104.05). Fix: pip-gpu install {' '.join(flags)} --python {envs.cpu} "
        "--force-reinstall torch==2.5.1"
    )
    _lock_here(fixture_index, tmp_path, "torch==2.5.1\n")
    (tmp_path / "requirements.in").write_text("torch==2.5.1\ntorchaudio\n")  # the lock is stale
    stale = doctor_run(tmp_path, fake_nvml_dir, python=envs.cu124, args=flags, as_json=False)
    assert stale.rc == 1
    assert stale.stdout.splitlines()[0].endswith(f"Fix: pip-gpu sync --python {envs.cu124} {' '.join(flags)}")
    assert f"fix: pip-gpu sync --python {envs.cu124} {' '.join(flags)}" in stale.stdout


def test_cuda_visible_devices_is_reported_when_the_gpus_come_from_flags(
    envs: Envs, fake_nvml_dir: Path, tmp_path: Path
) -> None:
    flags = ["--driver", "535.104.05", "--compute-capability", "8.0"]
    out = doctor_run(tmp_path, fake_nvml_dir, python=envs.cu124, args=flags, env={"CUDA_VISIBLE_DEVICES": ""})
    finding = out.finding("cuda-visible-devices")
    assert finding["status"] == "failure" and "hides every GPU" in finding["summary"]
    assert out.rc == 1 and "CUDA_VISIBLE_DEVICES" in out.verdict


def test_doctor_says_python_m_pip_bypasses_the_shims(envs: Envs, fake_nvml_dir: Path, tmp_path: Path) -> None:
    out = doctor_run(tmp_path, fake_nvml_dir, python=envs.cu124)
    assert out.finding("shims")["status"] == "ok"
    assert "`python -m pip`" in out.finding("shims")["summary"]
    shims = tmp_path / "shims"
    run([sys.executable, "-m", "pip_gpu", "shim", "install", "--dir", str(shims)],
        env={**pip_env(), "PYTHONPATH": str(PLUGIN)})  # fmt: skip
    # as after `source venv/bin/activate`: a venv's bin/ with its pip before the shims
    venv_bin = tmp_path / "activated" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "pip").write_text("#!/bin/sh\n")
    (venv_bin / "pip").chmod(0o755)
    path = os.pathsep.join([str(venv_bin), str(shims), "/usr/bin", "/bin"])
    out = doctor_run(tmp_path, fake_nvml_dir, python=envs.cu124, env={"PATH": path})
    finding = out.finding("shims")
    assert finding["status"] == "warning" and f"{venv_bin / 'pip'} comes first" in finding["summary"]
    assert "shim init" in finding["fix"]


def test_check_sync_and_doctor_agree_when_no_lock_runs_on_the_host(
    envs: Envs, fake_nvml_dir: Path, tmp_path: Path, fixture_index: IndexServer
) -> None:
    _lock_here(fixture_index, tmp_path, "torch==2.5.1\n")
    old_driver = ["--driver", "470.57.02", "--compute-capability", "8.0"]
    env = {**pip_env(), "PYTHONPATH": str(PLUGIN)}
    command = [sys.executable, "-m", "pip_gpu"]
    check = run(
        [*command, "check", "--python", str(envs.cu124), *old_driver], env=env, cwd=tmp_path, check=False
    )
    assert check.returncode == 1
    assert "no lock in" in check.stdout and "runs on this host" in check.stdout
    assert "the lock for this machine" not in check.stdout
    as_json = run(
        [*command, "check", "--json", "--python", str(envs.cu124), *old_driver],
        env=env,
        cwd=tmp_path,
        check=False,
    )
    data = json.loads(as_json.stdout)
    assert data["schema_version"] == 1 and data["fix"].startswith(
        "lock a build that runs here: pip-gpu lock --variants"
    )
    assert check.stdout.splitlines()[-1] == f"  fix: {data['fix']}"  # the text says what the JSON says
    sync = run(
        [*command, "sync", "--python", str(envs.cu124), *old_driver], env=env, cwd=tmp_path, check=False
    )
    assert sync.returncode == 2 and "Traceback" not in sync.stderr
    out = doctor_run(tmp_path, fake_nvml_dir, python=envs.cu124, driver="470.57.02", cuda=11040)
    lock = out.finding("lock")
    assert lock["status"] == "failure" and lock["summary"].startswith("no lock here runs on this host")
    assert "the lock for this machine" not in lock["summary"]
