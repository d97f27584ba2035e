"""NVML boundary: the NVIDIA driver's own answer about the driver and its GPUs.

NVML (``libnvidia-ml``, through the ``nvidia-ml-py`` binding) ships with the driver, so it
answers even where no CUDA toolkit or PyTorch is installed. Everything that can go wrong
(no driver, module not loaded, upgraded driver without reboot, a wedged GPU) becomes a
:class:`~pip_gpu.host.HostProblem`, never a traceback, and a hung driver cannot hang us:
the calls run in a daemon thread with a deadline.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

from ..host import HostProblem, NvidiaGpu

__all__ = ["NvmlReport", "library_name", "query_nvml"]

# nvmlReturn_t values (nvml.h; stable ABI, so no need to read them off the binding).
_NO_PERMISSION = 4
_NOT_SUPPORTED = 3
_DRIVER_NOT_LOADED = 9
_LIBRARY_NOT_FOUND = 12
_FUNCTION_NOT_FOUND = 13
_GPU_IS_LOST = 15
_LIB_RM_VERSION_MISMATCH = 18

_MIB = 1024 * 1024
_T = TypeVar("_T")


@dataclass(frozen=True)
class NvmlReport:
    """What NVML said, as far as it got; ``problem`` is None when it answered fully."""

    driver_version: Optional[str]  # "535.104.05"
    cuda_driver_version: Optional[str]  # "12.2": newest CUDA the driver supports
    gpus: tuple[NvidiaGpu, ...]  # every device, index order
    problem: Optional[HostProblem]


def query_nvml(timeout_s: float = 2.0) -> NvmlReport:
    """Ask NVML for the driver and GPUs, giving up after ``timeout_s`` seconds.

    A wedged driver can block NVML calls forever, so they run in a daemon thread that
    is abandoned on timeout (it cannot keep the process alive). What was read before
    the deadline (typically the driver version) is still reported.
    """
    try:
        pynvml = _import_binding()
    except ImportError as exc:
        return NvmlReport(
            None,
            None,
            (),
            HostProblem(
                "nvml-error",
                f"the NVML binding (nvidia-ml-py, module pynvml) cannot be imported: {exc}",
                "reinstall pip-gpu so that its nvidia-ml-py dependency is installed",
            ),
        )

    progress = _Progress()
    worker = threading.Thread(target=_collect, args=(pynvml, progress), name="pip-gpu-nvml", daemon=True)
    worker.start()
    if not progress.done.wait(timeout_s):
        return progress.report(
            HostProblem(
                "nvml-timeout",
                f"NVML did not answer within {timeout_s:g} s",
                "the NVIDIA driver may be wedged: check `dmesg` for NVRM/Xid errors "
                "and whether `nvidia-smi` answers",
            )
        )
    return progress.report()


def _import_binding() -> Any:
    """``import pynvml`` (here, not at the top: start-up time), without ``ctypes.util``.

    The binding imports ``ctypes.util.find_library`` and never calls it on Linux; that module
    imports subprocess, tempfile and shutil (with random, bz2, lzma), a third of the binding's
    cost on every ``detect`` and ``explain``. A stand-in whose ``find_library`` loads the real
    module when called takes its place during the import only: any later ``import ctypes.util``
    gets the real module.
    """
    if "pynvml" in sys.modules or "ctypes.util" in sys.modules:
        import pynvml  # type: ignore[import-untyped]

        return pynvml
    import ctypes
    import importlib
    import types

    stand_in = types.ModuleType("ctypes.util", "pip-gpu's stand-in while pynvml loads")

    def find_library(name: str) -> Optional[str]:
        if sys.modules.get("ctypes.util") is stand_in:
            del sys.modules["ctypes.util"]
        found: Optional[str] = importlib.import_module("ctypes.util").find_library(name)
        return found

    stand_in.find_library = find_library  # type: ignore[attr-defined]
    sys.modules["ctypes.util"] = stand_in
    try:
        import pynvml
    finally:
        if sys.modules.get("ctypes.util") is stand_in:
            del sys.modules["ctypes.util"]
        if getattr(ctypes, "util", None) is stand_in:
            delattr(ctypes, "util")
    return pynvml


class _Progress:
    """What the worker thread has read so far (shared with the waiting caller)."""

    def __init__(self) -> None:
        self.driver: Optional[str] = None
        self.cuda: Optional[str] = None
        self.gpus: list[NvidiaGpu] = []
        self.problems: list[HostProblem] = []
        self.done = threading.Event()

    def report(self, override: Optional[HostProblem] = None) -> NvmlReport:
        problem = override if override is not None else next(iter(self.problems), None)
        return NvmlReport(self.driver, self.cuda, tuple(self.gpus), problem)


def _collect(nvml: Any, progress: _Progress) -> None:
    """The worker thread: init, read everything, always shut down after a good init."""
    try:
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            progress.problems.append(_problem(exc, "initialising"))
            return
        try:
            _read_system(nvml, progress)
            _read_devices(nvml, progress)
        finally:
            with contextlib.suppress(nvml.NVMLError):  # nothing to report, nor to do
                nvml.nvmlShutdown()
    except Exception as exc:  # a binding surprise must still end as a report
        progress.problems.append(HostProblem("nvml-error", f"unexpected error while querying NVML: {exc!r}"))
    finally:
        progress.done.set()


def _read_system(nvml: Any, progress: _Progress) -> None:
    try:
        progress.driver = _text(nvml.nvmlSystemGetDriverVersion())
    except nvml.NVMLError as exc:
        progress.problems.append(_problem(exc, "reading the driver version"))
    try:
        try:
            version = int(nvml.nvmlSystemGetCudaDriverVersion_v2())
        except (AttributeError, nvml.NVMLError_FunctionNotFound):  # older binding or driver
            version = int(nvml.nvmlSystemGetCudaDriverVersion())
        progress.cuda = f"{version // 1000}.{version % 1000 // 10}"  # 12020 -> "12.2"
    except nvml.NVMLError as exc:
        progress.problems.append(_problem(exc, "reading the CUDA version the driver supports"))


def _read_devices(nvml: Any, progress: _Progress) -> None:
    """Read every GPU; one that fails is left out and named, the others are kept."""
    try:
        count = int(nvml.nvmlDeviceGetCount())
    except nvml.NVMLError as exc:
        progress.problems.append(_problem(exc, "counting the GPUs"))
        return
    failures: list[tuple[int, Any]] = []
    for index in range(count):
        try:
            progress.gpus.append(_read_device(nvml, index))
        except nvml.NVMLError as exc:
            failures.append((index, exc))
    if failures:
        progress.problems.append(_device_problem(failures))


def _read_device(nvml: Any, index: int) -> NvidiaGpu:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    name = _text(nvml.nvmlDeviceGetName(handle))
    major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
    uuid = _optional(nvml, lambda: _text(nvml.nvmlDeviceGetUUID(handle)))
    memory = _optional(nvml, lambda: int(nvml.nvmlDeviceGetMemoryInfo(handle).total))
    return NvidiaGpu(
        index=index,
        name=name,
        compute_capability=(int(major), int(minor)),
        source="nvml",
        memory_total_mib=None if memory is None else memory // _MIB,
        uuid=uuid,
        visible=True,
    )


def _optional(nvml: Any, read: Callable[[], _T]) -> Optional[_T]:
    """A detail some GPUs do not have (NOT_SUPPORTED -> None); other errors propagate."""
    try:
        return read()
    except nvml.NVMLError as exc:
        if getattr(exc, "value", None) == _NOT_SUPPORTED:
            return None
        raise


def _text(value: Any) -> str:
    """Older bindings return bytes, newer ones str."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _describe(exc: Any) -> str:
    """``GPU is lost (NVML error 15)``; str() of an NVMLError may call into the library."""
    code = getattr(exc, "value", None)
    try:
        text = str(exc)
    except Exception:
        text = type(exc).__name__
    return f"{text} (NVML error {code})" if code is not None else text


