"""query_nvml against the real nvidia-ml-py binding and a fake libnvidia-ml.so.1.

Each scenario runs in its own subprocess (pynvml loads the library once per process) and
prints the report as JSON: the tests check what a user would see, value by value.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import pytest
from support import fake_nvml
from support.fake_nvml import (
    A100,
    H100,
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_LIB_RM_VERSION_MISMATCH,
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_ERROR_UNINITIALIZED,
    NVML_ERROR_UNKNOWN,
    RTX_4090,
    V100,
    FakeGpu,
    nvml_env,
    read_nvml_log,
    write_nvml_profile,
)

# Session fixtures from the support module (a root conftest could list it in pytest_plugins).
fake_nvml_dir = fake_nvml.fake_nvml_dir
no_nvml_dir = fake_nvml.no_nvml_dir

_SCRIPT = """
import dataclasses, json, sys
from pip_gpu.detect.nvml import query_nvml
report = query_nvml(timeout_s=float(sys.argv[1]))
print(json.dumps(dataclasses.asdict(report)))
"""


def _query(env: dict[str, str], timeout_s: float = 5.0) -> tuple[dict[str, Any], float]:
    """Run query_nvml in a fresh process; returns the report and the process's wall time."""
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(timeout_s)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout), elapsed


def _gpu(index: int, gpu: FakeGpu) -> dict[str, Any]:
    major, minor = gpu.cc.split(".")
    return {
        "index": index,
        "name": gpu.name,
        "compute_capability": [int(major), int(minor)],
        "source": "nvml",
        "memory_total_mib": gpu.mem_mib,
        "uuid": gpu.uuid,
        "visible": True,
    }


@pytest.fixture
def run_profile(fake_nvml_dir: Path, tmp_path: Path) -> Any:
    """Write a profile, run query_nvml on it; returns (report, seconds, fake's call log)."""

    def run(timeout_s: float = 5.0, **profile: Any) -> tuple[dict[str, Any], float, list[str]]:
        path = write_nvml_profile(tmp_path / "nvml.txt", **profile)
        log = tmp_path / "nvml.log"
        report, elapsed = _query(nvml_env(fake_nvml_dir, path, log_path=log), timeout_s)
        return report, elapsed, read_nvml_log(log)

    return run


def _problem(report: dict[str, Any]) -> Optional[dict[str, str]]:
    problem: Optional[dict[str, str]] = report["problem"]
    return problem


# --- healthy hosts ------------------------------------------------------------------------


def test_single_a100(run_profile: Any) -> None:
    report, _, log = run_profile(driver="535.104.05", cuda=12020, gpus=[A100])
    assert report == {
        "driver_version": "535.104.05",
        "cuda_driver_version": "12.2",
        "gpus": [
            {
                "index": 0,
                "name": "NVIDIA A100-SXM4-80GB",
                "compute_capability": [8, 0],
                "source": "nvml",
                "memory_total_mib": 81920,
                "uuid": "GPU-4a1c0e3b-7d2f-4f0e-9a55-3c1b2d4e5f60",
                "visible": True,
            }
        ],
        "problem": None,
    }
    assert log[0] == "nvmlInitWithFlags 0"
    assert log[-1] == "nvmlShutdown"
    assert log.count("nvmlShutdown") == 1


def test_mixed_gpus_in_index_order(run_profile: Any) -> None:
    report, _, _ = run_profile(driver="550.54.15", cuda=12040, gpus=[V100, RTX_4090, H100])
    assert report["driver_version"] == "550.54.15"
    assert report["cuda_driver_version"] == "12.4"
    assert report["gpus"] == [_gpu(0, V100), _gpu(1, RTX_4090), _gpu(2, H100)]
    assert [g["name"] for g in report["gpus"]] == [
        "Tesla V100-SXM2-16GB",
        "NVIDIA GeForce RTX 4090",
        "NVIDIA H100 80GB HBM3",
    ]
    assert [g["compute_capability"] for g in report["gpus"]] == [[7, 0], [8, 9], [9, 0]]
    assert [g["memory_total_mib"] for g in report["gpus"]] == [16384, 24564, 81559]
    assert report["problem"] is None


