"""The real-wheel tier: the real torch 2.14.1 CUDA 13.0 wheel, as a variant index serves it.

PyPI's ``torch-2.14.1`` is the CUDA 13.0 build without a local label. The variant index
``download.pytorch.org/whl/cu130`` serves the same build as ``2.14.1+cu130``. This module
relabels the real wheel that way (METADATA ``Version``, the ``.dist-info`` folder, RECORD;
``torch/version.py`` stays as the real one says) and serves, on 127.0.0.1:

* ``/whl/cu130/``: the relabelled torch, its real dependencies (cuda-toolkit, nvidia-*,
  triton, sympy, ...) and an old copy of numpy (1.26.4), as the real variant index has;
* ``/pypi/simple/``: the same dependencies, the plain ``torch-2.14.1`` and a numpy >= 2.3,
  as PyPI has.

Wheels come from this machine's local copies (``/opt/pypi-more/files``, ``/opt/pypi/files``)
when they are there, else from ``pip download`` with the machine's own pip configuration
(PyPI), into a cache kept between runs (``PIP_GPU_REALWHEELS_CACHE``, default
``~/.cache/pip-gpu-tests/realwheels``). Nothing is skipped: a wheel that cannot be had is a
test failure that says which.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import json
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from packaging.tags import sys_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

__all__ = ["LABEL", "TORCH", "RealIndex", "cache_dir", "real_index", "relabel"]

TORCH = "2.14.1"
LABEL = "cu130"
OLD_NUMPY = "1.26.4"  # the variant index's copy
NEW_NUMPY = "numpy>=2.3"  # what the user asks for, from the default index
LOCAL_COPIES = (Path("/opt/pypi-more/files"), Path("/opt/pypi/files"))


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "pip-gpu-tests" / "realwheels"
    path = Path(os.environ.get("PIP_GPU_REALWHEELS_CACHE", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _machine_pip(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """pip as this machine has it configured (its mirror, else PyPI), for fetching only."""
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_CONFIG_FILE", "VIRTUAL_ENV")}
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args, "--disable-pip-version-check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"the real-wheel tier could not run pip {' '.join(args)} (exit {done.returncode}):\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done


def _compatible(filename: str) -> bool:
    supported = set(sys_tags())
    return any(tag in supported for tag in parse_wheel_filename(filename)[3])


def _find(name: str, version: str, folders: tuple[Path, ...]) -> Path | None:
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.whl")):
            wheel_name, wheel_version, _, _ = parse_wheel_filename(path.name)
            if (
                wheel_name == canonicalize_name(name)
                and str(wheel_version) == version
                and _compatible(path.name)
            ):
                return path
    return None


def _obtain(name: str, version: str, pool: Path) -> Path:
    """The wheel of ``name==version`` for this interpreter, in ``pool`` (linked or downloaded)."""
    found = _find(name, version, (pool,))
    if found is not None:
        return found
    local = _find(name, version, LOCAL_COPIES)
    if local is not None:
        (pool / local.name).symlink_to(local)
        return pool / local.name
    _machine_pip("download", "--no-deps", "--only-binary", ":all:", "-d", str(pool), f"{name}=={version}")
    found = _find(name, version, (pool,))
    if found is None:
        raise AssertionError(f"pip download {name}=={version} gave no wheel for this interpreter")
    return found


def _closure(cache: Path) -> list[tuple[str, str]]:
    """(name, version) of what torch 2.14.1 and numpy >= 2.3 need here, resolved once and kept."""
    saved = cache / "closure.json"
    if saved.is_file():
        return [(n, v) for n, v in json.loads(saved.read_text())]
    report = cache / "closure-report.json"
    _machine_pip(
        "install", "--dry-run", "--ignore-installed", "--only-binary", ":all:", "--quiet",
        "--report", str(report), f"torch=={TORCH}", NEW_NUMPY,
    )  # fmt: skip
    items = json.loads(report.read_text())["install"]
    closure = sorted((canonicalize_name(i["metadata"]["name"]), i["metadata"]["version"]) for i in items)
    saved.write_text(json.dumps(closure))
    return closure


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def relabel(source: Path, target: Path, label: str) -> None:
    """Write ``source`` as the variant index names it: ``<version>+<label>``, RECORD recomputed.

    Members are stored uncompressed: the wheel is rewritten in seconds, and installers
    accept any zip compression.
    """
    name, version, _, _ = parse_wheel_filename(source.name)
    old_info = f"{name}-{version}.dist-info/"
    new_info = f"{name}-{version}+{label}.dist-info/"
    partial_target = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(partial_target, "w", zipfile.ZIP_STORED) as new:
        metadata = old.read(old_info + "METADATA").decode("utf-8")
        assert f"\nVersion: {version}\n" in metadata, "unexpected METADATA"
        metadata_bytes = metadata.replace(
            f"\nVersion: {version}\n", f"\nVersion: {version}+{label}\n", 1
        ).encode()
        record_lines = []
        for line in old.read(old_info + "RECORD").decode("utf-8").splitlines():
            path, digest, size = line.rsplit(",", 2)
            if path == old_info + "METADATA":
                digest, size = _record_hash(metadata_bytes), str(len(metadata_bytes))
            record_lines.append(",".join((path.replace(old_info, new_info, 1), digest, size)))
        record = ("\n".join(record_lines) + "\n").encode()
        for info in old.infolist():
            renamed = info.filename.replace(old_info, new_info, 1)
            out = zipfile.ZipInfo(renamed, date_time=info.date_time)
            out.external_attr = info.external_attr
            out.compress_type = zipfile.ZIP_STORED
            if info.filename == old_info + "METADATA":
                new.writestr(out, metadata_bytes)
            elif info.filename == old_info + "RECORD":
                new.writestr(out, record)
            elif info.is_dir():
                new.writestr(out, b"")
            else:
                with old.open(info) as reader, new.open(out, "w", force_zip64=True) as writer:
                    shutil.copyfileobj(reader, writer, 1 << 20)
    partial_target.replace(target)


def _sha256(path: Path, known: dict[str, str]) -> str:
    key = f"{path.name}:{path.stat().st_size}"
    if key not in known:
        digest = hashlib.sha256()
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        known[key] = digest.hexdigest()
    return known[key]


def _metadata_of(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        return archive.read(name)


def _write_simple(
    root: Path, files: list[Path], url_prefix: str, hashes: dict[str, str], metadata: bool = True
) -> None:
    """PEP 503 pages with PEP 658 metadata for ``files`` (served from ``url_prefix``); without
    it (``metadata=False``) as a plain static-file mirror writes them."""
    projects: dict[str, list[Path]] = {}
    for path in files:
        projects.setdefault(str(parse_wheel_filename(path.name)[0]), []).append(path)
    root.mkdir(parents=True, exist_ok=True)
    links = "".join(f'<a href="{p}/">{p}</a>\n' for p in sorted(projects))
    (root / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    for project, paths in projects.items():
        rows = []
        for path in sorted(paths):
            twin = path.parent / (path.name + ".metadata")
            attrs = f'href="{url_prefix}/{html.escape(path.name)}#sha256={_sha256(path, hashes)}"'
            if metadata:
                digest = hashlib.sha256(twin.read_bytes()).hexdigest()
                attrs += f' data-dist-info-metadata="sha256={digest}" data-core-metadata="sha256={digest}"'
            rows.append(f"<a {attrs}>{html.escape(path.name)}</a>\n")
        (root / project).mkdir(exist_ok=True)
        (root / project / "index.html").write_text(
            f"<!DOCTYPE html><html><body>\n{''.join(rows)}</body></html>\n"
        )


@dataclass(frozen=True)
class RealIndex:
    pytorch_url: str  # pass as --pytorch-index: the variant index is <this>/cu130
    default_url: str  # the stand-in PyPI
    uv_cache: Path  # kept between runs: a warm install only links files
    pip_cache: Path
    static_pytorch_url: str = ""  # both indexes again, without PEP 658 metadata
    static_default_url: str = ""


def _prepare(cache: Path) -> Path:
    """Fill the cache and write both indexes under ``cache / "index"``; return that folder."""
    pool = cache / "pool"
    pool.mkdir(exist_ok=True)
    closure = _closure(cache)
    wheels = {name: _obtain(name, version, pool) for name, version in closure}
    old_numpy = _obtain("numpy", OLD_NUMPY, pool)
    plain_torch = wheels.pop("torch")
    relabelled = pool / plain_torch.name.replace(f"-{TORCH}-", f"-{TORCH}+{LABEL}-", 1)
    if not relabelled.is_file():
        relabel(plain_torch, relabelled, LABEL)
    new_numpy = wheels.pop("numpy")

    index = cache / "index"
    shutil.rmtree(index, ignore_errors=True)
    files = index / "files"
    files.mkdir(parents=True)
    hashes_file = cache / "hashes.json"
    hashes: dict[str, str] = json.loads(hashes_file.read_text()) if hashes_file.is_file() else {}

    def served(path: Path) -> Path:
        link = files / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
            (files / (path.name + ".metadata")).write_bytes(_metadata_of(path))
        return link

    common = [served(p) for p in wheels.values()]
    variant = [*common, served(relabelled), served(old_numpy)]
    default = [*common, served(plain_torch), served(new_numpy), served(old_numpy)]
    _write_simple(index / "whl" / LABEL, variant, "/files", hashes)
    _write_simple(index / "pypi" / "simple", default, "/files", hashes)
    # The same indexes as a plain static-file mirror serves them: no PEP 658 metadata (issue 25).
    _write_simple(index / "static" / "whl" / LABEL, variant, "/files", hashes, metadata=False)
    _write_simple(index / "static" / "pypi" / "simple", default, "/files", hashes, metadata=False)
    hashes_file.write_text(json.dumps(hashes))
    return index


# uv keys the wheels it unpacks by their URL, and each run serves them on a new port: the cache
# would grow by the whole CUDA stack (several GB) every run. A few runs' worth stays warm.
UV_CACHE_LIMIT_BYTES = 12 * 1024**3


def _keep_below(folder: Path, limit: int) -> None:
    """Empty ``folder`` once what it holds passes ``limit`` bytes."""
    total = 0
    for directory, _, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_size
        if total > limit:
            shutil.rmtree(folder, ignore_errors=True)
            return


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def real_index() -> Iterator[RealIndex]:
    """Build (or reuse) the real-wheel indexes and serve them on 127.0.0.1."""
    cache = cache_dir()
    root = _prepare(cache)
    _keep_below(cache / "uv-cache", UV_CACHE_LIMIT_BYTES)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield RealIndex(
            pytorch_url=f"{base}/whl",
            default_url=f"{base}/pypi/simple",
            uv_cache=cache / "uv-cache",
            pip_cache=cache / "pip-cache",
            static_pytorch_url=f"{base}/static/whl",
            static_default_url=f"{base}/static/pypi/simple",
        )
    finally:
        server.shutdown()
        server.server_close()
