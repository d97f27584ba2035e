"""A torch-like index of PEP 825 variant wheels, built by the tests and served on 127.0.0.1.

``torch`` 2.9.0 (which requires ``tinyutil``, an ordinary package on the fixture "PyPI") comes
as three variant wheels and a non-variant CPU wheel, with the index-level
``torch-2.9.0-variants.json`` linked from the project page like any file:

- ``cu121``: nvidia :: cuda_version_lower_bound :: 12.1, sm_arch 50..90 real
- ``cu126``: 12.6, sm_arch 60..90 real
- ``cu130``: 13.0, sm_arch 75..120 real

``default-priorities`` prefer the newest CUDA. Each wheel's ``torch/version.py`` names its label,
and its ``*.dist-info/variant.json`` holds its own entry. The server is
``fixtures/pytorch_index.py``'s (it serves ``/whl/...``); the index is ``/whl/variant``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from support.index import IndexServer, pytorch_index, serve

__all__ = [
    "LABELS",
    "PLAIN_PROJECT",
    "VariantIndex",
    "build_variant_index",
    "serve_with_basic_auth",
    "variant_index_fixture",
]

PLAIN_PROJECT = "tinyutil"  # an ordinary package on the fixture "PyPI", beside the family
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
    dist = pytorch_index._Dist("torch", VERSION, tuple(files), requires=(f"{PLAIN_PROJECT}>=1.0",))
    name = dist.filename if not label else dist.filename[: -len(".whl")] + f"-{label}.whl"
    return name, dist.wheel_bytes()


def _page(files: list[tuple[str, bytes]], project: str = "torch") -> bytes:
    links = "".join(
        f'    <a href="{html.escape(name)}#sha256={hashlib.sha256(data).hexdigest()}">'
        f"{html.escape(name)}</a><br/>\n"
        for name, data in files
    )
    return f"<!DOCTYPE html>\n<html><body>\n<h1>Links for {project}</h1>\n{links}</body></html>\n".encode()


def _json_page(files: list[tuple[str, bytes]], project: str = "torch") -> bytes:
    entries = [
        {
            "filename": name,
            "url": name,
            "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
            "size": len(data),
        }
        for name, data in files
    ]
    return json.dumps({"meta": {"api-version": "1.1"}, "name": project, "files": entries}).encode()


def build_variant_index(root: Path) -> Path:
    """Write the index under ``root`` (``whl/variant/``); returns the project folder."""
    project = root / "whl" / "variant" / "torch"
    project.mkdir(parents=True)
    (root / "pypi" / "simple").mkdir(parents=True)
    _plain_project(root / "pypi" / "simple", PLAIN_PROJECT)
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


def _plain_project(simple: Path, name: str) -> None:
    """An ordinary pure-Python package in the fixture "PyPI" (``/pypi/simple/<name>/``)."""
    dist = pytorch_index._Dist(name, "1.0", ((f"{name}/__init__.py", '__version__ = "1.0"\n'),))
    folder = simple / name
    folder.mkdir()
    (folder / dist.filename).write_bytes(dist.wheel_bytes())
    files = [(dist.filename, dist.wheel_bytes())]
    (folder / "index.html").write_bytes(_page(files, name))
    (folder / "index.json").write_bytes(_json_page(files, name))


class _BasicAuthHandler(pytorch_index._Handler):
    """The fixture's handler, answering 401 under ``/whl/`` without the expected credentials."""

    expected = ""  # the Authorization header the index wants
    seen: ClassVar[list[str]] = []  # the Authorization headers it got

    def _serve(self, body: bool) -> None:
        if self.path.startswith("/whl/"):
            given = self.headers.get("Authorization") or ""
            self.seen.append(given)
            if given != self.expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="variants"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        super()._serve(body)


@contextlib.contextmanager
def serve_with_basic_auth(root: Path, user: str, password: str) -> Iterator[tuple[IndexServer, list[str]]]:
    """Serve a built tree whose ``/whl/`` wants HTTP Basic credentials; yields the server and
    the Authorization headers it was sent."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    seen: list[str] = []
    handler = type("Handler", (_BasicAuthHandler,), {"expected": f"Basic {token}", "seen": seen})
    server = IndexServer(root)
    server._httpd.RequestHandlerClass = handler
    with server:
        yield server, seen
