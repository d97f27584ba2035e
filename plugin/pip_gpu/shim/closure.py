"""Whether an install the shim was given can bring in the torch family, without naming it.

``pip install ultralytics``, ``pip install -r requirements.txt`` whose file never says torch,
``pip install ./mylib.whl`` or ``-e .`` of a project that depends on torch: the family arrives
through the resolution. The shim asks the very installer the user invoked to resolve the
command without installing anything (pip: ``install --dry-run --ignore-installed --report``;
uv: ``pip compile``), against the user's own indexes and settings, and routes the command
through ``pip-gpu install`` when a torch-family package is in the result. When the resolution
fails the shim cannot tell, and refuses in one line rather than passing a possibly wrong build
through.

Standard library only until a family name must be compared (the shim starts fast).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Optional

from ..private import private_folder, private_scratch
from .options import reads_stdin

__all__ = [
    "CannotTell",
    "Staged",
    "editables_file",
    "pip_closure_family",
    "pip_closure_family_via_uv",
    "run_staged",
    "stage_inputs",
    "uv_closure_family",
]


class CannotTell(Exception):
    """The resolution that would say whether the family is involved did not succeed."""


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _last_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith(("error", "\u00d7 "))]
    return (errors or lines or ["no output"])[-1][:300]


class Staged:
    """Inputs that must become files: requirements from standard input, and editables.

    ``stdin``: the text read from standard input for ``-r -`` (read once, reused for the
    resolution and the install). The folder lives until :meth:`close`.
    """

    def __init__(self) -> None:
        import atexit

        self.folder = Path(private_folder("shim"))  # standard input may name an index with a token
        self.stdin: Optional[str] = None
        atexit.register(self.close)  # after the routed install (an exec leaves it to the next run)

    def stdin_file(self) -> str:
        if self.stdin is None:
            self.stdin = sys.stdin.read()
        path = self.folder / "stdin-requirements.txt"
        path.write_text(self.stdin, encoding="utf-8")
        return str(path)

    def editables_file(self, editables: Sequence[str]) -> str:
        path = self.folder / "editables.txt"
        path.write_text("".join(f"-e {_quote(e)}\n" for e in editables), encoding="utf-8")
        return str(path)

    def close(self) -> None:
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)


def editables_file(editables: Sequence[str], staged: Optional[Staged]) -> str:
    """The editables as a requirements file (``-e`` lines), in ``staged``'s folder or a new one."""
    holder = staged if staged is not None else Staged()
    return holder.editables_file(editables)


def run_staged(real: str, args: Sequence[str], staged: Staged) -> int:
    """The real program as a child (a staged file must outlive it), its status ours."""
    try:
        return subprocess.run([real, *args], check=False).returncode
    finally:
        staged.close()


def stage_inputs(args: Sequence[str], staged: Staged, requirement_options: Collection[str]) -> list[str]:
    """``-r -`` (standard input) becomes a file, once: a resolution and an install read it."""
    out: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        if token in requirement_options and i + 1 < len(args) and reads_stdin(args[i + 1]):
            out += [token, staged.stdin_file()]
            i += 2
            continue
        name, equals, value = token.partition("=")
        if equals and name in requirement_options and reads_stdin(value):
            out.append(f"{name}={staged.stdin_file()}")
        elif not token.startswith("--") and token[:2] in requirement_options and reads_stdin(token[2:]):
            out += [token[:2], staged.stdin_file()]
        else:
            out.append(token)
        i += 1
    return out


def _absolute(requirement: str) -> str:
    """A local path as an absolute one: the scratch file that lists it lives elsewhere."""
    return str(Path(requirement).resolve()) if os.path.exists(requirement) else requirement


def _quote(value: str) -> str:
    import shlex

    return shlex.quote(value) if re.search(r"[\s'\"\\]", value) else value


