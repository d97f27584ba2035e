"""Bad input, from every command that reads it: one error line (what, why, the way out), a hint,
exit 2, no traceback (``--debug`` shows one), and the target environment untouched.

Every run is a real ``pip-gpu`` process. Host facts are given as flags, the installers' indexes
point at a closed port and the PyTorch index at the fixture index, so nothing here can install
anything even if a check were missing; the target venv is compared file by file afterwards.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli import assert_one_line_error, pip_gpu, tree_snapshot
from support.index import IndexServer
from support.locks import THIS_PYTHON, fixture_lock_text

A100_ON_535 = ["--driver", "535.104.05", "--compute-capability", "8.0"]


@pytest.fixture
def project(tmp_path: Path, fixture_index: IndexServer) -> Path:
    """A folder with requirements files good and bad, and a valid lock for the cpu build."""
    tmp_path = tmp_path / "project"
    tmp_path.mkdir()
    (tmp_path / "requirements.txt").write_text("torch==2.5.1\n")
    (tmp_path / "a-directory").mkdir()
    (tmp_path / "loop-a.txt").write_text("torch\n-r loop-b.txt\n")
    (tmp_path / "loop-b.txt").write_text("-c loop-a.txt\n")
    (tmp_path / "latin1.txt").write_bytes(b"torch\n# caf\xe9\n")
    (tmp_path / "pylock.cpu.toml").write_text(fixture_lock_text(fixture_index))
    return tmp_path


def command_line(command: str, venv: Path, *args: str) -> list[str]:
    """``args`` for ``command``, plus what it needs to run here without touching this machine."""
    extra = {
        "explain": [],
        "install": ["--python", str(venv)],
        "lock": ["--python-version", THIS_PYTHON],
        "sync": ["--python", str(venv)],
        "check": ["--python", str(venv)],
        "doctor": ["--python", str(venv)],
    }[command]
    host = [] if any(a.startswith(("--driver", "--no-gpu", "--compute")) for a in args) else A100_ON_535
    return [command, *args, *extra, *host]


# --- requirements, specifiers, variants, releases, Python versions ---------------------------

REQUIREMENT_CASES = [
    pytest.param(["torch=="], ["torch==", "invalid requirement"], id="malformed-requirement"),
    pytest.param(["torch>=2.4,,<3"], ["torch>=2.4,,<3"], id="malformed-specifier"),
    pytest.param(["torch", "--variant", "cu999"], ["cu999"], id="unknown-variant"),
    pytest.param(["torch==2.5.1+cu121", "torchvision==0.21.0"], ["0.21.0"], id="contradicting-pins"),
    pytest.param(["torch==9.9.9"], ["9.9.9"], id="no-such-release"),
    pytest.param(["torch", "--python-version", "2.7"], ["2.7"], id="python-no-release-supports"),
    pytest.param(["-r", "missing.txt"], ["missing.txt", "does not exist"], id="missing-file"),
    pytest.param(["-r", "a-directory"], ["a-directory", "cannot read"], id="unreadable-file"),
    pytest.param(["-r", "loop-a.txt"], ["loop-a.txt", "loop"], id="recursive-files"),
    pytest.param(["-r", "latin1.txt"], ["latin1.txt:2", "utf-8"], id="not-utf8"),
]


@pytest.mark.parametrize("command", ["explain", "install", "lock"])
@pytest.mark.parametrize(("args", "needles"), REQUIREMENT_CASES)
def test_bad_requirements_are_one_clear_line_and_exit_2(
    command: str, args: list[str], needles: list[str], project: Path, venv: Path, env: dict[str, str]
) -> None:
    (project / "pylock.cpu.toml").unlink()  # lock: no family to fall back on
    before = tree_snapshot(venv), tree_snapshot(project)
    if command == "lock" and "--python-version" in args:
        args = [*args[: args.index("--python-version")], "--python-version", "2.7"]
        cli = [command, *args, *A100_ON_535]
    else:
        cli = command_line(command, venv, *args)
    done = pip_gpu(*cli, env=env, cwd=project)
    if command == "explain" and done.stdout.startswith("No build runs: "):
        # explain's own answer when no build fits: the blocker, the ways out, the candidates
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert all(needle in done.stdout.splitlines()[0] for needle in needles), done.stdout
    else:
        assert_one_line_error(done, *needles)
    assert (tree_snapshot(venv), tree_snapshot(project)) == before


def test_an_unknown_variant_in_the_environment_is_named(project: Path, env: dict[str, str]) -> None:
    done = pip_gpu("explain", "torch", "--no-gpu", env={**env, "PIP_GPU_VARIANT": "cu999"}, cwd=project)
    assert_one_line_error(done, "cu999")


def test_debug_shows_the_traceback(env: dict[str, str], project: Path) -> None:
    done = pip_gpu("--debug", "explain", "torch==", "--no-gpu", env=env, cwd=project)
    assert done.returncode != 0 and "Traceback" in done.stderr


# --- lock files ------------------------------------------------------------------------------


def _hand_edited(text: str) -> str:
    return text.replace('version = "2.5.1+cpu"', 'version = "two point five"')


def _missing_record_key(text: str) -> str:
    return text.replace('torch-release = "2.5"\n', "")


LOCK_CASES = [
    pytest.param(lambda text: "lock-version = [not toml\n", ["not valid TOML"], id="malformed"),
    pytest.param(lambda text: text[: len(text) // 2], ["pylock.cpu.toml"], id="truncated"),
    pytest.param(_hand_edited, ["pylock.cpu.toml", "two point five"], id="hand-edited-version"),
    pytest.param(_missing_record_key, ["pylock.cpu.toml", "torch-release"], id="hand-edited-record"),
    pytest.param(
        lambda text: text.replace('lock-version = "1.0"', 'lock-version = "2.0"'),
        ["lock-version 2.0 is not supported"],
        id="future-version",
    ),
]


@pytest.mark.parametrize("command", ["sync", "check", "lock", "install"])
@pytest.mark.parametrize(("edit", "needles"), LOCK_CASES)
def test_bad_lock_files_are_one_clear_line_and_exit_2(
    command: str, edit, needles: list[str], project: Path, venv: Path, env: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    lock = project / "pylock.cpu.toml"
    lock.write_text(edit(lock.read_text()))
    before = tree_snapshot(venv), tree_snapshot(project)
    args = ["torch==2.5.1"] if command == "install" else []
    done = pip_gpu(*command_line(command, venv, *args), env=env, cwd=project)
    assert_one_line_error(done, *needles)
    assert (tree_snapshot(venv), tree_snapshot(project)) == before


def test_doctor_reports_a_bad_lock_file_without_a_traceback(
    project: Path, venv: Path, env: dict[str, str]
) -> None:
    lock = project / "pylock.cpu.toml"
    lock.write_text(lock.read_text().replace('lock-version = "1.0"', 'lock-version = "2.0"'))
    done = pip_gpu(*command_line("doctor", venv), env=env, cwd=project)
    assert done.returncode == 1 and "Traceback" not in done.stderr + done.stdout
    assert "lock-version 2.0 is not supported" in done.stdout


# --- pyproject.toml --------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["explain", "install", "lock", "sync", "check", "doctor"])
def test_a_pyproject_that_is_not_toml(command: str, project: Path, venv: Path, env: dict[str, str]) -> None:
    (project / "pyproject.toml").write_text("[tool.pip-gpu\nvariants = \n")
    args = ["torch==2.5.1"] if command in ("explain", "install", "lock") else []
    done = pip_gpu(*command_line(command, venv, *args), env=env, cwd=project)
    if command == "doctor":  # doctor diagnoses broken projects: it reports and goes on
        assert done.returncode == 1 and "Traceback" not in done.stderr + done.stdout
        assert "not valid TOML" in done.stdout
    else:
        assert_one_line_error(done, "pyproject.toml is not valid TOML")


# --- flags and environment variables ---------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "variables", "needles"),
    [
        (["--no-gpu", "--driver", "535.104.05"], {}, ["--no-gpu contradicts --driver"]),
        ([], {"PIP_GPU_NO_GPU": "1", "PIP_GPU_DRIVER": "535.104.05"}, ["PIP_GPU_NO_GPU=1", "PIP_GPU_DRIVER"]),
        ([], {"PIP_GPU_NO_GPU": "1", "PIP_GPU_COMPUTE_CAPABILITY": "8.0"}, ["PIP_GPU_COMPUTE_CAPABILITY"]),
        ([], {"PIP_GPU_NO_GPU": "maybe"}, ["PIP_GPU_NO_GPU='maybe'"]),
        (["--driver", "five-thirty-five"], {}, ["driver version"]),
        (["--compute-capability", "eight", "--no-gpu"], {}, ["compute capability"]),
        (["--no-gpu"], {"PIP_GPU_INDEX_TIMEOUT": "soon"}, ["PIP_GPU_INDEX_TIMEOUT"]),
    ],
)
def test_contradicting_flags_and_variables_are_refused(
    args: list[str], variables: dict[str, str], needles: list[str], project: Path, env: dict[str, str]
) -> None:
    requirement = "torch==9.9.9" if "PIP_GPU_INDEX_TIMEOUT" in variables else "torch"  # reads the index
    done = pip_gpu("explain", requirement, *args, env={**env, **variables}, cwd=project)
    assert_one_line_error(done, *needles)


@pytest.mark.parametrize(
    ("args", "variables", "variant"),
    [
        (A100_ON_535, {"PIP_GPU_NO_GPU": "1"}, "cu124"),
        (["--no-gpu"], {"PIP_GPU_DRIVER": "535.104.05", "PIP_GPU_COMPUTE_CAPABILITY": "8.0"}, "cpu"),
        (["--variant", "cpu", *A100_ON_535], {"PIP_GPU_VARIANT": "cu121"}, "cpu"),
        (
            ["--driver", "470.82.01"],
            {"PIP_GPU_DRIVER": "535.104.05", "PIP_GPU_COMPUTE_CAPABILITY": "8.0"},
            "cu118",
        ),
    ],
)
def test_flags_win_over_the_environment(
    args: list[str], variables: dict[str, str], variant: str, project: Path, env: dict[str, str]
) -> None:
    import json

    done = pip_gpu("explain", "torch==2.5.1", "--json", *args, env={**env, **variables}, cwd=project)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["variant"] == variant


# --- --python --------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["install", "sync", "check", "doctor"])
@pytest.mark.parametrize("kind", ["text-file", "empty-folder", "missing", "prints-garbage"])
def test_a_python_that_is_not_an_interpreter(
    command: str, kind: str, project: Path, env: dict[str, str], tmp_path: Path
) -> None:
    fake = tmp_path / "fake-python"
    if kind == "text-file":
        fake.write_text("not a program\n")
    elif kind == "empty-folder":
        fake.mkdir()
    elif kind == "prints-garbage":
        fake.write_text("#!/bin/sh\necho 'Python 3.11.7 (definitely)'\n")
        fake.chmod(0o755)
    args = ["torch==2.5.1"] if command == "install" else []
    done = pip_gpu(command, *args, "--python", str(fake), *A100_ON_535, env=env, cwd=project)
    assert_one_line_error(done, str(fake))
