"""CI's vulnerability audit (.ci/audit.py) against a stand-in pip-audit: it fails
on a known vulnerability only when a database answers, and a database out of
reach (pip-audit's "skipped", or pip-audit failing) is a note, not a failure."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.servers import ROOT

# Writes the report pip-audit would for MODE: "down" (every package skipped),
# "crash" (no report), or a database that knows Django 3.2.0 and, in
# "vulnerable", also redis 8.2.0.
FAKE_PIP_AUDIT = textwrap.dedent(
    """
    import json, os, sys
    args = sys.argv[1:]
    mode = os.environ["FAKE_AUDIT_MODE"]
    if mode == "crash":
        sys.exit("ConnectionError")
    pins = []
    for i, arg in enumerate(args):
        if arg == "--requirement":
            pins += [l.split()[0] for l in open(args[i + 1]) if "==" in l]
    deps = []
    for pin in pins:
        name, version = pin.split("==")
        if mode == "down":
            deps.append({"name": name, "skip_reason": "not found"})
            continue
        known = {"django==3.2.0"} | ({"redis==8.2.0"} if mode == "vulnerable" else set())
        vulns = [{"id": "PYSEC-1", "fix_versions": ["9"]}] if pin in known else []
        deps.append({"name": name, "version": version, "vulns": vulns})
    out = args[args.index("--output") + 1]
    json.dump({"dependencies": deps, "fixes": []}, open(out, "w"))
    """
)


def audit(tmp_path, mode: str) -> subprocess.CompletedProcess:
    fake = tmp_path / "fake" / "pip_audit"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text(FAKE_PIP_AUDIT)
    lock = tmp_path / "lock.txt"
    lock.write_text("redis==8.2.0 \\\n    --hash=sha256:00\nwhitenoise==6.12.0\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "fake"), "FAKE_AUDIT_MODE": mode}
    return subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "audit.py"), str(lock)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_a_known_vulnerability_fails_the_audit(tmp_path):
    result = audit(tmp_path, "vulnerable")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "redis 8.2.0: PYSEC-1" in result.stdout
    assert "whitenoise" not in result.stdout


def test_a_clean_lock_passes(tmp_path):
    result = audit(tmp_path, "clean")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no known vulnerabilities" in result.stdout


@pytest.mark.parametrize("mode", ["down", "crash"])
def test_a_database_out_of_reach_is_a_note(tmp_path, mode):
    result = audit(tmp_path, mode)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no vulnerability database answers" in result.stdout
