"""uv projects: ``pip-gpu uv setup`` writes uv's own PyTorch configuration; the shim picks the extra.

uv does not apply ``--torch-backend`` to projects or ``uv.lock``. Its documented answer
(docs.astral.sh/uv/guides/integration/pytorch, "Configuring accelerators with optional
dependencies") is one explicit index per variant, ``[tool.uv.sources]`` mapping the torch
family to those indexes by extra, one extra per variant, and ``[tool.uv] conflicts`` between
the extras; ``uv lock`` then records every variant. ``setup`` writes exactly that (plus the
variant list in ``[tool.pip-gpu]``, so every pip-gpu decision in the project stays among
them), and with the shims ``uv sync`` / ``uv run`` add ``--extra <variant>`` for this host.

``pyproject.toml`` is edited with tomlkit, which keeps the user's formatting and comments.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from .errors import EXIT_OK, UsageError

if TYPE_CHECKING:
    from .shim_run import Parsed

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = ["add_uv_parser", "project_variants", "uv_project_command"]

INDEX_PREFIX = "pytorch-"


def project_variants(data: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{variant: its extra's requirements}`` for the variants set up in a pyproject table.

    A variant counts when an explicit ``pytorch-<variant>`` index and an extra of that name
    exist, whoever wrote them.
    """
    uv = data.get("tool", {}).get("uv", {})
    extras = data.get("project", {}).get("optional-dependencies", {})
    found: dict[str, list[str]] = {}
    for index in uv.get("index", []):
        name = str(index.get("name", ""))
        variant = name[len(INDEX_PREFIX) :]
        if name.startswith(INDEX_PREFIX) and index.get("explicit") and variant in extras:
            found[variant] = [str(r) for r in extras[variant]]
    return found


# --- the shim side -----------------------------------------------------------------------------


def _project_file(parsed: Parsed) -> Optional[Path]:
    from .config import find_pyproject

    start = (parsed.values("--project") or parsed.values("--directory") or [os.getcwd()])[-1]
    return find_pyproject(Path(start).absolute())


def uv_project_command(real: str, args: list[str], at: int, parsed: Parsed) -> Optional[Callable[[], int]]:
    """For ``uv run`` / ``uv sync`` (``args[at]``) in a set-up project: the same, plus ``--extra``."""
    from .shim_run import (
        _exec,
        _names_family,
        ephemeral_needs_family,
        script_dependencies,
        uv_with_variant_index,
    )

    if args[at] == "run":
        script = next((p for p in parsed.positionals[:1] if p.endswith(".py")), None)
        named = [r for value in parsed.values("--with") for r in value.split(",")]
        named += script_dependencies(Path(script)) if script else []
        with_files = parsed.values("--with-requirements")
        if _names_family(named, with_files, ()) or ephemeral_needs_family(real, named, with_files):
            return uv_with_variant_index(real, args, at + 1, parsed, named)
    if parsed.has("--no-project", "--no-sync", "--script", "--all-extras", "--help", "-h"):
        return None
    path = _project_file(parsed)
    if path is None:
        return None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # uv reports a broken pyproject.toml in its own words
    variants = project_variants(data)
    if not variants or set(parsed.values("--extra")) & set(variants):
        return None  # not set up, or the user chose the variant
    variant = host_variant(variants, path.parent)
    from .uv_guard import check_lock_offers

    check_lock_offers(path.parent, variant, frozen=parsed.has("--frozen"))
    if not parsed.has("-q", "--quiet"):
        print(
            f"pip-gpu: this host runs the {variant} build: uv {args[at]} --extra {variant}", file=sys.stderr
        )
    new_args = [*args[: at + 1], "--extra", variant, *args[at + 1 :]]
    return lambda: _exec(real, new_args)


def host_variant(variants: Mapping[str, Sequence[str]], project: Path) -> str:
    """The variant among the project's that this host runs, decided as everywhere else."""
    from .cli import host_from_args
    from .errors import NoBuildRuns
    from .plan import decide_for

    family = _family_requirements(next(iter(variants.values())))
    host = host_from_args(_no_host_flags())
    plan = decide_for(family or ["torch"], [], host, cwd=project)
    decision = plan.decision
    if not decision.ok:
        from .uv_guard import variant_outside_project

        variant_outside_project(plan, host, project, list(variants))
        assert decision.blocker is not None
        raise NoBuildRuns(decision.blocker.message, decision.blocker.hint)
    assert decision.variant is not None
    if decision.variant not in variants:
        from .uv_guard import missing_variant_error

        raise missing_variant_error(project, decision.variant, list(variants))
    return decision.variant


