"""Locks, round 2: a tampered lock is refused before anything changes, ``lock`` never writes
what ``sync`` would refuse, and ``check``/``doctor`` never call a damaged environment OK."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import PLUGIN, assert_one_line_error, pip_gpu, tree_snapshot
from support.index import IndexServer, installed_versions, make_venv, pip_env, site_packages, uv_env
from support.locks import fixture_lock, fixture_lock_text

A100_ON_535 = ["--driver", "535.104.05", "--compute-capability", "8.0"]

pytestmark = pytest.mark.slow


def _env(index: IndexServer, tmp_path: Path) -> dict[str, str]:
    env = {**pip_env(tmp_path / "pip-cache"), **uv_env(tmp_path / "uv-cache"), "PYTHONPATH": str(PLUGIN)}
    env.update(PIP_INDEX_URL=index.pypi_url, UV_DEFAULT_INDEX=index.pypi_url)
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    return env


def _elsewhere(server: IndexServer) -> str:
    """The same server under another host name: downloads work, the origin is not the index's."""
    return server.base_url.replace("127.0.0.1", "localhost")


def _packages_appended(text: str, entry: str) -> str:
    head, _, tail = text.partition("[tool.pip-gpu]")
    return head + entry + "\n[tool.pip-gpu]" + tail


def _no_index_lines_torch_elsewhere(text: str, server: IndexServer, project: Path) -> str:
    text = re.sub(r'(?m)^index = ".*"\n', "", text)
    return text.replace(
        f'url = "{server.base_url}/whl/cpu/torch', f'url = "{_elsewhere(server)}/whl/cpu/torch'
    )


def _whole_variant_index_moved(text: str, server: IndexServer, project: Path) -> str:
    """[tool.pip-gpu] index, every package index and every URL on another host, consistently;
    only the recorded pytorch-index still says where the lock was made from."""
    kept = f'pytorch-index = "{server.pytorch_url}"'
    return text.replace(server.base_url, _elsewhere(server)).replace(
        f'pytorch-index = "{_elsewhere(server)}/whl"', kept
    )


def _url_and_hash_elsewhere(text: str, server: IndexServer, project: Path) -> str:
    assert server.tree is not None
    pypi = next(w for w in server.tree.files_for("pypi", "torch") if w.version == "2.5.1")
    ours = next(w for w in server.tree.files_for("cpu", "torch") if w.version == "2.5.1+cpu")
    text = text.replace(ours.sha256, pypi.sha256)
    return text.replace(
        f"{server.base_url}/whl/cpu/torch-2.5.1%2Bcpu-py3-none-any.whl",
        f"{_elsewhere(server)}/pypi/packages/torch-2.5.1-py3-none-any.whl",
    )


def _archive_entry(text: str, server: IndexServer, project: Path) -> str:
    assert server.tree is not None
    wheel = next(w for w in server.tree.files_for("cpu", "filelock"))
    return _packages_appended(
        text,
        '[[packages]]\nname = "sneaky"\nversion = "1.0"\n'
        f'[packages.archive]\nurl = "{server.base_url}/whl/filelock-3.13.1-py3-none-any.whl"\n'
        f'hashes = {{sha256 = "{wheel.sha256}"}}\n',
    )


def _directory_entry(text: str, server: IndexServer, project: Path) -> str:
    source = project / "sneaky-src"
    source.mkdir()
    (source / "setup.py").write_text(
        f"open({str(project / 'BUILD-BACKEND-RAN')!r}, 'w').close()\n"
        "from setuptools import setup\nsetup(name='sneaky', version='1.0')\n"
    )
    return _packages_appended(
        text, '[[packages]]\nname = "sneaky"\n[packages.directory]\npath = "sneaky-src"\n'
    )


def _vcs_entry(text: str, server: IndexServer, project: Path) -> str:
    return _packages_appended(
        text,
        '[[packages]]\nname = "sneaky"\n[packages.vcs]\ntype = "git"\n'
        f'url = "https://example.invalid/sneaky.git"\ncommit-id = "{"0" * 40}"\n',
    )


