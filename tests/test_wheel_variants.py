"""PEP 825 values: variant wheel names, variants.json, the nvidia provider, the PEP's order."""

from __future__ import annotations

import json

import pytest

from pip_gpu.decide.variant_wheels import providers_for
from pip_gpu.host import HostProfile, NvidiaGpu
from pip_gpu.wheel_variants import (
    NvidiaProvider,
    VariantMetadataError,
    judge_labels,
    parse_variant_wheel_filename,
    parse_variants_json,
    variants_json_filename,
)

SCHEMA = "https://variants-schema.wheelnext.dev/v0.0.3.json"


def host(driver: str | None, cuda: str | None, *ccs: tuple[int, int]) -> HostProfile:
    gpus = tuple(NvidiaGpu(i, f"GPU {i}", cc, "test") for i, cc in enumerate(ccs))
    return HostProfile(
        "linux", "x86_64", "3.11", driver_version=driver, cuda_driver_version=cuda, nvidia_gpus=gpus
    )


def metadata(variants: dict[str, object], **priorities: object) -> bytes:
    return json.dumps(
        {
            "$schema": SCHEMA,
            "default-priorities": {"namespace": ["nvidia"], **priorities},
            "variants": variants,
        }
    ).encode()


def labels_in_order(
    data: bytes, labels: list[str], on: HostProfile, plain: bool = False
) -> list[tuple[str, bool]]:
    parsed = parse_variants_json(data, "test")
    verdicts = judge_labels(
        parsed, labels, [NvidiaProvider(on)], has_plain_wheel=plain, gpu_host=bool(on.visible_nvidia_gpus)
    )
    return [(v.label, v.fits) for v in verdicts]


# --- file names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "label", "plain"),
    [
        (
            "torch-2.9.0-cp312-cp312-manylinux_2_28_x86_64-cu126.whl",
            "cu126",
            "torch-2.9.0-cp312-cp312-manylinux_2_28_x86_64.whl",
        ),
        (
            "torch-2.9.0-cp312-cp312-manylinux_2_28_x86_64.whl",
            "",
            "torch-2.9.0-cp312-cp312-manylinux_2_28_x86_64.whl",
        ),
        ("torch-2.9.0-1-py3-none-any.whl", "", "torch-2.9.0-1-py3-none-any.whl"),
        ("torch-2.9.0-1-py3-none-any-null.whl", "null", "torch-2.9.0-1-py3-none-any.whl"),
        (
            "numpy-2.3.2-cp313-cp313t-musllinux_1_2_x86_64-x86_64_v3.whl",
            "x86_64_v3",
            "numpy-2.3.2-cp313-cp313t-musllinux_1_2_x86_64.whl",
        ),
    ],
)
def test_variant_label_is_the_part_after_the_platform_tag(filename: str, label: str, plain: str) -> None:
    parsed = parse_variant_wheel_filename(filename)
    assert parsed.label == label
    assert parsed.plain_filename == plain
    assert str(parsed.version) == "2.9.0" or parsed.name == "numpy"


@pytest.mark.parametrize(
    "filename", ["torch-2.9.0-py3-none-any-CU126.whl", "torch-2.9.0-py3-none-any-cu-126.whl", "torch.tar.gz"]
)
def test_invalid_variant_wheel_names_are_refused(filename: str) -> None:
    with pytest.raises(ValueError):
        parse_variant_wheel_filename(filename)


def test_index_level_file_name_is_normalised_like_wheel_names() -> None:
    assert variants_json_filename("Torch-Vision", "0.24.0") == "torch_vision-0.24.0-variants.json"


# --- variants.json ------------------------------------------------------------------------


def test_unknown_format_version_makes_the_variants_unsupported() -> None:
    data = json.dumps(
        {
            "$schema": "https://example.org/v2.0.0.json",
            "default-priorities": {"namespace": ["a"]},
            "variants": {},
        }
    )
    with pytest.raises(VariantMetadataError, match="unknown variant metadata format"):
        parse_variants_json(data.encode(), "x")


def test_a_namespace_missing_from_the_priorities_is_refused() -> None:
    data = json.dumps(
        {
            "$schema": SCHEMA,
            "default-priorities": {"namespace": ["nvidia"]},
            "variants": {"v3": {"x86_64": {"level": ["v3"]}}},
        }
    )
    with pytest.raises(VariantMetadataError, match="namespace 'x86_64'"):
        parse_variants_json(data.encode(), "x")


# --- the nvidia provider ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "cc", "fits"),
    [
        ("80_real", (8, 6), True),  # same major, higher minor: SASS runs
        ("86_real", (8, 0), False),  # lower minor: no
        ("80_real", (9, 0), False),  # another major: SASS does not run
        ("80_virtual", (9, 0), True),  # PTX: any newer GPU JITs it
        ("90_virtual", (8, 9), False),
        ("120_real", (12, 1), True),
    ],
)
def test_sm_arch_real_is_sass_and_virtual_is_ptx(value: str, cc: tuple[int, int], fits: bool) -> None:
    assert NvidiaProvider(host("580.65.06", "13.0", cc)).value_fits("sm_arch", value) is fits


