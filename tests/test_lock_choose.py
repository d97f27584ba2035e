"""The pure rules of :mod:`pip_gpu.lock.choose`: targets from flags, markers for a target."""

from __future__ import annotations

import sys

from packaging.markers import Marker, default_environment

from pip_gpu.host import HostProfile
from pip_gpu.lock.choose import combine_targets, environment_marker, marker_values
from pip_gpu.lockfile import LockTarget

HOST = HostProfile(os="linux", arch="x86_64", python_version="3.11")
LINUX_311 = LockTarget.parse("linux-x86_64-3.11")


def test_without_flags_the_base_targets_stand() -> None:
    assert combine_targets([LINUX_311, LINUX_311], (), (), (), HOST) == [LINUX_311]


def test_every_combination_of_the_flags_is_a_target() -> None:
    targets = combine_targets([LINUX_311], ("linux", "macos"), (), ("3.10", "3.12"), HOST)
    assert [t.tag for t in targets] == [
        "linux-x86_64-3.10",
        "linux-x86_64-3.12",
        "macos-arm64-3.10",  # a platform with no base target takes its usual architecture
        "macos-arm64-3.12",
    ]


def test_marker_values_are_packagings_with_the_targets_facts_over_them() -> None:
    windows = HostProfile(os="windows", arch="x86_64", python_version="3.9")
    values = marker_values(windows)
    assert values["sys_platform"] == "win32" and values["platform_machine"] == "AMD64"
    assert values["python_version"] == "3.9" and values["python_full_version"] == "3.9.0"
    assert values["implementation_name"] == default_environment()["implementation_name"]
    here = HostProfile(
        os="linux", arch="x86_64", python_version=f"{sys.version_info[0]}.{sys.version_info[1]}"
    )
    assert marker_values(here)["python_full_version"] == default_environment()["python_full_version"]


def test_the_environment_marker_holds_on_its_target_only() -> None:
    marker = Marker(environment_marker(HOST))
    assert marker.evaluate(marker_values(HOST))
    assert not marker.evaluate(marker_values(HOST.with_changes(python_version="3.12")))
    assert not marker.evaluate(marker_values(HOST.with_changes(os="windows")))
