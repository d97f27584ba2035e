"""The one probe pip-gpu runs in a target interpreter (``pip_gpu.detect.target``).

Real interpreters: a fresh venv (``uv venv``, no pip, fast) whose site-packages the tests
fill by hand with what installers leave behind.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import packaging.markers
import pytest
from support.index import make_venv, site_packages

from pip_gpu.detect.target import (
    installed_torch_build,
    probe,
    read_import_view,
    read_installed,
)
from pip_gpu.errors import PipGpuError, UsageError


def _dist_info(site: Path, name: str, version: str, files: dict[str, bytes]) -> None:
    """A package as an installer leaves it: its files and a RECORD with sizes and sha256."""
    import base64
    import hashlib

    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for relative, content in files.items():
        path = site / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
        lines.append(f"{relative},sha256={digest},{len(content)}")
    lines += [f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]
    (info / "RECORD").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_venv(tmp_path_factory.mktemp("target") / "venv", with_pip=False)


def test_probe_reads_the_interpreter(venv: Path) -> None:
    target = probe(venv, "--python")
    assert target.python_version == "{}.{}".format(*sys.version_info[:2])
    assert target.is_virtualenv and not target.has_pip
    assert target.site_packages == (site_packages(venv),)


def test_marker_values_are_packagings_own() -> None:
    """For the interpreter running the tests, the values are exactly packaging's."""
    import sys

    installed = read_installed(Path(sys.executable))
    assert dict(installed.markers) == dict(packaging.markers.default_environment())


def test_a_file_changed_in_place_is_caught_by_its_hash(tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv", with_pip=False)
    site = site_packages(python)
    _dist_info(
        site,
        "torch",
        "2.5.1+cu124",
        {"torch/__init__.py": b"x = 1\n", "torch/version.py": b"cuda = '12.4'\n"},
    )
    assert read_installed(python, verify=["torch"]).broken == {}

    # Same size, other bytes: a size check alone would call it intact.
    (site / "torch" / "version.py").write_bytes(b"cuda = '11.8'\n")
    installed = read_installed(python, verify=["torch"])
    assert installed.dists["torch"] == "2.5.1+cu124"
    assert installed.broken == {"torch": "0 of its 4 files are missing and 1 differ from its RECORD"}

    (site / "torch" / "__init__.py").unlink()
    assert "1 of its 4 files are missing" in read_installed(python, verify=["torch"]).broken["torch"]


def test_pips_leftover_folder_is_not_the_package(tmp_path: Path) -> None:
    """A killed pip leaves ``~orch-*.dist-info`` behind; it is not an installed torch."""
    python = make_venv(tmp_path / "venv", with_pip=False)
    site = site_packages(python)
    _dist_info(site, "torch", "2.5.1", {"torch/__init__.py": b""})
    (site / "torch-2.5.1.dist-info").rename(site / "~orch-2.5.1.dist-info")
    assert "torch" not in read_installed(python).dists


def test_the_import_view_reads_real_wheels_annotated_version_py(tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv", with_pip=False)
    site = site_packages(python)
    # as real wheels write it: annotated assignments
    version_py = b"from typing import Optional\n__version__ = '2.14.1+cu130'\n"
    version_py += b"cuda: Optional[str] = '13.0'\nhip = None\n"
    _dist_info(site, "torch", "2.14.1+cu130", {"torch/__init__.py": b"", "torch/version.py": version_py})

    view = read_import_view(python, ["torch", "torchvision"])
    torch = view.family["torch"]
    assert (torch.version, torch.cuda, torch.hip, torch.build_info) == ("2.14.1+cu130", "13.0", None, True)
    assert "torchvision" not in view.family
    assert [copy.version for copy in view.torch_copies] == ["2.14.1+cu130"]
    assert installed_torch_build(python) == {
        "torch": {"version": "2.14.1+cu130", "cuda": "13.0", "hip": None}
    }


def test_a_second_torch_on_pythonpath_shows_as_the_user_runs_it(tmp_path: Path, venv: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _dist_info(
        elsewhere,
        "torch",
        "2.3.0",
        {"torch/__init__.py": b"", "torch/version.py": b"__version__ = '2.3.0'\n"},
    )
    env = dict(os.environ, PYTHONPATH=str(elsewhere))

    as_user = read_import_view(venv, ["torch"], env=env)
    assert as_user.family["torch"].version == "2.3.0"
    assert str(elsewhere) in as_user.sys_path
    assert not read_import_view(venv, ["torch"], env=env, as_user_runs=False).family


def test_something_that_is_not_python(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho '{}'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(UsageError, match="not a working Python interpreter"):
        probe(fake, "--python")
    with pytest.raises(PipGpuError, match="could not read the installed packages"):
        read_installed(fake)
    assert read_import_view(fake, ["torch"]).family == {}


def test_lock_target_version_is_known_here_for_this_interpreter_and_asked_of_any_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``lock`` needs only the target's Python version: the interpreter running pip-gpu (the
    same file, whatever link leads to it) is not started to say it; any other one is asked."""
    import subprocess

    from pip_gpu.detect.target import target_python_version

    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    wrapper = tmp_path / "env" / "bin" / "python"  # another program: a script that runs a python
    wrapper.parent.mkdir(parents=True)
    asked = tmp_path / "asked"
    wrapper.write_text(f'#!/bin/sh\ntouch {asked}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    linked = tmp_path / "linked" / "bin" / "python"  # a venv's link to this very interpreter
    linked.parent.mkdir(parents=True)
    linked.symlink_to(sys.executable)

    assert target_python_version(tmp_path, {"VIRTUAL_ENV": str(wrapper.parent.parent)}) == here
    assert asked.exists()  # the probe ran in it

    def no_child(*args: object, **kwargs: object) -> None:
        raise AssertionError("a child process was started")

    monkeypatch.setattr(subprocess, "run", no_child)
    assert target_python_version(tmp_path, {"VIRTUAL_ENV": str(linked.parent.parent)}) == here
    assert target_python_version(tmp_path, {}) == here  # no venv: pip-gpu's own interpreter
