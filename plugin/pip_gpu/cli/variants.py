"""``--variant-index``: explain, install, lock, sync and check with PEP 825 variant wheels.

The other handlers hand over here at their top when a variant index is set (flag,
``PIP_GPU_VARIANT_INDEX`` or ``[tool.pip-gpu] variant-index``), or, for ``sync`` and ``check``,
when the folder's ``pylock.toml`` is a variant lock.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from ..errors import EXIT_CHECK_FAILED, EXIT_NO_BUILD, EXIT_OK
from ..ui import emit_json, headline, print_sync_dry_run, versioned
from .flags import host_flags

__all__ = ["ENV_VARIABLE", "run_variant_command", "variant_index_of", "variant_lock_in"]

ENV_VARIABLE = "PIP_GPU_VARIANT_INDEX"


def variant_index_of(args: argparse.Namespace) -> Optional[str]:
    """``--variant-index``, else ``PIP_GPU_VARIANT_INDEX``, else ``[tool.pip-gpu] variant-index``."""
    from ..config import check_index_url, load_project_config

    given = getattr(args, "variant_index", None)
    if given:
        return check_index_url(given, "--variant-index")
    env = os.environ.get(ENV_VARIABLE, "").strip()
    if env:
        return check_index_url(env, ENV_VARIABLE)
    configured = load_project_config(Path.cwd()).variant_index
    return check_index_url(configured, "[tool.pip-gpu] variant-index") if configured else None


def variant_lock_in(args: argparse.Namespace) -> Optional[Path]:
    """The folder, when its ``pylock.toml`` is a lock written with ``--variant-index``."""
    from ..wheel_variant_steps import is_variant_lock

    directory = Path.cwd() / (getattr(args, "lock_dir", None) or "")
    return directory if is_variant_lock(directory) else None


def _options(args: argparse.Namespace, index_url: str, cwd: Optional[Path] = None) -> Any:
    from ..wheel_variant_steps import VariantInstallOptions

    return VariantInstallOptions(
        index_url=index_url,
        requirements=tuple(getattr(args, "requirements", ()) or ()),
        installer=getattr(args, "installer", None),
        python=getattr(args, "python", None),
        system=bool(getattr(args, "system", False)),
        host=host_flags(args),
        cwd=cwd or Path.cwd(),
        requirement_files=tuple(getattr(args, "requirement", ()) or ()),
        constraint_files=tuple(getattr(args, "constraint", ()) or ()),
        dry_run=bool(getattr(args, "dry_run", False)),
        installer_args=tuple(_installer_args(args)),
        verify_files=bool(getattr(args, "verify_files", False)),
    )


def _installer_args(args: argparse.Namespace) -> list[str]:
    """``install``'s pass-through options (none for the other commands)."""
    from ..route import installer_args
    from .flags import passed_options

    return installer_args(passed_options(args))


def run_variant_command(command: str, args: argparse.Namespace, where: Any) -> int:
    """``where``: the variant index URL (explain, install, lock) or the lock folder (sync, check)."""
    handlers: dict[str, Callable[[argparse.Namespace, Any], int]] = {
        "explain": _explain,
        "install": _install,
        "lock": _lock,
        "sync": _sync,
        "check": _check,
    }
    return handlers[command](args, where)


def _render(choice: Any, host: Any, index_url: str) -> str:
    from ..redact import redact_url

    gpus = ", ".join(
        f"{g.name} (sm_{g.compute_capability[0]}{g.compute_capability[1]})" for g in host.visible_nvidia_gpus
    )
    driver = f"driver {host.driver_version}" if host.driver_version else "no NVIDIA driver"
    lines = []
    if choice.wheel is not None:
        label = choice.label or "(non-variant)"
        lines.append(f"{choice.package} {choice.version} -> {label}   from {redact_url(index_url)}")
    else:
        lines.append(f"No wheel fits: {choice.package} {choice.version} on this host")
    lines.append(
        f"Host: {host.platform_tag}, Python {host.python_version}, {driver}" + (f", {gpus}" if gpus else "")
    )
    if choice.verdicts:
        rows = [(choice.package, "label", "verdict", "reason")]
        best = choice.label
        for verdict in choice.verdicts:
            word = "CHOSEN" if verdict.fits and verdict.label == best else ("fits" if verdict.fits else "no")
            rows.append((str(choice.version), verdict.label or "(none)", word, verdict.reason))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines.append("")
        lines.extend(
            "  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3]
            for row in rows
        )
    return "\n".join(lines)


