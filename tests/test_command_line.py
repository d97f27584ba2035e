"""The command line as a new user meets it (issue 16): closed pipes, global options anywhere,
no-op invocations, the target environment rule, progress and colour on a terminal.

Every test runs the real ``python -m pip_gpu`` in a subprocess; the terminal ones run it
under a pseudo-terminal (``pty``), as a person's shell does.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from support.cli import PLUGIN, assert_one_line_error, pip_gpu
from support.index import IndexServer, make_venv, pip_env, uv_env
from support.locks import fixture_lock

NO_GPU = ("--no-gpu",)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """This checkout's package, no venv active, this machine's pip config and host left out."""
    environment = {**pip_env(), "PYTHONPATH": str(PLUGIN), "HOME": str(tmp_path)}
    for name in list(environment):
        if name.startswith("PIP_GPU_") or name in ("VIRTUAL_ENV", "CUDA_VISIBLE_DEVICES", "NO_COLOR"):
            del environment[name]
    return environment


def with_closed_stdout(
    args: Sequence[str], env: Mapping[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """Run with stdout a pipe whose reader is already gone (``pip-gpu ... | head`` after head left)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "pip_gpu", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)


def on_a_terminal(args: Sequence[str], env: Mapping[str, str], cwd: Path) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal; returns the status and all it printed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: never returns
        os.chdir(cwd)
        os.execve(sys.executable, [sys.executable, "-m", "pip_gpu", *args], dict(env))
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode("utf-8", "replace")


# --- a closed stdout -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("matrix", "--json"),
        ("matrix",),
        ("explain", "torch", *NO_GPU),
        ("detect", "--json", *NO_GPU),
        ("doctor", *NO_GPU),
        ("--help",),
        ("install", "--help"),
        ("install", "torch==2.5.1", "--dry-run", "--python", sys.executable, *NO_GPU),
    ],
)
def test_a_closed_stdout_ends_quietly_as_after_sigpipe(
    args: Sequence[str], env: dict[str, str], tmp_path: Path
) -> None:
    done = with_closed_stdout(args, env, tmp_path)
    assert done.returncode == 141, done.stderr  # 128 + SIGPIPE, as a shell reports `cmd | head`
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


# --- global options before or after the command ----------------------------------------------


def test_debug_is_accepted_after_the_command(env: dict[str, str], tmp_path: Path) -> None:
    assert pip_gpu("explain", "torch", *NO_GPU, "--debug", env=env, cwd=tmp_path).returncode == 0
    shown = pip_gpu("explain", "torch==", *NO_GPU, "--debug", env=env, cwd=tmp_path)
    assert "Traceback" in shown.stderr  # --debug after the command still shows it


def test_json_before_the_command_is_the_commands_json(env: dict[str, str], tmp_path: Path) -> None:
    before = pip_gpu("--json", "explain", "torch==2.5.1", *NO_GPU, env=env, cwd=tmp_path)
    after = pip_gpu("explain", "torch==2.5.1", *NO_GPU, "--json", env=env, cwd=tmp_path)
    assert before.returncode == after.returncode == 0, before.stderr
    assert json.loads(before.stdout) == json.loads(after.stdout)
    assert json.loads(before.stdout)["variant"] == "cpu"
    refused = pip_gpu("--json", "shim", "init", "bash", env=env, cwd=tmp_path)
    assert_one_line_error(refused, "--json does not apply to pip-gpu shim init")


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_and_verbose_are_accepted_before_or_after(
    where: str, env: dict[str, str], tmp_path: Path
) -> None:
    for flag in ("-q", "-v", "--quiet", "--verbose"):
        args = [flag, "detect", *NO_GPU] if where == "before" else ["detect", *NO_GPU, flag]
        done = pip_gpu(*args, env=env, cwd=tmp_path)
        assert done.returncode == 0, (flag, done.stderr)
        assert "Platform" in done.stdout


