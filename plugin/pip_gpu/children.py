"""The installers and resolvers pip-gpu starts: no secret in their argv, every signal passed on.

* A ``user:password@`` in an index URL would show in ``ps`` and ``/proc/PID/cmdline`` for
  every user of the machine. :func:`private_command` takes it out of the argv and hands it
  to pip and uv through a private netrc file (``NETRC``, mode 0600, removed afterwards),
  which both read for index authentication.
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

if TYPE_CHECKING:
    import subprocess

__all__ = [
    "Terminated",
    "exit_status_for",
    "forward_termination",
    "private_command",
    "signal_of",
    "start",
    "stop_all",
]

STOP_GRACE_S = 10.0  # how long a child may take to clean up after the signal


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


# --- credentials out of argv -----------------------------------------------------------------

_URL_WITH_USERINFO_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#]*@[^\s'\"<>]*")
# netrc tokens end at white space, and a quote or "#" may start quoting or a comment: such a
# password cannot be written there, and stays where the user put it.
_NETRC_UNSAFE = re.compile(r"[\s\"]|(?:^|\s)#")


@contextlib.contextmanager
def private_command(
    argv: Sequence[str], env: Mapping[str, str]
) -> Iterator[tuple[list[str], dict[str, str]]]:
    """``argv`` without ``user:password@`` in its URLs, and ``env`` with ``NETRC`` naming a
    private file that holds those credentials, followed by the user's own netrc."""
    from .redact import split_userinfo

    entries: dict[str, tuple[str, str]] = {}

    def strip(match: re.Match[str]) -> str:
        bare, host, user, password = split_userinfo(match.group(0))
        if not host or not (user or password) or any(_NETRC_UNSAFE.search(t) for t in (user, password)):
            return match.group(0)  # netrc cannot carry it; left as given
        entries[host] = (user, password)
        return bare

    cleaned = [_URL_WITH_USERINFO_RE.sub(strip, arg) for arg in argv]
    if not entries:
        yield list(argv), dict(env)
        return
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="pip-gpu-auth-")  # mode 0700
    try:
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
        yield cleaned, {**env, "NETRC": str(netrc)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
