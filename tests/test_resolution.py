"""The decision reads the whole request: torch that arrives through other packages, pins on
family members such as xformers, direct URLs of family wheels, and what is already installed.

Every case runs through both installers (``installer_venv``: a uv-made venv without pip, and a
venv with pip) against the fixture indexes, whose default index ("PyPI") holds a plain,
unlabelled torch that must never land on a GPU host, ``fixture-llm`` (pins ``torch==2.5.1``, as
vllm 0.6.4.post1 does) and ``fixture-metrics`` (``torch>=2.0``, as torchmetrics), and whose
variant indexes hold xformers releases each pinned to one torch.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from support import cli
from support.index import fixture_env, installed_versions

PLUGIN = Path(__file__).resolve().parents[1] / "plugin"
A100_ON_535 = ("--driver", "535.104.05", "--compute-capability", "8.0")

pytestmark = pytest.mark.slow


def pip_gpu(*args: str, env: Mapping[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return cli.pip_gpu(*args, env=env, cwd=cwd, timeout=300)


@pytest.fixture
def env(fixture_index, tmp_path: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """pip and uv isolated from this machine's config, pointed at the fixture "PyPI"."""
    return fixture_env(fixture_index, tmp_path / "uv-cache")


@pytest.fixture
def knowledge_up_to_2_6(tmp_path: Path) -> Path:
    """pip-gpu's knowledge as of torch 2.6, the newest release the fixture index serves, so an
    open range (``torch>=2.0``) is decided among releases the index has."""
    shipped = PLUGIN / "pip_gpu" / "data" / "knowledge.json"
    data = json.loads(shipped.read_text())
    data["releases"] = [r for r in data["releases"] if tuple(map(int, r["torch"].split("."))) <= (2, 6)]
    path = tmp_path / "knowledge-2.6.json"
    path.write_text(json.dumps(data))
    return path


