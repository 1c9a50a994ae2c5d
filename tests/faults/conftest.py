"""Faults on real processes: a Redis of the test's own that it kills, stalls
and restarts on the same port, and Daphne workers using it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile

import pytest

from deploy.processes import find_redis_server, free_port, redis_answers, wait_until
from tests.cluster.clients import PRESENCE_TTL
from tests.cluster.conftest import start_workers
from tests.servers import database_url_for_tests


class RedisProcess:
    """A redis-server on a port of its own, which a test can kill (SIGKILL),
    stall and start again on the same port."""

    def __init__(self):
        self.binary = find_redis_server()
        if self.binary is None:
            pytest.skip("no redis-server to kill")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="chat-fault-redis-")
        self.proc: subprocess.Popen | None = None
        version = subprocess.run([self.binary, "--version"], capture_output=True, text=True)
        major = re.search(r"v=(\d+)", version.stdout)
        # DEBUG SLEEP (a stalled Redis) needs Redis 7's switch to allow it.
        self.can_stall = bool(major and int(major[1]) >= 7)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", self.dir]
        if self.can_stall:
            args += ["--enable-debug-command", "local"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: redis_answers(self.url), 10, "redis-server")
        return self

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def shut_down(self) -> None:
        """A graceful stop: Redis closes its clients' connections itself
        (SHUTDOWN NOSAVE), as a `systemctl restart` or a new container does."""
        import redis

        client = redis.Redis(port=self.port)
        try:
            client.shutdown(nosave=True)
        except redis.ConnectionError:  # it closed the connection as it went
            pass
        finally:
            client.close()
        self.proc.wait(10)

    def stall(self, seconds: float) -> subprocess.Popen:
        """Redis answers nobody for `seconds` (it runs DEBUG SLEEP)."""
        cli = shutil.which("redis-cli")
        if not (self.can_stall and cli):
            pytest.skip("stalling needs Redis 7 and redis-cli")
        sleeper = subprocess.Popen(
            [cli, "-p", str(self.port), "DEBUG", "SLEEP", str(seconds)],
            stdout=subprocess.DEVNULL,
        )
        wait_until(lambda: not self._answers_within(0.2), 5, "Redis to stall")
        return sleeper

    def _answers_within(self, seconds: float) -> bool:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis(port=self.port, socket_timeout=seconds, retry=Retry(NoBackoff(), 0))
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def own_redis():
    process = RedisProcess().start()
    yield process
    process.stop()


FAULT_ENV = {
    "CHAT_PRESENCE_TTL": str(PRESENCE_TTL),
    "CHAT_SEQ_WATCH": "0.5",  # a room behind the database is caught up within a second
    "CHAT_SQLITE_LOCK_TIMEOUT": "1",
}


@pytest.fixture
def fault_workers(django_db_setup, own_redis):
    """Two workers on the test's own Redis (on PostgreSQL their connections
    are named, so that a test can cut them)."""
    database_url = database_url_for_tests()
    if database_url.startswith("postgres"):
        database_url += "?application_name=chat-worker"
    env = {**FAULT_ENV, "DATABASE_URL": database_url}
    servers = start_workers(2, redis_url=own_redis.url, extra_env=env)
    yield servers
    for server in servers:
        server.stop()


def ensure_dead(pid: int) -> None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    raise AssertionError(f"process {pid} is still running")
