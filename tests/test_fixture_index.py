"""The fixture index really behaves like download.pytorch.org for pip and uv.

Every pip-gpu integration test trusts this index, so it is checked here with
the real installers: if pip or uv would not accept it, those tests would
prove nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
from support.index import (
    IndexServer,
    build_index,
    fixture_index_fixture,  # noqa: F401  (registers the fixture "fixture_index")
    index_server_fixture,  # noqa: F401  (registers the fixture "index_server")
    installed_versions,
    make_venv,
    pip_env,
    pytorch_index,
    run,
    site_packages,
    uv_bin,
    uv_env,
)

JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"


def _get(url: str, accept: str | None = None, timeout: float = 10) -> tuple[str, bytes]:
    req = urllib.request.Request(url)
    if accept is not None:
        req.add_header("Accept", accept)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.headers.get("Content-Type", ""), resp.read()


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --------------------------------------------------------------------------
# The tree itself
# --------------------------------------------------------------------------


def test_build_is_deterministic_and_fast(tmp_path: Path) -> None:
    start = time.monotonic()
    first = build_index(tmp_path / "a")
    elapsed = time.monotonic() - start
    second = build_index(tmp_path / "b")

    assert elapsed < 2.0
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    assert [(f.url_path, f.sha256, f.size) for f in first.files] == [
        (f.url_path, f.sha256, f.size) for f in second.files
    ]
    for f in first.files:
        data = (tmp_path / "a" / f.url_path.lstrip("/")).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f.sha256
        assert len(data) == f.size


def test_catalogue_matches_the_real_layout(tmp_path: Path) -> None:
    tree = build_index(tmp_path)
    assert tree.variants == ("cpu", "cu118", "cu121", "cu124", "cu126", "cu130")
    assert tree.versions("cu124", "torch") == [
        "2.4.1+cu124",
        "2.5.0+cu124",
        "2.5.1+cu124",
        "2.6.0+cu124",
    ]
    assert tree.versions("cu126", "torch") == ["2.6.0+cu126"]
    assert tree.versions("cu121", "torchvision")[-1] == "0.20.1+cu121"
    assert tree.files_for("cu124", "nvidia-cuda-runtime-cu12")[0].version == "12.4.127"
    assert tree.files_for("cu118", "nvidia-cuda-runtime-cu11")[0].version == "11.8.89"
    assert not tree.files_for("cpu", "nvidia-cuda-runtime-cu12")
    # the planted family names exist on "PyPI" only
    for name in pytorch_index.PLANTED_FAMILY:
        assert "99.0.0" in tree.versions("pypi", name)
        assert all("99.0.0" not in tree.versions(v, name) for v in tree.variants)
    assert "99.0.0" in tree.versions("pypi", "nvidia-cuda-runtime-cu12")
    # the variant indexes keep older copies of common packages than "PyPI"
    assert tree.versions("cu124", "numpy") == ["1.26.4"]
    assert tree.versions("pypi", "numpy") == ["1.26.4", pytorch_index.PYPI_NUMPY]
    # CUDA builds pull triton (served there); CPU builds do not
    assert tree.versions("cu124", "triton") == ["3.0.0", "3.1.0", "3.2.0", "3.5.1"]
    assert not tree.files_for("cpu", "triton")
    assert tree.versions("pypi", "torch") == ["2.5.1", "2.6.0", "2.11.0"]
    assert tree.versions("pypi", "fixture-lib") == ["1.0.0", "1.1.0"]


def test_wheel_is_well_formed(tmp_path: Path) -> None:
    tree = build_index(tmp_path)
    (wf,) = [
        f
        for f in tree.files_for("cu124", "torch")
        if f.version == "2.5.1+cu124" and f.filename.endswith("-any.whl")
    ]
    assert wf.filename == "torch-2.5.1+cu124-py3-none-any.whl"
    assert wf.url_path == "/whl/cu124/torch-2.5.1+cu124-py3-none-any.whl"
    with zipfile.ZipFile(tmp_path / wf.url_path.lstrip("/")) as zf:
        names = zf.namelist()
        meta = zf.read("torch-2.5.1+cu124.dist-info/METADATA").decode()
        record = zf.read("torch-2.5.1+cu124.dist-info/RECORD").decode().splitlines()
        version_py = zf.read("torch/version.py").decode()
        assert names[-1] == "torch-2.5.1+cu124.dist-info/RECORD"
        for line in record:
            path, digest, size = line.rsplit(",", 2)
            if not digest:
                continue
            data = zf.read(path)
            assert int(size) == len(data)
            assert digest == pytorch_index._record_hash(data)
    assert "Metadata-Version: 2.1\nName: torch\nVersion: 2.5.1+cu124\n" in meta
    assert "Requires-Python: >=3.8.0" in meta
    assert (
        'Requires-Dist: nvidia-cuda-runtime-cu12==12.4.127; platform_system == "Linux"'
        ' and platform_machine == "x86_64"'
    ) in meta
    assert "cuda: Optional[str] = '12.4'" in version_py and "hip: Optional[str] = None" in version_py
    assert 'Requires-Dist: triton==3.1.0; platform_system == "Linux"' in meta
    assert (tmp_path / (wf.url_path.lstrip("/") + ".metadata")).read_text() == meta


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------


def test_pep503_and_pep691_negotiation(index_server: IndexServer) -> None:
    srv = index_server
    assert srv.tree is not None
    url = f"{srv.pytorch_url}/cu124/torch/"

    ctype, body = _get(url)
    assert ctype == "text/html"
    assert "torch-2.5.1%2Bcu124-py3-none-any.whl#sha256=" in body.decode()
    assert 'data-requires-python="&gt;=3.8.0"' in body.decode()

    ctype, body = _get(url, accept=f"{JSON_ACCEPT}, text/html;q=0.01")
    assert ctype == JSON_ACCEPT
    doc = json.loads(body)
    assert doc["meta"]["api-version"].startswith("1.")
    assert doc["name"] == "torch"
    by_name = {f["filename"]: f for f in doc["files"]}
    for wf in srv.tree.files_for("cu124", "torch"):
        assert by_name[wf.filename]["hashes"] == {"sha256": wf.sha256}
    # file URLs resolve and serve the bytes the hash promises
    entry = by_name["torch-2.5.1+cu124-py3-none-any.whl"]
    _, wheel = _get(srv.base_url + entry["url"])
    assert hashlib.sha256(wheel).hexdigest() == entry["hashes"]["sha256"]

    ctype, body = _get(srv.pypi_url + "/", accept=JSON_ACCEPT)
    names = {p["name"] for p in json.loads(body)["projects"]}
    assert {"torch", "filelock", "fixture-app", "nvidia-cuda-runtime-cu12"} <= names
    ctype, _ = _get(srv.pypi_url + "/", accept="application/vnd.pypi.simple.v1+html")
    assert ctype == "application/vnd.pypi.simple.v1+html"

    assert [r.accept for r in srv.requests][:2] == ["", f"{JSON_ACCEPT}, text/html;q=0.01"]
    assert srv.contacted("/whl/cu124/") and srv.contacted("/pypi/")
    with pytest.raises(urllib.error.HTTPError) as err:
        _get(f"{srv.pytorch_url}/cu124/no-such-project/")
    assert err.value.code == 404


def test_failure_injection(index_server: IndexServer) -> None:
    srv = index_server
    url = f"{srv.pytorch_url}/cpu/torch/"

    srv.fail("/whl/cpu/", 503)
    with pytest.raises(urllib.error.HTTPError) as err:
        _get(url)
    assert err.value.code == 503

    srv.fail("/whl/cpu/torch/", "truncate")
    with pytest.raises(Exception, match=r"IncompleteRead|incomplete|closed"):
        _get(url)

    srv.fail("/whl/cpu/", "hang", hang_s=1.0)
    start = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017  (RemoteDisconnected or timeout)
        _get(url, timeout=10)
    assert time.monotonic() - start < 5

    srv.clear_failures()
    assert _get(url)[0] == "text/html"


# --------------------------------------------------------------------------
# Real installers
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_real_pip_installs_the_cuda_build(index_server: IndexServer, tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv", with_pip=True)
    run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--index-url",
            index_server.variant_url("cu124"),
            "torch==2.5.1",
            "torchvision==0.20.1",
        ],
        env=pip_env(tmp_path / "pip-cache"),
    )
    versions = installed_versions(python)
    assert versions["torch"] == "2.5.1+cu124"
    assert versions["torchvision"] == "0.20.1+cu124"
    assert versions["nvidia-cuda-runtime-cu12"] == "12.4.127"
    assert versions["sympy"] == "1.13.1" and versions["mpmath"] == "1.3.0"
    code = "import torch; print(torch.version.cuda, torch.cuda.is_available())"
    assert run([python, "-c", code], env=pip_env()).stdout.split() == ["12.4", "False"]
    assert not index_server.contacted("/pypi/")
    assert not index_server.contacted("/whl/cpu/")


@pytest.mark.slow
def test_real_uv_installs_the_cpu_build(index_server: IndexServer, tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv", with_pip=False)
    run(
        [
            uv_bin(),
            "pip",
            "install",
            "--python",
            python,
            "--index-url",
            index_server.variant_url("cpu"),
            "torch==2.5.1",
            "torchvision==0.20.1",
        ],
        env=uv_env(tmp_path / "uv-cache"),
    )
    versions = installed_versions(python)
    assert "pip" not in versions
    assert versions["torch"] == "2.5.1+cpu"
    assert versions["torchvision"] == "0.20.1+cpu"
    assert not any(name.startswith("nvidia-") for name in versions)
    code = "import torch; print(torch.__version__, torch.version.cuda)"
    assert run([python, "-c", code], env=uv_env(tmp_path / "uv-cache")).stdout.split() == [
        "2.5.1+cpu",
        "None",
    ]
    # uv negotiated PEP 691 JSON
    pages = [r for r in index_server.requests if r.path.endswith("/")]
    assert pages and all(JSON_ACCEPT in r.accept for r in pages)
    assert not index_server.contacted("/pypi/")


@pytest.mark.slow
def test_pip_extra_index_url_takes_the_planted_torchvision(index_server: IndexServer, tmp_path: Path) -> None:
    """Documents the threat: naive --extra-index-url lets "PyPI" win on version.

    pip merges all indexes and picks the highest version, so the planted
    torchvision 99.0.0 beats the variant index's 0.20.1+cu124.  pip-gpu must never
    build a command line that allows this.
    """
    python = make_venv(tmp_path / "venv", with_pip=True)
    run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--index-url",
            index_server.variant_url("cu124"),
            "--extra-index-url",
            index_server.pypi_url,
            "torchvision",
            "--no-deps",
        ],
        env=pip_env(tmp_path / "pip-cache"),
    )
    assert installed_versions(python)["torchvision"] == "99.0.0"
    assert (site_packages(python) / "torchvision" / "PWNED").is_file()


@pytest.mark.slow
def test_uv_extra_index_url_is_searched_first(index_server: IndexServer, tmp_path: Path) -> None:
    """Documents the uv flavour of the threat: an *extra* index has priority.

    uv's default "first-index" strategy stops at the first index that has the
    project, and ``--extra-index-url`` entries come before ``--index-url``;
    so "PyPI" supplies torchvision 99.0.0 even though cu124 serves 0.20.1+cu124.
    """
    python = make_venv(tmp_path / "venv", with_pip=False)
    run(
        [
            uv_bin(),
            "pip",
            "install",
            "--python",
            python,
            "--index-url",
            index_server.variant_url("cu124"),
            "--extra-index-url",
            index_server.pypi_url,
            "torchvision",
            "--no-deps",
        ],
        env=uv_env(tmp_path / "uv-cache"),
    )
    assert installed_versions(python)["torchvision"] == "99.0.0"
    assert (site_packages(python) / "torchvision" / "PWNED").is_file()
    assert not index_server.contacted("/whl/cu124/torchvision/")


@pytest.mark.parametrize(("option", "status"), [("--help", 0), ("--no-such-option", 2)])
def test_the_script_answers_an_option_and_builds_nothing(option: str, status: int, tmp_path: Path) -> None:
    """``python fixtures/pytorch_index.py --help`` shows its usage; an option it does not know
    is refused. Neither builds an index into a folder named after the option."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "fixtures" / "pytorch_index.py"
    done = subprocess.run(
        [sys.executable, str(script), option], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == status, done.stderr
    assert "usage: pytorch_index.py" in done.stdout + done.stderr
    assert list(tmp_path.iterdir()) == []
