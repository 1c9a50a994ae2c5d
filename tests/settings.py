"""Settings for the test suite: production settings plus what only tests
need. pytest uses this module (pyproject.toml), and the live Daphne servers
the tests start inherit it through DJANGO_SETTINGS_MODULE."""

import os

# Tests configure themselves through the environment alone, never a
# developer's .env (DJANGO_ENV_FILE set explicitly still wins).
os.environ.setdefault("DJANGO_ENV_FILE", "")

from chatsite.settings import *  # noqa: E402, F403
from chatsite.settings import BASE_DIR, DATABASES  # noqa: E402

# Few iterations of the same algorithm: hashes made here still verify anywhere.
PASSWORD_HASHERS = ["tests.hashers.FastPBKDF2PasswordHasher"]

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Tests run Daphne subprocesses against the test database: keep it a
    # file, one per test process.
    DATABASES["default"]["TEST"] = {
        "NAME": os.environ.get("CHAT_TEST_SQLITE", str(BASE_DIR / f"test-{os.getpid()}.sqlite3"))
    }

# Tests make many rooms as one user; the tests of the cap set their own.
CHAT_ROOMS_PER_HOUR = 0
