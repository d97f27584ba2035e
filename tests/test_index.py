"""decide/index.py: a wheel's own METADATA read from an index, by range requests where the server
takes them (a few kB of a large wheel), else by one download checked against its hash."""

from __future__ import annotations

import hashlib
import io
import re
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pip_gpu.decide.index import IndexError_, wheel_metadata


def _wheel(version: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        wheel.writestr("torch/big.bin", bytes(range(256)) * 8192, zipfile.ZIP_STORED)  # 2 MiB
        wheel.writestr(
            f"torch-{version}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n"
        )
    return buffer.getvalue()


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, bytes, list[int]]]:
    """(base URL, the wheel, bytes sent per request); ``/ranged/`` takes Range, ``/plain/`` not."""
    data = _wheel("2.5.1+cpu")
    sent: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            found = re.match(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
            if self.path.startswith("/ranged/") and found:
                first, last = found.groups()
                start = len(data) - int(last) if not first else int(first)
                end = len(data) - 1 if not first or not last else min(int(last), len(data) - 1)
                body = data[start : end + 1]
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            else:
                body = data
                self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            sent.append(len(body))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", data, sent
    server.shutdown()


def test_a_wheel_s_metadata_is_read_with_range_requests(served: tuple[str, bytes, list[int]]) -> None:
    base, data, sent = served
    sent.clear()
    name_and_version = wheel_metadata(f"{base}/ranged/torch-2.5.1%2Bcu124-py3-none-any.whl", timeout=5)
    assert name_and_version == ("torch", "2.5.1+cpu")
    assert sum(sent) < len(data) // 10  # the zip's end and one member, not the file


def test_without_range_requests_the_download_is_checked_against_its_hash(
    served: tuple[str, bytes, list[int]],
) -> None:
    base, data, _ = served
    url = f"{base}/plain/torch-2.5.1%2Bcu124-py3-none-any.whl"
    assert wheel_metadata(url, sha256=hashlib.sha256(data).hexdigest(), timeout=5) == ("torch", "2.5.1+cpu")
    with pytest.raises(IndexError_, match="does not have the sha256"):
        wheel_metadata(url, sha256="0" * 64, timeout=5)
