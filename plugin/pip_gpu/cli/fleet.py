"""``pip-gpu fleet plan``: one torch release and the builds a GPU fleet needs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import EXIT_CHECK_FAILED, EXIT_OK

__all__ = ["add_parsers"]


def add_parsers(commands: Any) -> None:
    fleet = commands.add_parser(
        "fleet",
        help="plan one torch release and the builds a GPU fleet needs",
        description="Decide for every node of a fleet without its GPUs.",
    )
    actions = fleet.add_subparsers(dest="fleet_command", metavar="ACTION", required=True)
    plan = actions.add_parser(
        "plan",
        help="which variant each node gets, and the nodes nothing runs on",
        description=(
            "Read `kubectl get nodes -o json` (NVIDIA GPU Feature Discovery labels: driver version, "
            "compute capability, product, count; nodes without them are CPU nodes) or `pip-gpu detect "
            "--json` reports, decide for each node, and print one torch release for the fleet, the "
            "variant each node gets and the nodes nothing runs on. Exit status 0 when every node is "
            "served, 1 when some node is not, 2 on bad input."
        ),
    )
    plan.add_argument(
        "requirements", nargs="*", metavar="REQUIREMENT", help="e.g. torch==2.5.1 (default: torch)"
    )
    plan.add_argument(
        "-r", "--requirement", action="append", default=[], metavar="FILE", help="requirements file"
    )
    plan.add_argument(
        "--nodes", action="append", default=[], metavar="FILE", required=True, help="node list (repeatable)"
    )
    plan.add_argument(
        "--fewest", action="store_true", help="the fewest variants that still serve every servable node"
    )
    plan.add_argument(
        "--python-version", metavar="X.Y", help="the nodes' Python for Kubernetes nodes (default: this one)"
    )
    plan.add_argument(
        "--pytorch-index", metavar="URL", help="base of the PyTorch indexes [PIP_GPU_PYTORCH_INDEX]"
    )
    plan.add_argument("--json", action="store_true", help="print JSON")
    plan.set_defaults(handler=cmd_fleet_plan)


def cmd_fleet_plan(args: argparse.Namespace) -> int:
    from ..fleet import FleetPlanOptions, make_fleet_plan, render_plan

    python_version = args.python_version or "{}.{}".format(*sys.version_info[:2])
    options = FleetPlanOptions(
        requirements=tuple(args.requirements),
        requirement_files=tuple(args.requirement),
        node_files=tuple(Path(p) for p in args.nodes),
        python_version=python_version,
        fewest=args.fewest,
        pytorch_index=args.pytorch_index,
        cwd=Path.cwd(),
    )
    plan = make_fleet_plan(options)
    for note in plan.notes:
        print(f"pip-gpu: note: {note}", file=sys.stderr)
    if args.json:
        from ..ui import versioned

        print(_plan_json(versioned(plan.to_json())))
    else:
        print(render_plan(plan))
    return EXIT_CHECK_FAILED if plan.unserved else EXIT_OK


def _plan_json(data: dict[str, Any]) -> str:
    """The plan as JSON, one node a line: json's indenting encoder is pure Python and took most
    of the time for 100,000 nodes; one compact ``dumps`` per node runs in C."""
    import json

    lines = ["{"]
    items = list(data.items())
    for position, (key, value) in enumerate(items):
        comma = "," if position < len(items) - 1 else ""
        if key == "nodes" and isinstance(value, list) and value:
            lines.append(f"  {json.dumps(key)}: [")
            lines.extend(f"    {json.dumps(node)}," for node in value[:-1])
            lines.append(f"    {json.dumps(value[-1])}")
            lines.append(f"  ]{comma}")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)}{comma}")
    lines.append("}")
    return "\n".join(lines)
