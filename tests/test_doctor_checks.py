"""doctor's checks, run in process over constructed facts: each check's healthy case and every
verdict it can reach, with the summary and the fix a user reads.

The facts are built here as a machine would report them (an A100 on driver 535.104.05, a venv
with torch 2.5.1+cu124 and torchvision 0.20.1+cu124) and then broken one fact at a time. The
knowledge file is the real one: the fix commands are the decisions pip-gpu makes from it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from pip_gpu.compiled import CompiledArchs
from pip_gpu.detect.target import TargetEnv
from pip_gpu.doctor.checks import (
    FAILURE,
    OK,
    SKIPPED,
    WARNING,
    Finding,
    check_container,
    check_cuda_build_has_a_gpu,
    check_cuda_visible_devices,
    check_driver,
    check_family,
    check_gpu_architecture,
    check_import,
    check_ld_library_path,
    check_lock,
    check_nvml,
    check_shims,
    check_torch,
    check_torch_copies,
    check_virtualenv,
    check_wsl,
    diagnose,
)
from pip_gpu.doctor.facts import (
    CudaRuntimeDir,
    Facts,
    LockFacts,
    MachineFacts,
    Package,
    TargetFacts,
    TorchCopy,
    TorchImport,
)
from pip_gpu.host import HostProblem, HostProfile, NvidiaGpu
from pip_gpu.knowledge import load_knowledge
from pip_gpu.lock.sync import LockCheck

KNOWLEDGE = load_knowledge()
A100 = NvidiaGpu(0, "NVIDIA A100-SXM4-80GB", (8, 0), "nvml")
RTX_5090 = NvidiaGpu(0, "NVIDIA GeForce RTX 5090", (12, 0), "nvml")
K80 = NvidiaGpu(0, "Tesla K80", (3, 7), "nvml")
PROJECT = Path("/home/user/project")
PREFIX = PROJECT / ".venv"
PYTHON = PREFIX / "bin" / "python"
SITE = str(PREFIX / "lib" / "python3.11" / "site-packages")
USER_SITE = "/home/user/.local/lib/python3.11/site-packages"
GPU_HOST = "1 NVIDIA GPU (NVIDIA A100-SXM4-80GB, driver 535.104.05)"


def host(**changes: Any) -> HostProfile:
    """An A100 on driver 535.104.05, as NVML reports it."""
    profile = HostProfile(
        os="linux",
        arch="x86_64",
        python_version="3.11",
        driver_version="535.104.05",
        cuda_driver_version="12.2",
        nvidia_gpus=(A100,),
        sources={"driver_version": "nvml", "nvidia_gpus": "nvml"},
    )
    return replace(profile, **changes)


def no_gpu_host(**changes: Any) -> HostProfile:
    return host(driver_version=None, cuda_driver_version=None, nvidia_gpus=(), sources={}, **changes)


def package(name: str, version: str, *, cuda: Optional[str] = None, build_info: bool = True) -> Package:
    return Package(name, version, SITE, build_info=build_info, cuda=cuda)


TORCH = package("torch", "2.5.1+cu124", cuda="12.4")
TORCH_CPU = package("torch", "2.5.1+cpu")
TORCHVISION = package("torchvision", "0.20.1+cu124")


def target(
    *packages: Package,
    copies: Optional[tuple[TorchCopy, ...]] = None,
    virtualenv: bool = True,
    conda: bool = False,
    broken: Optional[dict[str, str]] = None,
) -> TargetFacts:
    """A venv holding ``packages`` (torch 2.5.1+cu124 and torchvision 0.20.1+cu124 by default)."""
    packages = packages or (TORCH, TORCHVISION)
    torch = next((p for p in packages if p.name == "torch"), None)
    if copies is None:
        copies = (
            (TorchCopy(SITE, True, (f"torch-{torch.version}.dist-info",), torch.version),) if torch else ()
        )
    env = TargetEnv(
        python=PYTHON if virtualenv else Path("/usr/bin/python3"),
        python_version="3.11",
        prefix=PREFIX if virtualenv else Path("/usr"),
        has_pip=True,
        is_virtualenv=virtualenv,
        chosen_by="--python" if virtualenv else "--system",
    )
    return TargetFacts(
        target=env,
        packages={p.name: p for p in packages},
        torch_copies=copies,
        sys_path=(SITE,),
        user_site=USER_SITE,
        conda=conda,
        broken=broken,
    )


def machine(**changes: Any) -> MachineFacts:
    """A host with the nvidia kernel module loaded and its device nodes readable."""
    healthy = MachineFacts(
        dev_root=Path("/dev"),
        nvidia_nodes=("nvidia0", "nvidiactl", "nvidia-uvm"),
        inaccessible_nodes=(),
        node_group="root",
        kernel_modules=frozenset({"nvidia", "nvidia_uvm", "nvidia_drm", "ext4"}),
        kernel_module_version="535.104.05",
        nvidia_pci=("0000:01:00.0",),
        container=None,
        nvidia_visible_devices=None,
        wsl=False,
        wsl_libcuda=Path("/usr/lib/wsl/lib/libcuda.so"),
        wsl_libcuda_present=False,
        cuda_visible_devices=None,
        ld_library_path=(),
        cuda_runtime_dirs=(),
        pythonpath=(),
        path=("/usr/bin", "/bin"),
    )
    return replace(healthy, **changes)


def facts(
    *,
    host_profile: Optional[HostProfile] = None,
    target_facts: Optional[TargetFacts] = None,
    machine_facts: Optional[MachineFacts] = None,
    **changes: Any,
) -> Facts:
    return Facts(
        host=host_profile or host(),
        knowledge=KNOWLEDGE,
        machine=machine_facts or machine(),
        target=target_facts or target(),
        cwd=PROJECT,
        **changes,
    )


def seen(finding: Finding) -> tuple[str, str, Optional[str]]:
    """What a user reads of a finding: its status, its summary and its fix."""
    return finding.status, finding.summary, finding.fix


# --- the whole chain -------------------------------------------------------------------------


def test_a_healthy_machine_passes_every_check() -> None:
    report = diagnose(facts())
    assert [(f.check, f.status) for f in report.findings] == [
        ("torch-copies", OK),
        ("torch", OK),
        ("family", OK),
        ("driver", OK),
        ("gpu-arch", OK),
        ("nvml", OK),
        ("cuda-visible-devices", OK),
        ("container", OK),
        ("wsl", OK),
        ("ld-library-path", OK),
        ("virtualenv", OK),
        ("lock", OK),
        ("shims", OK),
        ("cuda-build", OK),
    ]
    assert report.healthy and report.exit_status == 0
    assert report.verdict == f"healthy: torch 2.5.1+cu124 runs on this machine's {GPU_HOST}"


def test_the_verdict_is_the_first_failure_and_its_fix() -> None:
    report = diagnose(facts(target_facts=target(TORCH_CPU)))
    assert report.exit_status == 1
    assert report.verdict == (
        f"torch 2.5.1+cpu is a CPU-only build; this machine has {GPU_HOST}. "
        "Fix: pip-gpu install --force-reinstall torch==2.5.1"
    )


def test_a_warning_is_named_in_the_healthy_verdict() -> None:
    newer = CudaRuntimeDir(0, "/usr/local/cuda-12.6/lib64", "12.6")
    report = diagnose(
        facts(machine_facts=machine(cuda_runtime_dirs=(newer,), ld_library_path=(newer.directory,)))
    )
    assert report.healthy
    assert report.verdict.startswith(
        f"healthy: torch 2.5.1+cu124 runs on this machine's {GPU_HOST} (1 warning: "
    )


def test_the_import_is_reported_only_when_asked() -> None:
    imported = facts(torch_import=TorchImport(60.0, version="2.5.1+cu124", available=True, device_count=1))
    assert "import" not in [f.check for f in diagnose(imported).findings]
    assert diagnose(imported, run_import=True).findings[-1].check == "import"


def test_a_crashing_check_is_a_warning_that_hides_nothing() -> None:
    def check_broken(facts: Facts) -> Finding:
        raise RuntimeError("boom")

    report = diagnose(facts(), checks=(check_broken, check_torch))
    assert [seen(f) for f in report.findings] == [
        (WARNING, "this check could not run: RuntimeError('boom')", None),
        (OK, f"torch 2.5.1+cu124 is a CUDA 12.4 build; {GPU_HOST}", None),
    ]
    assert report.findings[0].check == "broken" and report.healthy


# --- torch-copies ------------------------------------------------------------------------------


def test_one_install_of_torch() -> None:
    assert seen(check_torch_copies(facts())) == (OK, f"one install of torch ({SITE})", None)


def test_a_second_torch_on_pythonpath_is_dropped_from_pythonpath() -> None:
    stray = TorchCopy("/opt/stray", True, ("torch-2.5.1+cpu.dist-info",), "2.5.1+cpu")
    installed = TorchCopy(SITE, True, ("torch-2.5.1+cu124.dist-info",), "2.5.1+cu124")
    on_path = facts(
        target_facts=target(copies=(stray, installed)),
        machine_facts=machine(pythonpath=("/opt/stray", "/opt/tools")),
    )
    finding = check_torch_copies(on_path)
    assert seen(finding) == (
        FAILURE,
        "two installs of torch: 2.5.1+cpu in /opt/stray (on PYTHONPATH) is the one Python imports, "
        f"beside 2.5.1+cu124 in {SITE}",
        "export PYTHONPATH=/opt/tools",
    )
    assert finding.evidence[0] == "/opt/stray: torch/ 2.5.1+cpu, torch-2.5.1+cpu.dist-info (imported)"
    alone = replace(on_path, machine=machine(pythonpath=("/opt/stray",)))
    assert check_torch_copies(alone).fix == "unset PYTHONPATH"


def test_a_second_torch_in_the_user_site_is_removed() -> None:
    stray = TorchCopy(USER_SITE, True, ("torch-2.4.0.dist-info",), "2.4.0")
    installed = TorchCopy(SITE, True, ("torch-2.5.1+cu124.dist-info",), "2.5.1+cu124")
    finding = check_torch_copies(facts(target_facts=target(copies=(stray, installed))))
    assert seen(finding) == (
        FAILURE,
        f"two installs of torch: 2.4.0 in {USER_SITE} (the user site) is the one Python imports, "
        f"beside 2.5.1+cu124 in {SITE}",
        f"rm -rf {USER_SITE}/torch {USER_SITE}/torch-2.4.0.dist-info",
    )


def test_a_torch_source_tree_in_the_current_directory() -> None:
    tree = TorchCopy(str(PROJECT), True, (), "2.6.0a0+git1234567")
    installed = TorchCopy(SITE, True, ("torch-2.5.1+cu124.dist-info",), "2.5.1+cu124")
    finding = check_torch_copies(facts(target_facts=target(copies=(tree, installed))))
    assert seen(finding) == (
        FAILURE,
        f"two installs of torch: 2.6.0a0+git1234567 in {PROJECT} (the current directory) is the one "
        f"Python imports, beside 2.5.1+cu124 in {SITE}",
        f"run Python from another directory: the torch/ in {PROJECT} shadows the installed one",
    )


def test_two_metadata_records_in_one_directory() -> None:
    both = TorchCopy(SITE, True, ("torch-2.4.0.dist-info", "torch-2.5.1+cu124.dist-info"), "2.5.1+cu124")
    finding = check_torch_copies(facts(target_facts=target(copies=(both,))))
    assert seen(finding) == (
        FAILURE,
        f"two installs of torch in {SITE}: torch-2.4.0.dist-info, torch-2.5.1+cu124.dist-info "
        "(pip and conda, or two pip runs, wrote over each other)",
        f"rm -rf {SITE}/torch-2.4.0.dist-info",
    )
    in_conda = check_torch_copies(facts(target_facts=target(copies=(both,), conda=True)))
    assert in_conda.fix == "conda remove --force pytorch"


# --- torch -------------------------------------------------------------------------------------


def test_a_cuda_build_on_a_gpu_host() -> None:
    finding = check_torch(facts())
    assert seen(finding) == (OK, f"torch 2.5.1+cu124 is a CUDA 12.4 build; {GPU_HOST}", None)
    assert finding.evidence == (f"torch 2.5.1+cu124 in {SITE}", "torch/version.py: cuda='12.4', hip=None")


def test_a_pypi_wheel_without_label_is_read_from_version_py() -> None:
    pypi = package("torch", "2.5.1", cuda="12.4")
    assert seen(check_torch(facts(target_facts=target(pypi)))) == (
        OK,
        f"torch 2.5.1 is a CUDA 12.4 build; {GPU_HOST}",
        None,
    )


def test_torch_not_installed() -> None:
    finding = check_torch(facts(target_facts=target(package("numpy", "2.1.0")), python_flag=str(PREFIX)))
    assert seen(finding) == (
        FAILURE,
        f"torch is not installed in {PREFIX}",
        f"pip-gpu install --python {PREFIX} torch",
    )


def test_a_cpu_build_on_a_gpu_host() -> None:
    assert seen(check_torch(facts(target_facts=target(TORCH_CPU)))) == (
        FAILURE,
        f"torch 2.5.1+cpu is a CPU-only build; this machine has {GPU_HOST}",
        "pip-gpu install --force-reinstall torch==2.5.1",
    )


def test_a_rocm_build_on_an_nvidia_host() -> None:
    rocm = package("torch", "2.5.1+rocm6.2")
    status, summary, fix = seen(check_torch(facts(target_facts=target(rocm))))
    assert (status, summary) == (
        FAILURE,
        f"torch 2.5.1+rocm6.2 is a rocm6.2 (not CUDA) build; this machine has {GPU_HOST}",
    )
    assert fix == "pip-gpu install --force-reinstall torch==2.5.1"


def test_the_variant_of_a_wheel_without_label_comes_from_version_py() -> None:
    """A PyPI or source build has no ``+cu124`` label: its version.py says CUDA, ROCm or neither."""
    assert str(package("torch", "2.5.1", cuda="12.4").variant) == "cu124"
    assert (
        str(Package("torch", "2.5.1", SITE, build_info=True, hip="6.2.41133-dd7f95766").variant) == "rocm6.2"
    )
    assert str(package("torch", "2.5.1").variant) == "cpu"
    assert package("torch", "2.5.1+git1234", build_info=False).variant is None
    hip = Package("torch", "2.5.1", SITE, build_info=True, hip="6.2.41133-dd7f95766")
    status, summary, _ = seen(check_torch(facts(target_facts=target(hip))))
    assert (status, summary) == (
        FAILURE,
        f"torch 2.5.1 is a rocm6.2 (not CUDA) build; this machine has {GPU_HOST}",
    )


def test_a_cpu_build_without_gpu_is_fine() -> None:
    assert seen(check_torch(facts(host_profile=no_gpu_host(), target_facts=target(TORCH_CPU)))) == (
        OK,
        "torch 2.5.1+cpu (cpu build); no NVIDIA GPU here",
        None,
    )


def test_a_build_that_cannot_be_read() -> None:
    unknown = package("torch", "2.5.1", build_info=False)
    assert seen(check_torch(facts(target_facts=target(unknown)))) == (
        WARNING,
        "torch 2.5.1: its build (CUDA, ROCm or CPU) cannot be read",
        None,
    )


def test_a_cuda_build_where_the_gpus_cannot_be_read() -> None:
    unread = host(nvidia_gpus=())
    assert seen(check_torch(facts(host_profile=unread))) == (
        WARNING,
        "torch 2.5.1+cu124 is a CUDA 12.4 build but the NVIDIA GPUs could not be read: "
        "it will run on the CPU",
        None,
    )


def test_a_damaged_torch_is_not_healthy() -> None:
    """Issue 17: a full disk or a killed install leaves torch's metadata over missing files."""
    damaged = target(broken={"torch": "14825 of the 15001 files in its RECORD are missing"})
    finding = check_torch(facts(target_facts=damaged))
    assert seen(finding) == (
        FAILURE,
        "torch 2.5.1+cu124 is damaged: 14825 of the 15001 files in its RECORD are missing "
        "(a failed or interrupted install?)",
        "pip-gpu install --force-reinstall torch==2.5.1",
    )
    locked = facts(target_facts=damaged, lock=LockFacts((PROJECT / "pylock.cu124.toml",)))
    assert check_torch(locked).fix == "pip-gpu sync"
    report = diagnose(facts(target_facts=damaged))
    assert not report.healthy and report.verdict.startswith("torch 2.5.1+cu124 is damaged")


