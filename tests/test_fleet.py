"""``pip-gpu fleet plan``: a GPU fleet from Kubernetes GPU Feature Discovery labels or detect
reports, one torch release for all of it, and the nodes nothing runs on."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support.cli import PLUGIN, assert_one_line_error, pip_gpu
from support.index import IndexServer, pip_env, uv_env

REPO = Path(__file__).resolve().parents[1]
GFD_NODES = REPO / "fixtures" / "fleet" / "gfd-nodes.json"  # A100/535, V100/470, H100/550, 5090/570, CPU
RECORDED_H200 = REPO / "fixtures" / "recorded" / "h200" / "detect.json"


def _env() -> dict[str, str]:
    env = {k: v for k, v in pip_env().items() if not k.startswith("PIP_GPU_")}
    env["PYTHONPATH"] = str(PLUGIN)
    return env


def _plan(*args: str, cwd: Path) -> tuple[int, dict[str, Any]]:
    done = pip_gpu("fleet", "plan", *args, "--python-version", "3.11", "--json", env=_env(), cwd=cwd)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def _variants(plan: dict[str, Any]) -> dict[str, Any]:
    return {node["name"]: node["variant"] for node in plan["nodes"]}


def test_each_node_gets_a_build_that_runs_and_the_5090_is_named_unserved(tmp_path: Path) -> None:
    rc, plan = _plan("torch==2.5.1", "--nodes", str(GFD_NODES), cwd=tmp_path)
    assert rc == 1  # some node is unserved
    assert plan["torch"] == "2.5.1"
    assert _variants(plan) == {
        "a100-535": "cu124",
        "v100-470": "cu118",  # driver 470 runs no CUDA 12 build
        "h100-550": "cu124",  # labels as major/minor/revision
        "rtx5090-570": None,  # sm_120: no torch 2.5 build has its kernels
        "cpu-pool-1": "cpu",
    }
    assert plan["variants"] == ["cu124", "cu118", "cpu"]
    [unserved] = [n for n in plan["nodes"] if n["variant"] is None]
    assert "sm_120" in unserved["reason"] and "not covered" in unserved["reason"]
    assert "use torch 2.13" in unserved["reason"]  # the ways out a fleet plan can take ...
    assert "--variant" not in unserved["reason"]  # ... and not fleet plan's missing --variant
    assert plan["schema_version"] == 1


def test_fewest_serves_the_same_nodes_with_cu118_and_cpu(tmp_path: Path) -> None:
    rc, plan = _plan("torch==2.5.1", "--nodes", str(GFD_NODES), "--fewest", cwd=tmp_path)
    assert rc == 1
    assert plan["variants"] == ["cu118", "cpu"]
    assert _variants(plan) == {
        "a100-535": "cu118",
        "v100-470": "cu118",
        "h100-550": "cu118",
        "rtx5090-570": None,
        "cpu-pool-1": "cpu",
    }


def test_an_open_torch_takes_the_newest_release_that_serves_every_node(tmp_path: Path) -> None:
    """The V100 on driver 470 runs CUDA 11.8 builds only; the 5090 needs sm_120 kernels: torch
    2.7 is the newest release with both, so the whole fleet is served."""
    rc, plan = _plan("torch", "--nodes", str(GFD_NODES), cwd=tmp_path)
    assert rc == 0, plan
    assert plan["torch"] == "2.7"
    assert all(node["variant"] for node in plan["nodes"])
    assert _variants(plan)["v100-470"] == "cu118"
    assert _variants(plan)["rtx5090-570"] == "cu128"


def test_detect_reports_are_nodes_too(tmp_path: Path) -> None:
    """A report recorded on a real H200 (driver 580, sm_90) beside the Kubernetes list."""
    rc, plan = _plan("torch==2.11.0", "--nodes", str(RECORDED_H200), "--nodes", str(GFD_NODES), cwd=tmp_path)
    nodes = _variants(plan)
    assert nodes[str(RECORDED_H200)] == "cu130"
    assert nodes["v100-470"] is None and rc == 1  # torch 2.11 has no build for driver 470 / sm_70


def test_a_gpu_node_with_incomplete_labels_is_unserved_not_guessed(tmp_path: Path) -> None:
    node = {
        "kind": "Node",
        "metadata": {
            "name": "half-labelled",
            "labels": {"nvidia.com/gpu.count": "2", "nvidia.com/gpu.product": "X"},
        },
    }
    path = tmp_path / "nodes.json"
    path.write_text(json.dumps({"kind": "List", "items": [node]}))
    rc, plan = _plan("torch==2.5.1", "--nodes", str(path), cwd=tmp_path)
    assert rc == 1
    [only] = plan["nodes"]
    assert only["variant"] is None and "labels are incomplete" in only["reason"]


def test_a_report_without_a_driver_version_is_unserved_in_words(tmp_path: Path) -> None:
    """A detect report whose driver could not be read: "driver unknown", never Python's None,
    and no way out through ``--variant``, which fleet plan does not have."""
    report = {"os": "linux", "arch": "x86_64", "python_version": "3.11", "driver_version": None}
    report["nvidia_gpus"] = [{"index": 0, "name": "NVIDIA A100", "compute_capability": "8.0"}]
    path = tmp_path / "no-driver.json"
    path.write_text(json.dumps(report))
    rc, plan = _plan("torch==2.5.1", "--nodes", str(path), cwd=tmp_path)
    [node] = plan["nodes"]
    assert rc == 1 and node["variant"] is None and node["gpu"] == "NVIDIA A100 x1 (sm_80), driver unknown"
    assert (
        node["reason"].startswith("the NVIDIA driver version is not known")
        and "--variant" not in node["reason"]
    )
    text = pip_gpu("fleet", "plan", "torch==2.5.1", "--nodes", str(path), env=_env(), cwd=tmp_path).stdout
    assert "driver unknown" in text and "None" not in text, text


def _amd_node(name: str, labels: dict[str, str], gpus: int = 1) -> dict[str, Any]:
    return {
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "status": {"capacity": {"amd.com/gpu": str(gpus)}},
    }


def test_amd_nodes_from_the_gpu_operators_labels_and_detect_reports(tmp_path: Path) -> None:
    """The AMD node labeller names no gfx target: its GC_X_Y_Z family or a known device ID gives it."""
    nodes = [
        _amd_node("mi300x", {"amd.com/gpu.family": "AI", "amd.com/gpu.device-id": "74a1"}, gpus=8),
        _amd_node("w7900", {"beta.amd.com/gpu.family.GC_11_0_0": "1", "beta.amd.com/gpu.device-id": "7448"}),
        _amd_node("strix", {"amd.com/gpu.family": "GC_11_5_1", "amd.com/gpu.product-name": "Radeon_8060S"}),
        _amd_node("mystery", {"amd.com/gpu.family": "AI", "amd.com/gpu.device-id": "ffff"}),
    ]
    path = tmp_path / "nodes.json"
    path.write_text(json.dumps({"kind": "List", "items": nodes}))
    detect = pip_gpu("detect", "--json", "--amd-gfx", "gfx90a", "--platform", "linux", env=_env())
    report = tmp_path / "mi210.json"
    report.write_text(detect.stdout)
    rc, plan = _plan("torch==2.5.1", "--nodes", str(path), "--nodes", str(report), cwd=tmp_path)
    assert rc == 1
    assert _variants(plan) == {
        "mi300x": "rocm6.2",  # 74a1: MI300X, gfx942
        "w7900": "rocm6.2",  # graphics core 11.0.0: gfx1100
        "strix": "cpu",  # gfx1151 is in no ROCm build of torch 2.5
        "mystery": None,  # no gfx target to decide by: unserved, not guessed
        str(report): "rocm6.2",
    }
    gpu = {node["name"]: node["gpu"] for node in plan["nodes"]}
    assert gpu["mi300x"] == "AMD Instinct MI300X x8 (gfx942)" and "(gfx1151)" in gpu["strix"]
    [mystery] = [n for n in plan["nodes"] if n["name"] == "mystery"]
    assert "name no gfx target" in mystery["reason"]


def test_text_output_names_the_release_the_variants_and_the_unserved(tmp_path: Path) -> None:
    done = pip_gpu(
        "fleet",
        "plan",
        "torch==2.5.1",
        "--nodes",
        str(GFD_NODES),
        "--python-version",
        "3.11",
        env=_env(),
        cwd=tmp_path,
    )
    assert done.returncode == 1
    first, *rest = done.stdout.splitlines()
    assert first == "torch 2.5.1: cu124, cu118, cpu"
    assert rest[-1] == "1 node(s) unserved: rtx5090-570"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("not json", "cannot read the node list"),
        ('{"kind": "List", "items": []}', "no nodes"),
        ('[{"hello": 1}]', "neither a Kubernetes Node"),
        (
            '{"kind": "Node", "metadata": {"name": "n", "labels": {"nvidia.com/gpu.compute.major": "x", '
            '"nvidia.com/gpu.compute.minor": "0", "nvidia.com/cuda.driver-version.full": "535.1.1"}}}',
            "node n",
        ),
    ],
)
def test_bad_node_lists_are_one_line_errors(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "nodes.json"
    path.write_text(content)
    done = pip_gpu("fleet", "plan", "--nodes", str(path), env=_env(), cwd=tmp_path)
    assert_one_line_error(done, needle)


def test_a_missing_node_file_is_a_usage_error(tmp_path: Path) -> None:
    done = pip_gpu("fleet", "plan", "--nodes", str(tmp_path / "absent.json"), env=_env(), cwd=tmp_path)
    assert_one_line_error(done, "absent.json")


def test_an_unreachable_variant_index_is_noted_once(tmp_path: Path) -> None:
    # issue 25: explain says it decided from the knowledge file; fleet plan said nothing
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        index = f"http://127.0.0.1:{closed.getsockname()[1]}/whl"
    env = {**_env(), "PIP_GPU_PYTORCH_INDEX": index}
    done = pip_gpu("fleet", "plan", "torch==2.5.1", "--nodes", str(GFD_NODES), "--python-version", "3.11",
                   "--json", env=env, cwd=tmp_path)  # fmt: skip
    plan = json.loads(done.stdout)
    assert (done.returncode, plan["torch"]) == (1, "2.5.1")  # decided all the same
    [note] = plan["notes"]
    assert note.startswith(f"could not read what {index}/cu124 carries (cannot reach {index}/cu124/torch/")
    assert note.endswith(", nor 2 other variant indexes; the plan is decided from the knowledge file")
    assert done.stderr.splitlines() == [f"pip-gpu: note: {note}"]


def test_a_fleet_nothing_runs_on_has_no_release(tmp_path: Path) -> None:
    doc = json.loads(GFD_NODES.read_text())
    doc["items"] = [n for n in doc["items"] if n["metadata"]["name"] == "rtx5090-570"]
    path = tmp_path / "nodes.json"
    path.write_text(json.dumps(doc))
    rc, plan = _plan("torch==2.5.1", "--nodes", str(path), cwd=tmp_path)
    assert (rc, plan["torch"], plan["variants"]) == (1, None, [])
    assert "the newest release with a build that runs here" in plan["nodes"][0]["reason"]  # the way out


def test_lock_fleet_writes_exactly_the_planned_variants(fixture_index: IndexServer, tmp_path: Path) -> None:
    """``lock --fleet`` resolves the plan's variants (real uv, the fixture index) and nothing else."""
    env = {**_env(), **uv_env(tmp_path / "uv-cache"), "UV_DEFAULT_INDEX": fixture_index.pypi_url}
    args = ["lock", "torch==2.5.1", "--fleet", str(GFD_NODES), "--python-version", "3.11"]
    done = pip_gpu(*args, "--pytorch-index", fixture_index.pytorch_url, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.glob("pylock.*.toml")) == [
        "pylock.cpu.toml",
        "pylock.cu118.toml",
        "pylock.cu124.toml",
    ]
    assert "node rtx5090-570 is not served by torch 2.5.1" in done.stderr
    for variant in ("cpu", "cu118", "cu124"):
        text = (tmp_path / f"pylock.{variant}.toml").read_text()
        assert f'version = "2.5.1+{variant}"' in text


