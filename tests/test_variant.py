"""A variant name is parsed once into a Variant; the rest of pip-gpu asks the value."""

from __future__ import annotations

import json
import pickle

import pytest

from pip_gpu.errors import UsageError
from pip_gpu.knowledge import load_knowledge
from pip_gpu.variant import CPU, DEFAULT, Variant, parse_variant


@pytest.mark.parametrize(
    ("name", "kind", "version", "cuda"),
    [
        ("cu118", "cuda", "11.8", "11.8"),
        ("cu124", "cuda", "12.4", "12.4"),
        ("cu130", "cuda", "13.0", "13.0"),
        ("rocm6.2", "rocm", "6.2", None),
        ("rocm6.2.4", "rocm", "6.2.4", None),
        ("xpu", "xpu", None, None),
        ("cpu", "cpu", None, None),
        ("default", "default", None, None),
    ],
)
def test_a_name_is_read_into_its_kind_and_version(
    name: str, kind: str, version: str | None, cuda: str | None
) -> None:
    variant = parse_variant(name)
    assert (variant.kind, variant.version, variant.cuda) == (kind, version, cuda)
    assert variant.is_cuda is (kind == "cuda")
    assert variant.is_rocm is (kind == "rocm")
    assert variant.has_index is (kind != "default")


def test_a_variant_prints_and_serialises_as_its_name() -> None:
    """JSON, text and lock files keep printing exactly the name they printed before."""
    variant = parse_variant(" CU124 ")
    assert str(variant) == variant.name == "cu124"
    assert f"{variant}" == "cu124"
    assert json.dumps({"variant": variant}) == '{"variant": "cu124"}'
    assert variant == "cu124" and "cu124" in {variant} and variant in {"cu124": 1}
    assert pickle.loads(pickle.dumps(variant)) == variant
    assert type(pickle.loads(pickle.dumps(variant))) is Variant


@pytest.mark.parametrize(
    "junk", ["", "cu", "cu12", "cu12x", "cuda12.4", "rocm", "rocm6", "gpu", "+cu124", "cu 124"]
)
def test_junk_is_refused_as_bad_input(junk: str) -> None:
    with pytest.raises(UsageError) as refused:
        parse_variant(junk)
    assert "is not a PyTorch build variant" in refused.value.message
    assert Variant.from_label(junk) is None


def test_a_wheel_label_names_a_variant_or_nothing() -> None:
    assert Variant.from_label("cu121") == "cu121"
    assert Variant.from_label("git1234") is None
    assert Variant.from_label(None) is None


def test_order_is_cpu_then_xpu_then_rocm_then_cuda_newest_last() -> None:
    names = ["cu130", "cpu", "rocm6.2.4", "cu118", "xpu", "rocm6.10", "cu126", "rocm5.7", "default"]
    ordered = [str(v) for v in sorted(map(parse_variant, names), key=lambda v: v.sort_key)]
    assert ordered == ["cpu", "default", "xpu", "rocm5.7", "rocm6.2.4", "rocm6.10", "cu118", "cu126", "cu130"]


def test_constants_and_cuda_builds() -> None:
    assert DEFAULT.is_default and not DEFAULT.has_index
    assert CPU.is_cpu and CPU.cuda is None
    assert Variant.cuda_build("12.8") == Variant.cuda_build("12.8.1") == "cu128"
    assert Variant(parse_variant("cu128")) is not None


def test_every_variant_the_knowledge_file_names_is_parsed_when_it_loads() -> None:
    knowledge = load_knowledge()
    builds = [b for r in knowledge.releases for b in r.builds]
    assert builds and all(type(b.variant) is Variant for b in builds)
    assert all(b.cuda == b.variant.cuda for b in builds)
    assert [v.sort_key for v in knowledge.variants()] == sorted(v.sort_key for v in knowledge.variants())