def pip_closure_family(
    real: str, general: Sequence[str], command_args: Sequence[str], family: Collection[str]
) -> list[str]:
    """The family packages ``pip install <command_args>`` would install, read from pip's own
    dry-run report (nothing is installed; installed packages are ignored so all show)."""
    with private_scratch("closure") as scratch:  # pip's report names the indexes' file URLs
        report = Path(scratch) / "report.json"
        argv = [real, *general, "install", "--dry-run", "--ignore-installed", "--quiet"]
        argv += ["--report", str(report), *command_args]  # the user's own options come last, as given
        env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
        done = subprocess.run(
            argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, check=False
        )
        try:
            data = json.loads(report.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
    if done.returncode != 0 or not isinstance(data, dict):
        raise CannotTell(_last_error(done.stderr or done.stdout))
    names = {
        _canonical(str((item.get("metadata") or {}).get("name", ""))) for item in data.get("install") or ()
    }
    return sorted(names & set(family))


# uv pip install options that also steer ``uv pip compile``'s resolution.
UV_RESOLUTION_OPTIONS = frozenset(
    {
        "--index-url",
        "--extra-index-url",
        "--index",
        "--default-index",
        "--find-links",
        "--no-index",
        "--index-strategy",
        "--keyring-provider",
        "--prerelease",
        "--pre",
        "--resolution",
        "--exclude-newer",
        "--constraints",
        "--overrides",
        "--python",
        "--python-version",
        "--python-platform",
        "--no-build-isolation",
        "--config-settings",
        "--no-sources",
        "--allow-insecure-host",
        "--offline",
        "--native-tls",
        "--no-config",
        "--config-file",
        "--cache-dir",
    }
)


def uv_closure_family(
    real: str,
    requirements: Sequence[str],
    files: Sequence[str],
    editables: Sequence[str],
    options: Sequence[tuple[str, Optional[str]]],
    python: Optional[Path],
    family: Collection[str],
    env: Optional[Mapping[str, str]] = None,
) -> list[str]:
    """The family packages ``uv pip install`` would install, from ``uv pip compile`` of the same
    requirements with the user's resolution options (output to a scratch file, nothing installed)."""
    with private_scratch("closure") as scratch:  # requirements and pins may name an index
        folder = Path(scratch)
        sources = list(files)  # requirements files, pyproject.toml, setup.cfg...: as uv reads them
        lines = [_absolute(r) for r in requirements] + [f"-e {_quote(_absolute(e))}" for e in editables]
        if lines:
            inputs = folder / "requirements.in"
            inputs.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
            sources.append(str(inputs))
        argv = [real, "pip", "compile", *sources, "--quiet", "--no-header", "--no-annotate"]
        argv += ["--output-file", str(folder / "resolved.txt")]
        if python is not None:
            argv += ["--python", str(python)]
        for name, value in options:
            if name in UV_RESOLUTION_OPTIONS and name != "--python":
                argv += [name] if value is None else [f"{name}={value}"]
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
            cwd=Path.cwd(),
            env=None if env is None else dict(env),
        )
        try:
            resolved = (folder / "resolved.txt").read_text(encoding="utf-8")
        except OSError:
            resolved = ""
    if done.returncode != 0:
        raise CannotTell(_last_error(done.stderr or done.stdout))
    names = set()
    for line in resolved.splitlines():
        match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[.*?\])?\s*(==|@)", line)
        if match:
            names.add(_canonical(match.group(1)))
    return sorted(names & set(family))


# --- a faster oracle for pip: uv, given pip's own index settings ---------------------------------

# pip settings that change where or how packages are fetched in ways this translation does not
# carry over to uv: with any of them set, the shim asks pip itself.
_PIP_SETTINGS_NOT_TRANSLATED = frozenset(
    {
        "client-cert",
        "proxy",
        "trusted-host",
        "keyring-provider",
        "no-binary",
        "only-binary",
        "prefer-binary",
        "use-deprecated",
        "use-feature",
        "isolated",
        "config-settings",
        "platform",
        "python-version",
        "implementation",
        "abi",
        "upgrade-strategy",
    }
)
_PIP_TRANSLATED = frozenset({"index-url", "extra-index-url", "find-links", "no-index", "pre"})


def _pip_config_files(env: Mapping[str, str]) -> list[Path]:
    """The files pip reads its settings from, lowest priority first (pip's documented order)."""
    from ..config import pip_config_files

    return pip_config_files(env)