def test_lock_fleet_refuses_an_explicit_variant_list(tmp_path: Path) -> None:
    done = pip_gpu("lock", "torch", "--fleet", str(GFD_NODES), "--variants", "cpu", env=_env(), cwd=tmp_path)
    assert_one_line_error(done, "--fleet chooses the variants")
    assert not list(tmp_path.glob("pylock.*"))


# --- the container recipe ------------------------------------------------------------------

DOCKERFILE = REPO / "fixtures" / "fleet" / "Dockerfile"


def _dockerfile() -> tuple[dict[str, str], list[str]]:
    """The recipe's ARG defaults and RUN lines, as Docker reads them (no continuation lines)."""
    args: dict[str, str] = {}
    runs: list[str] = []
    for line in DOCKERFILE.read_text().splitlines():
        keyword, _, rest = line.partition(" ")
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "RUN":
            runs.append(rest)
    return args, runs


def test_the_container_recipe_builds_each_node_pool_without_a_gpu(
    fixture_index: IndexServer, tmp_path: Path
) -> None:
    """The Dockerfile's RUN lines, run as they are (bash, the ARGs as environment variables):
    pip-gpu from this checkout, then ``sync`` of the fleet's locks for an A100 pool and a CPU
    pool. Each environment gets the lock of the build that runs on its nodes."""
    app = tmp_path / "app"
    app.mkdir()
    env = {**_env(), **uv_env(tmp_path / "uv-cache"), "UV_DEFAULT_INDEX": fixture_index.pypi_url}
    env.pop("PYTHONPATH")  # the recipe's own pip-gpu runs, not this checkout's sources
    lock = ["lock", "torch==2.5.1", "--fleet", str(GFD_NODES), "--python-version", "3.11"]
    done = pip_gpu(
        *lock, "--pytorch-index", fixture_index.pytorch_url, env=_env() | env, cwd=app, timeout=300
    )
    assert done.returncode == 0, done.stderr

    defaults, runs = _dockerfile()
    assert len(runs) == 3
    tool = tmp_path / "tool"
    for pool, facts, variant in (
        ("a100", {"PIP_GPU_DRIVER": "535.104.05", "PIP_GPU_COMPUTE_CAPABILITY": "8.0"}, "cu124"),
        ("cpu", {"PIP_GPU_NO_GPU": "1"}, "cpu"),
    ):
        build_args = {
            **defaults,
            "PIP_GPU": str(REPO),
            "TOOL": str(tool),
            "APP_VENV": str(tmp_path / f"venv-{pool}"),
            "APP": str(app),
            **facts,
        }
        steps = runs if not tool.exists() else runs[1:]  # one tool install serves both pools
        for step in steps:
            done = subprocess.run(
                ["bash", "-c", step],
                env={**env, **build_args},
                cwd=app,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert done.returncode == 0, f"{step}\n{done.stdout}\n{done.stderr}"
        python = tmp_path / f"venv-{pool}" / "bin" / "python"
        version = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('torch'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert version == f"2.5.1+{variant}"