def test_a_dry_run_says_it_would_install_and_every_json_document_has_a_schema_version(
    env: dict[str, str], tmp_path: Path
) -> None:
    args = ("install", "torch==2.5.1", "--dry-run", "--python", sys.executable, *NO_GPU)
    done = pip_gpu(*args, env=env, cwd=tmp_path)
    assert "; a dry run: would install with " in done.stderr and "; installing with" not in done.stderr
    for command in (
        ("detect", "--json", *NO_GPU),
        ("explain", "torch==2.5.1", "--json", *NO_GPU),
        (*args, "--json"),
        ("doctor", "--json", "--python", sys.executable, *NO_GPU),
    ):
        out = pip_gpu(*command, env=env, cwd=tmp_path)
        assert json.loads(out.stdout)["schema_version"] == 1, command


def test_a_dry_run_of_a_request_without_torch_does_not_say_a_torch_build_was_chosen(
    env: dict[str, str], tmp_path: Path
) -> None:
    args = ("install", "numpy", "--dry-run", "--installer", "pip", "--python", sys.executable, *NO_GPU)
    script = pip_gpu(*args, env=env, cwd=tmp_path).stdout
    assert script.startswith("# pip-gpu install --dry-run: torch-family packages, if needed, from "), script
    assert "chosen on the variant index" not in script and "torch 2." not in script.splitlines()[0]
    assert "# pip: everything from your indexes (no torch-family package)" in script


def test_quiet_leaves_out_the_notes_of_install(env: dict[str, str], tmp_path: Path) -> None:
    args = ("install", "torch==2.5.1", "--dry-run", "--python", sys.executable, *NO_GPU)
    loud = pip_gpu(*args, env=env, cwd=tmp_path)
    quiet = pip_gpu("-q", *args, env=env, cwd=tmp_path)
    assert "pip-gpu: target" in loud.stderr and quiet.stderr == ""
    assert "--quiet" in quiet.stdout  # -q before the command reaches the installer too, as after it


# --- no-op and contradictory invocations -----------------------------------------------------


def test_no_op_and_contradictory_invocations_are_usage_errors(env: dict[str, str], tmp_path: Path) -> None:
    assert_one_line_error(pip_gpu(env=env, cwd=tmp_path), "no command given", "--help")
    assert_one_line_error(
        pip_gpu("install", env=env, cwd=tmp_path), "nothing to install", "-r requirements.txt"
    )
    json_alone = pip_gpu(
        "install", "torch", "--json", "--python", sys.executable, *NO_GPU, env=env, cwd=tmp_path
    )
    assert_one_line_error(json_alone, "--json prints the plan of a dry run", "--dry-run")
    assert_one_line_error(pip_gpu("-q", "detect", "-v", env=env, cwd=tmp_path), "-q and -v contradict")
    both = pip_gpu("install", "torch", "--python", sys.executable, "--system", env=env, cwd=tmp_path)
    assert_one_line_error(both, "--system: not allowed with argument --python", "give --python or --system")
    assert both.stderr.startswith("pip-gpu: error: ") and "usage:" not in both.stderr  # no argparse block


def test_explains_contradiction_goes_to_stderr_like_its_other_errors(
    env: dict[str, str], tmp_path: Path
) -> None:
    done = pip_gpu("explain", "torch==2.5.1", "torchvision==0.15.1", *NO_GPU, env=env, cwd=tmp_path)
    assert done.stdout == ""
    assert_one_line_error(done, "do not belong together", "pin versions of one release")


# --- the target environment ------------------------------------------------------------------

THREE_WAYS = ("--python", "VIRTUAL_ENV", "./.venv")


def test_install_without_a_target_is_refused_naming_the_three_ways(
    env: dict[str, str], tmp_path: Path
) -> None:
    done = pip_gpu("install", "torch==2.5.1", "--dry-run", *NO_GPU, env=env, cwd=tmp_path)
    assert_one_line_error(done, "no virtual environment found", *THREE_WAYS, "--system")
    assert "pip-gpu: target" not in done.stderr


def test_install_takes_dot_venv_then_virtual_env_then_python(env: dict[str, str], tmp_path: Path) -> None:
    local = make_venv(tmp_path / ".venv", with_pip=False)
    args = ("install", "torch==2.5.1", "--dry-run", *NO_GPU)
    done = pip_gpu(*args, env=env, cwd=tmp_path)
    assert f"target {local} " in done.stderr and "from ./.venv" in done.stderr
    active = make_venv(tmp_path / "active", with_pip=False)
    done = pip_gpu(*args, env={**env, "VIRTUAL_ENV": str(active.parents[1])}, cwd=tmp_path)
    assert f"target {active} " in done.stderr and "from VIRTUAL_ENV" in done.stderr
    done = pip_gpu(
        *args, "--python", sys.executable, env={**env, "VIRTUAL_ENV": str(active.parents[1])}, cwd=tmp_path
    )
    assert f"target {sys.executable} " in done.stderr and "from --python" in done.stderr


