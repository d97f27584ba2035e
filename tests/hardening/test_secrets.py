"""Credentials, round 2: never in a child's argv, never sent to another host after a redirect,
never printed or written whatever characters they hold or whatever their query key is called."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support.cli import PLUGIN, assert_one_line_error, pip_gpu
from support.cli import cmdlines_with as _cmdlines_with
from support.index import IndexServer, installed_versions, make_venv, pip_env, uv_env

from pip_gpu.decide import index as index_module
from pip_gpu.lockfile import strip_credentials
from pip_gpu.requirements import redact_url

A100_ON_535 = ["--driver", "535.104.05", "--compute-capability", "8.0"]

# Every character RFC 3986 allows in userinfo, unescaped where it may be.
USERINFO_CHARS = "-._~!$&'()*+,;=%40%3A"
PASSWORDS = [
    "s3cr3t'quote",
    's3cr3t"dq',
    "s3cr3t!$&'()*+,;=~",
    "s3cr3t%40at%2Fslash",
    "s3cr3t" + USERINFO_CHARS,
]
SECRET_KEYS = ["token", "pass", "password", "pw", "pwd", "session", "access", "access_token", "key", "sig"]


@pytest.mark.parametrize("password", PASSWORDS)
def test_no_password_character_escapes_redaction(password: str) -> None:
    url = f"https://alice:{password}@mirror.example/whl/cu124"
    for text in (url, f"see '{url}' here", f'"url": "{url}"', f"--index-url={url}"):
        shown, written = redact_url(text), strip_credentials(text)
        secret = password.split("'")[0].split('"')[0]
        rest = password[len(secret) :]
        assert secret not in shown and secret not in written, (shown, written)
        assert (not rest or rest not in shown) and "mirror.example/whl/cu124" in shown
        assert "mirror.example/whl/cu124" in written and "alice" not in written


@pytest.mark.parametrize("key", SECRET_KEYS)
@pytest.mark.parametrize("where", ["?", "#", "?a=1&", "?a=1#"])
def test_secret_query_and_fragment_values_are_hidden(key: str, where: str) -> None:
    url = f"https://mirror.example/whl{where}{key}=q-s3cr3t"
    assert "q-s3cr3t" not in redact_url(url) and "q-s3cr3t" not in strip_credentials(url)
    assert redact_url("https://h/x.whl#sha256=abc") == "https://h/x.whl#sha256=abc"  # not a secret


def test_explain_json_and_errors_never_show_a_quoted_password(tmp_path: Path) -> None:
    env = {**pip_env(), "PYTHONPATH": str(PLUGIN), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    index = "https://al'ice:p'w-s3cr3t@mirror.example/whl?session=q-s3cr3t#access=f-s3cr3t"
    done = pip_gpu("explain", "torch==2.5.1", "--json", "--no-gpu", "--pytorch-index", index, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)  # still JSON
    for secret in ("s3cr3t", "p'w"):
        assert secret not in done.stdout + done.stderr


# --- the installers' argv --------------------------------------------------------------------


def _argvs_while_it_waits(
    process: subprocess.Popen[str], secret: str, index_server: IndexServer, hanging: str, within_s: float
) -> tuple[list[str], str]:
    """Every process argv holding ``secret`` while ``process`` runs, the index hanging on
    ``hanging`` until it is first asked for it; then the process's standard error."""
    seen: list[str] = []
    deadline = time.monotonic() + within_s
    while process.poll() is None and time.monotonic() < deadline:
        seen += _cmdlines_with(secret)
        if index_server.contacted(hanging):
            index_server.clear_failures()
        time.sleep(0.05)
    _, stderr = process.communicate(timeout=120)
    return seen, stderr


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_a_token_in_the_pytorch_index_never_reaches_an_argv(
    index_server: IndexServer, tmp_path: Path, installer: str
) -> None:
    """The token is in PIP_GPU_PYTORCH_INDEX only; while the installer downloads, no process
    on the machine has it in its argv, and the install still completes."""
    python = make_venv(tmp_path / "venv", with_pip=installer == "pip")
    secret = f"argv-s3cr3t-{os.getpid()}"
    index = index_server.pytorch_url.replace("http://", f"http://alice:{secret}@")
    env = {**pip_env(tmp_path / "pip-cache"), **uv_env(tmp_path / "uv-cache"), "PYTHONPATH": str(PLUGIN)}
    env.update(PIP_INDEX_URL=index_server.pypi_url, UV_DEFAULT_INDEX=index_server.pypi_url)
    env.update(PIP_GPU_PYTORCH_INDEX=index, XDG_CACHE_HOME=str(tmp_path / "cache"))
    index_server.fail("/whl/cpu/torch-", "hang", hang_s=4)  # the installer waits on the wheel
    process = subprocess.Popen(
        [sys.executable, "-m", "pip_gpu", "install", "torch==2.5.1", "--python", str(python),
         "--installer", installer, "--no-gpu"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen, stderr = _argvs_while_it_waits(process, secret, index_server, "/whl/cpu/torch-", within_s=60)
    assert index_server.contacted("/whl/cpu/torch"), stderr
    assert not seen, seen
    assert secret not in stderr
    assert process.returncode == 0, stderr
    assert installed_versions(python)["torch"] == "2.5.1+cpu"


# --- redirects -------------------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    """Answers every GET with a redirect to ``target`` (or a tiny index page), noting headers."""

    seen: list[tuple[str, str | None]]
    target: str

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        if self.target and "final" not in self.path:
            self.send_response(302)
            self.send_header("Location", self.target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b'<a href="torch-2.5.1%2Bcpu-py3-none-any.whl">torch</a>'
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(target: str) -> Iterator[tuple[str, list[tuple[str, str | None]]]]:
    seen: list[tuple[str, str | None]] = []
    handler = type("Handler", (_Recorder,), {"seen": seen, "target": target})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_index_reads_never_send_credentials_to_another_host() -> None:
    other = _serve("")
    other_url, other_seen = next(other)
    # "localhost" and "127.0.0.1" are different hosts to an HTTP client, as they are here
    index = _serve(other_url.replace("127.0.0.1", "localhost") + "/final/torch/")
    index_url, index_seen = next(index)
    try:
        files = index_module.fetch_project_files(
            index_url.replace("http://", "http://alice:s3cr3t@") + "/whl/cpu/torch/", timeout=5
        )
        assert [f.filename for f in files] == ["torch-2.5.1+cpu-py3-none-any.whl"]
        assert index_seen and index_seen[0][1] is not None  # the index itself got them
        assert other_seen and all(auth is None for _, auth in other_seen), other_seen
    finally:
        for server in (index, other):
            server.close()


def test_index_reads_keep_credentials_on_a_same_host_redirect() -> None:
    """A redirect within the index (``/whl/cpu/torch`` -> ``/final/torch/``) still authenticates."""
    server = _serve("/final/torch/")
    url, seen = next(server)
    try:
        index_module.fetch_project_files(url.replace("http://", "http://alice:s3cr3t@") + "/x/", timeout=5)
        assert [path for path, _ in seen] == ["/x/", "/final/torch/"]
        assert all(auth is not None for _, auth in seen), seen
    finally:
        server.close()


@pytest.mark.slow
def test_a_quoted_password_never_lands_in_a_lock(fixture_index: IndexServer, tmp_path: Path) -> None:
    env = {**pip_env(tmp_path / "pip-cache"), **uv_env(tmp_path / "uv-cache"), "PYTHONPATH": str(PLUGIN)}
    env.update(PIP_INDEX_URL=fixture_index.pypi_url, UV_DEFAULT_INDEX=fixture_index.pypi_url)
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    index = fixture_index.pytorch_url.replace("http://", "http://al'ice:p'w-s3cr3t@") + "?session=q-s3cr3t"
    done = pip_gpu(
        "lock", "torch==2.5.1", "--variants", "cpu", "--pytorch-index", index, "--no-gpu",
        "--python-version", f"{sys.version_info[0]}.{sys.version_info[1]}",
        env=env, cwd=tmp_path, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "pylock.cpu.toml").read_text()
    assert "s3cr3t" not in text + done.stdout + done.stderr and "al'ice" not in text
    assert f'index = "{fixture_index.variant_url("cpu")}"' in text


class _Demands(BaseHTTPRequestHandler):
    """An index that answers 401 until it gets Basic credentials, then 404: it notes them."""

    seen: list[str | None]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization")
        self.seen.append(auth)
        self.send_response(404 if auth else 401)
        if not auth:
            self.send_header("WWW-Authenticate", 'Basic realm="index"')
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.mark.parametrize("installer", ["uv", "pip"])
@pytest.mark.parametrize(
    ("user", "password"),
    [("al'ice", "p'w-s3cr3t"), ("alice", 'p w"-s3cr3t'), ("al ice", "p#w -s3cr3t")],
    ids=["netrc", "environment", "environment-hash"],
)
def test_the_installers_read_the_credentials_pip_gpu_takes_out_of_argv(
    tmp_path: Path, installer: str, user: str, password: str
) -> None:
    """The other half of the argv promise: pip and uv still authenticate, from the netrc file,
    or, for a password netrc cannot hold (white space, a quote), from their own variables."""
    import base64
    from urllib.parse import quote

    from support.index import uv_bin

    from pip_gpu.children import private_command

    seen: list[str | None] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Demands,), {"seen": seen}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    userinfo = f"{quote(user, safe=chr(39))}:{quote(password, safe=chr(39))}"  # a quote stays as typed
    index = f"http://{userinfo}@127.0.0.1:{server.server_address[1]}/simple"
    argv = (
        [
            uv_bin(),
            "pip",
            "install",
            "--dry-run",
            "--python",
            sys.executable,
            "--index-url",
            index,
            "nothing-here",
        ]
        if installer == "uv"
        else [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-d",
            str(tmp_path),
            "-i",
            index,
            "nothing-here",
        ]
    )
    env = {**pip_env(), **uv_env(tmp_path / "uv-cache")}
    try:
        with private_command(argv, env) as (clean, child_env):
            assert not [a for a in clean if "s3cr3t" in a], clean
            subprocess.run(clean, env=child_env, capture_output=True, timeout=120, check=False)
    finally:
        server.shutdown()
        server.server_close()
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    assert expected in seen, seen


# --- round 3: a password with a space ---------------------------------------------------------


def test_a_password_with_a_space_is_hidden_and_removed() -> None:
    url = "http://alice:s3cret w0rd@mirror.example/whl/cu124"
    for text in (url, f"see '{url}' here", f'"url": "{url}"', f"index = {url}"):
        shown, written = redact_url(text), strip_credentials(text)
        assert "s3cret" not in shown + written and "w0rd" not in shown + written, (shown, written)
        assert "mirror.example/whl/cu124" in shown and "mirror.example/whl/cu124" in written


@pytest.mark.parametrize("command", ["lock", "uv setup", "install --dry-run"])
def test_a_password_with_a_space_is_refused_where_it_enters(
    fixture_index: IndexServer, tmp_path: Path, command: str
) -> None:
    """Not valid userinfo (RFC 3986): refused before anything is printed or written, naming what
    is wrong and never the password; no lock, and pyproject.toml unchanged."""
    env = {**pip_env(tmp_path / "pip-cache"), **uv_env(tmp_path / "uv-cache"), "PYTHONPATH": str(PLUGIN)}
    env.update(PIP_INDEX_URL=fixture_index.pypi_url, UV_DEFAULT_INDEX=fixture_index.pypi_url)
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    index = fixture_index.pytorch_url.replace("http://", "http://alice:s3cret w0rd@")
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "app"\nversion = "1.0"\ndependencies = ["torch==2.5.1"]\n')
    before = pyproject.read_text()
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    done = pip_gpu(
        *command.split(), *(["torch==2.5.1"] if command != "uv setup" else []), "--pytorch-index", index,
        "--no-gpu", *(["--python-version", python] if command == "lock" else []),
        *(["--python", sys.executable] if command.startswith("install") else []),
        env=env, cwd=tmp_path, timeout=180,
    )  # fmt: skip
    assert_one_line_error(done, "--pytorch-index", "a space", "percent-encode")
    assert "s3cret" not in done.stdout + done.stderr and "w0rd" not in done.stdout + done.stderr
    assert not list(tmp_path.glob("pylock.*")) and pyproject.read_text() == before


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX file modes")
def test_credentials_a_killed_run_left_are_private_and_removed_by_the_next(
    index_server: IndexServer, tmp_path: Path
) -> None:
    """SIGKILL gives pip-gpu no time to remove the netrc it handed the installer: it lies in a
    folder only the user can enter (here $XDG_RUNTIME_DIR/pip-gpu), never in the shared
    temporary folder, and the next run that needs one removes it."""
    import signal

    python = make_venv(tmp_path / "venv", with_pip=False)
    secret = f"kill-s3cr3t-{os.getpid()}"
    runtime, shared = tmp_path / "run", tmp_path / "tmp"
    runtime.mkdir(mode=0o700)
    shared.mkdir()
    env = {**pip_env(tmp_path / "pip-cache"), **uv_env(tmp_path / "uv-cache"), "PYTHONPATH": str(PLUGIN)}
    env.update(PIP_INDEX_URL=index_server.pypi_url, UV_DEFAULT_INDEX=index_server.pypi_url)
    env.update(
        PIP_GPU_PYTORCH_INDEX=index_server.pytorch_url.replace("http://", f"http://alice:{secret}@"),
        XDG_CACHE_HOME=str(tmp_path / "cache"), XDG_RUNTIME_DIR=str(runtime), TMPDIR=str(shared),
    )  # fmt: skip
    argv = [sys.executable, "-m", "pip_gpu", "install", "torch==2.5.1", "--python", str(python), "--no-gpu"]
    index_server.fail("/whl/cpu/torch-", "hang", hang_s=20)  # the installer waits on the wheel
    process = subprocess.Popen(argv, env=env, start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not index_server.contacted("/whl/cpu/torch-") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert index_server.contacted("/whl/cpu/torch-")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        index_server.clear_failures()
    holding = [p for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert holding and all(p.is_relative_to(runtime / "pip-gpu") for p in holding), holding
    private = runtime / "pip-gpu"
    for folder in {private, *(private / p.relative_to(private).parts[0] for p in holding)}:
        assert (folder.stat().st_mode & 0o777) == 0o700, folder
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_the_users_index_credentials_never_reach_the_readings_argv(
    index_server: IndexServer, tmp_path: Path
) -> None:
    """Reading what the other requirements need of torch (a uv resolution against the user's
    indexes): a password in UV_DEFAULT_INDEX, and a token in a requirements file's
    --extra-index-url, stay out of every argv while uv waits on the index."""
    secret = f"reading-s3cr3t-{os.getpid()}"
    default = index_server.pypi_url.replace("http://", f"http://alice:{secret}@")
    extra = f"{index_server.pypi_url}?token={secret}"
    (tmp_path / "requirements.txt").write_text(f"--extra-index-url {extra}\nfixture-llm==0.6.4.post1\n")
    env = {**pip_env(tmp_path / "pip-cache"), **uv_env(tmp_path / "uv-cache"), "PYTHONPATH": str(PLUGIN)}
    env.update(UV_DEFAULT_INDEX=default, PIP_GPU_PYTORCH_INDEX=index_server.pytorch_url)
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"))
    index_server.fail("/pypi/simple/fixture-llm", "hang", hang_s=3)  # uv waits on the index
    python = make_venv(tmp_path / "venv", with_pip=False)
    process = subprocess.Popen(
        [sys.executable, "-m", "pip_gpu", "install", "--dry-run", "-r", "requirements.txt",
         "--installer", "uv", "--python", str(python), *A100_ON_535],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen, stderr = _argvs_while_it_waits(
        process, secret, index_server, "/pypi/simple/fixture-llm", within_s=120
    )
    assert index_server.contacted("/pypi/simple/fixture-llm"), stderr
    assert not seen, seen
    assert secret not in stderr
    assert process.returncode == 0, stderr
    assert "fixture-llm==0.6.4.post1 requires torch==2.5.1" in stderr


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX file modes")
def test_a_killed_readings_requirements_copy_is_private_and_removed_by_the_next(
    index_server: IndexServer, tmp_path: Path
) -> None:
    """The reading's copy of a requirements file keeps its ``--extra-index-url`` token: killed
    while uv waits on the index, the copy lies in the private folder, never in the shared
    temporary folder, and the next run removes it."""
    import signal

    secret = f"copy-s3cr3t-{os.getpid()}"
    (tmp_path / "requirements.txt").write_text(
        f"--extra-index-url {index_server.pypi_url}?token={secret}\nfixture-llm==0.6.4.post1\n"
    )
    runtime, shared = tmp_path / "run", tmp_path / "tmp"
    runtime.mkdir(mode=0o700)
    shared.mkdir()
    env = {**pip_env(tmp_path / "pip-cache"), **uv_env(tmp_path / "uv-cache"), "PYTHONPATH": str(PLUGIN)}
    env.update(UV_DEFAULT_INDEX=index_server.pypi_url, PIP_GPU_PYTORCH_INDEX=index_server.pytorch_url)
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), XDG_RUNTIME_DIR=str(runtime), TMPDIR=str(shared))
    python = make_venv(tmp_path / "venv", with_pip=False)
    argv = [sys.executable, "-m", "pip_gpu", "install", "--dry-run", "-r", "requirements.txt",
            "--installer", "uv", "--python", str(python), *A100_ON_535]  # fmt: skip
    index_server.fail("/pypi/simple/fixture-llm", "hang", hang_s=20)  # uv waits on the index
    process = subprocess.Popen(argv, env=env, cwd=tmp_path, start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not index_server.contacted("/pypi/simple/fixture-llm") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert index_server.contacted("/pypi/simple/fixture-llm")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        index_server.clear_failures()

    def holding() -> list[Path]:
        mine = [tmp_path / "requirements.txt", tmp_path / "uv-cache"]  # the user's file, uv's cache
        return [
            p
            for p in tmp_path.rglob("*")
            if p.is_file()
            and not any(p == m or p.is_relative_to(m) for m in mine)
            and secret.encode() in p.read_bytes()
        ]

    left = holding()
    private = runtime / "pip-gpu"
    assert any(p.parent.name.startswith("resolve-") for p in left), left
    assert all(p.is_relative_to(private) for p in left), left
    for folder in {private, *(private / p.relative_to(private).parts[0] for p in left)}:
        assert (folder.stat().st_mode & 0o777) == 0o700, folder
    done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert not holding()
