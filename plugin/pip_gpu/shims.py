"""``pip-gpu shim``: small ``pip``, ``pip3``, ``uv`` and ``uvx`` scripts first on PATH.

A shim is a POSIX shell script. It finds the real program as the next one on PATH that is
not in a pip-gpu shims directory (each holds a marker file, so the directory is skipped
however it is reached: twice on PATH, through a symlink, another copy) and is not the shim
itself reached through a link from another folder, and hands over to it
with ``exec``. Only a command that may install the torch family starts Python: the script
looks for the subcommand words that can (``install`` for pip, ``run`` for uv, ...) and
otherwise never leaves the shell. ``pip_gpu.shim.run`` then decides precisely.

For Windows (``sys.platform == "win32"``, or ``shim install --platform windows``) each shim
is a ``.cmd`` for cmd.exe and a ``.ps1`` for PowerShell that hand every command to Python,
which finds the real program the same way.

A venv's ``activate`` puts its ``bin/`` first on PATH, before the shims; ``shim init`` therefore
prints a hook (bash, zsh, fish, PowerShell) that puts the shims back first before each prompt.
``python -m pip`` runs pip without any program on PATH: no shim can see it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import __version__
from .errors import UsageError

__all__ = [
    "MARKER",
    "SHIM_NAMES",
    "ShimState",
    "ShimsStatus",
    "default_shims_dir",
    "first_on_path",
    "init_script",
    "install_shims",
    "sh_quote",
    "shim_script",
    "shims_dir",
    "shims_status",
    "uninstall_shims",
    "windows_shims",
]

SHIM_NAMES = ("pip", "pip3", "uv", "uvx")
MARKER = ".pip-gpu-shims"
_SIGNATURE = "# pip-gpu shim:"

# Words that make the shell hand a command to Python; everything else goes straight to the
# real program. Over-approximate on purpose (``pip show install`` starts Python, which then
# passes it through): a shell ``case`` cannot parse options, Python can.
_ROUTE_WORDS = {
    "pip": "install|download|wheel|lock",
    "uv": "install|compile|sync|run|add|lock",
}
# uvx (``uv tool run``) only matters when the torch family is named on its command line.
_UVX_PATTERN = "*torch*|*triton*|*xformers*|*fbgemm*|--with-requirements*"

_TEMPLATE = """\
#!/bin/sh
{signature} {name} (pip-gpu {version}). Remove with `pip-gpu shim uninstall`.
# Runs the next {name} on PATH after pip-gpu's shims; commands that may install the torch
# family go through pip-gpu first. PIP_GPU_DISABLE=1 makes this a pure pass-through.
_pg_name={name}
_pg_python={python}
_pg_path={package_path}
_pg_depth=${{PIP_GPU_SHIM_DEPTH:-0}}
case $_pg_depth in *[!0-9]*|'') _pg_depth=0 ;; esac
if [ "$_pg_depth" -ge 8 ]; then
  echo "pip-gpu: the $_pg_name shim keeps calling itself; check PATH, or set PIP_GPU_DISABLE=1" >&2
  exit 126
fi
_pg_real=
_pg_rest=$PATH:
while [ -n "$_pg_rest" ]; do
  _pg_dir=${{_pg_rest%%:*}}
  _pg_rest=${{_pg_rest#*:}}
  [ -n "$_pg_dir" ] || _pg_dir=.
  [ -f "$_pg_dir/{marker}" ] && continue
  # a link to this shim from a folder without the marker would run this script again
  [ "$_pg_dir/$_pg_name" -ef "$0" ] && continue
  if [ -f "$_pg_dir/$_pg_name" ] && [ -x "$_pg_dir/$_pg_name" ]; then
    _pg_real=$_pg_dir/$_pg_name
    break
  fi
done
if [ -z "$_pg_real" ]; then
  echo "pip-gpu: no $_pg_name on PATH after pip-gpu's shims; install it, or run 'pip-gpu shim uninstall'" >&2
  exit 127
fi
PIP_GPU_SHIM_DEPTH=$((_pg_depth + 1))
export PIP_GPU_SHIM_DEPTH
case ${{PIP_GPU_DISABLE:-}} in ''|0|false|no) ;; *) exec "$_pg_real" "$@" ;; esac
_pg_route=
for _pg_arg in "$@"; do
  case $_pg_arg in {route}) _pg_route=1; break ;; esac
done
[ -n "$_pg_route" ] || exec "$_pg_real" "$@"
if [ ! -x "$_pg_python" ]; then
  echo "pip-gpu: the $_pg_name shim cannot run pip-gpu ($_pg_python is gone);" \
    "set PIP_GPU_DISABLE=1 to run $_pg_name alone, or reinstall the shims" >&2
  exit 1
fi
exec "$_pg_python" -E -c '
import sys
sys.path[0] = sys.argv.pop(1)
try:
    from pip_gpu.shim.run import main
except Exception as error:
    sys.stderr.write("pip-gpu: the shim cannot load pip-gpu (%s); nothing was run. "
                     "Set PIP_GPU_DISABLE=1 to run the real program alone.\\n" % error)
    sys.exit(1)