def test_driver_without_gpus(run_profile: Any) -> None:
    report, _, log = run_profile(driver="570.86.10", cuda=12080, gpus=[])
    assert report == {
        "driver_version": "570.86.10",
        "cuda_driver_version": "12.8",
        "gpus": [],
        "problem": None,
    }
    assert log.count("nvmlShutdown") == 1


@pytest.mark.parametrize(
    ("cuda", "expected"), [(11080, "11.8"), (12000, "12.0"), (12010, "12.1"), (13000, "13.0")]
)
def test_cuda_driver_version_format(run_profile: Any, cuda: int, expected: str) -> None:
    report, _, _ = run_profile(cuda=cuda, gpus=[A100])
    assert report["cuda_driver_version"] == expected


def test_no_profile_is_default_driver_and_no_gpus(fake_nvml_dir: Path) -> None:
    report, _ = _query(nvml_env(fake_nvml_dir, None))
    assert report == {
        "driver_version": "535.104.05",
        "cuda_driver_version": "12.2",
        "gpus": [],
        "problem": None,
    }


def test_memory_not_supported_keeps_the_gpu(run_profile: Any) -> None:
    report, _, _ = run_profile(gpus=[A100], device_errors={0: (NVML_ERROR_NOT_SUPPORTED, "memory")})
    assert report["gpus"] == [{**_gpu(0, A100), "memory_total_mib": None}]
    assert report["problem"] is None


# --- NVML not usable at all ---------------------------------------------------------------


def test_library_not_found(no_nvml_dir: Path, tmp_path: Path) -> None:
    profile = write_nvml_profile(tmp_path / "nvml.txt", gpus=[A100])
    report, _ = _query(nvml_env(no_nvml_dir, profile))
    assert report["driver_version"] is None
    assert report["cuda_driver_version"] is None
    assert report["gpus"] == []
    problem = _problem(report)
    assert problem is not None
    assert problem["code"] == "nvml-not-found"
    assert "no NVIDIA GPU" in problem["message"]
    assert "libnvidia-ml.so.1" in problem["message"]


def test_library_not_found_in_empty_dir(tmp_path: Path) -> None:
    """The plain "no driver" machine: nothing named libnvidia-ml anywhere we look."""
    import ctypes.util

    if ctypes.util.find_library("nvidia-ml") is not None:
        pytest.skip("a real libnvidia-ml is installed here; test_library_not_found covers it")
    empty = tmp_path / "empty"
    empty.mkdir()
    report, _ = _query(nvml_env(empty, None))
    assert report["gpus"] == []
    assert report["driver_version"] is None
    assert (_problem(report) or {})["code"] == "nvml-not-found"


@pytest.mark.parametrize(
    ("code", "problem_code", "message_part", "hint_part"),
    [
        (NVML_ERROR_DRIVER_NOT_LOADED, "nvml-driver-not-loaded", "not loaded", "nouveau"),
        (
            NVML_ERROR_LIB_RM_VERSION_MISMATCH,
            "nvml-driver-mismatch",
            "upgraded without a reboot",
            "reboot",
        ),
        (NVML_ERROR_NO_PERMISSION, "nvml-no-permission", "permission", "/dev/nvidia*"),
        (NVML_ERROR_UNINITIALIZED, "nvml-error", "Uninitialized (NVML error 1)", ""),
        (NVML_ERROR_UNKNOWN, "nvml-error", "Unknown Error (NVML error 999)", ""),
        (NVML_ERROR_GPU_IS_LOST, "nvml-error", "GPU is lost (NVML error 15)", ""),
    ],
)
def test_init_errors(
    run_profile: Any, code: int, problem_code: str, message_part: str, hint_part: str
) -> None:
    report, _, log = run_profile(init_error=code, gpus=[A100])
    assert report["driver_version"] is None
    assert report["cuda_driver_version"] is None
    assert report["gpus"] == []
    problem = _problem(report)
    assert problem is not None
    assert problem["code"] == problem_code
    assert message_part in problem["message"]
    assert hint_part in problem["hint"]
    assert "nvmlShutdown" not in log  # init failed: nothing to shut down


