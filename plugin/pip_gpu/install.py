"""``pip-gpu install``: detect -> decide -> route -> run the real installer -> verify.

The installer's own output reaches the user unchanged and its exit status becomes ours.
Nothing is installed when no build runs (exit 2), and after installing we read back what
landed and fail loudly if it is not the build we decided on.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

from packaging.utils import canonicalize_name

from .errors import EXIT_OK, InstallerFailed, NoBuildRuns, PipGpuError, UsageError
from .plan import Plan, decide_for, rewrite_pins, routing_only_pins
from .requirements import RewritePin, parse_requirement_args, redact_url
from .route import (
    InstallerCommand,
    Routing,
    pip_family_command,
    pip_hashed_command,
    pip_rest_command,
    uses_hashes,
    uv_command,
)
from .target import TargetEnv, find_target, installed_family_in, installed_torch_build

__all__ = ["add_install_parser", "run_install"]

# pip/uv options that take a value, passed through to the installer unchanged.
_VALUE_OPTIONS = (
    ("-i", "--index-url"),
    ("--extra-index-url",),
    ("-f", "--find-links"),
    ("--trusted-host",),
    ("--upgrade-strategy",),
    ("--no-binary",),
    ("--only-binary",),
    ("--config-settings",),
    ("--cache-dir",),
    ("--progress-bar",),
)
_FLAG_OPTIONS = (
    ("-U", "--upgrade"),
    ("--force-reinstall",),
    ("--no-deps",),
    ("--pre",),
    ("--no-cache-dir",),
    ("--no-index",),
    ("--prefer-binary",),
    ("--require-hashes",),
    ("--no-build-isolation",),
    ("--break-system-packages",),
    ("-q", "--quiet"),
    ("-v", "--verbose"),
)


def add_install_parser(
    commands: Any, add_host_flags: Callable[..., None], add_decision_flags: Callable[..., None]
) -> None:
    parser = commands.add_parser(
        "install",
        help="install the torch build that runs here, with real pip or uv",
        description=(
            "Install requirements into the target environment with pip or uv, routing torch, "
            "torchvision, torchaudio and the rest of the family to the index of the build that "
            "runs on this host (or the host described by the flags). Everything else comes from "
            "your usual indexes. Exit status 2, with nothing installed, when no build runs."
        ),
        epilog=(
            "Other installer options are passed through; give options this command does not list "
            "as --opt=value. Target environment: --python, else $VIRTUAL_ENV, else ./.venv, else "
            "the interpreter running pip-gpu."
        ),
    )
    parser.add_argument("requirements", nargs="*", metavar="REQUIREMENT")
    parser.add_argument(
        "-r", "--requirement", action="append", default=[], metavar="FILE", help="requirements file"
    )
    parser.add_argument(
        "-c", "--constraint", action="append", default=[], metavar="FILE", help="constraints file"
    )
    parser.add_argument(
        "--installer", choices=("pip", "uv"), help="default: uv when the target has no pip, else pip"
    )
    parser.add_argument("--python", metavar="PYTHON", help="target interpreter or virtual environment")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the decision and the commands; install nothing"
    )
    parser.add_argument("--json", action="store_true", help="with --dry-run: print the plan as JSON")
    parser.add_argument(  # issue 4: lock write-back
        "--no-lock", action="store_true", help="do not re-resolve the pylock.<variant>.toml files here"
    )
    passthrough = parser.add_argument_group("passed to the installer")
    for names in _VALUE_OPTIONS:
        passthrough.add_argument(*names, dest=f"pt_{names[-1]}", action="append", metavar="VALUE")
    for names in _FLAG_OPTIONS:
        passthrough.add_argument(*names, dest=f"pt_{names[-1]}", action="count")
    add_host_flags(parser)
    add_decision_flags(parser)
    parser.set_defaults(handler=run_install)


def _passthrough(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    for names in _VALUE_OPTIONS:
        for value in getattr(args, f"pt_{names[-1]}") or ():
            out += [names[-1], value]
    for names in _FLAG_OPTIONS:
        out += [names[-1]] * (getattr(args, f"pt_{names[-1]}") or 0)
    # Set by the shims: the user's own installer options, already checked, passed verbatim.
    out += getattr(args, "installer_extra", None) or []
    return out


def _uv_binary(chosen: Optional[str] = None) -> str:
    if chosen:  # the very uv a shim was asked to run
        return chosen
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        raise UsageError("the uv binary is not installed", "pip install uv, or use --installer pip") from None


def choose_installer(requested: Optional[str], configured: Optional[str], target: TargetEnv) -> str:
    choice = requested or configured or ("pip" if target.has_pip else "uv")
    if choice == "pip" and not target.has_pip:
        raise UsageError(f"{target.python} has no pip", "use --installer uv, or install pip into it")
    return choice


def run_install(args: argparse.Namespace) -> int:
    from .cli import host_from_args

    cwd = Path.cwd()
    target = find_target(args.python, cwd, os.environ)
    if args.python_version is None:
        args.python_version = target.python_version
    host = host_from_args(args)
    from .config import load_project_config
    from .resolution import context_for_install

    installer = choose_installer(args.installer, load_project_config(cwd).installer, target)
    plan = decide_for(
        args.requirements,
        args.requirement,
        host,
        variant=args.variant,
        force=args.force,
        pytorch_index=args.pytorch_index,
        cwd=cwd,
        constraint_files=args.constraint,
        context=context_for_install(
            target.python, target.site_packages, installer, _passthrough(args), os.environ, cwd, args.dry_run
        ),
    )
    decision = plan.decision
    if not decision.ok:
        assert decision.blocker is not None
        raise NoBuildRuns(decision.blocker.message, decision.blocker.hint)
    if not args.dry_run and not getattr(args, "no_lock", False):
        from .lockfile import find_lock_family

        find_lock_family(cwd)  # a broken lock here is refused now, not after installing
    say = _stderr
    say(f"pip-gpu: target {target.python} (Python {target.python_version}, from {target.chosen_by})")
    where = redact_url(decision.index_url) if decision.index_url else "PyPI"
    if any(not line.constraint for line in plan.family_lines()):
        say(
            f"pip-gpu: torch {decision.torch} -> {decision.variant} from {where}; installing with {installer}"
        )
    else:
        say(
            f"pip-gpu: torch-family packages, if needed, come from {where} ({decision.variant}); "
            f"installing with {installer}"
        )
    for note in decision.notes:
        say(f"pip-gpu: note: {note}")

    with tempfile.TemporaryDirectory(prefix="pip-gpu-") as scratch:
        workdir = Path(scratch)
        commands = _first_commands(
            plan, target, installer, _passthrough(args), workdir, uv=getattr(args, "uv_binary", None)
        )
        if args.dry_run:
            second_run = _needs_second_pip_run(plan, installer, _passthrough(args))
            if args.json:
                print(
                    json.dumps(_dry_run_json(plan, host, target, installer, commands, second_run), indent=2)
                )
                return EXIT_OK
            for command in commands:
                _show(command)
            if second_run:
                say("pip-gpu: then pip run 2 of 2 installs the other requirements, the family held in place")
            return EXIT_OK
        for command in commands:
            _run(command)
        if _needs_second_pip_run(plan, installer, _passthrough(args)):
            _pip_second_run(plan, target, _passthrough(args), workdir)
    _verify(plan, target)
    # issue 4: inside a folder with a pip-gpu lock family, the new requirements join the locks.
    if not args.dry_run and not getattr(args, "no_lock", False):
        from .lock import write_back_after_install

        write_back_after_install(args, plan, host, cwd)
    return EXIT_OK


def _needs_second_pip_run(plan: Plan, installer: str, installer_args: Sequence[str]) -> bool:
    return (
        installer == "pip"
        and plan.installs_something_else()
        and not uses_hashes(plan.lines, installer_args, _global_options(plan))
    )


def _pip_second_run(plan: Plan, target: TargetEnv, installer_args: list[str], workdir: Path) -> None:
    """Everything else, after making sure it pulls no family package from another index.

    A dry run shows what pip would install; a family member among it (a library that
    depends on torchvision, say) is installed from the variant index first.
    """

    routing = _routing(plan, target, installer_args, workdir, routing_only_pins(plan))

    def second_run() -> InstallerCommand:
        closure = family_closure(target.python, sorted(plan.family_names))
        return pip_rest_command(routing, plan.other_lines(), constraints=closure)

    # A family wheel the user gave as a direct URL or path is installed as written, not pulled in.
    written = {line.name for line in plan.other_lines() if line.is_direct_url}
    pulled_in = [name for name in _family_in_dry_run(second_run(), plan, workdir) if name not in written]
    if pulled_in:
        _stderr(
            f"pip-gpu: {', '.join(pulled_in)} pulled in by other requirements: "
            "installing from the variant index"
        )
        _run(pip_family_command(routing, parse_requirement_args(pulled_in)))
    _run(second_run())


def _family_in_dry_run(command: InstallerCommand, plan: Plan, workdir: Path) -> list[str]:
    report = workdir / "dry-run-report.json"
    quiet = [a for a in command.argv if a not in ("-v", "--verbose")]
    dry = InstallerCommand(
        argv=(*quiet, "--dry-run", "--quiet", "--report", str(report)),
        purpose="pip: checking what the other requirements pull in",
        env=command.env,
        files=command.files,
    )
    _run(dry)
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    names = {canonicalize_name(item["metadata"]["name"]) for item in data.get("install", [])}
    return sorted(names & plan.family_names)


def _global_options(plan: Plan) -> list[tuple[str, ...]]:
    return [opt for f in plan.files for opt in f.global_options]


def _first_commands(
    plan: Plan,
    target: TargetEnv,
    installer: str,
    installer_args: Sequence[str],
    workdir: Path,
    *,
    uv: Optional[str] = None,
) -> list[InstallerCommand]:
    routing = _routing(plan, target, installer_args, workdir, rewrite_pins(plan))
    lines = list(plan.lines)
    if installer == "uv":
        return [uv_command(routing, lines, uv=_uv_binary(uv))]
    if uses_hashes(lines, installer_args, _global_options(plan)):
        return [pip_hashed_command(routing, lines)]
    family = plan.family_lines()
    if not any(not line.constraint for line in family):
        return []  # nothing of the family asked for directly; the second run checks the rest
    return [pip_family_command(routing, family)]


def _routing(
    plan: Plan, target: TargetEnv, installer_args: Sequence[str], workdir: Path, pins: dict[str, RewritePin]
) -> Routing:
    return Routing(
        python=target.python,
        variant_index=plan.decision.index_url,
        global_options=_global_options(plan),
        pins=pins,
        installer_args=installer_args,
        workdir=workdir,
    )


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _dry_run_json(
    plan: Plan,
    host: Any,
    target: TargetEnv,
    installer: str,
    commands: Sequence[InstallerCommand],
    second_pip_run: bool,
) -> dict[str, Any]:
    """``install --dry-run --json``: the decision and the exact commands, credentials removed."""
    from .report import decision_json

    return {
        "decision": decision_json(plan.decision, host),
        "target": {
            "python": str(target.python),
            "python_version": target.python_version,
            "chosen_by": target.chosen_by,
        },
        "installer": installer,
        "commands": [
            {
                "purpose": command.purpose,
                "argv": [redact_url(a) for a in command.argv],
                "env": {name: redact_url(value) for name, value in command.env.items()},
                "files": {path.name: redact_url(content) for path, content in command.files.items()},
            }
            for command in commands
        ],
        "second_pip_run": second_pip_run,
    }


def _show(command: InstallerCommand) -> None:
    print(f"# {command.purpose}")
    prefix: list[str] = []
    if command.env:  # one command a person can paste: env -u NAME NAME=value ... argv
        prefix = ["env"]
        prefix += [f"-u {name}" for name, value in command.env.items() if not value]
        prefix += [f"{name}={shlex.quote(redact_url(value))}" for name, value in command.env.items() if value]
    print(" ".join([*prefix, *(shlex.quote(redact_url(a)) for a in command.argv)]))
    for path, content in command.files.items():
        print(f"# {path.name}:")
        for line in content.splitlines():
            print(f"#   {redact_url(line)}")


def _environment(changes: Mapping[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    for name, value in changes.items():
        if value:
            env[name] = value
        else:
            env.pop(name, None)
    return env


def _run(command: InstallerCommand) -> None:
    """Run the installer in the foreground; Ctrl-C reaches it, and we wait for it to stop."""
    for path, content in command.files.items():
        path.write_text(content, encoding="utf-8")
    try:
        process = subprocess.Popen(list(command.argv), env=_environment(command.env))
    except OSError as exc:
        raise UsageError(f"cannot run {command.argv[0]}: {exc}") from None
    try:
        status = process.wait()
    except KeyboardInterrupt:
        # Ctrl-C in a terminal reaches the whole foreground group, but a SIGINT sent to
        # pip-gpu alone must reach the installer too. Give it time to clean up, then make
        # sure it is gone.
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
        raise
    if status != 0:
        if status < 0 and -status == signal.SIGINT:
            raise KeyboardInterrupt
        raise InstallerFailed(f"{command.purpose}: the installer exited with status {status}", status)


_CLOSURE_PROBE_STDLIB = r"""
import json, re, sys, importlib.metadata as md
def canon(n): return re.sub(r"[-_.]+", "-", n).lower()
roots = json.loads(sys.argv[1])
seen, out, todo = set(), [], list(roots)
while todo:
    name = canon(todo.pop())
    if name in seen: continue
    seen.add(name)
    try: dist = md.distribution(name)
    except md.PackageNotFoundError: continue
    out.append(f"{canon(dist.metadata['Name'])}=={dist.version}")
    for req in dist.requires or ():
        spec = req.split(";")[0]
        if ";" in req and "extra" in req.split(";", 1)[1]: continue
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
        if m: todo.append(m.group(1))
