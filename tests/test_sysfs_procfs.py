"""Detection boundaries outside NVML: KFD/PCI sysfs, /proc, /dev and the nvidia-smi command."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import pytest

from pip_gpu.detect.nvidia_smi import SmiReport, query_nvidia_smi
from pip_gpu.detect.procfs import read_nvidia_proc_version
from pip_gpu.detect.sysfs import (
    decode_gfx_target_version,
    find_amd_gpus,
    find_intel_gpus,
    loaded_kernel_modules,
    nvidia_device_nodes,
)
from pip_gpu.host import (
    AmdGpu,
    HostProblem,
    IntelGpu,
    NvidiaGpu,
)

# ---------------------------------------------------------------- AMD (KFD topology)

CPU_NODE = """\
cpu_cores_count 96
simd_count 0
mem_banks_count 1
gfx_target_version 0
vendor_id 0
device_id 0
"""


def gpu_node(gfx_target_version: int, simd_count: int = 1216) -> str:
    return (
        "cpu_cores_count 0\n"
        f"simd_count {simd_count}\n"
        "mem_banks_count 1\n"
        f"gfx_target_version {gfx_target_version}\n"
        "vendor_id 4098\n"
        "device_id 29856\n"
        "drm_render_minor 128\n"
    )


def add_kfd_node(sys_root: Path, node: int, properties: str, name: str | None) -> Path:
    path = sys_root / "class/kfd/kfd/topology/nodes" / str(node)
    path.mkdir(parents=True)
    (path / "properties").write_text(properties)
    if name is not None:
        (path / "name").write_text(name + "\n")
    return path


@pytest.mark.parametrize(
    ("version", "target"),
    [
        (90010, "gfx90a"),
        (90402, "gfx942"),
        (110000, "gfx1100"),
        (120001, "gfx1201"),
        (90012, "gfx90c"),
        (0, None),
        (91600, None),
    ],
)
def test_decode_gfx_target_version(version: int, target: str | None) -> None:
    assert decode_gfx_target_version(version) == target


def test_mi300x_node_and_cpu_node(tmp_path: Path) -> None:
    add_kfd_node(tmp_path, 0, CPU_NODE, "")
    gpu = add_kfd_node(tmp_path, 1, gpu_node(90402), "ip discovery")
    assert find_amd_gpus(tmp_path) == (
        AmdGpu(gfx_target="gfx942", name="AMD GPU (gfx942)", source=f"sysfs:{gpu}"),
    )


def test_mi210_and_rx7900xtx_in_node_order(tmp_path: Path) -> None:
    add_kfd_node(tmp_path, 0, CPU_NODE, "")
    navi = add_kfd_node(tmp_path, 10, gpu_node(110000, simd_count=192), "")
    mi210 = add_kfd_node(tmp_path, 2, gpu_node(90010, simd_count=416), "aldebaran")
    assert find_amd_gpus(tmp_path) == (
        AmdGpu(gfx_target="gfx90a", name="aldebaran", source=f"sysfs:{mi210}"),
        AmdGpu(gfx_target="gfx1100", name="AMD GPU (gfx1100)", source=f"sysfs:{navi}"),
    )


def test_amd_without_kfd_or_with_bad_nodes(tmp_path: Path) -> None:
    assert find_amd_gpus(tmp_path) == ()
    add_kfd_node(tmp_path, 0, "garbage\nsimd_count lots\n", None)
    add_kfd_node(tmp_path, 1, gpu_node(0), None)  # a GPU node KFD could not name a target for
    broken = tmp_path / "class/kfd/kfd/topology/nodes/2"
    (broken / "properties").mkdir(parents=True)  # a directory where a file is expected
    ok = add_kfd_node(tmp_path, 3, gpu_node(90010), None)  # no name file
    assert find_amd_gpus(tmp_path) == (
        AmdGpu(gfx_target="gfx90a", name="AMD GPU (gfx90a)", source=f"sysfs:{ok}"),
    )


def test_unreadable_properties_are_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = add_kfd_node(tmp_path, 1, gpu_node(90402), "")
    ok = add_kfd_node(tmp_path, 2, gpu_node(90010), "")
    real_read_text = Path.read_text

    def read_text(self: Path, *args: object, **kwargs: object) -> str:
        if self == locked / "properties":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_text(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", read_text)
    assert [gpu.source for gpu in find_amd_gpus(tmp_path)] == [f"sysfs:{ok}"]


# ---------------------------------------------------------------- Intel (PCI sysfs)


def add_pci_device(sys_root: Path, address: str, vendor: str, device: str, cls: str) -> Path:
    path = sys_root / "bus/pci/devices" / address
    path.mkdir(parents=True)
    (path / "vendor").write_text(vendor + "\n")
    (path / "device").write_text(device + "\n")
    (path / "class").write_text(cls + "\n")
    return path


def test_intel_arc_a770_and_integrated_gpu(tmp_path: Path) -> None:
    igpu = add_pci_device(tmp_path, "0000:00:02.0", "0x8086", "0xa780", "0x030000")
    add_pci_device(tmp_path, "0000:00:14.0", "0x8086", "0x7ae0", "0x0c0330")  # USB controller
    arc = add_pci_device(tmp_path, "0000:03:00.0", "0x8086", "0x56A0", "0x030000")
    add_pci_device(tmp_path, "0000:04:00.0", "0x10de", "0x2684", "0x030000")  # NVIDIA
    assert find_intel_gpus(tmp_path) == (
        IntelGpu(pci_device_id="0xa780", name="Intel GPU 0xa780", discrete=False, source=f"sysfs:{igpu}"),
        IntelGpu(pci_device_id="0x56a0", name="Intel Arc A770", discrete=True, source=f"sysfs:{arc}"),
    )


@pytest.mark.parametrize(
    ("device", "name", "discrete"),
    [
        ("0xe20b", "Intel Arc B580", True),
        ("0xe211", "Intel GPU 0xe211", True),
        ("0x0bd5", "Intel Data Center GPU Max 1550", True),
        ("0x56c0", "Intel Data Center GPU Flex 170", True),
        ("0x4905", "Intel GPU 0x4905", False),  # DG1: discrete, but not an XPU target
        ("0x7d55", "Intel GPU 0x7d55", False),  # Meteor Lake iGPU
    ],
)
def test_intel_device_families(tmp_path: Path, device: str, name: str, discrete: bool) -> None:
    add_pci_device(tmp_path, "0000:03:00.0", "0x8086", device, "0x038000")
    (gpu,) = find_intel_gpus(tmp_path)
    assert (gpu.name, gpu.discrete) == (name, discrete)


def test_intel_unreadable_or_garbled_devices_are_skipped(tmp_path: Path) -> None:
    assert find_intel_gpus(tmp_path) == ()
    bad = add_pci_device(tmp_path, "0000:01:00.0", "0x8086", "zzz", "0x030000")
    (bad / "class").unlink()
    (bad / "class").mkdir()
    add_pci_device(tmp_path, "0000:02:00.0", "0x8086", "not-hex", "0x030000")
    add_pci_device(tmp_path, "0000:03:00.0", "0x8086", "0x56a5", "0x030000")
    assert [gpu.name for gpu in find_intel_gpus(tmp_path)] == ["Intel Arc A380"]


# ---------------------------------------------------------------- /dev and /proc


def test_nvidia_device_nodes(tmp_path: Path) -> None:
    assert nvidia_device_nodes(tmp_path / "missing") == ()
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "null", "dri"):
        (tmp_path / name).touch()
    assert nvidia_device_nodes(tmp_path) == ("nvidia-uvm", "nvidia0", "nvidia1", "nvidiactl")


def test_loaded_kernel_modules(tmp_path: Path) -> None:
    assert loaded_kernel_modules(tmp_path) == frozenset()
    (tmp_path / "modules").write_text(
        "nvidia_uvm 1437696 0 - Live 0x0000000000000000 (POE)\n"
        "nvidia 56487936 1 nvidia_uvm, Live 0x0000000000000000 (POE)\n"
        "\n"
        "drm 614400 4 nvidia_drm, Live 0x0000000000000000\n"
    )
    assert loaded_kernel_modules(tmp_path) == frozenset({"nvidia_uvm", "nvidia", "drm"})
    (tmp_path / "modules").write_text("nouveau 2306048 2 - Live 0x0000000000000000\n")
    assert "nouveau" in loaded_kernel_modules(tmp_path)


def write_proc_version(proc_root: Path, text: str) -> None:
    path = proc_root / "driver/nvidia/version"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(
    ("text", "version"),
    [
        (
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC"
            " 2023\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n",
            "535.104.05",
        ),
        (
            "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.15  Release Build"
            "  (dvs-builder@U16-I3-B03-4-3)  Tue Mar  5 22:15:33 UTC 2024\n",
            "550.54.15",
        ),
        (
            "NVRM version: NVIDIA UNIX aarch64 Kernel Module  390.157  Wed Oct 12 09:19:07 UTC 2022\n",
            "390.157",
        ),
        ("garbage\nNVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05\n", None),
        ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  five-three-five\n", None),
        ("", None),
    ],
)
def test_read_nvidia_proc_version(tmp_path: Path, text: str, version: str | None) -> None:
    write_proc_version(tmp_path, text)
    assert read_nvidia_proc_version(tmp_path) == version


def test_read_nvidia_proc_version_missing_or_unreadable(tmp_path: Path) -> None:
    assert read_nvidia_proc_version(tmp_path) is None
    (tmp_path / "driver/nvidia/version").mkdir(parents=True)
    assert read_nvidia_proc_version(tmp_path) is None


# ---------------------------------------------------------------- nvidia-smi

QUERY_OK = """\
0, NVIDIA H100 80GB HBM3, 9.0, 81559, GPU-5e4b1a2c-0b1d-4a8e-9f3c-2d7e6a1b0c9d, 535.104.05
1, NVIDIA GeForce RTX 4090, 8.9, 24564, GPU-0c1d2e3f-4a5b-6c7d-8e9f-a0b1c2d3e4f5, 535.104.05
"""

LOG_OK = """
==============NVSMI LOG==============

