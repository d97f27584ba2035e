"""The index is the truth (issue 27): pip-gpu decides among the builds the variant index in use
publishes, not only those its knowledge file lists.

The fixture index is a mirror well behind the knowledge file (its cu130 folder has torch 2.9.1
where the file knows 2.15; it has no cu128/cu129/cu132 folders); a mirror that carries only
some variants is the same index with the other folders answering 404; its older variant
indexes alone hold pinned xformers builds (0.0.29.post1 pins torch 2.6.0 and is on cu118 and
cu124, not on cu126).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from support import cli
from support.index import IndexServer, fixture_env, installed_versions

H100_ON_580 = ("--driver", "580.65.06", "--compute-capability", "9.0")
A100_ON_560 = ("--driver", "560.35.03", "--compute-capability", "8.0")


def pip_gpu(*args: str, env: Mapping[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return cli.pip_gpu(*args, env=env, cwd=cwd, timeout=300)


@pytest.fixture
def env(index_server: IndexServer, tmp_path: Path) -> dict[str, str]:
    return fixture_env(index_server, tmp_path / "uv-cache")


def explain(env: Mapping[str, str], *args: str) -> dict[str, object]:
    done = pip_gpu("explain", *args, "--json", env=env)
    assert done.returncode == 0, done.stderr
    data: dict[str, object] = json.loads(done.stdout)
    return data


def install(
    installer_venv: tuple[str, Path], *args: str, env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    installer, python = installer_venv
    return pip_gpu("install", *args, "--python", str(python), "--installer", installer, env=env)


# --- a mirror one release (here: several) behind the knowledge file -------------------------------


def test_an_open_request_takes_the_newest_build_the_mirror_carries_with_a_note(  # type: ignore[no-untyped-def]
    env, index_server
) -> None:
    decision = explain(env, "torch", *H100_ON_580)
    assert (decision["torch"], decision["variant"]) == ("2.9", "cu130")
    cu130 = f"{index_server.pytorch_url}/cu130"
    assert (
        f"torch 2.15 exists (cu130, cu132) but {cu130} does not carry it yet; installing 2.9.1"
        in (
            decision["notes"]  # type: ignore[operator]
        )
    )
    refused = [c for c in decision["candidates"] if c["torch"] == "2.15"]  # type: ignore[union-attr]
    assert {c["reason"] for c in refused if c["variant"] == "cu130"} == {
        f"{cu130} does not carry torch 2.15 (it has torch 2.9.1)"
    }


def test_an_open_request_installs_what_the_mirror_carries(env, installer_venv) -> None:  # type: ignore[no-untyped-def]
    done = install(installer_venv, "torch", *H100_ON_580, env=env)
    assert done.returncode == 0, done.stderr
    assert installed_versions(installer_venv[1])["torch"] == "2.9.1+cu130"
    assert "does not carry it yet; installing 2.9.1" in done.stderr


def test_lock_takes_what_the_mirror_carries(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "requirements.in").write_text("torch\n", encoding="utf-8")
    done = pip_gpu("lock", "-r", "requirements.in", "--variants", "cu130", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert 'version = "2.9.1+cu130"' in (tmp_path / "pylock.cu130.toml").read_text(encoding="utf-8")


def test_a_pinned_release_the_mirror_lacks_is_one_error_naming_what_it_carries(  # type: ignore[no-untyped-def]
    env, index_server, tmp_path: Path
) -> None:
    cu130 = f"{index_server.pytorch_url}/cu130"
    explained = pip_gpu("explain", "torch==2.13.0", *H100_ON_580, env=env)
    assert explained.returncode == 2, explained.stderr
    said = f"torch==2.13.0: {cu130} does not carry torch 2.13.0 (it has torch 2.9.1); nor do its"
    assert explained.stdout.startswith(f"No build runs: {said}"), explained.stdout
    done = pip_gpu("install", "torch==2.13.0", *H100_ON_580, "--python", sys.executable, env=env)
    assert done.returncode == 2, done.stderr
    first, hint = done.stderr.strip().splitlines()
    assert first.startswith(f"pip-gpu: error: {said}"), first
    assert hint.startswith("  hint: choose a version or variant the index carries")
    assert not any(r.path.endswith(".whl") for r in index_server.requests)  # no installer ran


@pytest.mark.parametrize("forced", [("torch==2.5.1", "--variant", "cu121"), ("torch==2.5.1+cu121",)])
def test_a_forced_variant_the_mirror_lacks_is_refused_before_installing(  # type: ignore[no-untyped-def]
    env, index_server, forced
) -> None:
    index_server.fail("/whl/cu121/", 404)
    done = pip_gpu("install", *forced, *A100_ON_560, "--python", sys.executable, env=env)
    assert done.returncode == 2, done.stderr
    (first, _hint) = done.stderr.strip().splitlines()
    base = index_server.pytorch_url
    assert f": {base}/cu121 does not carry torch; {base} carries cu124, cu118, rocm6.2, cpu" in first, first


# --- a mirror that carries only some variants ---------------------------------------------------


def test_nothing_the_mirror_carries_runs_is_one_error_naming_what_it_carries(env, index_server) -> None:  # type: ignore[no-untyped-def]
    for variant in ("cu118", "cu121", "cu124", "cu126"):
        index_server.fail(f"/whl/{variant}/", 404)
    done = pip_gpu("explain", "torch", *A100_ON_560, env=env)
    assert done.returncode == 2
    error = done.stdout.splitlines()[0]
    base = index_server.pytorch_url
    assert error.startswith("No build runs: no build of torch that runs here (cu126, "), error
    assert f"is on {base}: {base}/cu126 does not carry torch; {base} carries cu130, cpu" in error, error


def test_the_newest_variant_the_mirror_carries_that_runs_is_installed(  # type: ignore[no-untyped-def]
    env, index_server, installer_venv
) -> None:
    for variant in ("cu121", "cu124", "cu126", "cu130"):
        index_server.fail(f"/whl/{variant}/", 404)
    done = install(installer_venv, "torch", *A100_ON_560, env=env)
    assert done.returncode == 0, done.stderr
    assert installed_versions(installer_venv[1])["torch"] == "2.6.0+cu118"
    said = f"but {index_server.pytorch_url} carries none of those builds; installing 2.6.0 (cu118)"
    assert said in done.stderr


# --- a pin on another family member that only some variant indexes publish ----------------------


def test_a_pinned_member_only_older_indexes_publish_decides_their_variant(env, index_server) -> None:  # type: ignore[no-untyped-def]
    decision = explain(env, "xformers==0.0.29.post1", *A100_ON_560)
    assert (decision["torch"], decision["variant"]) == ("2.6.0", "cu124")
    (cu126,) = [c for c in decision["candidates"] if c["variant"] == "cu126"]  # type: ignore[union-attr]
    assert cu126["reason"] == f"{index_server.pytorch_url}/cu126 does not carry xformers==0.0.29.post1"


@pytest.mark.parametrize(
    ("pin", "host", "torch"),
    [
        ("xformers==0.0.29.post1", A100_ON_560, "2.6.0+cu124"),  # not cu126, the newest with a 2.6.0
        ("xformers==0.0.28.post3", ("--driver", "535.104.05", "--compute-capability", "8.0"), "2.5.1+cu124"),
    ],
)
def test_a_pinned_member_installs_with_the_torch_it_needs(env, installer_venv, pin, host, torch) -> None:  # type: ignore[no-untyped-def]
    done = install(installer_venv, pin, *host, env=env)
    assert done.returncode == 0, done.stderr
    versions = installed_versions(installer_venv[1])
    assert (versions["torch"], versions["xformers"]) == (torch, pin.split("==")[1])


# --- installer failures pip-gpu can explain ------------------------------------------------------


def test_a_file_gone_from_the_variant_index_ends_with_the_fact_and_a_hint(  # type: ignore[no-untyped-def]
    env, index_server, installer_venv
) -> None:
    """The mirror changed after pip-gpu read it (the page is cached for hours): the installer
    fails, and pip-gpu reads the page afresh to say why, for a dry run too (exit non-zero)."""
    assert explain(env, "torch==2.5.1", *A100_ON_560)["variant"] == "cu124"  # read and cached
    index_server.fail("/whl/cu124/torch/", 404)
    for dry_run in (("--dry-run",), ()):
        done = install(installer_venv, "torch==2.5.1", *dry_run, *A100_ON_560, env=env)
        assert done.returncode not in (0, 2), done.stderr
        error, hint = done.stderr.strip().splitlines()[-2:]
        assert error.startswith("pip-gpu: error: ") and error.endswith(
            f"{index_server.pytorch_url}/cu124 has no torch 2.5.1 file"
        ), done.stderr
        assert hint.startswith("  hint: `pip-gpu explain` shows what was decided")
    assert "torch" not in installed_versions(installer_venv[1])


def test_an_index_found_unreachable_stops_before_the_installer_retries(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    done = pip_gpu(
        "install", "torch==2.5.1", *A100_ON_560, "--python", sys.executable, "--installer", "pip",
        "--pytorch-index", f"http://127.0.0.1:{port}/whl", env=env,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Retrying" not in done.stderr and "WARNING" not in done.stderr  # pip never ran
    error, hint = done.stderr.strip().splitlines()[-2:]
    assert error == (
        f"pip-gpu: error: the variant index http://127.0.0.1:{port}/whl/cu124 (127.0.0.1:{port}) cannot be "
        "reached, so the torch family could not be fetched"
    )
    assert hint.startswith("  hint: check the network")
