"""The one settings module: everything configurable comes from the environment.

See docs/protocol.md (and the README) for the variables and their defaults.
"""

import os
import re
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be 1 or 0, not {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None


def parse_rate_limit(value: str, name: str = "CHAT_RATE_LIMIT") -> tuple[int, int] | None:
    """`<count>/<seconds>` -> (count, seconds); `off` -> None."""
    value = value.strip().lower()
    if value in ("off", "0", "none"):
        return None
    match = re.fullmatch(r"(\d+)\s*/\s*(\d+)", value)
    if not match or int(match[1]) < 1 or int(match[2]) < 1:
        raise ImproperlyConfigured(
            f"{name} must look like 20/10 (count/seconds) or 'off', not {value!r}"
        )
    return int(match[1]), int(match[2])


DEBUG = env_bool("DJANGO_DEBUG", True)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. It is required when DJANGO_DEBUG=0: set it to a "
            "long random string, e.g. the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
        )
    SECRET_KEY = "django-insecure-dev-only-key-do-not-use-in-production"

ALLOWED_HOSTS = [
    h.strip()
    for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",")
    if h.strip()
]
# Same-origin form posts pass Django's Origin check without this; it is for a
# proxy that rewrites the scheme or port.
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "chatsite.urls"
ASGI_APPLICATION = "chatsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: one short transaction per stored message on a persistent
# connection (CONN_MAX_AGE); per-call connect/close was a large share of the
# server's CPU per message when measured.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("DJANGO_CONN_MAX_AGE", 600),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several Daphne workers may write to one SQLite file: take the write lock
    # at BEGIN (no upgrade deadlocks), wait for it instead of failing, and let
    # readers run beside the writer (WAL).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # Tests run Daphne subprocesses against the test database: keep it a file.
    DATABASES["default"]["TEST"] = {
        "NAME": os.environ.get("CHAT_TEST_SQLITE", str(BASE_DIR / f"test-{os.getpid()}.sqlite3"))
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Unhashed names: the ES modules import each other by relative path, which a
# hashing storage would have to rewrite. WhiteNoise still compresses and caches.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Redis: channel layer, presence and rate limits. Unset: one process, in memory.
REDIS_URL = os.environ.get("REDIS_URL", "")
# Prefix of every Redis key and pub/sub channel (channel layer, presence,
# cache): deployments, or test runs, sharing one Redis stay apart with their own.
CHAT_REDIS_PREFIX = os.environ.get("CHAT_REDIS_PREFIX", "chat")

if REDIS_URL:
    # Pub/sub layer: a group send is one PUBLISH that every worker receives
    # once, instead of one list push per member channel.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": CHAT_REDIS_PREFIX},
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "chat.cache.SharedPoolRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CHAT_REDIS_PREFIX,
            # A stalled Redis fails a cache call in a second instead of hanging it.
            "OPTIONS": {"socket_timeout": 1, "socket_connect_timeout": 1},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Sessions are read through the cache (Redis when configured): a socket's
# connect costs no session query. Logout and password changes still end them.
SESSION_ENGINE = "chat.sessions"

# Chat limits (the contract's environment table).
CHAT_RATE_LIMIT = parse_rate_limit(os.environ.get("CHAT_RATE_LIMIT", "20/10"))
CHAT_MAX_MESSAGE_LENGTH = env_int("CHAT_MAX_MESSAGE_LENGTH", 4000)
# Every other client frame (typing, history, ping, read, invalid ones) counts
# against this budget per user, across all their sockets and workers.
CHAT_FRAME_RATE = parse_rate_limit(os.environ.get("CHAT_FRAME_RATE", "200/10"), "CHAT_FRAME_RATE")
# Open sockets per user across workers (tabs, devices, bots); one more is
# closed with 4429. Load tools sharing a few accounts need it high.
CHAT_MAX_SOCKETS_PER_USER = env_int("CHAT_MAX_SOCKETS_PER_USER", 250)
# Sockets opening at once on one worker (between handshake and hello); more
# are closed with 1013 and a retry hint, so that a reconnect storm is served
# in turn instead of every handshake timing out together.
CHAT_MAX_OPENING = env_int("CHAT_MAX_OPENING", 100)
# A worker that receives messages this many seconds late (its CPU cannot keep
# up) sheds load: typing notices are dropped from a quarter of it, and from
# it messages are caught up from the database a room at a time.
CHAT_SHED_LAG = float(os.environ.get("CHAT_SHED_LAG", "2"))
# Seconds after which a socket is asked to reconnect (4000), so that its
# session and room access are checked again; each socket gets up to a tenth
# less, so that sockets opened together do not all come back together.
CHAT_MAX_SOCKET_AGE = env_int("CHAT_MAX_SOCKET_AGE", 3600)
CHAT_MAX_FRAME_BYTES = 64 * 1024
CHAT_HISTORY_PAGE = 50
CHAT_HISTORY_MAX = 100
# Rooms per page of the directory.
CHAT_DIRECTORY_PAGE = env_int("CHAT_DIRECTORY_PAGE", 50)
# Presence entries expire unless refreshed; a worker that dies without running
# its disconnect handlers drops out within CHAT_PRESENCE_TTL seconds.
CHAT_PRESENCE_TTL = env_int("CHAT_PRESENCE_TTL", 30)
# How long a consumer waits for a missing seq before filling the gap from the
# database (messages committed on different workers may arrive out of order).
CHAT_GAP_WAIT = float(os.environ.get("CHAT_GAP_WAIT", "0.25"))
# A message arriving within this many seconds of the previous one sent to the
# same socket waits for the window's end and goes out batched with the others
# in one `messages` frame (0 = never batch).
CHAT_BATCH_WINDOW = float(os.environ.get("CHAT_BATCH_WINDOW", "0.02"))
# Each worker's room hub keeps this many of a room's latest messages in memory:
# hello's history and most resumes need no database.
CHAT_HUB_RECENT = env_int("CHAT_HUB_RECENT", 500)
# Seconds a room's hub stays subscribed and warm after its last local socket
# left (a worker's sockets that drop together come back together).
CHAT_HUB_IDLE = float(os.environ.get("CHAT_HUB_IDLE", "30"))
# Every this many seconds each worker reads the last seq of its rooms in one
# query, and fills any room that stayed behind (a lost broadcast).
CHAT_SEQ_WATCH = float(os.environ.get("CHAT_SEQ_WATCH", "2"))
# Bytes that may wait for a client that does not read before its socket is
# closed with 4008 (it resumes with `after`).
CHAT_MAX_QUEUED_BYTES = env_int("CHAT_MAX_QUEUED_BYTES", 1024 * 1024)
# Typing notices are forwarded at most once per this many seconds per socket.
CHAT_TYPING_INTERVAL = float(os.environ.get("CHAT_TYPING_INTERVAL", "1.5"))

# Served over HTTPS (directly or behind a TLS-terminating proxy that sets
# X-Forwarded-Proto): secure cookies, HSTS, redirect plain HTTP. Off by default
# so that the plain `daphne` command works on http://127.0.0.1 with DEBUG off.
SERVED_OVER_TLS = env_bool("DJANGO_TLS", False)
if SERVED_OVER_TLS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DJANGO_LOG_LEVEL", "WARNING")},
}
