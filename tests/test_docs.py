"""The docs keep up with the project: the shared contract verbatim in the
protocol doc, and every environment variable in the configuration tables."""

import re
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


# A variable read from the environment: os.environ.get("NAME" …) or one of
# the settings module's env_*("NAME" …) helpers.
ENVIRONMENT_READ = re.compile(r'(?:os\.environ\.get|env_[a-z_]+)\(\s*"([A-Z][A-Z0-9_]*)"')


def variables_read_from_the_environment() -> set[str]:
    """Every variable the settings (and the log setup they call) read."""
    sources = [ROOT / "chatsite" / "settings.py", ROOT / "chatsite" / "logs.py"]
    names = {name for path in sources for name in ENVIRONMENT_READ.findall(path.read_text())}
    return {name for name in names if "_TEST_" not in name}  # the test suite's own


def variables_in_tables(markdown: str) -> set[str]:
    """The names in the first column of every `| variable | meaning | default |`
    table of a Markdown text."""
    names, in_table = set(), False
    for line in markdown.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|"):
            in_table = False
        elif cells[0] == "variable":
            in_table = True
        elif in_table:
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[0]))
    return names


def readme_configuration_section() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]


def test_the_variables_are_found_in_the_settings():
    # The pattern above still matches how settings.py reads its variables.
    found = variables_read_from_the_environment()
    assert {"DJANGO_SECRET_KEY", "DATABASE_URL", "CHAT_FRAME_RATE", "CHAT_WORKER_ID"} <= found


@pytest.mark.parametrize(
    "document, text",
    [
        ("the README's configuration table", readme_configuration_section),
        ("docs/protocol.md's tables", lambda: (ROOT / "docs" / "protocol.md").read_text()),
    ],
    ids=["readme", "protocol"],
)
def test_every_environment_variable_is_in_the_configuration_tables(document, text):
    missing = sorted(variables_read_from_the_environment() - variables_in_tables(text()))
    assert not missing, f"not in {document}: {missing}"
