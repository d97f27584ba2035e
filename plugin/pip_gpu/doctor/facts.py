"""What ``pip-gpu doctor`` looks at, gathered once: the machine, the target interpreter, torch.

Facts come from the outside through the usual boundaries (``detect`` for the host,
``detect.target`` for the interpreter, ``detect.sysfs`` for ``/dev``, ``/proc`` and ``/sys``,
``compiled`` for the GPU code in torch's CUDA library, ``lock`` for the lock comparison);
the checks (:mod:`pip_gpu.doctor.checks`) only read these values. The roots are overridable
for tests: ``PIP_GPU_DEV_ROOT``, ``PIP_GPU_PROCFS_ROOT``, ``PIP_GPU_SYSFS_ROOT`` and
``PIP_GPU_ROOT`` (for ``/.dockerenv`` and ``/usr/lib/wsl/lib``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from packaging.utils import canonicalize_name

from ..compiled import CompiledArchs
from ..detect.target import FamilyBuild, TargetEnv, TorchCopy, read_import_view
from ..host import HostProfile
from ..knowledge import Knowledge

if TYPE_CHECKING:
    from ..lock.sync import LockCheck

__all__ = [
    "DEFAULT_IMPORT_TIMEOUT_S",
    "CudaRuntimeDir",
    "Facts",
    "LockFacts",
    "MachineFacts",
    "Package",
    "TargetFacts",
    "TorchCopy",
    "TorchImport",
    "compiled_archs_of",
    "cuda_runtime_dirs",
    "gather_lock",
    "gather_machine",
    "gather_target",
    "import_torch",
]

DEFAULT_IMPORT_TIMEOUT_S = 60.0
_CONTAINER_CGROUP_MARKERS = ("docker", "containerd", "kubepods", "libpod", "lxc")


# --- values --------------------------------------------------------------------------------


# A torch-family distribution as the target resolves it: the probe's value, named for doctor.
Package = FamilyBuild


@dataclass(frozen=True)
class TargetFacts:
    """What the target interpreter sees, asked without importing torch."""

    target: TargetEnv
    packages: Mapping[str, Package]  # canonical name -> package, torch family only
    torch_copies: tuple[TorchCopy, ...]
    sys_path: tuple[str, ...]
    user_site: Optional[str]
    conda: bool  # sys.prefix is a conda environment (its own prefix, not a venv)
    # canonical name -> why its installed files are not what its RECORD lists (a full disk,
    # a killed install); None where the probe did not verify them
    broken: Optional[Mapping[str, str]] = None

    @property
    def torch(self) -> Optional[Package]:
        return self.packages.get("torch")


@dataclass(frozen=True)
class CudaRuntimeDir:
    """An ``LD_LIBRARY_PATH`` entry holding a CUDA toolkit's ``libcudart``."""

    position: int
    directory: str
    version: Optional[str]  # "11.8", or "11" when only the soname says it


@dataclass(frozen=True)
class MachineFacts:
    """The machine around the process: device nodes, kernel modules, container, WSL, env."""

    dev_root: Path
    nvidia_nodes: tuple[str, ...]
    inaccessible_nodes: tuple[str, ...]
    node_group: Optional[str]
    kernel_modules: frozenset[str]
    kernel_module_version: Optional[str]  # /proc/driver/nvidia/version: the loaded nvidia module
    nvidia_pci: tuple[str, ...]
    container: Optional[str]  # evidence that this is a container, e.g. "/.dockerenv exists"
    nvidia_visible_devices: Optional[str]
    wsl: bool
    wsl_libcuda: Path
    wsl_libcuda_present: bool
    cuda_visible_devices: Optional[str]
    ld_library_path: tuple[str, ...]
    cuda_runtime_dirs: tuple[CudaRuntimeDir, ...]
    pythonpath: tuple[str, ...]
    path: tuple[str, ...] = ()  # PATH, for the shims check
    shim_dirs: tuple[str, ...] = ()  # PATH entries holding pip-gpu's shims (shims.MARKER)
    first_pip: Optional[str] = None  # what a plain `pip` runs: the first executable pip on PATH


