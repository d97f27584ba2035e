"""The installers and resolvers pip-gpu starts: no secret in their argv, every signal passed on.

* A ``user:password@`` in an index URL would show in ``ps`` and ``/proc/PID/cmdline`` for
  every user of the machine. :func:`private_command` takes it out of the argv and hands it
  to pip and uv through a private netrc file (``NETRC``, mode 0600, removed afterwards),
  which both read for index authentication. Such files live in a folder only the user can
  enter, and the next run removes what a killed run left there (:mod:`pip_gpu.private`).
* SIGTERM and SIGHUP, like SIGINT, must reach every running child (``lock`` runs several uv
  resolvers at once) and pip-gpu must wait for them before it exits 128 + the signal.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Optional

from .errors import EXIT_CHECK_FAILED, PipGpuError

if TYPE_CHECKING:
    import subprocess

__all__ = [
    "ChildTimedOut",
    "Terminated",
    "child_timeout",
    "exit_status_for",
    "forward_termination",
    "private_command",
    "signal_of",
    "start",
    "stop_all",
    "wait_within",
]

STOP_GRACE_S = 10.0  # how long a child may take to clean up after the signal
# Every child ends within this many seconds or is stopped, and the error names it: a target
# interpreter that hangs in uv's interpreter query must not hold pip-gpu forever. An hour
# lets a slow link download the largest torch wheel; PIP_GPU_CHILD_TIMEOUT changes it.
CHILD_TIMEOUT_VARIABLE = "PIP_GPU_CHILD_TIMEOUT"
DEFAULT_CHILD_TIMEOUT_S = 3600.0


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived; handled where Ctrl-C is, with its own exit status."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def signal_of(interrupt: BaseException) -> int:
    """The signal behind a KeyboardInterrupt (SIGINT) or :class:`Terminated`."""
    return int(getattr(interrupt, "signum", signal.SIGINT))


def exit_status_for(interrupt: BaseException) -> int:
    """128 + the signal, as a shell reports a process the signal ended."""
    return 128 + signal_of(interrupt)


def _raise_terminated(signum: int, frame: Optional[FrameType]) -> None:
    raise Terminated(signum)


def forward_termination() -> None:
    """Turn SIGTERM and SIGHUP into :class:`Terminated` in the main thread, as SIGINT is
    turned into KeyboardInterrupt, so that the code that stops children runs for them too."""
    if threading.current_thread() is not threading.main_thread():
        return
    for name in ("SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) is signal.SIG_DFL:
            signal.signal(number, _raise_terminated)


_running: set[subprocess.Popen[Any]] = set()
_running_lock = threading.Lock()
_stopping: list[int] = []  # the signal that stops everything, once it came


def start(argv: Sequence[str], **options: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen``, remembered until it ends so that :func:`stop_all` reaches it."""
    import subprocess

    with _running_lock:
        if _stopping:
            raise Terminated(_stopping[0]) if _stopping[0] != signal.SIGINT else KeyboardInterrupt()
        process: subprocess.Popen[Any] = subprocess.Popen(list(argv), **options)
        _running.add(process)
    return process


def finished(process: subprocess.Popen[Any]) -> None:
    with _running_lock:
        _running.discard(process)


def stop_all(signum: int) -> None:
    """Pass ``signum`` to every running child, wait for each (then SIGKILL), start no more."""
    import subprocess

    with _running_lock:
        _stopping.append(signum)
        children = list(_running)
    for process in children:
        if process.poll() is None:
            with contextlib.suppress(OSError):
                process.send_signal(signum)
    for process in children:
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                process.kill()
            process.wait()
        finished(process)


# --- deadlines ------------------------------------------------------------------------------


class ChildTimedOut(PipGpuError):
    """A child ran past its deadline and was stopped."""

    exit_code = EXIT_CHECK_FAILED


def child_timeout() -> float:
    """Seconds a child may run: ``PIP_GPU_CHILD_TIMEOUT``, else an hour."""
    from .config import seconds_setting  # here: every command loads this module, detect too

    return seconds_setting(CHILD_TIMEOUT_VARIABLE, DEFAULT_CHILD_TIMEOUT_S, example=7200)