def library_name() -> str:
    """The NVML library the binding loads: where detection looks for the driver first."""
    return "nvml.dll" if sys.platform.startswith("win") else "libnvidia-ml.so.1"


def _problem(exc: Any, during: str) -> HostProblem:
    """Map an NVML error to a stable code, with what the user can do about it."""
    code = getattr(exc, "value", None)
    if code == _LIBRARY_NOT_FOUND:
        return HostProblem(
            "nvml-not-found",
            f"the NVIDIA driver is not installed ({library_name()} was not found), "
            "so this machine is treated as having no NVIDIA GPU",
            "if it has one, install the NVIDIA driver, which provides NVML",
        )
    if code == _DRIVER_NOT_LOADED:
        return HostProblem(
            "nvml-driver-not-loaded",
            "the NVIDIA driver is installed but its kernel module is not loaded",
            "load it (`sudo modprobe nvidia`); if `lsmod` shows nouveau, the open-source "
            "driver is in use instead and must be disabled",
        )
    if code == _LIB_RM_VERSION_MISMATCH:
        return HostProblem(
            "nvml-driver-mismatch",
            "NVIDIA driver/library version mismatch: the driver was upgraded without a "
            "reboot, so the loaded kernel module and libnvidia-ml differ",
            "reboot the machine (or reload the nvidia kernel modules)",
        )
    if code == _NO_PERMISSION:
        return HostProblem(
            "nvml-no-permission",
            f"NVML has no permission to talk to the NVIDIA driver while {during}",
            "check the permissions on /dev/nvidia* (in a container, pass the devices in)",
        )
    return HostProblem("nvml-error", f"NVML failed while {during}: {_describe(exc)}")


def _device_problem(failures: list[tuple[int, Any]]) -> HostProblem:
    parts = [f"GPU {index} ({_describe(exc)})" for index, exc in failures]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    left_out = "it is" if len(parts) == 1 else "they are"
    codes = {getattr(exc, "value", None) for _, exc in failures}
    if _GPU_IS_LOST in codes:
        hint = (
            "a lost GPU fell off the bus or hung: check `dmesg` for Xid errors; "
            "a GPU reset or a reboot usually brings it back"
        )
    elif _NO_PERMISSION in codes:
        hint = "check the permissions on /dev/nvidia*"
    else:
        hint = "run `nvidia-smi` to see the state of that GPU"
    return HostProblem(
        "nvml-device-error",
        f"NVML could not read {listed}; {left_out} left out",
        hint,
    )