def _no_host_flags() -> argparse.Namespace:
    return argparse.Namespace(
        driver=None,
        compute_capability=None,
        no_gpu=False,
        platform=None,
        arch=None,
        python_version=None,
    )


def _family_requirements(requirements: Sequence[str]) -> list[str]:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    from .knowledge import load_knowledge

    family = {canonicalize_name(m.name) for m in load_knowledge().family}
    out = []
    for text in requirements:
        try:
            if canonicalize_name(Requirement(text).name) in family:
                out.append(text)
        except InvalidRequirement:
            continue
    return out


# --- pip-gpu uv setup --------------------------------------------------------------------------


def cmd_uv_setup(args: argparse.Namespace) -> int:
    """``uv setup``; a pyproject.toml whose tables have another shape is one error line."""
    from packaging.requirements import InvalidRequirement

    try:
        return _uv_setup(args)
    except (AttributeError, TypeError, KeyError) as exc:
        raise UsageError(
            f"pyproject.toml: a [project] or [tool.uv] value does not have the shape pip-gpu expects ({exc})",
            "check [project] dependencies/optional-dependencies and [tool.uv] conflicts/sources/index "
            "(index is an array of tables: [[tool.uv.index]])",
        ) from None
    except InvalidRequirement as exc:
        raise UsageError(f"pyproject.toml: invalid requirement: {exc}", "fix it, then run again") from None


def _uv_setup(args: argparse.Namespace) -> int:
    import tomlkit
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from .cli import host_from_args
    from .decide import variant_index_url
    from .knowledge import load_knowledge
    from .plan import decide_for
    from .redact import strip_credentials

    folder = Path(args.project or os.getcwd()).absolute()
    path = folder / "pyproject.toml"
    if not path.is_file():
        raise UsageError(
            f"no pyproject.toml in {folder}", "create the project first (uv init), or pass --project"
        )
    try:
        document = tomlkit.parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomlkit.exceptions.TOMLKitError) as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}", "fix the file, then run again") from None
    knowledge = load_knowledge()
    family_names = {canonicalize_name(m.name) for m in knowledge.family}
    project = document.setdefault("project", tomlkit.table())
    new_extras = "optional-dependencies" not in project
    extras = project.setdefault("optional-dependencies", tomlkit.table())
    before = project_variants(document.unwrap())
    tool = document.setdefault("tool", tomlkit.table(is_super_table=True))
    managed = set(before) | set(tool.get("pip-gpu", {}).get("variants", []))

    requirements = list(args.requirements)
    dependencies = project.get("dependencies")
    if dependencies is not None:
        # The family moves into the variant extras: left in the plain dependencies it would
        # come from PyPI whatever the extra.
        moved = [str(d) for d in dependencies if canonicalize_name(Requirement(str(d)).name) in family_names]
        for item in moved:
            dependencies.remove(item)
        if moved and not len(dependencies):
            project["dependencies"] = tomlkit.array()
        requirements = requirements or moved
    requirements = requirements or (next(iter(before.values())) if before else ["torch"])
    for text in requirements:
        if canonicalize_name(Requirement(text).name) not in family_names:
            raise UsageError(f"{text} is not a torch-family project", "name torch, torchvision, ...")

    host = host_from_args(args)
    plan = decide_for(requirements, [], host, pytorch_index=args.pytorch_index, cwd=folder)
    if args.variants:
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    else:
        if not plan.decision.ok:
            raise UsageError("no build runs on this host; name the variants", "--variants cu124,cpu")
        variants = list(dict.fromkeys([str(plan.decision.variant), "cpu"]))
    known = set(knowledge.variants())
    unknown = [v for v in variants if v not in known]
    if unknown:
        raise UsageError(f"unknown variant(s) {', '.join(unknown)}", f"known: {', '.join(sorted(known))}")

    for variant in managed - set(variants):
        extras.pop(variant, None)
    for variant in variants:
        extras[variant] = _multiline(tomlkit, requirements)

    uv = tool.setdefault("uv", tomlkit.table())
    conflicts = uv.setdefault("conflicts", tomlkit.array())
    old_groups = [
        group
        for group in conflicts
        if all(isinstance(item, Mapping) and item.get("extra") in managed | set(variants) for item in group)
    ]
    for group in old_groups:
        conflicts.remove(group)
    if len(variants) > 1:  # uv rejects a conflict set of one extra
        conflicts.append(_inline_array(tomlkit, [{"extra": v} for v in variants]))
    if conflicts:
        conflicts.multiline(True)
    else:
        del uv["conflicts"]

    new_sources = "sources" not in uv
    sources = uv.setdefault("sources", tomlkit.table())
    for name in sorted({canonicalize_name(Requirement(t).name) for t in requirements}):
        sources[name] = _inline_array(tomlkit, [{"index": INDEX_PREFIX + v, "extra": v} for v in variants])
        sources[name].multiline(True)

    indexes = uv.setdefault("index", tomlkit.aot())
    for position in reversed(range(len(indexes))):
        index_name = str(indexes[position].get("name", ""))
        if index_name.startswith(INDEX_PREFIX) and index_name[len(INDEX_PREFIX) :] in managed:
            del indexes[position]
    for variant in variants:
        entry = tomlkit.table()
        entry["name"] = INDEX_PREFIX + variant
        # credentials stay in the user's configuration (netrc, UV_INDEX_*), never in the project
        url = variant_index_url(plan.pytorch_index, variant)
        entry["url"] = strip_credentials(url) if url else url
        entry["explicit"] = True
        entry.add(tomlkit.nl())
        indexes.append(entry)

    settings = tool.setdefault("pip-gpu", tomlkit.table())
    settings["variants"] = variants
    # New tables end with a blank line, as people write them.
    for table, new in ((extras, new_extras), (sources, new_sources)):
        if new:
            table.add(tomlkit.nl())
    path.write_text(tomlkit.dumps(document), encoding="utf-8")
    print(f"pip-gpu: {path}: extras {', '.join(variants)} for {', '.join(requirements)}")
    print(
        "pip-gpu: next: uv lock (records every variant); with the shims, uv sync / uv run pick this "
        f"host's; without them: uv sync --extra {variants[0]}"
    )
    return EXIT_OK


