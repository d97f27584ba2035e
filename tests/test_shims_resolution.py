"""Shims: installs that bring in torch without naming it get the host's build.

``pip install fixture-llm`` (which pins ``torch==2.5.1``, as vllm 0.6.4.post1 does), a
requirements file that never names torch, a local wheel, ``-e`` of a project and requirements
from standard input: the real pip or uv resolves the command first (nothing installed), and
when a torch-family package is in the result the command goes through ``pip-gpu install``.
The default fixture index holds a plain, unlabelled torch that must never land on a GPU host.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from support.index import (
    IndexServer,
    fixture_index_fixture,  # noqa: F401  (registers the fixture "fixture_index")
    index_server_fixture,  # noqa: F401  (registers the fixture "index_server")
    installed_versions,
    make_venv,
    pytorch_index,
)
from support.shims import (
    CPU_HOST,
    CU124_HOST,
    shell,
    shell_env,
    shims_fixture,  # noqa: F401  (registers the fixture "shims")
)

pytestmark = [
    pytest.mark.skipif(os.name == "nt", reason="the shims are POSIX shell scripts"),
    pytest.mark.slow,
]

# A PEP 517/660 build backend in the project itself: no build tool needed from any index.
TINY_BACKEND = """
import base64, hashlib, os, zipfile

NAME, VERSION, REQUIRES = "mylib", "0.1", ["torch==2.5.1"]
DIST = f"{NAME}-{VERSION}.dist-info"
METADATA = f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\n" + "".join(
    f"Requires-Dist: {r}\\n" for r in REQUIRES
)
WHEEL = "Wheel-Version: 1.0\\nGenerator: tiny\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"


def _digest(data):
    return base64.urlsafe_b64encode(hashlib.sha256(data.encode()).digest()).rstrip(b"=").decode()


def _wheel(directory, members):
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    members = {**members, f"{DIST}/METADATA": METADATA, f"{DIST}/WHEEL": WHEEL}
    record = "".join(f"{n},sha256={_digest(d)},{len(d.encode())}\\n" for n, d in members.items())
    with zipfile.ZipFile(os.path.join(directory, name), "w") as wheel:
        for member, data in members.items():
            wheel.writestr(member, data)
        wheel.writestr(f"{DIST}/RECORD", record + f"{DIST}/RECORD,,\\n")
    return name


def _metadata(directory):
    os.makedirs(os.path.join(directory, DIST), exist_ok=True)
    with open(os.path.join(directory, DIST, "METADATA"), "w") as f:
        f.write(METADATA)
    return DIST


def get_requires_for_build_wheel(config_settings=None):
    return []


get_requires_for_build_editable = get_requires_for_build_wheel


def prepare_metadata_for_build_wheel(directory, config_settings=None):
    return _metadata(directory)


prepare_metadata_for_build_editable = prepare_metadata_for_build_wheel


def build_wheel(directory, config_settings=None, metadata_directory=None):
    return _wheel(directory, {f"{NAME}/__init__.py": ""})


def build_editable(directory, config_settings=None, metadata_directory=None):
    return _wheel(directory, {f"{NAME}.pth": os.path.dirname(os.path.abspath(__file__)) + "\\n"})
"""


def project(folder: Path) -> Path:
    """A project that depends on ``torch==2.5.1``, buildable without any index."""
    (folder / "mylib").mkdir(parents=True)
    (folder / "mylib" / "__init__.py").write_text("")
    (folder / "tiny_backend.py").write_text(TINY_BACKEND)
    (folder / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "tiny_backend"\nbackend-path = ["."]\n'
    )
    return folder


def local_wheel(folder: Path) -> Path:
    """``mylib-0.1-py3-none-any.whl``, requiring ``torch==2.5.1``."""
    dist = pytorch_index._Dist("mylib", "0.1", (("mylib/__init__.py", ""),), ("torch==2.5.1",))
    path = folder / dist.filename
    path.write_bytes(dist.wheel_bytes())
    return path


def user(installer: str, tmp_path: Path, server: IndexServer, shims: Path, host: dict[str, str]):  # type: ignore[no-untyped-def]
    """(environment, python): a venv as that installer's users have it, the shims first on PATH."""
    python = make_venv(tmp_path / "venv", with_pip=installer == "pip")
    real = tmp_path / "real"
    real.mkdir()
    if installer == "pip":
        (real / "pip").symlink_to(python.parent / "pip")
    from support.index import uv_bin

    (real / "uv").symlink_to(uv_bin())
    env = shell_env([shims, real], server, tmp_path, host)
    env["VIRTUAL_ENV"] = str(python.parent.parent)
    return env, python