Timestamp                                 : Mon Sep 11 10:00:00 2023
Driver Version                            : 535.104.05
CUDA Version                              : 12.2

Attached GPUs                             : 2
GPU 00000000:01:00.0
    Compute Mode                          : Default
"""

LOG_OLD = LOG_OK.replace("535.104.05", "470.82.01").replace("12.2", "11.4")
NO_CC_FIELD = 'Field "compute_cap" is not a valid field to query.\n'
MISMATCH = "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 535.129\n"


def fake_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> Path:
    """Put an executable ``nvidia-smi`` (a shell script) first on PATH; it logs its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/calls"\n{body}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")]))
    return tmp_path / "calls"


def respond(query: str, log: str, query_status: int = 0, log_status: int = 0) -> str:
    return (
        'case "$1" in\n'
        f"  --query-gpu=*) cat <<'EOF'\n{query}EOF\n  exit {query_status};;\n"
        f"  -q) cat <<'EOF'\n{log}EOF\n  exit {log_status};;\n"
        "esac\nexit 99"
    )


posix_only = pytest.mark.skipif(sys.platform == "win32", reason="shell-script fake nvidia-smi")


@posix_only
def test_nvidia_smi_two_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_smi(tmp_path, monkeypatch, respond(QUERY_OK, LOG_OK))
    assert query_nvidia_smi() == SmiReport(
        driver_version="535.104.05",
        cuda_driver_version="12.2",
        gpus=(
            NvidiaGpu(
                index=0,
                name="NVIDIA H100 80GB HBM3",
                compute_capability=(9, 0),
                source="nvidia-smi",
                memory_total_mib=81559,
                uuid="GPU-5e4b1a2c-0b1d-4a8e-9f3c-2d7e6a1b0c9d",
            ),
            NvidiaGpu(
                index=1,
                name="NVIDIA GeForce RTX 4090",
                compute_capability=(8, 9),
                source="nvidia-smi",
                memory_total_mib=24564,
                uuid="GPU-0c1d2e3f-4a5b-6c7d-8e9f-a0b1c2d3e4f5",
            ),
        ),
        problem=None,
    )
    assert calls.read_text().splitlines() == [
        "--query-gpu=index,name,compute_cap,memory.total,uuid,driver_version --format=csv,noheader,nounits",
        "-q -d COMPUTE",
    ]