def test_files_not_verified_are_not_reported_as_damaged() -> None:
    """The probe says nothing about RECORD (broken=None) or finds it intact ({}): no failure."""
    for broken in (None, {}):
        assert check_torch(facts(target_facts=target(broken=broken))).status == OK


# --- family ------------------------------------------------------------------------------------


def test_a_family_that_belongs_together() -> None:
    assert seen(check_family(facts())) == (OK, "torchvision 0.20.1+cu124 match torch 2.5.1+cu124", None)


def test_torch_alone() -> None:
    assert seen(check_family(facts(target_facts=target(TORCH)))) == (
        OK,
        "only torch of the family is installed",
        None,
    )
    assert check_family(facts(target_facts=target(package("numpy", "2.1.0")))).status == SKIPPED


def test_mixed_family_variants() -> None:
    mixed = target(TORCH, package("torchvision", "0.20.1+cpu"))
    finding = check_family(facts(target_facts=mixed))
    assert seen(finding) == (
        FAILURE,
        "mixed torch family variants: torchvision 0.20.1+cpu is cpu, but torch 2.5.1+cu124 is cu124",
        "pip-gpu install --force-reinstall torch==2.5.1 torchvision==0.20.1",
    )
    assert finding.evidence == ("torch 2.5.1+cu124 (cu124)", "torchvision 0.20.1+cpu (cpu)")


