"""``check``'s comparison of an environment with a lock, over constructed values."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from packaging.markers import Marker
from packaging.version import Version

from pip_gpu.lock.sync import Installed, differences

ENV = {"python_version": "3.12", "sys_platform": "linux", "platform_machine": "x86_64"}


def _lock(*packages: tuple[str, str, str]) -> Any:
    entries = [
        SimpleNamespace(name=name, version=Version(version), marker=Marker(marker) if marker else None)
        for name, version, marker in packages
    ]
    return SimpleNamespace(path=Path("pylock.cu130.toml"), pylock=SimpleNamespace(packages=entries))


def test_a_seed_package_the_lock_lists_is_compared_like_any_other() -> None:
    """Real torch requires setuptools on Python >= 3.12: a venv's own setuptools is that one."""
    lock = _lock(("torch", "2.14.1+cu130", ""), ("setuptools", "84.2.1", "python_version >= '3.12'"))
    synced = Installed(markers=ENV, dists={"torch": "2.14.1+cu130", "setuptools": "84.2.1", "pip": "26.1"})
    assert differences(lock, synced) == []
    missing = Installed(markers=ENV, dists={"torch": "2.14.1+cu130", "pip": "26.1"})
    assert differences(lock, missing) == [
        "setuptools 84.2.1 is not installed; the lock for this machine (pylock.cu130.toml) wants it"
    ]


def test_seed_packages_the_lock_does_not_list_are_no_difference() -> None:
    lock = _lock(("torch", "2.14.1+cu130", ""))
    venv = Installed(markers=ENV, dists={"torch": "2.14.1+cu130", "pip": "26.1", "setuptools": "80.0"})
    assert differences(lock, venv) == []
    extra = Installed(
        markers={**ENV, "python_version": "3.11"}, dists={"torch": "2.14.1+cu130", "numpy": "2.3.0"}
    )
    assert differences(lock, extra) == [
        "numpy 2.3.0 is installed, but the lock for this machine (pylock.cu130.toml) does not list it"
    ]