def _explain(args: argparse.Namespace, index_url: str) -> int:
    from ..detect import host_for
    from ..wheel_variant_steps import choose_all

    host = host_for(host_flags(args))
    choices = choose_all(index_url, args.requirements, host)
    ok = all(c.wheel is not None for c in choices)
    if args.json:
        first = choices[0]
        data: dict[str, Any] = {
            **first.to_json(),
            "index_url": index_url,
            "host": host.to_json(),
            "packages": [c.to_json() for c in choices],
        }
        if not ok:
            failed = next(c for c in choices if c.wheel is None)
            data["error"] = f"no wheel of {failed.requirement} fits this host: {failed.problem}"
            data["hint"] = "upgrade the NVIDIA driver, pin another version, or drop --variant-index"
        emit_json(versioned(data))
    else:
        rendered = "\n\n".join(_render(c, host, index_url) for c in choices)
        print(headline(rendered, ok))
    return EXIT_OK if ok else EXIT_NO_BUILD


def _install(args: argparse.Namespace, index_url: str) -> int:
    from ..errors import UsageError
    from ..wheel_variant_steps import install_variant_wheels

    if args.json and not args.dry_run:
        raise UsageError("--json prints the plan of a dry run", "add --dry-run, or drop --json")
    _, dry_run = install_variant_wheels(_options(args, index_url))
    if dry_run is not None:
        print(json.dumps(versioned(dry_run.to_json(index_url)), indent=2) if args.json else dry_run.script())
    return EXIT_OK


def _lock(args: argparse.Namespace, index_url: str) -> int:
    import sys

    from ..errors import UsageError
    from ..wheel_variant_steps import VariantLockOptions, lock_variant_wheels

    given = [
        flag
        for flag, value in (
            ("--variants", args.variants),
            ("--variant", args.variant),
            ("--fleet", args.fleet),
            ("--upgrade", args.upgrade),
            ("--upgrade-package", args.upgrade_package),
        )
        if value
    ]
    if given:  # the labels are the variants; a variant lock is always resolved afresh
        raise UsageError(
            f"--variant-index locks every label of the chosen version; {', '.join(given)} does not apply",
            "drop " + ", ".join(given) + ", or lock without --variant-index",
        )
    cwd = Path.cwd()
    written = lock_variant_wheels(
        VariantLockOptions(
            index_url=index_url,
            requirements=tuple(args.requirements),
            requirement_files=tuple(args.requirement),
            host=host_flags(args),
            cwd=cwd,
            directory=cwd / (args.output_dir or ""),
            platforms=tuple(args.platform or ()),
            arches=tuple(args.arch or ()),
            python_versions=tuple(args.python_version or ()),
        )
    )
    for choice in written.choices:
        labels = sorted({w.label for w in choice.wheels if w.label})
        plain = any(not w.label for w in choice.wheels)
        print(
            f"pip-gpu lock: wrote {written.path.name}: {choice.package} {choice.version}, variants "
            f"{' '.join(labels) or 'none'}{' and the non-variant wheel' if plain else ''}; "
            f"this host takes {choice.label or '(non-variant)' if choice.wheel else 'none'}",
            file=sys.stderr,
        )
    others = (
        f"{len(written.others)} other package(s) ({', '.join(written.others)})"
        if written.others
        else "no other package"
    )
    print(
        f"pip-gpu lock: {written.path.name} covers {', '.join(map(str, written.targets))}, with {others}",
        file=sys.stderr,
    )
    if args.json:
        emit_json(versioned(written.to_json()))
    return EXIT_OK


def _sync(args: argparse.Namespace, directory: Path) -> int:
    from ..ui import versioned
    from ..wheel_variant_steps import sync_variant_lock

    options = _options(args, variant_index_of(args) or "", cwd=directory)
    report = sync_variant_lock(
        replace(options, installer_output_to_stderr=bool(getattr(args, "json", False)))
    )
    if getattr(args, "json", False):
        emit_json(versioned(report.to_json()))
    elif report.dry_run:
        print_sync_dry_run(report.prefix, report.lock_file, report.changes)
    return EXIT_OK


def _check(args: argparse.Namespace, directory: Path) -> int:
    from ..wheel_variant_steps import check_variant_lock

    result = check_variant_lock(_options(args, variant_index_of(args) or "", cwd=directory))
    if args.json:
        emit_json(
            versioned(
                {
                    "ok": result.ok,
                    "lock": result.lock_file.name,
                    "lock_dir": str(directory),
                    "installed": dict(result.installed),
                    "problems": list(result.problems),
                    "variants": [label.to_json() for label in result.labels],
                    "fix": result.fix,
                }
            )
        )
    elif result.ok:
        held = ", ".join(f"{name} {text}" for name, text in result.installed.items())
        print(
            f"pip-gpu check: OK: the environment holds {held} as {result.lock_file.name} locks for this host"
        )
    else:
        print(f"pip-gpu check: the environment does not match {result.lock_file.name} for this host:")
        for problem in result.problems:
            print(f"  - {problem}")
        print(f"  fix: {result.fix}")
    return EXIT_OK if result.ok else EXIT_CHECK_FAILED
