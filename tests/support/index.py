"""Pytest fixtures and helpers for tests that install from the fixture index.

``fixture_index`` builds the PyTorch-like index once per session and serves
it on 127.0.0.1; the helpers make throwaway venvs and run real pip/uv with an
environment scrubbed of this machine's pip/uv configuration, so an install can
only ever see the indexes the test names.

Use from a test module (``tests/`` is on ``sys.path`` under pytest)::

    from support.index import fixture_index_fixture, index_server_fixture  # noqa: F401

    def test_x(index_server): ...   # or fixture_index (session, never reset)

The fixtures are *registered* as ``fixture_index`` / ``index_server``; importing
them under the ``*_fixture`` names keeps ruff's F811 quiet.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "IndexServer",
    "IndexTree",
    "build_index",
    "fixture_env",
    "fixture_index",
    "fixture_index_fixture",
    "has_pip",
    "index_server",
    "index_server_fixture",
    "installed_versions",
    "installer_venv_fixture",
    "make_venv",
    "old_knowledge",
    "pip_env",
    "pytorch_index",
    "run",
    "serve",
    "site_packages",
    "uv_bin",
    "uv_env",
    "venv_python",
]

_FIXTURE_FILE = Path(__file__).resolve().parents[2] / "fixtures" / "pytorch_index.py"


def _load_index_module() -> ModuleType:
    """Import fixtures/pytorch_index.py by path (fixtures/ is not a package)."""
    name = "pytorch_index"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _FIXTURE_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


if TYPE_CHECKING:  # mypy run from the repo root sees fixtures/ as a namespace package
    from fixtures import pytorch_index
    from fixtures.pytorch_index import IndexServer, IndexTree, build_index, serve
else:
    pytorch_index = _load_index_module()
    IndexServer = pytorch_index.IndexServer
    IndexTree = pytorch_index.IndexTree
    build_index = pytorch_index.build_index
    serve = pytorch_index.serve

# Generous: a cold venv + install on a loaded 2-core box; never hang forever.
DEFAULT_TIMEOUT_S = 180.0
_LOCAL_HOSTS = "127.0.0.1,localhost"


@pytest.fixture(scope="session", name="fixture_index")
def fixture_index_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexServer]:
    """Build the index once per session and serve it; ``.tree`` is the IndexTree.

    Self-contained (needs only ``tmp_path_factory``), so importing this one
    name into a test module is enough.
    """
    tree = build_index(tmp_path_factory.mktemp("fixture-index"))
    with serve(tree.root, tree=tree) as server:
        yield server


@pytest.fixture(name="index_server")
def index_server_fixture(fixture_index: IndexServer) -> Iterator[IndexServer]:
    """The session server with a clean request log and no failures, per test.

    Import ``fixture_index_fixture`` alongside it.
    """
    fixture_index.clear_failures()
    fixture_index.clear_requests()
    yield fixture_index
    fixture_index.clear_failures()
    fixture_index.no_metadata = False


@pytest.fixture
def old_knowledge(tmp_path: Path) -> Path:
    """pip-gpu's knowledge as an older copy would have it: nothing after torch 2.4.

    Point ``PIP_GPU_KNOWLEDGE`` at it and torch 2.5/2.6 must be learned from the index.
    """
    shipped = Path(__file__).resolve().parents[2] / "plugin" / "pip_gpu" / "data" / "knowledge.json"
    data = json.loads(shipped.read_text())
    data["releases"] = [r for r in data["releases"] if tuple(map(int, r["torch"].split("."))) <= (2, 4)]
    path = tmp_path / "knowledge.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(params=["uv", "pip"], name="installer_venv")
def installer_venv_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    """(installer, python): a fresh venv as that installer's users have it, once per installer.

    uv: made by ``uv venv``, no pip in it; pip: made by ``venv``, with pip. Its folder is
    ``tmp_path / "venv"``.
    """
    installer: str = request.param
    return installer, make_venv(tmp_path / "venv", with_pip=installer == "pip")


# Plain-name aliases, for modules that prefer ``from support.index import fixture_index``
# (ruff then reports F811 on test parameters of the same name; the *_fixture
# names above avoid that).
fixture_index = fixture_index_fixture
index_server = index_server_fixture


# --------------------------------------------------------------------------
# Environments
# --------------------------------------------------------------------------


def _base_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "UV_")) and k not in ("VIRTUAL_ENV", "PYTHONHOME")
    }
    for key in ("NO_PROXY", "no_proxy"):
        current = env.get(key, "")
        env[key] = f"{current},{_LOCAL_HOSTS}" if current else _LOCAL_HOSTS
    return env


def pip_env(cache_dir: Path | None = None) -> dict[str, str]:
    """os.environ for real pip, blind to this machine's pip config and PIP_* vars.

    The dev machine's pip config adds extra indexes and find-links; any of
    those would let pip satisfy a requirement from somewhere the test did
    not name.
    """
    env = _base_env()
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
        PIP_NO_PYTHON_VERSION_WARNING="1",
    )
    if cache_dir is not None:
        env["PIP_CACHE_DIR"] = str(cache_dir)
    return env


def uv_env(cache_dir: Path) -> dict[str, str]:
    """os.environ for real uv: no config files, private cache, no downloads."""
    env = _base_env()
    env.update(
        UV_NO_CONFIG="1",
        UV_CACHE_DIR=str(cache_dir),
        UV_PYTHON_DOWNLOADS="never",
        UV_NO_PROGRESS="1",
    )
    return env


def fixture_env(index: IndexServer, cache_dir: Path) -> dict[str, str]:
    """pip and uv isolated from this machine's config, pointed at the fixture "PyPI", and
    pip-gpu at the fixture's PyTorch indexes, this checkout's package first."""
    environment = {**pip_env(), **uv_env(cache_dir)}
    environment.update(
        PIP_INDEX_URL=index.pypi_url,
        UV_DEFAULT_INDEX=index.pypi_url,
        PIP_GPU_PYTORCH_INDEX=index.pytorch_url,
        XDG_CACHE_HOME=str(cache_dir.parent / "pip-gpu-cache"),  # what pip-gpu read of the index
        PYTHONPATH=str(Path(__file__).resolve().parents[2] / "plugin"),
    )
    return environment


def uv_bin() -> str:
    """The uv binary shipped by the ``uv`` PyPI package."""
    from uv import find_uv_bin

    return str(find_uv_bin())


# --------------------------------------------------------------------------
# Running things
# --------------------------------------------------------------------------


def run(
    cmd: Sequence[str | os.PathLike[str]],
    env: dict[str, str],
    *,
    check: bool = True,
    timeout: float = DEFAULT_TIMEOUT_S,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command with captured text output; on failure show all of it."""
    args = [os.fspath(c) for c in cmd]
    proc = subprocess.run(
        args,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"command failed ({proc.returncode}): {' '.join(args)}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
    return proc


def venv_python(venv: Path) -> Path:
    """Interpreter path inside a venv, on POSIX or Windows."""
    if os.name == "nt":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def make_venv(path: Path, with_pip: bool = True) -> Path:
    """Create a fresh venv at ``path`` and return its python.

    ``with_pip``: stdlib ``venv`` (ships pip via ensurepip), as a pip user
    has it; otherwise ``uv venv`` (no pip at all), as a uv user has it.
    """
    path = Path(path)
    if with_pip:
        run([sys.executable, "-m", "venv", path], env=pip_env())
    else:
        env = uv_env(path.parent / f".{path.name}-uv-cache")
        run([uv_bin(), "venv", "--quiet", "--python", sys.executable, path], env=env)
    python = venv_python(path)
    assert python.exists(), f"venv has no interpreter at {python}"
    return python


def has_pip(python: Path) -> bool:
    """Whether ``python -m pip`` works in that interpreter."""
    proc = run([python, "-m", "pip", "--version"], env=pip_env(), check=False, timeout=60)
    return proc.returncode == 0


def installed_versions(python: Path) -> dict[str, str]:
    """``{normalized name: version}`` of what is installed for ``python``."""
    if has_pip(python):
        out = run([python, "-m", "pip", "list", "--format", "json"], env=pip_env()).stdout
    else:
        cmd: list[str | os.PathLike[str]] = [uv_bin(), "pip", "list", "--python", python]
        cmd += ["--format", "json"]
        with tempfile.TemporaryDirectory() as cache:
            out = run(cmd, env=uv_env(Path(cache))).stdout
    return {_normalize(d["name"]): d["version"] for d in json.loads(out)}


def site_packages(python: Path) -> Path:
    """The purelib directory of ``python`` (where the fixture wheels land)."""
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(run([python, "-c", code], env=pip_env()).stdout.strip())


def _normalize(name: str) -> str:
    return pytorch_index._normalize(name)