@dataclass(frozen=True)
class LockFacts:
    """The lock family in the working directory, and ``pip-gpu check``'s comparison with it."""

    files: tuple[Path, ...]  # pylock.<variant>.toml, else uv.lock
    check: Optional[LockCheck] = None  # None when the lock could not be read (error below)
    error: Optional[str] = None  # a lock pip-gpu cannot read: what is wrong, and the way out
    error_hint: Optional[str] = None
    crash: Optional[str] = None  # the comparison itself failed (a bug): reported, not raised


@dataclass(frozen=True)
class TorchImport:
    """What importing torch in the target interpreter did (``doctor --import``)."""

    timeout_s: float
    timed_out: bool = False
    launch_error: Optional[str] = None  # the interpreter could not be run at all
    returncode: int = 0
    reported: bool = True  # the probe printed its result (False: the interpreter crashed)
    error: Optional[str] = None  # "OSError: libcudart.so.12: cannot open shared object file"
    version: Optional[str] = None
    available: bool = False  # torch.cuda.is_available()
    device_count: int = 0
    device: Optional[str] = None  # torch.cuda.get_device_name(0)
    tensor: Optional[float] = None  # the result of a small tensor op on cuda:0
    stderr: tuple[str, ...] = ()  # its last lines


@dataclass(frozen=True)
class Facts:
    """Everything the checks look at."""

    host: HostProfile
    knowledge: Knowledge
    machine: MachineFacts
    target: TargetFacts
    python_flag: Optional[str] = None  # --python as given, repeated in fix commands
    host_argv: tuple[str, ...] = ()  # the host flags as given (--driver ...), repeated in fix commands
    cwd: Path = field(default_factory=Path.cwd)
    compiled_archs: Optional[CompiledArchs] = None  # the GPU code torch's CUDA library really has
    lock: Optional[LockFacts] = None  # None: no lock in cwd
    torch_import: Optional[TorchImport] = None  # None: torch was not imported

    @property
    def gpu_facts_given(self) -> bool:
        """The driver/GPUs (NVIDIA or AMD) came from flags or PIP_GPU_* variables: they describe
        the host the flags name, and NVML was not asked."""
        return any(
            self.host.sources.get(key, "").startswith(("--", "PIP_GPU_"))
            for key in ("driver_version", "nvidia_gpus", "amd_gpus")
        )


# --- the target interpreter ----------------------------------------------------------------


def gather_target(
    target: TargetEnv,
    family: Sequence[str],
    env: Optional[Mapping[str, str]] = None,
    *,
    verify_files: bool = False,
) -> TargetFacts:
    """Ask the target interpreter what it would import, as the user runs it, and whether the
    family's files are what their RECORD lists (present and of their size, the build's own
    files by sha256; ``verify_files``: every file by sha256).

    Not isolated (no ``-I``): PYTHONPATH and the user site are exactly what puts a second
    torch in front of the environment's own.
    """
    from ..ui import progress

    names = [str(canonicalize_name(name)) for name in family]
    what = (
        "checking the sha256 of every installed file of the torch family"
        if verify_files
        else ("reading the installed torch family")
    )
    with progress(what):
        view = read_import_view(target.python, names, env=env, verify=names, hash_all=verify_files)
    return TargetFacts(
        target=target,
        packages=dict(view.family),
        torch_copies=view.torch_copies,
        sys_path=view.sys_path,
        user_site=view.user_site,
        conda=view.conda,
        broken=view.broken,
    )


# --- the machine ---------------------------------------------------------------------------


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except (OSError, ValueError):
        return None


def _container_evidence(root: Path, proc_root: Path) -> Optional[str]:
    for marker in (".dockerenv", "run/.containerenv"):
        if (root / marker).exists():
            return f"/{marker} exists"
    cgroup = _read(proc_root / "1" / "cgroup") or ""
    for line in cgroup.splitlines():
        if any(word in line for word in _CONTAINER_CGROUP_MARKERS):
            return f"/proc/1/cgroup: {line.strip()}"
    return None


