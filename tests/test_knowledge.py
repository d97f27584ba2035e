"""The shipped knowledge file: it loads, every row is sourced, and the facts users rely on hold."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from pip_gpu.knowledge import cuda_of_variant, knowledge_from_dict, load_knowledge

CONFIDENCES = {"high", "medium", "unconfirmed"}
DOTTED = re.compile(r"^\d+(\.\d+)+$")
PLATFORMS = {"linux-x86_64", "linux-aarch64", "windows-x86_64", "macos-arm64", "macos-x86_64"}
SERIES = ["1.13"] + [f"2.{minor}" for minor in range(16)]

# torch series -> the CUDA variants it was published with (reference torch_variants.csv;
# the unadvertised cu129 Linux builds are checked separately).
CUDA_VARIANTS = {
    "1.13": {"cu116", "cu117"},
    "2.0": {"cu117", "cu118"},
    "2.1": {"cu118", "cu121"},
    "2.2": {"cu118", "cu121"},
    "2.3": {"cu118", "cu121"},
    "2.4": {"cu118", "cu121", "cu124"},
    "2.5": {"cu118", "cu121", "cu124"},
    "2.6": {"cu118", "cu124", "cu126"},
    "2.7": {"cu118", "cu126", "cu128"},
    "2.8": {"cu126", "cu128", "cu129"},
    "2.9": {"cu126", "cu128", "cu130"},
    "2.10": {"cu126", "cu128", "cu130"},
    "2.11": {"cu126", "cu128", "cu130"},
    "2.12": {"cu126", "cu130", "cu132"},
    "2.13": {"cu126", "cu130", "cu132"},
    "2.14": {"cu126", "cu130", "cu132"},
    "2.15": {"cu132"},  # confirmed from PyPI's wheels; cu130 is a lead (AUDIT-2026-11 s7)
}

FAMILY = [
    "torch",
    "torchvision",
    "torchaudio",
    "torchtext",
    "torchdata",
    "torchrec",
    "torchao",
    "torchtune",
    "torchcodec",
    "torchserve",
    "torch-tensorrt",
    "fbgemm-gpu",
    "xformers",
    "triton",
    "pytorch-triton",
    "pytorch-triton-rocm",
    "pytorch-triton-xpu",
]


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    text = resources.files("pip_gpu").joinpath("data/knowledge.json").read_text("utf-8")
    return json.loads(text)


@pytest.fixture(scope="module")
def kb():
    return load_knowledge()


def _rows(raw: dict[str, Any]):
    """Every sourced row of the raw file, with a label for failure messages."""
    keys = ("cuda_drivers", "minor_version_compat", "driver_branches", "family", "gpus", "amd_device_ids")
    for key in (*keys, "gpu_drivers"):
        for i, row in enumerate(raw[key]):
            yield f"{key}[{i}]", row
    for rel in raw["releases"]:
        yield f"release {rel['torch']}", rel
        for build in rel["builds"]:
            yield f"release {rel['torch']} {build['variant']}/{build['platform']}", build


def _build(kb, series: str, variant: str, platform: str):
    release = kb.release(series)
    assert release is not None, series
    for build in release.builds:
        if build.variant == variant and build.platform == platform:
            return build
    raise AssertionError(f"no {variant} build for {platform} in torch {series}")


def _cc(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


# --- shape ---------------------------------------------------------------------------------


def test_file_loads(kb, raw) -> None:
    assert raw["schema"] == 1
    assert kb.pytorch_index == "https://download.pytorch.org/whl"
    assert kb.cuda_drivers and kb.driver_branches and kb.family and kb.releases and kb.gpus


def test_every_row_has_source_and_confidence(raw) -> None:
    for label, row in _rows(raw):
        assert isinstance(row.get("source"), str) and row["source"].strip(), label
        assert row.get("confidence") in CONFIDENCES, label
    for row in raw["cuda_drivers"]:
        assert row.get("windows_confidence", "high") in CONFIDENCES, row["cuda"]


def test_version_strings_parse(raw) -> None:
    fields = ("cuda", "linux_minor_compat", "windows_minor_compat", "linux_toolkit")
    for row in raw["cuda_drivers"]:
        for field in (*fields, "windows_toolkit"):
            value = row[field]
            if field.endswith("minor_compat") and value is not None and value.isdigit():
                assert row["cuda"].startswith("13."), row["cuda"]  # NVIDIA states only the branch
                continue
            if value is not None:
                assert DOTTED.match(value), (row["cuda"], field, value)
                Version(value)
    for row in raw["driver_branches"]:
        assert isinstance(row["branch"], int)
        Version(row["max_cuda"])
    for rel in raw["releases"]:
        Version(rel["torch"])
        unconfirmed = rel.get("unconfirmed_versions", [])
        assert not set(unconfirmed) & set(rel["versions"]), rel["torch"]
        for version in [*rel["versions"], *unconfirmed]:
            assert Version(version).release[:2] == Version(rel["torch"]).release, version
        for python in rel["python"]:
            assert python.startswith("3.") and Version(python.removesuffix("t"))
        for python, versions in rel.get("python_only_in", {}).items():
            assert python in rel["python"] and set(versions) <= set(rel["versions"]), rel["torch"]
        for series in rel["companions"].values():
            assert DOTTED.match(series), (rel["torch"], series)
        for name, text in rel.get("companion_ranges", {}).items():
            assert name in rel["companions"] and SpecifierSet(text), (rel["torch"], name)
        for build in rel["builds"]:
            if build["variant"].startswith("rocm"):
                Version(build["variant"][4:])


def test_cuda_driver_rows_cover_11_0_to_13_2(kb) -> None:
    wanted = [f"11.{m}" for m in range(9)] + [f"12.{m}" for m in range(10)]
    wanted += ["13.0", "13.1", "13.2"]
    have = {row.cuda for row in kb.cuda_drivers}
    assert set(wanted) <= have
    for row in kb.cuda_drivers:
        if Version(row.cuda) > Version("13.4"):  # 13.4 GA's driver is known (AUDIT-2026-12), 13.5's not
            assert row.confidence == "unconfirmed", row.cuda
        assert row.linux_minor_compat is not None, row.cuda


def test_releases_cover_series(kb) -> None:
    assert [r.torch for r in kb.releases] == sorted(SERIES, key=Version, reverse=True)
    for release in kb.releases:
        assert release.versions, release.torch
        assert release.python, release.torch
        assert release.pypi_default is not None, release.torch


def test_builds_are_well_formed(kb) -> None:
    for release in kb.releases:
        seen = set()
        for build in release.builds:
            key = (build.variant, build.platform)
            assert key not in seen, (release.torch, key)
            seen.add(key)
            assert build.platform in PLATFORMS, (release.torch, key)
            if build.variant.startswith("rocm"):
                assert build.platform == "linux-x86_64", (release.torch, key)
            if build.variant == "default":
                assert build.platform.startswith("macos-"), (release.torch, key)
            if build.platform.startswith("macos-"):
                assert build.variant == "default", (release.torch, key)
            if build.cuda is not None:
                if build.ptx is None and build.sass is not None:  # SASS known, PTX not
                    assert "PTX UNCONFIRMED" in build.source, (release.torch, key)
                else:
                    assert (build.sass is None) == (build.ptx is None), (release.torch, key)
                if build.sass is None:
                    assert build.confidence == "unconfirmed", (release.torch, key)
                else:
                    assert build.sass, (release.torch, key)


def test_every_release_has_cpu_and_its_cuda_variants(kb) -> None:
    for release in kb.releases:
        linux = {b.variant for b in release.builds if b.platform == "linux-x86_64"}
        assert "cpu" in linux, release.torch
        assert CUDA_VARIANTS[release.torch] <= linux, release.torch
        assert any(b.platform == "macos-arm64" for b in release.builds), release.torch
        assert release.pypi_default in linux, release.torch


def test_unadvertised_cu129_builds_say_so(kb) -> None:
    for series in ("2.9", "2.10", "2.11", "2.12", "2.13"):
        build = _build(kb, series, "cu129", "linux-x86_64")
        assert "not advertised" in build.source.lower(), series
        assert build.confidence != "high", series


def test_variants_ordered(kb) -> None:
    variants = kb.variants()
    assert variants[0] in {"cpu", "default"}
    assert variants[-1] == "cu132"
    assert "xpu" in variants and "rocm6.2" in variants


# --- facts users rely on --------------------------------------------------------------------


def test_cu124_in_2_5_is_hopper_not_blackwell(kb) -> None:
    build = _build(kb, "2.5", "cu124", "linux-x86_64")
    assert (9, 0) in build.sass
    assert (10, 0) not in build.sass and (12, 0) not in build.sass
    assert build.ptx == ()


def test_cu128_in_2_7_has_ptx_120_and_no_maxwell(kb) -> None:
    build = _build(kb, "2.7", "cu128", "linux-x86_64")
    assert (12, 0) in build.ptx and (12, 0) in build.sass
    assert (5, 0) not in build.sass and (7, 0) not in build.sass


def test_cu128_in_2_8_brought_volta_back(kb) -> None:
    assert (7, 0) in _build(kb, "2.8", "cu128", "linux-x86_64").sass
    assert (7, 0) not in _build(kb, "2.11", "cu128", "linux-x86_64").sass


def test_cu130_starts_at_turing(kb) -> None:
    for release in kb.releases:
        for build in release.builds:
            if build.variant in ("cu130", "cu132") and build.platform == "linux-x86_64":
                assert min(build.sass) == (7, 5), release.torch


def test_cu126_keeps_maxwell(kb) -> None:
    for series in ("2.6", "2.9", "2.14"):
        assert (5, 0) in _build(kb, series, "cu126", "linux-x86_64").sass


def test_windows_lists_differ_in_older_releases(kb) -> None:
    win = _build(kb, "2.0", "cu118", "windows-x86_64")
    linux = _build(kb, "2.0", "cu118", "linux-x86_64")
    assert (6, 1) in win.sass and (6, 1) not in linux.sass
    assert win.ptx == ((3, 7),) and linux.ptx == ()


def test_rocm_gfx_targets_per_rocm_version(kb) -> None:
    rocm62 = _build(kb, "2.5", "rocm6.2", "linux-x86_64")
    assert rocm62.sass is None and rocm62.gfx is not None
    assert "gfx90a" in rocm62.gfx and "gfx1100" in rocm62.gfx and "gfx1201" not in rocm62.gfx
    assert "gfx1201" in _build(kb, "2.7", "rocm6.3", "linux-x86_64").gfx
    assert "gfx950" in _build(kb, "2.11", "rocm7.1", "linux-x86_64").gfx
    assert "gfx1151" in _build(kb, "2.14", "rocm7.2", "linux-x86_64").gfx
    assert _build(kb, "2.14", "rocm7.14", "linux-x86_64").gfx is None  # not known (AUDIT-2026-11 s10)


def test_driver_minimums(kb) -> None:
    assert kb.minimum_driver_for("12.4", "linux") == "525.60.13"
    assert kb.minimum_driver_for("12.4", "windows") == "528.33"  # Table 2, not the 12.0 GA 527.41
    assert kb.minimum_driver_for("12.0", "windows") == "528.33"
    assert kb.minimum_driver_for("13.0", "windows") == "580"  # NVIDIA states only the branch
    assert kb.minimum_driver_for("11.8", "linux") == "450.80.02"
    assert kb.minimum_driver_for("11.8", "windows") == "452.39"
    assert kb.minimum_driver_for("13.0", "linux") == "580"  # a branch on Linux too (AUDIT-2026-12)
    assert kb.cuda_row("12.4").linux_toolkit == "550.54.14"
    assert kb.minimum_driver_for("10.2", "linux") is None


def test_minor_version_compat_per_cuda_major(kb, raw) -> None:
    """Every row of a CUDA major carries its major's floor; a major NVIDIA does not list has none."""
    assert kb.minimum_driver_for_major(13, "linux") == kb.minimum_driver_for_major(13, "windows") == "580"
    assert kb.minimum_driver_for_major(12, "windows") == "528.33"
    assert kb.minimum_driver_for_major(14, "linux") is None
    for row in kb.cuda_drivers:
        major = int(row.cuda.split(".")[0])
        for os_name in ("linux", "windows"):
            rule = kb.minimum_driver_for_major(major, os_name)
            assert row.minimum_driver(os_name) == rule, (row.cuda, os_name)
    assert all(rule["source"].strip() for rule in raw["minor_version_compat"])


