"""A torch release newer than the knowledge file is learned from the variant indexes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support.index import installed_versions, make_venv, pip_env, uv_env

from pip_gpu.decide.discover import releases_from_files
from pip_gpu.decide.index import IndexFile

PLUGIN = Path(__file__).resolve().parents[1] / "plugin"


def test_wheel_names_say_versions_platforms_and_pythons() -> None:
    names = [
        "torch-2.15.0+cu130-cp311-cp311-manylinux_2_28_x86_64.whl",
        "torch-2.15.0+cu130-cp312-cp312-manylinux_2_28_aarch64.whl",
        "torch-2.15.0+cu130-cp312-cp312-win_amd64.whl",
        "torch-2.15.1+cu130-cp313-cp313-manylinux_2_28_x86_64.whl",
        "torch-2.15.1+cpu-cp313-cp313-manylinux_2_28_x86_64.whl",  # another variant's label
        "torch-2.16.0.dev20261101+cu130-cp313-cp313-manylinux_2_28_x86_64.whl",  # nightly
        "not-a-wheel.tar.gz",
    ]
    found = releases_from_files([IndexFile(n, n, None, None) for n in names], "cu130")
    assert found == {
        "2.15": {
            "versions": ["2.15.0", "2.15.1"],
            "python": ["3.11", "3.12", "3.13"],
            "platforms": ["linux-aarch64", "linux-x86_64", "windows-x86_64"],
        }
    }


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip_gpu", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_unknown_release_is_discovered_decided_and_installed(  # type: ignore[no-untyped-def]
    old_knowledge: Path, tmp_path: Path, index_server
) -> None:
    env = {**pip_env(), **uv_env(tmp_path / "uv-cache")}
    env.update(
        PYTHONPATH=str(PLUGIN),
        PIP_GPU_KNOWLEDGE=str(old_knowledge),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        UV_DEFAULT_INDEX=index_server.pypi_url,
    )
    host = (
        "--pytorch-index",
        index_server.pytorch_url,
        "--driver",
        "560.35.03",
        "--compute-capability",
        "8.0",
    )
    done = run("explain", "torch==2.6.0", *host, "--json", env=env)
    assert done.returncode == 0, done.stderr
    decision = json.loads(done.stdout)
    assert (decision["variant"], decision["torch"]) == ("cu126", "2.6.0")
    chosen = next(c for c in decision["candidates"] if c["variant"] == "cu126")
    assert chosen["ok"]
    assert index_server.contacted("/whl/cu126/torch/")

    index_server.clear_requests()  # the second time, the cache answers
    assert json.loads(run("explain", "torch==2.6.0", *host, "--json", env=env).stdout)["variant"] == "cu126"
    assert not index_server.contacted("/whl/")

    python = make_venv(tmp_path / "venv", with_pip=False)
    done = run("install", "torch==2.6.0", "--python", str(python), *host, env=env)
    assert done.returncode == 0, done.stderr
    assert installed_versions(python)["torch"] == "2.6.0+cu126"


# --- freshness: an open request sees releases newer than the knowledge file ------------------


def _explain(env: dict[str, str], index_url: str, *extra: str) -> dict[str, object]:
    host = ("--pytorch-index", index_url, "--driver", "560.35.03", "--compute-capability", "8.0")
    done = run("explain", "torch", *host, "--json", *extra, env=env)
    assert done.returncode == 0, done.stderr
    data: dict[str, object] = json.loads(done.stdout)
    return data


def _old_knowledge_env(old_knowledge: Path, tmp_path: Path) -> dict[str, str]:
    env = {**pip_env(), "PYTHONPATH": str(PLUGIN), "PIP_GPU_KNOWLEDGE": str(old_knowledge)}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env.pop("PIP_GPU_OFFLINE", None)
    return env


def test_open_request_takes_a_newer_release_from_the_index_with_a_note(  # type: ignore[no-untyped-def]
    old_knowledge: Path, tmp_path: Path, index_server
) -> None:
    """The knowledge file stops at torch 2.4; the index serves 2.5 and 2.6: plain `torch` gets 2.6."""
    env = _old_knowledge_env(old_knowledge, tmp_path)
    decision = _explain(env, index_server.pytorch_url)
    # Driver 560 runs CUDA <= 12.6: the host's variant (cu124) and the next ones are asked.
    assert (decision["torch"], decision["variant"]) == ("2.6", "cu126")
    assert index_server.contacted("/whl/cu124/torch/") and index_server.contacted("/whl/cu126/torch/")
    (note,) = [n for n in decision["notes"] if "newer than pip-gpu's knowledge" in n]  # type: ignore[union-attr]
    assert note.startswith(
        "torch 2.6 is newer than pip-gpu's knowledge (newest 2.4): found on the cu126 index"
    )
    assert "architectures assumed from torch 2.4 cu124 (not confirmed)" in note

    index_server.clear_requests()  # answered from the cache for hours
    assert _explain(env, index_server.pytorch_url)["torch"] == "2.6"
    assert not index_server.contacted("/whl/")
    text = run("explain", "torch", "--pytorch-index", index_server.pytorch_url, "--driver", "560.35.03",
               "--compute-capability", "8.0", env=env).stdout  # fmt: skip
    assert "Note: torch 2.6 is newer than pip-gpu's knowledge" in text


def test_unreachable_index_still_decides_from_the_file(  # type: ignore[no-untyped-def]
    old_knowledge: Path, tmp_path: Path, index_server
) -> None:
    env = _old_knowledge_env(old_knowledge, tmp_path)
    env["PIP_GPU_FRESHNESS_TIMEOUT"] = "1"
    index_server.fail("/whl/cu124/", "hang", hang_s=20)
    decision = _explain(env, index_server.pytorch_url)
    assert (decision["torch"], decision["variant"]) == ("2.4", "cu124")
    (note,) = decision["notes"]  # type: ignore[misc]
    assert note.startswith("could not ask the index for a torch release newer than 2.4 (")
    assert "did not answer within 1 s" in note and note.endswith("decided from the knowledge file")

    index_server.clear_requests()  # a silent index is not asked again at once
    assert _explain(env, index_server.pytorch_url)["variant"] == "cu124"
    assert not index_server.contacted("/whl/")


def test_offline_flag_and_setting_skip_the_question(  # type: ignore[no-untyped-def]
    old_knowledge: Path, tmp_path: Path, index_server
) -> None:
    env = _old_knowledge_env(old_knowledge, tmp_path)
    flagged = _explain(env, index_server.pytorch_url, "--offline")
    assert flagged["torch"] == "2.4"
    assert flagged["notes"] == [
        "did not ask the index for a torch release newer than 2.4 (offline); decided from the knowledge file"
    ]
    assert _explain({**env, "PIP_GPU_OFFLINE": "1"}, index_server.pytorch_url)["notes"] == flagged["notes"]
    assert not index_server.contacted("/whl/")


def test_a_pinned_request_reads_only_the_decided_index_once(  # type: ignore[no-untyped-def]
    old_knowledge: Path, tmp_path: Path, index_server
) -> None:
    env = _old_knowledge_env(old_knowledge, tmp_path)
    host = (
        "--pytorch-index",
        index_server.pytorch_url,
        "--driver",
        "560.35.03",
        "--compute-capability",
        "8.0",
    )
    done = run("explain", "torch==2.4.1", *host, "--json", env=env)
    assert json.loads(done.stdout)["notes"] == []
    # No look for newer releases; only whether the decided index carries torch 2.4.1 (it does).
    assert [r.path for r in index_server.requests if r.path.startswith("/whl/")] == ["/whl/cu124/torch/"]
    index_server.clear_requests()  # cached like the freshness look-up
    assert json.loads(run("explain", "torch==2.4.1", *host, "--json", env=env).stdout)["variant"] == "cu124"
    assert not index_server.contacted("/whl/")


def test_a_pinned_request_on_an_unreachable_index_decides_from_the_file_with_a_note(
    old_knowledge: Path, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        index = f"http://127.0.0.1:{closed.getsockname()[1]}/whl"
    env = _old_knowledge_env(old_knowledge, tmp_path)
    host = ("--pytorch-index", index, "--driver", "560.35.03", "--compute-capability", "8.0")
    done = run("explain", "torch==2.4.1", *host, "--json", env=env)
    decision = json.loads(done.stdout)
    assert (done.returncode, decision["variant"]) == (0, "cu124")
    (note,) = decision["notes"]
    assert note.startswith(f"could not read what {index}/cu124 carries (cannot reach {index}/cu124/torch/")
    assert note.endswith("; decided from the knowledge file")


def test_unknown_future_variant_is_learned(tmp_path: Path) -> None:
    """A driver that runs CUDA 13.4 makes pip-gpu ask cu133 and cu134 too, and cu134 has torch 2.16."""
    from pip_gpu.decide.discover import look_for_newer, with_releases
    from pip_gpu.decide.plan import _variants_to_ask
    from pip_gpu.decide.rules import decide, request_from_requirements
    from pip_gpu.host import HostProfile, NvidiaGpu
    from pip_gpu.knowledge import load_knowledge
    from pip_gpu.variant import Variant

    served = {
        "cu132": ["torch-2.15.0+cu132-cp312-cp312-manylinux_2_28_x86_64.whl"],
        "cu134": [
            "torch-2.16.0+cu134-cp312-cp312-manylinux_2_28_x86_64.whl",
            "torch-2.16.0+cu134-cp314-cp314t-manylinux_2_28_x86_64.whl",
        ],
    }
    asked: list[str] = []

    def fetch(url: str) -> list[IndexFile]:
        variant = url.rstrip("/").split("/")[-2]
        asked.append(variant)
        return [IndexFile(n, n, None, ">=3.11") for n in served.get(variant, [])]  # 404: no files

    knowledge = load_knowledge()
    host = HostProfile(
        os="linux",
        arch="x86_64",
        python_version="3.12",
        driver_version="615.20.01",
        cuda_driver_version="13.4",
        nvidia_gpus=(NvidiaGpu(0, "NVIDIA B200", (10, 0), "test"),),
    )
    variants = _variants_to_ask(Variant("cu132"), host)
    assert variants == ["cu132", "cu133", "cu134"]
    answer = look_for_newer(
        knowledge, "https://mirror.example/whl", variants, fetch=fetch, cache_dir=tmp_path
    )
    assert answer.answered and asked == ["cu132", "cu133", "cu134"]
    (release,) = answer.releases
    assert (release.torch, release.python) == ("2.16", ("3.12", "3.14t"))
    (build,) = release.builds
    assert (build.variant, build.confidence) == ("cu134", "unconfirmed")
    assert build.sass == ((7, 5), (8, 0), (8, 6), (9, 0), (10, 0), (12, 0))  # from 2.15 cu132
    assert "architectures assumed from torch 2.15 cu132" in build.source

    request = request_from_requirements([], knowledge)
    decision = decide(request, host, with_releases(knowledge, answer.releases))
    assert (decision.torch, decision.variant) == ("2.16", "cu134")


def test_an_unconfirmed_row_is_taken_once_its_index_serves_it(tmp_path: Path) -> None:
    """2.15 rocm7.2 is marked likely wrong: offline (or where the index lacks it) open torch on
    gfx1100 takes 2.14's confirmed rocm7.2; an index that serves 2.15 rocm7.2 decides for it."""
    from support.index import serve

    wheel = "torch-2.15.0+rocm7.2-cp312-cp312-manylinux_2_28_x86_64.whl"
    page = tmp_path / "index" / "whl" / "rocm7.2" / "torch" / "index.html"
    page.parent.mkdir(parents=True)
    page.write_text(f'<html><body><a href="/whl/rocm7.2/{wheel}">{wheel}</a></body></html>')
    files = [{"filename": wheel, "url": f"/whl/rocm7.2/{wheel}", "hashes": {}}]
    page.with_name("index.json").write_text(
        json.dumps({"meta": {"api-version": "1.1"}, "name": "torch", "files": files})
    )
    older = "torch-2.14.1+rocm7.2-cp312-cp312-manylinux_2_28_x86_64.whl"
    _served_torch(tmp_path / "index", "mirror/rocm7.2", [older])  # a mirror with 2.14 only
    (tmp_path / "index" / "pypi").mkdir()

    def explain(index: str, cache: str, *extra: str) -> dict[str, object]:
        env = {**pip_env(), "PYTHONPATH": str(PLUGIN), "XDG_CACHE_HOME": str(tmp_path / cache)}
        args = ("explain", "torch", "--amd-gfx", "gfx1100", "--python-version", "3.12", "--json", *extra)
        done = run(*args, "--pytorch-index", index, env=env)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    with serve(tmp_path / "index") as server:
        served = explain(server.pytorch_url, "served")
        assert (served["torch"], served["variant"]) == ("2.15", "rocm7.2")
        taken = (
            f"torch 2.15 rocm7.2 is not confirmed in pip-gpu's knowledge, but {server.pytorch_url}/rocm7.2"
        )
        assert f"{taken} serves it" in served["notes"]  # type: ignore[operator]
        offline = explain(server.pytorch_url, "offline", "--offline")
        assert (offline["torch"], offline["variant"]) == ("2.14", "rocm7.2")
        assert any("torch 2.15 rocm7.2 is not confirmed" in n for n in offline["notes"])  # type: ignore[union-attr]
        lacking = explain(server.pytorch_url + "/mirror", "lacking")
        assert (lacking["torch"], lacking["variant"]) == ("2.14", "rocm7.2")
        assert any(
            n.endswith("/mirror/rocm7.2 does not serve torch 2.15 for linux-x86_64") for n in lacking["notes"]
        )  # type: ignore[union-attr]