_CUDART = re.compile(r"^libcudart\.so(?:\.(\d+(?:\.\d+)*))?$")
_CUDA_DIR = re.compile(r"cuda-(\d+\.\d+)")


def cuda_runtime_dirs(entries: Sequence[str]) -> tuple[CudaRuntimeDir, ...]:
    """LD_LIBRARY_PATH entries with a libcudart, and the CUDA version its file names say."""
    found: list[CudaRuntimeDir] = []
    for position, directory in enumerate(entries):
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        versions = [m.group(1) or "" for m in map(_CUDART.match, names) if m]
        if not versions:
            continue
        # libcudart.so.11.8.89 says 11.8; the soname libcudart.so.11.0 only says "11".
        full = [v for v in versions if v.count(".") >= 2]
        version: Optional[str] = None
        if full:
            version = ".".join(max(full, key=lambda v: [int(p) for p in v.split(".")]).split(".")[:2])
        else:
            from_dir = _CUDA_DIR.search(directory)
            majors = [v.split(".")[0] for v in versions if v]
            version = from_dir.group(1) if from_dir else (max(majors, key=int) if majors else None)
        found.append(CudaRuntimeDir(position, directory, version))
    return tuple(found)


def _shims_on(path: Sequence[str]) -> tuple[tuple[str, ...], Optional[str]]:
    """The PATH entries holding pip-gpu's shims, and the pip a plain ``pip`` runs."""
    from ..shims import MARKER

    entries = [entry or "." for entry in path]
    shims = tuple(entry for entry in entries if (Path(entry) / MARKER).is_file())
    first_pip = next(
        (
            str(Path(entry) / "pip")
            for entry in entries
            if (Path(entry) / "pip").is_file() and os.access(Path(entry) / "pip", os.X_OK)
        ),
        None,
    )
    return shims, first_pip


def gather_machine(env: Mapping[str, str]) -> MachineFacts:
    """Read the device nodes, kernel modules, PCI bus, container and WSL markers, variables."""
    from ..detect import sysfs
    from ..detect.procfs import read_nvidia_proc_version

    dev_root = Path(env.get("PIP_GPU_DEV_ROOT", "/dev"))
    proc_root = Path(env.get("PIP_GPU_PROCFS_ROOT", "/proc"))
    sys_root = Path(env.get("PIP_GPU_SYSFS_ROOT", "/sys"))
    root = Path(env.get("PIP_GPU_ROOT", "/"))
    nodes = sysfs.nvidia_device_nodes(dev_root)
    inaccessible: list[str] = []
    group: Optional[str] = None
    for name in nodes:
        path = dev_root / name
        if not os.access(path, os.R_OK | os.W_OK):
            inaccessible.append(name)
        if group is None:
            group = _group_of(path)
    wsl_libcuda = root / "usr" / "lib" / "wsl" / "lib" / "libcuda.so"
    ld_path = tuple(p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p)
    search_path = tuple(env.get("PATH", "").split(os.pathsep))
    shim_dirs, first_pip = _shims_on(search_path)
    return MachineFacts(
        dev_root=dev_root,
        nvidia_nodes=nodes,
        inaccessible_nodes=tuple(inaccessible),
        node_group=group,
        kernel_modules=sysfs.loaded_kernel_modules(proc_root),
        kernel_module_version=read_nvidia_proc_version(proc_root),
        nvidia_pci=sysfs.nvidia_pci_devices(sys_root),
        container=_container_evidence(root, proc_root),
        nvidia_visible_devices=env.get("NVIDIA_VISIBLE_DEVICES"),
        wsl="microsoft" in (_read(proc_root / "version") or "").lower(),
        wsl_libcuda=wsl_libcuda,
        wsl_libcuda_present=wsl_libcuda.exists(),
        cuda_visible_devices=env.get("CUDA_VISIBLE_DEVICES"),
        ld_library_path=ld_path,
        cuda_runtime_dirs=cuda_runtime_dirs(ld_path),
        pythonpath=tuple(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p),
        path=search_path,
        shim_dirs=shim_dirs,
        first_pip=first_pip,
    )


