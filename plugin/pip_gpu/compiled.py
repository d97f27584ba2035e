"""What a torch build really carries, read from its files: compiled GPU code and build facts.

The knowledge file says which GPU architectures a build was meant to carry; the binary says
which it does. ``read_compiled_archs`` reads the ``.nv_fatbin`` section of a CUDA shared
library (``torch/lib/libtorch_cuda.so``) and walks the fatbin entry headers only, never the
kernels, so it costs a few thousand small reads on a file of hundreds of megabytes.

The layout walked here (NVIDIA does not document the fatbin format; this is the layout that
``cuobjdump`` and the CUDA runtime read, as described by NVIDIA's ``fatbinary_section.h``
and by public readers of it), all little-endian:

* ELF64 file header; ``e_shoff``/``e_shnum``/``e_shstrndx`` find the section headers and
  their names; the section named ``.nv_fatbin`` holds one or more fatbin containers, each
  aligned to 8 bytes, zero padding between them.
* Container header, 16 bytes: ``magic u32 = 0xBA55ED50``, ``version u16``, ``header_size
  u16``, ``fat_size u64`` (bytes of entries after the header).
* Entry header, at least 36 bytes: ``kind u16`` (1 = PTX, 2 = ELF cubin, i.e. SASS),
  ``unknown u16``, ``header_size u32``, ``payload_size u64``, ``compressed_size u32``,
  ``unknown u32``, ``minor u16``, ``major u16`` (of the entry format), ``arch u32`` (``86``
  for sm_86/compute_86), ... The next entry starts ``header_size + payload_size`` after it.

``sm_90a``-style architecture-specific cubins carry the same ``arch`` number as ``sm_90``
and are counted with it.
"""

from __future__ import annotations

import ast
import os
import shutil
import struct
import tempfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Optional

from .errors import UsageError, environment_fault
from .host import ComputeCapability, format_compute_capability

__all__ = [
    "FATBIN_MAGIC",
    "CompiledArchs",
    "NotACudaLibrary",
    "WheelFacts",
    "read_compiled_archs",
    "read_version_py",
    "read_wheel",
]

FATBIN_MAGIC = 0xBA55ED50
FATBIN_SECTION = ".nv_fatbin"
KIND_PTX = 1
KIND_SASS = 2
_CONTAINER = struct.Struct("<IHHQ")
_ENTRY = struct.Struct("<HHIQIIHHI")
_ELF64_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
_ELF64_SECTION = struct.Struct("<IIQQQQIIQQ")
_SHN_XINDEX = 0xFFFF
# An architecture with fewer cubins than this share of the most common one carries only a
# few special kernels (torch ships a handful for sm_89, sm_103, sm_121): not general coverage.
GENERAL_SHARE = 0.5
CUDA_LIBRARY_IN_WHEEL = "torch/lib/libtorch_cuda.so"


class NotACudaLibrary(Exception):
    """The file is not an ELF64 little-endian library, or has no readable ``.nv_fatbin``."""


@dataclass(frozen=True)
class CompiledArchs:
    """GPU code found in a binary: cubins (SASS) and PTX, counted per architecture."""

    sass_counts: Mapping[ComputeCapability, int]
    ptx_counts: Mapping[ComputeCapability, int]
    path: str

    @property
    def sass(self) -> tuple[ComputeCapability, ...]:
        """Architectures with general SASS coverage (not only a few special kernels)."""
        return _general(self.sass_counts)

    @property
    def sass_partial(self) -> tuple[ComputeCapability, ...]:
        return tuple(sorted(set(self.sass_counts) - set(self.sass)))

    @property
    def ptx(self) -> tuple[ComputeCapability, ...]:
        return _general(self.ptx_counts)

    def to_json(self) -> dict[str, Any]:
        """The shape ``doctor --json`` reports under ``compiled_archs``."""
        return {
            "sass": [format_compute_capability(cc) for cc in self.sass],
            "ptx": [format_compute_capability(cc) for cc in self.ptx],
            "sass_partial": [format_compute_capability(cc) for cc in self.sass_partial],
            "source": "binary",
            "path": self.path,
        }

    def describe(self) -> str:
        sass = " ".join(f"sm_{a}{b}" for a, b in self.sass) or "no SASS"
        partial = " ".join(f"sm_{a}{b}" for a, b in self.sass_partial)
        ptx = " ".join(f"compute_{a}{b}" for a, b in self.ptx)
        return (
            sass
            + (f" (a few kernels for {partial})" if partial else "")
            + (f", PTX {ptx}" if ptx else ", no PTX")
        )


def _general(counts: Mapping[ComputeCapability, int]) -> tuple[ComputeCapability, ...]:
    if not counts:
        return ()
    most = max(counts.values())
    return tuple(sorted(cc for cc, n in counts.items() if n >= most * GENERAL_SHARE))


