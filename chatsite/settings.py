"""The one settings module: everything configurable comes from the environment.

See docs/protocol.md (and the README) for the variables and their defaults.
"""

import os
import re
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from chatsite import logs

BASE_DIR = Path(__file__).resolve().parent.parent


def read_env_file(path: Path) -> dict[str, str]:
    """`KEY=value` lines of a .env file (comments, blank lines, `export` and
    quotes allowed; no interpolation)."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)", line)
        if not match:
            raise ImproperlyConfigured(f"{path}, line {number}: expected KEY=value, not {line!r}")
        key, value = match[1], match[2]
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


# Local runs read `.env` beside manage.py (DJANGO_ENV_FILE names another file;
# empty: none). The real environment wins over the file.
ENV_FILE = os.environ.get("DJANGO_ENV_FILE", str(BASE_DIR / ".env"))
if ENV_FILE and not Path(ENV_FILE).is_file() and "DJANGO_ENV_FILE" in os.environ:
    raise ImproperlyConfigured(f"DJANGO_ENV_FILE names no file: {ENV_FILE!r}")
if ENV_FILE and Path(ENV_FILE).is_file():
    for _key, _value in read_env_file(Path(ENV_FILE)).items():
        os.environ.setdefault(_key, _value)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be 1 or 0, not {value!r}")


def env_int(name: str, default: int, *, minimum: int | None = 0) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be {minimum} or more, not {value!r}")
    return number


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not number >= minimum or number == float("inf"):  # also catches nan
        raise ImproperlyConfigured(
            f"{name} must be a number of seconds, {minimum} or more, not {value!r}"
        )
    return number


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_int_list(name: str, default: str, *, minimum: int = 1) -> list[int]:
    """Comma-separated whole numbers, each `minimum` or more, in the order given."""
    value = os.environ.get(name, "").strip() or default
    items = [item.strip() for item in value.split(",")]
    if not all(re.fullmatch(r"\d+", item) and int(item) >= minimum for item in items):
        raise ImproperlyConfigured(
            f"{name} must list whole numbers of {minimum} or more, like {default}, not {value!r}"
        )
    return [int(item) for item in items]


def env_origins(name: str) -> list[str]:
    """Comma-separated origins, each `scheme://host[:port]` (a host may start
    with `*.` for any subdomain, as in Django's CSRF_TRUSTED_ORIGINS)."""
    origins = env_list(name)
    for origin in origins:
        if not re.fullmatch(r"https?://(\*\.)?[A-Za-z0-9.\-\[\]:]+", origin):
            raise ImproperlyConfigured(
                f"{name} must list origins like https://chat.example.com or "
                f"http://127.0.0.1:8000 (scheme, host, optional port), not {origin!r}"
            )
    return origins


def env_rate(name: str, default: str) -> tuple[int, int] | None:
    """`<count>/<seconds>` -> (count, seconds); `off` -> None."""
    value = os.environ.get(name, "").strip().lower() or default
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

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1")
# Same-origin form posts pass Django's Origin check without this; it is for a
# proxy that rewrites the scheme or port.
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
# Django's 403 page, but a refused frame POST gets a frame (chat.sse).
CSRF_FAILURE_VIEW = "chat.views.csrf_failure"

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
    "deploy",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "chat.headers.SecurityHeadersMiddleware",
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
DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
try:
    _database = dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DJANGO_CONN_MAX_AGE", 600),
        conn_health_checks=True,
    )
except ValueError as error:  # dj-database-url's ParseError and UnknownSchemeError
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL we can use: {error}") from None
DATABASES = {"default": _database}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several Daphne workers may write to one SQLite file: take the write lock
    # at BEGIN (no upgrade deadlocks), wait for it instead of failing, and let
    # readers run beside the writer (WAL).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": env_int("CHAT_SQLITE_LOCK_TIMEOUT", 20),
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A database host that does not answer fails a connect within seconds
    # instead of the operating system's minutes.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
    # Under ASGI, Django's persistent connections belong to threads that come
    # and go: 100 requests opened 87 connections. psycopg's pool keeps a few
    # per worker and hands them out per call (DJANGO_DB_POOL_MAX=0: the
    # persistent connections of DJANGO_CONN_MAX_AGE instead).
    DB_POOL_MAX = env_int("DJANGO_DB_POOL_MAX", 8)
    if DB_POOL_MAX:
        DATABASES["default"]["CONN_MAX_AGE"] = 0  # Django's pool requires it
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": min(2, DB_POOL_MAX),
            "max_size": DB_POOL_MAX,
            # Waiting longer than this for a free connection is an error, not a hang.
            "timeout": env_float("DJANGO_DB_POOL_TIMEOUT", 10.0, minimum=0.1),
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
# Hashed names (chatsite/storage.py), imports between the ES modules
# included: `collectstatic` before serving with DEBUG off.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "chatsite.storage.HashedStaticFiles"},
}

