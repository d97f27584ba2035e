"""``pip-gpu install``: detect -> decide -> route -> run the real installer -> verify.

The installer's own output reaches the user unchanged and its exit status becomes ours.
Nothing is installed when no build runs (exit 2), and after installing we read back what
landed and fail loudly if it is not the build we decided on.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
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
from .target import TargetEnv, add_target_flags, find_target, installed_family_in, installed_torch_build

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
            "refused (exit 2); --system for the python3 on PATH."
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
    add_target_flags(parser)
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
    if not args.requirements and not args.requirement:
        raise UsageError(
            "nothing to install: no requirements given",
            "name them (pip-gpu install torch torchvision) or give a file (-r requirements.txt)",
        )
    if args.json and not args.dry_run:
        raise UsageError("--json prints the plan of a dry run", "add --dry-run, or drop --json")
    target = find_target(args.python, cwd, os.environ, system=getattr(args, "system", False), installing=True)
    if args.python_version is None:
        args.python_version = target.python_version
    host = host_from_args(args)
    plan = decide_for(
        args.requirements,
        args.requirement,
        host,
        variant=args.variant,
        force=args.force,
        pytorch_index=args.pytorch_index,
        cwd=cwd,
        constraint_files=args.constraint,
    )
    decision = plan.decision
    if not decision.ok:
        assert decision.blocker is not None
        raise NoBuildRuns(decision.blocker.message, decision.blocker.hint)
    installer = choose_installer(args.installer, plan.config.installer, target)
    if not args.dry_run and not getattr(args, "no_lock", False):
        from .lockfile import find_lock_family

        find_lock_family(cwd)  # a broken lock here is refused now, not after installing
    from . import ui

    say = _stderr if not ui.settings().quiet else _silent
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
        installer_args = _passthrough(args)
        commands = _first_commands(
            plan, target, installer, installer_args, workdir, uv=getattr(args, "uv_binary", None)
        )
        second_run = _needs_second_pip_run(plan, installer, installer_args)
        commands = _numbered(commands, total=len(commands) + int(second_run))
        if args.dry_run:
            runs = [_DryRun(command) for command in commands]
            if second_run:
                runs.append(_second_run_preview(plan, target, installer_args, workdir, len(commands) + 1))
            if args.json:
                data = _dry_run_json(plan, host, target, installer, runs, workdir)
                print(json.dumps(data, indent=2))
                return EXIT_OK
            print(_dry_run_script(runs, target, workdir, decision_line=_decision_line(plan, installer)))
            return EXIT_OK
        for command in commands:
            _run(command)
        if second_run:
            _pip_second_run(plan, target, installer_args, workdir, len(commands) + 1)
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


def _pip_second_run(
    plan: Plan, target: TargetEnv, installer_args: list[str], workdir: Path, number: int
) -> None:
    """Everything else, after making sure it pulls no family package from another index.

    A dry run shows what pip would install; a family member among it (a library that
    depends on torchvision, say) is installed from the variant index first.
    """

    routing = _routing(plan, target, installer_args, workdir, routing_only_pins(plan))

    def second_run() -> InstallerCommand:
        closure = family_closure(target.python, sorted(plan.family_names))
        command = pip_rest_command(routing, plan.other_lines(), constraints=closure)
        return _numbered([command], total=number, first=number)[0]

    pulled_in = _family_in_dry_run(second_run(), plan, workdir)
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


def _silent(message: str) -> None:
    """-q: pip-gpu's notes are left out; errors and the installer's output are not."""


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class _DryRun:
    """One installer run as a dry run shows it; ``computed``: a file that only exists once the
    runs before have installed (its name, the command that writes it, and what it holds)."""

    command: InstallerCommand
    computed: Optional[tuple[str, tuple[str, ...], str]] = None
    before: str = ""


_RUN_OF = re.compile(r",? run \d+ of \d+")


def _numbered(commands: Sequence[InstallerCommand], total: int, first: int = 1) -> list[InstallerCommand]:
    """ "run N of M" in each purpose only when there is more than one run."""
    out = []
    for number, command in enumerate(commands, start=first):
        purpose = _RUN_OF.sub("", command.purpose)
        if total > 1:
            installer, _, rest = purpose.partition(": ")
            purpose = f"{installer}, run {number} of {total}: {rest}"
        out.append(replace(command, purpose=purpose))
    return out


def _second_run_preview(
    plan: Plan, target: TargetEnv, installer_args: list[str], workdir: Path, number: int
) -> _DryRun:
    """pip's second run as it will be: its constraints are read from the environment once
    the first run has installed the family, by the very probe pip-gpu runs then."""
    routing = _routing(plan, target, installer_args, workdir, routing_only_pins(plan))
    command = _numbered([pip_rest_command(routing, plan.other_lines(), constraints=[])], number, number)[0]
    held = next(path for path in command.files if path.name == "held-family.txt")
    probe = (
        str(target.python),
        "-I",
        "-c",
        _CLOSURE_PROBE_LINES,
        json.dumps(sorted(plan.family_names)),
    )
    return _DryRun(
        command=replace(command, files={p: c for p, c in command.files.items() if p != held}),
        computed=(held.name, probe, "the installed torch family and all it depends on, as name==version"),
        before=(
            "pip-gpu first runs this command with --dry-run --report; any torch-family package the "
            "other requirements pull in is installed from the variant index before it"
        ),
    )


def _decision_line(plan: Plan, installer: str) -> str:
    decision = plan.decision
    where = redact_url(decision.index_url) if decision.index_url else "PyPI"
    return f"torch {decision.torch} -> {decision.variant} from {where}, with {installer}"


def _in_dir(text: str, workdir: Path) -> str:
    """A path in the temporary folder as ``$d/name``: the script makes its own folder."""
    return text.replace(str(workdir), "$d")


def _dry_run_json(
    plan: Plan,
    host: Any,
    target: TargetEnv,
    installer: str,
    runs: Sequence[_DryRun],
    workdir: Path,
) -> dict[str, Any]:
    """``install --dry-run --json``: the decision and every installer run in order, each with
    the content of the files it reads; ``$d`` in ``argv`` is a new empty folder holding them."""
    from .report import decision_json

    commands = []
    for run in runs:
        command = run.command
        entry: dict[str, Any] = {
            "purpose": command.purpose,
            "argv": [_in_dir(redact_url(a), workdir) for a in command.argv],
            "env": {name: redact_url(value) for name, value in command.env.items()},
            "files": {path.name: redact_url(content) for path, content in command.files.items()},
        }
        if run.computed is not None:
            name, argv, what = run.computed
            entry["computed_files"] = {name: {"argv": list(argv), "content": what}}
        if run.before:
            entry["before"] = run.before
        commands.append(entry)
    return {
        "decision": decision_json(plan.decision, host),
        "target": {
            "python": str(target.python),
            "python_version": target.python_version,
            "chosen_by": target.chosen_by,
        },
        "installer": installer,
        "dir": "$d: a new empty folder for the files each command reads",
        "commands": commands,
        "second_pip_run": any(run.computed is not None for run in runs),
    }


def _dry_run_script(runs: Sequence[_DryRun], target: TargetEnv, workdir: Path, decision_line: str) -> str:
    """Every run in order as one shell script that can be pasted: the files written inline."""
    count = len(runs)
    lines = [
        f"# pip-gpu install --dry-run: {decision_line}; {count} installer run{'s' if count != 1 else ''}",
        "d=$(mktemp -d)  # the files the runs read",
    ]
    for run in runs:
        command = run.command
        lines.append(f"# {command.purpose}")
        if run.before:
            lines.append(f"# {run.before}")
        if run.computed is not None:
            name, argv, what = run.computed
            lines.append(f"# {name}: {what}")
            lines.append(" ".join(shlex.quote(a) for a in argv) + f' > "$d/{name}"')
        for path, content in command.files.items():
            lines.append(f"cat > \"$d/{path.name}\" <<'PIP_GPU_EOF'")
            lines.extend(redact_url(line) for line in content.splitlines())
            lines.append("PIP_GPU_EOF")
        prefix: list[str] = []
        if command.env:  # one command a person can paste: env -u NAME NAME=value ... argv
            prefix = ["env"]
            prefix += [f"-u {name}" for name, value in command.env.items() if not value]
            prefix += [
                f"{name}={shlex.quote(redact_url(value))}" for name, value in command.env.items() if value
            ]
        lines.append(" ".join([*prefix, *(_shell_word(redact_url(a), workdir) for a in command.argv)]))
    return "\n".join(lines)


def _shell_word(argument: str, workdir: Path) -> str:
    if argument.startswith(str(workdir)):
        return '"$d' + argument[len(str(workdir)) :] + '"'
    return shlex.quote(argument)


def _environment(changes: Mapping[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    for name, value in changes.items():
        if value:
            env[name] = value
        else:
            env.pop(name, None)
    return env


def _run(command: InstallerCommand) -> None:
    """Run the installer in the foreground; Ctrl-C, SIGTERM and SIGHUP reach it, and we wait
    for it to stop. Credentials in its URLs go to a private netrc file, not its argv."""
    from .children import finished, private_command, signal_of, start

    for path, content in command.files.items():
        path.write_text(content, encoding="utf-8")
    with private_command(command.argv, _environment(command.env)) as (argv, env):
        try:
            process = start(argv, env=env)
        except OSError as exc:
            raise UsageError(f"cannot run {command.argv[0]}: {exc}") from None
        try:
            status = process.wait()
        except KeyboardInterrupt as interrupt:
            # Ctrl-C in a terminal reaches the whole foreground group, but a signal sent to
            # pip-gpu alone must reach the installer too. Give it time to clean up, then make
            # sure it is gone.
            if process.poll() is None:
                process.send_signal(signal_of(interrupt))
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                process.wait()
            raise
        finally:
            finished(process)
    if status != 0:
        if status < 0 and -status in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", -1)):
            from .children import Terminated

            raise KeyboardInterrupt if -status == signal.SIGINT else Terminated(-status)
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


# The same walk, one ``name==version`` a line: what a dry run shows for pip's second run.
_CLOSURE_PROBE_LINES = _CLOSURE_PROBE_STDLIB.replace(
    "print(json.dumps(sorted(out)))", 'print("\\n".join(sorted(out)))'
)


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
        left = ", ".join(
            f"{name} {installed[name]['version']}"
            for name in ("torch", "torchvision", "torchaudio")
            if installed.get(name) and installed[name].get("version")
        )
        error = InstallerFailed(
            "; ".join(problems) + f" (another requirement or index overrode the routing); left installed "
            f"in {target.prefix}: {left}",
            1,
        )
        error.hint = (
            "that build does not match this host's decision: uninstall it, then install again with "
            "an exact pin (torch==X.Y.Z) or check the --pytorch-index mirror"
        )
        raise error
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
