"""Log lines from a configured process: time, level, worker and logger in
text or as JSON lines; errors to Sentry when SENTRY_DSN is set."""

from __future__ import annotations

import gzip
import http.server
import json
import re
import threading

import pytest

from tests.servers import run_python

LOG_SOME = """
import logging, django
django.setup()
log = logging.getLogger("chat.example")
log.info("not at the default level")
log.warning("room %s is busy", "lobby", extra={"room": "lobby"})
try:
    1 / 0
except ZeroDivisionError:
    log.exception("it broke")
"""


def _log(env: dict) -> list[str]:
    result = run_python("-c", LOG_SOME, env={"DJANGO_SETTINGS_MODULE": "chatsite.settings", **env})
    assert result.returncode == 0, result.stderr
    return result.stderr.splitlines()


def test_text_lines_say_when_how_bad_which_worker_and_where():
    lines = _log({"CHAT_WORKER_ID": "w7"})
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING \[w7\] chat\.example: room lobby is busy",
        lines[0],
    ), lines
    assert re.match(r"\S+ \S+ ERROR \[w7\] chat\.example: it broke$", lines[1]), lines
    assert "ZeroDivisionError" in lines[-1]
    assert not any("not at the default level" in line for line in lines)


def test_json_lines_carry_the_same_and_the_extra_fields():
    lines = _log({"DJANGO_LOG_FORMAT": "json", "DJANGO_LOG_LEVEL": "INFO"})
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    info, warning, error = entries
    assert info["level"] == "INFO" and info["logger"] == "chat.example"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", warning["time"])
    assert warning["message"] == "room lobby is busy" and warning["room"] == "lobby"
    assert re.fullmatch(r".+:\d+", warning["worker"])  # host:pid without CHAT_WORKER_ID
    assert error["level"] == "ERROR" and "ZeroDivisionError" in error["exception"]


class _Collector(http.server.BaseHTTPRequestHandler):
    received: list[bytes] = []
    arrived = threading.Event()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.received.append(body)
        self.arrived.set()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def sentry_collector():
    """An HTTP server where a Sentry DSN can point: what Sentry would receive."""
    pytest.importorskip("sentry_sdk")
    _Collector.received = []
    _Collector.arrived = threading.Event()
    server = http.server.HTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_errors_go_to_sentry_when_a_dsn_is_set(sentry_collector):
    port = sentry_collector.server_address[1]
    code = LOG_SOME + "\nimport sentry_sdk\nsentry_sdk.flush(5)\n"
    result = run_python(
        "-c",
        code,
        env={
            "DJANGO_SETTINGS_MODULE": "chatsite.settings",
            "SENTRY_DSN": f"http://publickey@127.0.0.1:{port}/1",
        },
    )
    assert result.returncode == 0, result.stderr
    assert _Collector.arrived.wait(5), "nothing reached the Sentry endpoint"
    sent = b"".join(_Collector.received).decode()
    assert "it broke" in sent and "ZeroDivisionError" in sent


def test_a_dsn_without_sentry_installed_is_one_clear_error(tmp_path):
    # A sentry_sdk that cannot be imported, first on the path: as if not installed.
    (tmp_path / "sentry_sdk").mkdir()
    (tmp_path / "sentry_sdk" / "__init__.py").write_text("raise ImportError('not installed')")
    result = run_python(
        "manage.py",
        "check",
        env={"PYTHONPATH": str(tmp_path), "SENTRY_DSN": "http://publickey@127.0.0.1:9/1"},
    )
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line == (
        "django.core.exceptions.ImproperlyConfigured: SENTRY_DSN is set but sentry-sdk "
        "is not installed: pip install 'chatsite[sentry]'"
    )
