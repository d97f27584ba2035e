"""``pip-gpu knowledge verify WHEEL...``: maintainers compare the knowledge file with real wheels."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import EXIT_CHECK_FAILED, EXIT_OK

__all__ = ["add_parsers"]


def add_parsers(commands: Any) -> None:
    parser = commands.add_parser(
        "knowledge",
        help="maintainers: compare the knowledge file with real wheels",
        description="Maintainers' tools for the knowledge file.",
    )
    actions = parser.add_subparsers(dest="knowledge_command", metavar="ACTION", required=True)
    verify = actions.add_parser(
        "verify",
        help="read torch wheels and print how they differ from the knowledge file",
        description=(
            "Read each torch wheel's version.py, METADATA (Requires-Python, Requires-Dist) and the GPU "
            "code compiled into torch/lib/libtorch_cuda.so, and print how they differ from the knowledge "
            "file's row. Exit status 0 when all agree, 1 when any differs."
        ),
    )
    verify.add_argument("wheels", nargs="+", metavar="WHEEL", help="a torch wheel file")
    verify.add_argument("--json", action="store_true", help="print JSON")
    verify.set_defaults(handler=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    from ..knowledge import load_knowledge
    from ..ui import printable
    from ..verify import check_wheels, render_check, verify_json

    checks = check_wheels(args.wheels, load_knowledge())
    report = verify_json(checks)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(printable("\n".join(render_check(c) for c in checks), keep_newlines=True))
    return EXIT_OK if report["agrees"] else EXIT_CHECK_FAILED
