"""``--variant-index``: explain, install (real pip and uv), lock, sync and check PEP 825 variant
wheels from a torch-like index served on 127.0.0.1 (tests/support/variant_index.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.cli import assert_one_line_error, pip_gpu
from support.fake_nvml import A100
from support.index import fixture_env, make_venv, serve, site_packages
from support.variant_index import VariantIndex, build_variant_index, variant_index_fixture  # noqa: F401

PASCAL = ("--driver", "580.65.06", "--compute-capability", "6.1")
A100_535 = ("--driver", "535.104.05", "--compute-capability", "8.0")
B200 = ("--driver", "580.65.06", "--compute-capability", "10.0")
KEPLER = ("--driver", "470.57.02", "--compute-capability", "3.5")
HOSTS = [(PASCAL, "cu126"), (A100_535, "cu121"), (B200, "cu130")]


@pytest.fixture(name="env")
def env_fixture(variant_index: VariantIndex, tmp_path: Path) -> dict[str, str]:
    """pip and uv blind to this machine's configuration; other packages from a closed index."""
    environment = fixture_env(variant_index.server, tmp_path / "uv-cache")
    environment["PIP_INDEX_URL"] = environment["UV_DEFAULT_INDEX"] = variant_index.server.pypi_url
    return environment


def landed(python: Path) -> str:
    """The label the installed torch was built as (its own version.py)."""
    text = (site_packages(python) / "torch" / "version.py").read_text()
    return text.split('variant_label = "')[1].split('"')[0]


@pytest.mark.parametrize(("flags", "label"), HOSTS, ids=["pascal-580", "a100-535", "b200-580"])
def test_explain_chooses_the_label_that_fits_and_shows_why(
    variant_index: VariantIndex, env: dict[str, str], flags: tuple[str, ...], label: str
) -> None:
    done = pip_gpu("explain", "torch", "--variant-index", variant_index.url, *flags, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"torch 2.9.0 -> {label}   from {variant_index.url}")
    rows = {line.split()[1]: line for line in done.stdout.splitlines() if line.startswith("  2.9.0")}
    assert "CHOSEN" in rows[label] and "nvidia :: sm_arch" in rows[label]
    assert set(rows) == {"cu121", "cu126", "cu130", "(none)"}
    data = json.loads(
        pip_gpu("explain", "--json", "--variant-index", variant_index.url, *flags, env=env).stdout
    )
    assert data["variant_label"] == label
    assert data["wheel"]["filename"] == f"torch-2.9.0-py3-none-any-{label}.whl"


def test_explain_reasons_name_the_property_that_failed(
    variant_index: VariantIndex, env: dict[str, str]
) -> None:
    done = pip_gpu("explain", "torch", "--variant-index", variant_index.url, *PASCAL, env=env)
    cu130 = next(line for line in done.stdout.splitlines() if " cu130 " in line)
    assert " no " in cu130 and "GPU 0 (sm_61) not covered by 75_real" in cu130
    a100 = pip_gpu("explain", "torch", "--variant-index", variant_index.url, *A100_535, env=env)
    cu126 = next(line for line in a100.stdout.splitlines() if " cu126 " in line)
    assert "needs CUDA >= 12.6; driver 535.104.05 supports CUDA 12.2" in cu126


def test_explain_on_the_detected_host_reads_nvml(
    variant_index: VariantIndex, env: dict[str, str], host_env: object
) -> None:
    environment = {
        **host_env(driver="535.104.05", cuda=12020, gpus=[A100]),
        **{  # type: ignore[operator]
            k: v for k, v in env.items() if k.startswith(("PIP_", "UV_"))
        },
    }
    environment["PIP_GPU_VARIANT_INDEX"] = variant_index.url
    done = pip_gpu("explain", "--json", env=environment)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["variant_label"] == "cu121"
    assert data["host"]["nvidia_gpus"][0]["name"] == A100.name


def test_a_host_no_variant_fits_exits_2_with_the_reasons(
    variant_index: VariantIndex, env: dict[str, str]
) -> None:
    done = pip_gpu("explain", "torch", "--variant-index", variant_index.url, *KEPLER, env=env)
    assert done.returncode == 2
    assert "needs CUDA >= 12.1; driver 470.57.02 supports CUDA 11.4" in done.stdout
    assert "non-variant wheel: this host has an NVIDIA GPU" in done.stdout
    data = json.loads(
        pip_gpu("explain", "--json", "--variant-index", variant_index.url, *KEPLER, env=env).stdout
    )
    assert data["variant_label"] is None and "fits this host" in data["error"]