def test_family_releases_that_do_not_belong_together() -> None:
    unpaired = target(TORCH, package("torchvision", "0.19.1+cu124"))
    assert seen(check_family(facts(target_facts=unpaired))) == (
        FAILURE,
        "torch family releases that do not belong together: torchvision 0.19.1+cu124 pairs with torch "
        "other than 2.5 (torch 2.5 needs torchvision 0.20.x)",
        "pip-gpu install --force-reinstall torch==2.5.1 'torchvision==0.20.*'",
    )


def test_a_damaged_companion() -> None:
    damaged = target(broken={"torchvision": "torchvision/_C.so is missing"})
    assert seen(check_family(facts(target_facts=damaged))) == (
        FAILURE,
        "torchvision 0.20.1+cu124 is damaged: torchvision/_C.so is missing "
        "(a failed or interrupted install?)",
        "pip-gpu install --force-reinstall torchvision==0.20.1",
    )


# --- driver ------------------------------------------------------------------------------------


def test_a_driver_new_enough_for_the_build() -> None:
    finding = check_driver(facts())
    assert seen(finding) == (OK, "driver 535.104.05 >= 525.60.13, the minimum for CUDA 12.4", None)
    assert finding.evidence == (
        "driver 535.104.05 (nvml), supports CUDA <= 12.2",
        "CUDA 12.4 on linux needs driver >= 525.60.13 (minor-version compatibility)",
    )


