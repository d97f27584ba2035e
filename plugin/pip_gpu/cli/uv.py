"""``pip-gpu uv setup``: its flags, and the report of what it wrote."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import EXIT_OK
from .flags import add_host_flags, host_flags

__all__ = ["add_uv_parser", "cmd_uv_setup"]


def cmd_uv_setup(args: argparse.Namespace) -> int:
    from ..uv_project import UvSetupOptions, uv_setup

    variants = None
    if args.variants:
        variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    result = uv_setup(
        UvSetupOptions(
            requirements=tuple(args.requirements),
            variants=variants,
            project=Path(args.project) if args.project else None,
            dry_run=args.dry_run,
            host=host_flags(args),
            pytorch_index=args.pytorch_index,
        )
    )
    path = result.path
    for note in result.notes:
        print(f"pip-gpu: note: {note}", file=sys.stderr)
    if result.dry_run:
        import difflib

        diff = difflib.unified_diff(
            result.original.splitlines(keepends=True),
            result.written.splitlines(keepends=True),
            fromfile=f"{path} (now)",
            tofile=f"{path} (after pip-gpu uv setup)",
        )
        sys.stdout.writelines(diff)
        done = "already set up as asked" if result.written == result.original else "left unchanged"
        print(f"pip-gpu: dry run: {path} {done}")
    else:
        print(f"pip-gpu: {path}: extras {', '.join(result.variants)} for {', '.join(result.requirements)}")
    if result.host_extra:
        advice = f"without them: uv sync --extra {result.host_extra}"
    else:
        advice = f"none of {', '.join(result.variants)} runs on this host"
    print(
        "pip-gpu: next: uv lock (records every variant); with the shims, uv sync / uv run pick this "
        f"host's; {advice}"
    )
    return EXIT_OK


def add_uv_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "uv",
        help="uv projects: write uv's PyTorch configuration into pyproject.toml",
        description="Work with uv projects.",
    )
    actions = parser.add_subparsers(dest="uv_command", metavar="ACTION", required=True)
    setup = actions.add_parser(
        "setup",
        help="one explicit index, extra and source per variant, with conflicts (uv's PyTorch guide)",
        description=(
            "Write into pyproject.toml, preserving its formatting, what uv documents for PyTorch: an "
            "explicit index pytorch-<variant> per variant, [tool.uv.sources] for the torch family by "
            "extra, one extra per variant and the conflicts between them. `uv lock` then records "
            "every variant; `uv sync --extra <variant>` installs one, and with pip-gpu's shims "
            "`uv sync` / `uv run` pick this host's. An existing PyTorch recipe is merged into: "
            "indexes that point at the same place are reused, the project's extras, sources and "
            "comments stay, and what cannot be merged safely is refused with the file unchanged."
        ),
    )
    setup.add_argument(
        "requirements",
        nargs="*",
        metavar="REQUIREMENT",
        help="torch-family requirements for the extras (default: those in project.dependencies, "
        "which move into the extras, else the family the extras already name, else torch)",
    )
    setup.add_argument("--variants", metavar="V1,V2", help="variants to offer (default: this host's and cpu)")
    setup.add_argument("--project", metavar="DIR", help="project folder (default: the current one)")
    setup.add_argument(
        "--dry-run",
        action="store_true",
        help="print the change as a unified diff and leave pyproject.toml as it is",
    )
    add_host_flags(setup)
    group = setup.add_argument_group("index")
    group.add_argument(
        "--pytorch-index",
        metavar="URL",
        help="base of the PyTorch indexes; each variant's is URL/<variant> [PIP_GPU_PYTORCH_INDEX]",
    )
    setup.set_defaults(handler=cmd_uv_setup)
