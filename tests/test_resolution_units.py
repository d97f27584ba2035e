"""The pure parts of reading the whole request: pip reports, direct URLs, indexes, preferences."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from pip_gpu.decide.resolution import (
    Installed,
    TorchConstraint,
    WholeRequest,
    constraints_from_report,
    constraints_of_lines,
    index_args_for,
    settle,
    variant_of_link,
)
from pip_gpu.decide.rules import TorchRequest, decide, request_from_requirements
from pip_gpu.host import HostProfile, NvidiaGpu
from pip_gpu.knowledge import load_knowledge
from pip_gpu.requirements import parse_requirement_args

FAMILY = frozenset({"torch", "torchvision", "torchaudio", "xformers"})
VARIANTS = frozenset({"cpu", "cu118", "cu121", "cu124", "cu126"})


def _item(name: str, version: str, requires: list[str], extras: list[str] | None = None) -> dict:  # type: ignore[type-arg]
    item = {"metadata": {"name": name, "version": version, "requires_dist": requires}}
    if extras is not None:
        item["requested_extras"] = extras
    return item


def test_a_report_names_who_requires_what_of_the_family() -> None:
    report = {
        "environment": {"python_version": "3.11", "sys_platform": "linux", "platform_machine": "x86_64"},
        "install": [
            _item(
                "vllm", "0.6.4.post1", ["torch==2.5.1", "xformers==0.0.28.post3; platform_system == 'Linux'"]
            ),
            _item("torchmetrics", "1.6.0", ["torch>=2.0", "lightning; extra == 'all'"]),
            _item("app", "1.0", ["torchvision; extra == 'vision'"], extras=["vision"]),
            _item("old", "1.0", ["torch<2; python_version < '3.8'"]),
            _item("torch", "2.5.1", ["sympy"]),  # the family's own picks say nothing
        ],
    }
    found = {c.describe() for c in constraints_from_report(report, FAMILY)}
    assert found == {
        "vllm==0.6.4.post1 requires torch==2.5.1",
        "vllm==0.6.4.post1 requires xformers==0.0.28.post3",
        "torchmetrics==1.6.0 requires torch>=2.0",
        "app==1.0 requires torchvision",
    }


@pytest.mark.parametrize(
    ("link", "variant"),
    [
        (
            "https://download.pytorch.org/whl/cu124/xformers-0.0.28.post3-cp311-cp311-manylinux_2_28_x86_64.whl",
            "cu124",
        ),
        ("https://example.com/wheels/torch-2.5.1%2Bcu121-cp311-cp311-linux_x86_64.whl", "cu121"),
        ("./dist/torchaudio-2.5.1+cpu-cp311-cp311-linux_x86_64.whl", "cpu"),
        ("https://example.com/wheels/xformers-0.0.28.post3-py3-none-any.whl", None),
    ],
)
def test_a_direct_url_or_wheel_says_its_variant(link: str, variant: str | None) -> None:
    assert variant_of_link(link, VARIANTS) == variant


def test_family_lines_keep_where_they_came_from() -> None:
    wheel = "xformers @ https://download.pytorch.org/whl/cu121/xformers-0.0.28.post2-py3-none-any.whl"
    found = constraints_of_lines(parse_requirement_args(["torch>=2.4", "numpy", wheel]), FAMILY, VARIANTS)
    assert [c.describe() for c in found] == ["command line asks torch>=2.4", f"{wheel} is a cu121 build"]


def test_uv_index_settings_become_pip_options_for_the_resolution() -> None:
    env = {"UV_DEFAULT_INDEX": "https://mirror/simple", "UV_INDEX": "team=https://team/simple"}
    args = ["--index=extra=https://other/simple", "--find-links", "./wheels"]
    assert index_args_for("uv", args, env) == (
        "--index-url", "https://mirror/simple",
        "--extra-index-url", "https://other/simple",
        "--find-links", "./wheels",
        "--extra-index-url", "https://team/simple",
    )  # fmt: skip
    # the one rule (config.user_indexes): uv's configuration counts whichever installer installs,
    # and the command's own default index wins; --no-index leaves no default index
    assert index_args_for("pip", ["-i", "https://mirror2/simple"], env) == (
        "--index-url", "https://mirror2/simple",
        "--extra-index-url", "https://team/simple",
    )  # fmt: skip
    assert index_args_for("uv", ["--no-index"], env) == (
        "--no-index",
        "--extra-index-url",
        "https://team/simple",
    )


A100_535 = HostProfile(
    os="linux",
    arch="x86_64",
    python_version="3.11",
    driver_version="535.104.05",
    nvidia_gpus=(NvidiaGpu(index=0, name="A100", compute_capability=(8, 0), source="flag"),),
)


def _settle(request: TorchRequest, whole: WholeRequest):  # type: ignore[no-untyped-def]
    knowledge = load_knowledge()

    def decide_with(wanted: TorchRequest):  # type: ignore[no-untyped-def]
        return decide(wanted, A100_535, knowledge)

    return settle(decide_with(request), request, whole, decide_with, request)


def test_the_installed_build_is_kept_when_the_request_admits_it() -> None:
    request = request_from_requirements([Requirement("torchaudio")], load_knowledge())
    installed = Installed("2.5.1+cu124", "2.5.1", "cu124")
    decision = _settle(request, WholeRequest((), (), (installed,)))
    assert (decision.torch, decision.variant) == ("2.5.1", "cu124")
    assert any("keeping the installed torch 2.5.1+cu124" in note for note in decision.notes)


def test_a_cpu_build_on_a_gpu_host_is_never_kept() -> None:
    request = TorchRequest()
    decision = _settle(request, WholeRequest((), (), (Installed("2.5.1+cpu", "2.5.1", "cpu"),)))
    assert decision.variant != "cpu"
    assert any(
        "torch 2.5.1+cpu is installed, but" in note and "does not run here" in note for note in decision.notes
    )


def test_a_request_that_excludes_the_installed_torch_says_who_asks() -> None:
    asks = TorchConstraint("torch", SpecifierSet("==2.6.0"), "xformers==0.0.29", "family-member")
    request = TorchRequest(torch_specifier=SpecifierSet("==2.6.0"), exact_torch="2.6.0")
    decision = _settle(request, WholeRequest((asks,), (), (Installed("2.5.1+cu124", "2.5.1", "cu124"),)))
    assert decision.torch == "2.6.0"
    assert any(
        "torch 2.5.1+cu124 is installed, but this request needs torch 2.6.0" in note
        and "xformers==0.0.29 requires torch==2.6.0" in note
        for note in decision.notes
    )


def test_a_lock_is_preferred_after_the_installed_build(tmp_path: Path) -> None:
    locked = Installed("2.4.1+cu121", "2.4.1", "cu121", source="pylock.cu121.toml")
    installed = Installed("2.5.1+cu124", "2.5.1", "cu124")
    decision = _settle(TorchRequest(), WholeRequest((), (), (locked, installed)))
    assert (decision.torch, decision.variant) == ("2.5.1", "cu124")
    decision = _settle(TorchRequest(), WholeRequest((), (), (locked,)))
    assert (decision.torch, decision.variant) == ("2.4.1", "cu121")


def test_pip_settings_become_uv_options_for_the_shims_quick_check(tmp_path: Path) -> None:
    from pip_gpu.shim.closure import _pip_config_files, pip_settings, uv_args_for_pip

    env = {
        "PIP_CONFIG_FILE": os.devnull,  # no files: the variables alone
        "PIP_INDEX_URL": "https://mirror/simple",
        "PIP_EXTRA_INDEX_URL": "https://a https://b",
        "PIP_PRE": "1",
        "PIP_GPU_DRIVER": "535.104.05",  # pip-gpu's own, not pip's
    }
    settings = pip_settings(env)
    assert settings is not None
    assert uv_args_for_pip(settings, [("--find-links", "./wheels")]) == [
        "--index-strategy", "unsafe-best-match",  # pip takes the best version from every index
        "--index-url", "https://mirror/simple",
        "--extra-index-url", "https://a", "--extra-index-url", "https://b",
        "--find-links", "./wheels",
        "--prerelease", "allow",
    ]  # fmt: skip
    # settings the translation cannot carry: pip itself is asked
    assert pip_settings({**env, "PIP_TRUSTED_HOST": "mirror"}) is None
    assert uv_args_for_pip(settings, [("--only-binary", ":all:")]) is None
    # a named config file is read last, after pip's usual places
    config = tmp_path / "pip.conf"
    assert _pip_config_files({"PIP_CONFIG_FILE": str(config), "HOME": str(tmp_path)})[-1] == config


def test_the_users_indexes_go_to_uvs_environment_behind_the_family_index() -> None:
    from pip_gpu.decide.resolution import reading_environment

    args = ("--index-url", "https://alice:pw@mirror/simple", "--extra-index-url", "https://x/s?token=t")
    env = reading_environment(
        (*args, "--find-links", "./wheels"), {"UV_INDEX": "old=https://o"}, "file:///fam"
    )
    assert env["UV_DEFAULT_INDEX"] == "https://alice:pw@mirror/simple"
    assert env["UV_INDEX"] == "pip-gpu-family=file:///fam https://x/s?token=t"  # the family first
    assert env["UV_FIND_LINKS"] == "./wheels" and env["UV_INDEX_STRATEGY"] == "first-index"
    # nothing given for the command: the indexes uv is set up with, else pip's
    assert reading_environment((), {"PIP_INDEX_URL": "https://p/simple"}, None)["UV_DEFAULT_INDEX"] == (
        "https://p/simple"
    )
    # pip's indexes are merged (pip takes the best version of all), as the one rule gives them
    # to uv; uv's own indexes keep uv's first-index, the family index first either way
    pip_merges = {"PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": "https://p/simple"}
    pip_merges["PIP_EXTRA_INDEX_URL"] = "https://e/simple"
    merged = reading_environment((), pip_merges, "file:///fam")
    assert merged["UV_INDEX"] == "pip-gpu-family=file:///fam https://e/simple"
    assert merged["UV_INDEX_STRATEGY"] == "unsafe-best-match"
    uvs = {"UV_NO_CONFIG": "1", "UV_DEFAULT_INDEX": "https://p/simple", "UV_INDEX": "https://e/simple"}
    assert reading_environment((), uvs, "file:///fam")["UV_INDEX_STRATEGY"] == "first-index"


def test_a_uv_resolution_says_who_brings_the_family_in() -> None:
    from pip_gpu.decide.resolution import parse_resolution

    text = (
        "fixture-llm==0.6.4.post1\n    # via -r request.txt\n    # from http://i/simple\n"
        "./mylib-0.1-py3-none-any.whl\n    # via -r request.txt\n"
        "torch==2.5.1+cu124\n    # via\n    #   fixture-llm\n    #   mylib\n    # from file:///fam\n"
    )
    entries = parse_resolution(text)
    assert entries[0] == ("fixture-llm", "==", "0.6.4.post1", ["-r request.txt"], "http://i/simple")
    assert entries[1][:3] == ("", "@", "./mylib-0.1-py3-none-any.whl")
    assert entries[2] == ("torch", "==", "2.5.1+cu124", ["fixture-llm", "mylib"], "file:///fam")


def test_uvs_conflict_is_one_line_and_a_missing_index_is_named() -> None:
    from pip_gpu.decide.resolution import ResolutionConflict, _failure

    conflict = _failure(
        "  \u00d7 No solution found when resolving dependencies:\n"
        "  \u2570\u2500\u25b6 Because only torchaudio==2.4.1+cu124 is available and torchaudio==2.4.1+cu124 "
        "depends on\n"
        "      torch==2.4.1, we can conclude that all versions of torchaudio depend on torch==2.4.1.\n"
        "      And because you require torch==2.5.1, we can conclude that your requirements are "
        "unsatisfiable.\n"
    )
    assert isinstance(conflict, ResolutionConflict) and "\n" not in conflict.message
    assert "torch==2.4.1" in conflict.message and "torch==2.5.1" in conflict.message
    unreachable = _failure(
        "error: Failed to fetch: `http://bob:pw@127.0.0.1:9/simple/x/`\n"
        "  cause: Connection refused (os error 111)\n"
    )
    assert not isinstance(unreachable, ResolutionConflict)
    assert "127.0.0.1:9" in unreachable.message and "pw" not in unreachable.message
