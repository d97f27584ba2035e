"""The real torch 2.14.1 CUDA 13.0 wheel from PyPI: its binary, its knowledge row, doctor on it.

The wheel (555 MB) is taken from this machine's local mirror, ``$PIP_GPU_TEST_TORCH_WHEEL``,
or a cache; when none has it, ``pip download torch==2.14.1 --no-deps`` fetches it into the
cache. If that fails too the tests fail: they are never skipped.

The expected answer comes from two independent places: NVIDIA's ``cuobjdump --list-elf`` on a
real H200 machine (``fixtures/recorded/h200/log.txt``, torch 2.11.0+cu130, the same arch list),
and the audit of the wheels (``AUDIT-2026-11.md`` §4.3: SASS 7.5-12.0, no PTX, a few special
kernels for sm_89, sm_103 and sm_121).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from support.fake_nvml import FakeGpu
from support.index import make_venv, site_packages
from test_doctor import doctor_run

from pip_gpu.cli import main
from pip_gpu.compiled import read_compiled_archs

WHEEL_NAME = "torch-2.14.1-cp311-cp311-manylinux_2_28_x86_64.whl"
MIRROR = Path("/opt/pypi-more/files")
RECORDED = Path(__file__).parent.parent / "fixtures" / "recorded" / "h200" / "log.txt"
H200 = FakeGpu("NVIDIA H200", "9.0", 143771, "GPU-6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")


def _cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pip-gpu-tests" / "wheels"


@pytest.fixture(scope="session")
def real_torch_wheel() -> Path:
    for candidate in (os.environ.get("PIP_GPU_TEST_TORCH_WHEEL"), MIRROR / WHEEL_NAME, _cache() / WHEEL_NAME):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    cache = _cache()
    cache.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", "torch==2.14.1", "--no-deps", "--only-binary", ":all:",
        "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64", "--dest", str(cache),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1800)
    wheel = cache / WHEEL_NAME
    if done.returncode != 0 or not wheel.is_file():
        pytest.fail(f"the real torch wheel is needed and could not be downloaded:\n{done.stderr[-2000:]}")
    return wheel


@pytest.fixture(scope="session")
def torch_env(real_torch_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding the wheel's own metadata, version.py and libtorch_cuda.so.

    Only the files doctor reads are unpacked (installing all 1.5 GB would cost a minute and
    test nothing more here); they are the wheel's bytes, untouched.
    """
    python = make_venv(tmp_path_factory.mktemp("real-torch") / "venv", with_pip=False)
    target = site_packages(python)
    with zipfile.ZipFile(real_torch_wheel) as archive:
        wanted = [
            n
            for n in archive.namelist()
            if n in ("torch/__init__.py", "torch/version.py", "torch/lib/libtorch_cuda.so")
            or (n.startswith("torch-2.14.1.dist-info/") and n.count("/") == 1 and not n.endswith("/"))
        ]
        archive.extractall(target, members=wanted)
    return python


def _recorded_general_archs() -> set[str]:
    """The architectures cuobjdump listed with the full kernel count on the real H200 machine."""
    text = RECORDED.read_text(encoding="utf-8")
    listing = text.split("== cuobjdump --list-elf", 1)[1].split("==", 1)[0]
    counts: Counter[str] = Counter()
    for count, arch in re.findall(r"^\s*(\d+) sm_(\d+)a?$", listing, flags=re.MULTILINE):
        counts[arch] += int(count)
    most = max(counts.values())
    return {f"{int(a[:-1])}.{a[-1]}" for a, n in counts.items() if n >= most / 2}


def test_real_library_has_the_recorded_architectures(torch_env: Path) -> None:
    library = site_packages(torch_env) / "torch" / "lib" / "libtorch_cuda.so"
    found = read_compiled_archs(library)
    sass = found.to_json()["sass"]
    assert sass == ["7.5", "8.0", "8.6", "9.0", "10.0", "12.0"]
    assert set(sass) == _recorded_general_archs()
    assert found.to_json()["sass_partial"] == ["8.9", "10.3", "12.1"]
    assert found.ptx == ()


def test_doctor_reports_the_compiled_architectures_from_the_binary(
    torch_env: Path, fake_nvml_dir: Path, tmp_path: Path
) -> None:
    out = doctor_run(tmp_path, fake_nvml_dir, python=torch_env, gpus=(H200,), driver="580.159.04", cuda=13000)
    assert out.data["compiled_archs"] == {
        "sass": ["7.5", "8.0", "8.6", "9.0", "10.0", "12.0"],
        "ptx": [],
        "sass_partial": ["8.9", "10.3", "12.1"],
        "source": "binary",
        "path": str(site_packages(torch_env) / "torch" / "lib" / "libtorch_cuda.so"),
    }
    arch = out.finding("gpu-arch")
    assert arch["status"] == "ok", arch
    assert arch["summary"] == "torch 2.14.1 covers NVIDIA H200"
    assert any("libtorch_cuda.so" in line and "sm_90" in line for line in arch["evidence"])


def test_knowledge_verify_on_the_real_wheel(
    real_torch_wheel: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The corrected 2.14 row (Python 3.10-3.14, cu130, SASS 7.5-12.0) is what the wheel says."""
    rc = main(["knowledge", "verify", "--json", str(real_torch_wheel)])
    report = json.loads(capsys.readouterr().out)
    (row,) = report["wheels"]
    assert (row["torch"], row["cuda"], row["variant"], row["platform"]) == (
        "2.14.1+cu130",
        "13.0",
        "cu130",
        "linux-x86_64",
    )
    assert row["compiled_archs"]["sass"] == ["7.5", "8.0", "8.6", "9.0", "10.0", "12.0"]
    assert row["requires_python"] == ">=3.10"
    assert row["differences"] == []
    assert rc == 0
