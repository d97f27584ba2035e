"""Run the real nvidia-ml-py binding against a fake ``libnvidia-ml.so.1``.

The fake (``fixtures/fake_nvml/fake_nvml.c``) is compiled once per test session and
loaded through ``LD_LIBRARY_PATH`` in a subprocess: pynvml caches the library per
process, so each scenario needs its own process. Use from a test module::

    from support import fake_nvml
    from support.fake_nvml import A100, nvml_env, write_nvml_profile

    fake_nvml_dir = fake_nvml.fake_nvml_dir  # the session fixture, in this module

    def test_x(fake_nvml_dir, tmp_path):
        profile = write_nvml_profile(tmp_path / "nvml.txt", gpus=[A100])
        env = nvml_env(fake_nvml_dir, profile)
        subprocess.run([sys.executable, "-m", "pip_gpu", "detect", "--json"], env=env)
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import pytest

__all__ = [
    "A100",
    "H100",
    "LOG_ENV",
    "PROFILE_ENV",
    "RTX_4090",
    "V100",
    "FakeGpu",
    "build_fake_nvml",
    "fake_nvml_dir",
    "host_env",
    "no_nvml_dir",
    "nvml_env",
    "read_nvml_log",
    "write_nvml_profile",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = REPO_ROOT / "plugin"
FAKE_NVML_SOURCE = REPO_ROOT / "fixtures" / "fake_nvml" / "fake_nvml.c"
LIBRARY_NAME = "libnvidia-ml.so.1"
PROFILE_ENV = "PIP_GPU_FAKE_NVML_PROFILE"
LOG_ENV = "PIP_GPU_FAKE_NVML_LOG"

# nvmlReturn_t codes, for profiles (same values as pynvml.NVML_ERROR_*).
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_UNKNOWN = 999

_DEVICE_CALLS = ("handle", "name", "uuid", "memory", "cc")
_HANG_POINTS = ("init", "driver", "cuda", "count", "device")


@dataclass(frozen=True)
class FakeGpu:
    """One GPU of a fake NVML profile, as NVML will report it."""

    name: str  # exactly what nvmlDeviceGetName returns
    cc: str  # compute capability "MAJOR.MINOR"
    mem_mib: int  # total memory in MiB
    uuid: str

    def profile_line(self) -> str:
        if not self.name.strip() or "\n" in self.name:
            raise ValueError(f"GPU name must be one non-empty line: {self.name!r}")
        if not self.uuid or any(c.isspace() for c in self.uuid):
            raise ValueError(f"UUID must be one word: {self.uuid!r}")
        major, dot, minor = self.cc.partition(".")
        if not (dot and major.isdigit() and minor.isdigit()):
            raise ValueError(f"cc must be MAJOR.MINOR: {self.cc!r}")
        return f"gpu {self.cc} {int(self.mem_mib)} {self.uuid} {self.name}"


# Real names and memory sizes as NVML reports them on these boards.
A100 = FakeGpu("NVIDIA A100-SXM4-80GB", "8.0", 81920, "GPU-4a1c0e3b-7d2f-4f0e-9a55-3c1b2d4e5f60")
V100 = FakeGpu("Tesla V100-SXM2-16GB", "7.0", 16384, "GPU-0b5e7c1d-2a3f-4b6c-8d9e-0f1a2b3c4d5e")
RTX_4090 = FakeGpu("NVIDIA GeForce RTX 4090", "8.9", 24564, "GPU-9f8e7d6c-5b4a-4392-8170-6e5d4c3b2a19")
H100 = FakeGpu("NVIDIA H100 80GB HBM3", "9.0", 81559, "GPU-1d2c3b4a-5e6f-4708-9a1b-2c3d4e5f6a7b")

GpuSpec = Union[FakeGpu, Mapping[str, object]]
DeviceError = Union[int, tuple[int, str]]


def _as_gpu(spec: GpuSpec) -> FakeGpu:
    if isinstance(spec, FakeGpu):
        return spec
    return FakeGpu(
        name=str(spec["name"]),
        cc=str(spec["cc"]),
        mem_mib=int(str(spec["mem_mib"])),
        uuid=str(spec["uuid"]),
    )


def write_nvml_profile(
    path: Union[str, os.PathLike[str]],
    *,
    driver: str = "535.104.05",
    cuda: int = 12020,
    gpus: Sequence[GpuSpec] = (),
    init_error: Optional[int] = None,
    hang: Optional[str] = None,
    device_errors: Mapping[int, DeviceError] = {},
    count_error: Optional[int] = None,
    driver_error: Optional[int] = None,
    cuda_error: Optional[int] = None,
) -> Path:
    """Write a fake NVML profile (format: fixtures/fake_nvml/README.md); returns its path.

    ``device_errors`` maps a GPU index to an NVML error code (its handle lookup fails) or
    to ``(code, call)`` with call one of handle/name/uuid/memory/cc. ``hang`` is one of
    init/driver/cuda/count/device, or ``"device N"`` for one GPU only.
    """
    lines = [f"driver {driver}", f"cuda {int(cuda)}"]
    for key, code in (
        ("init_error", init_error),
        ("driver_error", driver_error),
        ("cuda_error", cuda_error),
        ("count_error", count_error),
    ):
        if code is not None:
            lines.append(f"{key} {int(code)}")
    gpu_list = [_as_gpu(g) for g in gpus]
    lines.extend(g.profile_line() for g in gpu_list)
    for index, error in sorted(device_errors.items()):
        code, call = (error, "handle") if isinstance(error, int) else error
        if not 0 <= index < len(gpu_list) or call not in _DEVICE_CALLS:
            raise ValueError(f"bad device error {index}: {error!r}")
        lines.append(f"gpu_error {index} {int(code)} {call}")
    if hang is not None:
        point, _, index_text = hang.partition(" ")
        if point not in _HANG_POINTS or (index_text and point != "device"):
            raise ValueError(f"bad hang point: {hang!r}")
        lines.append(f"hang {hang}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def build_fake_nvml(out_dir: Union[str, os.PathLike[str]]) -> Path:
    """Compile the fake into ``out_dir/libnvidia-ml.so.1``; returns ``out_dir``."""
    compiler = os.environ.get("CC", "cc")
    if shutil.which(compiler) is None:
        pytest.fail(
            f"no C compiler ({compiler!r} not on PATH): the fake NVML library is built at test "
            "time; install gcc (CI does) or set CC",
            pytrace=False,
        )
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    cmd = [
        compiler,
        "-shared",
        "-fPIC",
        "-Wall",
        "-o",
        str(directory / LIBRARY_NAME),
        str(FAKE_NVML_SOURCE),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(
            f"compiling the fake NVML library failed: {' '.join(cmd)}\n{result.stderr}",
            pytrace=False,
        )
    return directory


@pytest.fixture(scope="session")
def fake_nvml_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory holding the fake libnvidia-ml.so.1 (compiled once per session)."""
    yield build_fake_nvml(tmp_path_factory.mktemp("fake_nvml"))


