"""One rule for where everything but the torch family comes from (``pip_gpu.config.user_indexes``).

uv's own index configuration when you set any, else pip's, else PyPI; command-line options win
over either. install (through pip and through uv), lock and check all follow it, so a company
mirror in ``PIP_INDEX_URL`` that lags behind PyPI gives one environment and one lock.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.index import (
    IndexServer,
    fixture_index_fixture,  # noqa: F401  (registers the fixture "fixture_index")
    installed_versions,
    make_venv,
    pip_env,
    pytorch_index,
    run,
    uv_env,
)

from pip_gpu.config import UserIndexes, user_indexes

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PLUGIN = Path(__file__).resolve().parents[1] / "plugin"
MIRROR = "https://mirror.example/simple"


def _no_files(tmp_path: Path) -> dict[str, str]:
    """No pip or uv configuration file of this machine: only what a test writes."""
    return {"PIP_CONFIG_FILE": os.devnull, "HOME": str(tmp_path), "XDG_CONFIG_DIRS": str(tmp_path / "xdg")}


def test_uvs_own_configuration_wins_then_pips_then_pypi(tmp_path: Path) -> None:
    env = _no_files(tmp_path)
    assert user_indexes(env, tmp_path) == UserIndexes("default", "PyPI")
    assert user_indexes(env, tmp_path).args_for("uv") == [] == user_indexes(env, tmp_path).args_for("pip")

    pip = user_indexes({**env, "PIP_INDEX_URL": MIRROR, "PIP_EXTRA_INDEX_URL": "https://a/simple"}, tmp_path)
    assert (pip.source, pip.origin, pip.index_url) == ("pip", "PIP_INDEX_URL", MIRROR)
    assert pip.args_for("pip") == []  # pip reads its own configuration
    assert pip.args_for("uv") == [
        "--default-index", MIRROR, "--index", "https://a/simple",
        "--index-strategy", "unsafe-best-match",  # pip takes the best version of all its indexes
    ]  # fmt: skip
    # the command's own default index replaces the configured one, as in pip and uv
    assert pip.args_for("uv", ["--index-url", "https://cli/simple"])[:2] == ["--index", "https://a/simple"]

    uv = user_indexes({**env, "PIP_INDEX_URL": MIRROR, "UV_INDEX": "team=https://team/simple"}, tmp_path)
    assert (uv.source, uv.origin, uv.index_url, uv.extra_index_urls) == (
        "uv", "UV_INDEX", None, ("https://team/simple",)
    )  # fmt: skip
    assert uv.args_for("uv") == [] and uv.args_for("pip") == ["--extra-index-url", "https://team/simple"]
    assert uv.urls == ["https://pypi.org/simple", "https://team/simple"]


def test_uv_and_pip_configuration_files_are_read_where_each_installer_reads_them(tmp_path: Path) -> None:
    env = _no_files(tmp_path)
    pip_conf = tmp_path / "pip.conf"
    pip_conf.write_text(f"[global]\nindex-url = {MIRROR}\n[install]\nfind-links = /wheels\n")
    from_pip = user_indexes({**env, "PIP_CONFIG_FILE": str(pip_conf)}, tmp_path)
    assert (from_pip.source, from_pip.index_url, from_pip.find_links) == ("pip", MIRROR, ("/wheels",))

    # a project whose [tool.uv] has only explicit indexes (what `uv setup` writes) sets no default
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "p"\nversion = "0"\n\n[[tool.uv.index]]\nname = "pytorch-cpu"\n'
        'url = "https://download.pytorch.org/whl/cpu"\nexplicit = true\n'
    )
    assert user_indexes({**env, "PIP_CONFIG_FILE": str(pip_conf)}, project).source == "pip"
    # the user's uv.toml names an index: uv's configuration wins, for pip too
    (tmp_path / ".config" / "uv").mkdir(parents=True)
    (tmp_path / ".config" / "uv" / "uv.toml").write_text(
        '[[index]]\nurl = "https://uv-mirror/simple"\ndefault = true\n'
    )
    from_uv = user_indexes({**env, "PIP_CONFIG_FILE": str(pip_conf)}, project)
    assert (from_uv.source, from_uv.index_url) == ("uv", "https://uv-mirror/simple")
    assert from_uv.origin.endswith("uv.toml") and from_uv.args_for("pip") == [
        "--index-url",
        "https://uv-mirror/simple",
    ]
    # UV_NO_CONFIG: uv reads no file, and neither does the rule
    assert (
        user_indexes({**env, "PIP_CONFIG_FILE": str(pip_conf), "UV_NO_CONFIG": "1"}, project).source == "pip"
    )


# --- install (pip and uv), lock and check against one mirror ----------------------------------


@pytest.mark.slow
def test_a_pip_mirror_serves_install_through_both_installers_lock_and_check(
    fixture_index: IndexServer, tmp_path: Path
) -> None:
    assert fixture_index.tree is not None
    mirror = fixture_index.base_url + pytorch_index.build_pypi_mirror(
        fixture_index.tree, {"numpy": pytorch_index.PYPI_NUMPY}
    )  # the mirror's newest numpy is 1.26.4; PyPI's default (2.1.2) is not on it
    env = {**pip_env(tmp_path / "pip-cache"), **uv_env(tmp_path / "uv-cache")}  # no config files
    env.update(
        PIP_INDEX_URL=mirror,  # the company mirror, as a pip user configures it; nothing for uv
        PIP_GPU_PYTORCH_INDEX=fixture_index.pytorch_url,
        PIP_GPU_NO_GPU="1",
        PYTHONPATH=str(PLUGIN),
    )
    project = tmp_path / "project"
    project.mkdir()
    (project / "requirements.in").write_text("torch==2.5.1\nnumpy\n")

    def pip_gpu(*args: str) -> subprocess.CompletedProcess[str]:
        return run([sys.executable, "-m", "pip_gpu", *args], env=env, cwd=project, check=False)

    venvs = {
        "uv": make_venv(tmp_path / "uv-venv", with_pip=False),
        "pip": make_venv(tmp_path / "pip-venv", with_pip=True),
    }
    for installer, python in venvs.items():
        done = pip_gpu("install", "--installer", installer, "--python", str(python), "-r", "requirements.in")
        assert done.returncode == 0, done.stderr
        versions = installed_versions(python)
        assert (versions["numpy"], versions["torch"]) == ("1.26.4", "2.5.1+cpu"), (installer, versions)

    done = pip_gpu("lock", "-r", "requirements.in", "--variants", "cpu")
    assert done.returncode == 0, done.stderr
    packages = {
        p["name"]: p
        for p in tomllib.loads((project / "pylock.cpu.toml").read_text(encoding="utf-8"))["packages"]
    }
    assert packages["numpy"]["version"] == "1.26.4" and packages["numpy"]["index"] == mirror
    assert packages["filelock"]["index"] == mirror  # torch's own dependencies too

    for installer, python in venvs.items():
        check = pip_gpu("check", "--python", str(python))
        assert check.returncode == 0 and "OK" in check.stdout, (installer, check.stdout, check.stderr)

    # uv setup says where uv lock in the project would part ways with the mirror
    (project / "pyproject.toml").write_text(
        '[project]\nname = "demo"\nversion = "0"\ndependencies = ["torch"]\n'
    )
    setup = pip_gpu("uv", "setup", "--variants", "cpu", "--dry-run")
    assert setup.returncode == 0, setup.stderr
    assert (
        f"from {mirror} (PIP_INDEX_URL); uv lock and uv sync here read only uv's configuration"
        in setup.stderr
    )
