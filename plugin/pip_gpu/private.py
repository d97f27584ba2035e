"""Folders for files that may hold the user's index credentials.

A requirements copy with ``--index-url https://user:token@...``, a generated ``pyproject.toml``
or netrc naming the variant index: such files live in a folder only the user can enter
(``$XDG_RUNTIME_DIR/pip-gpu``, the user's own tmpfs, else ``<cache>/pip-gpu/private``), each
run's folders named after its process, and the next run removes what a killed run left there.
A folder that cannot be made there (a full tmpfs, a read-only disk) is the machine's fault: one
:class:`~pip_gpu.errors.EnvironmentFault` (exit 74) whose hint names the variable that put the
folder where it is, whichever step asked for it.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from .errors import EnvironmentFault

if TYPE_CHECKING:
    import tempfile

__all__ = ["private_folder", "private_scratch"]


def _private_root() -> Optional[Path]:
    """Where pip-gpu keeps files that hold credentials: ``$XDG_RUNTIME_DIR/pip-gpu`` (the
    user's own tmpfs), else ``<cache>/pip-gpu/private``; mode 0700, owned by this user. None
    when neither can be made so (a read-only home): the system's temporary folder then."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for root in ([Path(runtime) / "pip-gpu"] if runtime and os.path.isabs(runtime) else []) + [
        Path(cache) / "pip-gpu" / "private"
    ]:
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            status = os.lstat(root)
            if not os.path.isdir(root) or os.path.islink(root) or status.st_uid != os.getuid():
                continue
            if status.st_mode & 0o077:
                os.chmod(root, 0o700)
            return root
        except (OSError, AttributeError):  # AttributeError: no os.getuid (Windows)
            continue
    return None


_PRIVATE_RE = re.compile(r"^[a-z]+-([0-9]+)-")  # <what>-<pid>-<random>


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def _private_dir() -> Optional[Path]:
    """:func:`_private_root`, after removing the folders of runs that were killed before they
    could remove their own (SIGKILL, a crash): each is named ``<what>-<pid>-...`` after its
    process, and a process that is gone needs none."""
    import shutil

    root = _private_root()
    if root is None:
        return None
    with contextlib.suppress(OSError):
        for entry in root.iterdir():
            found = _PRIVATE_RE.match(entry.name)
            if found and int(found.group(1)) != os.getpid() and not _alive(int(found.group(1))):
                shutil.rmtree(entry, ignore_errors=True)
    return root


def _cannot_make(exc: OSError, root: Optional[Path]) -> EnvironmentFault:
    """The scratch folder could not be made under ``root`` (None: the system's temporary
    folder): what failed, and the variable that moves the folder elsewhere."""
    import errno
    import tempfile

    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if root is None:
        variable = "TMPDIR"
        try:
            folder = tempfile.gettempdir()
        except OSError:
            folder = "the temporary folder"
    else:  # $XDG_RUNTIME_DIR/pip-gpu, else <cache>/pip-gpu/private (_private_root)
        variable = "XDG_RUNTIME_DIR" if runtime and root == Path(runtime) / "pip-gpu" else "XDG_CACHE_HOME"
        folder = str(root)
    elsewhere = f"point {variable} at a folder pip-gpu can write"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = f"{folder} is full: free some space there (or raise the quota), or {elsewhere}"
    elif exc.errno == errno.EROFS:
        hint = f"{folder} is on a read-only filesystem: {elsewhere}"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        hint = f"fix the permissions of {folder}, or {elsewhere}"
    else:
        hint = f"check {folder} and its filesystem, or {elsewhere}"
    where = f" ({exc.filename})" if exc.filename else ""
    return EnvironmentFault(f"cannot write pip-gpu's scratch folder{where}: {exc.strerror or exc}", hint)


def private_folder(what: str = "auth") -> str:
    """A new folder (mode 0700) for files with credentials, removed by the caller (or by the
    next run when this one is killed first)."""
    import tempfile

    root = _private_dir()
    try:
        return tempfile.mkdtemp(prefix=f"{what}-{os.getpid()}-" if root else f"pip-gpu-{what}-", dir=root)
    except OSError as exc:
        raise _cannot_make(exc, root) from None


def private_scratch(what: str) -> tempfile.TemporaryDirectory[str]:
    """A scratch folder for files that may hold the user's index credentials (a generated
    ``pyproject.toml`` naming the variant index): private to the user, removed on exit, and
    by the next run when this one is killed first."""
    import tempfile

    root = _private_dir()
    try:
        return tempfile.TemporaryDirectory(
            prefix=f"{what}-{os.getpid()}-" if root else f"pip-gpu-{what}-", dir=root
        )
    except OSError as exc:
        raise _cannot_make(exc, root) from None