def test_a_branch_minimum_admits_every_driver_of_the_branch() -> None:
    """R580 as a branch: the Jetson Thor's 580.00 meets it, R575 does not, R615 Windows (616.xx) does."""
    from pip_gpu.host import driver_at_least

    assert driver_at_least("580.00", "580") and driver_at_least("580.65.06", "580")
    assert driver_at_least("616.92", "580") and not driver_at_least("575.57.08", "580")


def test_december_2026_rows(kb) -> None:
    """AUDIT-2026-12: 13.4 GA's driver, R615 -> 13.4, 13.5 known with its driver unknown, Rubin, Thor."""
    row = kb.cuda_row("13.4")
    assert (row.linux_toolkit, row.confidence) == ("615.71.09", "medium") and "13.4.1" in row.source
    assert kb.cuda_row("13.5").linux_toolkit is None and "UNKNOWN" in kb.cuda_row("13.5").source
    assert kb.max_cuda_for_driver("615.71.09") == "13.4" == kb.max_cuda_for_driver("616.92")
    assert [b.confidence for b in kb.driver_branches if b.branch == 615] == ["high"]
    assert any("Rubin" in name for name in kb.gpu_names_for((10, 7)))
    assert any("NVIDIA Thor" in name for name in kb.gpu_names_for((11, 0)))
    assert kb.tegra is not None and "sbsa/cu130" in kb.tegra.jetson_index_hint
    r215 = kb.release("2.15")
    assert r215 is not None
    rocm = {str(b.variant): b.confidence for b in r215.builds if b.variant.is_rocm}
    assert rocm == {"rocm7.2": "unconfirmed", "rocm7.14": "unconfirmed", "rocm10.0": "unconfirmed"}
    assert "LIKELY WRONG" in next(b.source for b in r215.builds if str(b.variant) == "rocm7.2")


