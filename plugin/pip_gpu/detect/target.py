"""The environment packages go into: which interpreter, its Python version, whether it has pip.

Chosen as uv chooses it: ``--python``, else the active ``VIRTUAL_ENV``, else ``./.venv``;
``--system`` takes the ``python3`` on PATH. A command that installs refuses when none of
those says where (uv: "No virtual environment found"): torch must not land in pip-gpu's own
interpreter (for pipx users, pipx's venv) by accident. Commands that only read an
environment (``check``, ``doctor``) fall back to the interpreter running pip-gpu.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import UsageError

__all__ = ["TargetEnv", "find_target", "installed_family_in", "installed_torch_build"]

_PROBE = (
    "import sys, json, sysconfig, importlib.util as u;"
    "p = sysconfig.get_paths();"
    "print(json.dumps({'version': '%d.%d' % sys.version_info[:2], 'prefix': sys.prefix,"
    "'free_threaded': bool(sysconfig.get_config_var('Py_GIL_DISABLED')),"
    "'base_prefix': sys.base_prefix, 'pip': u.find_spec('pip') is not None,"
    "'site': sorted({p['purelib'], p['platlib']})}))"
)


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
    if system and not python:
        on_path = shutil.which("python3", path=env.get("PATH")) or shutil.which(
            "python", path=env.get("PATH")
        )
        if on_path is None:
            raise UsageError("--system: no python3 on PATH", "pass --python PATH to an interpreter")
        return probe(Path(on_path), "--system")
    if python:
        given = Path(python)
        if given.is_dir():
            found = _interpreter_in(given)
            if found is None:
                raise UsageError(
                    f"--python {python}: no interpreter in that folder", "point at a venv or a python"
                )
            return probe(found, "--python")
        if not given.exists():
            raise UsageError(f"--python {python}: no such file", "point at a Python interpreter or a venv")
        return probe(given, "--python")
    if env.get("VIRTUAL_ENV"):
        found = _interpreter_in(Path(env["VIRTUAL_ENV"]))
        if found is not None:
            return probe(found, "VIRTUAL_ENV")
    local = _interpreter_in(cwd / ".venv")
    if local is not None:
        return probe(local, "./.venv")
    if installing:
        raise _no_target_error()
    return probe(Path(sys.executable), "pip-gpu's interpreter")


def probe(python: Path, chosen_by: str) -> TargetEnv:
    """Ask the interpreter itself: one short subprocess, no imports beyond the stdlib."""
    try:
        done = subprocess.run(
            [str(python), "-I", "-c", _PROBE], capture_output=True, text=True, timeout=30, check=False
        )
        info = json.loads(done.stdout)
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


_TORCH_PROBE = r"""
import json, importlib.metadata as md, importlib.util as u, ast, os
out = {}
for name in ("torch", "torchvision", "torchaudio"):
    try:
        out[name] = {"version": md.version(name)}
    except md.PackageNotFoundError:
        continue
    spec = u.find_spec(name)
    locs = list(spec.submodule_search_locations or []) if spec else []
    path = os.path.join(locs[0], "version.py") if locs else None
    if path and os.path.exists(path):
        values = {}
        for node in ast.parse(open(path, encoding="utf-8").read()).body:
            # cuda = '12.4' and, as real wheels write it, cuda: Optional[str] = '13.0'
            targets = node.targets if isinstance(node, ast.Assign) else []
            if isinstance(node, ast.AnnAssign):
                targets = [node.target]
            if isinstance(getattr(node, "value", None), ast.Constant):
                for target in targets:
                    if isinstance(target, ast.Name):
                        values[target.id] = node.value.value
        out[name].update(cuda=values.get("cuda"), hip=values.get("hip"))
print(json.dumps(out))
"""


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
    for name in ("torch", "torchvision", "torchaudio"):
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
                cuda, hip = values.get("cuda"), values.get("hip")
                info.update(
                    cuda=cuda if isinstance(cuda, str) else None, hip=hip if isinstance(hip, str) else None
                )
                break
        found[name] = info
    return found


def installed_torch_build(python: Path) -> dict[str, dict[str, Optional[str]]]:
    """What the environment holds of the family, read from metadata and ``version.py``.

    torch itself is never imported: that takes seconds and may fail for the very reasons
    we are checking.
    """
    try:
        done = subprocess.run(
            [str(python), "-I", "-c", _TORCH_PROBE], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        raise UsageError(
            f"{python} stopped answering while pip-gpu read its installed packages",
            "check that it is a working Python interpreter (--python)",
        ) from None
    try:
        data: dict[str, dict[str, Optional[str]]] = json.loads(done.stdout)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
