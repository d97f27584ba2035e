"""What a shim does once its shell script hands a command to Python.

The script starts Python only for subcommands that can install packages. Here the command
line is read properly: when no torch-family project is named (on the command line or in a
requirements file), or the command is one pip-gpu leaves alone, the real program replaces
this process (``exec``) with the arguments unchanged. Otherwise the command becomes
``pip-gpu install`` with the very pip or uv the user invoked, or, for uv projects, ``uv run``
/ ``uv sync`` with the extra of the variant this host runs.

It fails closed: anything unexpected stops with one line naming ``PIP_GPU_DISABLE=1`` and a
non-zero status, and nothing is installed. Only the standard library is imported until a
command is known to involve the family.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from ..installers import exec_replacing

if TYPE_CHECKING:
    from ..install import InstallOptions

__all__ = ["main", "parse_options", "pip_interpreter", "windows_main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
_DISABLE_HINT = "set PIP_GPU_DISABLE=1 to run {prog} without pip-gpu (the torch build is then not checked)"


class _Refused(Exception):
    """The shim cannot route this command safely; nothing was run."""


def main(argv: Sequence[str]) -> int:
    """``argv``: the shim's name, the real program, then the user's arguments."""
    name, real, args = argv[0], argv[1], list(argv[2:])
    prog = "uv" if name == "uvx" else name
    from ..children import exit_status_for, forward_termination

    forward_termination()  # SIGTERM/SIGHUP reach a routed installer, as Ctrl-C does
    try:
        action = _pip(real, args) if name.startswith("pip") else _uv(name, real, args)
        if action is None:
            exec_replacing(real, args)
        return action()
    except _Refused as refusal:
        print(f"pip-gpu: {refusal}; {_DISABLE_HINT.format(prog=prog)}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # the reader of our output went away: exit as after SIGPIPE, quietly
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
    except KeyboardInterrupt as interrupt:
        print("pip-gpu: interrupted", file=sys.stderr)
        return exit_status_for(interrupt)
    except Exception as error:
        from ..errors import PipGpuError

        if isinstance(error, PipGpuError):
            print(error.render(), file=sys.stderr)
            return error.exit_code
        if os.environ.get("PIP_GPU_DEBUG"):
            raise
        print(
            f"pip-gpu: unexpected failure in the {name} shim ({type(error).__name__}: {error}); "
            f"nothing was installed. {_DISABLE_HINT.format(prog=prog).capitalize()}.",
            file=sys.stderr,
        )
        return EXIT_FAILED


def windows_main(argv: Sequence[str]) -> int:
    """The ``.cmd`` and ``.ps1`` shims: ``argv`` is the name, the shims folder, the arguments.

    Their shells cannot scan PATH as the POSIX script does, so Python finds the real program:
    the first ``name`` (with a PATHEXT extension on Windows) in a folder without the marker.
    """
    from ..shims import MARKER

    name, folder, args = argv[0], Path(argv[1]), list(argv[2:])
    extensions = [""]
    if sys.platform == "win32":
        extensions = [e.lower() for e in os.environ.get("PATHEXT", ".COM;.EXE;.BAT;.CMD").split(";") if e]
    real = None
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        directory = Path(entry or ".")
        if (directory / MARKER).is_file() or _same_folder(directory, folder):
            continue
        found = next((directory / (name + e) for e in extensions if (directory / (name + e)).is_file()), None)
        if found is not None and os.access(found, os.X_OK):
            real = str(found)
            break
    if real is None:
        print(
            f"pip-gpu: no {name} on PATH after pip-gpu's shims; install it, or run 'pip-gpu shim uninstall'",
            file=sys.stderr,
        )
        return 127
    if os.environ.get("PIP_GPU_DISABLE", "") not in ("", "0", "false", "no"):
        exec_replacing(real, args)
    return main([name, real, *args])


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# --- reading command lines -------------------------------------------------------------------


@dataclass
class Parsed:
    """A command line split into options (in order, with values) and positional arguments."""

    options: list[tuple[str, Optional[str]]] = field(default_factory=list)
    positionals: list[str] = field(default_factory=list)

    def values(self, *names: str) -> list[str]:
        return [value for name, value in self.options if name in names and value is not None]

    def has(self, *names: str) -> bool:
        return any(name in names for name, _ in self.options)


@dataclass(frozen=True)
class OptionTable:
    """Which options a program knows, and which of them take a value."""

    long_values: frozenset[str]
    long_flags: frozenset[str]
    short_values: str
    short_flags: str
    abbreviations: bool = False  # optparse (pip) accepts unique prefixes of long options

    def expand(self, name: str) -> str:
        if not self.abbreviations or name in self.long_values or name in self.long_flags:
            return name
        matches = [known for known in (*self.long_values, *self.long_flags) if known.startswith(name)]
        return matches[0] if len(matches) == 1 else name


def parse_options(tokens: Sequence[str], table: OptionTable, *, stop_at_positional: bool = False) -> Parsed:
    """Split tokens the way optparse or clap would; unknown long options are taken as flags."""
    parsed = Parsed()
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token == "--":
            parsed.positionals += tokens[i:]
            break
        if token.startswith("--"):
            name, eq, value = token.partition("=")
            name = table.expand(name)
            if name in table.long_values and not eq:
                value = tokens[i] if i < len(tokens) else ""
                i += 1
            parsed.options.append((name, value if (eq or name in table.long_values) else None))
        elif token.startswith("-") and len(token) > 1:
            j = 1
            while j < len(token):
                letter = token[j]
                if letter in table.short_values:
                    attached = token[j + 1 :].lstrip("=")
                    if not attached:
                        attached = tokens[i] if i < len(tokens) else ""
                        i += 1
                    parsed.options.append((f"-{letter}", attached))
                    break
                parsed.options.append((f"-{letter}", None))
                j += 1
        else:
            parsed.positionals.append(token)
            if stop_at_positional:
                parsed.positionals += tokens[i:]
                break
    return parsed


def _first_word(tokens: Sequence[str], table: OptionTable) -> int:
    """Index of the first positional (the subcommand), or -1."""
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "--":
            return -1
        if not token.startswith("-") or token == "-":
            return i
        name = table.expand(token.split("=", 1)[0])
        takes_value = (token.startswith("--") and name in table.long_values and "=" not in token) or (
            not token.startswith("--") and len(token) == 2 and token[1] in table.short_values
        )
        i += 2 if takes_value else 1
    return -1


def _family_names() -> frozenset[str]:
    from packaging.utils import canonicalize_name

    from ..knowledge import load_knowledge

    return frozenset(canonicalize_name(member.name) for member in load_knowledge().family)


def _names_family(
    requirements: Iterable[str],
    files: Iterable[str],
    constraints: Iterable[str],
    *,
    routed_by_uv: bool = False,
) -> bool:
    """Whether any requirement, on the command line or in a file, is a torch-family project.

    ``routed_by_uv``: uv itself will read the files with the variant index added, so a
    ``pyproject.toml`` or ``pylock.toml`` that names the family counts instead of stopping.
    """
    requirements, files, constraints = list(requirements), list(files), list(constraints)
    if not (requirements or files or constraints):
        return False  # nothing to read: keep packaging and the knowledge file unloaded
    from ..requirements import parse_requirement_args, read_requirements_file

    family = _family_names()
    lines = []
    for text in requirements:
        try:
            lines += parse_requirement_args([text])
        except Exception:
            continue  # not a requirement pip-gpu understands: the installer reports it
    for path, constraint in [*((f, False) for f in files), *((f, True) for f in constraints)]:
        if path == "-" or not Path(path).is_file():
            continue  # stdin, a URL or a missing file: the installer reports it
        if not path.endswith((".txt", ".in")) and not re.search(r"\.(txt|in)$|requirements", path):
            # pyproject.toml, setup.cfg, ...: not a requirements file; look for the names
            text = Path(path).read_text(encoding="utf-8", errors="replace").lower()
            if any(re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])", text) for name in family):
                if routed_by_uv:
                    return True
                raise _Refused(f"{path} names the torch family, and pip-gpu reads only requirements files")
            continue
        lines += read_requirements_file(Path(path), constraint=constraint).lines
    return any(line.name in family for line in lines)


# --- pip ---------------------------------------------------------------------------------------

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


def _pip(real: str, args: list[str]) -> Optional[Callable[[], int]]:
    at = _first_word(args, PIP_OPTIONS)
    command = args[at] if at >= 0 else None
    if command not in ("install", "download", "wheel", "lock"):
        return None
    parsed = parse_options([*args[:at], *args[at + 1 :]], PIP_OPTIONS)
    options = [(_PIP_SHORT.get(name, name), value) for name, value in parsed.options]
    parsed = Parsed(options, parsed.positionals)
    if parsed.has("--help", "--version"):
        return None
    staged = _staged_stdin(parsed, ("--requirement", "--constraint"))
    if staged is not None:  # issue 13: `-r -` read once, into a file both runs read
        options = [
            (n, staged.stdin_file() if v == "-" and n in ("--requirement", "--constraint") else v)
            for n, v in options
        ]
        parsed = Parsed(options, parsed.positionals)
        args = [*args[:at], command, *_unparse(options), "--", *parsed.positionals]
    if (
        not _names_family(parsed.positionals, parsed.values("--requirement"), parsed.values("--constraint"))
        and not any(value for name, value in options if name == "--editable" and "torch" in (value or ""))
        and not _pip_closure_needs_family(real, args, at, command, parsed)
    ):
        return None if staged is None else (lambda: _run_real(real, args, staged))
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
        files["--requirement"].append(_editables_file(parsed.values("--editable"), staged))
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
            raise _Refused(f"`pip install {name}` with the torch family is not routed by the shim yet")
    request = InstallOptions(
        requirements=tuple(parsed.positionals),
        requirement_files=tuple(files["--requirement"]),
        constraint_files=tuple(files["--constraint"]),
        installer="pip",
        python=str(target),
        dry_run=parsed.has("--dry-run"),
        passthrough=tuple(passthrough),
    )
    return lambda: _run_install(request, environment)


# --- issue 13: the family that arrives through the resolution --------------------------------


def _staged_stdin(parsed: Parsed, names: Sequence[str]) -> Optional[Any]:
    """Requirements from standard input (``-r -``): read once, kept in a file."""
    if "-" not in parsed.values(*names):
        return None
    from .closure import Staged

    return Staged()


def _editables_file(editables: Sequence[str], staged: Optional[Any]) -> str:
    from .closure import Staged

    holder = staged if staged is not None else Staged()
    path: str = holder.editables_file(editables)
    return path


def _unparse(options: Sequence[tuple[str, Optional[str]]]) -> list[str]:
    return [name if value is None else f"{name}={value}" for name, value in options]


def _run_real(real: str, args: Sequence[str], staged: Any) -> int:
    """The real program as a child (a staged file must outlive it), its status ours."""
    try:
        return subprocess.run([real, *args], check=False).returncode
    finally:
        staged.close()


def _pip_closure_needs_family(real: str, args: list[str], at: int, command: str, parsed: Parsed) -> bool:
    """Whether pip's resolution of this command brings in a torch-family package."""
    if not (parsed.positionals or parsed.values("--requirement", "--editable")):
        return False  # nothing to install: pip says so itself
    from .closure import CannotTell, pip_closure_family, pip_closure_family_via_uv

    command_args = [a for a in args[at + 1 :]]
    if command != "install":  # download/wheel: the same requirements, resolved as an install
        drop = {"--dest", "--destination-dir", "--wheel-dir", "--output", "-d", "-w", "-o"}
        command_args = _unparse([(n, v) for n, v in parsed.options if n not in drop])
        command_args += ["--", *parsed.positionals]
    python = parsed.values("--python")
    target = Path(python[-1]) if python else pip_interpreter(Path(real))
    try:
        found = pip_closure_family_via_uv(parsed.options, parsed.positionals, target, _family_names())
        if found is None:  # settings uv cannot carry, or uv could not resolve: pip itself answers
            found = pip_closure_family(real, args[:at], command_args, _family_names())
    except CannotTell as why:
        raise _Refused(f"cannot tell whether `pip {command}` brings in the torch family ({why})") from None
    if found and command != "install":
        raise _Refused(
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
    from ..errors import NoBuildRuns
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
        raise _Refused(
            f"`pip {command}` of the torch family together with {', '.join(others[:3])} is not routed; "
            f"run `pip {command}` once for the torch family and once for the rest"
        )
    if any(line.hashes for line in requirements):
        raise _Refused(f"`pip {command}` of hashed torch-family requirements is not routed by the shim yet")
    decision = plan.decision
    if not decision.ok:
        assert decision.blocker is not None
        raise NoBuildRuns(decision.blocker.message, decision.blocker.hint)
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
    """
    environment = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_GPU_DISABLE="1")
    try:
        done = subprocess.run(
            [str(real), "--version"], capture_output=True, text=True, env=environment, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise _Refused(f"cannot ask {real} which Python it runs ({error})") from None
    match = _PIP_VERSION.search(done.stdout)
    if done.returncode != 0 or match is None:
        said = (done.stdout + done.stderr).strip().splitlines()
        raise _Refused(
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
    raise _Refused(f"cannot tell which Python {real} runs: no interpreter near {where} imports that pip")


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


def _run_install(request: InstallOptions, environment: Mapping[str, str]) -> int:
    """``pip-gpu install`` with the options the shim read, and the shim's own settings."""
    from ..errors import PipGpuError
    from ..install import install
    from ..route import INSTALLER_OPTIONS

    takes_no_value = {option.long for option in INSTALLER_OPTIONS if not option.takes_value}
    for name, value in request.passthrough:
        if name in takes_no_value and value is not None:
            raise _Refused(f"{name}={value}: {name} takes no value")
    os.environ.update(environment)
    try:
        result = install(request)
    except PipGpuError as error:
        print(error.render(), file=sys.stderr)
        return error.exit_code
    if request.dry_run:
        print(result.dry_run_script)
    return EXIT_OK


# --- uv ----------------------------------------------------------------------------------------

# uv's global options that take a value (``uv --help``) and those of the commands routed here.
_UV_VALUES = frozenset(
    [
        "--cache-dir",
        "--python-preference",
        "--color",
        "--allow-insecure-host",
        "--trusted-host",
        "--directory",
        "--project",
        "--config-file",
        "--requirements",
        "--requirement",
        "--constraints",
        "--constraint",
        "--overrides",
        "--override",
        "--build-constraints",
        "--build-constraint",
        "--editable",
        "--extra",
        "--group",
        "--only-group",
        "--no-group",
        "--index-url",
        "--extra-index-url",
        "--index",
        "--default-index",
        "--find-links",
        "--index-strategy",
        "--keyring-provider",
        "--upgrade-package",
        "--reinstall-package",
        "--no-build-package",
        "--no-binary",
        "--only-binary",
        "--python-version",
        "--python-platform",
        "--resolution",
        "--prerelease",
        "--fork-strategy",
        "--exclude-newer",
        "--exclude-newer-package",
        "--link-mode",
        "--config-setting",
        "--config-settings-package",
        "--no-build-isolation-package",
        "--target",
        "--prefix",
        "--python",
        "--torch-backend",
        "--refresh-package",
        "--output-file",
        "--annotation-style",
        "--custom-compile-command",
        "--with",
        "--with-editable",
        "--with-requirements",
        "--from",
        "--env-file",
        "--package",
        "--no-emit-package",
        "--script",
        "--all-extras-except",
        "--no-extra",
        "--no-install-package",
        "--only-install-package",
        "--managed-python",
        "--index-url",
    ]
)
UV_OPTIONS = OptionTable(
    long_values=_UV_VALUES,
    long_flags=frozenset(),
    short_values="rcbeifpPCow",
    short_flags="hqvnUV",
)
_UV_SHORT = {
    "-r": "--requirements",
    "-c": "--constraints",
    "-p": "--python",
    "-w": "--with",
    "-e": "--editable",
    "-i": "--index-url",
    "-f": "--find-links",
}
_TRUTHY = ("1", "true", "yes", "on")


def _uv(name: str, real: str, args: list[str]) -> Optional[Callable[[], int]]:
    if os.environ.get("UV_TORCH_BACKEND"):
        return None  # the user chose uv's own torch backend
    if name == "uvx":
        return _uv_tool_run(real, args, 0)
    at = _first_word(args, UV_OPTIONS)
    command = args[at] if at >= 0 else None
    if command == "pip" and at + 1 < len(args):
        relative = _first_word(args[at + 1 :], UV_OPTIONS)
        sub_at = at + 1 + relative
        if relative >= 0 and args[sub_at] == "install":
            return _uv_pip_install(real, [*args[:at], *args[sub_at + 1 :]])
        if relative >= 0 and args[sub_at] in ("compile", "sync"):
            return _uv_pip_resolve(real, args, sub_at)
        return None
    if command in ("run", "sync"):
        from ..uv_project import uv_project_command
        from .uv_guard import uv_project_guard

        parsed = _parse_uv(args[at + 1 :], command == "run")
        return uv_project_command(real, args, at, parsed) or uv_project_guard(real, args, at, parsed)
    if command in ("add", "lock"):
        from .uv_guard import uv_project_guard

        return uv_project_guard(real, args, at, _parse_uv(args[at + 1 :]))
    if command == "tool" and at + 1 < len(args) and args[at + 1] in ("run", "install"):
        return _uv_tool_run(real, args, at + 2)
    return None


def _parse_uv(tokens: Sequence[str], stop_at_positional: bool = False) -> Parsed:
    parsed = parse_options(tokens, UV_OPTIONS, stop_at_positional=stop_at_positional)
    return Parsed([(_UV_SHORT.get(n, n), v) for n, v in parsed.options], parsed.positionals)


def _uv_tool_run(real: str, args: list[str], start: int) -> Optional[Callable[[], int]]:
    parsed = _parse_uv(args[start:], stop_at_positional=True)
    named = [*parsed.values("--with", "--from"), *parsed.positionals[:1]]
    requirements = [r for value in named for r in value.split(",")]
    if not _names_family(
        requirements, parsed.values("--with-requirements"), ()
    ) and not ephemeral_needs_family(real, requirements, parsed.values("--with-requirements")):
        return None
    return uv_with_variant_index(real, args, start, parsed, requirements)


def _uv_pip_resolve(real: str, args: list[str], at: int) -> Optional[Callable[[], int]]:
    """``uv pip compile|sync``: uv resolves or installs the files itself, the variant index added."""
    parsed = _parse_uv(args[at + 1 :])
    if parsed.has("--help", "-h", "--torch-backend"):
        return None
    files = [*parsed.positionals, *parsed.values("--requirements", "--requirement")]
    constraints = parsed.values("--constraints", "--constraint")
    if not _names_family((), files, constraints, routed_by_uv=True) and not (
        args[at] == "compile" and _uv_compile_needs_family(real, files, parsed)
    ):
        return None  # `uv pip sync` installs only what its files list: no resolution brings more
    return uv_with_variant_index(real, args, at + 1, parsed, [], files=files)


def _uv_compile_needs_family(real: str, files: Sequence[str], parsed: Parsed) -> bool:
    """Whether ``uv pip compile`` of these files brings in a torch-family package."""
    if not files or any(f == "-" for f in files):
        return False if not files else _refuse_stdin_compile()
    from .closure import CannotTell, uv_closure_family

    try:
        return bool(uv_closure_family(real, (), files, (), parsed.options, None, _family_names()))
    except CannotTell as why:
        raise _Refused(f"cannot tell whether `uv pip compile` brings in the torch family ({why})") from None


def _refuse_stdin_compile() -> bool:
    raise _Refused("`uv pip compile -` (standard input) is not routed by the shim yet; pass a file")


def uv_with_variant_index(
    real: str,
    args: list[str],
    insert_at: int,
    parsed: Parsed,
    requirements: Sequence[str],
    *,
    files: Sequence[str] = (),
) -> Callable[[], int]:
    """uv's ephemeral environments (``uvx``, ``uv tool``, ``uv run --with``, PEP 723 scripts).

    No environment exists before uv makes one, so there is nothing for ``pip-gpu install`` to
    install into; instead the variant index joins uv's own command as a named index with
    ``first-index``, which takes every package it serves from it and nothing else.
    """
    if parsed.has("--index-strategy"):
        raise _Refused("`--index-strategy` with the torch family would undo pip-gpu's routing")
    from ..decide.plan import decide_for
    from ..detect import host_for
    from ..errors import NoBuildRuns

    readable = [f for f in (*files, *parsed.values("--with-requirements")) if not f.endswith(".toml")]
    from ..decide.resolution import ResolutionContext

    projects = [  # a project's own dependencies count: pip reads them from the folder
        str(Path(f).resolve().parent)
        for f in (*files, *parsed.values("--with-requirements"))
        if Path(f).name in ("pyproject.toml", "setup.cfg", "setup.py")
    ]
    others = [*requirements, *projects]
    context = (  # best effort: uv resolves the family itself afterwards, from the decided index
        ResolutionContext(python=Path(sys.executable), prefer_installed=False, strict=False)
        if others or readable
        else None
    )
    plan = decide_for(others, readable, host_for(), cwd=Path.cwd(), context=context)
    decision = plan.decision
    if not decision.ok:
        assert decision.blocker is not None
        raise NoBuildRuns(decision.blocker.message, decision.blocker.hint)
    if decision.index_url is None:  # macOS: PyPI's own wheels are the build
        return lambda: exec_replacing(real, args)
    if not parsed.has("-q", "--quiet"):
        from ..requirements import redact_url

        print(f"pip-gpu: the torch family comes from {redact_url(decision.index_url)}", file=sys.stderr)
    routing = ["--index", f"pytorch={decision.index_url}", "--index-strategy", "first-index"]
    new_args = [*args[:insert_at], *routing, *args[insert_at:]]
    return lambda: exec_replacing(real, new_args)


_SCRIPT_METADATA = re.compile(r"(?m)^# /// script$\s(?P<content>(^#(| .*)$\s)+)^# ///$")


def script_dependencies(path: Path) -> list[str]:
    """A PEP 723 script's ``dependencies`` (its ``# /// script`` block), or none."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    match = _SCRIPT_METADATA.search(text)
    if match is None:
        return []
    content = "".join(
        line[2:] if line.startswith("# ") else line[1:] for line in match["content"].splitlines(True)
    )
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    try:
        dependencies = tomllib.loads(content).get("dependencies", [])
    except ValueError:
        return []  # uv reports a broken block in its own words
    return [d for d in dependencies if isinstance(d, str)]


# uv pip install options that would take the install elsewhere than the environment pip-gpu
# checks, or undo its routing.
_UV_REFUSED = frozenset(
    [
        "--target",
        "--prefix",
        "--index-strategy",
        "--directory",
        "--project",
        "--python-version",
        "--python-platform",
    ]
)


def _uv_pip_install(real: str, tokens: list[str]) -> Optional[Callable[[], int]]:
    parsed = _parse_uv(tokens)
    if parsed.has("--help", "-h", "--torch-backend", "-V", "--version"):
        return None  # --torch-backend: the user chose uv's own selection
    staged = _staged_stdin(parsed, ("--requirements", "--requirement", "--constraints", "--constraint"))
    if staged is not None:  # issue 13: `-r -` read once, into a file both runs read
        named = ("--requirements", "--requirement", "--constraints", "--constraint")
        options = [(n, staged.stdin_file() if v == "-" and n in named else v) for n, v in parsed.options]
        parsed = Parsed(options, parsed.positionals)
    if not _names_family(
        parsed.positionals, parsed.values("--requirements", "--requirement"), parsed.values("--constraints")
    ) and not _uv_closure_needs_family(real, parsed):
        if staged is None:
            return None
        again = ["pip", "install", *_unparse(parsed.options), "--", *parsed.positionals]
        return lambda: _run_real(real, again, staged)
    refused = [name for name, _ in parsed.options if name in _UV_REFUSED]
    if refused:
        raise _Refused(f"`uv pip install {refused[0]}` with the torch family is not routed by the shim yet")
    target = _uv_target(real, parsed)
    if target is None:
        return None  # uv reports that there is no environment, in its own words
    from ..install import InstallOptions

    requirement_files: list[str] = []
    constraint_files: list[str] = []
    extra: list[str] = []
    if parsed.values("--editable"):  # a project's requirements are read like any other line
        requirement_files.append(_editables_file(parsed.values("--editable"), staged))
    for option, value in parsed.options:
        if option in ("--requirements", "--requirement"):
            requirement_files.append(str(value))
        elif option in ("--constraints", "--constraint"):
            constraint_files.append(str(value))
        elif option in ("--editable", "--python", "--dry-run"):
            continue
        else:  # the user's own uv options, exactly as given
            extra.append(option if value is None else f"{option}={value}")
    request = InstallOptions(
        requirements=tuple(parsed.positionals),
        requirement_files=tuple(requirement_files),
        constraint_files=tuple(constraint_files),
        installer="uv",
        python=str(target),
        dry_run=parsed.has("--dry-run"),
        uv_binary=real,
        installer_extra=tuple(extra),
    )
    return lambda: _run_install(request, {})


def _uv_closure_needs_family(real: str, parsed: Parsed) -> bool:
    """Whether uv's resolution of this ``uv pip install`` brings in a torch-family package."""
    files = parsed.values("--requirements", "--requirement")
    editables = parsed.values("--editable")
    if not (parsed.positionals or files or editables):
        return False  # nothing to install: uv says so itself
    from .closure import CannotTell, uv_closure_family

    try:
        found = uv_closure_family(
            real,
            parsed.positionals,
            files,
            editables,
            parsed.options,
            _uv_target(real, parsed),
            _family_names(),
        )
    except CannotTell as why:
        raise _Refused(f"cannot tell whether `uv pip install` brings in the torch family ({why})") from None
    if found:
        print(
            f"pip-gpu: the requirements bring in {', '.join(found)}: routing through pip-gpu", file=sys.stderr
        )
    return bool(found)


def ephemeral_needs_family(real: str, requirements: Sequence[str], files: Sequence[str]) -> bool:
    """Whether uv's throwaway environment (``uv run --with``, ``uvx``, ``uv tool``) of these
    requirements brings in a torch-family package, by ``uv pip compile`` of the same."""
    if not (requirements or files):
        return False
    from .closure import CannotTell, uv_closure_family

    try:
        found = uv_closure_family(real, requirements, files, (), (), None, _family_names())
    except CannotTell as why:
        raise _Refused(f"cannot tell whether these requirements bring in the torch family ({why})") from None
    return bool(found)


def _venv_python(folder: Path) -> Optional[Path]:
    for candidate in (folder / "bin" / "python", folder / "Scripts" / "python.exe"):
        if candidate.exists():
            return candidate
    return None


def _uv_target(real: str, parsed: Parsed) -> Optional[Path]:
    """The environment ``uv pip install`` installs into, found as uv documents it."""
    env = os.environ
    requested = (parsed.values("--python") or [env.get("UV_PYTHON", "")])[-1]
    system = parsed.has("--system") or env.get("UV_SYSTEM_PYTHON", "").lower() in _TRUTHY
    if requested:
        given = Path(requested)
        if given.is_dir():
            return _venv_python(given)
        if given.exists():
            return given
        return _uv_python_find(real, [requested] + (["--system"] if system else []))
    if system:
        return _uv_python_find(real, ["--system"])
    for variable in ("VIRTUAL_ENV", "CONDA_PREFIX"):
        if env.get(variable):
            return _venv_python(Path(env[variable]))
    for folder in (Path.cwd(), *Path.cwd().parents):
        found = _venv_python(folder / ".venv")
        if found is not None:
            return found
    return None


def _uv_python_find(real: str, request: list[str]) -> Optional[Path]:
    done = subprocess.run(
        [real, "python", "find", *request], capture_output=True, text=True, check=False, timeout=60
    )
    path = done.stdout.strip()
    return Path(path) if done.returncode == 0 and path else None
