"""This process's Redis clients for presence and limits: one asyncio client
per event loop (redis.asyncio clients belong to one loop; tests run several)
and one blocking client, each with its own connection pool.

Connections are health-checked before use after being idle, and a command
that fails on a dead pooled connection (Redis restarted) is retried on a new
one, so a Redis restart costs a retry, not an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

# A stalled Redis makes a command fail after this many seconds instead of
# hanging the caller (a timeout is not retried: the command may have run).
TIMEOUT = 1.0
# Connections per pool: a burst (a reconnect storm, a worker's sockets all
# closing) waits for a free one (up to TIMEOUT) instead of opening hundreds.
MAX_CONNECTIONS = 32

logger = logging.getLogger(__name__)

_async_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_sync_clients: dict[str, redis.Redis] = {}
_lock = threading.Lock()


def _options() -> dict:
    return {
        "socket_timeout": TIMEOUT,
        "socket_connect_timeout": TIMEOUT,
        "health_check_interval": 10,
    }


def async_client(url: str) -> redis.asyncio.Redis:
    clients = _async_clients.setdefault(asyncio.get_running_loop(), {})
    client = clients.get(url)
    if client is None:
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=TIMEOUT, **_options()
        )
        retry = AsyncRetry(ExponentialBackoff(cap=0.5, base=0.05), 2, (redis.ConnectionError,))
        client = clients[url] = redis.asyncio.Redis(connection_pool=pool, retry=retry)
    return client


def sync_client(url: str) -> redis.Redis:
    with _lock:
        client = _sync_clients.get(url)
        if client is None:
            pool = redis.BlockingConnectionPool.from_url(
                url, max_connections=MAX_CONNECTIONS, timeout=TIMEOUT, **_options()
            )
            retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), 2, (redis.ConnectionError,))
            client = _sync_clients[url] = redis.Redis(connection_pool=pool, retry=retry)
        return client


@contextlib.contextmanager
def unless_redis_is_away(what: str):
    """Run the block; if Redis fails it (down, stalled, restarting), log
    that `what` did not happen and carry on. For the counters that protect
    the service (budgets, throttles): while Redis is away they fail open, so
    that an outage of the counters is not an outage of chat or of logins."""
    try:
        yield
    except redis.RedisError:
        logger.warning("%s: Redis unavailable", what)
