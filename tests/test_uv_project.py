"""``pip-gpu uv setup`` on a project that already carries uv's PyTorch recipe (whisperX, InvokeAI).

The recipe below is written as such projects write it: explicit ``pytorch-<variant>`` indexes,
one extra per build, ``[tool.uv.sources]`` by extra (one entry with a marker), ``conflicts``,
other extras and sources of the project's own, and comments. setup either merges into it so
that real uv locks it against the fixture indexes, or refuses and leaves the file as it was.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support import fake_nvml
from support.cli import PLUGIN, assert_one_line_error, pip_gpu
from support.index import (
    IndexServer,
    fixture_index_fixture,  # noqa: F401  (registers the fixture "fixture_index")
    index_server_fixture,  # noqa: F401  (registers the fixture "index_server")
    pytorch_index,
)
from support.shims import CU124_HOST, shell, shell_env

from pip_gpu.uv_project import _normalized_url, project_variants

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11
    import tomli as tomllib

CPU_HOST = {"PIP_GPU_NO_GPU": "1"}

# The line setup adds for torch 2.5/2.6's triton: the marker of torch's own Requires-Dist on the
# fixture's variant indexes (Linux x86_64, Python < 3.13).
TRITON = "triton; platform_system == 'Linux' and platform_machine == 'x86_64' and python_version < '3.13'"


def recipe(server: IndexServer) -> str:
    base = server.pytorch_url
    return f"""\
[project]
name = "speech"
version = "0.1.0"
requires-python = ">=3.9"
dependencies = ["fixture-lib"]

[project.optional-dependencies]
# pick the build: uv sync --extra cpu | --extra cu124
cpu = [
    "torch==2.5.1",  # CPU wheels
]
cu124 = ["torch==2.5.1"]
dev = ["fixture-app"]  # the project's own extra

[tool.uv]
# one torch build at a time
conflicts = [[{{ extra = "cpu" }}, {{ extra = "cu124" }}]]

[tool.uv.sources]
torch = [
    {{ index = "pytorch-cpu", extra = "cpu" }},  # CPU wheels everywhere
    {{ index = "pytorch-cu124", extra = "cu124", marker = "sys_platform == 'linux'" }},
]
fixture-lib = {{ index = "team-mirror" }}  # the project's own routing

[[tool.uv.index]]
name = "pytorch-cpu"
url = "{base}/cpu/"
explicit = true

[[tool.uv.index]]
name = "pytorch-cu124"  # CUDA 12.4
url = "{base}/cu124"
explicit = true

[[tool.uv.index]]
name = "team-mirror"
url = "{server.pypi_url}"
explicit = true
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "speech"
    folder.mkdir()
    return folder


def env_for(server: IndexServer, tmp_path: Path, host: dict[str, str]) -> dict[str, str]:
    env = shell_env([Path(sys.executable).parent], server, tmp_path, host)
    env["PYTHONPATH"] = str(PLUGIN)
    env["UV_PYTHON"] = sys.executable
    return env


