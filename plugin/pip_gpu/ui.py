"""How pip-gpu talks to a person: quiet or verbose, colour, progress on long work.

Set once by the command line (``-q``, ``-v``), read by every command. Progress and colour
are for a person at a terminal: both are off when the stream is piped, progress with ``-q``,
colour with ``NO_COLOR`` (https://no-color.org).
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, Optional, TextIO

__all__ = [
    "JSON_SCHEMA_VERSION",
    "Settings",
    "colour",
    "configure",
    "print_sync_dry_run",
    "printable",
    "progress",
    "settings",
    "shorten",
    "some_of",
    "versioned",
    "wants_colour",
]

# Progress appears only for work that takes longer than this (seconds); tests set it to 0.
_PROGRESS_AFTER_S = 1.0


class Settings(NamedTuple):  # a NamedTuple: a dataclass costs every command its creation
    quiet: int = 0
    verbose: int = 0


_settings = Settings()


def configure(quiet: int = 0, verbose: int = 0) -> None:
    global _settings
    _settings = Settings(quiet=quiet, verbose=verbose)


def settings() -> Settings:
    return _settings


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def wants_colour(stream: TextIO, env: Mapping[str, str] = os.environ) -> bool:
    """Colour only on a terminal, never with ``NO_COLOR`` set (to anything) or ``TERM=dumb``."""
    if "NO_COLOR" in env or env.get("TERM") == "dumb":
        return False
    return _is_tty(stream)


_CODES = {"red": "31", "green": "32", "yellow": "33", "bold": "1", "dim": "2"}


def colour(text: str, name: str, stream: Optional[TextIO] = None) -> str:
    """``text`` in colour ``name`` when ``stream`` (default stdout) is a terminal that wants it."""
    if not text or not wants_colour(stream or sys.stdout):
        return text
    return f"\033[{_CODES[name]}m{text}\033[0m"


# C0 and C1 control characters, DEL, and the bidirectional overrides and isolates: text from
# outside (a node name, a label, a file name, a requirement) that holds them could clear the
# screen, move the cursor, or print a line that is not there ("cu124  OK").
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` from outside pip-gpu, safe for a terminal: control characters escaped (``\\x1b``).

    ``keep_newlines``: line breaks stay (a message of several lines pip-gpu itself wrote).
    """
    if not _CONTROL.search(text):
        return text

    def escaped(match: re.Match[str]) -> str:
        char = match.group()
        if keep_newlines and char == "\n":
            return char
        return char.encode("unicode_escape").decode("ascii")

    return _CONTROL.sub(escaped, text)


def some_of(problems: Sequence[str], shown: int = 3) -> str:
    """The first ``shown`` problems for one error line, and how many more there are."""
    more = len(problems) - shown
    return "; ".join(problems[:shown]) + (f"; and {more} more" if more > 0 else "")


def shorten(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters for a message, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 3]}... ({len(text):,} characters)"


def _progress_after() -> float:
    try:
        return float(os.environ.get("PIP_GPU_PROGRESS_AFTER", _PROGRESS_AFTER_S))
    except ValueError:
        return _PROGRESS_AFTER_S


@contextmanager
def progress(what: str) -> Iterator[None]:
    """Say ``what`` is under way if it lasts longer than a second, and when it ends.

    On a terminal (stderr) only, and never with ``-q``; ``-v`` shows it when piped too, as
    plain lines. Work that ends quickly prints nothing.
    """
    stream = sys.stderr
    shown = _settings.quiet == 0 and (_is_tty(stream) or _settings.verbose > 0)
    if not shown:
        yield
        return
    started = time.monotonic()
    announced = threading.Event()
    finished = threading.Event()
    lock = threading.Lock()

    def announce() -> None:
        if finished.wait(_progress_after()):
            return
        with lock:
            if not finished.is_set():
                _write(stream, f"pip-gpu: {what} ...")
                announced.set()

    watcher = threading.Thread(target=announce, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        with lock:
            finished.set()
        watcher.join()
        if announced.is_set():
            _write(stream, f"pip-gpu: {what}: done in {time.monotonic() - started:.1f} s")


def _write(stream: TextIO, line: str) -> None:
    try:
        stream.write(colour(line, "dim", stream) + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass  # a closed stderr must not stop the work


# The version of every JSON document pip-gpu prints (detect, explain, install --dry-run, check,
# doctor, fleet plan, lock, sync): raised when a key changes meaning or goes away, not when one
# is added. README "JSON output" describes them.
JSON_SCHEMA_VERSION = 1


def versioned(document: Mapping[str, Any]) -> dict[str, Any]:
    """A command's JSON answer with ``schema_version`` first."""
    return {"schema_version": JSON_SCHEMA_VERSION, **document}


def emit_json(data: Any) -> None:
    """A command's ``--json`` answer on stdout."""
    import json

    print(json.dumps(data, indent=2, sort_keys=False))


def headline(text: str, ok: bool) -> str:
    """The first line (a verdict) in green or red on a terminal that wants colour."""
    first, newline, rest = text.partition("\n")
    return colour(first, "green" if ok else "red") + newline + rest


def print_sync_dry_run(prefix: Path, lock_file: Path, changes: Sequence[str]) -> None:
    """``sync --dry-run``'s answer, for a lock family or a wheel-variant lock."""
    where = f"{prefix} to {lock_file.name}"
    if not changes:
        print(f"pip-gpu sync --dry-run: nothing to change: {where} already match")
    else:
        print(f"pip-gpu sync --dry-run: syncing {where} would change:")
        for change in changes:
            print(f"  - {change}")
