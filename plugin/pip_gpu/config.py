"""A project's ``[tool.pip-gpu]`` table and the settings that come from the environment."""

from __future__ import annotations

import sys
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple, Optional

from .errors import UsageError

__all__ = ["ProjectConfig", "find_pyproject", "load_project_config"]

INSTALLERS = ("pip", "uv")


class ProjectConfig(NamedTuple):
    """What ``[tool.pip-gpu]`` may set: policy for the decision and defaults for install."""

    path: Optional[Path] = None
    variants: Optional[frozenset[str]] = None  # allowed variants
    preferred_variant: Optional[str] = None
    pytorch_index: Optional[str] = None
    installer: Optional[str] = None
    targets: Optional[tuple[str, ...]] = None  # lock targets, "linux-x86_64-3.11"


def find_pyproject(start: Path) -> Optional[Path]:
    """The nearest ``pyproject.toml`` from ``start`` upwards, as tools like uv look for it."""
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_project_config(start: Path) -> ProjectConfig:
    path = find_pyproject(start)
    if path is None:
        return ProjectConfig()
    # Imported here: most decisions run where no pyproject.toml is (about 3 ms).
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python < 3.11
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}", "fix the file, or run from elsewhere") from None
    tool = data.get("tool", {})
    if not isinstance(tool, dict):  # `tool = 1`: every tool's settings are lost, pip-gpu's too
        raise UsageError(
            f"{path}: tool must be a table, not {type(tool).__name__}",
            "write tool settings as [tool.NAME] sections, or remove the key",
        )
    table = tool.get("pip-gpu")
    if table is None:
        return ProjectConfig(path=path)
    if not isinstance(table, dict):
        raise UsageError(
            f"{path}: tool.pip-gpu must be a table, not {type(table).__name__}",
            "write it as a [tool.pip-gpu] section, or remove it",
        )
    return _config_from_table(path, table)


def _config_from_table(path: Path, table: Mapping[str, Any]) -> ProjectConfig:
    where = f"{path} [tool.pip-gpu]"
    known = {"variants", "preferred-variant", "pytorch-index", "installer", "targets"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise UsageError(
            f"{where}: unknown key(s) {', '.join(unknown)}", f"known keys: {', '.join(sorted(known))}"
        )
    variants = table.get("variants")
    if variants is not None and not (
        isinstance(variants, list) and all(isinstance(v, str) for v in variants)
    ):
        raise UsageError(f'{where}: variants must be a list of strings, e.g. ["cu124", "cpu"]')
    for name in [
        *(variants or ()),
        *([preferred] if isinstance(preferred := table.get("preferred-variant"), str) else []),
    ]:
        _check_variant_name(name, where)
    preferred = table.get("preferred-variant")
    index = table.get("pytorch-index")
    installer = table.get("installer")
    for key, value in (("preferred-variant", preferred), ("pytorch-index", index), ("installer", installer)):
        if value is not None and not isinstance(value, str):
            raise UsageError(f"{where}: {key} must be a string")
    if installer is not None and installer not in INSTALLERS:
        raise UsageError(f"{where}: installer must be one of {', '.join(INSTALLERS)}")
    targets = table.get("targets")
    if targets is not None:
        from .lockfile import LockTarget

        if not (isinstance(targets, list) and all(isinstance(t, str) for t in targets)):
            raise UsageError(f'{where}: targets must be a list of strings, e.g. ["linux-x86_64-3.11"]')
        for text in targets:
            LockTarget.parse(text, f"{where} targets")
    return ProjectConfig(
        path=path,
        variants=frozenset(variants) if variants is not None else None,
        preferred_variant=preferred,
        pytorch_index=index,
        installer=installer,
        targets=tuple(targets) if targets is not None else None,
    )


def _check_variant_name(name: str, where: str) -> None:
    """A name shaped like a variant (``cu124``, ``rocm6.2``, ``cpu``); whether a release is built
    so is the decision's to say, since the index may know newer ones than the knowledge file."""
    from .variant import Variant

    try:
        Variant(name)
    except UsageError:
        raise UsageError(
            f"{where}: {name!r} is not a PyTorch build variant",
            "name variants as the PyTorch indexes do: cu130, cu126, rocm6.4, xpu, cpu",
        ) from None


def check_index_url(url: str, source: str) -> str:
    """``url`` when it is an http(s) or file URL urllib can parse; else one error naming ``source``."""
    from .redact import redact_url

    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise UsageError(
            f"{source}: {redact_url(url)!r} is not a valid URL ({exc})",
            "give the base of the PyTorch indexes, e.g. https://download.pytorch.org/whl",
        ) from None
    if parts.scheme not in ("http", "https", "file") or not (parts.netloc or parts.scheme == "file"):
        raise UsageError(
            f"{source}: {redact_url(url)!r} is not an http(s) URL",
            "give the base of the PyTorch indexes, e.g. https://download.pytorch.org/whl",
        )
    return url
