"""route.py: the installer commands an install runs, as tables of input -> argv, env and files.

Pure: nothing here starts a process. What the commands do against real indexes is in
tests/test_install.py and tests/test_routing.py.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from pip_gpu.children import private_command
from pip_gpu.requirements import RequirementLine, RewritePin, parse_requirement_args
from pip_gpu.route import (
    VARIANT_INDEX_NAME,
    FamilyFile,
    InstallerCommand,
    Routing,
    family_files_from_report,
    family_from_elsewhere,
    family_required_by_others,
    installer_args,
    pip_command,
    pip_family_probe,
    pip_hashed_command,
    split_installer_args,
    uses_hashes,
    uv_command,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

VARIANT = "https://download.pytorch.org/whl/cu124"
WORK = Path("/scratch")
PY = Path("/env/bin/python")
PINS = {
    "torch": RewritePin(SpecifierSet("==2.5.*"), "cu124"),
    "torchvision": RewritePin(SpecifierSet("==0.20.*"), "cu124"),
    "triton": RewritePin(SpecifierSet(), None),
}
TORCH_WHEEL = f"{VARIANT}/torch-2.5.1%2Bcu124-cp311-cp311-linux_x86_64.whl"
SHA = "a" * 64


def routing(
    *,
    variant_index: str | None = VARIANT,
    installer_args: tuple[str, ...] = (),
    global_options: tuple[tuple[str, ...], ...] = (),
) -> Routing:
    return Routing(
        python=PY,
        variant_index=variant_index,
        global_options=global_options,
        pins=PINS,
        installer_args=installer_args,
        workdir=WORK,
    )


def lines(*texts: str) -> list[RequirementLine]:
    return parse_requirement_args(list(texts))


def hashed(text: str) -> list[RequirementLine]:
    """``text --hash=sha256:...``, as a requirements file line gives it."""
    return [replace(lines(text)[0], hashes=(f"sha256:{SHA}",))]


# --- uv: the family from the explicit variant index, the rest from the user's indexes ----------


def test_uv_sends_the_family_to_an_explicit_index_and_the_rest_to_a_requirements_file() -> None:
    command = uv_command(
        routing(installer_args=("--upgrade",)), lines("torch==2.5.1", "torchvision", "numpy"), uv="uv"
    )
    project = WORK / "torch-family" / "pyproject.toml"
    assert command.argv == (
        "uv", "pip", "install", "--python", str(PY), "--upgrade",
        "-r", str(project), "-r", str(WORK / "requirements.txt"),
    )  # fmt: skip
    document = tomllib.loads(command.files[project])
    assert document["project"]["dependencies"] == ["torch==2.5.1+cu124", "torchvision==0.20.*"]
    assert document["tool"]["uv"]["sources"] == {
        "torch": {"index": VARIANT_INDEX_NAME},
        "torchvision": {"index": VARIANT_INDEX_NAME},
    }
    assert document["tool"]["uv"]["index"] == [{"name": VARIANT_INDEX_NAME, "url": VARIANT, "explicit": True}]
    assert command.files[WORK / "requirements.txt"].split() == ["numpy"]
    assert command.env == {}


@pytest.mark.parametrize(
    ("variant_index", "requirement", "index_args"),
    [
        # Every file pinned by hash: the variant index joins the user's, and the hashes decide.
        (
            VARIANT,
            "hashed",
            ["--index", f"{VARIANT_INDEX_NAME}={VARIANT}", "--index-strategy", "unsafe-best-match"],
        ),
        # No variant index (macOS: PyPI's own build): nothing added.
        (None, "torch==2.5.1", []),
    ],
)
def test_uv_without_routing_runs_one_requirements_file(
    variant_index: str | None, requirement: str, index_args: list[str]
) -> None:
    given = hashed("torch==2.5.1+cu124") if requirement == "hashed" else lines(requirement)
    command = uv_command(routing(variant_index=variant_index), [*given, *lines("numpy")], uv="uv")
    requirements = WORK / "requirements.txt"
    assert command.argv == ("uv", "pip", "install", "--python", str(PY), *index_args, "-r", str(requirements))
    assert list(command.files) == [requirements]
    assert command.purpose == "uv: everything"


def test_uv_compile_takes_the_files_as_positional_arguments_and_routes_what_is_pulled_in() -> None:
    command = uv_command(
        routing(), lines("torch==2.5.1", "fixture-app"), uv="uv", subcommand="compile", pulled_in=["triton"]
    )
    project = WORK / "torch-family" / "pyproject.toml"
    assert command.argv[:3] == ("uv", "pip", "compile")
    assert command.argv[-2:] == (str(project), str(WORK / "requirements.txt"))
    assert "-r" not in command.argv
    dependencies = tomllib.loads(command.files[project])["project"]["dependencies"]
    assert dependencies == ["torch==2.5.1+cu124", "triton"]


@pytest.mark.parametrize(
    "line",
    [
        lines(f"torch @ {TORCH_WHEEL}")[0],  # a direct reference is installed as written
        replace(lines("torch")[0], editable=True, link="./torch-src"),  # so is an editable
        replace(lines("torch<3")[0], constraint=True),  # a constraint routes nothing
    ],
    ids=["direct reference", "editable", "constraint"],
)
def test_uv_leaves_a_family_line_with_its_own_source_alone(line: RequirementLine) -> None:
    command = uv_command(routing(), [line, *lines("numpy")], uv="uv")
    assert all(path.name != "pyproject.toml" for path in command.files)
    assert command.argv[5:7] == ("-r", str(WORK / "requirements.txt"))
    assert "torch" in command.files[WORK / "requirements.txt"] or line.constraint


# --- pip: a dry run on the variant index alone, then direct references -----------------------


def test_the_pip_probe_sees_the_variant_index_alone() -> None:
    command = pip_family_probe(
        routing(
            installer_args=("--extra-index-url", "https://mirror.example/simple", "-v", "--pre"),
            global_options=(("--find-links", "/wheels"), ("--trusted-host", "mirror.example")),
        ),
        lines("torch==2.5.1", "torchvision"),
        ["triton"],
        WORK / "family-report.json",
    )
    family = WORK / "family.txt"
    assert command.argv == (
        str(PY), "-m", "pip", "install", "--index-url", VARIANT, "--pre", "-r", str(family),
        "--dry-run", "--ignore-installed", "--quiet", "--report", str(WORK / "family-report.json"),
    )  # fmt: skip
    # pip.conf and PIP_* cannot add an index either; a blank value reads as an empty list.
    assert command.env == {
        "PIP_INDEX_URL": VARIANT,
        "PIP_EXTRA_INDEX_URL": " ",
        "PIP_FIND_LINKS": " ",
        "PIP_NO_INDEX": "",
    }
    assert command.files[family].splitlines() == [
        "--trusted-host mirror.example",
        "torch==2.5.1+cu124",
        "torchvision==0.20.*",
        "triton",
    ]


def test_pip_installs_the_family_as_direct_references_to_the_chosen_files() -> None:
    chosen = [
        FamilyFile("torch", TORCH_WHEEL, SHA),
        FamilyFile("triton", f"{VARIANT}/triton-3.1.0-cp311-cp311-linux_x86_64.whl", None),
    ]
    extra = ("--extra-index-url", "https://mirror.example/simple")
    command = pip_command(
        routing(installer_args=extra), lines('torch[opt]==2.5.1; sys_platform == "linux"', "numpy"), chosen
    )
    requirements = WORK / "requirements.txt"
    assert command.argv == (str(PY), "-m", "pip", "install", *extra, "-r", str(requirements))
    assert command.files[requirements].splitlines() == [
        f'torch[opt] @ {TORCH_WHEEL}#sha256={SHA} ; sys_platform == "linux"',
        "numpy",
        f"triton @ {VARIANT}/triton-3.1.0-cp311-cp311-linux_x86_64.whl",  # brought in by torch
    ]


def test_pip_in_hash_checking_mode_adds_the_variant_index_beside_the_users() -> None:
    command = pip_hashed_command(routing(installer_args=("--require-hashes",)), hashed("torch==2.5.1+cu124"))
    file = WORK / "hashed.txt"
    assert command.argv == (
        str(PY), "-m", "pip", "install", "--extra-index-url", VARIANT, "--require-hashes", "-r", str(file),
    )  # fmt: skip
    assert f"--hash=sha256:{SHA}" in command.files[file]


def test_constraint_lines_go_to_their_own_file() -> None:
    constraint = replace(lines("numpy<2")[0], constraint=True)
    command = pip_command(routing(), [*lines("numpy"), constraint], [])
    constraints = WORK / "requirements-constraints.txt"
    assert command.argv[-4:] == ("-r", str(WORK / "requirements.txt"), "-c", str(constraints))
    assert command.files[constraints].split() == ["numpy<2"]


# --- credentials never reach a child's argv -------------------------------------------------


SECRET_INDEX = "https://alice:s3cret-token@mirror.example/whl/cu124"


@pytest.mark.parametrize(
    "build",
    [
        lambda r: uv_command(r, hashed("torch==2.5.1+cu124"), uv="uv"),
        lambda r: pip_family_probe(r, lines("torch"), [], WORK / "report.json"),
        lambda r: pip_hashed_command(r, hashed("torch==2.5.1+cu124")),
        lambda r: pip_command(r, lines("numpy"), []),
    ],
    ids=["uv hashed", "pip probe", "pip hashed", "pip with a user index"],
)
def test_credentials_in_an_index_url_are_kept_out_of_the_argv(build) -> None:  # type: ignore[no-untyped-def]
    command: InstallerCommand = build(
        routing(
            variant_index=SECRET_INDEX,
            installer_args=("--extra-index-url", "https://bob:hunter2@pypi.example/simple"),
        )
    )
    assert any("s3cret-token" in a or "hunter2" in a for a in command.argv)  # what route built
    with private_command(command.argv, {}) as (argv, env):
        assert not any("s3cret-token" in a or "hunter2" in a or "alice" in a for a in argv)
        netrc = Path(env["NETRC"]).read_text()
        assert "s3cret-token" in netrc or "hunter2" in netrc


# --- the small parts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "index", "rest"),
    [
        (["-i", "U", "--pre"], ["-i", "U"], ["--pre"]),
        (["--extra-index-url=U", "-v"], ["--extra-index-url=U"], ["-v"]),
        (["--no-index", "--find-links", "/w", "-U"], ["--no-index", "--find-links", "/w"], ["-U"]),
        (["--index", "x=U", "--default-index", "D"], ["--index", "x=U", "--default-index", "D"], []),
    ],
)
def test_split_installer_args(args: list[str], index: list[str], rest: list[str]) -> None:
    assert split_installer_args(args) == (index, rest)


@pytest.mark.parametrize(
    ("requirements", "args", "global_options", "expected"),
    [
        (["torch"], [], [], False),
        (["hashed"], [], [], True),
        (["torch"], ["--require-hashes"], [], True),
        (["torch"], [], [("--require-hashes",)], True),
    ],
)
def test_uses_hashes(
    requirements: list[str], args: list[str], global_options: list[tuple[str, ...]], expected: bool
) -> None:
    given = hashed("torch") if requirements == ["hashed"] else lines(*requirements)
    assert uses_hashes(given, args, global_options) is expected


def test_pass_through_options_are_rendered_in_the_tables_order() -> None:
    passed = [("--verbose", None), ("--extra-index-url", "B"), ("--index-url", "A"), ("--verbose", None)]
    assert installer_args(passed) == ["--index-url", "A", "--extra-index-url", "B", "--verbose", "--verbose"]
    with pytest.raises(ValueError, match="--target"):
        installer_args([("--target", "/x")])


def test_family_files_come_from_pips_report() -> None:
    report = {
        "install": [
            {
                "metadata": {"name": "Torch"},
                "download_info": {"url": TORCH_WHEEL, "archive_info": {"hashes": {"sha256": SHA}}},
            },
            {"metadata": {"name": "numpy"}, "download_info": {"url": "https://pypi.example/numpy.whl"}},
        ]
    }
    assert family_files_from_report(report, {"torch"}) == [FamilyFile("torch", TORCH_WHEEL, SHA)]


def test_family_members_a_resolution_takes_from_another_index() -> None:
    annotated = (
        "torch==2.5.1+cu124\n"
        f"    # from {VARIANT}/\n"
        "triton==3.1.0\n"
        "    # via torch\n"
        "    # from https://pypi.org/simple\n"
        "numpy==2.1.0\n"
        "    # from https://pypi.org/simple\n"
    )
    assert family_from_elsewhere(annotated, frozenset({"torch", "triton"}), VARIANT) == ["triton"]


def test_only_another_package_needing_the_family_counts_as_needing_it() -> None:
    annotated = (
        "fixture-app==1.0.0\n"
        "    # via -r requirements.txt\n"
        "torch==2.5.1+cu124\n"
        "    # via\n"
        "    #   pip-gpu-torch-family (/tmp/x/torch-family/pyproject.toml)\n"
        "    #   torchvision\n"
        f"    # from {VARIANT}\n"
        "torchvision==0.20.1+cu124\n"
        "    # via\n"
        "    #   -r requirements.txt\n"
        "    #   fixture-vision\n"
        "triton==3.1.0\n"
        "    # via torch\n"
        "numpy==2.1.0\n"
        "    # via torchvision\n"
    )
    family = frozenset({"torch", "torchvision", "triton"})
    assert family_required_by_others(annotated, family) == ["fixture-vision requires torchvision"]
    alone = annotated.replace("    #   fixture-vision\n", "")
    assert family_required_by_others(alone, family) == []
