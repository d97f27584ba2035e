"""The pip front end: ``pip install|download|wheel|lock`` as the shim reads them.

A command that names no torch-family project (on the command line, in a requirements file,
or through what pip's resolution brings in) goes to the real pip unchanged. ``pip install``
of the family becomes ``pip-gpu install`` with the very pip the user ran; ``pip download``,
``wheel`` and ``lock`` of the family alone run pip with the variant index as its only index.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from ..installers import exec_replacing
from .options import (
    Action,
    OptionTable,
    Parsed,
    Refused,
    RoutedInstall,
    family_names,
    first_word,
    names_family,
    parse_options,
    reads_stdin,
    unparse,
)

if TYPE_CHECKING:
    from .closure import Staged

__all__ = ["PIP_OPTIONS", "pip_action", "pip_interpreter"]

# pip's general options (pip/_internal/cli/cmdoptions.py, ``general_group``).
_PIP_GENERAL_VALUES = frozenset(
    [
        "--python",
        "--log",
        "--log-file",
        "--local-log",
        "--keyring-provider",
        "--proxy",
        "--retries",
        "--timeout",
        "--exists-action",
        "--trusted-host",
        "--cert",
        "--client-cert",
        "--cache-dir",
        "--use-feature",
        "--use-deprecated",
        "--resume-retries",
    ]
)
_PIP_GENERAL_FLAGS = frozenset(
    [
        "--help",
        "--debug",
        "--isolated",
        "--require-virtualenv",
        "--verbose",
        "--version",
        "--quiet",
        "--no-input",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--no-color",
        "--no-python-version-warning",
    ]
)
# Options of install / download / wheel / lock that take a value.
_PIP_COMMAND_VALUES = frozenset(
    [
        "--requirement",
        "--constraint",
        "--editable",
        "--target",
        "--platform",
        "--python-version",
        "--implementation",
        "--abi",
        "--root",
        "--prefix",
        "--src",
        "--upgrade-strategy",
        "--global-option",
        "--build-option",
        "--config-settings",
        "--index-url",
        "--extra-index-url",
        "--find-links",
        "--no-binary",
        "--only-binary",
        "--progress-bar",
        "--report",
        "--root-user-action",
        "--group",
        "--dest",
        "--destination-dir",
        "--wheel-dir",
        "--output",
    ]
)
_PIP_COMMAND_FLAGS = frozenset(
    [
        "--upgrade",
        "--force-reinstall",
        "--no-deps",
        "--pre",
        "--no-index",
        "--prefer-binary",
        "--require-hashes",
        "--no-build-isolation",
        "--break-system-packages",
        "--user",
        "--ignore-installed",
        "--ignore-requires-python",
        "--dry-run",
        "--no-compile",
        "--compile",
        "--no-warn-script-location",
        "--no-warn-conflicts",
        "--use-pep517",
        "--no-clean",
        "--check-build-dependencies",
        "--no-build-isolation",
    ]
)
PIP_OPTIONS = OptionTable(
    long_values=_PIP_GENERAL_VALUES | _PIP_COMMAND_VALUES,
    long_flags=_PIP_GENERAL_FLAGS | _PIP_COMMAND_FLAGS,
    short_values="rcetifdwoC",
    short_flags="hvVqUI",
    abbreviations=True,
)
_PIP_SHORT = {
    "-r": "--requirement",
    "-c": "--constraint",
    "-e": "--editable",
    "-t": "--target",
    "-i": "--index-url",
    "-f": "--find-links",
    "-d": "--dest",
    "-w": "--wheel-dir",
    "-o": "--output",
    "-C": "--config-settings",
    "-h": "--help",
    "-v": "--verbose",
    "-V": "--version",
    "-q": "--quiet",
    "-U": "--upgrade",
    "-I": "--ignore-installed",
}
# Options that change nothing about what is installed or where: passed to both pip runs as
# the PIP_* variable pip reads for every option.
_PIP_BY_ENVIRONMENT = frozenset(
    [
        "--log",
        "--log-file",
        "--local-log",
        "--keyring-provider",
        "--proxy",
        "--retries",
        "--timeout",
        "--exists-action",
        "--cert",
        "--client-cert",
        "--use-feature",
        "--use-deprecated",
        "--resume-retries",
        "--debug",
        "--require-virtualenv",
        "--no-input",
        "--disable-pip-version-check",
        "--no-color",
        "--no-python-version-warning",
        "--root-user-action",
        "--no-warn-script-location",
        "--no-warn-conflicts",
        "--no-compile",
        "--compile",
        "--no-clean",
        "--ignore-requires-python",
        "--use-pep517",
        "--check-build-dependencies",
    ]
)


def pip_action(real: str, args: list[str]) -> Action:
    """What the shim does with ``pip <args>``; None: the real pip, unchanged."""
    at = first_word(args, PIP_OPTIONS)
    command = args[at] if at >= 0 else None
    if command not in ("install", "download", "wheel", "lock"):
        return None
    parsed = parse_options([*args[:at], *args[at + 1 :]], PIP_OPTIONS)
    options = [(_PIP_SHORT.get(name, name), value) for name, value in parsed.options]
    parsed = Parsed(options, parsed.positionals)
    if parsed.has("--help", "--version"):
        return None
    staged = _staged_stdin(parsed.values("--requirement", "--constraint"))
    if staged is not None:  # issue 13: `-r -` read once, into a file both runs read
        options = [
            (
                n,
                staged.stdin_file()
                if v is not None and reads_stdin(v) and n in ("--requirement", "--constraint")
                else v,
            )
            for n, v in options
        ]
        parsed = Parsed(options, parsed.positionals)
        args = [*args[:at], command, *unparse(options), "--", *parsed.positionals]
    if (
        not names_family(parsed.positionals, parsed.values("--requirement"), parsed.values("--constraint"))
        and not any(value for name, value in options if name == "--editable" and "torch" in (value or ""))
        and not _pip_closure_needs_family(real, args, at, command, parsed)
    ):
        if staged is None:
            return None
        from .closure import run_staged

        return lambda: run_staged(real, args, staged)
    if command != "install":
        return _pip_fetch(real, args[:at], command, parsed)
    python = parsed.values("--python")
    target = python[-1] if python else pip_interpreter(Path(real))
    from ..install import InstallOptions
    from ..route import INSTALLER_OPTION_NAMES  # the options `pip-gpu install` takes and passes on

    files: dict[str, list[str]] = {"--requirement": [], "--constraint": []}
    passthrough: list[tuple[str, Optional[str]]] = []
    environment: dict[str, str] = {}
    if parsed.values("--editable"):  # a project's requirements are read like any other line
        from .closure import editables_file

        files["--requirement"].append(editables_file(parsed.values("--editable"), staged))
    for name, value in options:
        if name in files:
            files[name].append(str(value))
        elif name in ("--editable", "--python", "--dry-run"):
            continue
        elif name in INSTALLER_OPTION_NAMES:
            passthrough.append((name, value))
        elif name in _PIP_BY_ENVIRONMENT:
            environment["PIP_" + name[2:].upper().replace("-", "_")] = "1" if value is None else value
        else:
            raise Refused(f"`pip install {name}` with the torch family is not routed by the shim yet")
    request = InstallOptions(
        requirements=tuple(parsed.positionals),
        requirement_files=tuple(files["--requirement"]),
        constraint_files=tuple(files["--constraint"]),
        installer="pip",
        python=str(target),
        python_from=None if parsed.has("--python") else "the pip you ran",
        installer_dry_run=parsed.has("--dry-run"),
        passthrough=tuple(passthrough),
    )
    return RoutedInstall(request, environment)


def _staged_stdin(values: list[str]) -> Optional[Staged]:
    """Requirements from standard input (``-r -``, ``-r /dev/stdin``): read once, kept in a file."""
    if not any(reads_stdin(value) for value in values):
        return None
    from .closure import Staged

    return Staged()


def _pip_closure_needs_family(real: str, args: list[str], at: int, command: str, parsed: Parsed) -> bool:
    """Whether pip's resolution of this command brings in a torch-family package."""
    if not (parsed.positionals or parsed.values("--requirement", "--editable")):
        return False  # nothing to install: pip says so itself
    from .closure import CannotTell, pip_closure_family, pip_closure_family_via_uv

    command_args = [a for a in args[at + 1 :]]
    if command != "install":  # download/wheel: the same requirements, resolved as an install
        drop = {"--dest", "--destination-dir", "--wheel-dir", "--output", "-d", "-w", "-o"}
        command_args = unparse([(n, v) for n, v in parsed.options if n not in drop])
        command_args += ["--", *parsed.positionals]
    python = parsed.values("--python")
    target = Path(python[-1]) if python else pip_interpreter(Path(real))
    try:
        found = pip_closure_family_via_uv(parsed.options, parsed.positionals, target, family_names())
        if found is None:  # settings uv cannot carry, or uv could not resolve: pip itself answers
            found = pip_closure_family(real, args[:at], command_args, family_names())
    except CannotTell as why:
        raise Refused(f"cannot tell whether `pip {command}` brings in the torch family ({why})") from None
    if found and command != "install":
        raise Refused(
            f"`pip {command}` of packages that bring in {', '.join(found)} is not routed by the shim yet; "
            f"fetch the torch family first with `pip {command} {found[0]}...` (routed), then the rest"
        )
    if found:
        print(
            f"pip-gpu: the requirements bring in {', '.join(found)}: routing through pip-gpu", file=sys.stderr
        )
    return bool(found)


