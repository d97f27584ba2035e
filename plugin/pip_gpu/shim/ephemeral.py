"""uv's throwaway environments through the shim: ``uvx``, ``uv tool run|install``,
``uv run --with`` and PEP 723 scripts (and ``uv pip compile|sync``, which uv resolves itself).

No environment exists before uv makes one, so there is nothing for ``pip-gpu install`` to
install into; the routing joins uv's own command instead. It must route only the torch
family: the real variant indexes also serve old copies of numpy, pillow, jinja2..., which
must come from the user's own indexes. uv's recipe for that (an ``explicit`` index with
``[tool.uv.sources]``) exists only in projects and PEP 723 blocks, not on these command
lines (``uv.toml`` refuses ``sources``; ``uv run`` refuses a ``pyproject.toml`` as
``--with-requirements``). So the shim hands uv an index that serves nothing but the family:
a local PEP 503 index (``file://``) whose pages are the variant index's pages of the family
names, each file still downloaded from the variant index. Named first with ``first-index``,
it answers for every family name (an empty page where the variant index has none, so no
other index can supply it: the torchtriton attack), and every other name falls through to
the user's indexes.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

from ..installers import exec_replacing
from .options import Action, Parsed, Refused, family_names, names_family

__all__ = [
    "ephemeral_needs_family",
    "ephemeral_run",
    "script_dependencies",
    "tool_run",
    "uv_with_variant_index",
]


def tool_run(real: str, args: list[str], start: int, parsed: Parsed) -> Action:
    """``uvx`` / ``uv tool run|install`` (options from ``args[start]``, parsed as ``parsed``)."""
    named = [*parsed.values("--with", "--from"), *parsed.positionals[:1]]
    requirements = [r for value in named for r in value.split(",")]
    if not names_family(
        requirements, parsed.values("--with-requirements"), ()
    ) and not ephemeral_needs_family(real, requirements, parsed.values("--with-requirements")):
        return None
    return uv_with_variant_index(real, args, start, parsed, requirements)


def ephemeral_run(real: str, args: list[str], at: int, parsed: Parsed) -> Action:
    """``uv run`` (``args[at]``) with ``--with`` requirements or a PEP 723 script that need the family."""
    script = next((p for p in parsed.positionals[:1] if p.endswith(".py")), None)
    named = [r for value in parsed.values("--with") for r in value.split(",")]
    named += script_dependencies(Path(script)) if script else []
    with_files = parsed.values("--with-requirements")
    if names_family(named, with_files, ()) or ephemeral_needs_family(real, named, with_files):
        return uv_with_variant_index(real, args, at + 1, parsed, named)
    return None


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

    The family's pages of the decided variant index join uv's own command as the first named
    index (:func:`family_index`); everything else comes from the user's indexes.
    """
    if parsed.has("--index-strategy"):
        raise Refused("`--index-strategy` with the torch family would undo pip-gpu's routing")
    from ..decide.plan import decide_for
    from ..detect import host_for

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
    decision.chosen()  # NoBuildRuns, with the reason, when no build runs here
    if decision.index_url is None:  # macOS: PyPI's own wheels are the build
        return lambda: exec_replacing(real, args)
    if not parsed.has("-q", "--quiet"):
        from ..requirements import redact_url

        print(f"pip-gpu: the torch family comes from {redact_url(decision.index_url)}", file=sys.stderr)
    index = family_index(decision.index_url)
    routing = ["--index", f"pytorch={index.as_uri()}", "--index-strategy", "first-index"]
    new_args = [*args[:insert_at], *routing, *args[insert_at:]]
    return lambda: exec_replacing(real, new_args)


def family_index(variant_index: str) -> Path:
    """A local simple index with the variant index's pages of every torch-family name
    (see :mod:`pip_gpu.decide.family_index`)."""
    from ..decide.family_index import family_index as build

    return build([variant_index], family_names())


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


def ephemeral_needs_family(real: str, requirements: Sequence[str], files: Sequence[str]) -> bool:
    """Whether uv's throwaway environment (``uv run --with``, ``uvx``, ``uv tool``) of these
    requirements brings in a torch-family package, by ``uv pip compile`` of the same."""
    if not (requirements or files):
        return False
    from .closure import CannotTell, uv_closure_family

    try:
        found = uv_closure_family(real, requirements, files, (), (), None, family_names())
    except CannotTell as why:
        raise Refused(f"cannot tell whether these requirements bring in the torch family ({why})") from None
    return bool(found)
