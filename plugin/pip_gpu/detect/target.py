"""The environment packages go into: which interpreter, its Python version, whether it has pip.

Chosen as uv chooses it: ``--python``, else the active ``VIRTUAL_ENV``, else ``./.venv``;
``--system`` takes the ``python3`` on PATH. A command that installs refuses when none of
those says where (uv: "No virtual environment found"): torch must not land in pip-gpu's own
interpreter (for pipx users, pipx's venv) by accident. Commands that only read an
environment (``check``, ``doctor``) fall back to the interpreter running pip-gpu.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from packaging.version import InvalidVersion, Version

from ..errors import PipGpuError, UsageError
from ..variant import Variant

__all__ = [
    "FAMILY_WITH_BUILD_INFO",
    "FamilyBuild",
    "ImportView",
    "Installed",
    "TargetEnv",
    "TorchCopy",
    "find_target",
    "installed_family_in",
    "installed_torch_build",
    "probe",
    "read_import_view",
    "read_installed",
    "target_python_version",
]

PROBE_TIMEOUT_S = 60
FAMILY_WITH_BUILD_INFO = ("torch", "torchvision", "torchaudio")  # the ones that write version.py

# The one program pip-gpu runs in a target interpreter. Standard library only (the target may
# have nothing else) until the marker values, which come from packaging's own
# default_environment() run there. Its stdin is a JSON object saying what to read (not argv: a
# lock of 50,000 packages to verify is more than one argument may hold, 128 KiB on Linux):
#   installed: the distributions (name -> version), skipping pip's "~orch" leftovers
#   verify:    names whose files are checked against their RECORD: every file present and of
#              the recorded size; sha256 of the files that say which build it is (the top-level
#              packages' version.py, the .dist-info's METADATA and WHEEL), or of every file
#              with hash_all (--verify-files: reads every byte, seconds per GB)
#   family:    names read as the target would import them: location and version.py's cuda/hip
#   copies:    sys.path, the user site, conda, and every folder holding a torch package
#   markers:   the folder to import packaging from (pip-gpu's own), for the PEP 508 values
_PROBE = r"""
import json, os, sys, sysconfig
import importlib.util as u
ask = json.loads(sys.stdin.read() or "{}")
if ask.get("installed") or ask.get("family") or ask.get("copies"):
    # only where asked: importlib.metadata and ast are most of a bare probe's start-up
    import ast, base64, csv, hashlib, re
    import importlib.metadata as md
paths = sysconfig.get_paths()
out = {"version": "%d.%d" % sys.version_info[:2], "prefix": sys.prefix, "base_prefix": sys.base_prefix,
       "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
       "pip": u.find_spec("pip") is not None, "site": sorted({paths["purelib"], paths["platlib"]})}
def constants(path):
    try:
        tree = ast.parse(open(path, encoding="utf-8").read())
    except (OSError, SyntaxError, ValueError):
        return None
    values = {}
    for node in tree.body:
        # cuda = '12.4' and, as real wheels write it, cuda: Optional[str] = '13.0'
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if isinstance(getattr(node, "value", None), ast.Constant):
            for target in targets:
                if isinstance(target, ast.Name):
                    values[target.id] = node.value.value
    return values
def key(name):
    return re.sub(r"[-_.]+", "-", name).lower()
def decisive(path):
    # the files that say which build this is: torch/version.py, the metadata pip-gpu reads
    parts = path.split("/")
    if len(parts) == 2 and parts[1] == "version.py":
        return True
    return len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] in ("METADATA", "WHEEL")
