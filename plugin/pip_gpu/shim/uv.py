"""The uv front end: ``uv pip install|compile|sync``, ``uv run|sync|add|lock``, ``uvx``, ``uv tool``.

``uv pip install`` of the torch family becomes ``pip-gpu install`` with the very uv the user
ran; ``uv pip compile|sync`` and uv's throwaway environments (:mod:`.ephemeral`) keep uv's own
command with the variant index added; project commands go to :mod:`.uv_guard`. Everything
else, and everything with ``UV_TORCH_BACKEND`` set, goes to the real uv unchanged.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

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

__all__ = ["UV_OPTIONS", "parse_uv", "uv_action"]

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


def uv_action(name: str, real: str, args: list[str]) -> Action:
    """What the shim does with ``uv <args>`` (or ``uvx <args>``); None: the real uv, unchanged."""
    from .ephemeral import ephemeral_run, tool_run

    if os.environ.get("UV_TORCH_BACKEND"):
        return None  # the user chose uv's own torch backend
    if name == "uvx":
        return tool_run(real, args, 0, parse_uv(args, stop_at_positional=True))
    at = first_word(args, UV_OPTIONS)
    command = args[at] if at >= 0 else None
    if command == "pip" and at + 1 < len(args):
        relative = first_word(args[at + 1 :], UV_OPTIONS)
        sub_at = at + 1 + relative
        if relative >= 0 and args[sub_at] == "install":
            return _uv_pip_install(real, [*args[:at], *args[sub_at + 1 :]])
        if relative >= 0 and args[sub_at] in ("compile", "sync"):
            return _uv_pip_resolve(real, args, sub_at)
        return None
    if command in ("run", "sync", "add", "lock"):
        from .uv_guard import uv_project_action

        parsed = parse_uv(args[at + 1 :], command == "run")
        if command == "run":
            ephemeral = ephemeral_run(real, args, at, parsed)
            if ephemeral is not None:
                return ephemeral
        return uv_project_action(real, args, at, parsed)
    if command == "tool" and at + 1 < len(args) and args[at + 1] in ("run", "install"):
        return tool_run(real, args, at + 2, parse_uv(args[at + 2 :], stop_at_positional=True))
    return None


def parse_uv(tokens: Sequence[str], stop_at_positional: bool = False) -> Parsed:
    """uv's options, short ones under their long names."""
    parsed = parse_options(tokens, UV_OPTIONS, stop_at_positional=stop_at_positional)
    return Parsed([(_UV_SHORT.get(n, n), v) for n, v in parsed.options], parsed.positionals)


def _uv_pip_resolve(real: str, args: list[str], at: int) -> Action:
    """``uv pip compile|sync``: uv resolves or installs the files itself, the variant index added."""
    from .ephemeral import uv_with_variant_index

    parsed = parse_uv(args[at + 1 :])
    if parsed.has("--help", "-h", "--torch-backend"):
        return None
    files = [*parsed.positionals, *parsed.values("--requirements", "--requirement")]
    constraints = parsed.values("--constraints", "--constraint")
    if not names_family((), files, constraints, routed_by_uv=True) and not (
        args[at] == "compile" and _uv_compile_needs_family(real, files, parsed)
    ):
        return None  # `uv pip sync` installs only what its files list: no resolution brings more
    return uv_with_variant_index(real, args, at + 1, parsed, [], files=files)


def _uv_compile_needs_family(real: str, files: Sequence[str], parsed: Parsed) -> bool:
    """Whether ``uv pip compile`` of these files brings in a torch-family package."""
    if not files:
        return False
    if any(reads_stdin(f) for f in files):
        raise Refused("`uv pip compile -` (standard input) is not routed by the shim yet; pass a file")
    from .closure import CannotTell, uv_closure_family

    try:
        return bool(uv_closure_family(real, (), files, (), parsed.options, None, family_names()))
    except CannotTell as why:
        raise Refused(f"cannot tell whether `uv pip compile` brings in the torch family ({why})") from None


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


def _uv_pip_install(real: str, tokens: list[str]) -> Action:
    parsed = parse_uv(tokens)
    if parsed.has("--help", "-h", "--torch-backend", "-V", "--version"):
        return None  # --torch-backend: the user chose uv's own selection
    named = ("--requirements", "--requirement", "--constraints", "--constraint")
    staged = None
    if any(
        reads_stdin(v) for v in parsed.values(*named)
    ):  # issue 13: `-r -` read once, into a file both runs read
        from .closure import Staged

        staged = Staged()
        options = [
            (n, staged.stdin_file() if v is not None and n in named and reads_stdin(v) else v)
            for n, v in parsed.options
        ]
        parsed = Parsed(options, parsed.positionals)
    if not names_family(
        parsed.positionals, parsed.values("--requirements", "--requirement"), parsed.values("--constraints")
    ) and not _uv_closure_needs_family(real, parsed):
        if staged is None:
            return None
        again = ["pip", "install", *unparse(parsed.options), "--", *parsed.positionals]
        from .closure import run_staged

        return lambda: run_staged(real, again, staged)
    refused = [name for name, _ in parsed.options if name in _UV_REFUSED]
    if refused:
        raise Refused(f"`uv pip install {refused[0]}` with the torch family is not routed by the shim yet")
    target = _uv_target(real, parsed)
    if target is None:
        return None  # uv reports that there is no environment, in its own words
    from ..install import InstallOptions

    requirement_files: list[str] = []
    constraint_files: list[str] = []
    extra: list[str] = []
    if parsed.values("--editable"):  # a project's requirements are read like any other line
        from .closure import editables_file

        requirement_files.append(editables_file(parsed.values("--editable"), staged))
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
        python_from=None if parsed.has("--python") else "the environment uv chose",
        installer_dry_run=parsed.has("--dry-run"),
        uv_binary=real,
        installer_extra=tuple(extra),
    )
    return RoutedInstall(request)


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
            family_names(),
        )
    except CannotTell as why:
        raise Refused(f"cannot tell whether `uv pip install` brings in the torch family ({why})") from None
    if found:
        print(
            f"pip-gpu: the requirements bring in {', '.join(found)}: routing through pip-gpu", file=sys.stderr
        )
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
        if given.exists() and ("/" in requested or os.sep in requested):
            return given.absolute()  # kept relative, ./python would reach uv as `python`: a name
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
    # uv also takes the first `python` on PATH when it is a virtual environment's (its bin/ on
    # PATH without VIRTUAL_ENV: direnv, a wrapper script); missing it, the install went unrouted.
    first = _uv_python_find(real, [])
    if first is not None and (first.parent.parent / "pyvenv.cfg").is_file():
        return first
    return None


def _uv_python_find(real: str, request: list[str]) -> Optional[Path]:
    done = subprocess.run(
        [real, "python", "find", *request], capture_output=True, text=True, check=False, timeout=60
    )
    path = done.stdout.strip()
    return Path(path) if done.returncode == 0 and path else None
