"""SIGTERM and SIGHUP reach every child as SIGINT does (``lock``'s resolvers included) and pip-gpu
exits 128 + the signal once they stopped; an index that trickles bytes meets an overall deadline."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support.cli import PLUGIN, assert_one_line_error, pip_gpu, pip_gpu_argv_with_default_signals
from support.index import IndexServer, installed_versions, make_venv, pip_env, uv_env

from pip_gpu.decide import index as index_module

A100_ON_535 = ["--driver", "535.104.05", "--compute-capability", "8.0"]
THIS_PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"


def _env(index: IndexServer, tmp_path: Path) -> dict[str, str]:
    env = {**pip_env(tmp_path / "pip-cache"), **uv_env(tmp_path / "uv-cache"), "PYTHONPATH": str(PLUGIN)}
    env.update(PIP_INDEX_URL=index.pypi_url, UV_DEFAULT_INDEX=index.pypi_url)
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    return env


def _children_of(pid: int) -> list[int]:
    """Every live descendant of ``pid``, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            line = next((x for x in status.splitlines() if x.startswith("PPid:")), "PPid: 0")
            parents[int(entry.name)] = int(line.split()[1])
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for child, its_parent in parents.items():
            if its_parent == parent:
                found.append(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in state


def _wait_for(condition, seconds: float = 60) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
@pytest.mark.parametrize(
    ("installer", "signum"),
    [("uv", signal.SIGTERM), ("pip", signal.SIGTERM), ("uv", signal.SIGHUP)],
    ids=["uv-SIGTERM", "pip-SIGTERM", "uv-SIGHUP"],
)
def test_sigterm_and_sighup_reach_the_installer(
    index_server: IndexServer, tmp_path: Path, installer: str, signum: int
) -> None:
    python = make_venv(tmp_path / "venv", with_pip=installer == "pip")
    before = installed_versions(python)
    # the installer is mid-download (its files: pip-gpu's own read of the page must not hang)
    index_server.fail("/whl/cu124/torch-", "hang", hang_s=30)
    process = subprocess.Popen(
        pip_gpu_argv_with_default_signals("install", "torch==2.5.1", "--python", str(python),
         "--installer", installer, "--pytorch-index", index_server.pytorch_url, *A100_ON_535),
        env=_env(index_server, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert _wait_for(lambda: index_server.contacted("/whl/cu124/torch-")), "the installer never asked"
    children = _children_of(process.pid)
    assert children
    os.kill(process.pid, signum)  # pip-gpu alone, as a service manager or a closed terminal does
    started = time.monotonic()
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 128 + signum, stderr
    assert time.monotonic() - started < 15  # the installer was told, not waited out
    assert not [pid for pid in children if _alive(pid)], "an installer outlived pip-gpu"
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert installed_versions(python) == before


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_every_resolver_of_lock(
    index_server: IndexServer, tmp_path: Path, signum: int
) -> None:
    index_server.fail("/whl/cpu/torch-", "hang", hang_s=30)  # the files: not pip-gpu's own page read
    index_server.fail("/whl/cu124/torch-", "hang", hang_s=30)
    process = subprocess.Popen(
        pip_gpu_argv_with_default_signals("lock", "torch==2.5.1", "--variants", "cpu,cu124",
         "--pytorch-index", index_server.pytorch_url, "--python-version", THIS_PYTHON, *A100_ON_535),
        env=_env(index_server, tmp_path), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert _wait_for(
        lambda: index_server.contacted("/whl/cpu/torch-") and index_server.contacted("/whl/cu124/torch-")
    ), "the resolvers never asked"
    resolvers = _children_of(process.pid)
    assert len(resolvers) >= 2
    os.kill(process.pid, signum)
    started = time.monotonic()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, stderr
    assert time.monotonic() - started < 15, "lock waited for its resolvers to give up"
    assert not [pid for pid in resolvers if _alive(pid)], "a resolver outlived pip-gpu lock"
    assert "Traceback" not in stderr and not list(tmp_path.glob("pylock.*"))


# --- an index that never goes silent ---------------------------------------------------------


class _Trickle(BaseHTTPRequestHandler):
    """A page sent one byte every 50 ms: never silent long enough for a silence timeout."""

    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        try:
            for _ in range(2000):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass


@pytest.fixture
def trickle() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_index_that_trickles_meets_the_overall_deadline(trickle: str) -> None:
    started = time.monotonic()
    with pytest.raises(index_module.IndexError_, match="did not send its page within"):
        index_module.fetch_project_files(trickle + "/whl/cu124/torch/", timeout=0.25)
    assert time.monotonic() - started < 0.25 * index_module.DEADLINE_FACTOR + 2


def test_explain_against_a_trickling_index_is_one_line_soon(
    trickle: str, old_knowledge: Path, tmp_path: Path
) -> None:
    env = {**pip_env(), "PYTHONPATH": str(PLUGIN), "PIP_GPU_KNOWLEDGE": str(old_knowledge)}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), PIP_GPU_INDEX_TIMEOUT="0.25")
    started = time.monotonic()
    done = pip_gpu("explain", "torch==2.6.0", "--pytorch-index", trickle + "/whl", "--no-gpu", env=env)
    assert time.monotonic() - started < 20
    assert_one_line_error(done, "did not send its page within")


# --- round 3: every child has a deadline; probe requests do not go through argv -----------------


@pytest.mark.slow
def test_sync_stops_a_target_that_hangs_in_uv_s_interpreter_query_and_names_it(
    fixture_index: IndexServer, tmp_path: Path
) -> None:
    """The target answers pip-gpu's own probe but hangs when uv queries it: the installer run is
    stopped at its deadline (PIP_GPU_CHILD_TIMEOUT), and the error names the run and the way out."""
    from support.locks import fixture_lock

    from pip_gpu.children import CHILD_TIMEOUT_VARIABLE

    project = tmp_path / "project"
    project.mkdir()
    fixture_lock(fixture_index, project)
    real = make_venv(tmp_path / "venv", with_pip=False)
    hung = tmp_path / "hung.pid"
    wrapper = real.parent / "python-that-hangs-for-uv"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *get_interpreter_info*) echo $$ > {hung}; exec sleep 120;; esac\n'
        f'exec {real} "$@"\n'
    )
    wrapper.chmod(0o755)
    env = {**_env(fixture_index, tmp_path), CHILD_TIMEOUT_VARIABLE: "3"}
    started = time.monotonic()
    try:
        done = pip_gpu(
            "sync",
            "--installer",
            "uv",
            "--python",
            str(wrapper),
            "--no-gpu",
            env=env,
            cwd=project,
            timeout=90,
        )
    finally:
        if hung.exists():
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(hung.read_text()), signal.SIGKILL)
    assert time.monotonic() - started < 60
    assert hung.exists()  # it was uv's query that hung
    assert_one_line_error(
        done,
        "installing exactly pylock.cpu.toml",
        "did not finish within 3 s",
        CHILD_TIMEOUT_VARIABLE,
        status=1,
    )
    assert "torch" not in installed_versions(real)


