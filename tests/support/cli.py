"""Run ``pip-gpu`` as a user does: a real process, this checkout's package, captured output."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

from support.index import run

__all__ = ["PLUGIN", "assert_one_line_error", "cmdlines_with", "pip_gpu", "tree_snapshot"]

PLUGIN = Path(__file__).resolve().parents[2] / "plugin"


def pip_gpu(
    *args: str, env: Optional[Mapping[str, str]] = None, cwd: Optional[Path] = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m pip_gpu ARGS``; ``env`` should put :data:`PLUGIN` on PYTHONPATH."""
    environment = dict(os.environ if env is None else env)
    return run([sys.executable, "-m", "pip_gpu", *args], environment, check=False, timeout=timeout, cwd=cwd)


def assert_one_line_error(done: subprocess.CompletedProcess[str], *needles: str, status: int = 2) -> None:
    """The error shape pip-gpu promises: exit ``status``, one ``error:`` line naming what went
    wrong, at most a ``hint:`` line with the way out, and never a traceback."""
    where = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == status, where
    assert "Traceback" not in done.stderr + done.stdout, where
    lines = done.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("pip-gpu: error: ")]
    assert len(errors) == 1, where
    after = lines[lines.index(errors[0]) + 1 :]
    assert all(line.startswith("  hint: ") for line in after) and len(after) <= 1, where
    for needle in needles:
        assert needle in errors[0] + "\n".join(after), f"{needle!r} not in the error\n{where}"


# uv takes an empty lock file in the environment it works on (``<venv>/.lock``): not a change.
_NOT_CONTENT = frozenset({".lock"})


def tree_snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (links by target): to prove nothing changed."""
    out: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        if "__pycache__" in path.parts or path.relative_to(root).as_posix() in _NOT_CONTENT:
            continue
        if path.is_symlink():
            out[str(path.relative_to(root))] = str(path.readlink()).encode()
        elif path.is_file():
            out[str(path.relative_to(root))] = path.read_bytes()
    return out


def cmdlines_with(secret: str) -> list[str]:
    """Every process on this machine whose argv holds ``secret`` (what ``ps`` shows)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if secret in argv:
            found.append(argv)
    return found


# A background job of a non-interactive shell starts with SIGINT ignored, and nohup ignores
# SIGHUP: a pip-gpu started from such a run inherits that, and rightly keeps ignoring them. A
# test that sends them starts pip-gpu with their default handling, as a terminal would.
_DEFAULT_SIGNALS_THEN_EXEC = (
    "import os, signal, sys\n"
    "for name in ('SIGINT', 'SIGHUP', 'SIGTERM'):\n"
    "    signal.signal(getattr(signal, name), signal.SIG_DFL)\n"
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n"
)


def pip_gpu_argv_with_default_signals(*args: str) -> list[str]:
    """``python -m pip_gpu ARGS`` started with SIGINT, SIGHUP and SIGTERM at their defaults
    (the same process: ``execv`` keeps its pid)."""
    return [sys.executable, "-c", _DEFAULT_SIGNALS_THEN_EXEC, "-m", "pip_gpu", *args]
