"""The pip route on a mirror without PEP 658 metadata: every file is downloaded once (issue 25).

Where an index serves no ``.metadata`` twins (a plain static-file mirror), pip downloads each
wheel to read its dependencies, so choosing the family's files and then installing would fetch
the whole CUDA stack twice. Instead ``pip download`` fetches the family with its dependencies
from the variant index once, into a temporary folder on disk, and the install takes:

* the family's own files from there, by path and sha256 (still no other index can supply them);
* every other file of that download (torch's nvidia-* libraries, sympy, ...) from there too,
  but only where the user's indexes serve that very file: the same name with the same sha256
  on every one of them that lists it. The install then gets the bytes it would have
  downloaded, and everything else still comes from the user's indexes.

Those files are offered by a local index (:class:`KeptIndex`, 127.0.0.1) added last to pip's
indexes: of equal candidates pip takes the one its last index lists, so it reads them from disk
(pip 23.2 and 26.3 alike); a pip that chose otherwise would download the very same bytes. The
index answers 404 for every other name, quietly, as a remote index does; pages of a ``file:``
index that lacks a name make pip print a warning for each.
"""

from __future__ import annotations

import hashlib
import html
import secrets
import threading
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)

from .route import FamilyFile
from .variant import append_path

if TYPE_CHECKING:
    from http.server import ThreadingHTTPServer

    from .decide.index import IndexFile

# The index client (http.client, ssl, email) and the server (http.server) load when a static
# mirror is met: every other install, and every other command, starts without them.

__all__ = ["KeptIndex", "family_in", "restore_origins", "same_files_folder", "user_places"]

PYPI = "https://pypi.org/simple"


def user_places(
    index_args: Sequence[str], global_options: Sequence[Sequence[str]]
) -> Optional[tuple[str, ...]]:
    """The indexes pip's install run reads for everything but the family, from pip-style
    options (:func:`~pip_gpu.decide.resolution.index_args_for`), or None where a file could
    come from somewhere no page lists (``--find-links``, ``--no-index``) or the requirements
    files choose indexes themselves: then nothing is reused."""
    if any(option and option[0].split("=", 1)[0] in _PLACE_OPTIONS for option in global_options):
        return None
    default: Optional[str] = PYPI
    extras: list[str] = []
    tokens = list(index_args)
    for i, token in enumerate(tokens):
        value = tokens[i + 1] if i + 1 < len(tokens) else ""
        if token in ("--no-index", "--find-links", "-f"):
            return None
        if token == "--index-url":
            default = value
        elif token == "--extra-index-url":
            extras.append(value)
    return tuple(dict.fromkeys([u for u in (default, *extras) if u]))


_PLACE_OPTIONS = frozenset({"-i", "--index-url", "--extra-index-url", "--no-index", "-f", "--find-links"})


def family_in(
    folder: Path, variant_index: str, family_names: Collection[str]
) -> tuple[list[FamilyFile], dict[str, str]]:
    """The family's files ``pip download`` left in ``folder`` (pip saves the files of its
    final resolution only, so these are the ones it chose), and the variant index's URL of
    each by file name (for :func:`restore_origins`). Each file carries the sha256 the variant
    index lists for it (pip checked the download against it), else that of its bytes."""
    found: list[FamilyFile] = []
    origins: dict[str, str] = {}
    paths: dict[Path, str] = {}
    for path in sorted(folder.iterdir()):
        name = _project(path.name)
        if name is not None and name in family_names:
            paths[path] = name
    listed = _listings(variant_index, sorted(set(paths.values())))
    for path, name in paths.items():
        on_index = (listed.get(name) or {}).get(path.name)
        found.append(
            FamilyFile(name=name, url=path.as_uri(), sha256=(on_index and on_index.sha256) or _sha256(path))
        )
        if on_index is not None:
            origins[path.name] = on_index.url.split("#", 1)[0]
    return found, origins


def _listings(
    index: str, projects: Sequence[str], timeout: Optional[float] = None
) -> dict[str, Optional[dict[str, IndexFile]]]:
    """``project -> {filename: file}`` of each project page on ``index``, read at once
    (None: the page could not be read)."""
    from concurrent.futures import ThreadPoolExecutor

    from .decide.index import IndexError_, fetch_project_files

    def listed(project: str) -> Optional[dict[str, IndexFile]]:
        try:
            files = fetch_project_files(append_path(index, project, ""), timeout=timeout)
        except IndexError_:
            return None
        return {file.filename: file for file in files}

    if not projects:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(projects))) as pool:
        return dict(zip(projects, pool.map(listed, projects)))