def test_error_code_unknown_to_the_binding_uses_nvml_error_string(run_profile: Any) -> None:
    report, _, _ = run_profile(init_error=77, gpus=[A100])
    problem = _problem(report)
    assert problem is not None
    assert problem["code"] == "nvml-error"
    assert "Fake NVML error (see the profile) (NVML error 77)" in problem["message"]


def test_device_count_error_keeps_the_driver(run_profile: Any) -> None:
    report, _, log = run_profile(driver="535.104.05", count_error=NVML_ERROR_NO_PERMISSION, gpus=[A100])
    assert report["driver_version"] == "535.104.05"
    assert report["cuda_driver_version"] == "12.2"
    assert report["gpus"] == []
    assert (_problem(report) or {})["code"] == "nvml-no-permission"
    assert log.count("nvmlShutdown") == 1


def test_driver_version_error_still_lists_gpus(run_profile: Any) -> None:
    report, _, _ = run_profile(driver_error=NVML_ERROR_UNKNOWN, gpus=[A100])
    assert report["driver_version"] is None
    assert report["cuda_driver_version"] == "12.2"
    assert report["gpus"] == [_gpu(0, A100)]
    problem = _problem(report)
    assert problem is not None
    assert problem["code"] == "nvml-error"
    assert "driver version" in problem["message"]


# --- one GPU failing ----------------------------------------------------------------------


def test_lost_gpu_is_left_out_and_named(run_profile: Any) -> None:
    report, _, log = run_profile(gpus=[A100, H100], device_errors={1: NVML_ERROR_GPU_IS_LOST})
    assert report["driver_version"] == "535.104.05"
    assert report["gpus"] == [_gpu(0, A100)]
    assert report["problem"] == {
        "code": "nvml-device-error",
        "message": "NVML could not read GPU 1 (GPU is lost (NVML error 15)); it is left out",
        "hint": "a lost GPU fell off the bus or hung: check `dmesg` for Xid errors; "
        "a GPU reset or a reboot usually brings it back",
    }
    assert log.count("nvmlShutdown") == 1


@pytest.mark.parametrize("call", ["name", "uuid", "memory", "cc"])
def test_gpu_lost_on_any_call_leaves_it_out(run_profile: Any, call: str) -> None:
    report, _, _ = run_profile(gpus=[V100, A100], device_errors={0: (NVML_ERROR_GPU_IS_LOST, call)})
    assert report["gpus"] == [_gpu(1, A100)]
    problem = _problem(report)
    assert problem is not None
    assert problem["code"] == "nvml-device-error"
    assert "GPU 0 " in problem["message"]


def test_two_failing_gpus_are_both_named(run_profile: Any) -> None:
    report, _, _ = run_profile(
        gpus=[A100, A100, H100],
        device_errors={0: NVML_ERROR_GPU_IS_LOST, 2: NVML_ERROR_UNKNOWN},
    )
    assert report["gpus"] == [_gpu(1, A100)]
    problem = _problem(report)
    assert problem is not None
    assert problem["message"] == (
        "NVML could not read GPU 0 (GPU is lost (NVML error 15)) and "
        "GPU 2 (Unknown Error (NVML error 999)); they are left out"
    )


# --- a wedged driver ----------------------------------------------------------------------


def test_hang_in_init_times_out_and_exits(run_profile: Any) -> None:
    report, elapsed, log = run_profile(timeout_s=0.5, hang="init", gpus=[A100])
    assert report == {
        "driver_version": None,
        "cuda_driver_version": None,
        "gpus": [],
        "problem": {
            "code": "nvml-timeout",
            "message": "NVML did not answer within 0.5 s",
            "hint": "the NVIDIA driver may be wedged: check `dmesg` for NVRM/Xid errors "
            "and whether `nvidia-smi` answers",
        },
    }
    assert "hang init" in log
    assert elapsed < 8, f"the process took {elapsed:.1f} s to exit"


