"""A doctor :class:`~pip_gpu.doctor.checks.Report` as text for a person, or as JSON."""

from __future__ import annotations

from typing import Any

from .checks import FAILURE, OK, SKIPPED, WARNING, Finding, Report

__all__ = ["finding_json", "render_text", "report_json"]

_LABELS = {OK: "ok", WARNING: "WARN", FAILURE: "FAIL", SKIPPED: "skip"}


def render_text(report: Report, verbose: bool = False) -> str:
    """The verdict line first, then one line per check (with evidence and fix when it matters)."""
    lines = [report.verdict, ""]
    if report.target is not None:
        lines.append(
            f"Target  {report.target.python} (Python {report.target.python_version}, "
            f"from {report.target.chosen_by})"
        )
    width = max((len(f.check) for f in report.findings), default=0)
    for finding in report.findings:
        lines.append(
            f"  {_LABELS.get(finding.status, finding.status):4}  {finding.check:{width}}  {finding.summary}"
        )
        pad = " " * (10 + width)
        if finding.status in (FAILURE, WARNING) or verbose:
            lines.extend(f"{pad}- {item}" for item in finding.evidence)
            if finding.fix:
                lines.append(f"{pad}fix: {finding.fix}")
    return "\n".join(lines)


def finding_json(finding: Finding) -> dict[str, Any]:
    return {
        "check": finding.check,
        "status": finding.status,
        "summary": finding.summary,
        "evidence": list(finding.evidence),
        "fix": finding.fix,
    }


def report_json(report: Report) -> dict[str, Any]:
    """``doctor --json``: the verdict, the target, the host, the compiled archs, every finding."""
    target = report.target
    return {
        "verdict": report.verdict,
        "healthy": report.healthy,
        "exit_status": report.exit_status,
        "target": None
        if target is None
        else {
            "python": str(target.python),
            "python_version": target.python_version,
            "prefix": str(target.prefix),
            "virtualenv": target.is_virtualenv,
            "chosen_by": target.chosen_by,
        },
        "host": None if report.host is None else report.host.to_json(),
        "compiled_archs": None if report.compiled_archs is None else report.compiled_archs.to_json(),
        "findings": [finding_json(f) for f in report.findings],
    }
