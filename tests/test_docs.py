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