# Redis: channel layer, presence and rate limits. Unset: one process, in memory.
REDIS_URL = os.environ.get("REDIS_URL", "").strip()
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(
        f"REDIS_URL must start with redis://, rediss:// or unix://, not {REDIS_URL!r}"
    )
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
CHAT_RATE_LIMIT = env_rate("CHAT_RATE_LIMIT", "20/10")
CHAT_MAX_MESSAGE_LENGTH = env_int("CHAT_MAX_MESSAGE_LENGTH", 4000, minimum=1)
# Every other client frame (typing, history, ping, read, invalid ones) counts
# against this budget per user, across all their sockets and workers.
CHAT_FRAME_RATE = env_rate("CHAT_FRAME_RATE", "200/10")
# Open sockets per user across workers (tabs, devices, bots); one more is
# closed with 4429. Load tools sharing a few accounts need it high.
CHAT_MAX_SOCKETS_PER_USER = env_int("CHAT_MAX_SOCKETS_PER_USER", 250, minimum=1)
# Sockets opening at once on one worker (between handshake and hello); more
# are closed with 1013 and a retry hint, so that a reconnect storm is served
# in turn instead of every handshake timing out together.
CHAT_MAX_OPENING = env_int("CHAT_MAX_OPENING", 1000, minimum=1)
# Seconds between the comments that keep a quiet event stream (the
# compatibility transport, chat.sse) open through proxies.
CHAT_SSE_HEARTBEAT = env_float("CHAT_SSE_HEARTBEAT", 15, minimum=0.05)
# A worker that receives messages this many seconds late (its CPU cannot keep
# up) sheds load: typing notices are dropped from a quarter of it, and from
# it messages are caught up from the database a room at a time.
CHAT_SHED_LAG = env_float("CHAT_SHED_LAG", 2.0)
# Seconds after which a socket is asked to reconnect (4000), so that its
# session and room access are checked again; each socket gets up to a tenth
# less, so that sockets opened together do not all come back together.
CHAT_MAX_SOCKET_AGE = env_int("CHAT_MAX_SOCKET_AGE", 3600, minimum=1)
# The mute durations moderators choose from, in minutes (room page, admin and
# the mute endpoint alike); "until unmuted" is always offered besides.
CHAT_MUTE_MINUTES = env_int_list("CHAT_MUTE_MINUTES", "10,60,1440,10080")
CHAT_MAX_FRAME_BYTES = 64 * 1024
CHAT_HISTORY_PAGE = 50
CHAT_HISTORY_MAX = 100
# Rooms per page of the directory.
CHAT_DIRECTORY_PAGE = env_int("CHAT_DIRECTORY_PAGE", 50, minimum=1)
# Message search (/search/): results per page, and searches per user
# (`<count>/<seconds>` or `off`, counted in the cache: across workers with Redis).
CHAT_SEARCH_PAGE = env_int("CHAT_SEARCH_PAGE", 20, minimum=1)
CHAT_SEARCH_RATE = env_rate("CHAT_SEARCH_RATE", "30/60")
# Presence entries expire unless refreshed; a worker that dies without running
# its disconnect handlers drops out within CHAT_PRESENCE_TTL seconds.
CHAT_PRESENCE_TTL = env_int("CHAT_PRESENCE_TTL", 30, minimum=3)
# How long a consumer waits for a missing seq before filling the gap from the
# database (messages committed on different workers may arrive out of order).
CHAT_GAP_WAIT = env_float("CHAT_GAP_WAIT", 0.25)
# A message arriving within this many seconds of the previous one sent to the
# same socket waits for the window's end and goes out batched with the others
# in one `messages` frame (0 = never batch).
CHAT_BATCH_WINDOW = env_float("CHAT_BATCH_WINDOW", 0.02)
# Each worker's room hub keeps this many of a room's latest messages in memory:
# hello's history and most resumes need no database.
CHAT_HUB_RECENT = env_int("CHAT_HUB_RECENT", 500)
# Seconds a room's hub stays subscribed and warm after its last local socket
# left (a worker's sockets that drop together come back together).
CHAT_HUB_IDLE = env_float("CHAT_HUB_IDLE", 30.0)
# Every this many seconds each worker reads the last seq of its rooms in one
# query, and fills any room that stayed behind (a lost broadcast).
CHAT_SEQ_WATCH = env_float("CHAT_SEQ_WATCH", 2.0, minimum=0.05)
# Bytes that may wait for a client that does not read before its socket is
# closed with 4008 (it resumes with `after`).
CHAT_MAX_QUEUED_BYTES = env_int("CHAT_MAX_QUEUED_BYTES", 1024 * 1024)
# Typing notices are forwarded at most once per this many seconds per socket.
CHAT_TYPING_INTERVAL = env_float("CHAT_TYPING_INTERVAL", 1.5)
# Seconds after sending during which authors may edit a message (0: always).
CHAT_EDIT_WINDOW = env_int("CHAT_EDIT_WINDOW", 900)
# The emoji people may react with (a fixed set: the page offers these).
CHAT_REACTIONS = [
    "\U0001f44d",
    "\u2764\ufe0f",
    "\U0001f602",
    "\U0001f389",
    "\U0001f62e",
    "\U0001f622",
]
# Characters of the original a reply's quote carries.
CHAT_QUOTE_CHARS = 120

