"""The project's protocol doc keeps the shared contract verbatim."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "PROTOCOL.md"


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/PROTOCOL.md is not beside this clone")
def test_docs_protocol_contains_the_shared_contract():
    assert SHARED.read_text() in (ROOT / "docs" / "protocol.md").read_text()


def test_readme_shows_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme


def test_every_environment_variable_of_the_settings_is_documented():
    import re

    settings_source = (ROOT / "chatsite" / "settings.py").read_text()
    documented = (ROOT / "docs" / "protocol.md").read_text() + (ROOT / "README.md").read_text()
    names = set(re.findall(r'"((?:CHAT|DJANGO)_[A-Z_]+)"', settings_source))
    names = {name for name in names if "_TEST_" not in name}  # the test suite's own
    missing = sorted(name for name in names if f"`{name}`" not in documented)
    assert not missing, f"not in docs/protocol.md or the README: {missing}"