def _group_of(path: Path) -> Optional[str]:
    try:
        gid = path.stat().st_gid
    except OSError:
        return None
    try:
        import grp

        return grp.getgrgid(gid).gr_name
    except (ImportError, KeyError):
        return str(gid)


# --- torch's binary, the lock, importing torch -------------------------------------------


def compiled_archs_of(torch: Optional[Package]) -> Optional[CompiledArchs]:
    """The SASS/PTX in the installed torch's ``lib/libtorch_cuda.so``; None where unreadable."""
    from ..compiled import NotACudaLibrary, read_compiled_archs

    if torch is None:
        return None
    library = Path(torch.location) / "torch" / "lib" / "libtorch_cuda.so"
    if not library.is_file():
        return None
    try:
        return read_compiled_archs(library)
    except NotACudaLibrary:
        return None


def gather_lock(
    directory: Path, target: TargetEnv, host: HostProfile, *, verify_files: bool = False
) -> Optional[LockFacts]:
    """The lock family in ``directory`` compared with the environment, as ``pip-gpu check`` does.

    None when there is no lock (``pylock.<variant>.toml`` or ``uv.lock``) there.
    """
    files = tuple(sorted(directory.glob("pylock.*.toml")) or sorted(directory.glob("uv.lock")))
    if not files:
        return None
    from ..errors import PipGpuError
    from ..lock.sync import check_environment

    try:
        return LockFacts(files, check_environment(directory, target, host, verify_files=verify_files))
    except PipGpuError as error:
        return LockFacts(files, error=error.message, error_hint=error.hint or None)
    except Exception as error:  # doctor runs on broken machines: keep going
        return LockFacts(files, crash=repr(error))


_IMPORT_PROBE = r"""
import json, sys
out = {}
try:
    import torch
    out["version"] = str(getattr(torch, "__version__", "?"))
    out["available"] = bool(torch.cuda.is_available())
    out["count"] = int(torch.cuda.device_count())
    if out["available"] and out["count"]:
        out["device"] = str(torch.cuda.get_device_name(0))
        x = torch.ones(2, device="cuda")
        out["tensor"] = float((x * 2).sum().item())
except BaseException as exc:
    out["error"] = "%s: %s" % (type(exc).__name__, exc)
print("PIP_GPU_DOCTOR " + json.dumps(out))
"""


def import_torch(python: Path, timeout_s: float = DEFAULT_IMPORT_TIMEOUT_S) -> TorchImport:
    """Import torch in the target interpreter: is_available(), device count, a tensor op on GPU 0."""
    try:
        done = subprocess.run(
            [str(python), "-c", _IMPORT_PROBE], capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        return TorchImport(timeout_s, timed_out=True, reported=False)
    except OSError as error:
        return TorchImport(timeout_s, launch_error=str(error), reported=False)
    line = next((x for x in done.stdout.splitlines() if x.startswith("PIP_GPU_DOCTOR ")), None)
    stderr = tuple(x for x in done.stderr.strip().splitlines()[-5:] if x.strip())
    if line is None:
        return TorchImport(timeout_s, returncode=done.returncode, reported=False, stderr=stderr)
    result: dict[str, Any] = json.loads(line[len("PIP_GPU_DOCTOR ") :])
    tensor = result.get("tensor")
    return TorchImport(
        timeout_s,
        returncode=done.returncode,
        error=None if result.get("error") is None else str(result["error"]),
        version=None if result.get("version") is None else str(result["version"]),
        available=bool(result.get("available")),
        device_count=int(result.get("count") or 0),
        device=None if result.get("device") is None else str(result["device"]),
        tensor=None if tensor is None else float(tensor),
        stderr=stderr,
    )