def install(
    installer_venv: tuple[str, Path], *args: str, env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    installer, python = installer_venv
    return pip_gpu("install", *args, "--python", str(python), "--installer", installer, env=env)


# --- torch demanded by another package --------------------------------------------------------


def test_a_package_that_pins_torch_2_5_1_gets_the_cu124_build(env, installer_venv) -> None:  # type: ignore[no-untyped-def]
    done = install(installer_venv, "fixture-llm==0.6.4.post1", *A100_ON_535, env=env)
    assert done.returncode == 0, done.stderr
    versions = installed_versions(installer_venv[1])
    assert versions["torch"] == "2.5.1+cu124"
    assert versions["fixture-llm"] == "0.6.4.post1"
    assert versions["nvidia-cuda-runtime-cu12"] == "12.4.127"  # never the planted 99.0.0
    assert "fixture-llm==0.6.4.post1 requires torch==2.5.1" in done.stderr


def test_xformers_pinned_to_torch_2_5_1_gets_torch_2_5_1_cu124(env, installer_venv) -> None:  # type: ignore[no-untyped-def]
    done = install(installer_venv, "xformers==0.0.28.post2", *A100_ON_535, env=env)
    assert done.returncode == 0, done.stderr
    versions = installed_versions(installer_venv[1])
    assert versions["torch"] == "2.5.1+cu124"
    assert versions["xformers"] == "0.0.28.post2"


def test_a_pinned_member_is_read_from_the_named_variant_first_and_elsewhere_when_it_lacks_it(  # type: ignore[no-untyped-def]
    env,
) -> None:
    """--variant cu124 carries xformers==0.0.28.post2 (read there alone); the cpu index does
    not, so the other variant indexes are read: either way its torch pin is counted."""
    for variant, code in (("cu124", 0), ("cpu", 2)):
        done = pip_gpu("explain", "xformers==0.0.28.post2", "--variant", variant, *A100_ON_535, env=env)
        assert done.returncode == code, done.stderr
        assert "  xformers==0.0.28.post2 requires torch==2.5.1\n" in done.stdout, done.stdout


def test_a_package_with_an_open_torch_range_gets_a_cuda_build(  # type: ignore[no-untyped-def]
    env, installer_venv, knowledge_up_to_2_6: Path
) -> None:
    env = {**env, "PIP_GPU_KNOWLEDGE": str(knowledge_up_to_2_6)}
    done = install(installer_venv, "fixture-metrics", *A100_ON_535, env=env)
    assert done.returncode == 0, done.stderr
    versions = installed_versions(installer_venv[1])
    assert versions["torch"] == "2.6.0+cu126"  # the default index's plain 2.6.0 never lands
    assert versions["fixture-metrics"] == "1.0.0"


def test_no_gpu_gets_the_cpu_build_of_the_pinned_torch(env, installer_venv) -> None:  # type: ignore[no-untyped-def]
    done = install(installer_venv, "fixture-llm==0.6.4.post1", "--no-gpu", env=env)
    assert done.returncode == 0, done.stderr
    assert installed_versions(installer_venv[1])["torch"] == "2.5.1+cpu"


@pytest.mark.parametrize("variant", ["cu121", "cu124"])
def test_a_direct_url_of_a_family_wheel_forces_its_variant(
    env, installer_venv, fixture_index, variant
) -> None:  # type: ignore[no-untyped-def]
    url = f"{fixture_index.pytorch_url}/{variant}/xformers-0.0.28.post2-py3-none-any.whl"
    done = install(installer_venv, f"xformers @ {url}", *A100_ON_535, env=env)
    assert done.returncode == 0, done.stderr
    versions = installed_versions(installer_venv[1])
    assert versions["torch"] == f"2.5.1+{variant}"  # the variant of the URL, the torch its metadata pins
    assert versions["xformers"] == "0.0.28.post2"


def test_contradicting_torch_demands_name_who_asks_what(env, installer_venv, index_server) -> None:  # type: ignore[no-untyped-def]
    done = install(installer_venv, "torch==2.6.0", "fixture-llm==0.6.4.post1", *A100_ON_535, env=env)
    assert done.returncode == 2, done.stderr
    assert "fixture-llm==0.6.4.post1 requires torch==2.5.1" in done.stderr
    assert "would run here" in done.stderr  # and what would
    assert "Traceback" not in done.stderr
    assert "torch" not in installed_versions(installer_venv[1])


# --- what is installed is a preference --------------------------------------------------------


def test_adding_torchaudio_keeps_the_installed_torch(env, installer_venv) -> None:  # type: ignore[no-untyped-def]
    first = install(installer_venv, "torch==2.5.1", *A100_ON_535, env=env)
    assert first.returncode == 0, first.stderr
    done = install(installer_venv, "torchaudio", *A100_ON_535, env=env)
    assert done.returncode == 0, done.stderr
    versions = installed_versions(installer_venv[1])
    assert versions["torch"] == "2.5.1+cu124"
    assert versions["torchaudio"] == "2.5.1+cu124"
    assert "keeping the installed torch 2.5.1+cu124" in done.stderr


def test_adding_a_package_without_torch_never_changes_torch(env, installer_venv) -> None:  # type: ignore[no-untyped-def]
    first = install(installer_venv, "torch==2.5.1", *A100_ON_535, env=env)
    assert first.returncode == 0, first.stderr
    done = install(installer_venv, "fixture-app", *A100_ON_535, env=env)
    assert done.returncode == 0, done.stderr
    versions = installed_versions(installer_venv[1])
    assert versions["torch"] == "2.5.1+cu124" and versions["fixture-app"] == "1.0.0"


def test_a_request_that_needs_another_torch_says_so_before_installing(env, installer_venv) -> None:  # type: ignore[no-untyped-def]
    first = install(installer_venv, "torch==2.5.1", *A100_ON_535, env=env)
    assert first.returncode == 0, first.stderr
    done = install(installer_venv, "xformers==0.0.29", *A100_ON_535, env=env)
    assert done.returncode == 0, done.stderr
    said = done.stderr.index("torch 2.5.1+cu124 is installed, but this request needs torch 2.6.0")
    assert "xformers==0.0.29 requires torch==2.6.0" in done.stderr[said:].splitlines()[0]
    assert installed_versions(installer_venv[1])["torch"] == "2.6.0+cu126"


# --- explain -----------------------------------------------------------------------------------


def test_explain_shows_where_each_torch_constraint_came_from(env, fixture_index) -> None:  # type: ignore[no-untyped-def]
    done = pip_gpu("explain", "xformers==0.0.28.post2", "fixture-llm==0.6.4.post1", *A100_ON_535, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("torch 2.5.1 -> cu124")
    assert "xformers==0.0.28.post2 requires torch==2.5.1" in done.stdout
    assert "fixture-llm==0.6.4.post1 requires torch==2.5.1" in done.stdout
    # Two packages pull torch in: one sentence, its verb agreeing with the list.
    assert (
        "\nNote: torch pulled in by other requirements: "
        "fixture-llm==0.6.4.post1 and xformers==0.0.28.post2 require torch==2.5.1\n"
    ) in done.stdout
    as_json = pip_gpu("explain", "fixture-llm==0.6.4.post1", "--json", *A100_ON_535, env=env)
    data = json.loads(as_json.stdout)
    assert data["torch"] == "2.5.1" and data["variant"] == "cu124"
    assert {
        "package": "torch",
        "specifier": "==2.5.1",
        "source": "fixture-llm==0.6.4.post1",
        "kind": "downstream",
        "variant": None,
        "text": "fixture-llm==0.6.4.post1 requires torch==2.5.1",
    } in data["constraints"]


def test_explain_names_every_demand_and_what_would_run_without_them(env, fixture_index) -> None:  # type: ignore[no-untyped-def]
    done = pip_gpu(
        "explain", "torch==2.6.0", "fixture-llm==0.6.4.post1", "xformers==0.0.28.post2", *A100_ON_535, env=env
    )
    assert done.returncode == 2, done.stderr
    error, hint = done.stderr.splitlines()
    assert error == (
        "pip-gpu: error: no torch release satisfies every torch requirement of this request: "
        "command line asks torch==2.6.0; command line asks xformers==0.0.28.post2; "
        "xformers==0.0.28.post2 requires torch==2.5.1; fixture-llm==0.6.4.post1 requires torch==2.5.1"
    )
    assert hint.startswith(
        "  hint: without what fixture-llm==0.6.4.post1 and xformers==0.0.28.post2 require, "
        "torch 2.6.0 (cu126) would run here; "
    ), hint


def test_the_folders_lock_is_a_preference(env, installer_venv, index_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from support.locks import fixture_lock

    folder = tmp_path / "project"
    folder.mkdir()
    fixture_lock(index_server, folder, "cu124")  # torch 2.5.1+cu124
    installer, python = installer_venv
    done = pip_gpu(
        "install", "torchaudio", "--python", str(python), "--installer", installer, "--dry-run", *A100_ON_535,
        env=env, cwd=folder,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "keeping torch from pylock.cu124.toml: 2.5.1+cu124" in done.stderr
    assert "torch 2.5.1 -> cu124" in done.stderr
    # uv: the series in the family project; pip: the variant index's file, settled by a dry run
    assert re.search(r"torchaudio(==2\.5\.\*| @ \S+/cu124/torchaudio-2\.5\.1)", done.stdout), done.stdout


def test_an_install_whose_other_requirements_cannot_be_resolved_changes_nothing(env, installer_venv) -> None:  # type: ignore[no-untyped-def]
    done = install(installer_venv, "no-such-project-anywhere", *A100_ON_535, env=env)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("pip-gpu: error: ")]
    assert len(errors) == 1 and "no-such-project-anywhere" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert "torch" not in installed_versions(installer_venv[1])


def test_a_lock_of_a_package_that_pins_torch_locks_that_torch(env, fixture_index, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import tomllib

    (tmp_path / "requirements.in").write_text("fixture-llm==0.6.4.post1\n")
    args = [
        "lock",
        "-r",
        "requirements.in",
        "--variants",
        "cu124,cpu",
        "--pytorch-index",
        fixture_index.pytorch_url,
    ]
    done = pip_gpu(*args, *A100_ON_535, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for variant in ("cu124", "cpu"):
        lock = tomllib.loads((tmp_path / f"pylock.{variant}.toml").read_text())
        torch = next(p for p in lock["packages"] if p["name"] == "torch")
        assert torch["version"] == f"2.5.1+{variant}"


# --- the reading happens in the world the install uses (issue 27) ------------------------------


@pytest.fixture(scope="module")
def default_without_torch(fixture_index) -> str:  # type: ignore[no-untyped-def]
    """A default index with everything the stand-in PyPI has but torch."""
    from support.index import pytorch_index

    return fixture_index.base_url + pytorch_index.build_default_without_torch(fixture_index.tree)


@pytest.fixture(scope="module")
def torchaudio_behind(fixture_index) -> str:  # type: ignore[no-untyped-def]
    """A PyTorch-index mirror whose only torchaudio is 2.4.1 (which requires torch==2.4.1)."""
    from support.index import pytorch_index

    base = pytorch_index.build_variant_mirror(fixture_index.tree, "audio-behind", {"torchaudio": ("2.4.1",)})
    return fixture_index.base_url + base


def test_a_default_index_without_torch_still_gets_the_torch_a_package_pins(  # type: ignore[no-untyped-def]
    env, installer_venv, default_without_torch: str
) -> None:
    env = {**env, "PIP_INDEX_URL": default_without_torch, "UV_DEFAULT_INDEX": default_without_torch}
    done = install(installer_venv, "fixture-llm==0.6.4.post1", *A100_ON_535, env=env)
    assert done.returncode == 0, done.stderr
    assert "fixture-llm==0.6.4.post1 requires torch==2.5.1" in done.stderr
    versions = installed_versions(installer_venv[1])
    assert versions["torch"] == "2.5.1+cu124" and versions["fixture-llm"] == "0.6.4.post1"
    explained = pip_gpu("explain", "fixture-llm==0.6.4.post1", *A100_ON_535, env=env)
    assert explained.stdout.startswith("torch 2.5.1 -> cu124"), explained.stdout + explained.stderr
    assert "not counted" not in explained.stdout + explained.stderr


def test_a_companion_whose_metadata_needs_another_torch_is_one_error_line(  # type: ignore[no-untyped-def]
    env, installer_venv, torchaudio_behind: str
) -> None:
    import time

    started = time.monotonic()
    done = install(
        installer_venv,
        "torch==2.5.1",
        "torchaudio",
        "--pytorch-index",
        torchaudio_behind,
        *A100_ON_535,
        env=env,
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("pip-gpu: error: ")]
    assert len(errors) == 1, done.stderr
    assert "torchaudio" in errors[0] and "torch==2.4.1" in errors[0] and "2.5.1" in errors[0], errors[0]
    assert time.monotonic() - started < 60  # uv proves it; pip's backtracking is never waited on
    assert "torch" not in installed_versions(installer_venv[1])


def test_explain_of_a_file_whose_extra_index_cannot_be_reached_answers_and_names_it(  # type: ignore[no-untyped-def]
    env, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "common.txt").write_text("fixture-app\n")
    (tmp_path / "cuda.txt").write_text(
        f"-r common.txt\n--extra-index-url http://alice:s3cr3t@127.0.0.1:{port}/simple\nfixture-llm==0.6.4.post1\n"
    )
    done = pip_gpu("explain", "-r", "cuda.txt", *A100_ON_535, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    note = next(line for line in done.stdout.splitlines() if "not counted" in line)
    assert f"127.0.0.1:{port}" in note and "cannot be reached" in note, note
    assert "s3cr3t" not in done.stdout + done.stderr


def test_explain_whose_variant_index_cannot_be_reached_does_not_say_nothing_needs_torch(  # type: ignore[no-untyped-def]
    env, tmp_path: Path
) -> None:
    """fixture-llm pins torch==2.5.1, but the reading cannot reach the variant index: the note
    says what was not counted (once), and no note claims that nothing in the request needs torch;
    fixture-app, which brings in no family member, is still read without the variant index."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gone = {**env, "PIP_GPU_PYTORCH_INDEX": f"http://127.0.0.1:{port}/whl"}
    done = pip_gpu("explain", "fixture-llm==0.6.4.post1", *A100_ON_535, env=gone, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stdout.splitlines() if line.startswith("Note: ")]
    assert not any("nothing in the request needs torch" in note for note in notes), notes
    (unread,) = [note for note in notes if "not counted" in note]
    assert unread.startswith(
        "Note: not counted, what the other requirements need of torch: "
        f"the variant index at 127.0.0.1:{port} cannot be reached (cannot reach http://127.0.0.1:{port}/whl/"
    ), unread
    assert unread.count("what the other requirements need of torch") == 1, unread
    as_json = pip_gpu("explain", "fixture-llm==0.6.4.post1", "--json", *A100_ON_535, env=gone)
    json_notes = json.loads(as_json.stdout)["notes"]
    assert not any("nothing in the request needs torch" in note for note in json_notes), json_notes
    # fixture-app brings in no family member: that needs no variant index to know
    unneeded = pip_gpu("explain", "fixture-app", *A100_ON_535, env=gone, cwd=tmp_path).stdout
    assert "\nNote: nothing in the request needs torch" in unneeded, unneeded
    # only family members: what could not be checked is what they need of each other
    pair = pip_gpu(
        "install", "--dry-run", "torch", "torchvision", "--python", sys.executable, *A100_ON_535, env=gone
    ).stderr
    (unread,) = [line for line in pair.splitlines() if "not counted" in line]
    assert unread.startswith("pip-gpu: note: not counted, what torch and torchvision need of each other: "), (
        unread
    )
    assert "not counted" not in unneeded, unneeded


def test_torch_only_through_a_dependency_on_a_cpu_host_gets_the_newest_cpu_torch_the_index_has(  # type: ignore[no-untyped-def]
    env, installer_venv
) -> None:
    """fixture-metrics asks torch>=2.0; the cpu index's newest torch is 2.6.0, far behind the
    knowledge file's newest release: the reading and the decision take what the index has."""
    done = install(installer_venv, "fixture-metrics", "--no-gpu", env=env)
    assert done.returncode == 0, done.stderr
    assert "fixture-metrics==1.0.0 requires torch>=2.0" in done.stderr
    assert installed_versions(installer_venv[1])["torch"] == "2.6.0+cpu"