def test_a_host_without_gpu_takes_the_non_variant_wheel(
    variant_index: VariantIndex, env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "pyproject.toml").write_text(f'[tool.pip-gpu]\nvariant-index = "{variant_index.url}"\n')
    done = pip_gpu("explain", "--json", "--no-gpu", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["variant_label"] == ""


def test_install_and_sync_with_pip_replace_the_label_per_host(
    variant_index: VariantIndex, env: dict[str, str], tmp_path: Path
) -> None:
    python = make_venv(tmp_path / "venv", with_pip=True)
    for flags, label in (HOSTS[0], HOSTS[2], HOSTS[1]):
        done = pip_gpu(
            "install",
            "torch",
            "--installer",
            "pip",
            "--python",
            str(python),
            "--variant-index",
            variant_index.url,
            *flags,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        assert f"installed torch 2.9.0 variant {label}" in done.stderr
        assert landed(python) == label
    # and sync, with pip, from a lock (the same venv: a pip venv costs seconds on a busy machine)
    assert (
        pip_gpu("lock", "torch", "--variant-index", variant_index.url, env=env, cwd=tmp_path).returncode == 0
    )
    synced = pip_gpu("sync", "--installer", "pip", "--python", str(python), *PASCAL, env=env, cwd=tmp_path)
    assert synced.returncode == 0, synced.stderr
    assert landed(python) == "cu126"


def test_install_with_uv_into_a_venv_without_pip(
    variant_index: VariantIndex, env: dict[str, str], tmp_path: Path
) -> None:
    python = make_venv(tmp_path / "venv", with_pip=False)
    for flags, label in HOSTS:
        done = pip_gpu(
            "install",
            "torch==2.9.0",
            "--python",
            str(python),
            "--variant-index",
            variant_index.url,
            *flags,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        assert landed(python) == label


def test_install_refuses_when_no_variant_fits(
    variant_index: VariantIndex, env: dict[str, str], tmp_path: Path
) -> None:
    python = make_venv(tmp_path / "venv", with_pip=False)
    done = pip_gpu(
        "install", "torch", "--python", str(python), "--variant-index", variant_index.url, *KEPLER, env=env
    )
    assert_one_line_error(done, "no wheel of torch (torch 2.9.0) fits this host", "driver 470.57.02")
    assert not (site_packages(python) / "torch").exists()


def test_lock_then_sync_picks_the_label_per_host_and_check_verifies_it(
    variant_index: VariantIndex, env: dict[str, str], tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    done = pip_gpu("lock", "torch", "--variant-index", variant_index.url, *PASCAL, env=env, cwd=project)
    assert done.returncode == 0, done.stderr
    assert "this host takes cu126" in done.stderr
    lock = (project / "pylock.toml").read_text()
    assert "[packages.variants-json]" in lock and "torch-2.9.0-variants.json" in lock
    for label in ("cu121", "cu126", "cu130"):
        assert f"torch-2.9.0-py3-none-any-{label}.whl" in lock
    python = make_venv(tmp_path / "venv", with_pip=False)
    for flags, label in HOSTS:
        synced = pip_gpu("sync", "--python", str(python), *flags, env=env, cwd=project)
        assert synced.returncode == 0, synced.stderr
        assert landed(python) == label
        checked = pip_gpu("check", "--python", str(python), *flags, env=env, cwd=project)
        assert checked.returncode == 0, checked.stdout
        assert f"torch 2.9.0 variant {label}" in checked.stdout
    # cu130 is installed (the B200 sync): on the Pascal host it does not fit
    refused = pip_gpu("check", "--python", str(python), *PASCAL, env=env, cwd=project)
    assert refused.returncode == 1
    assert (
        "torch 2.9.0 variant cu130 does not fit this host: nvidia :: sm_arch: GPU 0 (sm_61)" in refused.stdout
    )
    data = json.loads(
        pip_gpu("check", "--json", "--python", str(python), *PASCAL, env=env, cwd=project).stdout
    )
    assert data["ok"] is False and data["installed"] == {"torch": "2.9.0 variant cu130"}
    # nothing fits: sync refuses and changes nothing
    none = pip_gpu("sync", "--python", str(python), *KEPLER, env=env, cwd=project)
    assert_one_line_error(none, "no locked wheel of torch 2.9.0 fits this host", "nothing was changed")
    assert landed(python) == "cu130"


def test_a_tampered_variants_json_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "index"
    build_variant_index(root)
    with serve(root) as server:
        url = server.base_url + "/whl/variant"
        project = tmp_path / "project"
        project.mkdir()
        assert pip_gpu("lock", "torch", "--variant-index", url, *PASCAL, env=env, cwd=project).returncode == 0
        metadata = root / "whl" / "variant" / "torch" / "torch-2.9.0-variants.json"
        document = json.loads(metadata.read_text())
        document["variants"]["cu130"]["nvidia"]["sm_arch"].append("60_real")  # now "fits" Pascal
        metadata.write_text(json.dumps(document))
        python = make_venv(tmp_path / "venv", with_pip=False)
        done = pip_gpu("sync", "--python", str(python), *PASCAL, env=env, cwd=project)
        assert_one_line_error(done, "torch-2.9.0-variants.json does not match the hash pylock.toml locks")
        assert not (site_packages(python) / "torch").exists()
        explained = pip_gpu("explain", "torch", "--variant-index", url, *PASCAL, env=env)
        assert_one_line_error(explained, "does not match the hash on the index page")


def test_the_flag_is_refused_twice_and_a_bad_url_is_bad_input(env: dict[str, str]) -> None:
    twice = pip_gpu("explain", "--variant-index", "http://a/", "--variant-index", "http://b/", env=env)
    assert twice.returncode == 2 and "given twice" in twice.stderr
    bad = pip_gpu("explain", "--variant-index", "ftp://x/", env=env)
    assert_one_line_error(bad, "is not an http(s) URL")


def test_only_the_family_comes_from_the_variant_index(
    variant_index: VariantIndex, env: dict[str, str]
) -> None:
    done = pip_gpu("lock", "torch", "numpy", "--variant-index", variant_index.url, env=env)
    assert_one_line_error(done, "numpy is not a family package")
