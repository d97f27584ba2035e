"""The house rules that import-linter cannot state (README, "Layout").

import-linter (``nox -s lint``) checks the layers and that no import circle exists; these
check what it cannot see: names, not modules. Imports inside functions count as well.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "plugin" / "pip_gpu"

# Only the command line and the shim entry point read a command line with argparse.
ENTRY_POINTS = ("pip_gpu.cli", "pip_gpu.shim")


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, ast.parse(path.read_text(encoding="utf-8"), str(path))


def _imports(module: str, tree: ast.Module) -> Iterator[tuple[str, str, int]]:
    """(imported module, imported name or "", line) for every import, at any depth."""
    is_package = (PACKAGE.parent / module.replace(".", "/") / "__init__.py").exists()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, "", node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                yield source, alias.name, node.lineno


MODULES = dict(_modules())


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_takes_another_modules_private_names(module: str) -> None:
    borrowed = [
        f"{module}:{line} imports {name} from {source}"
        for source, name, line in _imports(module, MODULES[module])
        if source.startswith("pip_gpu")
        and name.startswith("_")
        and not name.startswith("__")
        and source != module
    ]
    assert not borrowed


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.startswith(ENTRY_POINTS)))
def test_only_the_entry_points_read_argv_with_argparse(module: str) -> None:
    users = [
        f"{module}:{line}" for source, _, line in _imports(module, MODULES[module]) if source == "argparse"
    ]
    assert not users, "argparse belongs to cli/ and shim/: steps take typed options"