sys.exit(main(sys.argv[1:]))
' "$_pg_path" "$_pg_name" "$_pg_real" "$@"
"""


def sh_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def shim_script(name: str, python: str, package_path: str) -> str:
    """The shell script for one shim; ``python -E`` with ``package_path`` runs pip-gpu."""
    base = "pip" if name.startswith("pip") else name
    route = _UVX_PATTERN if base == "uvx" else _ROUTE_WORDS[base]
    return _TEMPLATE.format(
        signature=_SIGNATURE,
        name=name,
        version=__version__,
        python=sh_quote(python),
        package_path=sh_quote(package_path),
        marker=MARKER,
        route=route,
    )


# The Python line both Windows shims run: the shims folder and the name go first, so
# ``pip_gpu.shim.run.windows_main`` can find the real program after it on PATH.
_WINDOWS_CODE = (
    "import sys; sys.path[0] = sys.argv.pop(1); from pip_gpu.shim.run import windows_main; "
    "sys.exit(windows_main(sys.argv[1:]))"
)
_CMD_TEMPLATE = """\
@echo off
rem {signature} {name} (pip-gpu {version}). Remove with `pip-gpu shim uninstall`.
rem Runs the next {name} on PATH after pip-gpu's shims; commands that may install the torch
rem family go through pip-gpu first. PIP_GPU_DISABLE=1 makes this a pure pass-through.
"{python}" -E -c "{code}" "{package_path}" {name} "%~dp0." %*
exit /b %ERRORLEVEL%
"""
_PS1_TEMPLATE = """\
{signature} {name} (pip-gpu {version}). Remove with `pip-gpu shim uninstall`.
# Runs the next {name} on PATH after pip-gpu's shims; commands that may install the torch
# family go through pip-gpu first. PIP_GPU_DISABLE=1 makes this a pure pass-through.
& '{python_ps}' -E -c '{code}' '{package_path_ps}' {name} $PSScriptRoot @args
exit $LASTEXITCODE
"""


def windows_shims(name: str, python: str, package_path: str) -> dict[str, str]:
    """``name.cmd`` (cmd.exe) and ``name.ps1`` (PowerShell): file name -> content."""
    values = dict(signature=_SIGNATURE, name=name, version=__version__, code=_WINDOWS_CODE)
    return {
        f"{name}.cmd": _CMD_TEMPLATE.format(python=python, package_path=package_path, **values),
        f"{name}.ps1": _PS1_TEMPLATE.format(
            python_ps=python.replace("'", "''"), package_path_ps=package_path.replace("'", "''"), **values
        ),
    }


def default_shims_dir(env: Mapping[str, str] = os.environ) -> Path:
    """The user's data directory: XDG on Linux, as pipx and pyenv place theirs."""
    if sys.platform == "win32":
        base = Path(env.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "pip-gpu" / "shims"


def shims_dir(given: Optional[str] = None) -> Path:
    """The shims folder: ``given`` (``--dir``), else ``PIP_GPU_SHIMS_DIR``, else the default."""
    chosen = given or os.environ.get("PIP_GPU_SHIMS_DIR")
    return Path(chosen).expanduser().absolute() if chosen else default_shims_dir()


def _is_our_shim(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            return any(_SIGNATURE in line for line in (handle.readline(), handle.readline()))
    except OSError:
        return False


def _shim_files(name: str, windows: bool) -> list[str]:
    return [f"{name}.cmd", f"{name}.ps1"] if windows else [name]


def _package_path() -> str:
    """The folder ``pip_gpu`` is imported from, so the shim works from a checkout too."""
    return str(Path(__file__).resolve().parent.parent)


def install_shims(folder: Path, *, windows: bool, python: str) -> list[str]:
    """Write every shim into ``folder`` (``.cmd`` and ``.ps1`` for Windows); the files written.

    ``python``: the interpreter the shims run pip-gpu with. A file of the same name that is not
    a pip-gpu shim is never overwritten.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"cannot put the shims in {folder}: {exc.strerror or exc}", "choose a folder you can write: --dir"
        ) from None
    files = [file for name in SHIM_NAMES for file in _shim_files(name, windows)]
    for file in files:
        target = folder / file
        if target.exists() and not _is_our_shim(target):
            raise UsageError(f"{target} exists and is not a pip-gpu shim", "choose another --dir")
    (folder / MARKER).write_text(
        "This folder holds pip-gpu's shims; every shim skips it when looking for the real program.\n",
        encoding="utf-8",
    )
    for name in SHIM_NAMES:
        if windows:
            for file, content in windows_shims(name, python, _package_path()).items():
                # cmd.exe reads its scripts in the console's code page: CRLF, as Windows writes them
                (folder / file).write_bytes(content.replace("\n", "\r\n").encode("utf-8"))
            continue
        target = folder / name
        target.write_text(shim_script(name, python, _package_path()), encoding="utf-8")
        target.chmod(0o755)
    return files


def _same_dir(a: str, b: Path) -> bool:
    try:
        return os.path.samefile(a or ".", b)
    except OSError:
        return False


def first_on_path(folder: Path) -> bool:
    """Whether ``folder`` is the first entry on PATH."""
    entries = os.environ.get("PATH", "").split(os.pathsep)
    return bool(entries) and _same_dir(entries[0], folder)


# bash and zsh: the folder first on PATH, once, now and before every prompt: a venv's
# ``activate`` puts its own bin/ first, and the hook puts the shims back in front of it.
_POSIX_HOOK = """\
_pip_gpu_shims_first() {{
  local d={folder} p
  p=":$PATH:"
  while [[ $p == *":$d:"* ]]; do p=${{p/":$d:"/:}}; done
  p=${{p#:}}; p=${{p%:}}
  export PATH="$d${{p:+:$p}}"
}}
_pip_gpu_shims_first
"""
_BASH_HOOK = """\
case ";${{PROMPT_COMMAND:-}};" in
  *";_pip_gpu_shims_first;"*) ;;
  *) PROMPT_COMMAND="_pip_gpu_shims_first${{PROMPT_COMMAND:+;$PROMPT_COMMAND}}" ;;
esac
"""
_ZSH_HOOK = """\
autoload -Uz add-zsh-hook
add-zsh-hook precmd _pip_gpu_shims_first
"""
_FISH_HOOK = """\
function _pip_gpu_shims_first --on-event fish_prompt
    set -l d {folder}
    if test "$PATH[1]" != "$d"
        set -gx PATH $d (string match -v -- $d $PATH)
    end
end
_pip_gpu_shims_first
"""
_POWERSHELL_HOOK = """\
$global:PipGpuShims = '{folder}'
function global:Set-PipGpuShimsFirst {{
    $sep = [IO.Path]::PathSeparator
    $rest = $env:PATH -split [regex]::Escape($sep) | Where-Object {{ $_ -and $_ -ne $global:PipGpuShims }}
    $env:PATH = (@($global:PipGpuShims) + $rest) -join $sep
}}
if (-not $global:PipGpuPrompt) {{ $global:PipGpuPrompt = $function:prompt }}
function global:prompt {{ Set-PipGpuShimsFirst; & $global:PipGpuPrompt }}
Set-PipGpuShimsFirst
"""


def init_script(shell: str, folder: str) -> str:
    """What ``shim init SHELL`` prints: the shims first on PATH, and kept first after a venv's
    ``activate`` (a hook before every prompt; plain ``sh`` has none, and gets the PATH line)."""
    if shell == "fish":
        return _FISH_HOOK.format(folder=sh_quote(folder))
    if shell in ("powershell", "pwsh"):
        return _POWERSHELL_HOOK.format(folder=folder.replace("'", "''"))
    if shell == "bash":
        return _POSIX_HOOK.format(folder=sh_quote(folder)) + _BASH_HOOK.format()
    if shell == "zsh":
        return _POSIX_HOOK.format(folder=sh_quote(folder)) + _ZSH_HOOK
    # Only once: shells that source this twice must not stack the folder on PATH.
    quoted = sh_quote(folder)
    return f'case ":$PATH:" in *:{quoted}:*) ;; *) export PATH={quoted}:"$PATH" ;; esac\n'


def _which_after(name: str, folder: Path) -> Optional[str]:
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if (Path(entry or ".") / MARKER).is_file():
            continue
        candidate = Path(entry or ".") / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


@dataclass(frozen=True)
class ShimState:
    """One installed shim: whether plain ``name`` reaches it, and the real program after it."""

    name: str
    active: bool
    found: Optional[str]  # what ``name`` on PATH runs
    real: Optional[str]


@dataclass(frozen=True)
class ShimsStatus:
    """The shims folder, where it is on PATH, and each installed shim."""

    folder: Path
    on_path: str  # "first", "yes, not first" or "no"
    disabled: bool  # PIP_GPU_DISABLE is set: every shim passes through
    shims: tuple[ShimState, ...]


def shims_status(folder: Path) -> ShimsStatus:
    installed = [
        name
        for name in SHIM_NAMES
        if any(_is_our_shim(folder / file) for file in (*_shim_files(name, False), *_shim_files(name, True)))
    ]
    on_path = any(_same_dir(e, folder) for e in os.environ.get("PATH", "").split(os.pathsep) if e)
    states = []
    for name in installed:
        found = shutil.which(name)
        active = found is not None and (Path(found).parent / MARKER).is_file()
        states.append(ShimState(name, active, found, _which_after(name, folder)))
    return ShimsStatus(
        folder,
        "first" if first_on_path(folder) else "yes, not first" if on_path else "no",
        os.environ.get("PIP_GPU_DISABLE", "") not in ("", "0", "false", "no"),
        tuple(states),
    )


def uninstall_shims(folder: Path) -> list[str]:
    """Remove pip-gpu's shims (and the folder, once empty); the files removed."""
    removed = []
    for name in SHIM_NAMES:
        for file in (*_shim_files(name, False), *_shim_files(name, True)):
            if _is_our_shim(folder / file):
                (folder / file).unlink()
                removed.append(file)
    (folder / MARKER).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()  # only when nothing else is left in it
    return removed