# Health checks (/healthz, /readyz): seconds each check may take before it
# counts as failed, so that a stalled Redis or a locked database answers 503
# at once instead of hanging the probe.
CHAT_HEALTH_TIMEOUT = env_float("CHAT_HEALTH_TIMEOUT", 1.0, minimum=0.05)

# Throttles, each `<count>/<seconds>` or `off`, counted in the cache (Redis
# with REDIS_URL, so every worker counts together); see chat/auth_throttle.py.
# Failed logins (login page, admin login, a wrong old password on password
# change) per username, and per client address; sign-up attempts per
# username use the first too.
CHAT_LOGIN_LIMIT_USER = env_rate("CHAT_LOGIN_LIMIT_USER", "10/900")
CHAT_LOGIN_LIMIT_IP = env_rate("CHAT_LOGIN_LIMIT_IP", "30/900")
# Sign-up attempts per client address.
CHAT_SIGNUP_LIMIT_IP = env_rate("CHAT_SIGNUP_LIMIT_IP", "10/3600")
# WebSocket origins allowed beyond the socket's own (scheme, host and port of
# its Host header, that host being in ALLOWED_HOSTS): for pages served from
# another origin. CSRF_TRUSTED_ORIGINS are allowed too. See chat/origins.py.
CHAT_ALLOWED_ORIGINS = env_origins("CHAT_ALLOWED_ORIGINS")

# Rooms one user may create in an hour (0 = no limit).
CHAT_ROOMS_PER_HOUR = env_int("CHAT_ROOMS_PER_HOUR", 10)
# Add-member attempts naming no account, per room owner (`<count>/<seconds>`
# or `off`, counted in the cache, so across workers with Redis): beyond it,
# adding members waits, so the form cannot be used to list who has an account.
CHAT_ADD_MEMBER_MISS_LIMIT = env_rate("CHAT_ADD_MEMBER_MISS_LIMIT", "20/3600")
# Invite links of one private room that may be usable at once (0 = no limit).
CHAT_INVITES_PER_ROOM = env_int("CHAT_INVITES_PER_ROOM", 20)
# Direct conversations one user may start in an hour (0 = no limit); names
# that match nobody count against CHAT_ADD_MEMBER_MISS_LIMIT as for adding members.
CHAT_DIRECT_PER_HOUR = env_int("CHAT_DIRECT_PER_HOUR", 30)

# The pages load only same-origin module scripts, stylesheets and images, and
# open sockets to the same origin ('self' covers ws:/wss: of the page's own
# host and port). No inline script or style, no plugins, no framing.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
# Powerful browser features nobody here needs, off for every frame.
PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in [
        "accelerometer",
        "autoplay",
        "camera",
        "display-capture",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "publickey-credentials-get",
        "screen-wake-lock",
        "usb",
        "xr-spatial-tracking",
    ]
)

# The largest request body Django reads: form posts here are a few KiB (an
# admin action over a page of rows is the largest). Bigger bodies get 400;
# the proxy in front refuses much bigger ones before they reach Daphne.
DATA_UPLOAD_MAX_MEMORY_SIZE = 256 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 256 * 1024

# Served over HTTPS (directly or behind a TLS-terminating proxy that sets
# X-Forwarded-Proto): secure cookies, HSTS, redirect plain HTTP. Off by default
# so that the plain `daphne` command works on http://127.0.0.1 with DEBUG off.
SERVED_OVER_TLS = env_bool("DJANGO_TLS", False)
if SERVED_OVER_TLS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^livez$", r"^readyz$"]
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

LOG_LEVEL = os.environ.get("DJANGO_LOG_LEVEL", "WARNING").strip().upper() or "WARNING"
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise ImproperlyConfigured(
        f"DJANGO_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {LOG_LEVEL!r}"
    )
LOG_FORMAT = os.environ.get("DJANGO_LOG_FORMAT", "").strip().lower() or "text"
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"DJANGO_LOG_FORMAT must be text or json, not {LOG_FORMAT!r}")
LOGGING = logs.logging_config(level=LOG_LEVEL, fmt=LOG_FORMAT)

# Errors to Sentry when a DSN is given (pip install 'chatsite[sentry]').
SENTRY_DSN = os.environ.get("SENTRY_DSN", "").strip()
if SENTRY_DSN:
    try:
        logs.start_error_reporting(
            SENTRY_DSN, environment=os.environ.get("SENTRY_ENVIRONMENT", "production")
        )
    except ImportError:
        raise ImproperlyConfigured(
            "SENTRY_DSN is set but sentry-sdk is not installed: pip install 'chatsite[sentry]'"
        ) from None
    except Exception as error:  # sentry_sdk's BadDsn and the like
        raise ImproperlyConfigured(f"SENTRY_DSN is not a DSN Sentry accepts: {error}") from None
