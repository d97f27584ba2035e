"""A doctor report as a person reads it (the verdict first, one row per check) and as JSON."""

from __future__ import annotations

import json

from test_doctor_checks import GPU_HOST, PYTHON, TORCH_CPU, facts, target

from pip_gpu.doctor.checks import FAILURE, OK, SKIPPED, WARNING, Finding, Report, diagnose
from pip_gpu.doctor.render import render_text, report_json

FINDINGS = (
    Finding(
        "torch",
        FAILURE,
        "torch 2.5.1+cpu is a CPU-only build",
        ("torch 2.5.1+cpu in /site",),
        "pip-gpu install",
    ),
    Finding("ld-library-path", WARNING, "a libcudart may shadow torch's", ("/usr/local/cuda/lib64: 12.6",)),
    Finding("wsl", OK, "not WSL", ("/proc/version",)),
    Finding("driver", SKIPPED, "no CUDA build of torch is installed"),
)


def test_the_verdict_comes_first_then_one_row_per_check() -> None:
    report = Report(FINDINGS, "unused")
    assert render_text(report).splitlines() == [
        "torch 2.5.1+cpu is a CPU-only build. Fix: pip-gpu install",
        "",
        "  FAIL  torch            torch 2.5.1+cpu is a CPU-only build",
        "                         - torch 2.5.1+cpu in /site",
        "                         fix: pip-gpu install",
        "  WARN  ld-library-path  a libcudart may shadow torch's",
        "                         - /usr/local/cuda/lib64: 12.6",
        "  ok    wsl              not WSL",
        "  skip  driver           no CUDA build of torch is installed",
    ]


def test_verbose_shows_the_evidence_of_every_check() -> None:
    lines = render_text(Report(FINDINGS, "unused"), verbose=True).splitlines()
    assert (
        lines[lines.index("  ok    wsl              not WSL") + 1]
        == "                         - /proc/version"
    )


def test_the_target_is_named_under_the_verdict() -> None:
    text = render_text(diagnose(facts()))
    assert text.splitlines()[:3] == [
        f"healthy: torch 2.5.1+cu124 runs on this machine's {GPU_HOST}",
        "",
        f"Target  {PYTHON} (Python 3.11, from --python)",
    ]


def test_json_carries_the_verdict_the_target_the_host_and_every_finding() -> None:
    report = diagnose(facts(target_facts=target(TORCH_CPU)))
    data = json.loads(json.dumps(report_json(report)))
    assert (data["healthy"], data["exit_status"]) == (False, 1)
    assert data["verdict"] == report.verdict
    assert data["target"] == {
        "python": str(PYTHON),
        "python_version": "3.11",
        "prefix": str(PYTHON.parent.parent),
        "virtualenv": True,
        "chosen_by": "--python",
    }
    assert data["host"]["driver_version"] == "535.104.05"
    assert data["compiled_archs"] is None
    torch = next(f for f in data["findings"] if f["check"] == "torch")
    assert torch == {
        "check": "torch",
        "status": "failure",
        "summary": f"torch 2.5.1+cpu is a CPU-only build; this machine has {GPU_HOST}",
        "evidence": list(report.findings[1].evidence),
        "fix": "pip-gpu install --force-reinstall torch==2.5.1",
    }
    assert [f["check"] for f in data["findings"]] == [f.check for f in report.findings]
