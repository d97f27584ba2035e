"""`pip-gpu detect`, `explain` and `matrix` as a user runs them: real processes, real NVML binding.

The NVIDIA driver is the fake ``libnvidia-ml.so.1`` built from ``fixtures/fake_nvml``, loaded
by the real ``nvidia-ml-py`` through ``LD_LIBRARY_PATH``; sysfs and procfs point at empty
trees so that this machine's own hardware never leaks into an answer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support.cli import PLUGIN, pip_gpu
from support.fake_nvml import A100, H100, RTX_4090, V100

A100_ON_535 = ("--driver", "535.104.05", "--compute-capability", "8.0")


# --- detect --------------------------------------------------------------------------------


def test_detect_json_reports_exactly_what_nvml_says(host_env) -> None:  # type: ignore[no-untyped-def]
    env = host_env(driver="550.54.15", cuda=12040, gpus=[V100, RTX_4090, H100])
    done = pip_gpu("detect", "--json", env=env)
    assert done.returncode == 0, done.stderr
    host = json.loads(done.stdout)
    assert host["driver_version"] == "550.54.15"
    assert host["cuda_driver_version"] == "12.4"
    assert [
        (g["index"], g["name"], g["compute_capability"], g["memory_total_mib"], g["uuid"], g["visible"])
        for g in host["nvidia_gpus"]
    ] == [
        (0, V100.name, "7.0", V100.mem_mib, V100.uuid, True),
        (1, RTX_4090.name, "8.9", RTX_4090.mem_mib, RTX_4090.uuid, True),
        (2, H100.name, "9.0", H100.mem_mib, H100.uuid, True),
    ]
    assert host["sources"]["driver_version"] == "nvml"
    assert host["problems"] == []


def test_detect_honours_cuda_visible_devices_by_index_and_uuid(host_env) -> None:  # type: ignore[no-untyped-def]
    env = host_env(gpus=[V100, RTX_4090, H100])
    env["CUDA_VISIBLE_DEVICES"] = f"2,{V100.uuid[:12]}"
    host = json.loads(pip_gpu("detect", "--json", env=env).stdout)
    assert [g["visible"] for g in host["nvidia_gpus"]] == [True, False, True]
    env["CUDA_VISIBLE_DEVICES"] = "1,99,2"  # CUDA stops at the first entry it cannot match
    host = json.loads(pip_gpu("detect", "--json", env=env).stdout)
    assert [g["visible"] for g in host["nvidia_gpus"]] == [False, True, False]


def test_detect_readable_table_names_sources(host_env) -> None:  # type: ignore[no-untyped-def]
    done = pip_gpu("detect", env=host_env(gpus=[A100]))
    assert done.returncode == 0
    assert "535.104.05, supports CUDA <= 12.2" in done.stdout
    assert A100.name in done.stdout and "8.0 (sm_80)" in done.stdout and "[nvml" in done.stdout


def test_driver_library_mismatch_says_reboot_and_falls_back_to_procfs(host_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = host_env(init_error=18)
    version = Path(env["PIP_GPU_PROCFS_ROOT"]) / "driver" / "nvidia" / "version"
    version.parent.mkdir(parents=True)
    version.write_text(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n"
    )
    done = pip_gpu("detect", "--json", env=env)
    host = json.loads(done.stdout)
    assert host["driver_version"] == "550.54.15"
    assert host["sources"]["driver_version"].startswith("procfs")
    problem = host["problems"][0]
    assert problem["code"] == "nvml-driver-mismatch" and "reboot" in problem["hint"].lower()
    text = pip_gpu("detect", env=env).stdout
    assert "reboot" in text.lower()
    assert "Traceback" not in done.stderr


def test_no_nvidia_library_means_no_nvidia_gpu(host_env, no_nvml_dir: Path) -> None:  # type: ignore[no-untyped-def]
    env = host_env()
    env["LD_LIBRARY_PATH"] = str(no_nvml_dir)
    host = json.loads(pip_gpu("detect", "--json", env=env).stdout)
    assert host["driver_version"] is None and host["nvidia_gpus"] == [] and host["problems"] == []
    decision = json.loads(pip_gpu("explain", "torch==2.5.1", "--json", env=env).stdout)
    assert decision["variant"] == "cpu"
    procfs = env["PIP_GPU_PROCFS_ROOT"]
    looked = (
        "not found: looked in NVML (libnvidia-ml.so.1: not found), "
        f"{procfs}/driver/nvidia/version (absent), nvidia-smi (not on PATH)"
    )
    assert host["sources"]["driver_version"] == looked
    text = pip_gpu("detect", env=env).stdout.splitlines()
    assert text[1] == f"Driver     no NVIDIA driver   [{looked}]"  # where it looked, in words
    assert pip_gpu("detect", "--no-gpu", env=env).stdout.splitlines()[1] == "Driver     none   [--no-gpu]"


# --- explain -------------------------------------------------------------------------------


def test_explain_headline_case_from_the_readme() -> None:
    done = pip_gpu("explain", "torch==2.5.1", *A100_ON_535, "--json")
    assert done.returncode == 0, done.stderr
    decision = json.loads(done.stdout)
    assert decision["variant"] == "cu124"
    assert decision["index_url"] == "https://download.pytorch.org/whl/cu124"
    assert decision["torch"] == "2.5.1"
    assert decision["host"]["driver_version"] == "535.104.05"
    assert {"variant", "torch", "ok", "reason"} <= set(decision["candidates"][0])
    assert "error" not in decision


def test_explain_json_candidates_say_the_version_and_which_was_chosen() -> None:
    decision = json.loads(pip_gpu("explain", "torch==2.5.1", *A100_ON_535, "--json").stdout)
    assert decision["schema_version"] == 1
    assert (decision["torch"], decision["release"]) == ("2.5.1", "2.5")
    chosen = [c for c in decision["candidates"] if c["chosen"]]
    assert [(c["variant"], c["torch"], c["release"]) for c in chosen] == [("cu124", "2.5.1", "2.5")]
    assert all(c["torch"] == "2.5.1" for c in decision["candidates"])  # as the top level says


def test_a_blackwell_gpu_on_driver_535_is_told_the_driver_it_needs(tmp_path: Path) -> None:
    """No 535 driver drives an sm_120 board: explain and install name the driver, not torch 2.13."""
    blackwell_on_535 = ("--driver", "535.104.05", "--compute-capability", "12.0", "--offline")
    needs = (
        "GPU 0 (sm_120) needs an NVIDIA driver >= 570.26 on linux, the first for Blackwell (consumer) GPUs"
    )
    text = pip_gpu("explain", "torch==2.5.1", *blackwell_on_535, cwd=tmp_path)
    assert text.returncode == 2 and needs in text.stdout.splitlines()[0], text.stdout
    assert text.stdout.splitlines()[1] == (
        "  ways out: upgrade the NVIDIA driver to >= 570.26 (no torch build runs on this GPU before that); "
        "or pass --variant cpu for a CPU-only build"
    )
    assert "use torch" not in text.stdout
    offline = {**os.environ, "PIP_GPU_OFFLINE": "1"}
    install = pip_gpu(
        "install", "--dry-run", "torch", "--python", sys.executable, *blackwell_on_535[:-1], env=offline
    )
    assert install.returncode == 2 and needs in install.stderr and "use torch" not in install.stderr


def test_explain_says_when_nothing_in_the_request_needs_torch(tmp_path: Path) -> None:
    text = pip_gpu("explain", "numpy", "--no-gpu", "--offline", cwd=tmp_path).stdout.splitlines()
    assert text[1] == (
        "Note: nothing in the request needs torch (no torch-family package, and none of the others "
        "requires one): this is the build a torch-family package would get here"
    ), text
    notes = json.loads(pip_gpu("explain", "numpy", "--no-gpu", "--offline", "--json", cwd=tmp_path).stdout)[
        "notes"
    ]
    assert any(n.startswith("nothing in the request needs torch") for n in notes)
    asked = pip_gpu("explain", "torch==2.5.1", "--no-gpu", cwd=tmp_path).stdout
    assert "nothing in the request needs torch" not in asked
    # builds for another kind of GPU do not "run" on this one: no "runs" next to "no"
    assert "runs, but" not in asked
    assert "rocm6.2  no       for an AMD GPU, and this host has none (it would run on the CPU)" in asked


def test_explain_decides_from_detected_gpus(host_env) -> None:  # type: ignore[no-untyped-def]
    env = host_env(driver="470.82.01", cuda=11040, gpus=[A100])
    decision = json.loads(pip_gpu("explain", "torch==2.5.1", "--json", env=env).stdout)
    assert decision["variant"] == "cu118"  # 470 runs CUDA 11.x builds only


def test_explain_refusal_is_exit_2_with_error_and_candidates() -> None:
    done = pip_gpu(
        "explain", "torch==2.5.1", "--driver", "440.33.01", "--compute-capability", "8.0", "--json"
    )
    assert done.returncode == 2
    decision = json.loads(done.stdout)
    assert decision["variant"] is None and decision["index_url"] is None
    assert "440.33.01" in decision["error"] and "450.80.02" in decision["hint"]
    assert decision["candidates"] and not any(c["ok"] for c in decision["candidates"])
    text = pip_gpu("explain", "torch==2.5.1", "--driver", "440.33.01", "--compute-capability", "8.0")
    assert text.returncode == 2 and text.stdout.startswith("No build runs")


def test_explain_takes_host_facts_from_the_environment(host_env) -> None:  # type: ignore[no-untyped-def]
    env = host_env(gpus=[])
    env.update(PIP_GPU_DRIVER="535.104.05", PIP_GPU_COMPUTE_CAPABILITY="8.0,9.0")
    decision = json.loads(pip_gpu("explain", "torch==2.5.1", "--json", env=env).stdout)
    assert decision["variant"] == "cu124"
    assert [g["compute_capability"] for g in decision["host"]["nvidia_gpus"]] == ["8.0", "9.0"]
    env.update(PIP_GPU_NO_GPU="1")
    del env["PIP_GPU_DRIVER"], env["PIP_GPU_COMPUTE_CAPABILITY"]
    assert json.loads(pip_gpu("explain", "torch==2.5.1", "--json", env=env).stdout)["variant"] == "cpu"
    env.update(PIP_GPU_VARIANT="cu121", PIP_GPU_DRIVER="535.104.05")
    del env["PIP_GPU_NO_GPU"]
    assert json.loads(pip_gpu("explain", "torch==2.5.1", "--json", env=env).stdout)["variant"] == "cu121"


def test_explain_for_an_amd_host_given_as_flags(host_env) -> None:  # type: ignore[no-untyped-def]
    """--amd-gfx is the AMD counterpart of --compute-capability: this machine's NVIDIA GPU is not asked."""
    env = host_env(driver="550.54.15", cuda=12040, gpus=[A100])  # the CI runner has an NVIDIA GPU
    env["PIP_GPU_OFFLINE"] = "1"
    decision = json.loads(
        pip_gpu("explain", "torch==2.5.1", "--amd-gfx", "gfx1100", "--json", env=env).stdout
    )
    assert decision["variant"] == "rocm6.2"
    assert decision["host"]["nvidia_gpus"] == [] and decision["host"]["driver_version"] is None
    assert [(g["gfx_target"], g["source"]) for g in decision["host"]["amd_gpus"]] == [
        ("gfx1100", "--amd-gfx")
    ]
    text = pip_gpu("explain", "torch", "--amd-gfx", "gfx1100", "--python-version", "3.12", env=env)
    assert text.returncode == 0 and "-> rocm" in text.stdout.splitlines()[0]  # a ROCm build, not the CPU one
    assert "AMD gfx1100" in text.stdout.splitlines()[1]
    # A gfx target no ROCm build of the release lists: the CPU build, with the reason.
    outside = json.loads(
        pip_gpu("explain", "torch==2.5.1", "--json", env={**env, "PIP_GPU_AMD_GFX": "gfx1036"}).stdout
    )
    assert outside["variant"] == "cpu" and outside["host"]["amd_gpus"][0]["source"] == "PIP_GPU_AMD_GFX"
    assert any("gfx1036" in note and "CPU build" in note for note in outside["notes"])
    # ... or a refusal when that ROCm build is asked for by name (--force still installs it).
    forced = pip_gpu("explain", "torch==2.5.1", "--amd-gfx", "gfx1036", "--variant", "rocm6.2", env=env)
    assert forced.returncode == 2 and "gfx1036 not in this ROCm build" in forced.stdout.splitlines()[0]
    several = json.loads(
        pip_gpu("explain", "torch==2.5.1", "--json", env={**env, "PIP_GPU_AMD_GFX": "gfx90a, GFX942"}).stdout
    )
    assert [g["gfx_target"] for g in several["host"]["amd_gpus"]] == ["gfx90a", "gfx942"]