def test_a_driver_too_old_for_the_build() -> None:
    old = host(driver_version="470.57.02", cuda_driver_version="11.4")
    assert seen(check_driver(facts(host_profile=old))) == (
        FAILURE,
        "torch 2.5.1+cu124 needs NVIDIA driver >= 525.60.13 (CUDA 12.4 on linux); this driver is "
        "470.57.02 (CUDA <= 11.4)",
        "upgrade the NVIDIA driver to >= 525.60.13, or install the cu118 build, which runs on this "
        "driver: pip-gpu install --force-reinstall torch==2.5.1 torchvision==0.20.1",
    )


def test_a_cuda_pip_gpu_does_not_know() -> None:
    future = package("torch", "2.5.1", cuda="99.9")
    assert seen(check_driver(facts(target_facts=target(future)))) == (
        WARNING,
        "pip-gpu does not know the minimum driver for CUDA 99.9 on linux",
        None,
    )


def test_the_driver_is_not_checked_without_a_cuda_build_or_a_driver() -> None:
    assert (
        check_driver(facts(target_facts=target(TORCH_CPU))).summary == "no CUDA build of torch is installed"
    )
    assert seen(check_driver(facts(host_profile=no_gpu_host()))) == (
        SKIPPED,
        "no NVIDIA driver was found (see nvml)",
        None,
    )


# --- gpu-arch ----------------------------------------------------------------------------------


def test_the_build_covers_the_gpu() -> None:
    finding = check_gpu_architecture(facts())
    assert seen(finding) == (OK, "torch 2.5.1+cu124 covers NVIDIA A100-SXM4-80GB", None)
    assert finding.evidence[1] == "GPU 0: NVIDIA A100-SXM4-80GB (sm_80)"


def test_a_gpu_too_new_for_the_build() -> None:
    on_570 = host(nvidia_gpus=(RTX_5090,), driver_version="570.124.06", cuda_driver_version="12.8")
    status, summary, fix = seen(check_gpu_architecture(facts(host_profile=on_570)))
    assert status == FAILURE
    assert summary.startswith(
        "NVIDIA GeForce RTX 5090 (sm_120) is too new for torch 2.5.1+cu124, which carries "
        "sm_50 sm_60 sm_70 sm_75 sm_80 sm_86 sm_90, no PTX; no build of torch 2.5.1 runs here; the "
    )
    assert fix is not None and fix.startswith("pip-gpu install --force-reinstall 'torch==2.")


def test_a_gpu_too_old_for_the_build() -> None:
    finding = check_gpu_architecture(facts(host_profile=host(nvidia_gpus=(K80,))))
    assert seen(finding) == (
        FAILURE,
        "Tesla K80 (sm_37) is too old for torch 2.5.1+cu124, which carries sm_50 sm_60 sm_70 sm_75 sm_80 "
        "sm_86 sm_90, no PTX; the cu118 build of torch 2.5.1 runs here",
        "pip-gpu install --force-reinstall torch==2.5.1 torchvision==0.20.1",
    )


def test_the_binary_wins_over_the_knowledge_file() -> None:
    """torch's CUDA library says it carries sm_90 only: the A100 (sm_80) is not covered."""
    binary = CompiledArchs({(9, 0): 500}, {}, f"{SITE}/torch/lib/libtorch_cuda.so")
    finding = check_gpu_architecture(facts(compiled_archs=binary))
    assert finding.status == FAILURE
    assert finding.summary.startswith(
        "NVIDIA A100-SXM4-80GB (sm_80) is too old for torch 2.5.1+cu124, which carries sm_90, no PTX"
    )
    assert finding.evidence[0].startswith(
        f"torch 2.5.1+cu124 carries sm_90, no PTX (read from {SITE}/torch/lib/libtorch_cuda.so; "
        "the knowledge file says sm_50 sm_60 sm_70 sm_75 sm_80 sm_86 sm_90, no PTX, the binary wins)"
    )


