"""Several real Daphne workers sharing one Redis and one database.

`workers` starts three workers once per module; `open_client` connects an
authenticated WebSocket client (tests/cluster/clients.py) to any of them and
records every frame it receives, so that a test waits for the frame it expects
(with a timeout) and then checks the whole stream.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import use_redis
from tests.servers import RUN_PREFIX, DaphneServer, database_url_for_tests

from .clients import PRESENCE_TTL, client_pool


def start_workers(count: int, *, redis_url: str, extra_env: dict) -> list[DaphneServer]:
    """Start `count` Daphne workers at once (each takes a second or two)."""
    servers = [
        DaphneServer(
            database_url=database_url_for_tests(), redis_url=redis_url, extra_env=extra_env
        )
        for _ in range(count)
    ]
    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(server.start) for server in servers]
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        for server in servers:
            server.stop()
        raise errors[0]
    return servers


def worker_environment() -> dict:
    """A short presence expiry, so that a killed worker's users drop out
    quickly. (DaphneServer passes this process's secret key and a Redis prefix
    of this run's own itself.)"""
    return {"CHAT_PRESENCE_TTL": str(PRESENCE_TTL)}


@pytest.fixture(scope="module")
def worker_env():
    return worker_environment()


@pytest.fixture(scope="module")
def workers(django_db_setup, redis_url, worker_env):
    """Three Daphne workers on one Redis and the test database."""
    servers = start_workers(3, redis_url=redis_url, extra_env=worker_env)
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def spare_worker(workers, redis_url, worker_env):
    """One more worker, for a test that kills it."""
    (server,) = start_workers(1, redis_url=redis_url, extra_env=worker_env)
    yield server
    server.stop()


@pytest.fixture
def as_a_worker(settings, redis_url):
    """This process on the workers' Redis, under their prefix: what it changes
    through the ORM (as the admin or a shell on any worker would) reaches the
    workers, as events on their channel layer and in their session cache."""
    use_redis(settings, redis_url, prefix=RUN_PREFIX)


@pytest.fixture
async def open_client():
    """await open_client(member, server, slug, after=None) -> ChatClient, once
    its `hello` and `history` have arrived. Every client is closed at the end."""
    async with client_pool() as open_one:

        async def open_on(member, server: DaphneServer, slug: str, after: int | None = None):
            return await open_one(member, server.ws, slug, after)

        yield open_on