# Options of pip download/wheel/lock that choose where packages come from: pip-gpu sets those.
_PIP_INDEX_OPTIONS = frozenset(["--index-url", "--extra-index-url", "--find-links", "--no-index"])


def _pip_fetch(real: str, general: list[str], command: str, parsed: Parsed) -> Callable[[], int]:
    """``pip download|wheel|lock`` of the torch family: the variant index as pip's only index.

    Nothing is installed, so there is no environment to hold the family in place; a command
    that mixes the family with other packages is refused rather than split.
    """
    from ..decide.plan import decide_for, marker_environment, rewrite_pins
    from ..detect import host_for
    from ..host import HostFlags
    from ..requirements import redact_url, render_line, rewrite_line

    python_version = None
    wanted_python = parsed.values("--python-version")
    if wanted_python:  # pip takes "312" or "3.12"
        digits = wanted_python[-1].replace(".", "")
        python_version = f"{digits[0]}.{digits[1:]}" if digits.isdigit() else wanted_python[-1]
    host = host_for(HostFlags(python_version=python_version))
    plan = decide_for(parsed.positionals, parsed.values("--requirement"), host, cwd=Path.cwd())
    markers = marker_environment(host)
    requirements = [line for line in plan.lines if not line.constraint]
    others = [line.text for line in requirements if line.name not in plan.family_names]
    if others:
        raise Refused(
            f"`pip {command}` of the torch family together with {', '.join(others[:3])} is not routed; "
            f"run `pip {command}` once for the torch family and once for the rest"
        )
    if any(line.hashes for line in requirements):
        raise Refused(f"`pip {command}` of hashed torch-family requirements is not routed by the shim yet")
    decision = plan.decision
    decision.chosen()  # NoBuildRuns, with the reason, when no build runs here
    kept = [
        (name if value is None else f"{name}={value}")
        for name, value in parsed.options
        if name not in (*_PIP_INDEX_OPTIONS, "--requirement", "--constraint")
    ]
    pins = rewrite_pins(plan)
    wanted = [
        render_line(rewrite_line(line, pins))
        for line in requirements
        if line.requirement is None
        or line.requirement.marker is None
        or line.requirement.marker.evaluate(markers)
    ]
    if decision.index_url is None:  # macOS: PyPI's own wheels are the build
        return lambda: exec_replacing(real, [*general, command, *kept, *wanted])
    index = ["--index-url", decision.index_url]
    print(
        f"pip-gpu: torch {decision.torch} -> {decision.variant} from {redact_url(decision.index_url)}",
        file=sys.stderr,
    )
    # As for pip-gpu install: pip.conf's extra indexes and find-links must not join in.
    os.environ.update(PIP_INDEX_URL=decision.index_url, PIP_EXTRA_INDEX_URL=" ", PIP_FIND_LINKS=" ")
    os.environ.pop("PIP_NO_INDEX", None)
    return lambda: exec_replacing(real, [*general, command, *index, *kept, *wanted])