def test_check_answers_for_a_lock_too_large_for_one_argument(tmp_path: Path) -> None:
    """The names to verify went into the probe's argv: past 128 KiB (Linux's limit for one
    argument; a lock of 50,000 packages, here 6,000 long names) check failed with "Argument list
    too long". They reach the probe on stdin, and check compares every one."""
    from support.locks import THIS_PYTHON

    python = make_venv(tmp_path / "venv", with_pip=False)
    index = "https://pypi.example/simple"
    entries = "".join(
        f'[[packages]]\nname = "locked-package-number-{i:05d}"\nversion = "1.0"\nindex = "{index}"\n'
        f'[[packages.wheels]]\nurl = "https://pypi.example/f/locked_package_number_{i:05d}-1.0-py3-none-any.whl"\n'
        f'hashes = {{sha256 = "{"0" * 64}"}}\n'
        for i in range(6_000)
    )
    inputs = f'requirements = []\ntargets = ["linux-x86_64-{THIS_PYTHON}"]\npytorch-index = "https://pytorch.example/whl"\n'
    (tmp_path / "pylock.cpu.toml").write_text(
        'lock-version = "1.0"\ncreated-by = "pip-gpu"\n'
        + entries
        + '[tool.pip-gpu]\nvariant = "cpu"\nindex = "https://pytorch.example/whl/cpu"\n'
        + 'torch-release = "2.5"\ninputs-digest = "sha256:x"\n'
        + f'targets = ["linux-x86_64-{THIS_PYTHON}"]\n[tool.pip-gpu.inputs]\n{inputs}'
    )
    env = {**pip_env(), "PYTHONPATH": str(PLUGIN), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = pip_gpu("check", "--python", str(python), "--no-gpu", env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "Argument list too long" not in done.stdout + done.stderr
    assert "locked-package-number-05999 1.0 is not installed" in done.stdout, done.stdout[-2000:]