def _arch(number: int) -> ComputeCapability:
    return number // 10, number % 10


def _read_exact(stream: BinaryIO, offset: int, size: int) -> bytes:
    stream.seek(offset)
    data = stream.read(size)
    if len(data) != size:
        raise NotACudaLibrary(f"truncated at byte {offset}")
    return data


def _fatbin_section(stream: BinaryIO) -> tuple[int, int]:
    """Offset and size of ``.nv_fatbin``, from the ELF64 section headers."""
    stream.seek(0)
    if stream.read(4) != b"\x7fELF":
        raise NotACudaLibrary("not an ELF file")
    header = _read_exact(stream, 0, _ELF64_HEADER.size)
    ident = header[:16]
    if ident[4] != 2 or ident[5] != 1:
        raise NotACudaLibrary("not a 64-bit little-endian ELF file")
    fields = _ELF64_HEADER.unpack(header)
    shoff, shentsize, shnum, shstrndx = fields[6], fields[11], fields[12], fields[13]
    if shoff == 0 or shentsize < _ELF64_SECTION.size:
        raise NotACudaLibrary("no section headers")

    def section(index: int) -> tuple[int, ...]:
        return _ELF64_SECTION.unpack(_read_exact(stream, shoff + index * shentsize, _ELF64_SECTION.size))

    first = section(0)
    if shnum == 0:  # more sections than fit the header: the count is in section 0 (ELF gABI)
        shnum = first[5]
    if shstrndx == _SHN_XINDEX:
        shstrndx = first[6]
    names = section(shstrndx)
    names_table = _read_exact(stream, names[4], names[5])
    wanted = FATBIN_SECTION.encode() + b"\0"
    for index in range(shnum):
        name_offset, _, _, _, offset, size, *_ = section(index)
        if names_table[name_offset : name_offset + len(wanted)] == wanted:
            return offset, size
    raise NotACudaLibrary(f"no {FATBIN_SECTION} section (no CUDA device code)")


# Padding between containers is skipped by searching this much at a time for the next magic.
_SCAN_CHUNK = 1024 * 1024
_MAGIC_BYTES = struct.pack("<I", FATBIN_MAGIC)


def _next_container(stream: BinaryIO, position: int, start: int, end: int) -> Optional[int]:
    """The first container magic at or after ``position`` (before ``end``), 8-byte aligned
    from the section's ``start``.

    Padding (zeros, or anything that is not a container) is searched a chunk at a time,
    never walked 8 bytes per read: a section of 512 MiB of zeros is 512 reads.
    """
    while position + _CONTAINER.size <= end:
        stream.seek(position)
        chunk = stream.read(min(_SCAN_CHUNK, end - position))
        if len(chunk) < 4:
            return None  # the section claims more than the file holds
        found = chunk.find(_MAGIC_BYTES)
        while found >= 0 and (position + found - start) % 8:
            found = chunk.find(_MAGIC_BYTES, found + 1)
        if found >= 0:
            return position + found
        # The magic may straddle two chunks: the next one starts at the last aligned offset
        # that could still begin it.
        step = max(len(chunk) - 3, 1)
        position += step + (-(position + step - start) % 8)
    return None


def _entries(stream: BinaryIO, start: int, size: int) -> Iterator[tuple[int, int]]:
    """(kind, arch number) of every entry of every fatbin container in the section."""
    stream.seek(0, os.SEEK_END)
    position, end = start, min(start + size, stream.tell())  # a section past the file's end stops there
    while position + _CONTAINER.size <= end:
        found = _next_container(stream, position, start, end)
        if found is None:
            return
        position = found
        _, _, header_size, fat_size = _CONTAINER.unpack(_read_exact(stream, position, _CONTAINER.size))
        entry = position + header_size
        container_end = min(entry + fat_size, end)
        while entry + _ENTRY.size <= container_end:
            kind, _, entry_header_size, payload, _, _, _, _, arch = _ENTRY.unpack(
                _read_exact(stream, entry, _ENTRY.size)
            )
            if entry_header_size < _ENTRY.size:
                raise NotACudaLibrary(f"malformed fatbin entry at byte {entry}")
            yield kind, arch
            entry += entry_header_size + payload
        position = max(container_end, position + 8)
        position += -(position - start) % 8


def read_compiled_archs(path: Path) -> CompiledArchs:
    """SASS and PTX architectures in a CUDA shared library, from its fatbin entry headers."""
    sass: Counter[ComputeCapability] = Counter()
    ptx: Counter[ComputeCapability] = Counter()
    try:
        with open(path, "rb") as stream:
            offset, size = _fatbin_section(stream)
            for kind, arch in _entries(stream, offset, size):
                if kind == KIND_SASS:
                    sass[_arch(arch)] += 1
                elif kind == KIND_PTX:
                    ptx[_arch(arch)] += 1
    except (OSError, struct.error) as error:
        raise NotACudaLibrary(str(error)) from None
    return CompiledArchs(sass_counts=dict(sass), ptx_counts=dict(ptx), path=str(path))