# Driver R610 on: "KMD Version" and "CUDA UMD Version"; the old fields deprecated in -q
# (sglang#27487's banner "KMD Version: 610.43.02  CUDA UMD Version: 13.3").
LOG_R610 = """
==============NVSMI LOG==============

Timestamp                                 : Sun Jun  7 08:16:57 2026
Driver Version                            : [Deprecated; use KMD Version instead]
KMD Version                               : 610.43.02
CUDA Version                              : [Deprecated; will be removed in CUDA 14.0]
CUDA UMD Version                          : 13.3

Attached GPUs                             : 1
GPU 00000000:63:00.0
    Compute Mode                          : Default
"""
LOG_CUDA14 = "\n".join(line for line in LOG_R610.splitlines() if "Deprecated" not in line) + "\n"


@posix_only
@pytest.mark.parametrize("log", [LOG_R610, LOG_CUDA14], ids=["deprecated-fields", "old-fields-gone"])
@pytest.mark.parametrize("query_driver", ["610.43.02", "[N/A]"])
def test_nvidia_smi_r610_spellings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log: str, query_driver: str
) -> None:
    query = f"0, NVIDIA B200, 10.0, 183359, GPU-1, {query_driver}\n"
    fake_smi(tmp_path, monkeypatch, respond(query, log))
    report = query_nvidia_smi()
    assert (report.driver_version, report.cuda_driver_version, report.problem) == ("610.43.02", "13.3", None)
    assert [(g.name, g.compute_capability) for g in report.gpus] == [("NVIDIA B200", (10, 0))]