def test_hang_in_a_device_call_keeps_what_was_read(run_profile: Any) -> None:
    report, elapsed, log = run_profile(timeout_s=0.5, hang="device 1", gpus=[A100, H100])
    assert report["driver_version"] == "535.104.05"
    assert report["cuda_driver_version"] == "12.2"
    assert report["gpus"] == [_gpu(0, A100)]
    assert (_problem(report) or {})["code"] == "nvml-timeout"
    assert "hang handle" in log
    assert elapsed < 8, f"the process took {elapsed:.1f} s to exit"


def test_hang_in_every_device_call(run_profile: Any) -> None:
    report, elapsed, _ = run_profile(timeout_s=0.5, hang="device", gpus=[A100])
    assert report["gpus"] == []
    assert report["driver_version"] == "535.104.05"
    assert (_problem(report) or {})["message"] == "NVML did not answer within 0.5 s"
    assert elapsed < 8


# --- the profile helper itself ------------------------------------------------------------


def test_profile_format(tmp_path: Path) -> None:
    path = write_nvml_profile(
        tmp_path / "p.txt",
        driver="550.1",
        cuda=12040,
        gpus=[A100, {"name": "NVIDIA L4", "cc": "8.9", "mem_mib": 23034, "uuid": "GPU-l4"}],
        count_error=None,
        device_errors={1: (NVML_ERROR_NOT_SUPPORTED, "memory")},
        hang="device 1",
    )
    assert path.read_text().splitlines() == [
        "driver 550.1",
        "cuda 12040",
        f"gpu 8.0 81920 {A100.uuid} NVIDIA A100-SXM4-80GB",
        "gpu 8.9 23034 GPU-l4 NVIDIA L4",
        "gpu_error 1 3 memory",
        "hang device 1",
    ]


def test_bad_profile_fails_loudly(fake_nvml_dir: Path, tmp_path: Path) -> None:
    """A typo in a profile must not pass as a healthy machine."""
    path = tmp_path / "bad.txt"
    path.write_text("driver 535.104.05\ngpuu 8.0 1 GPU-x A100\n")
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, "5"],
        env=nvml_env(fake_nvml_dir, path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "fake NVML: profile line 2: unknown directive" in result.stderr
    assert json.loads(result.stdout)["problem"]["code"] == "nvml-error"


# --- the binding itself -------------------------------------------------------------------


def _run_python(code: str, env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_the_module_does_not_load_pynvml(fake_nvml_dir: Path) -> None:
    code = "import sys, pip_gpu.detect.nvml; print('pynvml' in sys.modules)"
    assert _run_python(code, nvml_env(fake_nvml_dir, None)) == "False"


def test_missing_binding_is_a_problem_not_a_traceback(fake_nvml_dir: Path) -> None:
    code = (
        "import sys; sys.modules['pynvml'] = None\n"
        "from pip_gpu.detect.nvml import query_nvml\n"
        "r = query_nvml(); print(r.problem.code, r.gpus, r.driver_version)"
    )
    assert _run_python(code, nvml_env(fake_nvml_dir, None)) == "nvml-error () None"


def test_the_binding_loads_without_ctypes_util_and_leaves_the_real_one_for_later(
    fake_nvml_dir: Path, tmp_path: Path
) -> None:
    """pynvml imports ``ctypes.util`` (and with it subprocess, tempfile, shutil) and never calls
    it: detection goes without them, and a later ``import ctypes.util`` is the real module."""
    code = (
        "import sys\n"
        "from pip_gpu.detect.nvml import query_nvml\n"
        "r = query_nvml()\n"
        "print(r.driver_version, len(r.gpus), r.problem)\n"
        "print(sorted(m for m in ('ctypes.util', 'subprocess', 'tempfile', 'shutil') if m in sys.modules))\n"
        "import ctypes, ctypes.util\n"
        "print(ctypes.util is sys.modules['ctypes.util'], ctypes.util.find_library('c'))\n"
    )
    profile = write_nvml_profile(tmp_path / "nvml.txt", gpus=[A100])
    driver, loaded, real = _run_python(code, nvml_env(fake_nvml_dir, profile)).splitlines()
    assert driver == "535.104.05 1 None"
    assert loaded == "[]"
    assert real.startswith("True libc.so")
