"""Known vulnerabilities in the lock files, with pip-audit, where a database answers.

    python .ci/audit.py requirements/lock.txt requirements/dev.txt

Exits 1 when a pinned version has a known vulnerability, 0 otherwise. A
vulnerability database out of reach is not a failure: pip-audit reports a
package it could not look up as skipped and still says "No known
vulnerabilities found", so each service is first asked about a canary, a
release with published advisories (Django 3.2.0). A service that finds none
there is not answering; when no service answers, this prints a note and exits 0.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

SERVICES = ("pypi", "osv")  # PyPI's JSON API first, then OSV
CANARY = "django==3.2.0\n"
TIMEOUT = 180


def pip_audit(requirements: list[Path], service: str) -> dict | None:
    """pip-audit's JSON report for `requirements` (already pinned, so no
    resolution and nothing installed), or None when it could not run."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        argv = [sys.executable, "-m", "pip_audit", "--disable-pip", "--no-deps"]
        argv += ["--vulnerability-service", service, "--progress-spinner", "off"]
        argv += ["--format", "json", "--output", str(report)]
        for path in requirements:
            argv += ["--requirement", str(path)]
        try:
            subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            return None
        try:
            return json.loads(report.read_text())
        except (OSError, ValueError):
            return None


def findings(report: dict) -> tuple[list[str], list[str]]:
    """(one line per known vulnerability, names of packages not looked up)."""
    found, skipped = [], []
    for dep in report.get("dependencies", []):
        if "skip_reason" in dep:
            skipped.append(dep["name"])
            continue
        for vuln in dep.get("vulns", []):
            fixed = ", ".join(vuln.get("fix_versions", [])) or "no fixed release"
            found.append(f"{dep['name']} {dep['version']}: {vuln['id']} (fixed in {fixed})")
    return found, skipped


def answering_service() -> str | None:
    with tempfile.TemporaryDirectory() as tmp:
        canary = Path(tmp) / "canary.txt"
        canary.write_text(CANARY)
        for service in SERVICES:
            report = pip_audit([canary], service)
            if report is not None and findings(report)[0]:
                return service
    return None


def main(paths: list[str]) -> int:
    requirements = [Path(p) for p in paths]
    service = answering_service()
    if service is None:
        print(
            "audit: no vulnerability database answers from here "
            f"({', '.join(SERVICES)}); {', '.join(paths)} not audited"
        )
        return 0
    report = pip_audit(requirements, service)
    if report is None:
        print(f"audit: pip-audit did not finish against {service}; not audited")
        return 0
    found, skipped = findings(report)
    if skipped:
        print(f"audit: {len(skipped)} packages not looked up: {', '.join(sorted(skipped))}")
    if found:
        print(f"audit: known vulnerabilities ({service}):")
        print("\n".join(f"  {line}" for line in found))
        return 1
    print(f"audit: no known vulnerabilities in {', '.join(paths)} ({service})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