# ``pip --version``: "pip 24.2 from /venv/lib/python3.11/site-packages/pip (python 3.11)"
_PIP_VERSION = re.compile(r"^pip \S+ from (?P<where>.+) \(python (?P<python>\d+\.\d+)\)\s*$", re.MULTILINE)
_PIP_LOCATION = "import os, pip; print(os.path.dirname(os.path.abspath(pip.__file__)))"


def pip_interpreter(real: Path) -> Path:
    """The interpreter the ``pip`` program ``real`` runs, asked of the program itself.

    ``real`` may be pip's own launcher, or a wrapper that runs another program: pyenv's,
    asdf's and mise's shims are shell scripts, others ``exec python -m pip``. Their ``#!``
    line names a shell, not the Python. ``pip --version`` names where pip itself lives
    (``.../site-packages/pip``) and its Python version; the interpreter is the one of that
    prefix that imports exactly that pip.

    pip's own launcher says it without running (a pip start-up costs hundreds of ms): its
    ``#!`` line (or, for a long path, its ``/bin/sh`` ``exec`` line) names the interpreter
    that runs ``pip._internal``.
    """
    launched = _launcher_interpreter(real)
    if launched is not None:
        return launched
    environment = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_GPU_DISABLE="1")
    try:
        done = subprocess.run(
            [str(real), "--version"], capture_output=True, text=True, env=environment, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise Refused(f"cannot ask {real} which Python it runs ({error})") from None
    match = _PIP_VERSION.search(done.stdout)
    if done.returncode != 0 or match is None:
        said = (done.stdout + done.stderr).strip().splitlines()
        raise Refused(
            f"cannot tell which Python {real} runs: `{real.name} --version` said "
            f"{said[-1] if said else 'nothing'!r}"
        )
    where, version = Path(match["where"]), match["python"]
    for prefix in where.parents:
        for candidate in (
            prefix / "bin" / f"python{version}",
            prefix / "bin" / "python3",
            prefix / "bin" / "python",
            prefix / "Scripts" / "python.exe",
            prefix / "python.exe",
        ):
            if candidate.is_file() and _imports_pip_from(candidate, where):
                return candidate
    raise Refused(f"cannot tell which Python {real} runs: no interpreter near {where} imports that pip")


# The console script that pip, distlib and installer write for pip: the interpreter on its #!
# line, or, for a path too long (or with spaces) for #!, on a /bin/sh "exec" line.
_LAUNCHER_PIP = re.compile(r"^from pip\._internal(?:\.cli\.main)? import main\b", re.MULTILINE)
_SHEBANG = re.compile(r"\A#!(?P<python>\S+)[^\n]*\n")
_SH_EXEC = re.compile(r"""\A#!/bin/sh\n'''exec' (?P<q>["'])(?P<python>.+?)(?P=q) "\$0" "\$@"\n""")
_PYTHON_NAME = re.compile(r"python(\d+(\.\d+)?t?)?(\.exe)?", re.IGNORECASE)


def _launcher_interpreter(real: Path) -> Optional[Path]:
    """The interpreter named by pip's own launcher script; None for anything else."""
    try:
        with real.open("rb") as handle:
            head = handle.read(4096).decode("utf-8", errors="replace").replace("\r\n", "\n")
    except OSError:
        return None
    if not _LAUNCHER_PIP.search(head):
        return None  # a wrapper (pyenv, asdf, mise...) or a binary: ask the program
    match = _SH_EXEC.match(head) or _SHEBANG.match(head)
    if match is None:
        return None
    python = Path(match["python"])
    if not _PYTHON_NAME.fullmatch(python.name) or not python.is_file() or not os.access(python, os.X_OK):
        return None  # /usr/bin/env python3 and the like: the program knows best
    return python


def _imports_pip_from(python: Path, where: Path) -> bool:
    try:
        done = subprocess.run(
            [str(python), "-c", _PIP_LOCATION], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    try:
        return done.returncode == 0 and os.path.samefile(done.stdout.strip(), where)
    except OSError:
        return False
