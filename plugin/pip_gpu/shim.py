"""``pip-gpu shim``: small ``pip``, ``pip3``, ``uv`` and ``uvx`` scripts first on PATH.

A shim is a POSIX shell script. It finds the real program as the next one on PATH that is
not in a pip-gpu shims directory (each holds a marker file, so the directory is skipped
however it is reached: twice on PATH, through a symlink, another copy), and hands over to it
with ``exec``. Only a command that may install the torch family starts Python: the script
looks for the subcommand words that can (``install`` for pip, ``run`` for uv, ...) and
otherwise never leaves the shell. ``shim_run`` then decides precisely.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

from . import __version__
from .errors import EXIT_OK, UsageError

__all__ = ["MARKER", "SHIM_NAMES", "add_shim_parser", "default_shims_dir", "shim_script"]

SHIM_NAMES = ("pip", "pip3", "uv", "uvx")
MARKER = ".pip-gpu-shims"
_SIGNATURE = "# pip-gpu shim:"

# Words that make the shell hand a command to Python; everything else goes straight to the
# real program. Over-approximate on purpose (``pip show install`` starts Python, which then
# passes it through): a shell ``case`` cannot parse options, Python can.
_ROUTE_WORDS = {
    "pip": "install|download|wheel|lock",
    "uv": "install|compile|sync|run",
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
    from pip_gpu.shim_run import main
except Exception as error:
    sys.stderr.write("pip-gpu: the shim cannot load pip-gpu (%s); nothing was run. "
                     "Set PIP_GPU_DISABLE=1 to run the real program alone.\\n" % error)
    sys.exit(1)
sys.exit(main(sys.argv[1:]))
' "$_pg_path" "$_pg_name" "$_pg_real" "$@"
"""


def _sh_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def shim_script(name: str, python: str, package_path: str) -> str:
    """The shell script for one shim; ``python -E`` with ``package_path`` runs pip-gpu."""
    base = "pip" if name.startswith("pip") else name
    route = _UVX_PATTERN if base == "uvx" else _ROUTE_WORDS[base]
    return _TEMPLATE.format(
        signature=_SIGNATURE,
        name=name,
        version=__version__,
        python=_sh_quote(python),
        package_path=_sh_quote(package_path),
        marker=MARKER,
        route=route,
    )