def test_system_targets_the_python3_on_path(env: dict[str, str], tmp_path: Path) -> None:
    on_path = tmp_path / "bin"
    on_path.mkdir()
    (on_path / "python3").symlink_to(sys.executable)
    env = {**env, "PATH": os.pathsep.join([str(on_path), "/usr/bin", "/bin"])}
    done = pip_gpu("install", "torch==2.5.1", "--dry-run", "--system", *NO_GPU, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"target {on_path / 'python3'} " in done.stderr and "from --system" in done.stderr


def test_sync_without_a_target_is_refused_too(
    env: dict[str, str], tmp_path: Path, fixture_index: IndexServer
) -> None:
    fixture_lock(fixture_index, tmp_path, "cpu")
    done = pip_gpu("sync", *NO_GPU, env=env, cwd=tmp_path)
    assert_one_line_error(done, "no virtual environment found", *THREE_WAYS)


# --- progress and colour on a terminal -------------------------------------------------------


def _lock_env(env: Mapping[str, str], server: IndexServer, tmp_path: Path) -> dict[str, str]:
    uv = {k: v for k, v in uv_env(tmp_path / "uv-cache").items() if k.startswith("UV_")}
    out = {**env, **uv, "UV_DEFAULT_INDEX": server.pypi_url}
    out["PIP_GPU_PROGRESS_AFTER"] = "0"  # the fixture resolves in well under the second a person waits
    return out


def test_lock_shows_progress_per_variant_on_a_terminal_only(
    env: dict[str, str], tmp_path: Path, fixture_index: IndexServer
) -> None:
    (tmp_path / "requirements.in").write_text("torch==2.5.1\n")
    lock_env = _lock_env(env, fixture_index, tmp_path)
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    args = [
        "lock",
        "-r",
        "requirements.in",
        "--variants",
        "cu124,cpu",
        "--pytorch-index",
        fixture_index.pytorch_url,
    ]
    args += ["--python-version", python, *NO_GPU]
    status, shown = on_a_terminal(args, lock_env, tmp_path)
    assert status == 0, shown
    assert "pip-gpu: resolving cu124 ..." in shown and "pip-gpu: resolving cpu ..." in shown
    assert "pip-gpu: resolving cpu: done in" in shown
    assert "torch-family wheels from the variant index: done in" in shown  # lock's check of each file
    piped = pip_gpu(*args, "--json", env=lock_env, cwd=tmp_path)
    assert piped.returncode == 0 and "resolving" not in piped.stderr
    written = json.loads(piped.stdout)  # lock --json: the files, as the notes on stderr name them
    assert written["schema_version"] == 1
    assert sorted((Path(f["file"]).name, f["variant"], f["torch"]) for f in written["locks"]) == [
        ("pylock.cpu.toml", "cpu", "2.5.1"),
        ("pylock.cu124.toml", "cu124", "2.5.1"),
    ]
    status, quiet = on_a_terminal(["-q", *args], lock_env, tmp_path)
    assert status == 0 and "resolving" not in quiet
    verbose = pip_gpu(*args, "-v", env=lock_env, cwd=tmp_path)
    assert "pip-gpu: resolving cu124 ..." in verbose.stderr  # -v: shown when piped too


def test_colour_on_a_terminal_only_and_never_with_no_color(env: dict[str, str], tmp_path: Path) -> None:
    args = ["explain", "torch==2.5.1", *NO_GPU]
    status, shown = on_a_terminal(args, env, tmp_path)
    assert status == 0 and "\x1b[32mtorch 2.5.1 -> cpu" in shown
    status, plain = on_a_terminal(args, {**env, "NO_COLOR": "1"}, tmp_path)
    assert status == 0 and "\x1b[" not in plain and "torch 2.5.1 -> cpu" in plain
    piped = pip_gpu(*args, env=env, cwd=tmp_path)
    assert "\x1b[" not in piped.stdout + piped.stderr
    status, error = on_a_terminal(["explain", "torch==", *NO_GPU], env, tmp_path)
    assert status == 2 and "\x1b[31mpip-gpu: error:\x1b[0m" in error


def test_install_dry_run_says_what_each_resolution_does_on_a_terminal(
    env: dict[str, str], tmp_path: Path, fixture_index: IndexServer
) -> None:
    """``install --dry-run`` resolves before it prints (pip's dry runs on your indexes and the
    variant index): each step says what it is doing, as lock's resolutions do."""
    shown_env = {**_lock_env(env, fixture_index, tmp_path), "PIP_INDEX_URL": fixture_index.pypi_url}
    args = [
        "install",
        "--dry-run",
        "torch==2.5.1",
        "fixture-app",
        "--installer",
        "pip",
        "--python",
        sys.executable,
    ]
    args += ["--pytorch-index", fixture_index.pytorch_url, *NO_GPU]
    status, shown = on_a_terminal(args, shown_env, tmp_path)
    assert status == 0, shown
    for step in (
        "uv: resolving the other requirements to read what they need of torch",
        "pip: choosing the torch family's files on the variant index (dry run)",
        "pip: checking what the other requirements pull in (dry run)",
    ):
        assert f"pip-gpu: {step} ..." in shown and f"pip-gpu: {step}: done in" in shown, shown
    # the family's pages of each variant index, for that uv run: megabytes for torch's alone
    assert "pip-gpu: reading the torch family's pages on 1 variant index: done in" in shown, shown
    piped = pip_gpu(*args, env=shown_env, cwd=tmp_path)
    assert piped.returncode == 0 and "(dry run) ..." not in piped.stderr


def test_sync_dry_run_and_json_say_what_changes_and_uv_says_no_preview_warning(
    env: dict[str, str], tmp_path: Path, fixture_index: IndexServer
) -> None:
    fixture_lock(fixture_index, tmp_path, "cpu")
    python = make_venv(tmp_path / "venv", with_pip=False)
    sync_env = {**_lock_env(env, fixture_index, tmp_path), "UV_PREVIEW_FEATURES": ""}
    args = ["sync", "--python", str(python), "--installer", "uv", *NO_GPU]
    dry = pip_gpu(*args, "--dry-run", env=sync_env, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "a dry run: would install pylock.cpu.toml with uv" in dry.stderr
    assert dry.stdout.splitlines()[1:] == [
        "  - filelock 3.13.1 is not installed; the lock for this machine (pylock.cpu.toml) wants it",
        "  - torch 2.5.1+cpu is not installed; the lock for this machine (pylock.cpu.toml) wants it",
    ], dry.stdout
    as_json = json.loads(pip_gpu(*args, "--dry-run", "--json", env=sync_env, cwd=tmp_path).stdout)
    assert (as_json["schema_version"], as_json["dry_run"], as_json["lock"]) == (1, True, "pylock.cpu.toml")
    assert len(as_json["changes"]) == 2
    assert pip_gpu("check", "--python", str(python), *NO_GPU, env=sync_env, cwd=tmp_path).returncode == 1
    done = pip_gpu(*args, "--json", env=sync_env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # uv's own output went to stderr: stdout is the JSON alone
    assert (report["dry_run"], report["torch"], report["variant"]) == (False, "2.5.1+cpu", "cpu")
    assert "experimental" not in done.stderr and "preview" not in done.stderr, done.stderr
    again = pip_gpu(*args, "--dry-run", env=sync_env, cwd=tmp_path)
    assert again.stdout.startswith("pip-gpu sync --dry-run: nothing to change"), again.stdout


def test_install_help_says_what_each_pass_through_option_does(env: dict[str, str], tmp_path: Path) -> None:
    from pip_gpu.route import INSTALLER_OPTIONS

    shown = " ".join(pip_gpu("install", "--help", env=env, cwd=tmp_path).stdout.split())
    for option in INSTALLER_OPTIONS:
        assert option.help, option.long  # the one table says it, in a few words
        assert f"{option.long} {'VALUE ' if option.takes_value else ''}{option.help}" in shown, option.long