# --- wheels --------------------------------------------------------------------------------


def read_version_py(text: str) -> dict[str, object]:
    """Constant assignments of a ``version.py``, annotated ones included (``cuda: str = ...``)."""
    values: dict[str, object] = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            values.update({t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)})
        elif (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(node.value, ast.Constant)
        ):
            values[node.target.id] = node.value.value
    return values


@dataclass(frozen=True)
class WheelFacts:
    """What a torch wheel says about itself: its files, not its name."""

    filename: str
    version: str  # torch/version.py __version__, e.g. "2.14.1+cu130"
    cuda: Optional[str]
    hip: Optional[str]
    requires_python: Optional[str]
    requires_dist: tuple[str, ...]
    compiled: Optional[CompiledArchs]  # None for a build without CUDA code


def read_wheel(wheel: Path) -> WheelFacts:
    """Read ``version.py``, METADATA and the CUDA library's fatbin from a torch wheel."""
    from email.parser import HeaderParser

    try:
        archive = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as error:
        raise UsageError(f"{wheel}: not a readable wheel ({error})") from None
    with archive:
        names = archive.namelist()
        version_py = next((n for n in names if n.endswith("/version.py") and n.count("/") == 1), None)
        metadata = next((n for n in names if n.endswith(".dist-info/METADATA") and n.count("/") == 1), None)
        if version_py is None or metadata is None:
            raise UsageError(f"{wheel}: no torch/version.py or METADATA", "pass a torch wheel")
        member = version_py
        try:
            values = read_version_py(_small_text(archive, version_py))
            member = metadata
            headers = HeaderParser().parsestr(_small_text(archive, metadata))
            compiled: Optional[CompiledArchs] = None
            if CUDA_LIBRARY_IN_WHEEL in names:
                member = CUDA_LIBRARY_IN_WHEEL
                compiled = _archs_in_member(archive, CUDA_LIBRARY_IN_WHEEL)
        except OSError as error:  # the scratch copy of the library (a full disk), or the read
            if member == CUDA_LIBRARY_IN_WHEEL and error.errno is not None:
                raise environment_fault(error, f"a scratch copy of {member}") from None
            raise UsageError(
                f"{wheel}: cannot read {member} ({error})", "pass an intact torch wheel"
            ) from None
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as error:
            # a bad CRC, a truncated or encrypted member, a compression zipfile cannot read
            raise UsageError(
                f"{wheel}: cannot read {member} ({type(error).__name__}: {error})",
                "pass an intact torch wheel",
            ) from None
        except UnicodeDecodeError as error:
            raise UsageError(
                f"{wheel}: {member} is not UTF-8 ({error.reason})", "pass a torch wheel"
            ) from None
        except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
            raise UsageError(
                f"{wheel}: {member} cannot be read ({type(error).__name__}: {str(error)[:200]})",
                "pass a torch wheel",
            ) from None
        except NotACudaLibrary as error:
            raise UsageError(
                f"{wheel}: {member} is not a CUDA library pip-gpu can read ({error})", "pass a torch wheel"
            ) from None

    def text(name: str) -> Optional[str]:
        value = values.get(name)
        return value if isinstance(value, str) else None

    return WheelFacts(
        filename=wheel.name,
        version=text("__version__") or str(headers.get("Version", "")),
        cuda=text("cuda"),
        hip=text("hip"),
        requires_python=headers.get("Requires-Python"),
        requires_dist=tuple(headers.get_all("Requires-Dist") or ()),
        compiled=compiled,
    )


# version.py and METADATA are a few kilobytes; a member that says it is larger is not read.
_SMALL_MEMBER_BYTES = 4 * 1024 * 1024


def _small_text(archive: zipfile.ZipFile, member: str) -> str:
    """A small text member, read with a bound whatever its header claims (a zip bomb)."""
    with archive.open(member) as source:
        data = source.read(_SMALL_MEMBER_BYTES + 1)
    if len(data) > _SMALL_MEMBER_BYTES:
        raise ValueError(f"{member} is larger than {_SMALL_MEMBER_BYTES // 2**20} MiB")
    return data.decode("utf-8")


def _archs_in_member(archive: zipfile.ZipFile, member: str) -> CompiledArchs:
    """A library inside a zip: stream it to a temporary file, then walk its headers."""
    folder = tempfile.mkdtemp(prefix="pip-gpu-fatbin-")
    try:
        path = Path(folder) / os.path.basename(member)
        with archive.open(member) as source, open(path, "wb") as target:
            shutil.copyfileobj(source, target, 8 * 1024 * 1024)
        found = read_compiled_archs(path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return CompiledArchs(found.sass_counts, found.ptx_counts, f"{archive.filename}!{member}")
