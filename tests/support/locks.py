"""pip-gpu lock files made straight from the fixture index, without resolving anything.

``fixture_lock`` writes a valid ``pylock.<variant>.toml`` for this interpreter whose files are
the fixture index's real wheels (right URLs, hashes and sizes), so ``pip-gpu sync`` installs
it with real pip or uv in a second; tests then edit it to make it hostile.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from pip_gpu.host import HostProfile
from pip_gpu.lock.choose import environment_marker
from pip_gpu.lockfile import (
    LockInputs,
    LockRecord,
    LockTarget,
    lock_document,
    lock_path,
    render_lock,
    write_lock,
)
from pip_gpu.variant import parse_variant
from support.index import IndexServer

__all__ = ["THIS_PYTHON", "fixture_lock", "fixture_lock_text"]

THIS_PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"


def fixture_lock_text(
    server: IndexServer,
    variant: str = "cpu",
    packages: Sequence[tuple[str, str]] = (("torch", "2.5.1"), ("filelock", "3.13.1")),
) -> str:
    """A lock of ``packages`` (name, version without label) from the ``variant`` index."""
    assert server.tree is not None
    entries = []
    for name, version in packages:
        wheel = next(w for w in server.tree.files_for(variant, name) if w.version.split("+")[0] == version)
        entries.append(
            {
                "name": name,
                "version": wheel.version,
                "wheels": [
                    {
                        "url": server.base_url + quote(wheel.url_path),
                        "size": wheel.size,
                        "hashes": {"sha256": wheel.sha256},
                    }
                ],
            }
        )
    inputs = LockInputs(
        requirements=("torch==2.5.1",),
        files=(),
        targets=(LockTarget("linux", "x86_64", THIS_PYTHON),),
        pytorch_index=server.pytorch_url,
    )
    record = LockRecord(
        variant=variant,
        index=server.variant_url(variant),
        cuda=parse_variant(variant).cuda,
        torch="2.5.1",
        torch_release="2.5",
        minimum_driver=(),
        sass=None,
        ptx=None,
        inputs=inputs,
        inputs_digest=inputs.digest(),
        pip_gpu_version="test",
    )
    host = HostProfile(os="linux", arch="x86_64", python_version=THIS_PYTHON)
    document = lock_document(
        {"packages": entries},
        {name: server.variant_url(variant) for name, _ in packages},
        record,
        [environment_marker(host)],
    )
    return render_lock(document)


def fixture_lock(server: IndexServer, directory: Path, variant: str = "cpu") -> Path:
    """Write :func:`fixture_lock_text` as ``directory/pylock.<variant>.toml``."""
    path = lock_path(directory, variant)
    write_lock(path, fixture_lock_text(server, variant))
    return path