def test_driver_branch_max_cuda(kb) -> None:
    assert kb.max_cuda_for_driver("535.104.05") == "12.2"
    assert kb.max_cuda_for_driver("565.57.01") == "12.7"
    assert kb.max_cuda_for_driver("550.54.15") == "12.4"
    assert kb.max_cuda_for_driver("580.95.05") == "13.0"
    assert kb.max_cuda_for_driver("440.33") is None
    assert kb.max_cuda_for_driver("garbage") is None


def test_every_cuda_variant_has_a_driver_row(kb) -> None:
    for variant in kb.variants():
        cuda = cuda_of_variant(variant)
        if cuda is not None:
            assert kb.cuda_row(cuda) is not None, variant


def test_family(kb) -> None:
    for name in FAMILY:
        assert kb.family_member(name) is not None, name
    assert kb.family_member("Torch_Vision") is None
    assert kb.family_member("fbgemm_gpu") is not None
    for name in ("torch", "torchvision", "torchaudio"):
        assert kb.family_member(name).local_label is True


def test_companions(kb) -> None:
    assert kb.release("2.5").companions == {"torchvision": "0.20", "torchaudio": "2.5"}
    assert kb.release("1.13").companions["torchaudio"] == "0.13"
    for series in ("2.12", "2.13", "2.14"):
        assert kb.release(series).companions["torchaudio"] == "2.11"
    assert kb.release("2.5").pypi_default == "cu124"
    assert kb.release("2.11").pypi_default == "cu130"


def test_gpus(kb) -> None:
    by_cc = {}
    for gpu in kb.gpus:
        assert set(gpu) >= {"name", "compute_capability", "architecture", "source"}
        by_cc.setdefault(_cc(gpu["compute_capability"]), []).append(gpu["name"])
    assert any("A100" in n for n in by_cc[(8, 0)])
    assert any("5090" in n for n in by_cc[(12, 0)])


# --- loader ---------------------------------------------------------------------------------


def test_rejects_wrong_schema(raw) -> None:
    with pytest.raises(ValueError, match="schema"):
        knowledge_from_dict({**raw, "schema": 2})
    with pytest.raises(ValueError, match="schema"):
        knowledge_from_dict({k: v for k, v in raw.items() if k != "schema"})
