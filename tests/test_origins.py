"""The WebSocket Origin check compares scheme, host and port: a page of the
same server works in the default run, a page on another port does not (on a
real Daphne worker too)."""

from __future__ import annotations

import pytest
import websockets
from websockets.sync.client import connect as ws_connect

from chat.origins import origin_allowed, parse_origin
from tests.servers import DaphneServer, database_url_for_tests, free_port


def scope(origin=None, host=None, scheme="ws", **headers):
    pairs = []
    if origin is not None:
        pairs.append((b"origin", origin.encode()))
    if host is not None:
        pairs.append((b"host", host.encode()))
    pairs += [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()]
    return {"type": "websocket", "scheme": scheme, "headers": pairs}


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
        ("http://localhost:8000", "localhost:8000", True),
        ("http://127.0.0.1:9999", "127.0.0.1:8000", False),  # another port of the same host
        ("https://127.0.0.1:8000", "127.0.0.1:8000", False),  # another scheme
        ("http://localhost:8000", "127.0.0.1:8000", False),  # another host
        ("http://evil.example:8000", "evil.example:8000", False),  # Host not allowed
        ("http://127.0.0.1", "127.0.0.1:80", True),  # default ports
        ("http://127.0.0.1:80", "127.0.0.1", True),
        ("null", "127.0.0.1:8000", False),
        ("http://127.0.0.1:x", "127.0.0.1:8000", False),
        ("http://127.0.0.1:8000/path", "127.0.0.1:8000", False),
        (None, "127.0.0.1:8000", False),
    ],
)
def test_same_origin_means_scheme_host_and_port(origin, host, allowed):
    assert origin_allowed(scope(origin, host)) is allowed


def test_a_wss_socket_belongs_to_https_pages():
    assert origin_allowed(scope("https://localhost:8443", "localhost:8443", scheme="wss"))
    assert not origin_allowed(scope("http://localhost:8443", "localhost:8443", scheme="wss"))


def test_behind_a_tls_proxy_the_forwarded_scheme_counts_when_trusted(settings):
    page = "https://localhost"
    socket = scope(page, "localhost", x_forwarded_proto="https")
    assert not origin_allowed(socket)  # not trusted without DJANGO_TLS
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert origin_allowed(socket)
    assert not origin_allowed(scope("http://localhost", "localhost", x_forwarded_proto="https"))


def test_listed_origins_are_allowed_exactly(settings):
    settings.CHAT_ALLOWED_ORIGINS = ["https://chat.example.com", "http://127.0.0.1:3000"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://*.example.org"]
    for origin in [
        "https://chat.example.com",
        "http://127.0.0.1:3000",
        "https://a.example.org",
        "https://example.org",
    ]:
        assert origin_allowed(scope(origin, "127.0.0.1:8000")), origin
    for origin in [
        "http://chat.example.com",
        "https://chat.example.com:8443",
        "http://127.0.0.1:3001",
        "https://example.org.evil.example",
    ]:
        assert not origin_allowed(scope(origin, "127.0.0.1:8000")), origin


def test_without_a_host_header_only_default_ports_of_allowed_hosts():
    assert origin_allowed(scope("http://localhost"))
    assert not origin_allowed(scope("http://localhost:9999"))
    assert not origin_allowed(scope("http://evil.example"))


def test_parse_origin():
    assert parse_origin("https://Chat.Example.com") == ("https", "chat.example.com", 443)
    assert parse_origin("http://[::1]:8000") == ("http", "::1", 8000)
    assert parse_origin("ftp://example.com") is None


def test_the_check_runs_in_front_of_the_consumer(settings):
    from chat.routing import websocket_application
    from chatsite.asgi import application  # noqa: F401  (the real stack imports)

    app = websocket_application()
    assert type(app).__name__ == "OriginValidator"


# ---------------------------------------------------------------- real Daphne


def handshake_status(url: str, origin: str) -> int:
    """101 if the handshake was accepted (the socket then closes with 4401:
    no session), else the HTTP status it was refused with."""
    try:
        with ws_connect(url, origin=origin, open_timeout=10) as socket:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                socket.recv(timeout=10)
            assert closed.value.rcvd.code == 4401
            return 101
    except websockets.InvalidStatus as error:
        return error.response.status_code


@pytest.mark.django_db(transaction=True)
def test_on_a_real_worker_only_a_page_of_the_same_port_opens_a_socket(room):
    server = DaphneServer(database_url=database_url_for_tests(), redis_url=None).start()
    try:
        url = f"{server.ws}/ws/rooms/{room.slug}/"
        assert handshake_status(url, server.http) == 101
        assert handshake_status(url, f"http://localhost:{server.port}") == 403  # another host
        by_name = f"ws://localhost:{server.port}/ws/rooms/{room.slug}/"
        assert handshake_status(by_name, f"http://localhost:{server.port}") == 101
        other_port = free_port()
        assert handshake_status(url, f"http://127.0.0.1:{other_port}") == 403
        assert handshake_status(url, f"https://127.0.0.1:{server.port}") == 403
        assert handshake_status(url, "http://evil.example") == 403
    finally:
        server.stop()