def test_a_build_whose_architectures_are_unknown() -> None:
    future = package("torch", "2.99.0+cu124", cuda="12.4")
    assert seen(check_gpu_architecture(facts(target_facts=target(future)))) == (
        WARNING,
        "pip-gpu does not know which GPU architectures torch 2.99.0+cu124 carries",
        None,
    )


def test_gpu_architecture_needs_a_cuda_build_and_a_gpu() -> None:
    assert check_gpu_architecture(facts(target_facts=target(TORCH_CPU))).status == SKIPPED
    assert seen(check_gpu_architecture(facts(host_profile=host(nvidia_gpus=())))) == (
        SKIPPED,
        "no NVIDIA GPU could be read",
        None,
    )


# --- nvml --------------------------------------------------------------------------------------


def problem(code: str, message: str = "NVML says no", hint: str = "") -> HostProfile:
    return host(
        driver_version=None,
        cuda_driver_version=None,
        nvidia_gpus=(),
        problems=(HostProblem(code, message, hint),),
    )


def test_nvml_answers() -> None:
    assert seen(check_nvml(facts())) == (OK, "NVML answers: driver 535.104.05, 1 GPU(s)", None)


def test_nvml_is_not_asked_when_the_driver_is_given() -> None:
    given = host(sources={"driver_version": "--driver", "nvidia_gpus": "--compute-capability"})
    assert seen(check_nvml(facts(host_profile=given))) == (
        SKIPPED,
        "the driver and GPUs were given as flags; NVML was not asked",
        None,
    )


def test_nvml_driver_library_mismatch() -> None:
    assert seen(check_nvml(facts(host_profile=problem("nvml-driver-mismatch")))) == (
        FAILURE,
        "NVIDIA driver/library version mismatch (the loaded kernel module is 535.104.05): the driver was "
        "upgraded without a reboot",
        "sudo reboot  (or unload and reload the nvidia kernel modules)",
    )


def test_nvml_driver_not_loaded() -> None:
    assert seen(check_nvml(facts(host_profile=problem("nvml-driver-not-loaded")))) == (
        FAILURE,
        "the NVIDIA driver is installed but its kernel module is not loaded",
        "sudo modprobe nvidia",
    )


def test_nouveau_loaded_instead_of_nvidia() -> None:
    nouveau = machine(kernel_modules=frozenset({"nouveau", "ext4"}))
    installed = facts(host_profile=problem("nvml-driver-not-loaded"), machine_facts=nouveau)
    assert seen(check_nvml(installed)) == (
        FAILURE,
        "the open-source nouveau driver is loaded instead of nvidia, so CUDA cannot run",
        "echo 'blacklist nouveau' | sudo tee /etc/modprobe.d/blacklist-nouveau.conf "
        "&& sudo update-initramfs -u && sudo reboot",
    )
    absent = facts(host_profile=no_gpu_host(), machine_facts=nouveau)
    assert check_nvml(absent).fix == (
        "install the NVIDIA driver (it blacklists nouveau; e.g. sudo ubuntu-drivers install), then reboot"
    )


def test_no_permission_on_the_device_nodes() -> None:
    denied = machine(inaccessible_nodes=("nvidia0",), node_group="video")
    finding = check_nvml(facts(host_profile=problem("nvml-no-permission"), machine_facts=denied))
    assert seen(finding) == (
        FAILURE,
        "no permission to use the NVIDIA device nodes (nvidia0 not readable and writable)",
        'sudo usermod -aG video "$USER"  (then log in again)',
    )
    owned_by_root = facts(
        host_profile=problem("nvml-no-permission"), machine_facts=machine(node_group="root")
    )
    assert check_nvml(owned_by_root).fix == "sudo chmod a+rw /dev/nvidia0 /dev/nvidiactl /dev/nvidia-uvm"


def test_device_nodes_without_the_driver_library() -> None:
    status, summary, fix = seen(check_nvml(facts(host_profile=problem("nvml-not-found"))))
    assert (status, summary) == (
        FAILURE,
        "/dev/nvidia* exist but the NVIDIA driver library (libnvidia-ml) is missing",
    )
    assert fix is not None and fix.startswith("in a container: docker run --gpus all")


def test_another_nvml_problem_is_reported_as_nvml_says_it() -> None:
    other = problem("nvml-unknown", "NVML failed: Unknown Error", "look at dmesg")
    assert seen(check_nvml(facts(host_profile=other))) == (
        FAILURE,
        "NVML failed: Unknown Error",
        "look at dmesg",
    )


def test_a_gpu_on_the_bus_without_a_driver() -> None:
    bare = machine(nvidia_nodes=(), kernel_modules=frozenset({"ext4"}), kernel_module_version=None)
    assert seen(check_nvml(facts(host_profile=no_gpu_host(), machine_facts=bare))) == (
        FAILURE,
        "an NVIDIA GPU is on the PCI bus (0000:01:00.0) but no NVIDIA driver is installed",
        "install the NVIDIA driver (e.g. sudo ubuntu-drivers install), then reboot",
    )
    no_gpu = replace(bare, nvidia_pci=())
    assert seen(check_nvml(facts(host_profile=no_gpu_host(), machine_facts=no_gpu))) == (
        OK,
        "no NVIDIA driver and no NVIDIA GPU on this machine",
        None,
    )
    in_container = replace(bare, container="/.dockerenv exists")
    assert check_nvml(facts(host_profile=no_gpu_host(), machine_facts=in_container)).status == SKIPPED


# --- cuda-visible-devices ----------------------------------------------------------------------