def test_every_visible_gpu_must_be_covered() -> None:
    two = host("580.65.06", "13.0", (8, 0), (12, 0))
    verdict = NvidiaProvider(two).judge("sm_arch", ["80_real", "90_real"])
    assert not verdict.fits
    assert "GPU 1 (sm_120) not covered" in verdict.reason
    assert NvidiaProvider(two).judge("sm_arch", ["80_real", "120_real"]).fits


def test_cuda_lower_bound_compares_with_the_drivers_cuda() -> None:
    provider = NvidiaProvider(host("535.104.05", "12.2", (8, 0)))
    assert provider.judge("cuda_version_lower_bound", ["12.1"]).fits
    refused = provider.judge("cuda_version_lower_bound", ["12.6"])
    assert not refused.fits and "needs CUDA >= 12.6; driver 535.104.05 supports CUDA 12.2" in refused.reason


def test_unknown_namespace_makes_a_variant_not_fit_with_the_reason() -> None:
    data = json.dumps(
        {
            "$schema": SCHEMA,
            "default-priorities": {"namespace": ["nvidia", "x86_64"]},
            "variants": {"v3": {"x86_64": {"level": ["v3"]}}, "null": {}},
        }
    ).encode()
    verdicts = judge_labels(
        parse_variants_json(data, "t"),
        ["v3", "null"],
        [NvidiaProvider(host(None, None))],
        has_plain_wheel=False,
        gpu_host=False,
    )
    assert [(v.label, v.fits) for v in verdicts] == [("null", True), ("v3", False)]
    assert "namespace 'x86_64' has no provider" in verdicts[1].reason


# --- ordering -----------------------------------------------------------------------------

TORCHLIKE = {
    "cu121": {"nvidia": {"cuda_version_lower_bound": ["12.1"], "sm_arch": ["60_real", "80_real"]}},
    "cu126": {"nvidia": {"cuda_version_lower_bound": ["12.6"], "sm_arch": ["60_real", "80_real"]}},
    "null": {},
}


def test_value_priorities_come_first_then_null_then_the_non_variant_wheel() -> None:
    prefer_old = metadata(TORCHLIKE, property={"nvidia": {"cuda_version_lower_bound": ["12.1", "12.6"]}})
    gpu_host = host("580.65.06", "13.0", (8, 0))
    assert labels_in_order(prefer_old, ["cu121", "cu126", "null"], gpu_host) == [
        ("cu121", True),
        ("cu126", True),
        ("null", True),
    ]
    # without priorities the provider's order: the newest CUDA first
    assert labels_in_order(metadata(TORCHLIKE), ["cu121", "cu126", "null"], gpu_host)[0] == (
        "cu126",
        True,
    )


def test_non_variant_wheel_follows_null_and_is_refused_on_a_gpu_host() -> None:
    data = metadata(TORCHLIKE)
    assert labels_in_order(data, ["cu121", "null"], host(None, None), plain=True) == [
        ("null", True),
        ("", True),
        ("cu121", False),
    ]
    on_gpu = labels_in_order(data, ["cu121"], host("470.57.02", "11.4", (3, 5)), plain=True)
    assert on_gpu == [("", False), ("cu121", False)]


def test_more_properties_win_a_tie_then_the_label() -> None:
    variants = {
        "b_short": {"nvidia": {"cuda_version_lower_bound": ["12.6"]}},
        "z_long": {"nvidia": {"cuda_version_lower_bound": ["12.6"], "sm_arch": ["80_real"]}},
        "a_short": {"nvidia": {"cuda_version_lower_bound": ["12.6"]}},
    }
    order = labels_in_order(metadata(variants), list(variants), host("580.65.06", "13.0", (8, 0)))
    assert [label for label, _ in order] == ["z_long", "a_short", "b_short"]


def test_fleet_nodes_get_their_label_from_their_own_facts() -> None:
    """Each node of a fleet (GPU Feature Discovery labels) is a host like any other."""
    from support.variant_index import LABELS, PRIORITIES

    from pip_gpu.fleet import nodes_from_json

    def node(name: str, driver: str, major: str, minor: str) -> dict[str, object]:
        labels = {
            "nvidia.com/cuda.driver-version.full": driver,
            "nvidia.com/gpu.compute.major": major,
            "nvidia.com/gpu.compute.minor": minor,
            "nvidia.com/gpu.count": "1",
        }
        return {"kind": "Node", "metadata": {"name": name, "labels": labels}}

    fleet = {
        "items": [
            node("pascal", "580.65.06", "6", "1"),
            node("a100", "535.104.05", "8", "0"),
            node("b200", "580.65.06", "10", "0"),
            node("kepler", "470.57.02", "3", "5"),
        ]
    }
    data = json.dumps({"$schema": SCHEMA, "default-priorities": PRIORITIES, "variants": LABELS}).encode()
    chosen = {}
    for each in nodes_from_json(fleet, where="fleet", python_version="3.11"):
        assert each.host.cuda_driver_version is None  # the labels give the driver only
        verdicts = judge_labels(
            parse_variants_json(data, "t"),
            list(LABELS),
            providers_for(each.host),
            has_plain_wheel=True,
            gpu_host=True,
        )
        chosen[each.name] = verdicts[0].label if verdicts[0].fits else None
    assert chosen == {"pascal": "cu126", "a100": "cu121", "b200": "cu130", "kepler": None}