def test_explain_for_a_rubin_gpu_names_it_and_the_kernels_that_run() -> None:
    """Rubin (10.7) runs the sm_100 kernels of a CUDA 13 build: the reason says so, text and JSON."""
    rubin = ("--compute-capability", "10.7", "--driver", "615.71.09", "--offline")
    done = pip_gpu("explain", *rubin, "--json")
    assert done.returncode == 0, done.stderr
    decision = json.loads(done.stdout)
    assert (
        decision["cuda"].startswith("13.")
        and decision["host"]["nvidia_gpus"][0]["compute_capability"] == "10.7"
    )
    chosen = next(c for c in decision["candidates"] if c["variant"] == decision["variant"] and c["ok"])
    coverage = "covers GPU 0 (sm_107, Rubin) through sm_100 kernels"
    assert chosen["reason"] == f"driver 615.71.09 >= 580 (CUDA {decision['cuda']}); {coverage}"
    text = pip_gpu("explain", *rubin)
    row = next(line for line in text.stdout.splitlines() if "CHOSEN" in line)
    assert row.endswith("covers GPU 0 (sm_107, Rubin) through sm_100 kernels"), text.stdout


def test_bad_amd_gfx_is_one_error_line() -> None:
    from support.cli import assert_one_line_error

    assert_one_line_error(pip_gpu("explain", "torch", "--amd-gfx", "navi31"), "'navi31'", "--amd-gfx gfx1100")
    assert_one_line_error(
        pip_gpu("explain", "torch", "--amd-gfx", "gfx1100", "--no-gpu"), "--no-gpu contradicts"
    )