def default_shims_dir(env: Mapping[str, str] = os.environ) -> Path:
    """The user's data directory: XDG on Linux, as pipx and pyenv place theirs."""
    if sys.platform == "win32":
        base = Path(env.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "pip-gpu" / "shims"


def _shims_dir(args: argparse.Namespace) -> Path:
    chosen = args.dir or os.environ.get("PIP_GPU_SHIMS_DIR")
    return Path(chosen).expanduser().absolute() if chosen else default_shims_dir()


def _is_our_shim(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            return any(line.startswith(_SIGNATURE) for line in (handle.readline(), handle.readline()))
    except OSError:
        return False


def _package_path() -> str:
    """The folder ``pip_gpu`` is imported from, so the shim works from a checkout too."""
    return str(Path(__file__).resolve().parent.parent)


def cmd_shim_install(args: argparse.Namespace) -> int:
    if sys.platform == "win32":
        raise UsageError("shims are POSIX shell scripts; Windows is not supported yet", "use pip-gpu install")
    folder = _shims_dir(args)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"cannot put the shims in {folder}: {exc.strerror or exc}", "choose a folder you can write: --dir"
        ) from None
    for name in SHIM_NAMES:
        target = folder / name
        if target.exists() and not _is_our_shim(target):
            raise UsageError(f"{target} exists and is not a pip-gpu shim", "choose another --dir")
    (folder / MARKER).write_text(
        "This folder holds pip-gpu's shims; every shim skips it when looking for the real program.\n",
        encoding="utf-8",
    )
    for name in SHIM_NAMES:
        target = folder / name
        target.write_text(shim_script(name, sys.executable, _package_path()), encoding="utf-8")
        target.chmod(0o755)
    print(f"pip-gpu: wrote {', '.join(SHIM_NAMES)} to {folder}")
    if not _first_on_path(folder):
        print(f'pip-gpu: put it first on PATH: eval "$(pip-gpu shim init{_dir_flag(args)})"')
    return EXIT_OK


def _dir_flag(args: argparse.Namespace) -> str:
    return f" --dir {_sh_quote(str(args.dir))}" if args.dir else ""


def _same_dir(a: str, b: Path) -> bool:
    try:
        return os.path.samefile(a or ".", b)
    except OSError:
        return False


def _first_on_path(folder: Path) -> bool:
    entries = os.environ.get("PATH", "").split(os.pathsep)
    return bool(entries) and _same_dir(entries[0], folder)


def cmd_shim_init(args: argparse.Namespace) -> int:
    folder = str(_shims_dir(args))
    shell = args.shell or Path(os.environ.get("SHELL", "sh")).name
    if shell == "fish":
        print(f"fish_add_path --prepend --path {_sh_quote(folder)}")
    elif shell in ("powershell", "pwsh"):
        quoted = folder.replace("'", "''")
        print(f"$env:PATH = '{quoted}' + [IO.Path]::PathSeparator + $env:PATH")
    else:
        # Only once: shells that source this twice must not stack the folder on PATH.
        quoted = _sh_quote(folder)
        print(f'case ":$PATH:" in *:{quoted}:*) ;; *) export PATH={quoted}:"$PATH" ;; esac')
    return EXIT_OK


def _which_after(name: str, folder: Path) -> Optional[str]:
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if (Path(entry or ".") / MARKER).is_file():
            continue
        candidate = Path(entry or ".") / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def cmd_shim_status(args: argparse.Namespace) -> int:
    folder = _shims_dir(args)
    installed = [name for name in SHIM_NAMES if _is_our_shim(folder / name)]
    print(f"shims folder: {folder} ({'installed: ' + ', '.join(installed) if installed else 'no shims'})")
    on_path = any(_same_dir(e, folder) for e in os.environ.get("PATH", "").split(os.pathsep) if e)
    print(f"on PATH: {'first' if _first_on_path(folder) else 'yes, not first' if on_path else 'no'}")
    disabled = os.environ.get("PIP_GPU_DISABLE", "") not in ("", "0", "false", "no")
    if disabled:
        print("PIP_GPU_DISABLE is set: every shim passes through")
    for name in installed:
        found = shutil.which(name)
        active = found is not None and (Path(found).parent / MARKER).is_file()
        real = _which_after(name, folder) or "none found"
        state = "shimmed" if active else f"NOT shimmed ({found} comes first)"
        print(f"  {name}: {state}; real {real}")
    return EXIT_OK


def cmd_shim_uninstall(args: argparse.Namespace) -> int:
    folder = _shims_dir(args)
    removed = []
    for name in SHIM_NAMES:
        if _is_our_shim(folder / name):
            (folder / name).unlink()
            removed.append(name)
    (folder / MARKER).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()  # only when nothing else is left in it
    print(f"pip-gpu: removed {', '.join(removed) if removed else 'nothing'} from {folder}")
    return EXIT_OK


def add_shim_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "shim",
        help="put pip-gpu in front of plain pip and uv (shims on PATH)",
        description=(
            "Shims make plain `pip install torch`, `uv pip install torch` and `uv run` in a project "
            "set up by `pip-gpu uv setup` get the build that runs here; every other command goes "
            "straight to the real program. PIP_GPU_DISABLE=1 turns them into pure pass-through."
        ),
    )
    actions = parser.add_subparsers(dest="shim_command", metavar="ACTION", required=True)
    for action, handler, text in (
        ("install", cmd_shim_install, "write the pip, pip3, uv and uvx shims"),
        ("init", cmd_shim_init, "print the shell line that puts the shims first on PATH"),
        ("status", cmd_shim_status, "show the shims and what each one runs"),
        ("uninstall", cmd_shim_uninstall, "remove the shims"),
    ):
        sub = actions.add_parser(action, help=text, description=text)
        sub.add_argument(
            "--dir",
            metavar="DIR",
            help=f"shims folder [PIP_GPU_SHIMS_DIR; default {default_shims_dir()}]",
        )
        if action == "init":
            sub.add_argument("shell", nargs="?", choices=("bash", "zsh", "fish", "powershell", "sh"))
        sub.set_defaults(handler=handler)
