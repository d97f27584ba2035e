"""Plain requirements (a name and version specifiers) are read without packaging.requirements,
and a decision made from them is the one the full reading makes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from pip_gpu.decide.plan import decide_for
from pip_gpu.host import HostProfile, NvidiaGpu
from pip_gpu.pins import canonical_name, exact_version_in, plain_pins

PLUGIN = Path(__file__).resolve().parents[1] / "plugin"


@pytest.mark.parametrize(
    "text",
    [
        "torch",
        "torch==2.5.1",
        "torch>=2.4",
        "Torch_Vision >= 0.20 , <0.21",
        "torch==2.5.1+cu121",
        "torch===2.5",
    ],
)
def test_a_plain_pin_reads_as_packaging_reads_it(text: str) -> None:
    pins = plain_pins([text])
    assert pins is not None
    [(name, specifier, written)] = pins
    requirement = Requirement(text)
    assert (name, specifier, written) == (requirement.name, requirement.specifier, str(requirement))


@pytest.mark.parametrize(
    "text",
    [
        "torch[opt]==2.5.1",
        "torch==2.5.1; python_version>'3'",
        "torch @ https://example/torch.whl",
        "./torch-2.5.1-cp311-cp311-linux_x86_64.whl",
        "torch>=2.4,",
        "torch==2.5.*.1",
        "torch 2.5",
        "-r req.txt",
        "",
    ],
)
def test_anything_else_is_left_to_the_full_parser(text: str) -> None:
    assert plain_pins(["torch", text]) is None


def test_names_normalise_as_packaging_does() -> None:
    for name in ("Torch", "torch_vision", "torch.vision", "torch--_.audio", "NVIDIA-cuDNN_cu12"):
        assert canonical_name(name) == canonicalize_name(name)
    assert str(exact_version_in(Requirement("torch==2.5.1+cu121").specifier)) == "2.5.1+cu121"
    assert exact_version_in(Requirement("torch==2.5.*").specifier) is None


def _a100() -> HostProfile:
    gpu = NvidiaGpu(index=0, name="A100", compute_capability=(8, 0), source="test")
    return HostProfile(
        os="linux", arch="x86_64", python_version="3.11", driver_version="535.104.05", nvidia_gpus=(gpu,)
    )


@pytest.mark.parametrize(
    "args",
    [
        ["torch"],
        ["torch==2.5.1"],
        ["torch>=2.4", "torchvision"],
        ["torch==2.5.1+cu121"],
        ["numpy", "torch<2.6"],
    ],
)
def test_a_plain_request_decides_as_the_full_reading_does(args: list[str], tmp_path: Path) -> None:
    """The same requirements, once plain and once with an (empty) constraints file that sends
    them through the full reading: the same decision, constraints and lines."""
    empty = tmp_path / "constraints.txt"
    empty.write_text("")
    plain = decide_for(args, [], _a100(), cwd=tmp_path, offline=True)
    full = decide_for(args, [], _a100(), cwd=tmp_path, offline=True, constraint_files=[str(empty)])
    assert plain.decision == full.decision
    assert plain.torch_constraints == full.torch_constraints
    assert plain.lines == full.lines


def test_a_plain_explain_loads_no_requirement_parser(tmp_path: Path) -> None:
    """The decision path stays light: ``explain torch==2.5.1`` imports no packaging.requirements."""
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['pip-gpu', 'explain', 'torch==2.5.1', '--json', '--offline',"
        " '--driver', '535.104.05', '--compute-capability', '8.0']\n"
        "try:\n    runpy.run_module('pip_gpu', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = sorted(m for m in sys.modules if m in ('packaging.requirements', 'packaging.markers',"
        " 'packaging.tags', 'pip_gpu.requirements', 'pip_gpu.decide.resolution'))\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PYTHONPATH": str(PLUGIN), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '"variant": "cu124"' in out
    assert "HEAVY []" in out
