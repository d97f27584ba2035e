"""``pip-gpu doctor``: its flags, the options they make, and the report rendered."""

from __future__ import annotations

import argparse
from typing import Any

from ..doctor import DEFAULT_IMPORT_TIMEOUT_S, DoctorOptions, doctor
from .flags import add_host_flags, host_flags

__all__ = ["add_parsers", "doctor_options"]


def add_parsers(commands: Any) -> None:
    parser = commands.add_parser(
        "doctor",
        help="explain why torch.cuda.is_available() is False, and how to fix it",
        description=(
            "Check the installed torch build, its family, the NVIDIA driver, the GPUs, NVML and the "
            "environment (CUDA_VISIBLE_DEVICES, containers, WSL2, LD_LIBRARY_PATH, virtual "
            "environments, duplicate installs, the lock) without importing torch. The first line is "
            "the verdict: the broken link and its fix. Exit status 0 when healthy, 1 when a check fails."
        ),
    )
    from .flags import add_target_flags

    add_target_flags(parser)
    parser.add_argument(
        "--import",
        dest="run_import",
        action="store_true",
        help="finally import torch in the target: is_available(), device count, a tensor op",
    )
    parser.add_argument(
        "--import-timeout",
        type=float,
        default=DEFAULT_IMPORT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"give up on --import after this long (default {DEFAULT_IMPORT_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--verify-files",
        action="store_true",
        help="check every installed file's sha256 against its RECORD (seconds per GB); by default "
        "every file's presence and size, and the sha256 of the files that name the build",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the evidence of every check")
    add_host_flags(parser)
    parser.set_defaults(handler=cmd_doctor)


def doctor_options(args: argparse.Namespace) -> DoctorOptions:
    return DoctorOptions(
        host=host_flags(args),
        python=args.python,
        system=args.system,
        run_import=args.run_import,
        import_timeout_s=args.import_timeout,
        verify_files=args.verify_files,
    )


def cmd_doctor(args: argparse.Namespace) -> int:
    from ..doctor.render import render_text, report_json
    from ..ui import emit_json, headline, printable

    report = doctor(doctor_options(args))
    if args.json:
        from ..ui import versioned

        emit_json(versioned(report_json(report)))
    else:
        text = printable(render_text(report, verbose=args.verbose), keep_newlines=True)
        print(headline(text, report.healthy))
    return report.exit_status