def pip_settings(env: Mapping[str, str], command: str = "install") -> Optional[dict[str, str]]:
    """pip's own settings from its config files and ``PIP_*`` variables (later wins); None when
    one of them is beyond what the uv translation carries."""
    import configparser

    settings: dict[str, str] = {}
    for path in _pip_config_files(env):
        if not path.is_file():
            continue
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError):
            return None
        for section in ("global", command):
            if parser.has_section(section):
                settings.update({key.replace("_", "-"): value for key, value in parser.items(section)})
    for name, value in env.items():
        if name.startswith("PIP_") and not name.startswith("PIP_GPU_") and name != "PIP_CONFIG_FILE":
            settings[name[4:].lower().replace("_", "-")] = value
    if any(key in _PIP_SETTINGS_NOT_TRANSLATED and value.strip() for key, value in settings.items()):
        return None
    return settings


def uv_args_for_pip(
    settings: Mapping[str, str], options: Sequence[tuple[str, Optional[str]]]
) -> Optional[list[str]]:
    """The uv resolution options that mean what pip's settings and the command's options mean:
    pip's index merging is uv's ``unsafe-best-match``. None when an option is beyond them."""
    out = ["--index-strategy", "unsafe-best-match"]
    merged: dict[str, list[str]] = {}
    for key, value in settings.items():
        if key in _PIP_TRANSLATED and value.strip():
            merged[key] = value.split()
    for name, given in options:
        key = name[2:] if name.startswith("--") else name
        if key in _PIP_SETTINGS_NOT_TRANSLATED:
            return None
        if key in _PIP_TRANSLATED:
            kept = merged.get(key, []) if key in ("extra-index-url", "find-links") else []
            merged[key] = [*kept, given or "1"]
    for url in merged.get("index-url", [])[-1:]:
        out += ["--index-url", url]
    for url in merged.get("extra-index-url", []):
        out += ["--extra-index-url", url]
    for place in merged.get("find-links", []):
        out += ["--find-links", place]
    if merged.get("no-index", ["0"])[-1].lower() in ("1", "true", "yes", "on"):
        out.append("--no-index")
    if merged.get("pre", ["0"])[-1].lower() in ("1", "true", "yes", "on"):
        out += ["--prerelease", "allow"]
    return out


def pip_closure_family_via_uv(
    parsed_options: Sequence[tuple[str, Optional[str]]],
    positionals: Sequence[str],
    python: Optional[Path],
    family: Collection[str],
) -> Optional[list[str]]:
    """What ``pip install`` would bring in of the family, answered by uv (a fraction of pip's
    start-up) from pip's own settings; None when pip itself must be asked."""
    settings = pip_settings(os.environ)
    if settings is None:
        return None
    steering = [(n, v) for n, v in parsed_options if n not in ("--requirement", "--constraint", "--editable")]
    uv_args = uv_args_for_pip(settings, [(n, v) for n, v in steering if n[2:] in _PIP_CHECKED])
    if uv_args is None or any(n[2:] in _PIP_SETTINGS_NOT_TRANSLATED for n, _ in steering):
        return None
    uv = _bundled_uv()
    if uv is None:
        return None
    options: list[tuple[str, Optional[str]]] = []
    i = 0
    while i < len(uv_args):
        takes_value = uv_args[i] != "--no-index"
        options.append((uv_args[i], uv_args[i + 1] if takes_value else None))
        i += 2 if takes_value else 1
    options += [("--constraints", v) for n, v in parsed_options if n == "--constraint" and v]
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_") or k in _UV_KEPT}
    env["UV_NO_CONFIG"] = "1"  # pip's settings, not uv's
    if settings.get("cert"):  # pip's CA bundle; uv reads the standard variable
        env["SSL_CERT_FILE"] = settings["cert"]
    files = [v for n, v in parsed_options if n == "--requirement" and v]
    editables = [v for n, v in parsed_options if n == "--editable" and v]
    try:
        return uv_closure_family(uv, positionals, files, editables, options, python, family, env)
    except CannotTell:
        return None  # pip may read what uv could not: ask pip


def _bundled_uv() -> Optional[str]:
    """The uv installed with pip-gpu: beside this interpreter (where a venv's scripts are),
    else where the ``uv`` package finds it (its search loads ``sysconfig``: tens of ms)."""
    beside = Path(sys.executable).parent / ("uv.exe" if sys.platform == "win32" else "uv")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return None


_PIP_CHECKED = _PIP_TRANSLATED | _PIP_SETTINGS_NOT_TRANSLATED
_UV_KEPT = frozenset({"UV_CACHE_DIR", "UV_PYTHON_DOWNLOADS", "UV_NO_PROGRESS", "UV_OFFLINE", "UV_NATIVE_TLS"})