def test_explain_reads_requirements_files(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("torchvision==0.20.1 ; python_version >= '3.9'\n")
    (tmp_path / "requirements.txt").write_text("# training stack\n-r base.txt\nfixture-app\n")
    done = pip_gpu(
        "explain",
        "-r",
        "requirements.txt",
        "--driver",
        "535.104.05",
        "--compute-capability",
        "8.0",
        "--json",
        cwd=tmp_path,
        env={**_clean_env(), "PYTHONPATH": str(PLUGIN)},
    )
    decision = json.loads(done.stdout)
    assert (decision["variant"], decision["torch"]) == ("cu124", "2.5")


def test_project_policy_in_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.pip-gpu]\nvariants = ["cu121", "cpu"]\n')
    env = {**_clean_env(), "PYTHONPATH": str(PLUGIN)}
    done = pip_gpu(
        "explain",
        "torch==2.5.1",
        "--driver",
        "535.104.05",
        "--compute-capability",
        "8.0",
        "--json",
        cwd=tmp_path,
        env=env,
    )
    assert json.loads(done.stdout)["variant"] == "cu121"
    (tmp_path / "pyproject.toml").write_text("[tool.pip-gpu\nvariants = \n")
    broken = pip_gpu("explain", "torch", "--no-gpu", cwd=tmp_path, env=env)
    assert broken.returncode == 2
    assert "not valid TOML" in broken.stderr and "Traceback" not in broken.stderr