TAMPERS = [
    pytest.param(_no_index_lines_torch_elsewhere, "names no index", id="index-lines-deleted"),
    pytest.param(
        _whole_variant_index_moved, "is not the cpu index of the recorded", id="variant-index-moved"
    ),
    pytest.param(_url_and_hash_elsewhere, "is not on its index", id="url-and-hash-elsewhere"),
    pytest.param(_archive_entry, "is an archive entry", id="archive"),
    pytest.param(_directory_entry, "is a directory entry", id="directory"),
    pytest.param(_vcs_entry, "is a vcs entry", id="vcs"),
]


@pytest.mark.parametrize(("tamper", "needle"), TAMPERS)
def test_sync_refuses_a_tampered_lock_before_changing_anything(  # type: ignore[no-untyped-def]
    fixture_index: IndexServer, tmp_path: Path, tamper, needle: str
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    lock = fixture_lock(fixture_index, project)
    lock.write_text(tamper(lock.read_text(), fixture_index, project))
    python = make_venv(tmp_path / "venv", with_pip=False)
    before = tree_snapshot(tmp_path / "venv")
    for installer in ("uv", "pip"):
        done = pip_gpu(
            "sync", "--installer", installer, "--python", str(python), "--no-gpu",
            env=_env(fixture_index, tmp_path), cwd=project, timeout=120,
        )  # fmt: skip
        if installer == "pip" and "no pip" in done.stderr:
            continue  # this venv has no pip: the refusal above covers the pip path's check too
        assert_one_line_error(done, "pylock.cpu.toml", needle)
    assert tree_snapshot(tmp_path / "venv") == before
    assert not (project / "BUILD-BACKEND-RAN").exists()


def _cpu_torch_in_the_cu124_lock(text: str, server: IndexServer) -> str:
    """torch's cu124 entry swapped, consistently (URL, hash, version), for the real +cpu wheel."""
    assert server.tree is not None
    cpu = next(w for w in server.tree.files_for("cpu", "torch") if w.version == "2.5.1+cpu")
    gpu = next(w for w in server.tree.files_for("cu124", "torch") if w.version == "2.5.1+cu124")
    text = text.replace(gpu.sha256, cpu.sha256).replace(f"size = {gpu.size}\n", f"size = {cpu.size}\n")
    text = text.replace("whl/cu124/torch-2.5.1%2Bcu124", "whl/cpu/torch-2.5.1%2Bcpu")
    return text.replace("torch-2.5.1+cu124", "torch-2.5.1+cpu").replace('"2.5.1+cu124"', '"2.5.1+cpu"')


def test_a_cpu_torch_in_a_cuda_lock_is_refused_by_sync_and_reported_by_check(
    fixture_index: IndexServer, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    env = _env(fixture_index, tmp_path)
    python = make_venv(tmp_path / "venv", with_pip=False)
    # the environment holds exactly what the tampered lock lists: torch 2.5.1+cpu and filelock
    fixture_lock(fixture_index, project, "cpu")
    done = pip_gpu("sync", "--python", str(python), "--no-gpu", env=env, cwd=project, timeout=120)
    assert done.returncode == 0, done.stderr
    (project / "pylock.cpu.toml").unlink()
    lock = project / "pylock.cu124.toml"
    lock.write_text(_cpu_torch_in_the_cu124_lock(fixture_lock_text(fixture_index, "cu124"), fixture_index))
    before = tree_snapshot(tmp_path / "venv")
    done = pip_gpu("sync", "--python", str(python), *A100_ON_535, env=env, cwd=project, timeout=120)
    assert_one_line_error(done, "pylock.cu124.toml", "+cpu")
    assert tree_snapshot(tmp_path / "venv") == before
    done = pip_gpu("check", "--python", str(python), *A100_ON_535, env=env, cwd=project)
    assert done.returncode == 1 and "+cpu" in done.stdout, done.stdout + done.stderr


# --- an index that serves the wrong build ----------------------------------------------------


@pytest.fixture
def cpu_behind_cu124(fixture_index: IndexServer, tmp_path: Path) -> Iterator[IndexServer]:
    """A copy of the fixture index whose cu124 page for torch lists the +cpu builds."""
    from support.index import serve

    root = tmp_path / "mislabelled"
    shutil.copytree(fixture_index.root, root)
    for page in ("index.html", "index.json"):
        shutil.copy(root / "whl" / "cpu" / "torch" / page, root / "whl" / "cu124" / "torch" / page)
    with serve(root, tree=fixture_index.tree) as server:
        yield server


def test_lock_never_writes_a_cpu_torch_into_a_cuda_lock(
    cpu_behind_cu124: IndexServer, tmp_path: Path
) -> None:
    env = _env(cpu_behind_cu124, tmp_path)
    done = pip_gpu(
        "lock", "torch>=2.5,<2.6", "--variants", "cu124", "--pytorch-index", cpu_behind_cu124.pytorch_url,
        "--python-version", f"{sys.version_info[0]}.{sys.version_info[1]}", *A100_ON_535,
        env=env, cwd=tmp_path, timeout=180,
    )  # fmt: skip
    # The decision reads the variant index's page first: a cu124 page of +cpu files carries no
    # cu124 torch, refused there; a lock written past it would be refused for its +cpu label.
    if "does not carry torch" in done.stderr:
        assert_one_line_error(done, "cannot lock", "/whl/cu124 does not carry torch")
    else:
        assert_one_line_error(done, "pylock.cu124.toml", "+cpu")
    assert not list(tmp_path.glob("pylock.*"))


@pytest.mark.parametrize("installer", ["uv", "pip"])
@pytest.mark.parametrize("dry_run", [False, True], ids=["install", "dry run"])
def test_install_refuses_a_contradicting_build_before_installing_it(
    cpu_behind_cu124: IndexServer, tmp_path: Path, installer: str, dry_run: bool
) -> None:
    python = make_venv(tmp_path / "venv", with_pip=installer == "pip")
    before = tree_snapshot(tmp_path / "venv")
    done = pip_gpu(
        "install", "torch>=2.5,<2.6", "--python", str(python), "--installer", installer,
        "--pytorch-index", cpu_behind_cu124.pytorch_url, "--variant", "cu124", *A100_ON_535,
        *(["--dry-run"] if dry_run else []),
        env=_env(cpu_behind_cu124, tmp_path), cwd=tmp_path, timeout=180,
    )  # fmt: skip
    if "does not carry torch" in done.stderr:  # the decision read the page: no cu124 torch there
        assert_one_line_error(done, "/whl/cu124 does not carry torch", "--pytorch-index")
    else:
        assert_one_line_error(
            done, "torch 2.5.1+cpu", "cu124 was decided", "refused before installing", "--pytorch-index",
            status=1,
        )  # fmt: skip
    assert tree_snapshot(tmp_path / "venv") == before  # nothing was installed


@pytest.mark.parametrize("torch_before", ["2.5.1+cu124", None], ids=["replaced", "added"])
def test_a_contradicting_build_seen_only_after_the_run_is_rolled_back(
    fixture_index: IndexServer, tmp_path: Path, torch_before: str | None
) -> None:
    """A family file given by URL is installed as written, so only the read-back sees its label:
    what it added is removed again, what it replaced is put back, and the error names the rest."""
    python = make_venv(tmp_path / "venv", with_pip=True)
    env = _env(fixture_index, tmp_path)
    env["PIP_GPU_PYTORCH_INDEX"] = fixture_index.pytorch_url
    if torch_before:
        first = pip_gpu(
            "install", "torchvision==0.20.1", "--python", str(python), "--installer", "pip", *A100_ON_535,
            env=env, cwd=tmp_path, timeout=180,
        )  # fmt: skip
        assert first.returncode == 0, first.stderr
        assert installed_versions(python)["torch"] == torch_before
    assert fixture_index.tree is not None
    cpu = next(w for w in fixture_index.tree.files_for("cpu", "torch") if w.version == "2.5.1+cpu")
    done = pip_gpu(
        "install", f"torch @ {fixture_index.base_url}{cpu.url_path}", "--python", str(python),
        "--installer", "pip", "--variant", "cu124", *A100_ON_535, env=env, cwd=tmp_path, timeout=180,
    )  # fmt: skip
    if torch_before:
        undone, left = "put back torch==2.5.1+cu124", "torch 2.5.1+cu124, torchvision 0.20.1+cu124"
    else:
        undone, left = "removed torch", "no torch-family package"
    assert_one_line_error(
        done, "torch 2.5.1+cpu landed, but cu124 was decided", f"rolled back: {undone}",
        f"left installed in {tmp_path / 'venv'}: {left}", status=1,
    )  # fmt: skip
    assert installed_versions(python).get("torch") == torch_before


# --- check and doctor ------------------------------------------------------------------------


@pytest.fixture
def synced(fixture_index: IndexServer, tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """A project with the cpu fixture lock, synced into a venv without pip: (project, python, env)."""
    project = tmp_path / "project"
    project.mkdir()
    fixture_lock(fixture_index, project)
    python = make_venv(tmp_path / "venv", with_pip=False)
    env = _env(fixture_index, tmp_path)
    done = pip_gpu("sync", "--python", str(python), "--no-gpu", env=env, cwd=project, timeout=120)
    assert done.returncode == 0, done.stderr
    assert pip_gpu("check", "--python", str(python), "--no-gpu", env=env, cwd=project).returncode == 0
    return project, python, env


def _check_and_doctor(project: Path, python: Path, env: dict[str, str], needle: str) -> None:
    done = pip_gpu("check", "--python", str(python), "--no-gpu", env=env, cwd=project)
    assert done.returncode == 1 and needle in done.stdout, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    done = pip_gpu("doctor", "--python", str(python), "--no-gpu", env=env, cwd=project, timeout=120)
    assert done.returncode == 1 and needle in done.stdout, done.stdout + done.stderr


def test_check_and_doctor_see_files_missing_from_an_installed_torch(
    synced: tuple[Path, Path, dict[str, str]],
) -> None:
    """What a full disk leaves: torch's metadata in place, most of its files not."""
    project, python, env = synced
    package = site_packages(python) / "torch"
    files = sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in files[1:]:
        path.unlink()
    _check_and_doctor(project, python, env, "torch 2.5.1+cpu is damaged")


def test_check_hashes_every_file_with_verify_files(synced: tuple[Path, Path, dict[str, str]]) -> None:
    """A dependency's file changed in place (same size): only its sha256 tells, which ``check``
    reads for every file with ``--verify-files``; by default it compares presence and size."""
    project, python, env = synced
    module = next(p for p in (site_packages(python) / "filelock").rglob("*.py"))
    text = module.read_bytes()
    module.write_bytes(text[:-1] + (b"#" if text[-1:] != b"#" else b" "))
    done = pip_gpu("check", "--python", str(python), "--no-gpu", env=env, cwd=project)
    assert done.returncode == 0, done.stdout + done.stderr
    shown = {**env, "PIP_GPU_PROGRESS_AFTER": "0"}  # -v: progress when piped too
    done = pip_gpu(
        "-v", "check", "--verify-files", "--python", str(python), "--no-gpu", env=shown, cwd=project
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "pip-gpu: checking the sha256 of every installed file of" in done.stderr, done.stderr
    assert "filelock 3.13.1 is damaged: 0 of its" in done.stdout and "1 differ from its RECORD" in done.stdout
    # as --json's "fix", for the environment and host that were checked
    assert done.stdout.splitlines()[-1] == f"  fix: pip-gpu sync --python {python} --no-gpu"
    module.write_bytes(text + b"\n")  # another size: seen by default
    _check_and_doctor(project, python, env, "filelock 3.13.1 is damaged")


def test_check_sees_a_removed_dependency_and_an_added_package(
    synced: tuple[Path, Path, dict[str, str]],
) -> None:
    project, python, env = synced
    shutil.rmtree(next(site_packages(python).glob("filelock-*.dist-info")))
    _check_and_doctor(project, python, env, "filelock 3.13.1 is not installed")
    extra = site_packages(python) / "extra_pkg-1.0.dist-info"
    extra.mkdir()
    (extra / "METADATA").write_text("Metadata-Version: 2.1\nName: extra-pkg\nVersion: 1.0\n")
    done = pip_gpu("check", "--python", str(python), "--no-gpu", env=env, cwd=project)
    assert done.returncode == 1 and "extra-pkg 1.0 is installed, but" in done.stdout, done.stdout


def test_a_tilde_leftover_is_not_torch(synced: tuple[Path, Path, dict[str, str]]) -> None:
    """pip renames the dist-info it replaces to ``~orch-...`` and leaves it when killed."""
    project, python, env = synced
    real = next(site_packages(python).glob("torch-*.dist-info"))
    leftover = real.with_name("~orch-2.4.1+cpu.dist-info")
    shutil.copytree(real, leftover)
    metadata = leftover / "METADATA"
    metadata.write_text(metadata.read_text().replace("Version: 2.5.1+cpu", "Version: 2.4.1+cpu"))
    shutil.rmtree(real)  # killed between the rename and the new install
    done = pip_gpu("check", "--python", str(python), "--no-gpu", env=env, cwd=project)
    assert done.returncode == 1 and "torch 2.5.1+cpu is not installed" in done.stdout, done.stdout
    done = pip_gpu("sync", "--python", str(python), "--no-gpu", env=env, cwd=project, timeout=120)
    assert done.returncode == 0, done.stderr
    assert installed_versions(python)["torch"] == "2.5.1+cpu"
    done = pip_gpu("check", "--python", str(python), "--no-gpu", env=env, cwd=project)
    assert done.returncode == 0, done.stdout


def test_check_reports_a_sync_that_did_not_finish(synced: tuple[Path, Path, dict[str, str]]) -> None:
    """A sync killed mid-install leaves its record unfinished: check fails until a sync ends."""
    project, python, env = synced
    record_path = (
        Path(
            subprocess.run(
                [str(python), "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True
            ).stdout.strip()
        )
        / "pip-gpu-sync.json"
    )
    record = json.loads(record_path.read_text())
    assert record["finished"] is True
    record_path.write_text(json.dumps({**record, "finished": False}))  # as a SIGKILL leaves it
    _check_and_doctor(project, python, env, "did not finish")
    assert pip_gpu("sync", "--python", str(python), "--no-gpu", env=env, cwd=project).returncode == 0
    assert pip_gpu("check", "--python", str(python), "--no-gpu", env=env, cwd=project).returncode == 0


def test_the_fixture_lock_still_syncs_with_pip(fixture_index: IndexServer, tmp_path: Path) -> None:
    """The control: every new check passes an honest lock, on the pip path too."""
    fixture_lock(fixture_index, tmp_path)
    python = make_venv(tmp_path / "venv", with_pip=True)
    env = _env(fixture_index, tmp_path)
    done = pip_gpu(
        "sync", "--installer", "pip", "--python", str(python), "--no-gpu", env=env, cwd=tmp_path, timeout=180
    )
    assert done.returncode == 0, done.stderr
    assert pip_gpu("check", "--python", str(python), "--no-gpu", env=env, cwd=tmp_path).returncode == 0


# --- round 3: a lock that no longer installs the family, a lock moved to another host ---------


def _torch_marked(text: str, marker: str) -> str:
    """torch's entry limited by a ``marker`` added by hand."""
    assert 'name = "torch"\n' in text
    return text.replace('name = "torch"\n', f'name = "torch"\nmarker = "{marker}"\n', 1)


def test_a_marker_that_drops_torch_is_refused_by_sync_and_fails_check(
    fixture_index: IndexServer, tmp_path: Path
) -> None:
    """A lock pip-gpu wrote installs torch on every target it covers: one edited so that torch's
    marker holds nowhere it covers would install filelock alone and call it synced."""
    project = tmp_path / "project"
    project.mkdir()
    env = _env(fixture_index, tmp_path)
    lock = project / "pylock.cu124.toml"
    lock.write_text(_torch_marked(fixture_lock_text(fixture_index, "cu124"), "sys_platform == 'win32'"))
    python = make_venv(tmp_path / "venv", with_pip=False)
    before = tree_snapshot(tmp_path / "venv")
    done = pip_gpu("sync", "--python", str(python), *A100_ON_535, env=env, cwd=project, timeout=120)
    assert_one_line_error(done, "pylock.cu124.toml", "torch's marker", 'sys_platform == "win32"')
    assert tree_snapshot(tmp_path / "venv") == before
    done = pip_gpu("check", "--python", str(python), *A100_ON_535, env=env, cwd=project)
    assert done.returncode == 1 and "torch's marker" in done.stdout, done.stdout + done.stderr


def test_a_lock_moved_to_another_host_is_refused_while_the_real_index_is_configured(
    fixture_index: IndexServer, tmp_path: Path
) -> None:
    """Every index, file URL and the recorded pytorch-index edited to another server: the lock
    agrees with itself, but not with PIP_GPU_PYTORCH_INDEX; sync stops instead of warning."""
    project = tmp_path / "project"
    project.mkdir()
    lock = fixture_lock(fixture_index, project)
    lock.write_text(lock.read_text().replace(fixture_index.base_url, _elsewhere(fixture_index)))
    env = {**_env(fixture_index, tmp_path), "PIP_GPU_PYTORCH_INDEX": fixture_index.pytorch_url}
    python = make_venv(tmp_path / "venv", with_pip=False)
    before = tree_snapshot(tmp_path / "venv")
    done = pip_gpu("sync", "--python", str(python), "--no-gpu", env=env, cwd=project, timeout=120)
    assert_one_line_error(
        done, "pylock.cpu.toml", _elsewhere(fixture_index), "PIP_GPU_PYTORCH_INDEX", "--trust-lock-index"
    )
    assert tree_snapshot(tmp_path / "venv") == before
    done = pip_gpu("check", "--python", str(python), "--no-gpu", env=env, cwd=project)
    assert done.returncode == 1 and "PIP_GPU_PYTORCH_INDEX names" in done.stdout, done.stdout
    # the way out the hint names: the recorded index, on purpose
    done = pip_gpu(
        "sync", "--trust-lock-index", "--python", str(python), "--no-gpu", env=env, cwd=project, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert installed_versions(python)["torch"] == "2.5.1+cpu"


@pytest.fixture
def cpu_wheel_named_cu124(fixture_index: IndexServer, tmp_path: Path) -> Iterator[IndexServer]:
    """A copy of the fixture index whose ``torch-2.5.1+cu124`` file holds the ``+cpu`` wheel: its
    name, its page and its PEP 658 ``.metadata`` say cu124, its bytes (and the page's hash of
    them, so installers accept it) are the CPU build's."""
    from support.index import serve

    assert fixture_index.tree is not None
    root = tmp_path / "relabelled"
    shutil.copytree(fixture_index.root, root)
    cpu = next(w for w in fixture_index.tree.files_for("cpu", "torch") if w.version == "2.5.1+cpu")
    pages = [root / "whl" / "cu124" / "torch" / page for page in ("index.html", "index.json")]
    for gpu in (w for w in fixture_index.tree.files_for("cu124", "torch") if w.version == "2.5.1+cu124"):
        shutil.copy(root / cpu.url_path.lstrip("/"), root / gpu.url_path.lstrip("/"))
        for page in pages:
            text = page.read_text().replace(gpu.sha256, cpu.sha256)
            page.write_text(text.replace(f'"size": {gpu.size},', f'"size": {cpu.size},'))
    with serve(root, tree=fixture_index.tree) as server:
        yield server


def test_lock_reads_the_family_wheels_own_metadata_before_writing(
    cpu_wheel_named_cu124: IndexServer, tmp_path: Path
) -> None:
    """``sync --installer pip`` would refuse the file after downloading it; ``lock`` reads the
    wheel's own METADATA first and writes nothing, naming the file."""
    server = cpu_wheel_named_cu124
    done = pip_gpu(
        "lock", "torch==2.5.1", "--variants", "cu124", "--pytorch-index", server.pytorch_url,
        "--python-version", f"{sys.version_info[0]}.{sys.version_info[1]}", *A100_ON_535,
        env=_env(server, tmp_path), cwd=tmp_path, timeout=180,
    )  # fmt: skip
    assert_one_line_error(done, "torch-2.5.1+cu124", "holds torch 2.5.1+cpu", "nothing was written")
    assert not list(tmp_path.glob("pylock.*"))
