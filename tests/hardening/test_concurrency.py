"""Concurrent and killed ``pip-gpu lock`` runs: every lock file is always the old one or the new
one, complete and valid, never a mixture. (Ctrl-C during an install: ``test_interrupt.py``.)"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from packaging.pylock import Pylock
from support.index import IndexServer, pip_env, uv_env
from support.locks import THIS_PYTHON

from pip_gpu import lockfile
from pip_gpu.cli import main

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PLUGIN = Path(__file__).resolve().parents[2] / "plugin"
OLD_REQUIREMENTS = "torch==2.5.1\nfixture-app\n"
NEW_REQUIREMENTS = OLD_REQUIREMENTS + "fixture-lib==1.0.0\n"
LOCKS = ("pylock.cpu.toml", "pylock.cu124.toml")

pytestmark = pytest.mark.slow


class Locked:
    """A folder locked once, and the bytes a single run writes for the old and new inputs."""

    def __init__(self, env: dict[str, str], old: dict[str, bytes], new: dict[str, bytes], seconds: float):
        self.env, self.old, self.new, self.seconds = env, old, new, seconds


def _lock_command(index: IndexServer) -> list[str]:
    return [
        sys.executable, "-m", "pip_gpu", "lock", "-r", "requirements.in", "--variants", "cpu,cu124",
        "--python-version", THIS_PYTHON, "--pytorch-index", index.pytorch_url,
    ]  # fmt: skip


def _locks(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in LOCKS if (folder / name).exists()}


def _single_run(folder: Path, requirements: str, index: IndexServer, env: dict[str, str]) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "requirements.in").write_text(requirements)
    subprocess.run(_lock_command(index), cwd=folder, env=env, check=True, capture_output=True, timeout=120)
    return _locks(folder)


@pytest.fixture(scope="module")
def locked(fixture_index: IndexServer, tmp_path_factory: pytest.TempPathFactory) -> Locked:
    root = tmp_path_factory.mktemp("concurrency")
    env = {**pip_env(), **uv_env(root / "uv-cache"), "PYTHONPATH": str(PLUGIN), "TMPDIR": str(root)}
    env["UV_DEFAULT_INDEX"] = fixture_index.pypi_url
    old = _single_run(root / "old", OLD_REQUIREMENTS, fixture_index, env)
    started = time.monotonic()
    new = _single_run(root / "new", NEW_REQUIREMENTS, fixture_index, env)
    assert set(old) == set(new) == set(LOCKS) and all(old[n] != new[n] for n in LOCKS)
    return Locked(env, old, new, time.monotonic() - started)


def test_eight_lock_runs_at_once_equal_a_single_run(
    locked: Locked, fixture_index: IndexServer, tmp_path: Path
) -> None:
    (tmp_path / "requirements.in").write_text(OLD_REQUIREMENTS)
    processes = [
        subprocess.Popen(
            _lock_command(fixture_index), cwd=tmp_path, env=locked.env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for _ in range(8)
    ]  # fmt: skip
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*LOCKS, "requirements.in"])
    for name in LOCKS:
        Pylock.from_dict(tomllib.loads((tmp_path / name).read_text(encoding="utf-8")))
    assert _locks(tmp_path) == locked.old


def test_sigkill_at_any_moment_leaves_the_old_file_or_the_new_one(
    locked: Locked, fixture_index: IndexServer, tmp_path: Path
) -> None:
    """Kill ``pip-gpu lock`` (SIGKILL, as the OOM killer would) at delays spread over a whole run."""
    outcomes: list[tuple[float, tuple[str, ...]]] = []
    for step in range(8):
        folder = tmp_path / str(step)
        folder.mkdir()
        for name, data in locked.old.items():
            (folder / name).write_bytes(data)
        (folder / "requirements.in").write_text(NEW_REQUIREMENTS)
        # spread over two runs' time (a run under load takes longer); the last one outlives it
        delay = locked.seconds * (0.15 + 0.25 * step if step < 7 else 4.0)
        process = subprocess.Popen(
            _lock_command(fixture_index), cwd=folder, env=locked.env, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the orphaned uv processes, if any
        states = []
        for name in LOCKS:
            data = (folder / name).read_bytes()
            assert data in (locked.old[name], locked.new[name]), f"{name} is a mixture after {delay:.2f} s"
            states.append("new" if data == locked.new[name] else "old")
        leftovers = {p.name for p in folder.iterdir()} - {*LOCKS, "requirements.in"}
        assert all(n.startswith(".pylock.") and n.endswith(".tmp") for n in leftovers), leftovers
        outcomes.append((round(delay, 2), tuple(states)))
        shutil.rmtree(folder)
    assert outcomes[0][1] == ("old", "old") and outcomes[-1][1] == ("new", "new"), outcomes


def test_a_writer_that_dies_before_the_rename_leaves_the_old_locks(
    locked: Locked, fixture_index: IndexServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The moment SIGKILL is least likely to hit by chance: new files written, none renamed."""
    for name, data in locked.old.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "requirements.in").write_text(NEW_REQUIREMENTS)
    for name in list(os.environ):
        if name.startswith(("PIP_", "UV_")):
            monkeypatch.delenv(name)
    for name, value in locked.env.items():
        if name.startswith(("PIP_", "UV_")) or name in ("NO_PROXY", "no_proxy"):
            monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    temporaries: list[Path] = []

    def killed(source: str, destination: str) -> None:
        temporaries.append(Path(source))
        assert Path(source).read_bytes()  # the new lock was fully written...
        raise OSError("killed")  # ...and the writer died before the rename

    monkeypatch.setattr(lockfile.os, "replace", killed)
    assert main(_lock_command(fixture_index)[3:]) == 74  # a failed write of pip-gpu's own files: EX_IOERR
    monkeypatch.undo()
    assert temporaries and not any(t.exists() for t in temporaries)
    assert _locks(tmp_path) == locked.old
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*LOCKS, "requirements.in"])
