"""The shim's reading of command lines (``pip_gpu.shim.options``) and of pip's launcher
(``pip_gpu.shim.pip``), in process: what the real program would take each token to be."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pip_gpu.shim.options import Refused, names_family, parse_options
from pip_gpu.shim.pip import PIP_OPTIONS, pip_interpreter
from pip_gpu.shim.uv import parse_uv


def test_pip_options_take_values_attached_separate_or_abbreviated() -> None:
    parsed = parse_options(
        ["-rreqs.txt", "--index-url", "http://i", "--force-rein", "torch", "-c", "c.txt"], PIP_OPTIONS
    )
    assert parsed.options == [
        ("-r", "reqs.txt"),
        ("--index-url", "http://i"),
        ("--force-reinstall", None),
        ("-c", "c.txt"),
    ]
    assert parsed.positionals == ["torch"]


def test_uv_short_options_read_as_their_long_names() -> None:
    parsed = parse_uv(["-w", "torch", "--with=numpy", "python", "-c", "pass"], stop_at_positional=True)
    assert parsed.values("--with") == ["torch", "numpy"]
    assert parsed.positionals == ["python", "-c", "pass"]  # the command's own options stay its own


@pytest.mark.parametrize(
    ("requirements", "named"),
    [
        (["fixture-app"], False),
        (["numpy>=2.3", "pillow"], False),
        (["Torch==2.5.1"], True),
        (["torch_vision[extra]>=0.20"], False),  # not a family name: torchvision is
        (["TorchVision[extra]>=0.20"], True),
        (['torch; python_version >= "3.9"'], True),  # a marker: read by the requirements parser
        (["xformers @ https://example.invalid/xformers-0.0.29-py3-none-any.whl"], True),
    ],
)
def test_names_family_reads_names_as_pip_does(requirements: list[str], named: bool) -> None:
    assert names_family(requirements, (), ()) is named


def test_names_family_reads_requirements_files(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("numpy\n-r more.txt\n")
    (tmp_path / "more.txt").write_text("torchaudio==2.5.1\n")
    assert names_family((), [str(tmp_path / "requirements.txt")], ())
    (tmp_path / "pyproject.toml").write_text('[project]\ndependencies = ["torch"]\n')
    with pytest.raises(Refused, match="reads only requirements files"):
        names_family((), [str(tmp_path / "pyproject.toml")], ())


def test_pip_interpreter_is_read_from_pips_own_launcher(tmp_path: Path) -> None:
    # pip's launcher for a path too long for #!: the interpreter is on the /bin/sh exec line.
    launcher = tmp_path / "pip"
    launcher.write_text(
        "#!/bin/sh\n"
        f'\'\'\'exec\' "{sys.executable}" "$0" "$@"\n'
        "' '''\n"
        "# -*- coding: utf-8 -*-\n"
        "import re\n"
        "import sys\n"
        "from pip._internal.cli.main import main\n"
    )
    launcher.chmod(0o755)
    assert pip_interpreter(launcher) == Path(sys.executable)
