"""NVIDIA GPUs and driver versions from the ``nvidia-smi`` command.

The fallback when NVML cannot be loaded in-process (and a second opinion when it can). It runs
at most two bounded subprocesses, kills the whole process group on timeout (a hung driver
otherwise leaves ``nvidia-smi`` stuck in the kernel, holding our pipes), and turns every
failure into a :class:`HostProblem` instead of raising.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from typing import Optional, Union

from ..host import HostProblem, NvidiaGpu, parse_compute_capability

__all__ = ["QUERY_FIELDS", "SmiReport", "query_nvidia_smi"]

SOURCE = "nvidia-smi"
QUERY_FIELDS = ("index", "name", "compute_cap", "memory.total", "uuid", "driver_version")
_QUERY_ARGS = (f"--query-gpu={','.join(QUERY_FIELDS)}", "--format=csv,noheader,nounits")
# The log's header carries the driver and CUDA versions; -d COMPUTE keeps the rest short.
_LOG_ARGS = ("-q", "-d", "COMPUTE")
# From driver R610 on nvidia-smi says "KMD Version" and "CUDA UMD Version"; "Driver Version" and
# "CUDA Version" are deprecated in ``-q`` (to be removed in CUDA 14.0) and gone from the banner
# (docs.nvidia.com/deploy/nvidia-smi: "deprecated Driver Version and CUDA Version in favor of KMD
# Version and CUDA UMD Version"). The new spelling first, the old one for older drivers.
_DRIVER_KEYS = ("KMD Version", "Driver Version")
_CUDA_KEYS = ("CUDA UMD Version", "CUDA Version")
_NOT_AVAILABLE = frozenset({"", "n/a", "[n/a]", "[not supported]", "not supported", "[unknown]"})
_VERSION_RE = re.compile(r"^\d+\.\d+(?:\.\d+)*$")
_KILL_GRACE_S = 1.0
_WINDOWS_FALLBACKS = (
    r"C:\Windows\System32\nvidia-smi.exe",
    r"C:\Program Files\NVIDIA Corporation\NVSMI\nvidia-smi.exe",
)


@dataclass(frozen=True)
class SmiReport:
    """What nvidia-smi said; ``problem`` set when it could not say all of it."""

    driver_version: Optional[str] = None
    cuda_driver_version: Optional[str] = None  # "12.2": newest CUDA the driver supports
    gpus: tuple[NvidiaGpu, ...] = ()
    problem: Optional[HostProblem] = None


@dataclass(frozen=True)
class _Output:
    returncode: int
    stdout: str
    stderr: str

    @property
    def first_line(self) -> str:
        """First non-empty line of stderr, else of stdout: where nvidia-smi states its error."""
        for text in (self.stderr, self.stdout):
            for line in text.splitlines():
                if line.strip():
                    return _shorten(line.strip())
        return "(no output)"


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _find_executable(executable: Optional[str]) -> Optional[str]:
    if executable:
        return executable
    found = shutil.which("nvidia-smi")
    if found is None and os.name == "nt":
        found = next((p for p in _WINDOWS_FALLBACKS if os.path.isfile(p)), None)
    return found


def _kill(proc: subprocess.Popen[str]) -> None:
    """Kill the process and, on POSIX, its whole session (children holding our pipes too)."""
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except OSError:
        pass


def _run(argv: list[str], timeout_s: float) -> Union[_Output, HostProblem]:
    """Run one command with a hard timeout; a HostProblem when it cannot run or finish."""
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=os.name == "posix",
        )
    except FileNotFoundError:
        return _not_found(argv[0])
    except (OSError, ValueError) as exc:
        return HostProblem(
            "nvidia-smi-failed", f"could not run {argv[0]}: {exc}", "check that it is executable"
        )
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill(proc)
        # If something escaped the process group and holds the pipes, give up rather than hang.
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=_KILL_GRACE_S)
        return HostProblem(
            "nvidia-smi-timeout",
            f"`{' '.join(argv)}` did not finish within {timeout_s:g} s and was killed",
            "the NVIDIA driver may be hung or still initializing GPUs; enabling persistence mode"
            " (nvidia-persistenced) makes nvidia-smi start faster",
        )
    return _Output(proc.returncode, stdout or "", stderr or "")


def _not_found(what: str) -> HostProblem:
    return HostProblem(
        "nvidia-smi-not-found",
        f"nvidia-smi not found ({what})",
        "nvidia-smi ships with the NVIDIA driver; without it no NVIDIA GPU can be listed this way",
    )


def _failure(out: _Output) -> HostProblem:
    """Classify a non-zero exit by the message nvidia-smi printed."""
    text = (out.stdout + "\n" + out.stderr).lower()
    message = f"nvidia-smi exited with status {out.returncode}: {out.first_line}"
    if "driver/library version mismatch" in text:
        return HostProblem(
            "nvml-driver-mismatch",
            message,
            "reboot: the loaded NVIDIA kernel module is older or newer than the installed driver"
            " libraries (usually after a driver upgrade); reloading the nvidia modules also works",
        )
    if "couldn't communicate with the nvidia driver" in text:
        hint = (
            "the NVIDIA kernel module is not loaded, or this container was started without"
            " GPU access (e.g. docker --gpus all)"
        )
    elif "no devices were found" in text:
        hint = "the driver is installed but sees no GPU"
    else:
        hint = ""
    return HostProblem("nvidia-smi-failed", message, hint)


def _garbled(what: str, out: _Output) -> HostProblem:
    return HostProblem(
        "nvidia-smi-garbled",
        f"could not parse nvidia-smi output ({what}): {out.first_line}",
        "run the nvidia-smi command yourself to see what it prints",
    )


def _optional_field(value: str) -> Optional[str]:
    return None if value.strip().lower() in _NOT_AVAILABLE else value.strip()


@dataclass(frozen=True)
class _Parsed:
    gpus: tuple[NvidiaGpu, ...]
    driver_version: Optional[str]
    without_compute_cap: tuple[str, ...]  # "0: Tesla K80" for rows lacking a capability


def _parse_query(out: _Output) -> Union[_Parsed, HostProblem]:
    """Parse ``--query-gpu`` CSV rows in :data:`QUERY_FIELDS` order."""
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    if not lines:
        return _garbled("no GPU rows", out)
    gpus: list[NvidiaGpu] = []
    missing: list[str] = []
    driver: Optional[str] = None
    for row in csv.reader(lines, skipinitialspace=True):
        if len(row) != len(QUERY_FIELDS):
            return _garbled(f"expected {len(QUERY_FIELDS)} fields, got {len(row)}", out)
        index_text, name, cc_text, memory_text, uuid_text, driver_text = (f.strip() for f in row)
        if not index_text.isdigit() or not name:
            return _garbled("bad GPU index or name", out)
        version = _optional_field(driver_text)
        if version is not None:
            if not _VERSION_RE.match(version):
                return _garbled(f"bad driver version {version!r}", out)
            driver = driver or version
        if _optional_field(cc_text) is None:
            missing.append(f"{index_text}: {name}")
            continue
        try:
            capability = parse_compute_capability(cc_text)
        except ValueError:
            return _garbled(f"bad compute capability {cc_text!r}", out)
        memory = _optional_field(memory_text)
        gpus.append(
            NvidiaGpu(
                index=int(index_text),
                name=name,
                compute_capability=capability,
                source=SOURCE,
                memory_total_mib=int(memory) if memory and memory.isdigit() else None,
                uuid=_optional_field(uuid_text),
            )
        )
    return _Parsed(tuple(gpus), driver, tuple(missing))


def _log_field(text: str, keys: tuple[str, ...]) -> Optional[str]:
    """The first of ``keys`` whose ``Key : value`` line of ``nvidia-smi -q`` holds a version number.

    A deprecated field may keep its name with a note for a value ("[Deprecated; ...]"): that
    is no version, so the next spelling is read.
    """
    for key in keys:
        match = re.search(rf"^\s*{re.escape(key)}\s*:\s*(\S+)", text, re.MULTILINE)
        if match and _VERSION_RE.match(match.group(1)):
            return match.group(1)
    return None


def _no_compute_cap(smi: str, timeout_s: float, missing: tuple[str, ...], driver: Optional[str]) -> SmiReport:
    """Driver too old for ``compute_cap`` (< 510): GPUs cannot be listed, versions still can."""
    log = _run([smi, *_LOG_ARGS], timeout_s)
    cuda = None
    if isinstance(log, _Output) and log.returncode == 0:
        driver = driver or _log_field(log.stdout, _DRIVER_KEYS)
        cuda = _log_field(log.stdout, _CUDA_KEYS)
    which = f" ({'; '.join(missing)})" if missing else ""
    problem = HostProblem(
        "nvidia-smi-no-compute-cap",
        f"nvidia-smi (driver {driver or 'unknown'}) does not report the GPUs' compute capability"
        f"{which}, so they are not listed",
        "nvidia-smi reports compute capability from driver 510 on; upgrade the NVIDIA driver",
    )
    return SmiReport(driver_version=driver, cuda_driver_version=cuda, problem=problem)


def _query(smi: str, timeout_s: float) -> SmiReport:
    first = _run([smi, *_QUERY_ARGS], timeout_s)
    if isinstance(first, HostProblem):
        return SmiReport(problem=first)
    if first.returncode != 0:
        failure = _failure(first)
        text = (first.stdout + first.stderr).lower()
        if failure.code == "nvidia-smi-failed" and "compute_cap" in text:
            return _no_compute_cap(smi, timeout_s, (), None)
        return SmiReport(problem=failure)
    parsed = _parse_query(first)
    if isinstance(parsed, HostProblem):
        return SmiReport(problem=parsed)
    if parsed.without_compute_cap and not parsed.gpus:
        return _no_compute_cap(smi, timeout_s, parsed.without_compute_cap, parsed.driver_version)

    log = _run([smi, *_LOG_ARGS], timeout_s)
    cuda: Optional[str] = None
    problem: Optional[HostProblem] = None
    driver = parsed.driver_version
    if isinstance(log, _Output) and log.returncode == 0:
        cuda = _log_field(log.stdout, _CUDA_KEYS)
        driver = driver or _log_field(log.stdout, _DRIVER_KEYS)
    if cuda is None:
        reason = log.message if isinstance(log, HostProblem) else log.first_line
        problem = HostProblem(
            "nvidia-smi-no-cuda-version",
            f"`nvidia-smi {' '.join(_LOG_ARGS)}` gave no CUDA version: {reason}",
        )
    if parsed.without_compute_cap:
        problem = HostProblem(
            "nvidia-smi-no-compute-cap",
            "nvidia-smi does not report a compute capability for "
            f"{'; '.join(parsed.without_compute_cap)}, so it is not listed",
        )
    return SmiReport(
        driver_version=driver,
        cuda_driver_version=cuda,
        gpus=parsed.gpus,
        problem=problem,
    )


def query_nvidia_smi(timeout_s: float = 2.0, executable: Optional[str] = None) -> SmiReport:
    """Ask nvidia-smi for GPUs, driver and CUDA driver version; never raises.

    At most two subprocesses, each killed after ``timeout_s`` (so the worst case is about
    twice that): ``--query-gpu`` CSV for the GPUs and driver, then ``-q -d COMPUTE`` for the
    CUDA version (and, on drivers too old for ``compute_cap``, the driver version).
    """
    smi = _find_executable(executable)
    if smi is None:
        return SmiReport(problem=_not_found("not on PATH"))
    try:
        return _query(smi, timeout_s)
    except (OSError, ValueError, subprocess.SubprocessError) as exc:  # last line of defence
        return SmiReport(problem=HostProblem("nvidia-smi-failed", f"running nvidia-smi: {exc}"))
