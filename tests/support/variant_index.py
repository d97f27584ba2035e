"""A torch-like index of PEP 825 variant wheels, built by the tests and served on 127.0.0.1.

``torch`` 2.9.0 comes as three variant wheels and a non-variant CPU wheel, with the index-level
``torch-2.9.0-variants.json`` linked from the project page like any file:

- ``cu121``: nvidia :: cuda_version_lower_bound :: 12.1, sm_arch 50..90 real
- ``cu126``: 12.6, sm_arch 60..90 real
- ``cu130``: 13.0, sm_arch 75..120 real

``default-priorities`` prefer the newest CUDA. Each wheel's ``torch/version.py`` names its label,
and its ``*.dist-info/variant.json`` holds its own entry. The server is
``fixtures/pytorch_index.py``'s (it serves ``/whl/...``); the index is ``/whl/variant``.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.index import IndexServer, pytorch_index, serve

__all__ = ["LABELS", "VariantIndex", "build_variant_index", "variant_index_fixture"]

SCHEMA = "https://variants-schema.wheelnext.dev/v0.0.3.json"
VERSION = "2.9.0"


def _sm(*archs: str) -> list[str]:
    return [f"{arch}_real" for arch in archs]


LABELS: dict[str, dict[str, dict[str, list[str]]]] = {
    "cu121": {
        "nvidia": {
            "cuda_version_lower_bound": ["12.1"],
            "sm_arch": _sm("50", "60", "70", "75", "80", "86", "90"),
        }
    },
    "cu126": {
        "nvidia": {"cuda_version_lower_bound": ["12.6"], "sm_arch": _sm("60", "70", "75", "80", "86", "90")}
    },
    "cu130": {
        "nvidia": {"cuda_version_lower_bound": ["13.0"], "sm_arch": _sm("75", "80", "86", "90", "100", "120")}
    },
}
PRIORITIES = {
    "namespace": ["nvidia"],
    "feature": {"nvidia": ["cuda_version_lower_bound", "sm_arch"]},
    "property": {"nvidia": {"cuda_version_lower_bound": ["13.0", "12.6", "12.1"]}},
}


@dataclass(frozen=True)
class VariantIndex:
    """The served index: ``url`` is the simple index (``<url>/torch/``), ``root`` its folder."""

    server: IndexServer
    root: Path

    @property
    def url(self) -> str:
        return self.server.base_url + "/whl/variant"

    @property
    def variants_json(self) -> Path:
        return self.root / "whl" / "variant" / "torch" / f"torch-{VERSION}-variants.json"


def _variants_document(labels: dict[str, dict[str, dict[str, list[str]]]]) -> bytes:
    return json.dumps(
        {"$schema": SCHEMA, "default-priorities": PRIORITIES, "variants": labels}, indent=2, sort_keys=True
    ).encode()


def _wheel(label: str) -> tuple[str, bytes]:
    info = f"torch-{VERSION}.dist-info"
    files = [
        ("torch/__init__.py", f'__version__ = "{VERSION}"\nvariant = "{label or "cpu"}"\n'),
        ("torch/version.py", f'__version__ = "{VERSION}"\nvariant_label = "{label}"\n'),
    ]
    if label:
        files.append((f"{info}/variant.json", _variants_document({label: LABELS[label]}).decode()))
    dist = pytorch_index._Dist("torch", VERSION, tuple(files))
    name = dist.filename if not label else dist.filename[: -len(".whl")] + f"-{label}.whl"
    return name, dist.wheel_bytes()


def _page(files: list[tuple[str, bytes]]) -> bytes:
    links = "".join(
        f'    <a href="{html.escape(name)}#sha256={hashlib.sha256(data).hexdigest()}">'
        f"{html.escape(name)}</a><br/>\n"
        for name, data in files
    )
    return f"<!DOCTYPE html>\n<html><body>\n<h1>Links for torch</h1>\n{links}</body></html>\n".encode()


def _json_page(files: list[tuple[str, bytes]]) -> bytes:
    entries = [
        {
            "filename": name,
            "url": name,
            "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
            "size": len(data),
        }
        for name, data in files
    ]
    return json.dumps({"meta": {"api-version": "1.1"}, "name": "torch", "files": entries}).encode()


def build_variant_index(root: Path) -> Path:
    """Write the index under ``root`` (``whl/variant/``); returns the project folder."""
    project = root / "whl" / "variant" / "torch"
    project.mkdir(parents=True)
    (root / "pypi" / "simple").mkdir(parents=True)
    files = [_wheel(label) for label in (*LABELS, "")]
    files.append((f"torch-{VERSION}-variants.json", _variants_document(LABELS)))
    for name, data in files:
        (project / name).write_bytes(data)
    (project / "index.html").write_bytes(_page(files))
    (project / "index.json").write_bytes(_json_page(files))
    (root / "whl" / "variant" / "index.html").write_bytes(
        b'<html><body><a href="torch/">torch</a></body></html>\n'
    )
    return project


@pytest.fixture(scope="session", name="variant_index")
def variant_index_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VariantIndex]:
    """Built once per session and served; never changed (tests that tamper use a copy)."""
    root = tmp_path_factory.mktemp("variant-index")
    build_variant_index(root)
    with serve(root) as server:
        yield VariantIndex(server, root)