def _inline_array(tomlkit: Any, items: Sequence[Mapping[str, str]]) -> Any:
    array = tomlkit.array()
    for item in items:
        table = tomlkit.inline_table()
        table.update(item)
        array.append(table)
    return array


def _multiline(tomlkit: Any, items: Sequence[str]) -> Any:
    array = tomlkit.array()
    array.extend(items)
    return array


def add_uv_parser(commands: Any, add_host_flags: Callable[..., None]) -> None:
    parser = commands.add_parser(
        "uv",
        help="uv projects: write uv's PyTorch configuration into pyproject.toml",
        description="Work with uv projects.",
    )
    actions = parser.add_subparsers(dest="uv_command", metavar="ACTION", required=True)
    setup = actions.add_parser(
        "setup",
        help="one explicit index, extra and source per variant, with conflicts (uv's PyTorch guide)",
        description=(
            "Write into pyproject.toml, preserving its formatting, what uv documents for PyTorch: an "
            "explicit index pytorch-<variant> per variant, [tool.uv.sources] for the torch family by "
            "extra, one extra per variant and the conflicts between them. `uv lock` then records "
            "every variant; `uv sync --extra <variant>` installs one, and with pip-gpu's shims "
            "`uv sync` / `uv run` pick this host's."
        ),
    )
    setup.add_argument(
        "requirements",
        nargs="*",
        metavar="REQUIREMENT",
        help="torch-family requirements for the extras (default: those in project.dependencies, "
        "which move into the extras, else torch)",
    )
    setup.add_argument("--variants", metavar="V1,V2", help="variants to offer (default: this host's and cpu)")
    setup.add_argument("--project", metavar="DIR", help="project folder (default: the current one)")
    add_host_flags(setup)
    group = setup.add_argument_group("index")
    group.add_argument(
        "--pytorch-index",
        metavar="URL",
        help="base of the PyTorch indexes; each variant's is URL/<variant> [PIP_GPU_PYTORCH_INDEX]",
    )
    setup.set_defaults(handler=cmd_uv_setup)