def damage(dist, hash_all):
    # RECORD read with csv rather than dist.files: a quarter of the time on torch's 12,000 rows
    text = dist.read_text("RECORD")
    if text is None:
        return "its RECORD is missing"
    base = str(dist.locate_file(""))
    missing = changed = total = 0
    for row in csv.reader(text.splitlines()):
        if not row or not row[0] or "__pycache__" in row[0].split("/"):
            continue
        total += 1
        where = os.path.join(base, row[0])
        recorded_hash = row[1] if len(row) > 1 else ""
        recorded_size = row[2] if len(row) > 2 and row[2].isdigit() else None
        try:
            size = os.stat(where).st_size
        except OSError:
            missing += 1
            continue
        if recorded_size is not None and size != int(recorded_size):
            changed += 1
        elif recorded_hash.startswith("sha256=") and (hash_all or recorded_size is None or decisive(row[0])):
            digest = hashlib.sha256()
            with open(where, "rb") as stream:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    digest.update(block)
            if base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode() != recorded_hash[7:]:
                changed += 1
    if missing or changed:
        return "%d of its %d files are missing and %d differ from its RECORD" % (missing, total, changed)
    return None
if ask.get("installed"):
    verify = set(ask.get("verify", ()))
    dists, broken = {}, {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        # pip renames a folder it is replacing to "~orch-..." and leaves it when killed: not torch
        if not name or os.path.basename(str(getattr(dist, "_path", ""))).startswith("~"):
            continue
        name = key(name)
        if name in dists:
            continue
        dists[name] = dist.version
        if name in verify:
            why = damage(dist, bool(ask.get("hash_all")))
            if why:
                broken[name] = why
    out.update(dists=dists, broken=broken)
if ask.get("family"):
    family = {}
    for name in ask["family"]:
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        entry = {"version": dist.version, "location": str(dist.locate_file("")), "build_info": False}
        try:
            spec = u.find_spec(name.replace("-", "_"))
        except (ImportError, ValueError):
            spec = None
        locations = list(spec.submodule_search_locations or []) if spec else []
        info = constants(os.path.join(locations[0], "version.py")) if locations else None
        if info is not None:
            entry.update(build_info=True, cuda=info.get("cuda"), hip=info.get("hip"))
        family[name] = entry
    out["family"] = family
if ask.get("copies"):
    import site
    out.update(sys_path=[], torch_copies=[], conda=os.path.isdir(os.path.join(sys.prefix, "conda-meta")),
               user_site=site.getusersitepackages() if site.ENABLE_USER_SITE else None)
    seen = set()
    for raw in sys.path:
        entry = os.path.abspath(raw or os.getcwd())
        if entry in seen or not os.path.isdir(entry):
            continue
        seen.add(entry)
        out["sys_path"].append(entry)
        try:
            listing = os.listdir(entry)
        except OSError:
            continue
        meta = sorted(n for n in listing
                      if n.endswith((".dist-info", ".egg-info")) and n.split("-")[0].lower() == "torch")
        package = os.path.isfile(os.path.join(entry, "torch", "__init__.py"))
        if meta or package:
            info = constants(os.path.join(entry, "torch", "version.py")) if package else None
            out["torch_copies"].append({"location": entry, "package": package, "metadata": meta,
                                        "version": (info or {}).get("__version__")})
if ask.get("markers"):
    sys.path.append(ask["markers"])  # last: the target's own packaging, if it has one, is as good
    from packaging.markers import default_environment
    out["markers"] = dict(default_environment())
print(json.dumps(out))
"""


@dataclass(frozen=True)
class TargetEnv:
    python: Path
    python_version: str  # "3.12"; "3.14t" for a free-threaded interpreter (it takes cp314t wheels)
    prefix: Path
    has_pip: bool
    is_virtualenv: bool
    chosen_by: str  # "--python", "VIRTUAL_ENV", "./.venv", "--system", "pip-gpu's interpreter"
    site_packages: tuple[Path, ...] = ()  # where the installers put packages


def _interpreter_in(folder: Path) -> Optional[Path]:
    for candidate in (folder / "bin" / "python", folder / "Scripts" / "python.exe"):
        if candidate.exists():
            return candidate
    return None


def _no_target_error() -> UsageError:
    return UsageError(
        "no virtual environment found: no --python, no $VIRTUAL_ENV and no ./.venv",
        "activate one (source .venv/bin/activate), create ./.venv (python3 -m venv .venv), "
        "or pass --python PATH; --system installs into the python3 on PATH",
    )


def find_target(
    python: Optional[str],
    cwd: Path,
    env: Mapping[str, str],
    *,
    system: bool = False,
    installing: bool = False,
) -> TargetEnv:
    """``--python``, else ``--system``, else ``$VIRTUAL_ENV``, else ``./.venv``.

    ``installing``: refuse when none of them says where; otherwise (a command that only
    reads) take the interpreter running pip-gpu.
    """
    return probe(*_chosen_interpreter(python, cwd, env, system=system, installing=installing))


def target_python_version(cwd: Path, env: Mapping[str, str]) -> str:
    """The Python version of the interpreter :func:`find_target` takes for a command that only
    reads (``lock``'s own target), not started when it is the very program running pip-gpu
    (the same file: the same version, so the probe would only say what is known here)."""
    python, chosen_by = _chosen_interpreter(None, cwd, env)
    try:
        same = os.path.samefile(python, sys.executable)
    except OSError:
        same = False
    if not same:
        return probe(python, chosen_by).python_version
    from .platform import current_python_version

    return current_python_version()


def _chosen_interpreter(
    python: Optional[str],
    cwd: Path,
    env: Mapping[str, str],
    *,
    system: bool = False,
    installing: bool = False,
) -> tuple[Path, str]:
    """The interpreter :func:`find_target` asks, and what chose it."""
    if system and not python:
        on_path = shutil.which("python3", path=env.get("PATH")) or shutil.which(
            "python", path=env.get("PATH")
        )
        if on_path is None:
            raise UsageError("--system: no python3 on PATH", "pass --python PATH to an interpreter")
        return Path(on_path), "--system"
    if python:
        # ``--python ./python``: kept relative, Path drops the ./ and a child runs the python on
        # PATH; absolute, a value with a separator or naming an existing file is that file.
        given = Path(os.path.abspath(python))
        if given.is_dir():
            found = _interpreter_in(given)
            if found is None:
                raise UsageError(
                    f"--python {python}: no interpreter in that folder", "point at a venv or a python"
                )
            return found, "--python"
        if not given.exists():
            raise UsageError(f"--python {python}: no such file", "point at a Python interpreter or a venv")
        return given, "--python"
    if env.get("VIRTUAL_ENV"):
        found = _interpreter_in(Path(env["VIRTUAL_ENV"]))
        if found is not None:
            return found, "VIRTUAL_ENV"
    local = _interpreter_in(cwd / ".venv")
    if local is not None:
        return local, "./.venv"
    if installing:
        raise _no_target_error()
    return Path(sys.executable), "pip-gpu's interpreter"


def _ask(
    python: Path,
    request: Mapping[str, Any],
    *,
    timeout: float,
    isolated: bool = True,
    env: Optional[Mapping[str, str]] = None,
) -> dict[str, Any]:
    """Run the probe in ``python``; its JSON answer. Raises OSError, TimeoutExpired, ValueError."""
    argv = [str(python), *(["-I"] if isolated else []), "-c", _PROBE]
    done = subprocess.run(
        argv,
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=None if env is None else dict(env),
    )
    answer = json.loads(done.stdout) if done.stdout.strip() else None
    if not isinstance(answer, dict) or "version" not in answer:
        detail = done.stderr.strip().splitlines()[-1:] or [f"it printed {done.stdout.strip()[:80]!r}"]
        raise ValueError(detail[0])
    return answer


def _packaging_folder() -> str:
    """The folder pip-gpu's own ``packaging`` is imported from, lent to the target for markers."""
    import packaging

    return str(Path(packaging.__file__).resolve().parent.parent)


def probe(python: Path, chosen_by: str) -> TargetEnv:
    """Ask the interpreter itself: one short subprocess, no imports beyond the stdlib."""
    try:
        info = _ask(python, {}, timeout=PROBE_TIMEOUT_S)
        return TargetEnv(
            python=python,
            python_version=str(info["version"]) + ("t" if info.get("free_threaded") else ""),
            prefix=Path(info["prefix"]),
            has_pip=bool(info["pip"]),
            is_virtualenv=info["prefix"] != info["base_prefix"],
            chosen_by=chosen_by,
            site_packages=tuple(Path(p) for p in info.get("site", ())),
        )
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError, AttributeError):
        # not a Python, one that hangs, or one that answers something else ("{}")
        raise UsageError(
            f"{python} is not a working Python interpreter", "pass --python PATH to one"
        ) from None


@dataclass(frozen=True)
class Installed:
    """The target's PEP 508 marker values and its installed distributions (canonical names)."""

    markers: Mapping[str, str]
    dists: Mapping[str, str]
    broken: Mapping[str, str] = field(default_factory=dict)  # name -> how its files differ from RECORD


def read_installed(python: Path, verify: Sequence[str] = (), *, hash_all: bool = False) -> Installed:
    """Marker values and distributions of the target; ``verify``: those names' files are
    checked against their RECORD (every file present and of its recorded size; the sha256 of
    ``version.py``, METADATA and WHEEL, or with ``hash_all`` of every file)."""
    request = {
        "installed": True,
        "verify": sorted(verify),
        "hash_all": hash_all,
        "markers": _packaging_folder(),
    }
    try:
        data = _ask(python, request, timeout=PROBE_TIMEOUT_S)
        return Installed(
            markers={str(k): str(v) for k, v in data["markers"].items()},
            dists={str(k): str(v) for k, v in data["dists"].items()},
            broken={str(k): str(v) for k, v in data["broken"].items()},
        )
    except subprocess.TimeoutExpired:
        raise PipGpuError(
            f"{python} did not list its installed packages within {PROBE_TIMEOUT_S} s",
            "check that it is a working Python interpreter (--python)",
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot run {python}: {exc.strerror or exc}", "check --python") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PipGpuError(
            f"could not read the installed packages of {python}: {exc}",
            "check that it is a working Python interpreter (--python)",
        ) from None


@dataclass(frozen=True)
class FamilyBuild:
    """A torch-family distribution as the target imports it (first on its sys.path)."""

    name: str
    version: str
    location: str
    build_info: bool = False  # whether version.py was read (cuda/hip below are then facts)
    cuda: Optional[str] = None
    hip: Optional[str] = None

    @property
    def public_version(self) -> str:
        try:
            return Version(self.version).public
        except InvalidVersion:
            return self.version.partition("+")[0]

    @property
    def label(self) -> Optional[str]:
        try:
            return Version(self.version).local
        except InvalidVersion:
            return None

    @property
    def variant(self) -> Optional[Variant]:
        """cu124, cpu, rocm6.2: from the local label, else from ``version.py``; None when unknown."""
        labelled = Variant.from_label(self.label)
        if labelled is not None and labelled.has_index:
            return labelled
        if self.cuda:
            return Variant.from_label("cu" + "".join(self.cuda.split(".")[:2]))
        if self.hip:
            return Variant.from_label("rocm" + ".".join(self.hip.split(".")[:2]))
        return Variant.from_label("cpu") if self.build_info else None

    @property
    def cuda_version(self) -> Optional[str]:
        """``"12.4"``: the CUDA the build carries; None for a build without CUDA."""
        if self.cuda:
            return ".".join(self.cuda.split(".")[:2])
        variant = self.variant
        return variant.cuda if variant else None

    def describe(self) -> str:
        return f"{self.name} {self.version}"


@dataclass(frozen=True)
class TorchCopy:
    """A ``torch`` package or metadata directory found in one sys.path entry."""

    location: str
    package: bool  # a ``torch/`` package directory is there
    metadata: tuple[str, ...]  # torch-*.dist-info / torch-*.egg-info names
    version: Optional[str]  # from torch/version.py when the package is there


@dataclass(frozen=True)
class ImportView:
    """What the target imports, as the user runs it: the family, and every torch on sys.path."""

    family: Mapping[str, FamilyBuild]
    torch_copies: tuple[TorchCopy, ...] = ()
    sys_path: tuple[str, ...] = ()
    user_site: Optional[str] = None
    conda: bool = False  # sys.prefix is a conda environment (its own prefix, not a venv)
    # canonical name -> why its files are not what its RECORD lists; None: not verified
    broken: Optional[Mapping[str, str]] = None


def read_import_view(
    python: Path,
    family: Sequence[str],
    *,
    env: Optional[Mapping[str, str]] = None,
    as_user_runs: bool = True,
    verify: Sequence[str] = (),
    hash_all: bool = False,
) -> ImportView:
    """The family as the target would import it, and every torch copy on its sys.path;
    ``verify``: those names' files are checked against their RECORD too (as
    :func:`read_installed` checks them; ``hash_all``: every file's sha256).

    ``as_user_runs``: not isolated (no ``-I``): PYTHONPATH and the user site are exactly what
    puts a second torch in front of the environment's own. An interpreter that does not
    answer gives an empty view (the caller reports what is missing).
    """
    request: dict[str, Any] = {"family": list(family), "copies": as_user_runs}
    if verify:
        request.update(installed=True, verify=sorted(verify), hash_all=hash_all)
    try:
        data = _ask(python, request, timeout=PROBE_TIMEOUT_S, isolated=not as_user_runs, env=env)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return ImportView(family={})
    return ImportView(
        family={
            str(name): FamilyBuild(
                name=str(name),
                version=str(info["version"]),
                location=str(info["location"]),
                build_info=bool(info.get("build_info")),
                cuda=_text(info.get("cuda")),
                hip=_text(info.get("hip")),
            )
            for name, info in data.get("family", {}).items()
        },
        torch_copies=tuple(
            TorchCopy(
                location=str(c["location"]),
                package=bool(c["package"]),
                metadata=tuple(c["metadata"]),
                version=_text(c.get("version")),
            )
            for c in data.get("torch_copies", [])
        ),
        sys_path=tuple(data.get("sys_path", [])),
        user_site=_text(data.get("user_site")),
        conda=bool(data.get("conda")),
        broken={str(k): str(v) for k, v in data["broken"].items()} if "broken" in data else None,
    )


def _text(value: object) -> Optional[str]:
    return value if isinstance(value, str) else None


def module_constants(node: object) -> dict[str, object]:
    """``name = constant`` and ``name: T = constant`` at module level, as Python binds them.

    Real torch wheels write ``cuda: Optional[str] = '13.0'``; older and stand-in ones
    ``cuda = '12.4'``.
    """
    import ast

    if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
        return {t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)}
    if (
        isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and isinstance(node.value, ast.Constant)
    ):
        return {node.target.id: node.value.value}
    return {}


