"""Round 2 of bad input: each case a user or an attacker found to give a traceback or a hang is
one ``pip-gpu: error:`` line with a hint, exit 2, and nothing changed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.cli import assert_one_line_error, pip_gpu, tree_snapshot
from support.index import IndexServer
from support.locks import fixture_lock_text
from test_bad_input import command_line

import pip_gpu.detect.target as target_module
from pip_gpu import cli

BAD_URL = "http://[::1"


@pytest.fixture
def project(tmp_path: Path, fixture_index: IndexServer) -> Path:
    """A folder with a valid lock for the cpu build."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "pylock.cpu.toml").write_text(fixture_lock_text(fixture_index))
    return folder


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return path.name


def _deep_chain(folder: Path, depth: int = 1200) -> str:
    for i in range(depth):
        (folder / f"chain-{i}.txt").write_text(f"-r chain-{i + 1}.txt\n")
    (folder / f"chain-{depth}.txt").write_text("torch\n")
    return "chain-0.txt"


def _fifo(folder: Path) -> str:
    os.mkfifo(folder / "pipe.txt")
    return "pipe.txt"


def _huge(folder: Path) -> str:
    with open(folder / "huge.txt", "wb") as stream:
        stream.truncate(64 * 2**20)  # sparse: costs no disk
    return "huge.txt"


REQUIREMENT_FILES = [
    pytest.param(
        lambda f: _write(f / "r.txt", b"# coding: rot13\ntorch\n"), "not a text encoding", id="rot13"
    ),
    pytest.param(lambda f: _write(f / "r.txt", b"# -*- coding: hex -*-\ntorch\n"), "not a text", id="hex"),
    pytest.param(lambda f: _write(f / "r.txt", b"# coding=zlib\ntorch\n"), "not a text encoding", id="zlib"),
    pytest.param(lambda f: "/dev/zero", "is a device", id="dev-zero"),
    pytest.param(_fifo, "named pipe", id="fifo"),
    pytest.param(_huge, "larger than", id="huge"),
    pytest.param(_deep_chain, "more than 100 deep", id="deep-chain"),
]


@pytest.mark.parametrize("command", ["explain", "install", "lock"])
@pytest.mark.parametrize(("make", "needle"), REQUIREMENT_FILES)
def test_requirement_files_that_are_not_files_or_not_text(  # type: ignore[no-untyped-def]
    command: str, make, needle: str, project: Path, venv: Path, env: dict[str, str]
) -> None:
    (project / "pylock.cpu.toml").unlink()
    name = make(project)
    before = tree_snapshot(venv)
    done = pip_gpu(*command_line(command, venv, "-r", name), env=env, cwd=project, timeout=60)
    assert_one_line_error(done, needle)
    assert tree_snapshot(venv) == before


@pytest.mark.parametrize("command", ["explain", "install", "lock"])
@pytest.mark.parametrize("source", ["flag", "variable", "pyproject"])
def test_a_pytorch_index_urllib_cannot_parse(
    command: str, source: str, project: Path, venv: Path, env: dict[str, str]
) -> None:
    (project / "pylock.cpu.toml").unlink()
    args = ["torch==2.5.1"]
    if source == "flag":
        args += ["--pytorch-index", BAD_URL]
    elif source == "variable":
        env = {**env, "PIP_GPU_PYTORCH_INDEX": BAD_URL}
    else:
        env = {k: v for k, v in env.items() if k != "PIP_GPU_PYTORCH_INDEX"}
        (project / "pyproject.toml").write_text(f'[tool.pip-gpu]\npytorch-index = "{BAD_URL}"\n')
    done = pip_gpu(*command_line(command, venv, *args), env=env, cwd=project)
    assert_one_line_error(done, "is not a valid URL")


@pytest.mark.parametrize(
    ("text", "needle"),
    # issue 24: `tool = 1` loses every tool's settings, pip-gpu's too: bad input, not ignored
    [("[tool]\npip-gpu = 3\n", "must be a table"), ("tool = 1\n", "tool must be a table")],
    ids=["pip-gpu-not-a-table", "tool-not-a-table"],
)
def test_a_pyproject_of_the_wrong_shape(text: str, needle: str, project: Path, env: dict[str, str]) -> None:
    (project / "pyproject.toml").write_text(text)
    done = pip_gpu("explain", "torch==2.5.1", "--no-gpu", env=env, cwd=project)
    assert_one_line_error(done, needle)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("not toml [[[\n", "not valid TOML"),
        ('[project]\nname = "x"\nversion = "1"\n[tool.uv]\nindex = "x"\n', "shape pip-gpu expects"),
    ],
    ids=["not-toml", "uv-index-a-string"],
)
def test_uv_setup_on_a_pyproject_it_cannot_update(
    text: str, needle: str, project: Path, env: dict[str, str]
) -> None:
    (project / "pyproject.toml").write_text(text)
    done = pip_gpu("uv", "setup", "torch", "--no-gpu", env=env, cwd=project)
    assert_one_line_error(done, needle)
    assert (project / "pyproject.toml").read_text() == text


