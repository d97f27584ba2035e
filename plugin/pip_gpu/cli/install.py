"""``pip-gpu install``: its flags, and the typed options they become (:mod:`pip_gpu.install`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional

from ..errors import EXIT_OK, UsageError
from ..install import InstallOptions, install
from ..route import INSTALLER_OPTIONS
from .flags import (
    add_decision_flags,
    add_host_flags,
    add_target_flags,
    host_flags,
    passed_options,
)
from .flags import (
    passthrough_dest as _dest,
)

__all__ = ["add_install_parser", "install_options", "run_install"]


def add_install_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "install",
        help="install the torch build that runs here, with real pip or uv",
        description=(
            "Install requirements into the target environment with pip or uv, routing torch, "
            "torchvision, torchaudio and the rest of the family to the index of the build that "
            "runs on this host (or the host described by the flags). Everything else comes from "
            "your usual indexes. Exit status 2, with nothing installed, when no build runs."
        ),
        epilog=(
            "Other installer options are passed through; give options this command does not list "
            "as --opt=value. Target environment: --python, else $VIRTUAL_ENV, else ./.venv, else "
            "refused (exit 2); --system for the python3 on PATH."
        ),
    )
    parser.add_argument("requirements", nargs="*", metavar="REQUIREMENT")
    parser.add_argument(
        "-r", "--requirement", action="append", default=[], metavar="FILE", help="requirements file"
    )
    parser.add_argument(
        "-c", "--constraint", action="append", default=[], metavar="FILE", help="constraints file"
    )
    parser.add_argument(
        "--installer", choices=("pip", "uv"), help="default: uv when the target has no pip, else pip"
    )
    add_target_flags(parser)
    parser.add_argument(
        "--dry-run", action="store_true", help="print the decision and the commands; install nothing"
    )
    parser.add_argument("--json", action="store_true", help="with --dry-run: print the plan as JSON")
    parser.add_argument(  # issue 4: lock write-back
        "--no-lock", action="store_true", help="do not re-resolve the pylock.<variant>.toml files here"
    )
    passthrough = parser.add_argument_group("passed to the installer")
    for option in INSTALLER_OPTIONS:
        if option.takes_value:
            passthrough.add_argument(
                *option.names, dest=_dest(option.long), action="append", metavar="VALUE", help=option.help
            )
        else:
            passthrough.add_argument(*option.names, dest=_dest(option.long), action="count", help=option.help)
    add_host_flags(parser)
    add_decision_flags(parser)
    parser.set_defaults(handler=run_install)


def install_options(args: argparse.Namespace, cwd: Optional[Path] = None) -> InstallOptions:
    """The ``Namespace`` of ``pip-gpu install`` as typed options."""
    passed = passed_options(args)
    return InstallOptions(
        requirements=tuple(args.requirements),
        requirement_files=tuple(args.requirement),
        constraint_files=tuple(args.constraint),
        installer=args.installer,
        python=args.python,
        system=args.system,
        dry_run=args.dry_run,
        no_lock=args.no_lock,
        passthrough=tuple(passed),
        host=host_flags(args),
        variant=args.variant,
        force=args.force,
        pytorch_index=args.pytorch_index,
        channel=args.channel,
        cwd=cwd or Path.cwd(),
    )


def run_install(args: argparse.Namespace) -> int:
    from .variants import run_variant_command, variant_index_of

    if (variant_index := variant_index_of(args)) is not None:  # issue 26: PEP 825 variant wheels
        return run_variant_command("install", args, variant_index)
    # (without requirements, install() says there is nothing to install first)
    if args.json and not args.dry_run and (args.requirements or args.requirement):
        raise UsageError("--json prints the plan of a dry run", "add --dry-run, or drop --json")
    result = install(install_options(args))
    if args.dry_run:
        if args.json:
            from ..ui import versioned

            print(json.dumps(versioned(dict(result.dry_run_json or {})), indent=2))
        else:
            print(result.dry_run_script)
    return EXIT_OK