def installed_family_in(site_packages: tuple[Path, ...]) -> dict[str, dict[str, Optional[str]]]:
    """torch, torchvision, torchaudio as installed in these folders: metadata and version.py.

    Read from the files, in this process: after an install we know where the installer put
    things, and starting the target interpreter again costs more than reading them.
    """
    import ast
    from importlib import metadata

    folders = [str(p) for p in site_packages]
    found: dict[str, dict[str, Optional[str]]] = {}
    for name in FAMILY_WITH_BUILD_INFO:
        dist = next(iter(metadata.distributions(name=name, path=folders)), None)
        if dist is None:
            continue
        info: dict[str, Optional[str]] = {"version": dist.version}
        for folder in site_packages:
            version_py = folder / name / "version.py"
            if version_py.is_file():
                values: dict[str, object] = {}
                for node in ast.parse(version_py.read_text(encoding="utf-8")).body:
                    values.update(module_constants(node))
                info.update(cuda=_text(values.get("cuda")), hip=_text(values.get("hip")))
                break
        found[name] = info
    return found


def installed_torch_build(python: Path) -> dict[str, dict[str, Optional[str]]]:
    """What the environment holds of the family, read from metadata and ``version.py``.

    torch itself is never imported: that takes seconds and may fail for the very reasons
    we are checking.
    """
    view = read_import_view(python, FAMILY_WITH_BUILD_INFO, as_user_runs=False)
    return {
        name: {"version": build.version, "cuda": build.cuda, "hip": build.hip}
        for name, build in view.family.items()
    }