def wait_within(
    process: subprocess.Popen[Any], what: str, *, timeout: Optional[float] = None, capture: bool = False
) -> tuple[int, Any, Any]:
    """Wait for ``process`` (``capture``: reading its output), at most ``timeout`` seconds
    (:func:`child_timeout`); past it, stop it as :func:`stop_all` does (SIGTERM, then SIGKILL)
    and raise :class:`ChildTimedOut` naming ``what``. Returns (status, stdout, stderr)."""
    import subprocess

    seconds = child_timeout() if timeout is None else timeout
    try:
        if capture:
            stdout, stderr = process.communicate(timeout=seconds)
            return process.returncode, stdout, stderr
        return process.wait(timeout=seconds), None, None
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(OSError):
        process.terminate()
    try:
        process.communicate(timeout=STOP_GRACE_S) if capture else process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            process.kill()
        process.communicate() if capture else process.wait()
    program = process.args[0] if isinstance(process.args, list) else process.args
    raise ChildTimedOut(
        f"{what}: {os.path.basename(str(program))} did not finish within {seconds:g} s and was stopped",
        f"find what it waits on (an interpreter that hangs when queried, a stalled download), or "
        f"allow it more with {CHILD_TIMEOUT_VARIABLE}=<seconds>",
    )


# --- credentials out of argv -----------------------------------------------------------------

_URL_WITH_USERINFO_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#]*@[^\s'\"<>]*")
# netrc tokens end at white space, and a quote or "#" may start quoting or a comment: such a
# password cannot be written there, and stays where the user put it.
_NETRC_UNSAFE = re.compile(r"[\s\"]|(?:^|\s)#")


# Index options whose values pip and uv also read from the environment, which only the same
# user can read (/proc/PID/environ is private; /proc/PID/cmdline is not): where a password
# cannot go into netrc, the whole option moves there. Value: (variable, separator of several).
_OPTION_VARIABLES: dict[str, dict[str, tuple[str, str]]] = {
    "pip": {
        "-i": ("PIP_INDEX_URL", " "),
        "--index-url": ("PIP_INDEX_URL", " "),
        "--extra-index-url": ("PIP_EXTRA_INDEX_URL", " "),
        "-f": ("PIP_FIND_LINKS", " "),
        "--find-links": ("PIP_FIND_LINKS", " "),
    },
    "uv": {
        "-i": ("UV_INDEX_URL", " "),
        "--index-url": ("UV_INDEX_URL", " "),
        "--extra-index-url": ("UV_EXTRA_INDEX_URL", " "),
        "--index": ("UV_INDEX", " "),
        "--default-index": ("UV_DEFAULT_INDEX", " "),
        "-f": ("UV_FIND_LINKS", ","),
        "--find-links": ("UV_FIND_LINKS", ","),
    },
}


def _installer_of(argv: Sequence[str]) -> Optional[str]:
    """``pip`` for ``python -m pip ...``, ``uv`` for ``uv ...``; None for anything else."""
    if len(argv) > 2 and argv[1] == "-m" and argv[2] == "pip":
        return "pip"
    if argv and os.path.basename(argv[0]).split(".")[0] == "uv":
        return "uv"
    return None


def _has_userinfo(text: str) -> bool:
    from urllib.parse import urlsplit

    # a URL, "name @ URL" (a direct reference) or "name=URL" (uv's --index)
    for url in (text, text.partition(" @ ")[2], text.partition("=")[2]):
        try:
            if "://" in url and "@" in urlsplit(url.strip()).netloc:
                return True
        except ValueError:
            continue
    return False


_PIP_ADDS_TO_ITS_VARIABLE = frozenset({"PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS"})