def setup(project: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    done = pip_gpu("uv", "setup", *args, env=env, cwd=project, timeout=120)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.slow
def test_setup_merges_into_the_recipe_and_uv_locks_it(
    project: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    before = recipe(index_server)
    (project / "pyproject.toml").write_text(before)
    env = env_for(index_server, tmp_path, CU124_HOST)
    status, out, err = setup(project, env, "--variants", "cpu,cu124")
    assert status == 0, err
    text = (project / "pyproject.toml").read_text()
    # the project's indexes are reused (the same place, a trailing slash apart): no duplicate name
    assert text.count('name = "pytorch-cpu"') == 1 and text.count('name = "pytorch-cu124"') == 1
    # everything the project wrote stays, comments included
    for kept in (
        "# pick the build: uv sync --extra cpu | --extra cu124",
        '    "torch==2.5.1",  # CPU wheels\n',
        'dev = ["fixture-app"]  # the project\'s own extra',
        "# one torch build at a time",
        'conflicts = [[{ extra = "cpu" }, { extra = "cu124" }]]',
        '    { index = "pytorch-cpu", extra = "cpu" },  # CPU wheels everywhere\n',
        """{ index = "pytorch-cu124", extra = "cu124", marker = "sys_platform == 'linux'" },""",
        'fixture-lib = { index = "team-mirror" }  # the project\'s own routing',
        'name = "pytorch-cu124"  # CUDA 12.4',
    ):
        assert kept in text, kept
    assert text.startswith(before.split("cu124 = ")[0])
    # what setup adds: triton, for the CUDA extra, from the same explicit index only
    assert f"""cu124 = ["torch==2.5.1", "{TRITON}"]""" in text
    assert 'triton = [\n    { index = "pytorch-cu124", extra = "cu124" },\n]' in text
    assert 'variants = ["cpu", "cu124"]' in text
    # the host's extra: this is a CUDA 12.4 host, whatever order the variants were named in
    assert "uv sync --extra cu124" in out and "--extra cpu" not in out

    # A second run changes nothing.
    status, out, _ = setup(project, env, "--variants", "cpu,cu124", "--dry-run")
    assert status == 0 and "---" not in out and (project / "pyproject.toml").read_text() == text

    shell("uv lock", env, cwd=project)
    lock = (project / "uv.lock").read_text()
    assert 'version = "2.5.1+cpu"' in lock and 'version = "2.5.1+cu124"' in lock
    # PyPI plants triton (and the rest of the family) at 99.0.0: never locked; every triton
    # comes from the PyTorch index the project already had.
    assert pytorch_index.ATTACKER_VERSION not in lock
    tritons = [block for block in lock.split("[[package]]") if 'name = "triton"' in block.split("\n")[1]]
    assert tritons and all(f'registry = "{index_server.pytorch_url}/cu124"' in t for t in tritons), tritons
    assert (project / "pyproject.toml").read_text() == text  # uv lock left the merge as it was


def test_setup_adds_a_variant_beside_the_recipe(
    project: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    (project / "pyproject.toml").write_text(recipe(index_server))
    env = env_for(index_server, tmp_path, CU124_HOST)
    status, _, err = setup(project, env, "--variants", "cpu,cu124,cu121")
    assert status == 0, err
    text = (project / "pyproject.toml").read_text()
    assert text.count('name = "pytorch-cu121"') == 1 and text.count('name = "pytorch-cpu"') == 1
    assert 'conflicts = [\n    [{ extra = "cpu" }, { extra = "cu124" }, { extra = "cu121" }],\n]' in text
    assert '    { index = "pytorch-cu121", extra = "cu121" },\n]\nfixture-lib' in text
    assert f"""cu121 = ["torch==2.5.1", "{TRITON}"]""" in text

    # Dropping it again removes only what setup added.
    status, _, err = setup(project, env, "--variants", "cpu,cu124")
    assert status == 0, err
    again = (project / "pyproject.toml").read_text()
    assert "cu121" not in again and 'fixture-lib = { index = "team-mirror" }' in again
    assert '{ index = "pytorch-cpu", extra = "cpu" },  # CPU wheels everywhere' in again


def test_dry_run_prints_the_diff_and_writes_nothing(
    project: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    before = recipe(index_server)
    (project / "pyproject.toml").write_text(before)
    status, out, err = setup(
        project, env_for(index_server, tmp_path, CU124_HOST), "--variants", "cu124,cpu", "--dry-run"
    )
    assert status == 0, err
    assert (project / "pyproject.toml").read_bytes() == before.encode()
    lines = out.splitlines()
    assert lines[0] == f"--- {project / 'pyproject.toml'} (now)"
    assert lines[1] == f"+++ {project / 'pyproject.toml'} (after pip-gpu uv setup)"
    assert '-cu124 = ["torch==2.5.1"]' in lines
    assert f"""+cu124 = ["torch==2.5.1", "{TRITON}"]""" in lines
    assert "+triton = [" in lines and "+[tool.pip-gpu]" in lines
    assert not any(line.startswith("-") and "#" in line for line in lines[2:])  # no comment lost
    assert f"pip-gpu: dry run: {project / 'pyproject.toml'} left unchanged" in lines
    assert "uv sync --extra cu124" in out


def test_a_new_setup_puts_one_blank_line_between_tables(
    project: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    # issue 25: a project without any [tool] table got a doubled blank line before [tool.uv]
    # (and between the [[tool.uv.index]] entries)
    (project / "pyproject.toml").write_text(
        '[project]\nname = "demo"\nversion = "0.1.0"\ndependencies = ["torch==2.5.1", "numpy"]\n'
    )
    status, out, err = setup(
        project, env_for(index_server, tmp_path, CU124_HOST), "--variants", "cpu,cu124", "--dry-run"
    )
    assert status == 0, err
    added = [line[1:] for line in out.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert added[added.index("[tool.uv]") - 1 :][:2] == ["", "[tool.uv]"]
    assert added.count("[[tool.uv.index]]") == 2
    assert not any(a == b == "" for a, b in zip(added, added[1:])), "\n".join(added)


def test_the_extra_suggested_is_the_one_this_host_runs(
    project: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    (project / "pyproject.toml").write_text(recipe(index_server))
    _, out, _ = setup(
        project, env_for(index_server, tmp_path, CPU_HOST), "--variants", "cu124,cpu", "--dry-run"
    )
    assert "without them: uv sync --extra cpu" in out and "--extra cu124" not in out
    _, out, _ = setup(
        project, env_for(index_server, tmp_path, CU124_HOST), "--variants", "cpu,cu124", "--dry-run"
    )
    assert "without them: uv sync --extra cu124" in out


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        (
            ("/cpu/", "/cpu-mirror"),
            ("[[tool.uv.index]] pytorch-cpu points at", "/cpu-mirror, not at", "left unchanged"),
        ),
        (
            (
                '{ index = "pytorch-cpu", extra = "cpu" },',
                '{ index = "pytorch-cpu", marker = "sys_platform == \'darwin\'" },',
            ),
            ("[tool.uv.sources] torch sends every extra to index pytorch-cpu", "would overlap"),
        ),
        (
            ('{ index = "pytorch-cpu", extra = "cpu" },', '{ index = "team-mirror", extra = "cpu" },'),
            ("[tool.uv.sources] torch sends extra cpu to index team-mirror, not pytorch-cpu",),
        ),
        (
            ("torch = [", 'torch = { git = "https://example.org/pytorch" }\ntorch-old = ['),
            ("[tool.uv.sources] torch comes from a git source",),
        ),
    ],
    ids=["index-name-elsewhere", "source-for-every-extra", "extra-to-another-index", "git-source"],
)
def test_setup_refuses_what_it_cannot_merge_and_leaves_the_file(
    change: tuple[str, str],
    needles: tuple[str, ...],
    project: Path,
    index_server: IndexServer,
    tmp_path: Path,
) -> None:
    before = recipe(index_server).replace(*change)
    assert before != recipe(index_server)
    (project / "pyproject.toml").write_text(before)
    for dry_run in ((), ("--dry-run",)):
        done = pip_gpu(
            "uv", "setup", "--variants", "cpu,cu124", *dry_run,
            env=env_for(index_server, tmp_path, CU124_HOST), cwd=project, timeout=120,
        )  # fmt: skip
        assert_one_line_error(done, "cannot merge", *needles)
        assert done.stdout == ""
        assert (project / "pyproject.toml").read_bytes() == before.encode()


@pytest.mark.slow
def test_a_triton_the_project_asks_for_comes_only_from_the_pytorch_index(
    project: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    # A project that imports triton itself names it, open, beside torch.
    before = recipe(index_server).replace(
        'cu124 = ["torch==2.5.1"]', 'cu124 = ["torch==2.5.1", "triton; python_version >= \'3.13\'"]'
    )
    (project / "pyproject.toml").write_text(before)
    env = env_for(index_server, tmp_path, CU124_HOST)
    shell("uv lock", env, cwd=project)
    planted = f'name = "triton"\nversion = "{pytorch_index.ATTACKER_VERSION}"'
    assert planted in (project / "uv.lock").read_text()  # the recipe alone takes PyPI's plant

    status, _, err = setup(project, env, "--variants", "cpu,cu124")
    assert status == 0, err
    text = (project / "pyproject.toml").read_text()
    # the project's line stays as it wrote it; setup's line covers torch's own triton on Linux
    assert f"""cu124 = ["torch==2.5.1", "triton; python_version >= '3.13'", "{TRITON}"]""" in text
    shell("uv lock", env, cwd=project)
    lock = (project / "uv.lock").read_text()
    assert pytorch_index.ATTACKER_VERSION not in lock
    tritons = [block for block in lock.split("[[package]]") if 'name = "triton"' in block.split("\n")[1]]
    assert tritons and all(f'registry = "{index_server.pytorch_url}/cu124"' in t for t in tritons), tritons


@pytest.mark.slow
def test_indexes_of_another_name_are_reused_and_the_project_counts_as_set_up(
    project: Path, index_server: IndexServer, tmp_path: Path
) -> None:
    # InvokeAI's shape: its own index and extra names, builds pinned with their labels.
    before = f"""\
[project]
name = "studio"
version = "1.0.0"
requires-python = ">=3.9"
dependencies = []

[project.optional-dependencies]
cpu = ["torch==2.5.1+cpu"]
cuda = ["torch==2.5.1+cu124"]

[tool.uv]
conflicts = [[{{ extra = "cpu" }}, {{ extra = "cuda" }}]]

[[tool.uv.index]]
name = "torch-cpu"
url = "{index_server.pytorch_url}/cpu"
explicit = true

[[tool.uv.index]]
name = "torch-cuda"
url = "{index_server.pytorch_url}/cu124"
explicit = true

[tool.uv.sources]
torch = [
  {{ index = "torch-cpu", extra = "cpu" }},
  {{ index = "torch-cuda", extra = "cuda" }},
]
"""
    (project / "pyproject.toml").write_text(before)
    env = env_for(index_server, tmp_path, CU124_HOST)
    status, out, err = setup(project, env, "--variants", "cpu,cu124")
    assert status == 0, err
    text = (project / "pyproject.toml").read_text()
    assert "pytorch-" not in text  # no second index for a place the project already names
    assert 'cpu = ["torch==2.5.1+cpu"]' in text and 'cuda = ["torch==2.5.1+cu124"]' in text
    assert f"""cu124 = ["torch==2.5.1", "{TRITON}"]""" in text  # labels left out
    assert '{ index = "torch-cuda", extra = "cuda" },\n    { index = "torch-cuda", extra = "cu124" },' in text
    assert '[{ extra = "cpu" }, { extra = "cuda" }, { extra = "cu124" }]' in text
    assert "uv sync --extra cu124" in out

    shell("uv lock", env, cwd=project)
    lock = (project / "uv.lock").read_text()
    assert 'version = "2.5.1+cpu"' in lock and 'version = "2.5.1+cu124"' in lock
    assert pytorch_index.ATTACKER_VERSION not in lock
    assert project_variants(tomllib.loads(text)) == {
        "cpu": ["torch==2.5.1+cpu"],
        "cu124": ["torch==2.5.1", TRITON],
    }


@pytest.mark.parametrize(
    ("theirs", "same"),
    [
        ("https://download.pytorch.org/whl/cu124/", True),
        ("HTTPS://Download.PyTorch.org:443/whl/cu124", True),
        ("https://user:token@download.pytorch.org/whl/cu124", True),
        ("https://download.pytorch.org/whl/cu121", False),
        ("https://download.pytorch.org:8443/whl/cu124", False),
        ("https://mirror.example/whl/cu124", False),
    ],
)
def test_an_index_is_the_same_place_by_its_normalised_url(theirs: str, same: bool) -> None:
    ours = "https://download.pytorch.org/whl/cu124"
    assert (_normalized_url(theirs) == _normalized_url(ours)) is same


# --- issue 27: the companions torch's own metadata names on the variant index ------------------


def _lock_block(lock: str, name: str) -> list[str]:
    return [block for block in lock.split("[[package]]") if f'name = "{name}"' in block.split("\n")[1]]


@pytest.fixture(scope="module")
def partial_mirrors(fixture_index: IndexServer) -> dict[str, str]:
    """``{mirror: base URL}``: a mirror of torch and torchvision only, and one whose torch
    requires pytorch-triton (see fixtures/pytorch_index.py)."""
    assert fixture_index.tree is not None
    paths = pytorch_index.build_partial_mirrors(fixture_index.tree)
    return {mirror: fixture_index.base_url + path for mirror, path in paths.items()}


TEAM_PROJECT = """\
[project]
name = "demo"
version = "0.1.0"
requires-python = ">=3.9"
dependencies = ["torch==2.5.1", "fixture-lib"]
"""


@pytest.mark.slow
def test_a_mirror_without_triton_leaves_triton_to_the_other_indexes_and_uv_locks(
    project: Path, index_server: IndexServer, partial_mirrors: dict[str, str], tmp_path: Path
) -> None:
    (project / "pyproject.toml").write_text(TEAM_PROJECT)
    env = env_for(index_server, tmp_path, CU124_HOST)
    mirror = partial_mirrors["no-triton"]
    status, _, err = setup(project, env, "--variants", "cu124,cpu", "--pytorch-index", mirror)
    assert status == 0, err
    text = (project / "pyproject.toml").read_text()
    assert 'cu124 = ["torch==2.5.1"]' in text, text
    assert '"triton' not in text and "triton = [" not in text  # not routed where it is not hosted
    assert f"torch 2.5.1+cu124 on {mirror}/cu124 requires triton, which that index does not host" in err

    done = shell("uv lock", env, cwd=project, check=False)
    assert done.returncode == 0, done.stderr
    lock = (project / "uv.lock").read_text()
    assert 'version = "2.5.1+cu124"' in lock and 'version = "2.5.1+cpu"' in lock
    # torch's own pin takes the real triton from the default index, never PyPI's planted one
    tritons = _lock_block(lock, "triton")
    assert tritons and all('version = "3.1.0"' in t and index_server.pypi_url in t for t in tritons)
    assert pytorch_index.ATTACKER_VERSION not in lock

    # A project an earlier pip-gpu set up (its triton line and source on every CUDA extra) is
    # mended by running setup again: the line and its source go, the rest stays.
    legacy = text.replace(
        'cu124 = ["torch==2.5.1"]', 'cu124 = ["torch==2.5.1", "triton; sys_platform == \'linux\'"]'
    )
    legacy = legacy.replace(
        "[tool.uv.sources]\n", '[tool.uv.sources]\ntriton = [{ index = "pytorch-cu124", extra = "cu124" }]\n'
    )
    assert legacy.count("triton") == text.count("triton") + 2
    (project / "pyproject.toml").write_text(legacy)
    status, _, err = setup(project, env, "--pytorch-index", mirror)
    assert status == 0, err
    assert (project / "pyproject.toml").read_text() == text


@pytest.mark.slow
def test_a_torch_that_requires_pytorch_triton_gets_it_from_its_index(
    project: Path, index_server: IndexServer, partial_mirrors: dict[str, str], tmp_path: Path
) -> None:
    (project / "pyproject.toml").write_text(TEAM_PROJECT)
    env = env_for(index_server, tmp_path, CU124_HOST)
    mirror = partial_mirrors["pytorch-triton"]
    status, _, err = setup(project, env, "--variants", "cu124,cpu", "--pytorch-index", mirror)
    assert status == 0, err
    text = (project / "pyproject.toml").read_text()
    # torch's own marker, per platform, and only for the CUDA extra
    linux = "platform_system == 'Linux' and platform_machine == 'x86_64'"
    assert f'"pytorch-triton; {linux}"' in text, text
    assert 'pytorch-triton = [\n    { index = "pytorch-cu124", extra = "cu124" },\n]' in text
    assert '"triton' not in text and "triton = [" not in text.replace("pytorch-triton = [", "")

    done = shell("uv lock", env, cwd=project, check=False)
    assert done.returncode == 0, done.stderr
    lock = (project / "uv.lock").read_text()
    routed = _lock_block(lock, "pytorch-triton")
    assert routed and all(f'registry = "{mirror}/cu124"' in b for b in routed), routed
    assert pytorch_index.PYTORCH_TRITON in lock and pytorch_index.ATTACKER_VERSION not in lock


@pytest.mark.slow
def test_setup_again_on_a_cpu_laptop_keeps_the_teams_variants(
    project: Path,
    index_server: IndexServer,
    tmp_path: Path,
    host_env: Callable[..., dict[str, str]],
) -> None:
    (project / "pyproject.toml").write_text(TEAM_PROJECT)
    status, _, err = setup(project, env_for(index_server, tmp_path, CU124_HOST), "--variants", "cu124,cpu")
    assert status == 0, err
    team = (project / "pyproject.toml").read_text()

    # A laptop without an NVIDIA GPU: the real NVML binding over the fake library, no driver loaded.
    laptop = env_for(index_server, tmp_path, {})
    nvml = host_env(gpus=(), init_error=fake_nvml.NVML_ERROR_DRIVER_NOT_LOADED)
    laptop.update({k: v for k, v in nvml.items() if k == "LD_LIBRARY_PATH" or k.startswith("PIP_GPU_")})
    status, out, err = setup(project, laptop)
    assert status == 0, err
    text = (project / "pyproject.toml").read_text()
    assert text == team  # the team's extras, indexes, sources and conflicts, as they were
    assert 'variants = ["cu124", "cpu"]' in text and "[tool.uv]\n\n[" not in text
    assert "without them: uv sync --extra cpu" in out  # this laptop's extra among the team's

    done = shell("uv lock", laptop, cwd=project, check=False)
    assert done.returncode == 0, done.stderr
    lock = (project / "uv.lock").read_text()
    assert 'version = "2.5.1+cu124"' in lock and 'version = "2.5.1+cpu"' in lock

    # The team goes CPU-only: one extra needs no conflicts, and no empty [tool.uv] is left.
    status, _, err = setup(project, laptop, "--variants", "cpu")
    assert status == 0, err
    text = (project / "pyproject.toml").read_text()
    assert "cu124" not in text and "conflicts" not in text
    assert "[tool.uv]\n" not in text and "[tool.uv.sources]\ntorch = [" in text
    assert tomllib.loads(text)["tool"]["uv"]["index"][0]["name"] == "pytorch-cpu"


def test_a_companion_only_some_platforms_torch_needs_carries_their_markers(
    project: Path, index_server: IndexServer, partial_mirrors: dict[str, str], tmp_path: Path
) -> None:
    # torch 2.5.1+cu124 on Linux x86_64 requires triton; the aarch64 wheel does not
    (project / "pyproject.toml").write_text(TEAM_PROJECT)
    env = env_for(index_server, tmp_path, CU124_HOST)
    mirror = partial_mirrors["per-platform"]
    status, out, err = setup(project, env, "--variants", "cu124", "--pytorch-index", mirror, "--dry-run")
    assert status == 0, err
    x86 = "sys_platform == 'linux' and platform_machine == 'x86_64'"
    torch_marker = "platform_system == 'Linux' and platform_machine == 'x86_64' and python_version < '3.13'"
    assert f"""+cu124 = ["torch==2.5.1", "triton; ({x86}) and ({torch_marker})"]""" in out.splitlines(), out
