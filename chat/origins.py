"""The WebSocket Origin check: scheme, host and port, not the host alone.

A browser sends the page's origin with every WebSocket handshake; a page on
another origin (another site, or another port of this host) must not open a
socket with the user's cookies. Allowed:

- the socket's own origin: the Origin equals the scheme, host and port the
  handshake was made to (its Host header, and https when the socket is wss or
  when DJANGO_TLS trusts X-Forwarded-Proto), that host being one of
  ALLOWED_HOSTS. This is what makes the default run work: a page on
  http://127.0.0.1:8000 opens ws://127.0.0.1:8000, and nothing else needs
  configuring;
- the origins listed in CHAT_ALLOWED_ORIGINS and CSRF_TRUSTED_ORIGINS, exactly
  (scheme, host, port; `https://*.example.com` for any subdomain), for pages
  served from elsewhere.

Anything else, no Origin at all, and "null" get HTTP 403 at the handshake.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]  # scheme, host, port


def parse_origin(value: str) -> Origin | None:
    """('https', 'chat.example.com', 443) for an http(s) origin, else None."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:  # a port that is not a number, bad brackets…
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme]


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _allowed_hosts() -> list[str]:
    if settings.ALLOWED_HOSTS:
        return settings.ALLOWED_HOSTS
    return [".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else []


def _scheme(scope) -> str:
    """The scheme of the page that would share this socket's origin."""
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        name, secure_value = proxy_header
        header = name.removeprefix("HTTP_").replace("_", "-").lower().encode()
        forwarded = _header(scope, header)
        if forwarded is not None:
            return "https" if forwarded.split(",")[0].strip() == secure_value else "http"
    return "https" if scope.get("scheme") == "wss" else "http"


def own_origin(scope) -> Origin | None:
    """The origin the handshake was made to, if its Host is an allowed one."""
    host = _header(scope, b"host")
    if host is None:
        return None
    domain, port = split_domain_port(host)
    if not domain or not validate_host(domain, _allowed_hosts()):
        return None
    scheme = _scheme(scope)
    try:
        number = int(port) if port else DEFAULT_PORTS[scheme]
    except ValueError:
        return None
    return scheme, domain.strip("[]"), number


def _matches(origin: Origin, trusted: str) -> bool:
    """`trusted` names this origin (`*.` as in CSRF_TRUSTED_ORIGINS: the
    domain and its subdomains)."""
    wildcard = "://*." in trusted
    pattern = parse_origin(trusted.replace("://*.", "://", 1))
    if pattern is None or (origin[0], origin[2]) != (pattern[0], pattern[2]):
        return False
    return is_same_domain(origin[1], f".{pattern[1]}") if wildcard else origin[1] == pattern[1]


def origin_allowed(scope) -> bool:
    header = _header(scope, b"origin")
    origin = parse_origin(header) if header else None
    if origin is None:
        return False
    trusted = [*settings.CHAT_ALLOWED_ORIGINS, *settings.CSRF_TRUSTED_ORIGINS]
    if any(_matches(origin, entry) for entry in trusted):
        return True
    own = own_origin(scope)
    if own is not None:
        return origin == own
    if _header(scope, b"host") is None:
        # No Host header (HTTP/1.0, or an in-process test client): a default
        # port of an allowed host, as Channels' own host-only check would.
        return origin[2] == DEFAULT_PORTS[origin[0]] and validate_host(origin[1], _allowed_hosts())
    return False


class OriginValidator:
    """ASGI middleware: a WebSocket handshake from an origin that is not
    allowed is refused with HTTP 403 before anything else runs."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