def _options_to_environment(
    argv: list[str], installer: str, folder: Path, inherited: Mapping[str, str]
) -> tuple[list[str], dict[str, str]]:
    """Move every index option that still carries credentials into its environment variable,
    and ``name @ url`` requirements with credentials into a private requirements file."""
    table = _OPTION_VARIABLES[installer]
    values: dict[str, list[str]] = {}
    kept: list[str] = []
    moving = {
        table[arg.split("=", 1)[0]][0]
        for i, arg in enumerate(argv)
        if arg.split("=", 1)[0] in table
        and _has_userinfo(arg.split("=", 1)[1] if "=" in arg and arg.startswith("--") else _next(argv, i))
    }
    direct: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in table and table[name][0] in moving:
            value = inline if eq else _next(argv, i)
            values.setdefault(table[name][0], []).append(_encoded(value))
            i += 1 if eq else 2
            continue
        if i > 2 and " @ " in arg and not arg.startswith("-") and _has_userinfo(arg):
            direct.append(_encoded(arg))
        else:
            kept.append(arg)
        i += 1
    separators = {variable: sep for variable, sep in table.values()}
    env = {variable: separators[variable].join(found) for variable, found in values.items()}
    for variable in _PIP_ADDS_TO_ITS_VARIABLE & env.keys():
        # pip appends command-line values to the variable's; uv and single values replace it
        env[variable] = " ".join(filter(None, (inherited.get(variable, "").strip(), env[variable])))
    if direct:
        requirements = folder / "requirements.txt"
        descriptor = os.open(requirements, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write("".join(line + "\n" for line in direct))
        kept += ["-r", str(requirements)]
    return kept, env


def _encoded(text: str) -> str:
    """``text`` with the user and password of its URL percent-encoded: a literal space or
    quote would end the value in a space-separated variable or a requirements line."""
    from urllib.parse import quote, unquote, urlsplit, urlunsplit

    for prefix_end in (text.find(" @ ") + 3 if " @ " in text else -1, text.find("=") + 1, 0):
        if prefix_end < 0:
            continue
        url = text[prefix_end:]
        try:
            parts = urlsplit(url)
        except ValueError:
            continue
        if "://" not in url or "@" not in parts.netloc:
            continue
        userinfo, _, host = parts.netloc.rpartition("@")
        user, colon, password = userinfo.partition(":")
        netloc = quote(unquote(user), safe="") + colon + quote(unquote(password), safe="") + "@" + host
        return text[:prefix_end] + urlunsplit(parts._replace(netloc=netloc))
    return text


def _next(argv: Sequence[str], i: int) -> str:
    return argv[i + 1] if i + 1 < len(argv) else ""


@contextlib.contextmanager
def private_command(
    argv: Sequence[str], env: Mapping[str, str]
) -> Iterator[tuple[list[str], dict[str, str]]]:
    """``argv`` without ``user:password@`` in its URLs, and ``env`` with ``NETRC`` naming a
    private file that holds those credentials, followed by the user's own netrc.

    A password netrc cannot hold (white space, a quote) goes with its whole option into the
    installer's environment variable (``PIP_INDEX_URL``, ``UV_INDEX``, ...), and a direct
    reference carrying one into a private requirements file.
    """
    from .redact import split_userinfo

    entries: dict[str, tuple[str, str]] = {}

    def strip(match: re.Match[str]) -> str:
        bare, host, user, password = split_userinfo(match.group(0))
        if not host or not (user or password) or any(_NETRC_UNSAFE.search(t) for t in (user, password)):
            return match.group(0)  # netrc cannot carry it: moved below, or left as given
        entries[host] = (user, password)
        return bare

    cleaned = [_URL_WITH_USERINFO_RE.sub(strip, arg) for arg in argv]
    installer = _installer_of(cleaned)
    unsafe_left = installer is not None and any(_has_userinfo(arg) for arg in cleaned[1:])
    if not entries and not unsafe_left:
        yield list(argv), dict(env)
        return
    import shutil

    from .private import private_folder

    folder = private_folder()
    try:
        child_env = dict(env)
        if unsafe_left and installer is not None:
            cleaned, moved = _options_to_environment(cleaned, installer, Path(folder), env)
            child_env.update(moved)
        if entries:
            netrc = Path(folder) / "netrc"
            # Ours first: the user's own file keeps working, its "default" entry stays last.
            text = "".join(
                f"machine {host} login {user or 'pip-gpu'} password {password}\n"
                for host, (user, password) in entries.items()
            )
            with contextlib.suppress(OSError, UnicodeDecodeError):
                text += Path(env.get("NETRC") or os.path.expanduser("~/.netrc")).read_text(encoding="utf-8")
            descriptor = os.open(netrc, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
                stream.write(text)
            child_env["NETRC"] = str(netrc)
        yield cleaned, child_env
    finally:
        shutil.rmtree(folder, ignore_errors=True)
