"""Hostile input: indexes that plant higher versions, credentials that must never show,
tampered lock files, shims that could call themselves, and requirement lines of every shape."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.requirements import Requirement
from support.cli import PLUGIN, assert_one_line_error, pip_gpu, tree_snapshot
from support.index import (
    IndexServer,
    installed_versions,
    make_venv,
    pip_env,
    pytorch_index,
    site_packages,
    uv_env,
)
from support.locks import fixture_lock
from support.shims import (
    real_bin,
    shell,
    shell_env,
    shims_fixture,  # noqa: F401  (registers the fixture "shims")
    venv_fixture,  # noqa: F401  (registers the fixture "venv")
)
from test_requirements import FAMILY, HASH_A, HASH_B, PINS, one, write

from pip_gpu.requirements import (
    RequirementLine,
    RewritePin,
    is_family,
    read_requirements_file,
    render_line,
    rewrite_line,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

A100_ON_535 = ["--driver", "535.104.05", "--compute-capability", "8.0"]
# Planted at 99.0.0 on the fixture "PyPI" (as every other family name is); the variant
# index serves the real ones. torch itself is there as PyPI has it: a plain CUDA build.
ATTACKED = ("torchvision", "torchaudio", "triton")
PLANTED_FAMILY = pytorch_index.PLANTED_FAMILY
SECRETS = ("s3cr3t-token", "q-s3cr3t")  # a user name is shown as pip shows it: alice:****@


def _env(index: IndexServer, tmp_path: Path, default_index: str = "") -> dict[str, str]:
    env = {**pip_env(tmp_path / "pip-cache"), **uv_env(tmp_path / "uv-cache"), "PYTHONPATH": str(PLUGIN)}
    env.update(
        PIP_INDEX_URL=default_index or index.pypi_url, UV_DEFAULT_INDEX=default_index or index.pypi_url
    )
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    return env


def _assert_no_attacker(python: Path) -> None:
    versions = installed_versions(python)
    assert all(versions.get(name) != "99.0.0" for name in ATTACKED), versions
    assert not any((site_packages(python) / name / "PWNED").exists() for name in ATTACKED)


def _with_secrets(url: str) -> str:
    return url.replace("http://", "http://alice:s3cr3t-token@")


# --- dependency confusion --------------------------------------------------------------------


@pytest.mark.slow
def test_install_never_takes_a_planted_higher_version(
    index_server: IndexServer, tmp_path: Path, installer_venv: tuple[str, Path]
) -> None:
    """Named, brought in by torch (triton) or by another library (torchvision): never PyPI's 99.0.0."""
    installer, python = installer_venv
    fixture_index = index_server
    done = pip_gpu(
        "install", "torch==2.5.1", "torchaudio", "fixture-vision-app", "--python", str(python),
        "--installer", installer, "--pytorch-index", fixture_index.pytorch_url, *A100_ON_535,
        env=_env(fixture_index, tmp_path), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    versions = installed_versions(python)
    assert (versions["torchvision"], versions["torchaudio"]) == ("0.20.1+cu124", "2.5.1+cu124")
    assert versions["triton"] == "3.1.0"
    _assert_no_attacker(python)
    # PyPI's triton 3.1.0 is not the one taken either: the variant index's file is
    fetched = {r.path for r in index_server.requests if r.method == "GET"}
    assert "/whl/triton-3.1.0-py3-none-any.whl" in fetched
    assert "/pypi/packages/triton-3.1.0-py3-none-any.whl" not in fetched


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PLANTED_FAMILY))
def test_no_family_name_is_ever_taken_from_the_default_index(
    fixture_index: IndexServer, tmp_path: Path, name: str
) -> None:
    """Every family name, planted on "PyPI": uv and pip are only ever sent to the variant index for it.

    The fixture variant index serves torchvision, torchaudio and triton; for the others the
    install fails (nothing on the variant index) rather than take the planted one.
    """
    env = _env(fixture_index, tmp_path)
    python = make_venv(tmp_path / "venv", with_pip=False)
    done = pip_gpu(
        "install", "torch==2.5.1", name, "--python", str(python), "--installer", "uv",
        "--pytorch-index", fixture_index.pytorch_url, *A100_ON_535, env=env, timeout=120,
    )  # fmt: skip
    hosted = bool(fixture_index.tree and fixture_index.tree.files_for("cu124", name))
    assert (done.returncode == 0) == hosted, done.stderr
    assert installed_versions(python).get(name) != "99.0.0"
    assert not (site_packages(python) / name.replace("-", "_") / "PWNED").exists()
    dry = pip_gpu(
        "install", "torch==2.5.1", name, "--python", sys.executable, "--installer", "pip", "--dry-run",
        "--pytorch-index", fixture_index.pytorch_url, *A100_ON_535, env=env,
    )  # fmt: skip
    # pip: a dry run against the variant index alone picks the family's files, so the dry run
    # shows each as a direct reference to the PyTorch index's file, or (not hosted there) shows
    # the run unsettled and says why: what the install would refuse
    assert dry.returncode == 0, dry.stderr
    if hosted:
        assert f"{name} @ {fixture_index.pytorch_url}/" in dry.stdout, dry.stdout
    else:
        assert "settling it failed" in dry.stderr and f"{name} @" not in dry.stdout
    assert "99.0.0" not in dry.stdout