@posix_only
def test_nvidia_smi_r610_without_compute_cap_reads_kmd_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_smi(tmp_path, monkeypatch, respond(NO_CC_FIELD, LOG_CUDA14, query_status=2))
    report = query_nvidia_smi()
    assert (report.driver_version, report.cuda_driver_version) == ("610.43.02", "13.3")


@posix_only
def test_nvidia_smi_hang_is_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_smi(tmp_path, monkeypatch, "sleep 30")
    start = time.monotonic()
    report = query_nvidia_smi(timeout_s=1.0)
    assert time.monotonic() - start < 3.0
    assert report.gpus == ()
    assert report.problem is not None
    assert report.problem.code == "nvidia-smi-timeout"
    assert "did not finish within 1 s" in report.problem.message


@posix_only
def test_nvidia_smi_default_timeout_bounds_a_hang(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_smi(tmp_path, monkeypatch, "sleep 30")
    start = time.monotonic()
    report = query_nvidia_smi()
    assert time.monotonic() - start < 3.5
    assert report.problem is not None and report.problem.code == "nvidia-smi-timeout"


@posix_only
def test_nvidia_smi_garbage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_smi(tmp_path, monkeypatch, "echo 'Segmentation fault?? <html>'")
    assert query_nvidia_smi() == SmiReport(
        problem=HostProblem(
            "nvidia-smi-garbled",
            "could not parse nvidia-smi output (expected 6 fields, got 1): Segmentation fault?? <html>",
            "run the nvidia-smi command yourself to see what it prints",
        )
    )


@posix_only
@pytest.mark.parametrize(
    "query",
    [
        "\n",
        "0, Tesla T4, 7.5, 15360, GPU-1, not-a-version\n",
        "x, Tesla T4, 7.5, 15360, GPU-1, 535.104.05\n",
        "0, Tesla T4, seven, 15360, GPU-1, 535.104.05\n",
    ],
)
def test_nvidia_smi_garbled_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, query: str) -> None:
    fake_smi(tmp_path, monkeypatch, respond(query, LOG_OK))
    report = query_nvidia_smi()
    assert report.gpus == ()
    assert report.problem is not None and report.problem.code == "nvidia-smi-garbled"


