"""``detect``, ``explain`` and ``matrix``: the decision, with nothing installed.

These three are the measured decision path: this module imports only what the answer needs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

from ..detect import host_for
from ..errors import EXIT_NO_BUILD, EXIT_OK, UsageError
from ..ui import emit_json, headline, printable
from .flags import add_decision_flags, add_host_flags, host_flags

__all__ = ["COMMANDS", "add_parsers"]


def add_parsers(commands: Any, only: Optional[str] = None) -> None:
    """detect, explain and matrix; ``only``: that one of them (the command being run)."""
    for name, add in (("detect", _add_detect), ("explain", _add_explain), ("matrix", _add_matrix)):
        if only is None or only == name:
            add(commands)


def _add_detect(commands: Any) -> None:
    detect = commands.add_parser(
        "detect",
        help="show what this host has: OS, Python, NVIDIA driver, GPUs",
        description="Show the host as pip-gpu sees it, and where each fact came from.",
    )
    detect.add_argument("--json", action="store_true", help="print JSON")
    detect.set_defaults(handler=cmd_detect)
    add_host_flags(detect)


def _add_explain(commands: Any) -> None:
    explain = commands.add_parser(
        "explain",
        help="show which torch build runs here, and why the others do not",
        description=(
            "Decide which torch build to install for the requirements (default: torch) and list "
            "every candidate build with the reason it was taken or rejected. Exit status 2 when "
            "no build runs."
        ),
    )
    explain.add_argument(
        "requirements", nargs="*", metavar="REQUIREMENT", help="e.g. torch==2.5.1 torchvision"
    )
    explain.add_argument(
        "-r", "--requirement", action="append", default=[], metavar="FILE", help="requirements file"
    )
    explain.add_argument("--json", action="store_true", help="print JSON")
    explain.set_defaults(handler=cmd_explain)
    explain.add_argument("--all", action="store_true", help="list the candidates of every release")
    explain.add_argument(
        "--offline",
        action="store_true",
        help="do not ask the index whether a torch release newer than pip-gpu knows exists [PIP_GPU_OFFLINE]",
    )
    add_host_flags(explain)
    add_decision_flags(explain)


def _add_matrix(commands: Any) -> None:
    matrix = commands.add_parser(
        "matrix",
        help="print pip-gpu's knowledge: CUDA drivers, torch releases and their builds",
        description="Print the knowledge file: driver minimums, releases, builds, GPU architectures.",
    )
    matrix.add_argument("--json", action="store_true", help="print the knowledge as JSON")
    matrix.set_defaults(handler=cmd_matrix)


# --- detect --------------------------------------------------------------------------------


def cmd_detect(args: argparse.Namespace) -> int:
    host = host_for(host_flags(args))
    if args.json:
        from ..ui import versioned

        emit_json(versioned(host.to_json()))
    else:
        from ..report import render_host

        print(render_host(host))
    return EXIT_OK


# --- explain -------------------------------------------------------------------------------


def cmd_explain(args: argparse.Namespace) -> int:
    from ..decide.plan import decide_for
    from ..report import decision_json, render_decision
    from ..ui import versioned
    from .variants import run_variant_command, variant_index_of

    if (variant_index := variant_index_of(args)) is not None:  # issue 26: PEP 825 variant wheels
        return run_variant_command("explain", args, variant_index)
    host = host_for(host_flags(args))
    outcome = decide_for(
        args.requirements,
        args.requirement,
        host,
        variant=args.variant,
        force=args.force,
        pytorch_index=args.pytorch_index,
        cwd=Path.cwd(),
        offline=args.offline,
        channel=args.channel,
        context=_explain_context(args.requirements, args.requirement),
    )
    decision = outcome.decision
    constraints = outcome.torch_constraints
    unneeded = None
    # Only when the other requirements were read: a failed reading (its note says so) proves nothing.
    if not outcome.others_unread and not _asks_for_torch(args.requirements, args.requirement, outcome):
        unneeded = (
            "nothing in the request needs torch (no torch-family package, and none of the others "
            "requires one): this is the build a torch-family package would get here"
        )
    if args.json:
        data = decision_json(decision, host, constraints=constraints)
        if unneeded:
            data["notes"].append(unneeded)
        emit_json(versioned(data))
    elif (blocker := decision.blocked()) is not None and not decision.candidates:
        # Nothing was even considered (pins that contradict each other, a Python no release
        # supports): bad input, reported on stderr like every other error.
        raise UsageError(blocker.message, blocker.hint)
    else:
        rendered = render_decision(decision, host, show_all=args.all, constraints=constraints)
        if unneeded:
            first, _, rest = rendered.partition("\n")
            rendered = f"{first}\nNote: {unneeded}\n{rest}"
        print(headline(printable(rendered, keep_newlines=True), decision.ok))
    return EXIT_OK if outcome.decision.ok else EXIT_NO_BUILD


def _explain_context(requirements: list[str], files: list[str]) -> Any:
    """Other packages given: resolve them (with this interpreter, the user's pip settings) to
    read what they need of torch. Only the family named: nothing to resolve, no subprocess."""
    if not files and all(_names_only_family(text) for text in requirements):
        return None
    from ..decide.resolution import ResolutionContext

    return ResolutionContext(python=Path(sys.executable), prefer_installed=False, strict=False)


def _asks_for_torch(requirements: list[str], files: list[str], outcome: Any) -> bool:
    """Whether the request needs the torch family at all: a family name in it, or another
    package that requires one (``explain numpy`` decides a build nobody asked for)."""
    if outcome.torch_constraints or any(_names_only_family(text) for text in requirements):
        return True
    return bool(files) and any(not line.constraint for line in outcome.family_lines())


def _names_only_family(text: str) -> bool:
    from ..knowledge import load_knowledge
    from ..pins import canonical_name

    head = text.split(";")[0].split("@")[0]
    for stop in "[=<>!~ ":
        head = head.split(stop)[0]
    return canonical_name(head) in {canonical_name(m.name) for m in load_knowledge().family}


# --- matrix --------------------------------------------------------------------------------


def cmd_matrix(args: argparse.Namespace) -> int:
    from ..knowledge import load_knowledge
    from ..report import knowledge_json, render_knowledge

    knowledge = load_knowledge()
    if args.json:
        emit_json(knowledge_json(knowledge))
    else:
        print(render_knowledge(knowledge))
    return EXIT_OK


COMMANDS = {"detect": cmd_detect, "explain": cmd_explain, "matrix": cmd_matrix}