@pytest.mark.parametrize("installer", ["pip", "uv"])
@pytest.mark.parametrize(("host", "label"), [(CU124_HOST, "cu124"), (CPU_HOST, "cpu")])
def test_a_package_that_needs_torch_gets_the_host_build(  # type: ignore[no-untyped-def]
    installer: str, host, label: str, shims: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    env, python = user(installer, tmp_path, index_server, shims, host)
    command = "pip install" if installer == "pip" else "uv pip install"
    done = shell(f"{command} fixture-llm==0.6.4.post1", env, cwd=tmp_path)
    assert re.search(r"the requirements bring in torch(, [a-z-]+)*: routing through pip-gpu", done.stderr), (
        done.stderr
    )
    versions = installed_versions(python)
    assert versions["torch"] == f"2.5.1+{label}"  # never the default index's plain 2.5.1
    assert versions["fixture-llm"] == "0.6.4.post1"


@pytest.mark.parametrize("installer", ["pip", "uv"])
@pytest.mark.parametrize("source", ["requirements file", "stdin", "local wheel", "editable project"])
def test_every_way_of_naming_a_package_that_needs_torch_is_routed(  # type: ignore[no-untyped-def]
    installer: str, source: str, shims: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    env, python = user(installer, tmp_path, index_server, shims, CU124_HOST)
    command = "pip install" if installer == "pip" else "uv pip install"
    if source == "requirements file":
        (tmp_path / "requirements.txt").write_text("# never names torch\nfixture-llm==0.6.4.post1\n")
        line = f"{command} -r requirements.txt"
    elif source == "stdin":
        line = f"echo fixture-llm==0.6.4.post1 | {command} -r -"
    elif source == "local wheel":
        line = f"{command} ./{local_wheel(tmp_path).name}"
    else:
        project(tmp_path / "proj")
        line = f"{command} -e ./proj"
    done = shell(line, env, cwd=tmp_path)
    assert "routing through pip-gpu" in done.stderr
    versions = installed_versions(python)
    assert versions["torch"] == "2.5.1+cu124"
    assert ("fixture-llm" if source in ("requirements file", "stdin") else "mylib") in versions


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_a_package_without_torch_is_the_real_installer(  # type: ignore[no-untyped-def]
    installer: str, shims: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    env, python = user(installer, tmp_path, index_server, shims, CU124_HOST)
    command = "pip install" if installer == "pip" else "uv pip install"
    through = shell(f"{command} --dry-run fixture-app", env, cwd=tmp_path)
    plain = shell(f"{command} --dry-run fixture-app", {**env, "PIP_GPU_DISABLE": "1"}, cwd=tmp_path)
    assert "pip-gpu" not in through.stdout + through.stderr
    if installer == "pip":  # uv's output carries timings
        assert (through.stdout, through.stderr) == (plain.stdout, plain.stderr)
    done = shell(f"{command} fixture-app", env, cwd=tmp_path)
    assert "pip-gpu" not in done.stdout + done.stderr
    assert installed_versions(python)["fixture-app"] == "1.0.0"


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_a_resolution_that_fails_is_refused_in_one_line(  # type: ignore[no-untyped-def]
    installer: str, shims: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    env, _ = user(installer, tmp_path, index_server, shims, CU124_HOST)
    command = "pip install" if installer == "pip" else "uv pip install"
    done = shell(f"{command} no-such-project-anywhere", env, cwd=tmp_path, check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot tell whether" in lines[0] and "PIP_GPU_DISABLE=1" in lines[0]


def test_pip_download_of_a_package_that_needs_torch_is_refused(  # type: ignore[no-untyped-def]
    shims: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    env, _ = user("pip", tmp_path, index_server, shims, CU124_HOST)
    done = shell("pip download fixture-llm==0.6.4.post1 -d wheels", env, cwd=tmp_path, check=False)
    assert done.returncode == 2 and "bring in torch" in done.stderr
    assert not (tmp_path / "wheels").exists()


def test_uv_run_with_a_package_that_needs_torch_gets_the_host_build(  # type: ignore[no-untyped-def]
    shims: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    env, _ = user("uv", tmp_path, index_server, shims, CU124_HOST)
    env.pop("VIRTUAL_ENV")
    env["UV_PYTHON"] = sys.executable  # PATH holds only the shims and the real uv
    done = shell(
        "uv run --no-project --with fixture-llm==0.6.4.post1 "
        "python -c 'import torch; print(torch.__version__)'",
        env,
        cwd=tmp_path,
    )
    assert done.stdout.strip() == "2.5.1+cu124"


@pytest.mark.parametrize("source", ["requirements.in", "pyproject.toml"])
def test_uv_pip_compile_of_a_package_that_needs_torch_locks_the_host_build(  # type: ignore[no-untyped-def]
    source: str, shims: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    env, _ = user("uv", tmp_path, index_server, shims, CU124_HOST)
    if source == "requirements.in":
        (tmp_path / "requirements.in").write_text("fixture-llm==0.6.4.post1\n")
        folder = tmp_path
    else:
        folder = project(tmp_path / "proj")
    done = shell(f"uv pip compile {source} -o requirements.txt", env, cwd=folder)
    assert "the torch family comes from" in done.stderr
    assert "torch==2.5.1+cu124" in (folder / "requirements.txt").read_text()


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_a_dry_run_of_a_package_that_pulls_in_torch_and_torchvision_shows_the_build(  # type: ignore[no-untyped-def]
    installer: str, shims: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    """ultralytics-like (torchvision>=0.20, so torch too) on an A100 with driver 535: the dry run
    is the real installer's own (issue 25), and its list shows the build it would install, torch
    2.6.0+cu126 and torchvision 0.21.0+cu126 from the cu126 index, settled, nothing installed."""
    env, python = user(installer, tmp_path, index_server, shims, CU124_HOST)
    command = "pip install" if installer == "pip" else "uv pip install"
    done = shell(f"{command} --dry-run fixture-vision-app", env, cwd=tmp_path)
    shown = done.stdout + done.stderr  # uv prints its list on stderr
    assert "unsettled" not in shown and "settling it failed" not in shown, shown
    would_install = would_install_list(installer, shown)
    assert would_install.get("torch") == "2.6.0+cu126", shown
    assert would_install.get("torchvision") == "0.21.0+cu126", shown
    assert would_install.get("fixture-vision-app") == "1.0.0", shown
    if installer == "pip":  # uv names no URLs; the +cu126 local version is the cu126 index's alone
        for name, version in (("torch", "2.6.0"), ("torchvision", "0.21.0")):
            assert re.search(rf"{name} ?@ \S+/cu126/{name}-{version}%2Bcu126-", shown), shown
    assert "torch" not in installed_versions(python)


def would_install_list(installer: str, output: str) -> dict[str, str]:
    """{name: version} from pip's "Would install a-1 b-2" line or uv's " + a==1" lines."""
    if installer == "pip":
        line = next((x for x in output.splitlines() if x.startswith("Would install ")), "")
        pairs = [word.rsplit("-", 1) for word in line.split()[2:]]
    else:
        pairs = [x[3:].split("==", 1) for x in output.splitlines() if x.startswith(" + ")]
    return {canonicalize_name(name): version for name, version in pairs}