def test_an_interpreter_that_answers_nonsense(project: Path, env: dict[str, str]) -> None:
    fake = project / "fake-python"
    fake.write_text("#!/bin/sh\necho '{}'\n")
    fake.chmod(0o755)
    for command in ("install", "sync", "check", "doctor"):
        args = ["torch==2.5.1"] if command == "install" else []
        done = pip_gpu(command, *args, "--python", str(fake), "--no-gpu", env=env, cwd=project)
        assert_one_line_error(done, "not a working Python interpreter")


def test_an_interpreter_that_hangs_on_the_second_probe(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first probe (which Python is this?) answers; the second (what is installed?) hangs."""
    fake = tmp_path / "hangs-second-time"
    count = tmp_path / "count"
    fake.write_text(
        f'#!/bin/sh\nif [ -e {count} ]; then exec sleep 30; fi\ntouch {count}\nexec {sys.executable} "$@"\n'
    )
    fake.chmod(0o755)
    monkeypatch.chdir(project)
    monkeypatch.setattr(target_module, "PROBE_TIMEOUT_S", 1)
    status = cli.main(["check", "--python", str(fake), "--no-gpu"])
    error = capsys.readouterr().err
    assert status == 2 and "did not list its installed packages within 1 s" in error, error


@pytest.mark.parametrize(
    "where", ["a-file", "/proc", "/sys"], ids=["at-a-file", "in-proc", "read-only-filesystem"]
)
def test_lock_output_dir_that_cannot_hold_files(where: str, project: Path, env: dict[str, str]) -> None:
    target = where
    if where == "a-file":
        (project / "a-file").write_text("")
    elif not os.path.isdir(where) or _writable(Path(where)):
        pytest.skip(f"{where} takes new files here")
    done = pip_gpu(
        "lock", "torch==2.5.1", "--variants", "cpu", "--output-dir", target,
        "--python-version", f"{sys.version_info[0]}.{sys.version_info[1]}", "--no-gpu",
        env=env, cwd=project, timeout=120,
    )  # fmt: skip
    assert_one_line_error(done, target)


def _writable(folder: Path) -> bool:
    try:
        (folder / ".pip-gpu-probe").touch()
    except OSError:
        return False
    (folder / ".pip-gpu-probe").unlink()
    return True


def test_shim_install_dir_at_a_file(project: Path, env: dict[str, str]) -> None:
    (project / "a-file").write_text("")
    done = pip_gpu("shim", "install", "--dir", str(project / "a-file"), env=env, cwd=project)
    assert_one_line_error(done, "a-file")


def _record_edit(text: str, key: str, value: str) -> str:
    head, _, tail = text.partition("[tool.pip-gpu]\n")
    lines = tail.split("\n")
    for i, line in enumerate(lines):
        if line.startswith(f"{key} = "):
            lines[i] = f"{key} = {value}"
            break
    else:
        lines.insert(0, f"{key} = {value}")
    return head + "[tool.pip-gpu]\n" + "\n".join(lines)


@pytest.mark.parametrize("command", ["sync", "check", "lock", "install"])
@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [("index", "123", "index must be a string"), ("torch", '"garbage"', "'garbage' is not a version")],
    ids=["index-123", "torch-garbage"],
)
def test_a_lock_record_of_the_wrong_type(
    command: str, key: str, value: str, needle: str, project: Path, venv: Path, env: dict[str, str]
) -> None:
    lock = project / "pylock.cpu.toml"
    lock.write_text(_record_edit(lock.read_text(), key, value))
    before = tree_snapshot(venv), tree_snapshot(project)
    args = ["torch==2.5.1"] if command == "install" else []
    done = pip_gpu(*command_line(command, venv, *args), env=env, cwd=project)
    assert_one_line_error(done, "pylock.cpu.toml", needle)
    assert (tree_snapshot(venv), tree_snapshot(project)) == before


@pytest.mark.parametrize("command", ["sync", "check", "lock"])
@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_a_lock_file_that_is_not_a_file(
    command: str, kind: str, project: Path, venv: Path, env: dict[str, str]
) -> None:
    lock = project / "pylock.cpu.toml"
    lock.unlink()
    if kind == "dev-zero":
        lock.symlink_to("/dev/zero")
    else:
        os.mkfifo(lock)
    done = pip_gpu(*command_line(command, venv), env=env, cwd=project, timeout=60)
    assert_one_line_error(done, "pylock.cpu.toml", "not a lock file")


def test_debug_still_shows_an_unexpected_traceback(project: Path, env: dict[str, str]) -> None:
    """The last-resort handler is for people; --debug keeps the traceback for bug reports."""
    (project / "a-file").write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "pip_gpu", "--debug", "explain", "torch==", "--no-gpu"],
        env=env, cwd=project, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "Traceback" in done.stderr