def same_files_folder(
    downloaded: Path,
    variant_index: str,
    places: Sequence[str],
    family_names: Collection[str],
    into: Path,
    *,
    timeout: Optional[float] = None,
) -> list[str]:
    """Under ``into``, a page per project (``<project>/index.html``) listing each non-family
    file of ``downloaded`` that the user's indexes serve byte for byte, by its ``file:`` URL;
    the names of the files listed. Pages of an earlier download of the same install are kept.

    The bytes are known without hashing them again: pip checked each download against the
    sha256 the variant index lists for it, so a file is the user's when every user index
    that lists its name lists that same sha256 (and at least one does). A page that cannot
    be read reuses nothing from that project: the install then downloads it, as before.
    """
    others = {
        path: name
        for path in sorted(downloaded.iterdir())
        if path.name.endswith(".whl")
        and (name := _project(path.name)) is not None
        and name not in family_names
    }
    if not others:
        return []
    projects = sorted(set(others.values()))
    indexes = list(dict.fromkeys([variant_index, *places]))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(indexes)) as pool:
        read = dict(zip(indexes, pool.map(lambda index: _listings(index, projects, timeout), indexes)))
    into.mkdir(mode=0o700, exist_ok=True)
    kept: list[str] = []
    for path, project in others.items():
        variant = read[variant_index][project]
        on_variant = variant.get(path.name) if variant is not None else None
        sha256 = on_variant.sha256 if on_variant is not None else None
        users = [read[index][project] for index in places]
        if sha256 is None or any(listing is None for listing in users):
            continue
        hashes = {
            listing[path.name].sha256 for listing in users if listing is not None and path.name in listing
        }
        if hashes != {sha256}:
            continue
        page = into / project / "index.html"
        page.parent.mkdir(mode=0o700, exist_ok=True)
        # No hash in the link: pip checked the file when it downloaded it, and hashing the CUDA
        # libraries again would cost seconds.
        link = f'<a href="{html.escape(path.as_uri())}">{html.escape(path.name)}</a>\n'
        if not page.is_file() or f">{html.escape(path.name)}<" not in page.read_text(encoding="utf-8"):
            with page.open("a", encoding="utf-8") as out:
                out.write(link)
        kept.append(path.name)
    return kept


def _project(filename: str) -> Optional[str]:
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[0])
        return str(parse_sdist_filename(filename)[0])
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class KeptIndex:
    """A simple index on 127.0.0.1 whose pages are the project folders under ``root``, started
    on first use (:attr:`url`) and stopped by :meth:`close`; its path carries a random token."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._server: Optional[ThreadingHTTPServer] = None
        self._token = secrets.token_hex(8)
        self._downloads: Optional[Path] = None
        self.origins: dict[str, str] = {}  # the family's files: the variant index's URL by file name

    @property
    def downloaded(self) -> bool:
        """Whether :meth:`new_download` gave a folder."""
        return self._downloads is not None

    @property
    def downloads(self) -> Path:
        """Where the downloads go: a new folder (0700) in the system's temporary folder, on disk
        where pip's own downloads go, not in the private folder, which may be a small tmpfs
        (``$XDG_RUNTIME_DIR``) that the CUDA libraries (several GB) would fill. The files hold no
        credentials."""
        if self._downloads is None:
            import tempfile

            self._downloads = Path(tempfile.mkdtemp(prefix="pip-gpu-downloads-"))
        return self._downloads

    def new_download(self) -> tuple[list[Path], Path]:
        """(the folders of this install's earlier downloads, a new empty one)."""
        earlier = sorted(self.downloads.iterdir())
        folder = self.downloads / f"{len(earlier) + 1}"
        folder.mkdir(mode=0o700)
        return earlier, folder

    @property
    def url(self) -> str:
        if self._server is None:
            from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

            root, token = self.root, self._token

            class Pages(BaseHTTPRequestHandler):
                def do_GET(self) -> None:
                    first, _, rest = self.path.strip("/").partition("/")
                    page = root / rest.strip("/") / "index.html"
                    if first != token or "/" in rest.strip("/") or not rest or not page.is_file():
                        self.send_error(404)
                        return
                    body = page.read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

                def log_message(self, format: str, *args: Any) -> None:
                    pass

            self._server = ThreadingHTTPServer(("127.0.0.1", 0), Pages)
            self._server.daemon_threads = True
            threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
            ).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}/{self._token}/"

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._downloads is not None:
            import shutil

            shutil.rmtree(self._downloads, ignore_errors=True)
            self._downloads = None

    def __enter__(self) -> KeptIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def restore_origins(site_packages: Sequence[Path], scratch: Path, origins: Mapping[str, str]) -> list[str]:
    """After the install: each family member pip installed from a file under ``scratch``
    records, in its ``direct_url.json`` (PEP 610), the variant index's URL of that same file
    (``origins``, by file name, as :func:`family_in` read them; credentials left out) instead
    of the deleted scratch path, with RECORD to match; so ``pip freeze`` names where the build
    came from, as it does when pip downloads it itself. The names of the distributions changed."""
    import base64
    import json
    from urllib.parse import unquote, urlsplit

    from .redact import strip_credentials

    prefix = scratch.as_uri()
    changed: list[str] = []
    for folder in dict.fromkeys(site_packages):
        for info in sorted(folder.glob("*.dist-info")) if folder.is_dir() else []:
            direct = info / "direct_url.json"
            try:
                recorded = json.loads(direct.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            url = str(recorded.get("url", ""))
            if not url.startswith(prefix + "/"):
                continue
            origin = origins.get(unquote(urlsplit(url).path.rsplit("/", 1)[-1]))
            if origin is None:
                continue
            recorded["url"] = strip_credentials(origin)
            data = json.dumps(recorded, sort_keys=True).encode("utf-8")
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record = info / "RECORD"
            name = f"{info.name}/direct_url.json"
            try:
                lines = record.read_text(encoding="utf-8").splitlines()
                lines = [
                    f"{name},sha256={digest},{len(data)}" if ln.split(",", 1)[0] == name else ln
                    for ln in lines
                ]
                direct.write_bytes(data)
                record.write_text("\n".join(lines) + "\n", encoding="utf-8")
            except OSError:
                continue
            changed.append(info.name)
    return changed
