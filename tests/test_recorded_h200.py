"""Replays a real GPU host: an NVIDIA H200 (driver 580.159.04, sm_90) with torch 2.11.0+cu130.

``fixtures/recorded/h200/`` holds what that machine answered on 2026-11-30, recorded by
``fixtures/recorded/h200/record.sh``: NVML call by call (``nvml.json``), nvidia-smi and the
kernel module (``host.txt``), ``pip-gpu detect/explain/doctor --import --json`` and a real
``torch.cuda.is_available()`` (``torch.json``). The replays feed the recorded answers to the
real code paths (the nvidia-ml-py binding over the fake library, a stand-in ``nvidia-smi``, a
target environment whose torch carries the recorded ``version.py``) and check pip-gpu says
what the real machine's facts imply.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from support.fake_nvml import FakeGpu, nvml_env, write_nvml_profile
from support.index import make_venv, pip_env, site_packages
from test_doctor import fake_machine

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded" / "h200"


def _recorded(name: str) -> Any:
    return json.loads((RECORDED / name).read_text(encoding="utf-8"))


def _section(title: str) -> str:
    """One ``== title`` section of host.txt, without its heading."""
    text = (RECORDED / "host.txt").read_text(encoding="utf-8")
    body = text.split(f"== {title}\n", 1)[1]
    return body.split("\n== ", 1)[0]


def _recorded_gpus() -> list[FakeGpu]:
    nvml = _recorded("nvml.json")
    return [
        FakeGpu(
            gpu["name"],
            "{}.{}".format(*gpu["compute_capability"]),
            gpu["memory_total"] // (1024 * 1024),
            gpu["uuid"],
        )
        for gpu in nvml["gpus"]
    ]


def _env(tmp_path: Path, fake_nvml_dir: Path) -> dict[str, str]:
    nvml = _recorded("nvml.json")
    base = {k: v for k, v in pip_env().items() if not k.startswith(("PIP_GPU_", "CUDA_", "NVIDIA_"))}
    base.pop("PYTHONPATH", None)
    base["PYTHONNOUSERSITE"] = "1"
    base.update(
        fake_machine(tmp_path / "machine", nvidia_proc_version=_section("/proc/driver/nvidia/version"))
    )
    profile = write_nvml_profile(
        tmp_path / "nvml.txt", driver=nvml["driver"], cuda=nvml["cuda_driver_version"], gpus=_recorded_gpus()
    )
    return nvml_env(fake_nvml_dir, profile, base=base)


def _pip_gpu(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip_gpu", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


NVIDIA_FIELDS = ("driver_version", "cuda_driver_version", "nvidia_gpus", "problems")


def test_detect_through_nvml_reports_what_the_h200_reported(fake_nvml_dir: Path, tmp_path: Path) -> None:
    done = _pip_gpu(_env(tmp_path, fake_nvml_dir), tmp_path, "detect", "--json")
    assert done.returncode == 0, done.stderr
    detected, recorded = json.loads(done.stdout), _recorded("detect.json")
    assert {k: detected[k] for k in NVIDIA_FIELDS} == {k: recorded[k] for k in NVIDIA_FIELDS}
    assert detected["sources"]["nvidia_gpus"] == recorded["sources"]["nvidia_gpus"] == "nvml"


def test_detect_through_nvidia_smi_reads_the_h200s_real_output(tmp_path: Path) -> None:
    """With NVML gone, the recorded nvidia-smi output gives the same GPU and driver."""
    from pip_gpu.detect.nvidia_smi import query_nvidia_smi

    query, log = _section("nvidia-smi --query-gpu"), _section("nvidia-smi -q -d COMPUTE")
    smi = tmp_path / "nvidia-smi"
    (tmp_path / "query.txt").write_text(query, encoding="utf-8")
    (tmp_path / "log.txt").write_text(log, encoding="utf-8")
    smi.write_text(
        "#!/bin/sh\n"
        f'case "$1" in --query-gpu=*) cat "{tmp_path}/query.txt";; *) cat "{tmp_path}/log.txt";; esac\n'
    )
    smi.chmod(smi.stat().st_mode | stat.S_IXUSR)
    report = query_nvidia_smi(executable=str(smi))
    recorded = _recorded("detect.json")
    assert report.problem is None
    assert report.driver_version == recorded["driver_version"]
    assert report.cuda_driver_version == recorded["cuda_driver_version"]
    [gpu] = report.gpus
    [want] = recorded["nvidia_gpus"]
    assert (gpu.name, gpu.uuid, gpu.memory_total_mib) == (
        want["name"],
        want["uuid"],
        want["memory_total_mib"],
    )
    assert "{}.{}".format(*gpu.compute_capability) == want["compute_capability"]


def test_explain_for_the_recorded_host_chooses_what_ran_there(fake_nvml_dir: Path, tmp_path: Path) -> None:
    """torch 2.11.0 on the H200: the cu130 build, which torch.cuda.is_available() confirmed."""
    torch = _recorded("torch.json")
    assert torch["is_available"] and torch["cuda"] == "13.0"
    done = _pip_gpu(_env(tmp_path, fake_nvml_dir), tmp_path, "explain", "torch==2.11.0", "--json")
    assert done.returncode == 0, done.stderr
    decision, recorded = json.loads(done.stdout), _recorded("explain.json")
    assert decision["variant"] == recorded["variant"] == "cu130" == "cu" + torch["cuda"].replace(".", "")
    assert decision["torch"] == recorded["torch"] == torch["version"].split("+")[0]


def _install_recorded_torch(tmp_path: Path) -> Path:
    """A target whose torch is laid out as the H200's was: metadata version ``2.11.0`` with no
    local label (as pip list showed there) and the recorded ``torch/version.py``."""
    torch = _recorded("torch.json")
    python = make_venv(tmp_path / "venv", with_pip=False)
    site = site_packages(python)
    version = torch["version"].split("+")[0]
    package = site / "torch"
    package.mkdir()
    (package / "__init__.py").write_text("from .version import __version__\n")
    (package / "version.py").write_text(torch["version_py"])
    info = site / f"torch-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n")
    (info / "INSTALLER").write_text("pip\n")
    (info / "RECORD").write_text(
        "".join(
            f"{p},,\n"
            for p in (
                "torch/__init__.py",
                "torch/version.py",
                *(f"{info.name}/{n}" for n in ("METADATA", "INSTALLER")),
            )
        )
        + f"{info.name}/RECORD,,\n"
    )
    return python


def test_doctor_reads_the_recorded_version_py_as_a_cuda_build(fake_nvml_dir: Path, tmp_path: Path) -> None:
    """The H200's real torch writes ``cuda: Optional[str] = '13.0'``: doctor must see a CUDA
    13.0 build that runs on driver 580 and sm_90, not the CPU-only build it once reported."""
    python = _install_recorded_torch(tmp_path)
    env = _env(tmp_path, fake_nvml_dir)
    done = _pip_gpu(env, tmp_path, "doctor", "--json", "--python", str(python))
    report = json.loads(done.stdout)
    findings = {f["check"]: f for f in report["findings"]}
    assert findings["torch"]["status"] == "ok", findings["torch"]
    assert "13.0" in findings["torch"]["summary"] + " ".join(findings["torch"]["evidence"])
    assert findings["driver"]["status"] == "ok", findings["driver"]
    assert findings["gpu-arch"]["status"] == "ok", findings["gpu-arch"]
    assert done.returncode == 0 and report["healthy"], done.stdout
