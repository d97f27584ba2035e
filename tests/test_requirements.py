"""Requirements as pip reads them, and the rewrite that pins torch-family lines to one build."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from pip_gpu.errors import EXIT_USAGE, UsageError
from pip_gpu.requirements import (
    RequirementLine,
    RewritePin,
    exact_version_of,
    is_family,
    local_label_of,
    parse_requirement_args,
    read_requirements_file,
    redact_url,
    render_file,
    render_line,
    rewrite_line,
)

FAMILY = {"torch", "torchvision", "torchaudio"}
PINS = {
    "torch": RewritePin(SpecifierSet("==2.5.*"), "cu124"),
    "torchvision": RewritePin(SpecifierSet("==0.20.*"), "cu124"),
    "torchaudio": RewritePin(SpecifierSet("==2.5.*"), "cu124"),
}
HASH_A = "sha256:" + "a" * 64
HASH_B = "sha256:" + "b" * 64
NAMED_URL = 'torch @ https://example.com/torch-2.5.1-cp311-cp311-linux_x86_64.whl ; sys_platform == "linux"'


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def one(text: str) -> RequirementLine:
    [line] = parse_requirement_args([text])
    return line


def texts(lines: tuple[RequirementLine, ...]) -> list[str]:
    return [line.text for line in lines]


# --- command line --------------------------------------------------------------------------


def test_command_line_requirements_parse_through_packaging() -> None:
    lines = parse_requirement_args(
        ["Torch==2.5.1", "torch[opt-einsum]>=2.4 ; python_version>='3.9'", "numpy"]
    )
    assert [line.name for line in lines] == ["torch", "torch", "numpy"]
    assert all(line.origin == "command line" for line in lines)
    assert lines[1].requirement is not None
    assert lines[1].requirement.extras == {"opt-einsum"}
    assert str(lines[1].requirement.marker) == 'python_version >= "3.9"'
    assert not any(line.is_direct_url for line in lines)


def test_direct_url_is_family_by_name_but_never_rewritten() -> None:
    line = one("torch @ https://example.com/torch-2.5.1-cp311-cp311-linux_x86_64.whl")
    assert line.name == "torch" and line.is_direct_url
    assert is_family(line, FAMILY)
    assert rewrite_line(line, PINS) is line


def test_bare_wheel_url_names_its_project_from_the_file_name() -> None:
    url = "https://download.pytorch.org/whl/cu121/torch-2.5.1%2Bcu121-cp311-cp311-linux_x86_64.whl"
    line = one(url)
    assert line.name == "torch" and line.is_direct_url and line.text == url
    assert line.requirement is not None and line.requirement.url == url
    assert rewrite_line(line, PINS) is line
    assert render_line(line) == url


def test_bad_wheel_file_name_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="not a valid wheel file name"):
        one("https://example.com/not-a-wheel.whl")


def test_malformed_command_line_requirement_quotes_it() -> None:
    with pytest.raises(UsageError) as caught:
        parse_requirement_args(["torch=2.5"])
    assert "command line" in caught.value.message
    assert "'torch=2.5'" in caught.value.message
    assert caught.value.exit_code == EXIT_USAGE
    assert caught.value.hint


def test_options_are_not_requirements() -> None:
    with pytest.raises(UsageError, match="is an option"):
        parse_requirement_args(["--pre"])


# --- files ---------------------------------------------------------------------------------


def test_comments_continuations_and_blank_lines(tmp_path: Path) -> None:
    req = write(
        tmp_path / "requirements.txt",
        "# a comment\n"
        "\n"
        "torch==2.5.1  # pinned for the cluster\n"
        "numpy \\\n"
        "  >=1.26 \\\n"
        "  ; python_version >= '3.9'\n"
        "   # indented comment \\\n"
        "requests#not-a-comment-without-space\n",
    )
    # ``#`` directly after a name is not a comment, so pip (and we) reject that last line.
    with pytest.raises(UsageError, match=r"requirements\.txt:8"):
        read_requirements_file(req)
    write(req, req.read_text().replace("requests#not-a-comment-without-space", "requests"))
    parsed = read_requirements_file(req)
    assert texts(parsed.lines) == [
        "torch==2.5.1",
        "numpy   >=1.26   ; python_version >= '3.9'",
        "requests",
    ]
    assert [line.origin for line in parsed.lines] == [
        f"{req}:3",
        f"{req}:4",
        f"{req}:8",
    ]


def test_environment_variables_follow_pips_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_VERSION", "2.5.1")
    monkeypatch.setenv("lower_case", "9")
    monkeypatch.delenv("UNSET_VAR", raising=False)
    req = write(
        tmp_path / "r.txt",
        "torch==${TORCH_VERSION}\n--index-url https://host/${UNSET_VAR}/simple\nnumpy==1.${lower_case}\n",
    )
    with pytest.raises(UsageError, match=r"r\.txt:3"):  # ${lower_case} is not expanded
        read_requirements_file(req)
    write(req, "torch==${TORCH_VERSION}\n--index-url https://host/${UNSET_VAR}/simple\n")
    parsed = read_requirements_file(req)
    assert texts(parsed.lines) == ["torch==2.5.1"]
    assert parsed.global_options == (("--index-url", "https://host/${UNSET_VAR}/simple"),)


def test_nested_requirements_and_constraints_are_relative_to_their_file(tmp_path: Path) -> None:
    top = write(
        tmp_path / "requirements.txt",
        "-r reqs/base.txt\n--constraint reqs/constraints.txt\ntorch==2.5.1\n",
    )
    write(tmp_path / "reqs" / "base.txt", "--requirement=../common/extra.txt\nnumpy\n")
    write(tmp_path / "common" / "extra.txt", "torchvision\n")
    write(tmp_path / "reqs" / "constraints.txt", "-r more-constraints.txt\nnumpy<3\n")
    write(tmp_path / "reqs" / "more-constraints.txt", "torchaudio<3\n")

    parsed = read_requirements_file(top)
    assert [(line.name, line.constraint) for line in parsed.lines] == [
        ("torchvision", False),
        ("numpy", False),
        ("torchaudio", True),  # nested in a constraints file: a constraint too
        ("numpy", True),
        ("torch", False),
    ]
    assert [path.name for path in parsed.files] == [
        "requirements.txt",
        "base.txt",
        "extra.txt",
        "constraints.txt",
        "more-constraints.txt",
    ]
    assert parsed.lines[0].origin == f"{tmp_path / 'common' / 'extra.txt'}:1"


def test_constraint_file_flag(tmp_path: Path) -> None:
    cons = write(tmp_path / "c.txt", "torch<2.6\n")
    parsed = read_requirements_file(cons, constraint=True)
    assert parsed.lines[0].constraint


def test_editables_are_not_constraints(tmp_path: Path) -> None:
    cons = write(tmp_path / "c.txt", "-e ./pkg\n")
    with pytest.raises(UsageError, match=r"c\.txt:1: editable"):
        read_requirements_file(cons, constraint=True)


def test_a_file_included_twice_without_a_loop_is_fine(tmp_path: Path) -> None:
    top = write(tmp_path / "top.txt", "-r a.txt\n-r b.txt\n")
    write(tmp_path / "a.txt", "-r common.txt\n")
    write(tmp_path / "b.txt", "-r common.txt\n")
    write(tmp_path / "common.txt", "torch\n")
    parsed = read_requirements_file(top)
    assert texts(parsed.lines) == ["torch", "torch"]
    assert [path.name for path in parsed.files] == ["top.txt", "a.txt", "common.txt", "b.txt"]


def test_global_options_are_collected_as_tokens(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    req = write(
        tmp_path / "r.txt",
        "-i https://pypi.example/simple\n"
        "--extra-index-url=https://download.pytorch.org/whl/cu124\n"
        "--no-index\n"
        "-f wheels\n"
        "--find-links https://example.com/links\n"
        "--trusted-host example.com\n"
        "--pre --prefer-binary\n"
        "--only-binary :all:\n"
        "--no-binary=numpy\n"
        "--require-hashes\n"
        "--use-feature truststore\n"
        "--extra-index https://abbreviated.example/simple\n"
        "torch\n",
    )
    parsed = read_requirements_file(req)
    assert parsed.global_options == (
        ("--index-url", "https://pypi.example/simple"),
        ("--extra-index-url", "https://download.pytorch.org/whl/cu124"),
        ("--no-index",),
        ("--find-links", str(wheels)),  # made absolute: it exists beside the file, as in pip
        ("--find-links", "https://example.com/links"),
        ("--trusted-host", "example.com"),
        ("--pre",),
        ("--prefer-binary",),
        ("--only-binary", ":all:"),
        ("--no-binary", "numpy"),
        ("--require-hashes",),
        ("--use-feature", "truststore"),
        ("--extra-index-url", "https://abbreviated.example/simple"),
    )
    assert texts(parsed.lines) == ["torch"]


def test_per_line_options_and_several_hashes(tmp_path: Path) -> None:
    req = write(
        tmp_path / "r.txt",
        f"torch==2.5.1 --hash={HASH_A} \\\n"
        f"    --hash {HASH_B} \\\n"
        "    --config-settings editable_mode=compat --global-option='--build dir'\n",
    )
    [line] = read_requirements_file(req).lines
    assert line.text == "torch==2.5.1"
    assert line.hashes == (HASH_A, HASH_B)
    assert line.options == ("--config-settings=editable_mode=compat", "--global-option=--build dir")


def test_editables_paths_and_urls_pass_through(tmp_path: Path) -> None:
    req = write(
        tmp_path / "r.txt",
        "-e ./src/mypkg\n"
        "--editable=git+https://github.com/org/repo.git#egg=repo-name\n"
        "./vendor/pkg[extra]\n"
        "./dist/torchvision-0.20.1-cp311-cp311-linux_x86_64.whl\n"
        "file:///wheels/torchaudio-2.5.1-cp311-cp311-linux_x86_64.whl\n"
        "https://example.com/archive/pkg-1.0.tar.gz\n"
        f"{NAMED_URL}\n",
    )
    lines = read_requirements_file(req).lines
    assert [(line.name, line.editable, line.is_direct_url) for line in lines] == [
        (None, True, True),
        ("repo-name", True, True),
        (None, False, True),
        ("torchvision", False, True),
        ("torchaudio", False, True),
        ("pkg", False, True),
        ("torch", False, True),
    ]
    assert [rewrite_line(line, PINS) for line in lines] == list(lines)
    rendered = render_file([rewrite_line(line, PINS) for line in lines])
    assert rendered.splitlines() == [
        "-e ./src/mypkg",
        "-e git+https://github.com/org/repo.git#egg=repo-name",
        "./vendor/pkg[extra]",
        "./dist/torchvision-0.20.1-cp311-cp311-linux_x86_64.whl",
        "file:///wheels/torchaudio-2.5.1-cp311-cp311-linux_x86_64.whl",
        "https://example.com/archive/pkg-1.0.tar.gz",
        NAMED_URL,
    ]


def test_utf8_bom_and_coding_line_are_accepted(tmp_path: Path) -> None:
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbftorch==2.5.1\n")
    assert texts(read_requirements_file(bom).lines) == ["torch==2.5.1"]
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"# -*- coding: latin-1 -*-\n# caf\xe9\ntorch\n")
    assert texts(read_requirements_file(latin).lines) == ["torch"]


def test_not_utf8_names_the_file_line_and_encoding(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"torch\n# caf\xe9\n")
    with pytest.raises(UsageError) as caught:
        read_requirements_file(bad)
    assert f"{bad}:2" in caught.value.message
    assert "utf-8" in caught.value.message
    assert "UTF-8" in caught.value.hint


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        read_requirements_file(tmp_path / "nope.txt")


def test_missing_nested_file_names_the_including_line(tmp_path: Path) -> None:
    top = write(tmp_path / "top.txt", "torch\n-r sub/missing.txt\n")
    with pytest.raises(UsageError) as caught:
        read_requirements_file(top)
    assert caught.value.message.startswith(f"{top}:2:")
    assert "sub/missing.txt" in caught.value.message
    assert "relative to the file" in caught.value.hint


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read"):
        read_requirements_file(tmp_path)  # a directory


def test_recursive_includes_name_the_cycle(tmp_path: Path) -> None:
    a = write(tmp_path / "a.txt", "-r b.txt\n")
    b = write(tmp_path / "b.txt", "torch\n-c a.txt\n")
    with pytest.raises(UsageError) as caught:
        read_requirements_file(a)
    assert caught.value.message == (
        f"{b}:2: requirements files include each other in a loop: {a} -> {b} -> {a}"
    )


def test_self_include(tmp_path: Path) -> None:
    a = write(tmp_path / "a.txt", "-r ./a.txt\n")
    with pytest.raises(UsageError, match="loop"):
        read_requirements_file(a)


def test_malformed_line_quotes_it_with_file_and_line(tmp_path: Path) -> None:
    req = write(tmp_path / "r.txt", "numpy\ntorch>=2.4,,<3\n")
    with pytest.raises(UsageError) as caught:
        read_requirements_file(req)
    assert caught.value.message.startswith(f"{req}:2: invalid requirement 'torch>=2.4,,<3': ")
    assert "Expected" in caught.value.message  # packaging's own explanation


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("--bogus-option x\n", "not an option"),
        ("torch --index-url https://x/simple\n", "cannot follow a requirement"),
        ("--hash=sha256:abc\n", "needs a requirement"),
        ("torch --hash=md5:abc\n", "hash name"),
        ("-i\n", "needs a value"),
        ("--pre=yes\n", "takes no value"),
        ("torch --global-option='unclosed\n", "closing quotation"),
        ("-r https://example.com/r.txt\n", "remote"),
    ],
)
def test_bad_options_are_usage_errors(tmp_path: Path, text: str, match: str) -> None:
    req = write(tmp_path / "r.txt", text)
    with pytest.raises(UsageError, match=match) as caught:
        read_requirements_file(req)
    assert caught.value.message.startswith(f"{req}:1: ")


def test_errors_never_print_credentials(tmp_path: Path) -> None:
    req = write(tmp_path / "r.txt", "https://user:s3cret@example.com/not-a-wheel.whl\n")
    with pytest.raises(UsageError) as caught:
        read_requirements_file(req)
    assert "s3cret" not in caught.value.message


# --- classifying and rewriting -------------------------------------------------------------


def test_is_family_compares_canonical_names() -> None:
    assert is_family(one("TorchVision"), FAMILY)
    assert is_family(one("torch"), {"Torch"})
    assert not is_family(one("torch-vision"), FAMILY)
    assert not is_family(one("numpy"), FAMILY)


def test_exact_pin_gains_the_local_label() -> None:
    line = one('torch[opt-einsum]==2.5.1 ; python_version >= "3.9"')
    new = rewrite_line(line, PINS)
    assert new.text == 'torch[opt-einsum]==2.5.1+cu124 ; python_version >= "3.9"'
    assert new.requirement == Requirement(new.text)
    assert render_line(new) == new.text


def test_range_gains_the_pins_specifier_sorted() -> None:
    new = rewrite_line(one("Torch>=2.4,<3"), PINS)
    assert new.text == "Torch<3,==2.5.*,>=2.4"  # name spelling kept; packaging's order
    assert new.name == "torch"
    assert rewrite_line(one("torchvision"), PINS).text == "torchvision==0.20.*"


def test_existing_label_and_arbitrary_equality_are_left_alone() -> None:
    labelled = one("torch==2.5.1+cu121")
    assert rewrite_line(labelled, PINS) is labelled  # ==2.5.* is implied, the label is kept
    arbitrary = one("torch===2.5.1")
    assert rewrite_line(arbitrary, PINS) is arbitrary


def test_pin_without_label_leaves_versions_alone() -> None:
    pins = {"torch": RewritePin(SpecifierSet("==2.5.*"), None)}
    assert rewrite_line(one("torch==2.5.1"), pins).text == "torch==2.5.1"
    assert rewrite_line(one("torch"), pins).text == "torch==2.5.*"


def test_hashes_and_options_survive_rewriting(tmp_path: Path) -> None:
    req = write(
        tmp_path / "r.txt",
        f"torch==2.5.1 --hash={HASH_A} --hash={HASH_B} --config-settings=k=v\n",
    )
    [line] = read_requirements_file(req).lines
    new = rewrite_line(line, PINS)
    assert (new.hashes, new.options, new.origin) == (line.hashes, line.options, line.origin)
    assert render_line(new) == (f"torch==2.5.1+cu124 --hash={HASH_A} --hash={HASH_B} --config-settings=k=v")


def test_rendered_file_reads_back_the_same(tmp_path: Path) -> None:
    req = write(
        tmp_path / "r.txt",
        "--index-url https://download.pytorch.org/whl/cu124\n"
        f"torch[opt-einsum]==2.5.1 ; python_version >= '3.9' --hash={HASH_A}\n"
        "-e ./my pkg\n".replace("-e ./my pkg", "-e './my pkg'")
        + "numpy --global-option='--a b'\n",
    )
    parsed = read_requirements_file(req)
    rewritten = [rewrite_line(line, PINS) for line in parsed.lines]
    out = write(tmp_path / "out.txt", render_file(rewritten, parsed.global_options))
    again = read_requirements_file(out)
    assert again.global_options == parsed.global_options
    assert [(line.text, line.hashes, line.options, line.editable) for line in again.lines] == [
        (line.text, line.hashes, line.options, line.editable) for line in rewritten
    ]


def test_exact_version_and_local_label_helpers() -> None:
    assert exact_version_of(Requirement("torch==2.5.1+cu121")) == Version("2.5.1+cu121")
    assert local_label_of(Requirement("torch==2.5.1+cu121")) == "cu121"
    assert exact_version_of(Requirement("torch===2.5.1")) == Version("2.5.1")
    assert local_label_of(Requirement("torch==2.5.1")) is None
    assert exact_version_of(Requirement("torch==2.5.*")) is None
    assert exact_version_of(Requirement("torch>=2.5")) is None


# --- credentials ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:tok@host/simple", "https://***@host/simple"),
        ("https://ghp_abc@github.com/o/r.git", "https://***@github.com/o/r.git"),
        (
            "https://h/whl/x.whl?X-Amz-Signature=abc&token=t&page=2#sha256=ff",
            "https://h/whl/x.whl?X-Amz-Signature=***&token=***&page=2#sha256=ff",
        ),
        ("https://host/simple", "https://host/simple"),
        (
            "torch @ git+https://u:p@host/r.git ; python_version > '3'",
            "torch @ git+https://***@host/r.git ; python_version > '3'",
        ),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
