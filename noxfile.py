"""Developer sessions: tests, lint, types, bench. ``nox -l`` lists them."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint", "types"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite: real pip and uv against the fixture index, the fake NVML library."""
    session.install("-e", ".[test]")
    session.run("pytest", "-q", "-n", "2", *session.posargs)


@nox.session
def realwheels(session: nox.Session) -> None:
    """The real torch 2.14.1 CUDA 13.0 wheel (relabelled +cu130) through real pip and real uv.

    The default ``tests`` session runs the uv install only; this adds pip, which copies the
    whole CUDA stack (several GB). Wheels are cached in ~/.cache/pip-gpu-tests/realwheels.
    """
    session.install("-e", ".[test]")
    session.run(
        "pytest", "-q", "-m", "realwheels or not realwheels", "tests/test_real_wheels.py", *session.posargs
    )


@nox.session(python=["3.9", "3.12"], name="tests-other-pythons")
def tests_other_pythons(session: nox.Session) -> None:
    """The suite on the oldest and a newer supported Python (not part of CI's default).

    Without the real-wheel install: torch 2.14.1 publishes no wheel for Python 3.9, and the
    default ``tests`` session runs it.
    """
    session.install("-e", ".[test]")
    session.run("pytest", "-q", "-n", "2", "--deselect", "tests/test_real_wheels.py", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, and import-linter's contracts (pyproject.toml): the layers of README's Layout."""
    session.install("-e", ".", "ruff", "import-linter")
    session.run("ruff", "check", "plugin", "tests", "fixtures", "noxfile.py")
    session.run("ruff", "format", "--check", "plugin", "tests", "fixtures", "noxfile.py")
    session.run("lint-imports")


@nox.session
def types(session: nox.Session) -> None:
    session.install("-e", ".", "mypy")
    session.run("mypy", "plugin/pip_gpu")


@nox.session
def bench(session: nox.Session) -> None:
    """pip-gpu against hand-written pip/uv commands on the fixture index (issue 7); not a test.

    Prints one Markdown table and writes it to .nox/bench-results.md (or --output FILE after --).
    Fewer rounds: nox -s bench -- --rounds 7 --install-rounds 3 --real-rounds 1
    (rows 4c and 11a/11b install the real torch 2.14.1 wheel set, about 3 GB, when it is on this machine).
    """
    session.install("-e", ".[test]")
    args = list(session.posargs)
    if "--output" not in args:
        args += ["--output", ".nox/bench-results.md"]
    session.run("python", "tests/bench/run_bench.py", *args)
