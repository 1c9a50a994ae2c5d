"""The lock files agree with pyproject.toml: every dependency (and every
dependency group in dev.txt) pinned to a version its range allows, the app's
pins the same in both files, ruff pinned exactly. A range changed without
`make lock` fails here."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.servers import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)(?:\s*;\s*(.+?))?\s*\\?$")


def pins(name: str) -> dict[str, list[str]]:
    """{package: [versions]} (one package may be pinned per platform)."""
    found: dict[str, list[str]] = {}
    for line in (ROOT / "requirements" / name).read_text().splitlines():
        match = PIN.match(line)
        if match:
            found.setdefault(canonicalize_name(match[1]), []).append(match[2])
    return found


def group(name: str) -> list[str]:
    out = []
    for item in PYPROJECT["dependency-groups"][name]:
        out += group(item["include-group"]) if isinstance(item, dict) else [item]
    return out


def assert_pinned(requirements: list[str], locked: dict[str, list[str]]) -> None:
    for text in requirements:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if requirement.marker and not requirement.marker.evaluate():
            continue
        assert name in locked, f"{text} is not in the lock file: make lock"
        assert any(requirement.specifier.contains(v) for v in locked[name]), (
            f"{text} but the lock has {locked[name]}: make lock"
        )


def test_the_app_lock_covers_the_dependencies():
    assert_pinned(PYPROJECT["project"]["dependencies"], pins("lock.txt"))


def test_the_dev_lock_covers_every_group_with_the_apps_versions():
    dev = pins("dev.txt")
    assert_pinned(PYPROJECT["project"]["dependencies"] + group("dev"), dev)
    for name, versions in pins("lock.txt").items():
        assert dev.get(name) == versions, f"{name}: {versions} for the app, {dev.get(name)} in dev"


def test_the_locks_are_hashed():
    for name in ("lock.txt", "dev.txt"):
        text = (ROOT / "requirements" / name).read_text()
        assert text.count("==") <= text.count("--hash=sha256:"), name


def test_ruff_is_pinned_exactly():
    (ruff,) = [Requirement(r) for r in group("lint") if Requirement(r).name == "ruff"]
    assert str(ruff.specifier).startswith("=="), ruff
