"""``pip-gpu lock``, ``sync`` and ``check`` on the command line: parsers, options, rendering.

The steps live in :mod:`pip_gpu.lock` and take typed options; this module alone sees the
``Namespace``.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any, Callable

from ..errors import EXIT_CHECK_FAILED, EXIT_OK
from .flags import add_target_flags, host_flags

__all__ = ["add_lock_parsers"]


def add_lock_parsers(
    commands: Any, add_host_flags: Callable[..., None], add_decision_flags: Callable[..., None]
) -> None:
    lock = commands.add_parser(
        "lock",
        help="write PEP 751 lock files, one per torch build (pylock.cu124.toml, pylock.cpu.toml)",
        description=(
            "Resolve the whole environment once per variant, the torch family routed to that "
            "variant's index, and write pylock.<variant>.toml for each into the project folder. "
            "Without requirements, re-lock from the inputs the folder's locks record."
        ),
        epilog=(
            "--variants: auto (this host's build plus the variants already locked here), all "
            "(every build the chosen torch release publishes for the platform), or a list such as "
            "cu121,cu124,cpu.\n"
            "targets: --platform, --arch and --python-version take several values (repeated or "
            "comma-separated); every combination is a target, and each file covers every target its "
            "variant is published for. Without them: [tool.pip-gpu] targets in pyproject.toml "
            '(e.g. ["linux-x86_64-3.10", "windows-x86_64-3.11"]), else the targets the locks '
            "record, else this host and the target Python."
        ),
    )
    lock.add_argument("requirements", nargs="*", metavar="REQUIREMENT")
    lock.add_argument(
        "-r", "--requirement", action="append", default=[], metavar="FILE", help="requirements file"
    )
    lock.add_argument("--variants", metavar="auto|all|LIST", help="which builds to lock (default: auto)")
    lock.add_argument("--output-dir", metavar="DIR", help="where the lock files go (default: .)")
    lock.add_argument(
        "--fleet",
        action="append",
        default=[],
        metavar="NODES",
        help="lock exactly the variants `pip-gpu fleet plan --nodes NODES` plans, for its one torch release",
    )
    lock.add_argument(
        "--upgrade",
        "-U",
        action="store_true",
        help="take the newest allowed versions (without it, a re-lock keeps what the locks hold)",
    )
    lock.add_argument(
        "--upgrade-package",
        "-P",
        action="append",
        default=[],
        metavar="NAME",
        help="take the newest allowed version of this package only; repeat for several",
    )
    lock.add_argument("--json", action="store_true", help="print the files written as JSON")
    add_host_flags(lock, many=True)
    add_decision_flags(lock)
    lock.set_defaults(handler=run_lock)

    sync = commands.add_parser(
        "sync",
        help="install exactly the lock file of the build that runs here",
        description=(
            "Choose the locked variant this host runs (newest CUDA the driver and every GPU "
            "support), install exactly its lock file with hash checking, and remove what it does "
            "not list. Exit status 2, with nothing changed, when no locked variant runs here."
        ),
    )
    _add_lock_dir(sync)
    sync.add_argument("--installer", choices=("pip", "uv"), help="default: uv when the target has no pip")
    add_target_flags(sync)
    sync.add_argument("--locked", action="store_true", help="refuse a lock that its inputs no longer match")
    sync.add_argument(
        "--dry-run", action="store_true", help="choose the lock and list what would change; install nothing"
    )
    sync.add_argument(
        "--json",
        action="store_true",
        help="print what was (or would be) synced as JSON; installer output to stderr",
    )
    _add_trust_lock_index(sync)
    add_host_flags(sync)
    sync.set_defaults(handler=run_sync)

    check = commands.add_parser(
        "check",
        help="fail when the environment is not the lock this host should use",
        description=(
            "Exit 0 only when the target environment holds exactly the packages of the lock file "
            "chosen for this host (same versions and local labels, files as their RECORD lists), "
            "the last sync finished, and this host runs that build; otherwise exit 1 and say what "
            "differs. Host flags answer for another host."
        ),
    )
    _add_lock_dir(check)
    add_target_flags(check)
    check.add_argument(
        "--verify-files",
        action="store_true",
        help="check every installed file's sha256 against its RECORD (seconds per GB); by default "
        "every file's presence and size, and the sha256 of the files that name the build",
    )
    check.add_argument("--json", action="store_true", help="print JSON")
    _add_trust_lock_index(check)
    add_host_flags(check)
    check.set_defaults(handler=run_check)


def _add_trust_lock_index(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-lock-index",
        action="store_true",
        help="accept locks recorded from another PyTorch index than PIP_GPU_PYTORCH_INDEX or "
        "[tool.pip-gpu] pytorch-index names (refused by default)",
    )


def _add_lock_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lock-dir", metavar="DIR", help="folder holding pylock.<variant>.toml (default: .)")


def run_lock(args: argparse.Namespace) -> int:
    from ..lock.resolve import LockOptions, lock
    from .variants import run_variant_command, variant_index_of

    if (variant_index := variant_index_of(args)) is not None:  # issue 26: PEP 825 variant wheels
        return run_variant_command("lock", args, variant_index)

    report = lock(
        LockOptions(
            cwd=Path.cwd(),
            requirements=tuple(args.requirements),
            requirement_files=tuple(args.requirement),
            variants=args.variants,
            variant=args.variant,
            output_dir=args.output_dir,
            fleet=tuple(args.fleet),
            upgrade=args.upgrade,
            upgrade_packages=tuple(args.upgrade_package),
            platforms=tuple(args.platform or ()),
            arches=tuple(args.arch or ()),
            python_versions=tuple(args.python_version or ()),
            pytorch_index=args.pytorch_index,
            host=host_flags(args),
            channel=args.channel,
        )
    )
    if args.json:
        from ..ui import versioned

        print(json.dumps(versioned(report.to_json()), indent=2))
    return EXIT_OK


def run_sync(args: argparse.Namespace) -> int:
    from ..lock.sync import SyncOptions, sync
    from .variants import run_variant_command, variant_lock_in

    if (variant_lock := variant_lock_in(args)) is not None:  # issue 26: a PEP 825 variant lock
        return run_variant_command("sync", args, variant_lock)

    report = sync(
        SyncOptions(
            cwd=Path.cwd(),
            lock_dir=args.lock_dir,
            installer=args.installer,
            python=args.python,
            system=args.system,
            locked=args.locked,
            host=host_flags(args),
            dry_run=args.dry_run,
            installer_output_to_stderr=args.json,
            trust_lock_index=args.trust_lock_index,
        )
    )
    if args.json:
        from ..ui import versioned

        print(json.dumps(versioned(report.to_json()), indent=2))
    elif report.dry_run:
        from ..ui import print_sync_dry_run

        print_sync_dry_run(report.target.prefix, report.lock_file, report.changes)
    return EXIT_OK


def same_target(fix: str, args: argparse.Namespace) -> str:
    """A ``pip-gpu sync`` fix with the environment, lock folder and host flags ``check`` was
    given, so the command copied acts on what was checked."""
    if fix != "pip-gpu sync":
        return fix
    argv = ["pip-gpu", "sync"]
    for flag, given in (("--python", args.python), ("--lock-dir", args.lock_dir)):
        if given:
            argv += [flag, str(given)]
    if args.system:
        argv.append("--system")
    argv += host_flags(args).as_argv()
    return shlex.join(argv)


def run_check(args: argparse.Namespace) -> int:
    from ..lock.sync import CheckOptions, check
    from ..ui import printable
    from .variants import run_variant_command, variant_lock_in

    if (variant_lock := variant_lock_in(args)) is not None:  # issue 26: a PEP 825 variant lock
        return run_variant_command("check", args, variant_lock)

    report = check(
        CheckOptions(
            cwd=Path.cwd(),
            lock_dir=args.lock_dir,
            python=args.python,
            system=args.system,
            host=host_flags(args),
            verify_files=args.verify_files,
            trust_lock_index=args.trust_lock_index,
        )
    )
    result, directory, target = report.result, report.directory, report.target
    fix = same_target(result.fix, args)
    if args.json:
        from ..ui import versioned

        data = versioned(
            {
                "ok": result.ok,
                "lock": result.lock_file.name if result.lock_file else None,
                "variant": result.variant,
                "lock_dir": str(directory),
                "target": str(target.python),
                "installed": result.installed,
                "problems": list(result.differences),
                "lock_runs_here": result.runs_here,
                "fix": None if result.ok else fix,
            }
        )
        print(json.dumps(data, indent=2))
    elif not result.ok:
        if not result.runs_here:
            print(f"pip-gpu check: no lock in {directory} runs on this host (pip-gpu sync refuses too):")
        else:
            print(f"pip-gpu check: {target.prefix} does not match the lock for this machine:")
        for problem in result.differences:
            print(f"  - {printable(problem)}")
        print(f"  fix: {fix}")  # what --json carries as "fix"
    else:
        assert result.lock_file is not None
        held = ", ".join(f"{name} {version}" for name, version in result.installed.items())
        print(
            f"pip-gpu check: OK: {target.prefix} holds {held or 'no torch package'} "
            f"as {result.lock_file.name} locks"
        )
    return EXIT_OK if result.ok else EXIT_CHECK_FAILED
