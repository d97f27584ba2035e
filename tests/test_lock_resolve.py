"""``pip-gpu lock`` runs one resolver per variant: uv's runs counted through a logging uv.

The resolution itself (what the files hold) is tested in test_lock.py; here, how many times
uv resolves, and that each file is the same whether it took one run or two.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import pytest
from support.index import (
    IndexServer,
    fixture_index_fixture,  # noqa: F401  (registers the fixture "fixture_index")
    pip_env,
    uv_bin,
    uv_env,
)

import pip_gpu.installers
from pip_gpu import cli

PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"


@pytest.fixture
def counted_uv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip-gpu's uv replaced by one that logs each run's subcommand, then runs the real uv."""
    log = tmp_path / "uv-runs.log"
    wrapper = tmp_path / "uv"
    wrapper.write_text(
        f'#!/bin/sh\necho "$1 $2" >> {shlex.quote(str(log))}\nexec {shlex.quote(uv_bin())} "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setattr(pip_gpu.installers, "uv_binary", lambda chosen=None: str(wrapper))
    return log


def _runs(log: Path) -> list[str]:
    runs = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return runs


def test_one_uv_run_per_variant_and_a_second_only_for_a_pulled_in_family_member(
    fixture_index: IndexServer,
    counted_uv: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in [n for n in os.environ if n.startswith(("PIP_", "UV_"))]:
        monkeypatch.delenv(name)
    for name, value in {**pip_env(), **uv_env(tmp_path / "cache")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("UV_DEFAULT_INDEX", fixture_index.pypi_url)
    project = tmp_path / "project"
    project.mkdir()
    (project / "requirements.in").write_text("torch==2.5.1\ntorchvision\nfixture-app\n")
    monkeypatch.chdir(project)
    lock = ["lock", "-r", "requirements.in", "--variants", "cu124,cpu"]
    lock += ["--pytorch-index", fixture_index.pytorch_url, "--python-version", PYTHON, "--no-gpu"]

    assert cli.main(lock) == 0, capsys.readouterr().err
    first = {p.name: p.read_bytes() for p in project.glob("pylock.*.toml")}
    # cpu: one run; cu124: torch pulls in triton from PyPI, so it is routed and resolved again
    assert _runs(counted_uv) == ["pip compile"] * 3

    # A re-lock of the same inputs routes the family members its lock holds at once.
    assert cli.main(["lock"]) == 0, capsys.readouterr().err
    assert _runs(counted_uv) == ["pip compile"] * 2
    assert {p.name: p.read_bytes() for p in project.glob("pylock.*.toml")} == first
    assert b'name = "triton"' in first["pylock.cu124.toml"]


def _isolated(fixture_index: IndexServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith(("PIP_", "UV_"))]:
        monkeypatch.delenv(name)
    for name, value in {**pip_env(), **uv_env(tmp_path / "cache")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("UV_DEFAULT_INDEX", fixture_index.pypi_url)


def _lock_in(folder: Path, variants: str, fixture_index: IndexServer, monkeypatch: pytest.MonkeyPatch) -> int:
    folder.mkdir()
    (folder / "requirements.in").write_text("torch==2.5.1\ntorchvision\nfixture-app\n")
    monkeypatch.chdir(folder)
    lock = ["lock", "-r", "requirements.in", "--variants", variants]
    return cli.main(
        [*lock, "--pytorch-index", fixture_index.pytorch_url, "--python-version", PYTHON, "--no-gpu"]
    )


def test_one_variant_for_this_interpreter_routes_what_the_reading_shows_torch_brings_in_one_run(
    fixture_index: IndexServer,
    counted_uv: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The reading of the other requirements read cu124's index for this very interpreter and
    shows torch==2.5.1+cu124 bringing in triton: triton is routed in the first and only lock
    run, and the file is byte for byte the one that a first run and a re-run write (two
    variants: the reading read both indexes, so it is not this lock's question)."""
    _isolated(fixture_index, tmp_path, monkeypatch)
    assert _lock_in(tmp_path / "two", "cu124,cpu", fixture_index, monkeypatch) == 0, capsys.readouterr().err
    assert _runs(counted_uv) == ["pip compile"] * 3  # cpu once; cu124 found triton, ran again
    two_runs = (tmp_path / "two" / "pylock.cu124.toml").read_bytes()

    assert _lock_in(tmp_path / "one", "cu124", fixture_index, monkeypatch) == 0, capsys.readouterr().err
    assert _runs(counted_uv) == ["pip compile"]
    assert (tmp_path / "one" / "pylock.cu124.toml").read_bytes() == two_runs
    assert b'name = "triton"' in two_runs


def test_a_guess_from_the_reading_the_lock_does_not_bear_out_is_taken_back(
    fixture_index: IndexServer,
    counted_uv: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Where the lock's run does not hold the pinned member at the reading's version, what the
    reading showed is not taken: the lock is resolved as without it (first run, then again with
    what it pulled in), to the same file."""
    from pip_gpu.lock import resolve

    _isolated(fixture_index, tmp_path, monkeypatch)
    assert _lock_in(tmp_path / "guessed", "cu124", fixture_index, monkeypatch) == 0, capsys.readouterr().err
    assert _runs(counted_uv) == ["pip compile"]
    monkeypatch.setattr(resolve, "_reading_held", lambda job, pylock: False)
    assert _lock_in(tmp_path / "taken-back", "cu124", fixture_index, monkeypatch) == 0, (
        capsys.readouterr().err
    )
    assert _runs(counted_uv) == ["pip compile"] * 3  # the guess, then the two runs without it
    guessed = (tmp_path / "guessed" / "pylock.cu124.toml").read_bytes()
    assert (tmp_path / "taken-back" / "pylock.cu124.toml").read_bytes() == guessed


def test_after_a_lock_only_the_variants_it_left_alone_are_named_stale(
    fixture_index: IndexServer,
    counted_uv: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The locks just written are not read again to find the stale ones: the note names the
    variant locked from the old inputs, never one written now."""
    _isolated(fixture_index, tmp_path, monkeypatch)
    folder = tmp_path / "project"
    assert _lock_in(folder, "cu124,cpu", fixture_index, monkeypatch) == 0, capsys.readouterr().err
    capsys.readouterr()
    (folder / "requirements.in").write_text("torch==2.5.1\nfixture-app\n")
    lock = [
        "lock",
        "-r",
        "requirements.in",
        "--variants",
        "cu124",
        "--pytorch-index",
        fixture_index.pytorch_url,
    ]
    assert cli.main([*lock, "--python-version", PYTHON, "--no-gpu"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "stale" in line]
    assert notes == [
        "pip-gpu: note: pylock.cpu.toml was locked from other inputs and is now stale; "
        "add cpu to --variants to re-resolve it"
    ], notes
