"""Compiled GPU architectures read from a binary's ``.nv_fatbin`` section.

Two kinds of binaries: small ELF files written here, byte by byte, in the layout NVIDIA's
fatbin uses (documented in ``pip_gpu.compiled`` and in ``write_cuda_library`` below), and the
real torch 2.14.1 CUDA 13.0 wheel from PyPI (``tests/test_compiled_real.py``).
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from support.index import IndexServer, make_venv, pip_env, run, site_packages
from test_doctor import doctor_run

from pip_gpu.cli import main
from pip_gpu.compiled import (
    FATBIN_MAGIC,
    NotACudaLibrary,
    read_compiled_archs,
    read_version_py,
    read_wheel,
)

SASS, PTX = 2, 1


def fatbin_container(entries: Sequence[tuple[int, int]], payload: int = 24) -> bytes:
    """One fatbin container: a 16-byte header, then per entry a 64-byte header and a payload.

    Container header: magic u32 0xBA55ED50, version u16 1, header size u16 16, size of the
    entries u64. Entry header (64 bytes): kind u16 (1 PTX, 2 cubin), u16 0x0101, header size
    u32, payload size u64, compressed size u32, u32 0, minor u16, major u16, arch u32 (86 for
    sm_86), name offset u32, name length u32, flags u64, u64 0 (and 8 bytes unused here).
    """
    body = b""
    for kind, arch in entries:
        header = struct.pack("<HHIQIIHHIIIQQ", kind, 0x0101, 64, payload, 0, 0, 1, 7, arch, 0, 0, 0x11, 0)
        body += header.ljust(64, b"\0") + bytes([0xCC]) * payload
    return struct.pack("<IHHQ", FATBIN_MAGIC, 1, 16, len(body)) + body


def write_cuda_library(path: Path, containers: Sequence[bytes], *, section: str = ".nv_fatbin") -> Path:
    """A minimal ELF64 shared object: header, the section's bytes, names, three section headers.

    Sections: 0 null, 1 ``.shstrtab`` (the names), 2 the fatbin section, its containers each
    padded to 8 bytes with zeros as the linker aligns them.
    """
    fatbin = b"".join(c + b"\0" * (-len(c) % 8) for c in containers)
    names = b"\0.shstrtab\0" + section.encode() + b"\0"
    fatbin_at = 64
    names_at = fatbin_at + len(fatbin)
    shoff = names_at + len(names) + (-(names_at + len(names)) % 8)
    ident = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
    header = struct.pack("<16sHHIQQQIHHHHHH", ident, 3, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 3, 1)
    null = b"\0" * 64
    shstrtab = struct.pack("<IIQQQQIIQQ", 1, 3, 0, 0, names_at, len(names), 0, 0, 1, 0)
    nv_fatbin = struct.pack("<IIQQQQIIQQ", 11, 1, 2, 0, fatbin_at, len(fatbin), 0, 0, 8, 0)
    data = header + fatbin + names
    path.write_bytes(data + b"\0" * (shoff - len(data)) + null + shstrtab + nv_fatbin)
    return path


def test_sass_and_ptx_per_architecture(tmp_path: Path) -> None:
    kernels = [(SASS, 75), (SASS, 80), (SASS, 90), (PTX, 90)]
    library = write_cuda_library(tmp_path / "libx.so", [fatbin_container(kernels)] * 3)
    found = read_compiled_archs(library)
    assert found.sass == ((7, 5), (8, 0), (9, 0))
    assert found.ptx == ((9, 0),)
    assert found.sass_counts == {(7, 5): 3, (8, 0): 3, (9, 0): 3}
    assert found.to_json()["sass"] == ["7.5", "8.0", "9.0"]
    assert found.to_json()["ptx"] == ["9.0"]
    assert found.to_json()["source"] == "binary"


def test_a_few_special_kernels_are_not_general_coverage(tmp_path: Path) -> None:
    common = fatbin_container([(SASS, 80), (SASS, 120)])
    special = fatbin_container([(SASS, 121)], payload=13)  # odd size: the next container is padded
    library = write_cuda_library(tmp_path / "liby.so", [common] * 10 + [special])
    found = read_compiled_archs(library)
    assert found.sass == ((8, 0), (12, 0))
    assert found.sass_partial == ((12, 1),)
    assert found.describe() == "sm_80 sm_120 (a few kernels for sm_121), no PTX"


def test_a_library_without_device_code(tmp_path: Path) -> None:
    library = write_cuda_library(tmp_path / "libz.so", [fatbin_container([(SASS, 80)])], section=".rodata")
    with pytest.raises(NotACudaLibrary, match=r"no \.nv_fatbin section"):
        read_compiled_archs(library)
    (tmp_path / "text.so").write_text("not an ELF file")
    with pytest.raises(NotACudaLibrary, match="not an ELF file"):
        read_compiled_archs(tmp_path / "text.so")


def test_version_py_with_annotated_assignments() -> None:
    text = (
        "from typing import Optional\n__all__ = ['__version__']\n"
        "__version__ = '2.15.0+cu132'\ncuda: Optional[str] = '13.2'\nhip: Optional[str] = None\n"
    )
    assert read_version_py(text) == {"__version__": "2.15.0+cu132", "cuda": "13.2", "hip": None}


# --- knowledge verify over small synthetic wheels --------------------------------------------


def write_torch_wheel(
    folder: Path,
    version: str,
    *,
    cuda: str,
    requires_python: str,
    requires: Sequence[str] = (),
    kernels: Sequence[tuple[int, int]] = (),
    tag: str = "cp312-cp312-manylinux_2_28_x86_64",
) -> Path:
    """A torch wheel holding only what ``knowledge verify`` reads: version.py, METADATA, the library."""
    public = version.split("+")[0]
    wheel = folder / f"torch-{version}-{tag}.whl"
    library = write_cuda_library(folder / "libtorch_cuda.so", [fatbin_container(kernels)] * 4)
    metadata = f"Metadata-Version: 2.4\nName: torch\nVersion: {version}\nRequires-Python: {requires_python}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("torch/version.py", f"__version__ = {version!r}\ncuda: str = {cuda!r}\nhip = None\n")
        archive.writestr(f"torch-{public}.dist-info/METADATA", metadata)
        archive.write(library, "torch/lib/libtorch_cuda.so")
    return wheel


def test_read_wheel_reads_the_files_not_the_name(tmp_path: Path) -> None:
    wheel = write_torch_wheel(
        tmp_path, "2.15.0+cu132", cuda="13.2", requires_python=">=3.11", kernels=[(SASS, 75), (SASS, 120)]
    )
    facts = read_wheel(wheel)
    assert (facts.version, facts.cuda, facts.requires_python) == ("2.15.0+cu132", "13.2", ">=3.11")
    assert facts.compiled is not None and facts.compiled.sass == ((7, 5), (12, 0))


def test_knowledge_verify_agrees_with_a_matching_wheel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x86 = [(SASS, a) for a in (75, 80, 86, 90, 100, 120)]
    wheel = write_torch_wheel(
        tmp_path,
        "2.15.0+cu132",
        cuda="13.2",
        requires_python=">=3.11",
        requires=["torchvision==0.29.2 ; extra == 'vision'"],
        kernels=x86,
    )
    assert main(["knowledge", "verify", str(wheel)]) == 0
    out = capsys.readouterr().out
    assert "torch 2.15.0+cu132 (linux-x86_64): agrees with the knowledge file" in out


def test_knowledge_verify_names_each_difference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wheel = write_torch_wheel(
        tmp_path,
        "2.14.1+cu130",
        cuda="13.0",
        requires_python=">=3.9",
        kernels=[(SASS, 75), (SASS, 80), (SASS, 90), (PTX, 120)],
    )
    assert main(["knowledge", "verify", "--json", str(wheel)]) == 1
    report = json.loads(capsys.readouterr().out)
    (row,) = report["wheels"]
    assert row["torch"] == "2.14.1+cu130"
    fields = {d["field"]: d for d in row["differences"]}
    assert set(fields) == {"python", "sass", "ptx"}
    assert fields["sass"]["wheel"] == "7.5, 8.0, 9.0"
    assert fields["sass"]["knowledge"] == "7.5, 8.0, 8.6, 9.0, 10.0, 12.0"
    assert (fields["ptx"]["wheel"], fields["ptx"]["knowledge"]) == ("12.0", "none")
    assert "3.9" in fields["python"]["wheel"]
    assert main(["knowledge", "verify", str(wheel)]) == 1
    text = capsys.readouterr().out
    assert "sass: wheel 7.5, 8.0, 9.0; knowledge file 7.5, 8.0, 8.6, 9.0, 10.0, 12.0" in text


def test_knowledge_verify_bad_input_is_one_error_line(tmp_path: Path) -> None:
    (tmp_path / "torch-2.0.0-py3-none-any.whl").write_text("not a zip")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip_gpu",
            "knowledge",
            "verify",
            str(tmp_path / "torch-2.0.0-py3-none-any.whl"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("pip-gpu: error: ")
    assert "Traceback" not in done.stderr


# --- doctor prefers the binary over the knowledge file -------------------------------------


def test_doctor_trusts_the_binary_over_the_knowledge_file(
    fixture_index: IndexServer, fake_nvml_dir: Path, tmp_path: Path
) -> None:
    """The knowledge file says torch 2.5.1+cu124 carries sm_50-sm_90; this one was built with sm_90 only."""
    python = make_venv(tmp_path / "venv", with_pip=False)
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps"]
    run([*pip, "--index-url", fixture_index.variant_url("cu124"), "torch==2.5.1+cu124"], env=pip_env())
    library = site_packages(python) / "torch" / "lib" / "libtorch_cuda.so"
    library.parent.mkdir(parents=True, exist_ok=True)
    write_cuda_library(library, [fatbin_container([(SASS, 90)])] * 4)

    out = doctor_run(tmp_path, fake_nvml_dir, python=python)  # an A100, sm_80
    assert out.data["compiled_archs"]["sass"] == ["9.0"]
    arch = out.finding("gpu-arch")
    assert arch["status"] == "failure"
    assert arch["summary"].startswith(
        "NVIDIA A100-SXM4-80GB (sm_80) is too old for torch 2.5.1+cu124, which carries sm_90"
    )
    assert any(
        "the knowledge file says sm_50" in line and "the binary wins" in line for line in arch["evidence"]
    )
