"""A project's ``[tool.pip-gpu]`` table and the settings that come from the environment."""

from __future__ import annotations

import os
import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple, Optional

from .errors import UsageError

__all__ = [
    "ProjectConfig",
    "UserIndexes",
    "check_channel",
    "find_pyproject",
    "load_project_config",
    "pip_config_files",
    "pip_index_settings",
    "seconds_setting",
    "user_indexes",
]

INSTALLERS = ("pip", "uv")


class ProjectConfig(NamedTuple):
    """What ``[tool.pip-gpu]`` may set: policy for the decision and defaults for install."""

    path: Optional[Path] = None
    variants: Optional[frozenset[str]] = None  # allowed variants
    preferred_variant: Optional[str] = None
    pytorch_index: Optional[str] = None
    installer: Optional[str] = None
    targets: Optional[tuple[str, ...]] = None  # lock targets, "linux-x86_64-3.11"
    channel: Optional[str] = None  # "stable", "nightly" or "test"
    variant_index: Optional[str] = None  # PEP 825 variant wheels (issue 26)


def seconds_setting(variable: str, default: float, example: int) -> float:
    """Seconds from the environment variable ``variable`` (``default`` when unset); a value that
    is no positive finite number is refused, naming ``example`` as one that would do."""
    value = os.environ.get(variable, "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0 or seconds == float("inf"):
        raise UsageError(
            f"{variable}={value!r} is not a number of seconds",
            f"set it to a positive number such as {example}, or unset it (default {default:g})",
        )
    return seconds


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
    known = {
        "variants",
        "preferred-variant",
        "pytorch-index",
        "installer",
        "targets",
        "channel",
        "variant-index",
    }
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
    channel = table.get("channel")
    variant_index = table.get("variant-index")
    pairs = (("preferred-variant", preferred), ("pytorch-index", index), ("installer", installer))
    for key, value in (*pairs, ("channel", channel), ("variant-index", variant_index)):
        if value is not None and not isinstance(value, str):
            raise UsageError(f"{where}: {key} must be a string")
    if installer is not None and installer not in INSTALLERS:
        raise UsageError(f"{where}: installer must be one of {', '.join(INSTALLERS)}")
    if channel is not None:
        check_channel(channel, f"{where} channel")
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
        channel=channel,
        variant_index=variant_index,
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


def check_channel(channel: str, source: str) -> str:
    """``channel`` when it is one of PyTorch's channels; else one error naming ``source``."""
    from .variant import CHANNELS

    if channel not in CHANNELS:
        raise UsageError(
            f"{source}: unknown channel {channel!r}",
            f"use one of: {', '.join(CHANNELS)} (nightly and test admit pre-releases)",
        )
    return channel


def check_index_url(url: str, source: str) -> str:
    """``url`` when it is an http(s) or file URL urllib can parse; else one error naming ``source``."""
    from .redact import redact_url, userinfo_problem

    problem = userinfo_problem(url)
    if problem:
        raise UsageError(
            f"{source}: the user:password in {redact_url(url)!r} {problem}",
            "percent-encode it (a space is %20, a double quote %22), or keep the credentials in "
            "~/.netrc and give the URL without them",
        )
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


# --- where everything but the torch family comes from: one rule for every command ---------------


PYPI = "https://pypi.org/simple"
# uv's variables that name indexes (docs.astral.sh/uv/reference/environment).
UV_INDEX_VARIABLES = (
    "UV_DEFAULT_INDEX",
    "UV_INDEX_URL",
    "UV_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "UV_NO_INDEX",
)
_UV_INDEX_KEYS = ("index-url", "extra-index-url", "index", "find-links", "no-index")
_PIP_INDEX_KEYS = ("index-url", "extra-index-url", "find-links", "no-index")
# Options on an installer's command line that name the default index (they replace the
# configured one, as in pip and uv themselves).
_DEFAULT_INDEX_OPTIONS = frozenset({"-i", "--index-url", "--default-index", "--no-index"})


@dataclass(frozen=True)
class UserIndexes:
    """The indexes every package but the torch family comes from, for pip and uv alike.

    The rule (README "Installing"): uv's own index configuration when you set any (``UV_*``
    variables, ``uv.toml``, ``[tool.uv]``), else pip's (``PIP_*`` variables, ``pip.conf``),
    else PyPI; options on the command line win over either, as in both installers.
    """

    source: str  # "uv", "pip" or "default" (neither is configured: PyPI)
    origin: str  # where it was read, for notes: "PIP_INDEX_URL", ".../pip.conf", "PyPI"
    index_url: Optional[str] = None  # None: PyPI
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    # The other installer's own configuration names the same indexes: it needs no options.
    other_agrees: bool = False

    @property
    def urls(self) -> list[str]:
        """Every index and find-links place, PyPI included when it is the default."""
        default = [] if self.no_index else [self.index_url or PYPI]
        return list(dict.fromkeys([*default, *self.extra_index_urls, *self.find_links]))

    def args_for(self, installer: str, given: Sequence[str] = ()) -> list[str]:
        """Options that make ``installer`` ("pip" or "uv") read these indexes: none where it
        reads this configuration itself. ``given``: the command's own installer options, whose
        default index (``-i``, ``--default-index``, ``--no-index``) replaces this one."""
        if self.source == "default" or self.source == installer or self.other_agrees:
            return []
        own_default = any(a.split("=", 1)[0] in _DEFAULT_INDEX_OPTIONS for a in given)
        args: list[str] = []
        if installer == "uv":
            if not own_default and self.no_index:
                args.append("--no-index")
            elif not own_default and self.index_url:
                args += ["--default-index", self.index_url]
            for url in self.extra_index_urls:
                args += ["--index", url]
            for place in self.find_links:
                args += ["--find-links", place]
            if self.extra_index_urls and "--index-strategy" not in given:
                args += ["--index-strategy", "unsafe-best-match"]  # pip takes the best of all
            return args
        if not own_default and self.no_index:
            args.append("--no-index")
        elif not own_default and self.index_url:
            args += ["--index-url", self.index_url]
        for url in self.extra_index_urls:
            args += ["--extra-index-url", url]
        for place in self.find_links:
            args += ["--find-links", place]
        return args


def user_indexes(env: Mapping[str, str], cwd: Optional[Path] = None) -> UserIndexes:
    """The one rule for where packages other than the torch family come from (see
    :class:`UserIndexes`): install, lock, sync, check, the shims and ``uv setup`` all ask it."""
    settings = pip_index_settings(env)
    pip = UserIndexes(
        "pip",
        next((_pip_var(key) for key in settings if env.get(_pip_var(key))), "pip.conf"),
        index_url=next(iter(settings.get("index-url", [])), None),
        extra_index_urls=tuple(settings.get("extra-index-url", ())),
        find_links=tuple(settings.get("find-links", ())),
        no_index=bool(settings.get("no-index")),
    )
    uv = _uv_index_settings(env, cwd or Path.cwd())
    if uv is not None:
        return replace(uv, other_agrees=_same_places(uv, pip))
    if not any(settings.values()):
        return UserIndexes("default", "PyPI")
    return replace(pip, other_agrees=_same_places(pip, UserIndexes("default", "PyPI")))


def _same_places(one: UserIndexes, other: UserIndexes) -> bool:
    def places(indexes: UserIndexes) -> tuple[Any, ...]:
        default = None if indexes.no_index else (indexes.index_url or PYPI).rstrip("/")
        extras = tuple(u.rstrip("/") for u in indexes.extra_index_urls)
        return default, extras, indexes.find_links

    return places(one) == places(other)


def _pip_var(key: str) -> str:
    return "PIP_" + key.upper().replace("-", "_")


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def pip_config_files(env: Mapping[str, str]) -> list[Path]:
    """The files pip reads its settings from, lowest priority first (pip.pypa.io,
    "Configuration": global, user, site, then ``PIP_CONFIG_FILE``; ``os.devnull``: none)."""
    given = env.get("PIP_CONFIG_FILE")
    if given is not None and given in (os.devnull, ""):
        return []
    home = Path(env.get("HOME") or Path.home())
    xdg_dirs = env.get("XDG_CONFIG_DIRS", "/etc/xdg").split(os.pathsep)
    files = [Path(d) / "pip" / "pip.conf" for d in reversed(xdg_dirs)] + [Path("/etc/pip.conf")]
    user_config = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    files += [home / ".pip" / "pip.conf", user_config / "pip" / "pip.conf"]
    if env.get("VIRTUAL_ENV"):
        files.append(Path(env["VIRTUAL_ENV"]) / "pip.conf")
    if given:
        files.append(Path(given))
    return files


def pip_index_settings(env: Mapping[str, str]) -> dict[str, list[str]]:
    """pip's ``index-url``, ``extra-index-url``, ``find-links`` (and ``no-index``), from its
    files and variables: each file's ``[install]`` section over its ``[global]`` one, later
    files over earlier ones, ``PIP_*`` variables over all."""
    import configparser

    settings: dict[str, list[str]] = {}
    for path in pip_config_files(env):
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue
        for section in ("global", "install"):
            if parser.has_section(section):
                for key in _PIP_INDEX_KEYS:
                    if parser.has_option(section, key):
                        settings[key] = parser.get(section, key).split()
    for key in _PIP_INDEX_KEYS:
        value = env.get(_pip_var(key))
        if value:
            settings[key] = value.split()
    return {k: v for k, v in settings.items() if k != "no-index" or _truthy(v[-1] if v else "0")}


def _uv_config_files(env: Mapping[str, str], cwd: Path) -> list[Path]:
    """uv's configuration files, most important first (docs.astral.sh/uv/concepts/configuration-
    files): ``UV_CONFIG_FILE`` alone, or the project's (the nearest ``uv.toml`` or
    ``pyproject.toml`` upwards), the user's and the system's; none with ``UV_NO_CONFIG``."""
    if _truthy(env.get("UV_NO_CONFIG", "")):
        return []
    if env.get("UV_CONFIG_FILE"):
        return [Path(env["UV_CONFIG_FILE"])]
    files: list[Path] = []
    for folder in (cwd, *cwd.parents):
        found = [folder / n for n in ("uv.toml", "pyproject.toml") if (folder / n).is_file()]
        if found:
            files.append(found[0])
            break
    home = Path(env.get("HOME") or Path.home())
    files.append(Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "uv" / "uv.toml")
    files += [Path(d) / "uv" / "uv.toml" for d in env.get("XDG_CONFIG_DIRS", "/etc/xdg").split(os.pathsep)]
    files.append(Path("/etc/uv/uv.toml"))
    return files


def _uv_index_settings(env: Mapping[str, str], cwd: Path) -> Optional[UserIndexes]:
    """uv's own index configuration, when there is any; variables over files."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python < 3.11
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

    def entries(value: str) -> list[str]:  # UV_INDEX: "name=url url ..."
        return [
            e.partition("=")[2] if "=" in e.split("://")[0] else e for e in value.replace(",", " ").split()
        ]

    default = env.get("UV_DEFAULT_INDEX") or env.get("UV_INDEX_URL")
    extras = entries(env.get("UV_INDEX", "")) + entries(env.get("UV_EXTRA_INDEX_URL", ""))
    links = entries(env.get("UV_FIND_LINKS", ""))
    no_index = _truthy(env.get("UV_NO_INDEX", ""))
    origin = next((name for name in UV_INDEX_VARIABLES if env.get(name)), "")
    for path in _uv_config_files(env, cwd):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if path.name == "pyproject.toml":
            data = data.get("tool", {}).get("uv", {})
        if not isinstance(data, dict):
            continue
        pip_table = data.get("pip")
        tables: list[dict[str, Any]] = [data, pip_table if isinstance(pip_table, dict) else {}]
        for table in tables:
            if not any(key in table for key in _UV_INDEX_KEYS):
                continue
            indexes = [i for i in table.get("index", []) if isinstance(i, dict) and not i.get("explicit")]
            named_default = next((str(i.get("url")) for i in indexes if i.get("default")), None)
            file_default = table.get("index-url") or named_default
            file_extras = [str(u) for u in table.get("extra-index-url", [])]
            file_extras += [str(i.get("url")) for i in indexes if not i.get("default") and i.get("url")]
            if not (file_default or file_extras or table.get("find-links") or table.get("no-index")):
                continue  # only explicit indexes: they serve only the packages sourced to them
            origin = origin or str(path)
            default = default or (str(file_default) if file_default else None)
            extras += [u for u in file_extras if u not in extras]
            links += [str(u) for u in table.get("find-links", []) if str(u) not in links]
            no_index = no_index or bool(table.get("no-index"))
    if not origin:
        return None
    return UserIndexes("uv", origin, default, tuple(extras), tuple(links), no_index)
