"""The decision over a table of hosts, against the knowledge file pip-gpu ships.

Each row is a situation a user is in and the build they must get (or the refusal, with the
way out). Boundaries are tested on both sides.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import pytest
from packaging.requirements import Requirement

from pip_gpu.decide.rules import (
    Blocker,
    Decision,
    Policy,
    decide,
    gpu_covered_by,
    request_from_requirements,
)
from pip_gpu.errors import UsageError
from pip_gpu.host import (
    AmdGpu,
    HostProblem,
    HostProfile,
    IntelGpu,
    NvidiaGpu,
)
from pip_gpu.knowledge import load_knowledge

KNOWLEDGE = load_knowledge()

V100, T4, A100, A10, RTX4090, H100, RTX5090, B200 = (
    (7, 0),
    (7, 5),
    (8, 0),
    (8, 6),
    (8, 9),
    (9, 0),
    (12, 0),
    (10, 0),
)
GTX1080, K80, GTX750 = (6, 1), (3, 7), (5, 0)


def host(
    driver: Optional[str] = None,
    ccs: tuple[tuple[int, int], ...] = (),
    *,
    os: str = "linux",
    arch: str = "x86_64",
    python: str = "3.11",
    visible: Optional[tuple[int, ...]] = None,
    amd: tuple[str, ...] = (),
    intel_discrete: bool = False,
    problems: tuple[HostProblem, ...] = (),
) -> HostProfile:
    gpus = tuple(
        NvidiaGpu(
            index=i,
            name=f"GPU{i}",
            compute_capability=cc,
            source="test",
            visible=visible is None or i in visible,
        )
        for i, cc in enumerate(ccs)
    )
    return HostProfile(
        os=os,
        arch=arch,
        python_version=python,
        driver_version=driver,
        nvidia_gpus=gpus,
        amd_gpus=tuple(AmdGpu(gfx_target=g, name=g, source="test") for g in amd),
        intel_gpus=(IntelGpu("0x56a0", "Intel Arc A770", True, "test"),) if intel_discrete else (),
        cuda_visible_devices="set" if visible is not None else None,
        problems=problems,
    )


def run(
    *requirements: str,
    on: HostProfile,
    variant: Optional[str] = None,
    force: bool = False,
    policy: Optional[Policy] = None,
) -> Decision:
    reqs = [Requirement(r) for r in requirements] or [Requirement("torch")]
    request = request_from_requirements(reqs, KNOWLEDGE, variant=variant, force=force)
    return decide(request, on, KNOWLEDGE, policy=policy or Policy())


def chosen(decision: Decision) -> tuple[Optional[str], Optional[str]]:
    return decision.variant, decision.torch


# --- the headline case and driver boundaries ---------------------------------------


def test_a100_on_535_gets_cu124_for_torch_2_5_1() -> None:
    decision = run("torch==2.5.1", on=host("535.104.05", (A100,)))
    assert chosen(decision) == ("cu124", "2.5.1")
    assert decision.index_url == "https://download.pytorch.org/whl/cu124"
    rejected = {c.variant: c for c in decision.candidates if c.torch == "2.5"}
    assert rejected["cpu"].ok is False and "NVIDIA" in rejected["cpu"].reason


@pytest.mark.parametrize(
    ("driver", "expected"),
    [
        ("525.60.13", "cu124"),  # exactly the 12.x minor-version-compatibility minimum
        ("525.60.12", "cu118"),  # one below: only 11.x builds run
        ("450.80.02", "cu118"),  # exactly the 11.x minimum
    ],
)
def test_driver_boundaries_for_cuda_12_and_11(driver: str, expected: str) -> None:
    assert run("torch==2.5.1", on=host(driver, (A100,))).variant == expected


def test_driver_below_every_build_is_refused_with_the_driver_to_install() -> None:
    decision = run("torch==2.5.1", on=host("450.80.01", (A100,)))
    assert not decision.ok and decision.variant is None
    assert decision.blocker is not None
    assert "450.80.01" in decision.blocker.message
    assert ">= 450.80.02" in decision.blocker.hint
    assert "--variant cpu" in decision.blocker.hint


def test_a_decision_hands_callers_its_build_or_raises_the_blocker() -> None:
    """``chosen()`` gives every part of the build, typed; a refused decision raises NoBuildRuns (exit 2)."""
    from pip_gpu.errors import EXIT_NO_BUILD, NoBuildRuns

    build = run("torch==2.5.1", on=host("535.104.05", (A100,))).chosen()
    assert (build.variant, build.torch, build.release.torch) == ("cu124", "2.5.1", "2.5")
    assert build.variant.is_cuda and build.build.cuda == "12.4"
    assert build.index_url == "https://download.pytorch.org/whl/cu124"

    refused = run("torch==2.5.1", on=host("450.80.01", (A100,)))
    blocker = refused.blocked()
    assert blocker is not None and "450.80.01" in blocker.message
    with pytest.raises(NoBuildRuns) as raised:
        refused.chosen()
    assert raised.value.exit_code == EXIT_NO_BUILD
    assert (raised.value.message, raised.value.hint) == (blocker.message, blocker.hint)


def test_cuda_13_needs_the_r580_driver() -> None:
    minimum = KNOWLEDGE.minimum_driver_for("13.0", "linux")
    assert minimum is not None and minimum.startswith("580")
    assert run("torch", on=host(minimum, (H100,))).variant in ("cu130", "cu132")
    assert run("torch", on=host("575.57.08", (H100,))).variant not in ("cu130", "cu132")


def test_open_requirement_takes_the_newest_release_and_its_newest_runnable_cuda() -> None:
    assert run("torch", on=host("580.65.06", (A100,))).torch == KNOWLEDGE.releases[0].torch
    decision = run("torch", on=host("535.104.05", (A100,)))
    # torch 2.15 publishes CUDA 13 builds only: a 535 driver gets the newest release with a 12.x one.
    assert decision.torch == "2.14"
    assert decision.build is not None and decision.build.cuda is not None
    assert decision.build.cuda.startswith("12.")  # 535 runs no CUDA 13 build


def test_windows_uses_the_windows_driver_minimums() -> None:
    # CUDA 12.x minor-version compatibility on Windows starts at 528.33 (527.41 was 12.0 GA only).
    assert run("torch==2.5.1", on=host("528.33", (A10,), os="windows")).variant == "cu124"
    assert run("torch==2.5.1", on=host("527.41", (A10,), os="windows")).variant == "cu118"
    # Windows R580 drivers are numbered 580.88, 581.xx: CUDA 13 needs the branch.
    assert run("torch==2.14.1", on=host("581.15", (A10,), os="windows")).variant == "cu132"
    assert run("torch==2.14.1", on=host("576.02", (A10,), os="windows")).variant == "cu126"


# --- GPU architectures ---------------------------------------------------------------------


def test_rtx_5090_is_not_given_a_build_without_blackwell_kernels() -> None:
    # torch 2.5's builds stop at sm_90 with no PTX: nothing runs on sm_120.
    decision = run("torch==2.5.1", on=host("570.124.06", (RTX5090,)))
    assert not decision.ok
    assert decision.blocker is not None and "sm_120" in decision.blocker.message
    # No driver helps; a newer release does, and the hint names it.
    assert "upgrade the NVIDIA driver" not in decision.blocker.hint
    assert "torch==2.11.*" in decision.blocker.hint or "torch==2.1" in decision.blocker.hint


def test_a_blackwell_board_on_a_driver_older_than_blackwell_is_told_the_driver_it_needs() -> None:
    """No 535 driver drives an RTX 5090 (R570 came with CUDA 12.8, the first for sm_120): the
    way out is the driver the GPU needs, never an older torch release."""
    for request in ("torch==2.5.1", "torch"):
        decision = run(request, on=host("535.104.05", (RTX5090,)))
        assert not decision.ok and decision.blocker is not None
        assert decision.blocker.message.startswith(f"no build of {request} runs on this host: ")
        assert decision.blocker.message.endswith(
            "(sm_120) needs an NVIDIA driver >= 570.26 on linux, the first for Blackwell (consumer) "
            "GPUs (CUDA 12.8); driver 535.104.05 predates it"
        )
        assert decision.blocker.hint.startswith("upgrade the NVIDIA driver to >= 570.26")
        assert "use torch" not in decision.blocker.hint
    assert run("torch", on=host("570.26", (RTX5090,))).ok
    # A driver too old for every build anyway keeps the builds' own minimum as the way out.
    old = run("torch==2.5.1", on=host("440.33.01", (A100,)))
    assert old.blocker is not None and old.blocker.hint.startswith(
        "upgrade the NVIDIA driver to >= 450.80.02"
    )


def test_rtx_5090_open_requirement_gets_a_release_with_sm_120() -> None:
    decision = run("torch", on=host("570.124.06", (RTX5090,)))
    assert decision.ok and decision.build is not None and decision.build.sass is not None
    assert (12, 0) in decision.build.sass
    assert decision.variant in ("cu128", "cu129")  # 570 cannot run CUDA 13 builds


def test_pascal_gets_the_build_that_still_has_sm_60() -> None:
    decision = run("torch", on=host("580.65.06", (GTX1080,)))
    assert decision.variant == "cu126"  # cu128+ dropped Pascal
    assert decision.build is not None and decision.build.sass is not None and (6, 0) in decision.build.sass


def test_mixed_gpus_need_one_build_covering_all_of_them() -> None:
    both = run("torch", on=host("580.65.06", (V100, RTX5090)))
    assert both.ok and both.build is not None and both.build.sass is not None
    assert (7, 0) in both.build.sass and (12, 0) in both.build.sass
    only_5090 = run("torch", on=host("580.65.06", (V100, RTX5090), visible=(1,)))
    assert only_5090.torch == KNOWLEDGE.releases[0].torch  # V100 hidden: newest release again
    assert both.torch != only_5090.torch


def test_all_gpus_hidden_decides_for_all_and_says_so() -> None:
    decision = run("torch==2.5.1", on=host("535.104.05", (A100,), visible=()))
    assert decision.variant == "cu124"
    assert any("hides every GPU" in note for note in decision.notes)


@pytest.mark.parametrize(
    ("cc", "sass", "ptx", "runs"),
    [
        ((8, 9), [(8, 0), (8, 6)], [], True),  # same major, lower minor cubin
        ((8, 0), [(8, 6)], [], False),  # a higher minor cubin does not run
        ((9, 0), [(8, 6)], [], False),  # another major never runs a cubin
        ((12, 0), [(9, 0)], [(9, 0)], True),  # PTX JIT-compiles forward
        ((8, 6), [(7, 5)], [(9, 0)], False),  # PTX never runs backwards
    ],
)
def test_architecture_coverage_rules(cc, sass, ptx, runs) -> None:  # type: ignore[no-untyped-def]
    from pip_gpu.knowledge import Build

    build = Build("cu124", "linux-x86_64", tuple(sass), tuple(ptx), None, "high", "test")
    assert gpu_covered_by(cc, build) is runs


# --- requirements, companions, Python ------------------------------------------------------


def test_companion_alone_implies_its_torch_release() -> None:
    assert chosen(run("torchvision==0.20.1", on=host("535.104.05", (A100,)))) == ("cu124", "2.5")


def test_contradicting_pins_are_refused() -> None:
    decision = run("torch==2.5.1", "torchvision==0.21.0", on=host("535.104.05", (A100,)))
    assert not decision.ok and decision.blocker is not None
    assert decision.blocker.message == (
        "torch==2.5.1 and torchvision==0.21.0 do not belong together: "
        "torchvision==0.21.0 pairs with torch 2.6"
    )
    assert "torchvision 0.20.x" in decision.blocker.hint


def test_python_version_a_release_does_not_support() -> None:
    decision = run("torch==2.5.1", on=host("535.104.05", (A100,), python="3.8"))
    assert not decision.ok and decision.blocker is not None
    assert "Python 3.8" in decision.blocker.message
    assert all(not c.ok and "Python 3.8" in c.reason for c in decision.candidates)


def test_open_requirement_on_old_python_gets_the_newest_release_for_it() -> None:
    decision = run("torch", on=host("535.104.05", (A100,), python="3.8"))
    assert decision.ok and decision.release is not None and "3.8" in decision.release.python


def test_unknown_patch_release_is_refused() -> None:
    assert not run("torch==2.5.9", on=host("535.104.05", (A100,))).ok


# --- forcing a variant ---------------------------------------------------------------------


def test_local_label_forces_the_variant() -> None:
    assert chosen(run("torch==2.5.1+cu121", on=host("535.104.05", (A100,)))) == ("cu121", "2.5.1")


def test_forced_variant_the_host_cannot_run_is_refused_unless_forced() -> None:
    old = host("470.82.01", (A100,))
    refused = run("torch==2.5.1+cu124", on=old)
    assert not refused.ok and refused.blocker is not None
    assert "cu124" in refused.blocker.message and "--force" in refused.blocker.hint
    forced = run("torch==2.5.1+cu124", on=old, force=True)
    assert forced.variant == "cu124"
    assert any("--force" in note for note in forced.notes)


def test_cpu_variant_on_purpose_is_allowed_on_an_nvidia_host() -> None:
    assert run("torch==2.5.1", on=host("535.104.05", (A100,)), variant="cpu").variant == "cpu"


def test_two_different_labels_are_a_usage_error() -> None:
    with pytest.raises(UsageError, match="different variants"):
        run("torch==2.5.1+cu121", "torchvision==0.20.1+cu124", on=host("535.104.05", (A100,)))


def test_unknown_variant_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="cu999"):
        run("torch", on=host(), variant="cu999")


# --- hosts without NVIDIA, other platforms -------------------------------------------------


def test_no_gpu_gets_cpu() -> None:
    decision = run("torch==2.5.1", on=host())
    assert chosen(decision) == ("cpu", "2.5.1")
    assert decision.index_url == "https://download.pytorch.org/whl/cpu"


def test_macos_gets_the_default_pypi_build() -> None:
    decision = run("torch==2.5.1", on=host(os="macos", arch="arm64"))
    assert chosen(decision) == ("default", "2.5.1")
    assert decision.index_url is None


def test_aarch64_linux_with_hopper() -> None:
    decision = run("torch", on=host("580.65.06", (H100,), arch="aarch64"))
    assert decision.ok and decision.build is not None
    assert decision.build.platform == "linux-aarch64" and decision.build.cuda is not None


def test_amd_gpu_gets_a_rocm_build() -> None:
    decision = run("torch==2.5.1", on=host(amd=("gfx90a",)))
    assert decision.variant is not None and decision.variant.startswith("rocm")


def test_intel_discrete_gpu_gets_xpu_where_published() -> None:
    assert run("torch==2.5.1", on=host(intel_discrete=True)).variant == "xpu"


# --- missing facts -------------------------------------------------------------------------


def test_gpus_given_without_a_driver_ask_for_the_driver() -> None:
    decision = run("torch", on=host(None, (A100,)))
    assert not decision.ok and decision.blocker is not None
    assert "--driver" in decision.blocker.hint


def test_driver_without_gpus_decides_by_driver_alone() -> None:
    decision = run("torch==2.5.1", on=host("535.104.05"))
    assert decision.variant == "cu124"


def test_driver_whose_gpus_cannot_be_read_is_refused_not_given_cpu() -> None:
    problem = HostProblem("nvml-driver-mismatch", "driver/library version mismatch", "reboot")
    broken = HostProfile(
        os="linux", arch="x86_64", python_version="3.11", driver_version="550.54.15", problems=(problem,)
    )
    # The driver alone still decides: the GPUs are unknown, not absent.
    decision = run("torch==2.5.1", on=broken)
    assert decision.variant != "cpu"


# --- policy --------------------------------------------------------------------------------


def test_policy_restricts_variants() -> None:
    decision = run(
        "torch", on=host("580.65.06", (A100,)), policy=Policy(allowed_variants=frozenset({"cu124", "cpu"}))
    )
    assert decision.variant == "cu124"
    assert decision.release is not None and any(b.variant == "cu124" for b in decision.release.builds)


def test_policy_prefers_a_variant_when_it_runs() -> None:
    decision = run("torch==2.5.1", on=host("580.65.06", (A100,)), policy=Policy(preferred_variant="cu121"))
    assert decision.variant == "cu121"


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("https://download.pytorch.org/whl", "https://download.pytorch.org/whl/cu124"),
        ("https://download.pytorch.org/whl/", "https://download.pytorch.org/whl/cu124"),
        (
            "https://mirror.example/pytorch/whl?token=s3cr3t",
            "https://mirror.example/pytorch/whl/cu124?token=s3cr3t",
        ),
    ],
)
def test_variant_index_keeps_a_mirrors_query_string(base: str, expected: str) -> None:
    from pip_gpu.variant import variant_index_url

    assert variant_index_url(base, "cu124") == expected
    assert variant_index_url(base, "default") is None


# --- facts corrected by the 2026-11 audit, and torch 2.15 ------------------------------------


def test_torch_2_14_publishes_no_python_3_15_wheels() -> None:
    decision = run("torch==2.14.1", on=host("580.65.06", (H100,), python="3.15"))
    assert not decision.ok and decision.blocker is not None
    assert "has wheels for Python 3.15" in decision.blocker.message
    assert run("torch==2.15.0", on=host("580.65.06", (H100,), python="3.15")).variant == "cu132"


def test_python_3_10_stops_at_2_14_and_3_12_gets_2_15() -> None:
    assert run("torch", on=host("580.65.06", (H100,), python="3.10")).torch == "2.14"
    newest = run("torch", on=host("580.65.06", (H100,), python="3.12"))
    assert (newest.torch, newest.variant) == ("2.15", "cu132")


def test_torch_2_15_needs_the_r580_driver_and_turing() -> None:
    # 2.15 has only CUDA 13 builds (no cu126 confirmed): Volta and a 570 driver stay on 2.14.
    assert run("torch", on=host("580.65.06", (V100,), python="3.12")).torch == "2.14"
    assert run("torch", on=host("570.86.10", (H100,), python="3.12")).torch == "2.14"


def test_free_threaded_python_is_a_target_of_its_own() -> None:
    assert run("torch", on=host("580.65.06", (H100,), python="3.14t")).torch == "2.15"
    assert run("torch==2.9.1", on=host("580.65.06", (H100,), python="3.14t")).ok
    refused = run("torch==2.8.0", on=host("580.65.06", (H100,), python="3.14t"))
    assert not refused.ok and refused.blocker is not None
    assert "Python 3.14t" in refused.blocker.message


def test_cp313t_wheels_differ_between_2_12_patches() -> None:
    assert run("torch==2.12.0", on=host("580.65.06", (H100,), python="3.13t")).ok
    refused = run("torch==2.12.1", on=host("580.65.06", (H100,), python="3.13t"))
    assert not refused.ok
    assert any("in torch 2.12.1 (only 2.12.0)" in c.reason for c in refused.candidates)
    assert run("torch", on=host("580.65.06", (H100,), python="3.13t")).torch == "2.12"


def test_jetson_capability_on_aarch64_is_refused_with_the_jetson_hint() -> None:
    decision = run("torch", on=host("540.4.0", ((8, 7),), arch="aarch64"))
    assert not decision.ok and decision.blocker is not None
    assert "Jetson (Tegra)" in decision.blocker.message
    assert "Jetson" in decision.blocker.hint and "--variant cpu" in decision.blocker.hint
    # The same capability number on x86_64 is just an unusual GPU, not a Jetson.
    assert "Jetson" not in (run("torch", on=host("580.65.06", ((8, 7),))).blocker or Blocker("", "")).message


def test_detected_tegra_board_refuses_sbsa_wheels_even_without_nvml() -> None:
    board = host(None, (), arch="aarch64", python="3.12").with_changes(tegra="/etc/nv_tegra_release: R36")
    decision = run("torch", on=board)
    assert not decision.ok and decision.blocker is not None
    assert "(/etc/nv_tegra_release: R36)" in decision.blocker.message
    assert run("torch", on=board, variant="cpu").variant == "cpu"


def test_jetson_thor_runs_the_cu130_sbsa_build() -> None:
    decision = run("torch", on=host("580.65.06", ((11, 0),), arch="aarch64", python="3.12"))
    assert decision.ok and decision.build is not None
    assert (11, 0) in (decision.build.sass or ())


def test_amd_gpu_outside_every_rocm_build_is_told() -> None:
    decision = run("torch==2.5.1", on=host(amd=("gfx1036",)))
    assert decision.variant == "cpu"
    assert any(
        "gfx1036" in c.reason and c.variant.startswith("rocm") and not c.ok for c in decision.candidates
    )
    assert any("no ROCm build of torch 2.5 supports this AMD GPU" in note for note in decision.notes)
    assert run("torch==2.5.1", on=host(amd=("gfx90a",))).variant == "rocm6.2"


def test_rubin_runs_the_sm_100_kernels_of_a_cuda_13_build() -> None:
    """Compute capability 10.7 needs no new wheels: sm_100 SASS runs on it (pytorch#190654)."""
    decision = run("torch", on=host("615.71.09", ((10, 7),), python="3.12"))
    assert decision.ok and decision.build is not None and decision.build.cuda is not None
    assert decision.build.cuda.startswith("13.") and (10, 0) in (decision.build.sass or ())
    assert "covers GPU0 (sm_107, Rubin) through sm_100 kernels" in next(
        c.reason for c in decision.candidates if c.ok
    )


def test_coverage_reason_names_the_generation_and_the_kernels_that_run() -> None:
    """The GPU table names the generation; code for another architecture says which."""
    ada = run("torch==2.5.1", on=host("550.54.15", (RTX4090,)))
    assert (
        ada.variant == "cu124"
        and "covers GPU0 (sm_89, Ada Lovelace) through sm_86 kernels" in ada.candidates[0].reason
    )
    exact = run("torch==2.5.1", on=host("550.54.15", (A100,)))
    assert exact.candidates[0].reason.endswith("covers GPU0 (sm_80, Ampere)")
    unnamed = run("torch==2.5.1", on=host("550.54.15", ((8, 8),)))  # no row of the GPU table: no name
    assert unnamed.candidates[0].reason.endswith("covers GPU0 (sm_88) through sm_86 kernels")


def test_amd_gpu_prefers_a_rocm_build_and_refuses_a_forced_one_without_its_gfx() -> None:
    # 2.15's ROCm rows are unconfirmed (AUDIT-2026-12); with a pin they still come before the CPU build.
    decision = run("torch==2.15.0", on=host(amd=("gfx1100",), python="3.12"))
    assert decision.variant is not None and decision.variant.startswith("rocm") and decision.torch == "2.15.0"
    # rocm7.14's gfx targets are not known: not vouched for, as unknown CUDA architectures are not.
    unknown = run("torch==2.14.1", on=host(amd=("gfx1100",), python="3.12"), variant="rocm7.14")
    assert not unknown.ok and unknown.blocker is not None and "not known" in unknown.blocker.message
    refused = run("torch==2.5.1", on=host(amd=("gfx1036",)), variant="rocm6.2")
    assert not refused.ok and refused.blocker is not None and "gfx1036" in refused.blocker.message
    assert run("torch==2.5.1", on=host(amd=("gfx1036",)), variant="rocm6.2", force=True).variant == "rocm6.2"


def test_an_unconfirmed_row_does_not_beat_a_confirmed_one_of_an_older_release() -> None:
    """2.15 rocm7.2 is marked likely wrong: offline, open torch on gfx1100 takes 2.14's confirmed
    rocm7.2 and says why; once the index is seen to serve 2.15 rocm7.2, it wins."""
    gfx1100 = host(amd=("gfx1100",), python="3.12")
    decision = run("torch", on=gfx1100)
    assert (decision.variant, decision.torch) == ("rocm7.2", "2.14")
    assert "torch 2.15 rocm7.2 is not confirmed in pip-gpu's knowledge" in decision.notes[0]
    passed = next(c for c in decision.candidates if (c.torch, c.variant) == ("2.15", "rocm7.2"))
    assert passed.ok and passed.reason.endswith("; not confirmed")
    seen = replace(
        KNOWLEDGE,
        releases=tuple(
            replace(r, builds=tuple(replace(b, seen_on_index=b.variant == "rocm7.2") for b in r.builds))
            for r in KNOWLEDGE.releases
        ),
    )
    request = request_from_requirements([Requirement("torch")], seen)
    confirmed = decide(request, gfx1100, seen)
    assert (confirmed.variant, confirmed.torch) == ("rocm7.2", "2.15") and not confirmed.notes
    # A GPU build is not given up for an older CPU build, nor a confirmed newest build for anything.
    assert (run("torch", on=host("615.71.09", (H100,), python="3.12")).torch) == "2.15"


def test_companions_that_pin_a_range_pair_with_later_releases() -> None:
    on = host("580.65.06", (H100,), python="3.12")
    # torchvision 0.29.0 requires torch==2.14.0; 0.29.1 and later require torch>=2.14.0.
    assert run("torchvision==0.29.0", on=on).torch == "2.14"
    assert run("torchvision==0.29.2", on=on).torch == "2.15"
    assert run("torch", "torchvision>=0.29", on=on).torch == "2.15"
