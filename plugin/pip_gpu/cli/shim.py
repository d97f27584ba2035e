"""``pip-gpu shim install|init|status|uninstall``: flags, and the report of each step."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import EXIT_OK
from ..shims import (
    default_shims_dir,
    first_on_path,
    init_script,
    install_shims,
    sh_quote,
    shims_dir,
    shims_status,
    uninstall_shims,
)

__all__ = ["add_shim_parser"]


def cmd_shim_install(args: argparse.Namespace) -> int:
    windows = (args.platform or ("windows" if sys.platform == "win32" else "posix")) == "windows"
    python = args.windows_python if windows and args.windows_python else sys.executable
    folder = shims_dir(args.dir)
    files = install_shims(folder, windows=windows, python=python)
    print(f"pip-gpu: wrote {', '.join(files)} to {folder}")
    if not first_on_path(folder):
        shell = "powershell" if windows else ""
        how = (
            f"pip-gpu shim init powershell{_dir_flag(args)} | Out-String | Invoke-Expression"
            if windows
            else f'eval "$(pip-gpu shim init{_dir_flag(args)})"'
        )
        print(f"pip-gpu: put it first on PATH{' (' + shell + ')' if shell else ''}: {how}")
    print("pip-gpu: note: `python -m pip` runs pip without the shims; type `pip` to go through them")
    return EXIT_OK


def _dir_flag(args: argparse.Namespace) -> str:
    return f" --dir {sh_quote(str(args.dir))}" if args.dir else ""


def cmd_shim_init(args: argparse.Namespace) -> int:
    shell = args.shell or Path(os.environ.get("SHELL", "sh")).name
    sys.stdout.write(init_script(shell, str(shims_dir(args.dir))))
    return EXIT_OK


def cmd_shim_status(args: argparse.Namespace) -> int:
    status = shims_status(shims_dir(args.dir))
    installed = [shim.name for shim in status.shims]
    print(
        f"shims folder: {status.folder} ({'installed: ' + ', '.join(installed) if installed else 'no shims'})"
    )
    print(f"on PATH: {status.on_path}")
    if status.disabled:
        print("PIP_GPU_DISABLE is set: every shim passes through")
    for shim in status.shims:
        if shim.active:
            state = "shimmed"
        elif shim.found is None:
            state = f"NOT shimmed (no {shim.name} on PATH at all: put the shims folder on PATH)"
        else:
            state = f"NOT shimmed ({shim.found} comes first)"
        print(f"  {shim.name}: {state}; real {shim.real or 'none found'}")
    return EXIT_OK


def cmd_shim_uninstall(args: argparse.Namespace) -> int:
    folder = shims_dir(args.dir)
    removed = uninstall_shims(folder)
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
            sub.add_argument("shell", nargs="?", choices=("bash", "zsh", "fish", "powershell", "pwsh", "sh"))
        if action == "install":
            sub.add_argument(
                "--platform",
                choices=("posix", "windows"),
                help="write shell scripts (posix) or .cmd and .ps1 files (windows); default: this system",
            )
            sub.add_argument(
                "--windows-python",
                metavar="PATH",
                help="with --platform windows: the python.exe that runs pip-gpu there",
            )
        sub.set_defaults(handler=handler)
