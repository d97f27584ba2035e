"""``pip-gpu doctor``: why ``torch.cuda.is_available()`` is False, and the command that fixes it.

:func:`doctor` is the step: gather the facts (:mod:`.facts`), run the pure checks over them
(:mod:`.checks`) and return the :class:`~.checks.Report`; :mod:`.render` writes it as text or
JSON. torch is imported only when asked (``run_import``), and then in a subprocess with a
deadline.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from ..host import HostFlags
from .checks import Report, diagnose
from .facts import (
    DEFAULT_IMPORT_TIMEOUT_S,
    Facts,
    compiled_archs_of,
    gather_lock,
    gather_machine,
    gather_target,
    import_torch,
)

__all__ = ["DEFAULT_IMPORT_TIMEOUT_S", "DoctorOptions", "doctor"]


@dataclass(frozen=True)
class DoctorOptions:
    """What ``pip-gpu doctor`` looks at, and how far it goes."""

    host: HostFlags = field(default_factory=HostFlags)  # facts given instead of detected
    python: Optional[str] = None  # --python: the target interpreter or venv, as given
    system: bool = False  # --system: the python3 on PATH
    run_import: bool = False  # --import: finally import torch in the target
    import_timeout_s: float = DEFAULT_IMPORT_TIMEOUT_S
    verify_files: bool = False  # --verify-files: every installed file's sha256 against its RECORD
    cwd: Optional[Path] = None  # where the lock family is looked for; None: the current directory
    env: Optional[Mapping[str, str]] = None  # the environment the machine is read from; None: os.environ


def doctor(options: DoctorOptions) -> Report:
    """Gather every fact about the target and the machine, and check the chain over them."""
    from ..detect import host_for
    from ..detect.target import find_target
    from ..knowledge import load_knowledge

    cwd = Path.cwd() if options.cwd is None else options.cwd
    env = os.environ if options.env is None else options.env
    target = find_target(options.python, cwd, env, system=options.system)
    flags = options.host
    if flags.python_version is None:  # the host's Python is the target's
        flags = replace(flags, python_version=target.python_version)
    host = host_for(flags, env)
    knowledge = load_knowledge()
    # The lock comparison runs its own probe of the target: side by side with the import view
    # (each is a child process reading thousands of RECORD rows), it costs no extra wall time.
    with ThreadPoolExecutor(max_workers=1) as pool:
        lock = pool.submit(gather_lock, cwd, target, host, verify_files=options.verify_files)
        target_facts = gather_target(
            target, [m.name for m in knowledge.family], env=options.env, verify_files=options.verify_files
        )
        torch = target_facts.torch
        compiled = compiled_archs_of(torch)
        lock_facts = lock.result()
    facts = Facts(
        host=host,
        knowledge=knowledge,
        machine=gather_machine(env),
        target=target_facts,
        python_flag=options.python,
        host_argv=options.host.as_argv(),
        cwd=cwd,
        compiled_archs=compiled,
        lock=lock_facts,
        torch_import=import_torch(target.python, options.import_timeout_s)
        if options.run_import and torch is not None
        else None,
    )
    return diagnose(facts, run_import=options.run_import)
