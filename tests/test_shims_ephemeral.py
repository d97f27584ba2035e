"""uv's throwaway environments through the shims: `uv run --with`, PEP 723 scripts.

uv makes these environments itself, so the shim adds an index to uv's own command that serves
only the torch family (the variant index's pages of the family names), instead of installing
into anything; numpy and the rest come from the default index.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.index import IndexServer, pytorch_index
from support.shims import CPU_HOST, CU124_HOST, real_bin, shell, shell_env, shims_fixture, venv_fixture

pytestmark = pytest.mark.slow
shims = shims_fixture
venv = venv_fixture

PYPI_NUMPY = pytorch_index.PYPI_NUMPY
PRINT_TORCH = "python -c 'import torch; print(torch.__version__)'"


@pytest.mark.parametrize(("host", "label"), [(CU124_HOST, "cu124"), (CPU_HOST, "cpu")])
def test_uv_run_with_torch_gets_the_host_build(  # type: ignore[no-untyped-def]
    host: dict[str, str], label: str, shims: Path, venv: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    env = shell_env([shims, real_bin(venv), Path("/usr/bin"), Path("/bin")], index_server, tmp_path, host)
    done = shell(f"uv run --no-project --with torch==2.5.1 {PRINT_TORCH}", env, cwd=tmp_path)
    assert done.stdout.strip() == f"2.5.1+{label}"
    assert f"the torch family comes from {index_server.pytorch_url}/{label}" in done.stderr


def test_pep_723_script_that_needs_torch_gets_the_host_build(  # type: ignore[no-untyped-def]
    shims: Path, venv: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    script = tmp_path / "train.py"
    script.write_text(
        "# /// script\n"
        '# dependencies = ["torch==2.5.1", "fixture-lib"]\n'
        "# ///\n"
        "import torch, fixture_lib\n"
        "print(torch.__version__)\n"
    )
    env = shell_env([shims, real_bin(venv), Path("/usr/bin"), Path("/bin")], index_server, tmp_path)
    done = shell("uv run train.py", env, cwd=tmp_path)
    assert done.stdout.strip() == "2.5.1+cu124"
    assert not index_server.contacted("/pypi/simple/torch/")  # the family never looked elsewhere


def test_uv_run_without_the_family_is_untouched(  # type: ignore[no-untyped-def]
    shims: Path, venv: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    env = shell_env([shims, real_bin(venv), Path("/usr/bin"), Path("/bin")], index_server, tmp_path)
    done = shell("uv run --no-project --with fixture-lib python -c 'import fixture_lib'", env, cwd=tmp_path)
    assert "pip-gpu" not in done.stderr


def test_uv_pip_compile_resolves_the_family_from_the_variant_index(  # type: ignore[no-untyped-def]
    shims: Path, venv: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    (tmp_path / "requirements.in").write_text("torch==2.5.1\nfilelock\n")
    env = shell_env([shims, real_bin(venv), Path("/usr/bin"), Path("/bin")], index_server, tmp_path)
    done = shell("uv pip compile requirements.in -q -o requirements.txt", env, cwd=tmp_path)
    pinned = (tmp_path / "requirements.txt").read_text()
    assert "torch==2.5.1+cu124" in pinned
    assert "filelock==3.13.1" in pinned  # never the planted 99.0.0 from the default index
    assert "the torch family comes from" not in done.stderr  # -q silences pip-gpu's line too


PRINT_BOTH = "python -c 'import numpy, torch; print(torch.__version__, numpy.__version__)'"


@pytest.mark.parametrize("how", ["uv run --with", "PEP 723 script"])
def test_only_the_family_comes_from_the_variant_index(  # type: ignore[no-untyped-def]
    how: str, shims: Path, venv: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    # The variant index also serves numpy 1.26.4, as download.pytorch.org does; numpy must come
    # from the default index (2.1.2), torch from the variant index.
    env = shell_env([shims, real_bin(venv), Path("/usr/bin"), Path("/bin")], index_server, tmp_path)
    if how == "uv run --with":
        command = f"uv run --no-project --with torch==2.5.1 --with numpy {PRINT_BOTH}"
    else:
        (tmp_path / "both.py").write_text(
            "# /// script\n"
            '# dependencies = ["torch==2.5.1", "numpy"]\n'
            "# ///\n"
            "import numpy, torch\n"
            "print(torch.__version__, numpy.__version__)\n"
        )
        command = "uv run both.py"
    done = shell(command, env, cwd=tmp_path)
    assert done.stdout.split() == ["2.5.1+cu124", PYPI_NUMPY]
    assert not index_server.contacted("/pypi/simple/torch/")  # the family never looked elsewhere


def test_uv_tool_run_takes_only_the_family_from_the_variant_index(  # type: ignore[no-untyped-def]
    shims: Path, venv: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    env = shell_env([shims, real_bin(venv), Path("/usr/bin"), Path("/bin")], index_server, tmp_path)
    command = f"uv tool run --with torch==2.5.1 --with numpy --from fixture-lib {PRINT_BOTH}"
    done = shell(command, env, cwd=tmp_path)
    assert done.stdout.split() == ["2.5.1+cu124", PYPI_NUMPY]


def test_uv_pip_compile_takes_numpy_from_the_default_index(  # type: ignore[no-untyped-def]
    shims: Path, venv: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    (tmp_path / "requirements.in").write_text("torch==2.5.1\nnumpy\n")
    env = shell_env([shims, real_bin(venv), Path("/usr/bin"), Path("/bin")], index_server, tmp_path)
    shell("uv pip compile requirements.in -q -o requirements.txt", env, cwd=tmp_path)
    pinned = (tmp_path / "requirements.txt").read_text()
    assert "torch==2.5.1+cu124" in pinned
    assert f"numpy=={PYPI_NUMPY}" in pinned  # not the variant index's 1.26.4


def test_a_planted_family_name_never_comes_from_the_default_index(  # type: ignore[no-untyped-def]
    shims: Path, venv: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    # The default index offers torchvision and triton 99.0.0 (the torchtriton attack): the
    # family index answers for every family name, so uv never looks there for them.
    env = shell_env([shims, real_bin(venv), Path("/usr/bin"), Path("/bin")], index_server, tmp_path)
    show = "python -c 'import torchvision; print(torchvision.__version__)'"
    done = shell(f"uv run --no-project --with torch==2.5.1 --with torchvision {show}", env, cwd=tmp_path)
    assert done.stdout.strip() == "0.20.1+cu124"
    assert not index_server.contacted("/pypi/simple/torchvision/")
    assert not index_server.contacted("/pypi/simple/triton/")
