"""The settings module: every variable read from the environment (or a .env
file) is checked at startup, and a bad value stops it with one clear
ImproperlyConfigured message naming the variable."""

from __future__ import annotations

import json

import pytest

from tests.servers import run_python

SHOW_SETTINGS = """
import json, django
django.setup()
from django.conf import settings
print(json.dumps({name: getattr(settings, name, None) for name in %r}, default=str))
"""


def settings_of(*names, env: dict) -> dict:
    result = run_python(
        "-c",
        SHOW_SETTINGS % (names,),
        env={"DJANGO_SETTINGS_MODULE": "chatsite.settings", "DJANGO_ENV_FILE": "", **env},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CHAT_GAP_WAIT", "abc"),
        ("CHAT_BATCH_WINDOW", "-1"),
        ("CHAT_TYPING_INTERVAL", "nan"),
        ("CHAT_MAX_MESSAGE_LENGTH", "0"),
        ("CHAT_PRESENCE_TTL", "soon"),
        ("DJANGO_CONN_MAX_AGE", "1.5"),
        ("CHAT_RATE_LIMIT", "fast"),
        ("DJANGO_DEBUG", "maybe"),
        ("DJANGO_LOG_LEVEL", "loud"),
        ("DJANGO_LOG_FORMAT", "xml"),
        ("SENTRY_DSN", "not a dsn"),
        ("DATABASE_URL", "nonsense"),
        ("REDIS_URL", "localhost:6379"),
        ("CHAT_DIRECTORY_PAGE", "0"),
        ("CHAT_SEQ_WATCH", "soon"),
        ("CHAT_HUB_IDLE", "-5"),
        ("CHAT_MUTE_MINUTES", "10,soon"),
        ("CHAT_MUTE_MINUTES", "0"),
        ("DJANGO_ENV_FILE", "/nonexistent/chat.env"),
    ],
)
def test_a_bad_value_stops_startup_with_one_clear_message(variable, value):
    env = {"DJANGO_ENV_FILE": "", variable: value}
    result = run_python("manage.py", "check", env=env)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("django.core.exceptions.ImproperlyConfigured: "), result.stderr
    assert variable in last_line
    # One error, not a ValueError with ImproperlyConfigured raised while handling it.
    assert "During handling of the above exception" not in result.stderr


def test_numbers_and_limits_are_parsed():
    got = settings_of(
        "CHAT_GAP_WAIT",
        "CHAT_RATE_LIMIT",
        "CHAT_MAX_MESSAGE_LENGTH",
        "CHAT_MUTE_MINUTES",
        env={
            "CHAT_GAP_WAIT": " 0.5 ",
            "CHAT_RATE_LIMIT": "off",
            "CHAT_MAX_MESSAGE_LENGTH": "12",
            "CHAT_MUTE_MINUTES": "5, 120",
        },
    )
    assert got == {
        "CHAT_GAP_WAIT": 0.5,
        "CHAT_RATE_LIMIT": None,
        "CHAT_MAX_MESSAGE_LENGTH": 12,
        "CHAT_MUTE_MINUTES": [5, 120],
    }


def test_a_dotenv_file_is_read_and_the_environment_wins(tmp_path):
    env_file = tmp_path / "local.env"
    env_file.write_text(
        "# local settings\n"
        "\n"
        "CHAT_GAP_WAIT=0.75\n"
        "export CHAT_TYPING_INTERVAL = '3'\n"
        'CHAT_MAX_MESSAGE_LENGTH="500"\n'
    )
    got = settings_of(
        "CHAT_GAP_WAIT",
        "CHAT_TYPING_INTERVAL",
        "CHAT_MAX_MESSAGE_LENGTH",
        env={"DJANGO_ENV_FILE": str(env_file), "CHAT_MAX_MESSAGE_LENGTH": "900"},
    )
    assert got == {
        "CHAT_GAP_WAIT": 0.75,
        "CHAT_TYPING_INTERVAL": 3.0,
        "CHAT_MAX_MESSAGE_LENGTH": 900,
    }


def test_a_dotenv_file_beside_manage_py_is_the_default(tmp_path):
    got = settings_of("ENV_FILE", env={})
    assert got["ENV_FILE"] == ""  # what these tests pass; the default is checked below
    result = run_python(
        "-c", "import chatsite.settings as s; print(s.ENV_FILE)", env={"DJANGO_DEBUG": "1"}
    )
    assert result.stdout.strip().endswith("/.env"), result.stderr


def test_a_bad_dotenv_line_is_a_clear_error(tmp_path):
    env_file = tmp_path / "broken.env"
    env_file.write_text("CHAT_GAP_WAIT=0.5\nthis is not a setting\n")
    result = run_python("manage.py", "check", env={"DJANGO_ENV_FILE": str(env_file)})
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "ImproperlyConfigured" in last_line and "line 2" in last_line


def test_test_only_settings_stay_out_of_the_production_module():
    production = settings_of("PASSWORD_HASHERS", "DATABASES", env={})
    assert "tests" not in json.dumps(production["PASSWORD_HASHERS"])
    assert production["DATABASES"]["default"].get("TEST", {}).get("NAME") is None
    from django.conf import settings

    assert settings.PASSWORD_HASHERS == ["tests.hashers.FastPBKDF2PasswordHasher"]