# --- a CUDA version the knowledge file lacks, decided by rule (issue 23) ------------------------


def _served_torch(root: Path, variant: str, filenames: list[str]) -> None:
    """A variant folder with a torch page (PEP 691) listing these wheels: all a decision reads."""
    page = root / "whl" / variant / "torch"
    page.mkdir(parents=True)
    files = [{"filename": n, "url": f"/whl/{variant}/{n}", "hashes": {}} for n in filenames]
    (page / "index.json").write_text(
        json.dumps({"meta": {"api-version": "1.1"}, "name": "torch", "files": files}), encoding="utf-8"
    )


def test_a_cu134_folder_with_an_unknown_torch_is_decided_for_an_r615_host(tmp_path: Path) -> None:
    from pip_gpu.knowledge import load_knowledge

    """The knowledge file has neither torch 2.16 nor a CUDA 13.4 row; the index's cu134 folder
    has torch 2.16: decided by rule (13.x needs the R580 branch), with notes that say so."""
    from support.index import serve

    shipped = PLUGIN / "pip_gpu" / "data" / "knowledge.json"
    data = json.loads(shipped.read_text())
    data["cuda_drivers"] = [row for row in data["cuda_drivers"] if row["cuda"] not in ("13.4", "13.5")]
    knowledge = tmp_path / "knowledge.json"
    knowledge.write_text(json.dumps(data))
    python = f"cp3{sys.version_info[1]}"
    root = tmp_path / "index"
    _served_torch(root, "cu134", [f"torch-2.16.0+cu134-{python}-{python}-manylinux_2_28_x86_64.whl"])
    _served_torch(root, "cu132", [f"torch-2.15.0+cu132-{python}-{python}-manylinux_2_28_x86_64.whl"])
    (root / "pypi").mkdir()
    env = {**pip_env(), "PYTHONPATH": str(PLUGIN), "PIP_GPU_KNOWLEDGE": str(knowledge)}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    with serve(root) as server:
        host = (
            "--pytorch-index",
            server.pytorch_url,
            "--driver",
            "615.71.09",
            "--compute-capability",
            "10.0",
        )
        done = run("explain", "torch", *host, "--json", env=env)
    assert done.returncode == 0, done.stdout
    decision = json.loads(done.stdout)
    assert (decision["torch"], decision["variant"]) == ("2.16", "cu134")
    notes = "\n".join(decision["notes"])
    assert "torch 2.16 is newer than pip-gpu's knowledge (newest 2.15): found on the cu134 index" in notes
    r580 = load_knowledge().minimum_driver_for_major(13, "linux")  # the R580 branch, as the file says
    assert (
        f"CUDA 13.4 is not in pip-gpu's knowledge: the driver it needs (>= {r580}) is inferred from the "
        "rule for CUDA 13.x (minor-version compatibility), not confirmed"
    ) in notes


def test_a_cuda_major_the_file_does_not_know_is_refused_with_a_reason() -> None:
    from pip_gpu.decide.rules import build_runs_on, minimum_driver_of_major
    from pip_gpu.host import HostProfile, NvidiaGpu
    from pip_gpu.knowledge import Build, load_knowledge

    knowledge = load_knowledge()
    host = HostProfile(
        os="linux",
        arch="x86_64",
        python_version="3.12",
        driver_version="700.10.01",
        nvidia_gpus=(NvidiaGpu(0, "NVIDIA B200", (10, 0), "test"),),
    )
    r580 = knowledge.minimum_driver_for_major(13, "linux")
    assert r580 is not None and minimum_driver_of_major(knowledge, "13.9", "linux") == r580
    assert minimum_driver_of_major(knowledge, "14.0", "linux") is None
    build = Build("cu140", "linux-x86_64", ((10, 0),), None, None, "unconfirmed", "test")
    assert build_runs_on(build, host, knowledge) == (
        False,
        "CUDA 14.0 is of a CUDA major version pip-gpu does not know, so the driver it needs "
        "cannot be inferred",
    )