@pytest.fixture(scope="session")
def no_nvml_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory whose libnvidia-ml.so.1 cannot load: NVML "not found" on any machine.

    An empty directory is not enough where a real driver is installed (the loader falls
    back to the system copy); an empty file stops the search with "file too short".
    """
    directory = tmp_path_factory.mktemp("no_nvml")
    (directory / LIBRARY_NAME).write_bytes(b"")
    yield directory


def nvml_env(
    fake_nvml_dir: Union[str, os.PathLike[str]],
    profile_path: Optional[Union[str, os.PathLike[str]]],
    *,
    log_path: Optional[Union[str, os.PathLike[str]]] = None,
    base: Optional[Mapping[str, str]] = None,
) -> dict[str, str]:
    """A copy of os.environ (or ``base``) for a subprocess that loads the fake NVML.

    Also puts the repository's ``plugin`` directory first on PYTHONPATH so the subprocess
    imports this checkout's pip_gpu. ``profile_path=None`` means no profile (the fake
    then reports zero GPUs on its default driver). ``log_path`` makes the fake append
    every call it receives to that file (see :func:`read_nvml_log`).
    """
    env = dict(os.environ if base is None else base)
    env["LD_LIBRARY_PATH"] = _prepend(str(fake_nvml_dir), env.get("LD_LIBRARY_PATH"))
    env["PYTHONPATH"] = _prepend(str(PLUGIN_DIR), env.get("PYTHONPATH"))
    env.pop(PROFILE_ENV, None)
    env.pop(LOG_ENV, None)
    if profile_path is not None:
        env[PROFILE_ENV] = str(profile_path)
    if log_path is not None:
        env[LOG_ENV] = str(log_path)
    return env


@pytest.fixture
def host_env(tmp_path: Path, fake_nvml_dir: Path) -> Callable[..., dict[str, str]]:
    """An environment factory for a ``pip-gpu`` subprocess on a made-up host.

    ``host_env(**profile)``: the fake NVML with that profile (see :func:`write_nvml_profile`),
    empty sysfs and procfs trees (``PIP_GPU_SYSFS_ROOT``/``PIP_GPU_PROCFS_ROOT``), no
    ``nvidia-smi`` on PATH and no ``PIP_GPU_*`` or ``CUDA_VISIBLE_DEVICES`` from this machine.
    """

    def make(**profile: Any) -> dict[str, str]:
        path = write_nvml_profile(tmp_path / "nvml.txt", **profile)
        env = nvml_env(fake_nvml_dir, path)
        for name in list(env):
            if (name.startswith("PIP_GPU_") and "FAKE_NVML" not in name) or name == "CUDA_VISIBLE_DEVICES":
                del env[name]
        (tmp_path / "sys").mkdir(exist_ok=True)
        (tmp_path / "proc").mkdir(exist_ok=True)
        env["PIP_GPU_SYSFS_ROOT"] = str(tmp_path / "sys")
        env["PIP_GPU_PROCFS_ROOT"] = str(tmp_path / "proc")
        env["PATH"] = "/usr/bin:/bin"  # no nvidia-smi
        return env

    return make


def read_nvml_log(log_path: Union[str, os.PathLike[str]]) -> list[str]:
    """The calls the fake received, one per line (``[]`` if it was never called)."""
    path = Path(log_path)
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def _prepend(first: str, rest: Optional[str]) -> str:
    return first if not rest else first + os.pathsep + rest