def two_gpus(*visible: bool) -> HostProfile:
    gpus = tuple(replace(A100, index=i, visible=v) for i, v in enumerate(visible))
    return host(nvidia_gpus=gpus)


def test_cuda_visible_devices_unset_or_naming_gpus() -> None:
    assert seen(check_cuda_visible_devices(facts())) == (OK, "CUDA_VISIBLE_DEVICES is not set", None)
    one = facts(host_profile=two_gpus(True, False), machine_facts=machine(cuda_visible_devices="0"))
    assert seen(check_cuda_visible_devices(one)) == (
        OK,
        "CUDA_VISIBLE_DEVICES='0': 1 of 2 GPUs visible",
        None,
    )


def test_cuda_visible_devices_hides_every_gpu() -> None:
    hidden = facts(host_profile=two_gpus(False), machine_facts=machine(cuda_visible_devices=""))
    assert seen(check_cuda_visible_devices(hidden)) == (
        FAILURE,
        "CUDA_VISIBLE_DEVICES='' hides every GPU: torch sees 0 of 1",
        "unset CUDA_VISIBLE_DEVICES",
    )


def test_cuda_visible_devices_names_a_gpu_that_does_not_exist() -> None:
    missing = facts(host_profile=two_gpus(False, False), machine_facts=machine(cuda_visible_devices="3"))
    assert seen(check_cuda_visible_devices(missing)) == (
        FAILURE,
        "CUDA_VISIBLE_DEVICES='3' names GPU 3, which does not exist here (GPUs 0,1): torch sees none",
        "export CUDA_VISIBLE_DEVICES=0,1",
    )
    stops = facts(host_profile=two_gpus(True, False), machine_facts=machine(cuda_visible_devices="0,5"))
    assert seen(check_cuda_visible_devices(stops)) == (
        WARNING,
        "CUDA_VISIBLE_DEVICES='0,5' names GPU 5, which does not exist; CUDA stops there and sees only 0",
        "export CUDA_VISIBLE_DEVICES=0",
    )


def test_cuda_visible_devices_applies_to_gpus_given_as_flags() -> None:
    given = host(sources={"driver_version": "--driver", "nvidia_gpus": "--compute-capability"})
    hidden = facts(host_profile=given, machine_facts=machine(cuda_visible_devices="-1"))
    assert check_cuda_visible_devices(hidden).summary == (
        "CUDA_VISIBLE_DEVICES='-1' hides every GPU: torch sees 0 of 1"
    )
    no_gpu = facts(host_profile=no_gpu_host(), machine_facts=machine(cuda_visible_devices="0"))
    assert check_cuda_visible_devices(no_gpu).status == SKIPPED


# --- container ---------------------------------------------------------------------------------


def container(**changes: Any) -> MachineFacts:
    return machine(container="/.dockerenv exists", **changes)


def test_not_in_a_container_or_with_gpus_passed_in() -> None:
    assert seen(check_container(facts())) == (OK, "not in a container", None)
    assert seen(check_container(facts(machine_facts=container()))) == (
        OK,
        "in a container with 3 /dev/nvidia* nodes",
        None,
    )


def test_a_container_asked_for_gpus_without_device_nodes() -> None:
    asked = container(nvidia_nodes=(), nvidia_visible_devices="all", nvidia_pci=())
    status, summary, fix = seen(check_container(facts(host_profile=no_gpu_host(), machine_facts=asked)))
    assert (status, summary) == (
        FAILURE,
        "running in a container without /dev/nvidia* although NVIDIA_VISIBLE_DEVICES=all: the GPUs were "
        "not passed in (NVIDIA Container Toolkit not set up, or the container not started with GPUs)",
    )
    assert fix is not None and fix.startswith("docker run --gpus all ...")
    on_gpu_host = container(nvidia_nodes=())
    assert check_container(facts(host_profile=no_gpu_host(), machine_facts=on_gpu_host)).summary.startswith(
        "running in a container without /dev/nvidia* although the host has an NVIDIA GPU (0000:01:00.0)"
    )


def test_a_container_without_gpus() -> None:
    without = container(nvidia_nodes=(), nvidia_pci=(), nvidia_visible_devices="void")
    assert seen(check_container(facts(host_profile=no_gpu_host(), machine_facts=without))) == (
        WARNING,
        "in a container without GPUs: the CUDA build of torch will run on the CPU",
        "docker run --gpus all ...  (if this container should have GPUs)",
    )
    cpu = facts(host_profile=no_gpu_host(), machine_facts=without, target_facts=target(TORCH_CPU))
    assert seen(check_container(cpu)) == (
        OK,
        "in a container without GPUs, with no CUDA build to use them",
        None,
    )


def test_a_container_without_gpus_checked_for_the_host_the_flags_describe() -> None:
    """``doctor --driver ... --compute-capability ...`` in a CPU container (CI checking for a
    fleet): the GPUs are the flags' host's, so the verdict is healthy without a "will run on
    the CPU" beside it, and it says whose GPUs they are."""
    without = container(nvidia_nodes=(), nvidia_pci=(), nvidia_visible_devices="void")
    given = host(sources={"driver_version": "--driver", "nvidia_gpus": "--compute-capability"})
    flagged = facts(host_profile=given, machine_facts=without)
    assert seen(check_container(flagged)) == (
        SKIPPED,
        "in a container without GPUs; the NVIDIA facts come from flags, so this container is not the "
        "host checked",
        None,
    )
    report = diagnose(flagged)
    assert report.healthy and "CPU" not in report.verdict
    assert (
        report.verdict == f"healthy: torch 2.5.1+cu124 runs on the host the flags describe, with {GPU_HOST}"
    )


# --- wsl ---------------------------------------------------------------------------------------


