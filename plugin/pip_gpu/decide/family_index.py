"""A local simple index that serves the torch family, and nothing else, from variant indexes.

uv's recipe for "these names from that index only" (an ``explicit`` index with
``[tool.uv.sources]``) covers a project's direct requirements, not what other packages bring
in, and one index per name. pip-gpu's reading of a request (and the shim's throwaway
environments) need every family name, wherever it appears in the graph, from one or several
variant indexes. So it writes a PEP 503 index (``file://``) whose page for each family name
lists that name's files on the given variant indexes, each file still fetched from its
variant index. Named first with ``first-index``, it answers for every family name (an empty
page where no variant index has it, so no other index can supply a planted one), and every
other name falls through to the user's indexes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Optional

__all__ = ["family_index"]


def family_index(
    variant_indexes: Sequence[str], names: Collection[str], *, timeout: Optional[float] = None
) -> Path:
    """The folder of a local simple index with the family ``names``' pages of ``variant_indexes``.

    Files of the first index that has a file name win. Kept in pip-gpu's cache under a digest
    of its content (concurrent runs never write the same folder, an unchanged index is written
    once), readable only by the user: a variant index URL may carry a token, and so may its
    file URLs. Raises the index module's error when a variant index cannot be read.
    """
    import html
    import time
    from concurrent.futures import ThreadPoolExecutor

    from ..private import private_folder
    from .index import IndexFile, fetch_project_files

    bases = [index.rstrip("/") for index in dict.fromkeys(variant_indexes)]
    ordered = sorted(names)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pip-gpu" / "family-index"
    # The same indexes read minutes ago: the index written then (each command of a session
    # would otherwise read every family page of every variant index again).
    source = cache / "by-source" / hashlib.sha256("\0".join([*bases, "", *ordered]).encode()).hexdigest()[:24]
    try:
        if time.time() - source.stat().st_mtime < FRESH_FOR_S:
            recent = cache / source.read_text(encoding="utf-8").strip()
            if recent.name and (recent / "index.html").is_file():
                return recent
    except OSError:
        pass

    def files_of(job: tuple[str, str]) -> list[IndexFile]:
        base, name = job
        return fetch_project_files(f"{base}/{name}/", timeout=timeout)

    from ..ui import progress

    jobs = [(base, name) for name in ordered for base in bases]
    # torch's page alone is megabytes on the real index: seconds for a few variant indexes
    what = f"reading the torch family's pages on {len(bases)} variant index{'es' if len(bases) != 1 else ''}"
    with progress(what), ThreadPoolExecutor(max_workers=min(16, max(1, len(jobs)))) as pool:
        found = dict(zip(jobs, pool.map(files_of, jobs)))

    def page(name: str) -> str:
        seen: set[str] = set()
        links = []
        for base in bases:
            for f in found[(base, name)]:
                if f.filename in seen:
                    continue
                seen.add(f.filename)
                python = (
                    f' data-requires-python="{html.escape(f.requires_python)}"' if f.requires_python else ""
                )
                links.append(
                    f'<a href="{html.escape(f.url + (f"#sha256={f.sha256}" if f.sha256 else ""))}"'
                    + python
                    # uv then reads the metadata alone, never a whole (multi-GB) torch wheel
                    + (' data-core-metadata="true"' if f.core_metadata else "")
                    + f">{html.escape(f.filename)}</a><br/>\n"
                )
        return f"<!DOCTYPE html>\n<html><body>\n<h1>Links for {name}</h1>\n{''.join(links)}</body></html>\n"

    pages = {name: page(name) for name in ordered}
    digest = hashlib.sha256("".join(f"{n}\0{p}\0" for n, p in pages.items()).encode()).hexdigest()[:24]
    folder = cache / digest
    if (folder / "index.html").is_file():
        _remember(source, digest)
        return folder
    try:
        cache.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".writing-", dir=cache))  # 0700, as mkdtemp makes it
    except OSError:  # no writable cache (a read-only home): a private folder of its own
        cache = Path(private_folder("familyindex"))
        folder, scratch = cache / digest, Path(tempfile.mkdtemp(prefix=".writing-", dir=cache))
    for name, text in pages.items():
        (scratch / name).mkdir()
        (scratch / name / "index.html").write_text(text, encoding="utf-8")
    root = "".join(f'<a href="{name}/">{name}</a><br/>\n' for name in ordered)
    (scratch / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{root}</body></html>\n", "utf-8")
    try:
        scratch.rename(folder)
    except OSError:  # another run wrote the same index first
        shutil.rmtree(scratch, ignore_errors=True)
    _remember(source, digest)
    return folder


FRESH_FOR_S = 600  # how long a family index written from the same variant indexes is reused


def _remember(source: Path, digest: str) -> None:
    """Note which index these variant indexes gave (written whole, then renamed into place)."""
    try:
        source.parent.mkdir(parents=True, exist_ok=True)
        temporary = source.with_name(f".{source.name}.{os.getpid()}")
        temporary.write_text(digest, encoding="utf-8")
        temporary.replace(source)
    except OSError:
        pass