@posix_only
def test_nvidia_smi_driver_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_smi(tmp_path, monkeypatch, f"cat <<'EOF'\n{MISMATCH}EOF\nexit 18")
    report = query_nvidia_smi()
    assert report.gpus == () and report.driver_version is None
    assert report.problem is not None
    assert report.problem.code == "nvml-driver-mismatch"
    assert report.problem.message == (
        "nvidia-smi exited with status 18: Failed to initialize NVML: Driver/library version mismatch"
    )
    assert report.problem.hint.startswith("reboot")
    assert len(calls.read_text().splitlines()) == 1  # no pointless second call


@posix_only
def test_nvidia_smi_no_driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_smi(
        tmp_path,
        monkeypatch,
        "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
        ' Make sure that the latest NVIDIA driver is installed and running." >&2\nexit 9',
    )
    problem = query_nvidia_smi().problem
    assert problem is not None
    assert problem.code == "nvidia-smi-failed"
    assert problem.message.startswith("nvidia-smi exited with status 9: NVIDIA-SMI has failed")
    assert "not loaded" in problem.hint


@posix_only
def test_nvidia_smi_old_driver_without_compute_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_smi(tmp_path, monkeypatch, respond(NO_CC_FIELD, LOG_OLD, query_status=2))
    report = query_nvidia_smi()
    assert (report.driver_version, report.cuda_driver_version, report.gpus) == (
        "470.82.01",
        "11.4",
        (),
    )
    assert report.problem is not None
    assert report.problem.code == "nvidia-smi-no-compute-cap"
    assert "driver 470.82.01" in report.problem.message
    assert len(calls.read_text().splitlines()) == 2


@posix_only
def test_nvidia_smi_gpu_without_compute_cap_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    query = (
        "0, NVIDIA A100-SXM4-40GB, 8.0, [N/A], [N/A], 535.104.05\n"
        "1, Weird GPU, [N/A], 1024, GPU-2, 535.104.05\n"
    )
    fake_smi(tmp_path, monkeypatch, respond(query, LOG_OK))
    report = query_nvidia_smi()
    assert report.gpus == (
        NvidiaGpu(
            index=0,
            name="NVIDIA A100-SXM4-40GB",
            compute_capability=(8, 0),
            source="nvidia-smi",
            memory_total_mib=None,
            uuid=None,
        ),
    )
    assert report.cuda_driver_version == "12.2"
    assert report.problem == HostProblem(
        "nvidia-smi-no-compute-cap",
        "nvidia-smi does not report a compute capability for 1: Weird GPU, so it is not listed",
    )


@posix_only
def test_nvidia_smi_log_without_cuda_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = LOG_OK.replace("12.2", "Not Found")
    fake_smi(tmp_path, monkeypatch, respond(QUERY_OK, log))
    report = query_nvidia_smi()
    assert len(report.gpus) == 2 and report.driver_version == "535.104.05"
    assert report.cuda_driver_version is None
    assert report.problem is not None and report.problem.code == "nvidia-smi-no-cuda-version"


def test_nvidia_smi_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    if os.name == "nt":  # pragma: no cover - the Windows fallback paths may hold a real one
        pytest.skip("POSIX PATH lookup only")
    problem = query_nvidia_smi().problem
    assert problem is not None and problem.code == "nvidia-smi-not-found"
    assert query_nvidia_smi(executable=str(tmp_path / "nope")).problem == HostProblem(
        "nvidia-smi-not-found",
        f"nvidia-smi not found ({tmp_path / 'nope'})",
        "nvidia-smi ships with the NVIDIA driver; without it no NVIDIA GPU can be listed this way",
    )