print(json.dumps(sorted(out)))
"""


def family_closure(python: Path, roots: Sequence[str]) -> list[str]:
    """``name==version`` for the installed family and everything it depends on, in the target."""
    done = subprocess.run(
        [str(python), "-I", "-c", _CLOSURE_PROBE_STDLIB, json.dumps(list(roots))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    try:
        result: list[str] = json.loads(done.stdout)
    except ValueError:
        raise PipGpuError(
            f"could not read the installed packages of {python}: {done.stderr.strip()}"
        ) from None
    return result


def _verify(plan: Plan, target: TargetEnv) -> None:
    """Read back what landed and compare it with the decision."""
    decision = plan.decision
    installed = (
        installed_family_in(target.site_packages)
        if target.site_packages
        else installed_torch_build(target.python)
    )
    problems = []
    for name in ("torch", "torchvision", "torchaudio"):
        info = installed.get(name)
        if info is None or not info.get("version"):
            continue
        version = info["version"] or ""
        label = version.partition("+")[2] or None
        expected = None if decision.variant == "default" else decision.variant
        if label != expected:
            problems.append(f"{name} {version} landed, but {decision.variant} was decided")
    if problems:
        raise InstallerFailed("; ".join(problems) + " (another requirement or index overrode the routing)", 1)
    torch_info = installed.get("torch")
    if torch_info:
        cuda = torch_info.get("cuda")
        detail = (
            f"CUDA {cuda}"
            if cuda
            else ("ROCm " + str(torch_info.get("hip")) if torch_info.get("hip") else "CPU")
        )
        _stderr(
            f"pip-gpu: verified: torch {torch_info['version']} ({detail}) is installed in {target.prefix}"
        )