def test_wsl() -> None:
    assert seen(check_wsl(facts())) == (OK, "not WSL", None)
    mapped = machine(wsl=True, wsl_libcuda_present=True)
    assert seen(check_wsl(facts(machine_facts=mapped))) == (OK, "WSL2 with /usr/lib/wsl/lib/libcuda.so", None)
    assert seen(check_wsl(facts(machine_facts=machine(wsl=True)))) == (
        FAILURE,
        "WSL2 without /usr/lib/wsl/lib/libcuda.so: "
        "the Windows NVIDIA driver's CUDA support does not reach Linux",
        "install the current NVIDIA driver on Windows (not inside WSL), "
        "then run `wsl --shutdown` from Windows",
    )


# --- ld-library-path ---------------------------------------------------------------------------


def runtimes(*dirs: tuple[str, Optional[str]], extra: tuple[str, ...] = ()) -> MachineFacts:
    found = tuple(CudaRuntimeDir(i, d, v) for i, (d, v) in enumerate(dirs))
    return machine(cuda_runtime_dirs=found, ld_library_path=(*(d for d, _ in dirs), *extra))


def test_no_libcudart_on_ld_library_path() -> None:
    assert seen(check_ld_library_path(facts())) == (OK, "no libcudart on LD_LIBRARY_PATH", None)
    cpu = facts(
        machine_facts=runtimes(("/usr/local/cuda-11.8/lib64", "11.8")), target_facts=target(TORCH_CPU)
    )
    assert check_ld_library_path(cpu).summary == "libcudart on LD_LIBRARY_PATH, but no CUDA build of torch"


def test_an_older_toolkit_first_on_ld_library_path() -> None:
    old = runtimes(("/usr/local/cuda-11.8/lib64", "11.8"), extra=("/opt/lib",))
    assert seen(check_ld_library_path(facts(machine_facts=old))) == (
        FAILURE,
        "LD_LIBRARY_PATH puts /usr/local/cuda-11.8/lib64 (libcudart 11.8, an old CUDA toolkit) in front of "
        "the CUDA 12.4 runtime that torch 2.5.1+cu124 bundles",
        "export LD_LIBRARY_PATH=/opt/lib",
    )
    only = runtimes(("/usr/local/cuda-11/lib64", "11"))
    assert check_ld_library_path(facts(machine_facts=only)).fix == "unset LD_LIBRARY_PATH"


def test_a_newer_toolkit_on_ld_library_path_is_a_warning() -> None:
    newer = runtimes(("/usr/local/cuda-12.6/lib64", "12.6"))
    assert seen(check_ld_library_path(facts(machine_facts=newer))) == (
        WARNING,
        "LD_LIBRARY_PATH holds a CUDA toolkit's libcudart (/usr/local/cuda-12.6/lib64); torch loads its own "
        "CUDA 12.4 runtime, but this one may shadow it",
        None,
    )


# --- virtualenv --------------------------------------------------------------------------------


def test_a_virtual_or_conda_environment() -> None:
    assert seen(check_virtualenv(facts())) == (OK, f"virtual environment {PREFIX}", None)
    conda = target(virtualenv=False, conda=True)
    assert seen(check_virtualenv(facts(target_facts=conda))) == (OK, "conda environment /usr", None)


def test_a_system_python() -> None:
    system = facts(target_facts=target(virtualenv=False))
    fix = "python3.11 -m venv .venv && pip-gpu install --python .venv torch==2.5.1 torchvision==0.20.1"
    assert seen(check_virtualenv(system)) == (
        FAILURE,
        "/usr/bin/python3 is a system Python outside any virtual environment: torch installed there mixes "
        "with the system's packages",
        fix,
    )
    in_container = replace(system, machine=container())
    assert seen(check_virtualenv(in_container)) == (
        WARNING,
        "/usr/bin/python3 is a system Python outside any virtual environment (usual in a container image)",
        fix,
    )


# --- lock --------------------------------------------------------------------------------------


LOCK = PROJECT / "pylock.cu124.toml"


def locked(result: Optional[LockCheck] = None, **changes: Any) -> Facts:
    return facts(lock=LockFacts((LOCK,), result, **changes))


def test_no_lock_here() -> None:
    assert seen(check_lock(facts())) == (
        OK,
        f"no pip-gpu lock (pylock.<variant>.toml) or uv.lock in {PROJECT}",
        None,
    )


def test_the_environment_matches_the_lock() -> None:
    matching = LockCheck(LOCK, "cu124", (), {"torch": "2.5.1+cu124"})
    finding = check_lock(locked(matching))
    assert seen(finding) == (OK, "the environment matches the lock (pylock.cu124.toml)", None)
    assert finding.evidence == (f"lock for this host: {LOCK}", str(LOCK))


def test_the_environment_does_not_match_the_lock() -> None:
    stale = LockCheck(LOCK, "cu124", ("torch 2.5.1+cpu is installed; the lock wants 2.5.1+cu124",), {})
    assert seen(check_lock(locked(stale))) == (
        FAILURE,
        "the environment does not match the lock: torch 2.5.1+cpu is installed; the lock wants 2.5.1+cu124",
        "pip-gpu sync",
    )


def test_no_lock_runs_on_this_host() -> None:
    refused = LockCheck(
        None, None, ("the lock pins cu124 but the driver is too old",), {}, "upgrade the driver", False
    )
    finding = check_lock(locked(refused))
    assert seen(finding) == (
        FAILURE,
        "no lock here runs on this host: the lock pins cu124 but the driver is too old",
        "upgrade the driver",
    )
    assert finding.evidence[0] == "no lock here runs on this host (pip-gpu sync refuses too)"


