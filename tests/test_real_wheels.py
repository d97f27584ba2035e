"""The real torch 2.14.1 CUDA 13.0 wheel, relabelled ``2.14.1+cu130`` as the variant index
serves it, installed by pip-gpu with real uv (here, in the default suite) and real pip (the
``realwheels`` nox session) together with ``numpy>=2.3`` from a default index.

The variant index also has an old numpy (1.26.4) and the default index a plain
``torch-2.14.1``: the routing rule decides which of them land. ``import torch`` works
without a GPU, so the installed build is read from torch itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.version import Version
from support.cli import PLUGIN, pip_gpu
from support.index import make_venv, pip_env, run, uv_env
from support.realwheels import LABEL, TORCH, RealIndex, real_index

# With driver 580 pip-gpu may decide cu132 (minor-version compatibility); the tier is cu130.
H200_ON_580 = ["--driver", "580.159.04", "--compute-capability", "9.0", "--variant", LABEL]


@pytest.fixture(scope="module", name="real")
def real_fixture() -> Iterator[RealIndex]:
    with real_index() as index:
        yield index


def _install_real_torch(real: RealIndex, tmp_path: Path, installer: str) -> None:
    python = make_venv(tmp_path / "venv", with_pip=installer == "pip")
    env = {**pip_env(real.pip_cache), **uv_env(real.uv_cache), "PYTHONPATH": str(PLUGIN)}
    env.update(PIP_INDEX_URL=real.default_url, UV_DEFAULT_INDEX=real.default_url)
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), UV_LINK_MODE="hardlink")
    done = pip_gpu(
        "install", f"torch=={TORCH}", "numpy>=2.3", "--python", str(python), "--installer", installer,
        "--pytorch-index", real.pytorch_url, *H200_ON_580, env=env, timeout=1500,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    assert f"-> {LABEL} from {real.pytorch_url}/{LABEL}" in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"pip-gpu: verified: torch {TORCH}+{LABEL} (CUDA 13.0) is installed"), last

    probe = (
        "import json, numpy, torch; "
        "print(json.dumps([torch.__version__, torch.version.cuda, numpy.__version__]))"
    )
    torch_version, cuda, numpy_version = json.loads(run([python, "-c", probe], env=pip_env()).stdout)
    assert (torch_version, cuda) == (f"{TORCH}+{LABEL}", "13.0")
    assert Version(numpy_version) >= Version("2.3")  # the default index's, not the variant's 1.26.4


def test_real_torch_through_uv(real: RealIndex, tmp_path: Path) -> None:
    _install_real_torch(real, tmp_path, "uv")


@pytest.mark.realwheels
def test_real_torch_through_pip(real: RealIndex, tmp_path: Path) -> None:
    _install_real_torch(real, tmp_path, "pip")