@pytest.mark.slow
def test_lock_and_sync_never_take_a_planted_higher_version(
    fixture_index: IndexServer, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "requirements.in").write_text("torch==2.5.1\ntorchaudio\nfixture-vision-app\n")
    env = _env(fixture_index, tmp_path)
    args = [
        "lock",
        "-r",
        "requirements.in",
        "--variants",
        "cu124",
        "--pytorch-index",
        fixture_index.pytorch_url,
    ]
    assert pip_gpu(*args, env=env, cwd=project, timeout=120).returncode == 0
    packages = tomllib.loads((project / "pylock.cu124.toml").read_text())["packages"]
    locked = {p["name"]: p for p in packages}
    for name in ATTACKED:
        assert locked[name]["version"] != "99.0.0" and locked[name]["index"] == fixture_index.variant_url(
            "cu124"
        )
    for installer in ("uv", "pip"):
        python = make_venv(tmp_path / installer, with_pip=installer == "pip")
        synced = pip_gpu(
            "sync", "--installer", installer, "--python", str(python), *A100_ON_535, env=env, cwd=project
        )
        assert synced.returncode == 0, synced.stderr
        _assert_no_attacker(python)


# --- credentials -----------------------------------------------------------------------------


@pytest.mark.slow
def test_credentials_never_reach_the_output_of_an_install(
    fixture_index: IndexServer, tmp_path: Path, installer_venv: tuple[str, Path]
) -> None:
    installer, python = installer_venv
    env = _env(fixture_index, tmp_path, default_index=_with_secrets(fixture_index.pypi_url))
    args = ["install", "torch==2.5.1", "fixture-app", "--python", str(python), "--installer", installer]
    args += ["--pytorch-index", _with_secrets(fixture_index.pytorch_url), *A100_ON_535]
    for extra in (["--dry-run"], []):
        done = pip_gpu(*args, *extra, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        assert not any(secret in done.stdout + done.stderr for secret in SECRETS), done.stdout + done.stderr
    assert installed_versions(python)["fixture-app"] == "1.0.0"


def test_credentials_never_reach_json_errors_or_hints(
    index_server: IndexServer, old_knowledge: Path, tmp_path: Path
) -> None:
    env = _env(index_server, tmp_path)
    secret = _with_secrets(index_server.pytorch_url)
    decided = pip_gpu("explain", "torch==2.5.1", "--json", "--pytorch-index", secret, *A100_ON_535, env=env)
    assert decided.returncode == 0 and json.loads(decided.stdout)["index_url"].startswith("http://***@")
    (tmp_path / "requirements.txt").write_text(
        "--extra-index-url http://127.0.0.1:9/simple?token=q-s3cr3t\n"
        "fixture-app @ http://alice:s3cr3t-token@127.0.0.1:9/fixture_app-1.0.0-py3-none-any.whl\n"
    )
    shown = pip_gpu(
        "install", "-r", "requirements.txt", "--dry-run", "--pytorch-index", secret, "--no-gpu",
        "--python", sys.executable, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    # errors from pip-gpu's own index reads, a failing and an unreachable index
    env["PIP_GPU_KNOWLEDGE"] = str(old_knowledge)
    index_server.fail("/whl/", 500)
    failed = pip_gpu("explain", "torch==2.6.0", "--pytorch-index", secret, "--no-gpu", env=env)
    assert_one_line_error(failed, "answered HTTP 500")
    unreachable = pip_gpu(
        "explain", "torch==2.6.0", "--pytorch-index", "http://alice:s3cr3t-token@127.0.0.1:9/whl", "--no-gpu",
        env=env,
    )  # fmt: skip
    assert_one_line_error(unreachable, "cannot reach")
    bad_line = pip_gpu("explain", "torch @ http://alice:s3cr3t-token@host/not a wheel", "--no-gpu", env=env)
    assert bad_line.returncode == 2
    for done in (decided, shown, failed, unreachable, bad_line):
        assert not any(secret in done.stdout + done.stderr for secret in SECRETS), done.stdout + done.stderr


@pytest.mark.slow
def test_no_credentials_in_a_lock(fixture_index: IndexServer, tmp_path: Path) -> None:
    (tmp_path / "requirements.in").write_text("torch==2.5.1\nfixture-app\n", encoding="utf-8")
    env = _env(fixture_index, tmp_path, default_index=_with_secrets(fixture_index.pypi_url))
    args = ["lock", "-r", "requirements.in", "--variants", "cpu", "--pytorch-index"]
    done = pip_gpu(*args, _with_secrets(fixture_index.pytorch_url), env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "pylock.cpu.toml").read_text(encoding="utf-8")
    assert not any(secret in text + done.stdout + done.stderr for secret in SECRETS)
    record = tomllib.loads(text)["tool"]["pip-gpu"]
    assert record["index"] == fixture_index.variant_url("cpu")
    assert record["inputs"]["pytorch-index"] == fixture_index.pytorch_url


# --- tampered lock files ---------------------------------------------------------------------


def _moved_to_another_host(text: str, server: IndexServer) -> str:
    """The same server under another name: the download would work, the origin is not the index's."""
    host = server.base_url.replace("127.0.0.1", "localhost")
    return text.replace(f'url = "{server.base_url}/whl/cpu/torch', f'url = "{host}/whl/cpu/torch')


def _torch_from_pypi(text: str, server: IndexServer) -> str:
    """torch's entry rewritten, consistently, to PyPI's build with PyPI's own hash."""
    assert server.tree is not None
    wheel = next(w for w in server.tree.files_for("pypi", "torch") if w.version == "2.5.1")
    ours = next(w for w in server.tree.files_for("cpu", "torch") if w.version == "2.5.1+cpu")
    text = text.replace(ours.sha256, wheel.sha256).replace("2.5.1+cpu", "2.5.1")
    text = text.replace(
        f"{server.base_url}/whl/cpu/torch-2.5.1%2Bcpu", f"{server.base_url}/pypi/packages/torch-2.5.1"
    )
    head, _, tail = text.partition('name = "torch"')
    return (
        head
        + 'name = "torch"'
        + tail.replace(f'index = "{server.variant_url("cpu")}"', f'index = "{server.pypi_url}"', 1)
    )


def _wrong_hash(text: str, server: IndexServer) -> str:
    assert server.tree is not None
    ours = next(w for w in server.tree.files_for("cpu", "torch") if w.version == "2.5.1+cpu")
    return text.replace(ours.sha256, "0" * 64)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("tamper", "needle"),
    [
        (_moved_to_another_host, "is not on its index"),
        (_torch_from_pypi, "not the recorded variant index"),
        (_wrong_hash, "the installer exited with status"),
    ],
)
def test_sync_refuses_a_tampered_lock_and_changes_nothing(  # type: ignore[no-untyped-def]
    fixture_index: IndexServer, tmp_path: Path, installer_venv: tuple[str, Path], tamper, needle: str
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    lock = fixture_lock(fixture_index, project)
    lock.write_text(tamper(lock.read_text(), fixture_index))
    installer, python = installer_venv
    before = installed_versions(python), tree_snapshot(tmp_path / "venv")
    done = pip_gpu(
        "sync", "--installer", installer, "--python", str(python), "--no-gpu",
        env=_env(fixture_index, tmp_path), cwd=project, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0 and needle in done.stderr and "Traceback" not in done.stderr, done.stderr
    if tamper is not _wrong_hash:  # refused by pip-gpu itself, before any installer ran
        assert_one_line_error(done, "pylock.cpu.toml", needle)
    else:
        assert "hash" in done.stderr.lower()
    assert (installed_versions(python), tree_snapshot(tmp_path / "venv")) == before


@pytest.mark.slow
@pytest.mark.parametrize(
    ("tamper", "needle"),
    [(_moved_to_another_host, "is not on its index"), (_torch_from_pypi, "not the recorded variant index")],
)
def test_check_reports_a_tampered_lock(
    fixture_index: IndexServer, tmp_path: Path, tamper, needle: str
) -> None:  # type: ignore[no-untyped-def]
    """CI runs `check`, not `sync`: an edited lock must fail there too."""
    lock = fixture_lock(fixture_index, tmp_path)
    python = make_venv(tmp_path / "venv", with_pip=False)
    env = _env(fixture_index, tmp_path)
    assert pip_gpu("sync", "--python", str(python), "--no-gpu", env=env, cwd=tmp_path).returncode == 0
    assert pip_gpu("check", "--python", str(python), "--no-gpu", env=env, cwd=tmp_path).returncode == 0
    lock.write_text(tamper(lock.read_text(), fixture_index))
    done = pip_gpu("check", "--python", str(python), "--no-gpu", env=env, cwd=tmp_path)
    assert done.returncode == 1
    assert "pylock.cpu.toml: " in done.stdout and needle in done.stdout


@pytest.mark.slow
def test_the_untampered_fixture_lock_syncs(fixture_index: IndexServer, tmp_path: Path) -> None:
    """The control for the test above: the same lock, unedited, installs."""
    fixture_lock(fixture_index, tmp_path)
    python = make_venv(tmp_path / "venv", with_pip=False)
    env = _env(fixture_index, tmp_path)
    done = pip_gpu("sync", "--python", str(python), "--no-gpu", env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert installed_versions(python) == {"filelock": "3.13.1", "torch": "2.5.1+cpu"}


# --- shims -----------------------------------------------------------------------------------


@pytest.mark.skipif(os.name == "nt", reason="the shims are POSIX shell scripts")
def test_no_shim_ever_calls_itself(
    shims: Path, venv: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    linked = tmp_path / "linked-shims"
    linked.symlink_to(shims)
    real = real_bin(venv)
    for folders in ([shims, shims, real], [linked, shims, real], [shims, linked, real]):
        env = shell_env(folders, index_server, tmp_path)
        assert shell("pip --version", env).stdout == shell(f"{real}/pip --version", env).stdout
        assert shell("uv --version", env).stdout.startswith("uv ")
    # no real program at all: a clear error, not a loop
    env = shell_env([shims, linked, tmp_path / "empty"], index_server, tmp_path)
    start = time.monotonic()
    missing = shell("pip --version", env, check=False)
    assert missing.returncode == 127 and "no pip on PATH after pip-gpu's shims" in missing.stderr
    assert time.monotonic() - start < 5


# --- requirement rewriting, for any requirement line ------------------------------------


def test_rewriting_twice_equals_rewriting_once() -> None:
    for text in ["torch==2.5.1", "torch>=2.4", "torchvision", "torch==2.5.1+cpu", "numpy"]:
        once = rewrite_line(one(text), PINS)
        assert rewrite_line(once, PINS) == once


NAMES = ["torch", "Torch", "TORCHVISION", "torchaudio", "numpy", "Pillow", "torch-vision", "tqdm"]
VERSIONS = ["2.5.1", "2.4", "0.20.1", "1.0.0rc1", "2.5.1+cu121", "3"]
OPERATORS = ["==", "!=", ">=", "<=", ">", "<", "~="]
MARKERS = ['python_version >= "3.9"', 'sys_platform == "linux"', 'platform_machine != "arm64"']


@st.composite
def requirement_lines(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(NAMES))
    extras = draw(st.lists(st.sampled_from(["opt-einsum", "dev", "x"]), unique=True, max_size=2))
    specs = []
    for _ in range(draw(st.integers(0, 3))):
        operator = draw(st.sampled_from(OPERATORS))
        version = draw(st.sampled_from(VERSIONS))
        if "+" in version and operator not in ("==", "!="):
            version = version.split("+")[0]
        if operator == "~=" and "." not in version:
            version += ".0"
        specs.append(operator + version)
    if draw(st.booleans()):
        specs.append("==2.5.*")
    text = name + (f"[{','.join(extras)}]" if extras else "") + ",".join(specs)
    if draw(st.booleans()):
        text += " ; " + draw(st.sampled_from(MARKERS))
    hashes = draw(st.lists(st.sampled_from([HASH_A, HASH_B]), unique=True, max_size=2))
    return text + "".join(f" --hash={value}" for value in hashes)


def read_one(tmp_path: Path, text: str) -> RequirementLine:
    [line] = read_requirements_file(write(tmp_path / "r.txt", text + "\n")).lines
    return line


@settings(max_examples=300, deadline=None)
@given(text=requirement_lines(), label=st.sampled_from(["cu124", "cpu", None]))
def test_rewrite_properties(tmp_path_factory: pytest.TempPathFactory, text: str, label: str | None) -> None:
    pins = {name: RewritePin(pin.specifier, label) for name, pin in PINS.items()}
    line = read_one(tmp_path_factory.mktemp("prop"), text)
    new = rewrite_line(line, pins)
    assert rewrite_line(new, pins) == new  # idempotent
    assert (new.name, new.hashes, new.options, new.origin) == (
        line.name,
        line.hashes,
        line.options,
        line.origin,
    )
    assert line.requirement is not None and new.requirement is not None
    assert new.requirement == Requirement(new.text)
    assert new.requirement.name == line.requirement.name  # spelling kept
    assert new.requirement.extras == line.requirement.extras
    assert new.requirement.marker == line.requirement.marker
    if not is_family(line, FAMILY):
        assert new is line
        return
    old_specs = set(line.requirement.specifier)
    new_specs = set(new.requirement.specifier)
    for spec in old_specs:  # each of the user's specifiers is kept, an exact pin maybe labelled
        labelled = f"{spec}+{label}" if label else str(spec)
        assert spec in new_specs or (
            spec.operator == "==" and "+" not in spec.version and labelled in map(str, new_specs)
        )
    # whatever the pin allows and the user allowed, the rewritten line still allows
    for version in ["2.5.1", "2.5.1+cu124", "2.5.1+cpu", "0.20.1+cu124", "2.4.0"]:
        if new.requirement.specifier.contains(version, prereleases=True):
            assert line.requirement.specifier.contains(version, prereleases=True)
    render_again = read_one(tmp_path_factory.mktemp("again"), render_line(new))
    assert render_again.requirement == new.requirement and render_again.hashes == new.hashes