def test_a_lock_that_cannot_be_read() -> None:
    assert seen(
        check_lock(locked(error="pylock.cu124.toml is not TOML", error_hint="run pip-gpu lock again"))
    ) == (
        FAILURE,
        "the lock cannot be checked: pylock.cu124.toml is not TOML",
        "run pip-gpu lock again",
    )
    assert seen(check_lock(locked(crash="KeyError('packages')"))) == (
        WARNING,
        "this check could not run: KeyError('packages')",
        None,
    )


# --- shims -------------------------------------------------------------------------------------

SHIMS = "/home/user/.pip-gpu/shims"
BYPASS = "`python -m pip` (and a pip run by its full path) bypasses the shims"


def test_no_shims_on_path() -> None:
    assert seen(check_shims(facts())) == (
        OK,
        "no pip-gpu shims on PATH: plain pip and uv do not check the torch build "
        f"(pip-gpu shim install adds them; {BYPASS})",
        None,
    )


def test_the_shims_come_first() -> None:
    first = machine(path=(SHIMS, "/usr/bin"), shim_dirs=(SHIMS,), first_pip=f"{SHIMS}/pip")
    assert seen(check_shims(facts(machine_facts=first))) == (
        OK,
        f"pip and uv go through pip-gpu's shims (/home/user/.pip-gpu/shims); {BYPASS}",
        None,
    )


def test_an_activated_venv_puts_its_pip_before_the_shims() -> None:
    behind = machine(path=(f"{PREFIX}/bin", SHIMS), shim_dirs=(SHIMS,), first_pip=f"{PREFIX}/bin/pip")
    finding = check_shims(facts(machine_facts=behind))
    assert seen(finding) == (
        WARNING,
        f"pip-gpu's shims (/home/user/.pip-gpu/shims) are on PATH, but {PREFIX}/bin/pip comes first "
        "(an activated venv?): plain pip bypasses them",
        'eval "$(pip-gpu shim init bash)" (or zsh, fish, powershell): its hook keeps the shims first',
    )
    assert finding.evidence == (f"PATH: {PREFIX}/bin:/home/user/.pip-gpu/shims",)


# --- cuda-build --------------------------------------------------------------------------------


def test_a_cuda_build_with_gpus_to_run_on() -> None:
    assert seen(check_cuda_build_has_a_gpu(facts())) == (OK, f"the CUDA build has {GPU_HOST} to run on", None)
    cpu = facts(host_profile=no_gpu_host(), target_facts=target(TORCH_CPU))
    assert seen(check_cuda_build_has_a_gpu(cpu)) == (OK, "no CUDA build of torch to run", None)


def test_a_cuda_build_on_a_host_without_gpus() -> None:
    assert seen(check_cuda_build_has_a_gpu(facts(host_profile=no_gpu_host()))) == (
        FAILURE,
        "torch 2.5.1+cu124 is a CUDA 12.4 build but no NVIDIA GPU was found: it will run on the CPU",
        "pip-gpu install --force-reinstall torch==2.5.1 torchvision==0.20.1",
    )
    unread = check_cuda_build_has_a_gpu(facts(host_profile=host(nvidia_gpus=())))
    assert seen(unread) == (
        FAILURE,
        "torch 2.5.1+cu124 is a CUDA 12.4 build but the NVIDIA GPUs could not be read: "
        "it will run on the CPU",
        None,
    )


# --- import ------------------------------------------------------------------------------------


def imported(**outcome: Any) -> Facts:
    return facts(torch_import=TorchImport(60.0, **outcome))


def test_torch_imports_and_runs_on_the_gpu() -> None:
    finding = check_import(
        imported(version="2.5.1+cu124", available=True, device_count=1, device=A100.name, tensor=4.0)
    )
    assert seen(finding) == (
        OK,
        "torch.cuda.is_available() is True: 1 device(s), NVIDIA A100-SXM4-80GB; "
        "a tensor op on cuda:0 gave 4.0",
        None,
    )
    assert finding.evidence == ("torch 2.5.1+cu124: torch.cuda.is_available() = True, device_count() = 1",)


def test_is_available_false_on_a_gpu_host() -> None:
    stderr = ("UserWarning: CUDA initialization: CUDA driver initialization failed",)
    assert seen(check_import(imported(version="2.5.1+cu124", stderr=stderr))) == (
        FAILURE,
        "torch.cuda.is_available() is False although 1 NVIDIA GPU(s) are visible: "
        "UserWarning: CUDA initialization: CUDA driver initialization failed",
        None,
    )
    without_gpu = replace(imported(version="2.5.1+cpu"), host=no_gpu_host())
    assert seen(check_import(without_gpu)) == (
        OK,
        "torch imports; torch.cuda.is_available() is False, as expected here",
        None,
    )


def test_an_import_that_fails_crashes_or_hangs() -> None:
    failed = imported(error="OSError: libcudart.so.12: cannot open shared object file", returncode=0)
    assert seen(check_import(failed)) == (
        FAILURE,
        "importing torch failed: OSError: libcudart.so.12: cannot open shared object file",
        None,
    )
    crashed = imported(reported=False, returncode=-11, stderr=("Segmentation fault",))
    finding = check_import(crashed)
    assert seen(finding) == (FAILURE, "importing torch crashed the interpreter (exit -11)", None)
    assert finding.evidence == ("Segmentation fault",)
    assert seen(check_import(imported(timed_out=True, reported=False))) == (
        FAILURE,
        "importing torch and initialising CUDA took longer than 60 s",
        "check `dmesg` for NVRM/Xid errors and whether `nvidia-smi` answers",
    )
    assert check_import(imported(launch_error="[Errno 13] Permission denied", reported=False)).summary == (
        f"{PYTHON} could not be run: [Errno 13] Permission denied"
    )


def test_the_import_is_skipped_without_torch() -> None:
    no_torch = facts(target_facts=target(package("numpy", "2.1.0")))
    assert seen(check_import(no_torch)) == (SKIPPED, "torch is not installed", None)
