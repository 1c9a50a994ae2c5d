"""Liveness, health and readiness: every check answers within
CHAT_HEALTH_TIMEOUT, also against a stalled Redis (a real redis-server in
DEBUG SLEEP, behind a real Daphne worker) and a locked database, and a
failure names the check, never an address or a driver's error."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
import urllib.error
import urllib.request

import pytest
import redis
from django.db import connection
from django.test import Client

from chat import shutdown
from tests.servers import DaphneServer, database_url_for_tests, free_port, redis_server, wait_until

DEADLINE = 2.0  # seconds: what "answers at once" means for a probe with a 1 s timeout


@pytest.fixture
def client():
    return Client(HTTP_HOST="localhost")


def timed_get(client, path):
    started = time.monotonic()
    response = client.get(path)
    return response, time.monotonic() - started


def test_livez_answers_without_touching_the_database(client):
    # No django_db mark: any database query here would fail the test.
    response = client.get("/livez")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


# transaction=True throughout: a test wrapped in a transaction holds SQLite's
# write lock, which the readiness probe would (rightly) report.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_ok_is_exactly_the_contracts_body(client, path):
    response = client.get(path)
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db(transaction=True)
def test_readyz_checks_redis_when_configured(client, redis_layer):
    assert client.get("/readyz").json() == {"status": "ok"}


@pytest.mark.django_db(transaction=True)
def test_a_failure_names_the_check_and_logs_the_details(client, settings, caplog):
    port = free_port()  # nothing listens there
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    for path, check in [("/healthz", "channel_layer"), ("/readyz", "redis")]:
        response, elapsed = timed_get(client, path)
        assert response.status_code == 503 and elapsed < DEADLINE
        assert response.json() == {"status": "error", check: "error"}
        assert str(port) not in response.content.decode()
    assert f"127.0.0.1:{port}" in caplog.text  # the operator's details are in the log


@contextlib.contextmanager
def database_write_lock():
    """Another connection holds the database's write lock (SQLite) or an
    exclusive lock on the rooms table (PostgreSQL) until the block ends."""
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        other = sqlite3.connect(settings_dict["NAME"], isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
    else:
        import psycopg

        other = psycopg.connect(database_url_for_tests())
        other.execute("LOCK TABLE chat_room IN ACCESS EXCLUSIVE MODE")
    try:
        yield
    finally:
        other.rollback()
        other.close()


@pytest.mark.django_db(transaction=True)
def test_a_locked_database_is_not_ready_at_once_but_still_answers(client):
    with database_write_lock():
        response, elapsed = timed_get(client, "/readyz")
        assert response.status_code == 503, response.content
        assert response.json()["database"] in ("error", "timeout")
        assert elapsed < DEADLINE, f"/readyz took {elapsed:.2f}s against a locked database"
        # The contract's /healthz: the database still answers queries.
        health, elapsed = timed_get(client, "/healthz")
        assert health.status_code == 200 and elapsed < DEADLINE
    assert client.get("/readyz").json() == {"status": "ok"}


def http_get(url: str) -> tuple[int, dict, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    return status, json.loads(body), time.monotonic() - started


@pytest.fixture
def stallable_redis():
    try:
        with redis_server("--enable-debug-command", "local") as url:
            yield url
    except RuntimeError as error:  # Redis before 7 has no --enable-debug-command
        pytest.skip(f"no redis-server that allows DEBUG SLEEP: {error}")


@pytest.mark.django_db(transaction=True)
def test_a_stalled_redis_gives_503_within_the_timeout_on_a_real_worker(stallable_redis):
    server = DaphneServer(
        database_url=database_url_for_tests(),
        redis_url=stallable_redis,
        extra_env={"CHAT_HEALTH_TIMEOUT": "1"},
    ).start()
    stall = threading.Thread(
        target=lambda: redis.Redis.from_url(stallable_redis).execute_command("DEBUG", "SLEEP", 5)
    )
    try:
        assert http_get(server.http + "/readyz")[:2] == (200, {"status": "ok"})
        stall.start()
        probe = redis.Redis.from_url(stallable_redis, socket_timeout=0.2)
        wait_until(lambda: _stalled(probe), 5, "Redis to stall")

        status, body, elapsed = http_get(server.http + "/healthz")
        assert (status, body) == (503, {"status": "error", "channel_layer": "timeout"})
        assert elapsed < DEADLINE, f"/healthz took {elapsed:.2f}s against a stalled Redis"
        status, body, elapsed = http_get(server.http + "/readyz")
        assert (status, body) == (503, {"status": "error", "redis": "timeout"})
        assert elapsed < DEADLINE, f"/readyz took {elapsed:.2f}s against a stalled Redis"
        status, body, elapsed = http_get(server.http + "/livez")
        assert (status, body) == (200, {"status": "ok"}) and elapsed < 0.5

        stall.join(10)
        wait_until(lambda: http_get(server.http + "/healthz")[0] == 200, 5, "health to come back")
    finally:
        server.stop()
        if stall.ident is not None:  # started
            stall.join(10)


def _stalled(probe) -> bool:
    try:
        probe.ping()
    except redis.TimeoutError:
        return True
    return False


@pytest.mark.django_db(transaction=True)
def test_a_draining_worker_is_alive_but_not_ready(client):
    # After SIGTERM, kept-alive connections still reach the worker: the room
    # page asks /readyz before falling back to the event stream, and must
    # not take a worker on its way out for a WebSocket-blocking network.
    shutdown.start_draining()  # the fixtures' reset ends it after the test
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "error", "accepting": "error"}
    assert client.get("/livez").status_code == 200


def _sessions_opened(database: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", [database])
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_worker_on_postgresql_reuses_pooled_connections():
    # Django's persistent connections belong to threads, which come and go
    # under ASGI: 100 health probes opened 87 connections. The pool keeps a
    # handful per worker.
    if connection.vendor != "postgresql":
        pytest.skip("the connection pool is PostgreSQL's (CI runs the suite on it too)")
    server = DaphneServer(database_url=database_url_for_tests(), redis_url="").start()
    try:
        database = connection.settings_dict["NAME"]
        assert http_get(server.http + "/healthz")[:2] == (200, {"status": "ok"})
        before = _sessions_opened(database)
        for _ in range(100):
            assert http_get(server.http + "/healthz")[0] == 200
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_clear_snapshot()")
        opened = _sessions_opened(database) - before
    finally:
        server.stop()
    assert opened <= 8, f"100 probes opened {opened} database connections"