# --- matrix and help -----------------------------------------------------------------------


def test_matrix_json_is_the_knowledge_with_sources() -> None:
    done = pip_gpu("matrix", "--json")
    data = json.loads(done.stdout)
    release = next(r for r in data["releases"] if r["torch"] == "2.5")
    cu124 = next(b for b in release["builds"] if b["variant"] == "cu124" and b["platform"] == "linux-x86_64")
    assert cu124["cuda"] == "12.4" and "9.0" in cu124["sass"] and cu124["source"]
    assert all(row["source"] for row in data["cuda_drivers"])
    newest = data["releases"][0]
    assert newest["torch"] == "2.15" and "3.14t" in newest["python"]
    assert newest["pypi_defaults"]["windows-x86_64"] == "cpu"
    assert data["tegra"]["compute_capabilities"] == ["5.3", "6.2", "7.2", "8.7", "11.0"]
    text = pip_gpu("matrix").stdout
    assert "cu124" in text
    assert "3.11-3.15 3.14t 3.15t" in text  # free-threaded Pythons listed apart
    assert "gfx90a" in text  # ROCm builds show their gfx targets


def test_help_explains_the_commands() -> None:
    done = pip_gpu("--help")
    assert done.returncode == 0
    for command in ("detect", "explain", "install", "matrix"):
        assert command in done.stdout
    assert "exit status" in done.stdout
    assert "--compute-capability" in pip_gpu("explain", "--help").stdout
    for command in ("explain", "install", "lock"):
        assert "--amd-gfx" in pip_gpu(command, "--help").stdout, command


def test_detect_and_explain_load_only_what_their_answer_needs(host_env) -> None:  # type: ignore[no-untyped-def]
    """The decision path stays light (bench rows 2-2c): no parser of the other commands, no
    terminal-width look-up (shutil, with bz2 and lzma), no platform, sysconfig, subprocess or
    tempfile (ctypes.util's, imported by the NVML binding and never called)."""
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['pip-gpu', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('pip_gpu', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "unwanted = ('shutil', 'platform', 'sysconfig', 'subprocess', 'tempfile', 'ctypes.util',"
        " 'pip_gpu.cli.install', 'pip_gpu.cli.lock', 'pip_gpu.install')\n"
        "print('LOADED', sorted(m for m in unwanted if m in sys.modules))\n"
    )
    env = host_env(gpus=[A100])
    for args in (("detect", "--json"), ("explain", "torch==2.5.1", "--json", "--offline")):
        done = subprocess.run(
            [sys.executable, "-c", probe, *args], env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        assert "8.0" in done.stdout and "LOADED []" in done.stdout, (args, done.stdout[-300:])
    # the parsers left out are still there for their commands' help
    assert "pip-gpu matrix" in pip_gpu("matrix", "--help", env=env).stdout
    assert "pip-gpu detect" in pip_gpu("detect", "--help", env=env).stdout


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("PIP_GPU_")}
