"""``--variant-index``: explain, install (real pip and uv), lock, sync and check PEP 825 variant
wheels from a torch-like index served on 127.0.0.1 (tests/support/variant_index.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib
from support.cli import assert_one_line_error, pip_gpu
from support.fake_nvml import A100
from support.index import fixture_env, make_venv, serve, site_packages
from support.variant_index import (  # noqa: F401
    PLAIN_PROJECT,
    VariantIndex,
    build_variant_index,
    variant_index_fixture,
)

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
    done = pip_gpu(
        "lock", "torch", "--json", "--variant-index", variant_index.url, *PASCAL, env=env, cwd=project
    )
    assert done.returncode == 0, done.stderr
    assert "this host takes cu126" in done.stderr
    (written,) = json.loads(done.stdout)["locks"]
    assert written["packages"][0]["variant_label"] == "cu126"
    assert written["packages"][0]["variant_labels"] == ["", "cu121", "cu126", "cu130"]
    lock = (project / "pylock.toml").read_text()
    assert "[packages.variants-json]" in lock and "torch-2.9.0-variants.json" in lock
    for label in ("cu121", "cu126", "cu130"):
        assert f"torch-2.9.0-py3-none-any-{label}.whl" in lock
    python = make_venv(tmp_path / "venv", with_pip=False)
    would = pip_gpu("sync", "--dry-run", "--python", str(python), *PASCAL, env=env, cwd=project)
    assert would.returncode == 0, would.stderr
    assert "would change:\n  - install torch 2.9.0 variant cu126\n  - install tinyutil 1.0" in would.stdout
    assert not (site_packages(python) / "torch").exists()
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
    assert data["variants"][0]["best"] == "cu126" and data["fix"].startswith("pip-gpu sync")
    # the same venv after a driver downgrade: the label, and the property that no longer fits
    old_driver = pip_gpu("check", "--python", str(python), "--driver", "470.57.02", env=env, cwd=project)
    assert old_driver.returncode == 1
    assert (
        "torch 2.9.0 variant cu130 does not fit this host: nvidia :: cuda_version_lower_bound :: 13.0 "
        "needs CUDA >= 13.0; driver 470.57.02 supports CUDA 11.4" in old_driver.stdout
    )
    assert "fix: pip-gpu sync" in old_driver.stdout  # no GPU given: the non-variant wheel fits
    data = json.loads(
        pip_gpu("check", "--json", "--python", str(python), *KEPLER, env=env, cwd=project).stdout
    )
    (torch,) = data["variants"]
    assert torch["variant_label"] == "cu130" and torch["fits"] is False and torch["best"] is None
    assert [f["feature"] for f in torch["failing"]] == ["cuda_version_lower_bound", "sm_arch"]
    assert data["fix"].startswith("no locked label fits this host: upgrade the NVIDIA driver")
    planned = json.loads(
        pip_gpu("sync", "--dry-run", "--json", "--python", str(python), *PASCAL, env=env, cwd=project).stdout
    )
    assert planned["changes"] == ["torch 2.9.0 variant cu130 -> 2.9.0 variant cu126"]
    assert planned["dry_run"] is True and landed(python) == "cu130"
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
    done = pip_gpu("lock", PLAIN_PROJECT, "--variant-index", variant_index.url, env=env)
    assert_one_line_error(done, "--variant-index: no torch-family package in the request")
    flags = pip_gpu("lock", "torch", "--variant-index", variant_index.url, "--variants", "cu1", "-U", env=env)
    assert_one_line_error(flags, "--variants, --upgrade does not apply")


# --- install: --dry-run, -r and -c ------------------------------------------------------------


def test_a_dry_run_shows_the_label_and_the_runs_and_installs_nothing(
    variant_index: VariantIndex, env: dict[str, str], tmp_path: Path
) -> None:
    python = make_venv(tmp_path / "venv", with_pip=False)
    (tmp_path / "requirements.txt").write_text(f"torch==2.9.0\n{PLAIN_PROJECT}\n")
    args = ("install", "-r", "requirements.txt", "--python", str(python))
    args += ("--variant-index", variant_index.url)
    done = pip_gpu(*args, "--dry-run", *PASCAL, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    wheel = f"{variant_index.url}/torch/torch-2.9.0-py3-none-any-cu126.whl"
    assert f"torch 2.9.0 variant cu126: {wheel}" in done.stdout
    assert "torch @ file://$d/torch-2.9.0-py3-none-any.whl" in done.stdout
    assert PLAIN_PROJECT in done.stdout  # the rest, in the requirements file the run reads
    data = json.loads(pip_gpu(*args, "--dry-run", "--json", *A100_535, env=env, cwd=tmp_path).stdout)
    assert data["dry_run"] is True and data["variant_label"] == "cu121" and data["schema_version"]
    (command,) = data["commands"]
    assert command["argv"][:3] == [command["argv"][0], "pip", "install"]  # uv: the venv has no pip
    assert any(PLAIN_PROJECT in text and "torch" not in text for text in command["files"].values())
    assert not (site_packages(python) / "torch").exists()
    # a family constraint narrows the choice: nothing is left
    (tmp_path / "constraints.txt").write_text("torch!=2.9.0\n")
    narrowed = pip_gpu(*args, "-c", "constraints.txt", "--dry-run", *PASCAL, env=env, cwd=tmp_path)
    assert_one_line_error(narrowed, "the variant index has no torch wheel for torch!=2.9.0,==2.9.0")
    refused = pip_gpu(*args, "--json", *PASCAL, env=env, cwd=tmp_path)
    assert_one_line_error(refused, "--json prints the plan of a dry run")


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_a_requirements_file_takes_the_family_from_the_variant_index_and_the_rest_from_yours(
    variant_index: VariantIndex, env: dict[str, str], tmp_path: Path, installer: str
) -> None:
    python = make_venv(tmp_path / "venv", with_pip=installer == "pip")
    (tmp_path / "requirements.txt").write_text(f"{PLAIN_PROJECT}>=1.0\ntorch; sys_platform == 'linux'\n")
    done = pip_gpu(
        "install", "-r", "requirements.txt", "--installer", installer, "--python", str(python),
        "--variant-index", variant_index.url, *B200, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "installed torch 2.9.0 variant cu130" in done.stderr
    assert landed(python) == "cu130"
    assert (site_packages(python) / PLAIN_PROJECT / "__init__.py").is_file()


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_install_passes_the_installer_options_on(
    variant_index: VariantIndex, env: dict[str, str], tmp_path: Path, installer: str
) -> None:
    """``--index-url`` and ``--pre`` reach the run that installs the rest: the configured
    default index does not answer, the one given on the command line does."""
    python = make_venv(tmp_path / "venv", with_pip=installer == "pip")
    closed = {k: v for k, v in env.items() if k != "UV_DEFAULT_INDEX"}  # it would beat uv's --index-url
    closed.update(PIP_INDEX_URL="http://127.0.0.1:9/simple", UV_INDEX_URL="http://127.0.0.1:9/simple")
    args = ("install", "torch", PLAIN_PROJECT, "--installer", installer, "--python", str(python))
    args += (
        "--variant-index",
        variant_index.url,
        "--index-url",
        variant_index.server.pypi_url,
        "--pre",
        *B200,
    )
    plan = json.loads(pip_gpu(*args, "--dry-run", "--json", env=closed, cwd=tmp_path).stdout)
    (command,) = plan["commands"]
    assert "--pre" in command["argv"] and variant_index.server.pypi_url in command["argv"], command["argv"]
    done = pip_gpu(*args, env=closed, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert landed(python) == "cu130"
    assert (site_packages(python) / PLAIN_PROJECT / "__init__.py").is_file()


# --- lock: the other packages, the targets ----------------------------------------------------


def test_lock_records_the_other_packages_and_the_targets_and_sync_installs_them(
    variant_index: VariantIndex, env: dict[str, str], tmp_path: Path
) -> None:
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    project = tmp_path / "project"
    project.mkdir()
    (project / "requirements.txt").write_text("torch==2.9.0\n")  # tinyutil: torch's dependency
    done = pip_gpu(
        "lock", "-r", "requirements.txt", "--variant-index", variant_index.url, *PASCAL,
        "--platform", "linux,windows", "--python-version", f"{here},3.12", env=env, cwd=project,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"covers linux-x86_64-{here}, linux-x86_64-3.12, windows-x86_64-{here}" in done.stderr
    document = tomllib.loads((project / "pylock.toml").read_text())
    packages = {p["name"]: p for p in document["packages"]}
    assert set(packages) == {"torch", PLAIN_PROJECT}
    assert packages[PLAIN_PROJECT]["version"] == "1.0"
    assert packages[PLAIN_PROJECT]["index"] == variant_index.server.pypi_url
    assert packages[PLAIN_PROJECT]["wheels"][0]["hashes"]["sha256"]
    assert len(document["environments"]) == 4
    assert document["tool"]["pip-gpu"]["wheel-variants"]["requirement-files"] == ["requirements.txt"]
    python = make_venv(tmp_path / "venv", with_pip=False)
    synced = pip_gpu("sync", "--python", str(python), *PASCAL, env=env, cwd=project)
    assert synced.returncode == 0, synced.stderr
    assert landed(python) == "cu126"
    assert (site_packages(python) / PLAIN_PROJECT / "__init__.py").is_file()
    checked = pip_gpu("check", "--python", str(python), *PASCAL, env=env, cwd=project)
    assert checked.returncode == 0, checked.stdout
    # a locked file changed in place (same size): only --verify-files reads every file's sha256
    module = site_packages(python) / PLAIN_PROJECT / "__init__.py"
    text = module.read_bytes()
    module.write_bytes(text[:-1] + (b"#" if text[-1:] != b"#" else b" "))
    assert pip_gpu("check", "--python", str(python), *PASCAL, env=env, cwd=project).returncode == 0
    damaged = pip_gpu("check", "--verify-files", "--python", str(python), *PASCAL, env=env, cwd=project)
    assert damaged.returncode == 1 and f"{PLAIN_PROJECT} 1.0 is damaged: " in damaged.stdout, damaged.stdout
    module.write_bytes(text + b"\n")  # another size: seen by default
    resized = pip_gpu("check", "--python", str(python), *PASCAL, env=env, cwd=project)
    assert resized.returncode == 1 and f"{PLAIN_PROJECT} 1.0 is damaged: " in resized.stdout, resized.stdout
    module.write_bytes(text)
    # a target the lock does not cover: check fails, sync refuses, both saying which it covers
    other = pip_gpu(
        "check", "--python", str(python), *PASCAL, "--python-version", "3.9", env=env, cwd=project
    )
    assert other.returncode == 1 and "this host is linux-x86_64-3.9" in other.stdout
    refused = pip_gpu("sync", "--python", str(python), *PASCAL, "--platform", "macos", env=env, cwd=project)
    assert_one_line_error(refused, f"pylock.toml covers linux-x86_64-{here}", "this host is macos")
