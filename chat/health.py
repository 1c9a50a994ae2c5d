"""Health probes, each check bounded by CHAT_HEALTH_TIMEOUT.

- liveness (/livez): the process answers; no I/O at all.
- health (/healthz, the contract's): the database answers a query and the
  channel layer's Redis answers a PING.
- readiness (/readyz): the worker can do its job: it is not draining after a
  SIGTERM, the database takes a write transaction and answers a read, and
  Redis answers.

Checks run concurrently, and a check that has not answered by the deadline
counts as failed: a stalled Redis or a locked database gives 503 within the
timeout instead of hanging the probe. Database checks run on a thread of their
own with a fresh connection (never the thread that serves sync views, which a
stuck query would block) and with the database's own timeouts set to the
deadline, so that the thread is free again soon after. What failed and why
goes to the log; the answer names only the check and "error" or "timeout".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import nullcontext

import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from . import shutdown
from .models import Room

logger = logging.getLogger(__name__)

Check = Callable[[float], Awaitable[None]]


def _with_fresh_connection(query: Callable[[float], None]) -> Check:
    """Run `query(timeout)` on a worker thread of its own, and close that
    thread's connection afterwards (nothing lingers for the next probe)."""

    def run(timeout: float) -> None:
        try:
            query(timeout)
        finally:
            connection.close()

    return sync_to_async(run, thread_sensitive=False)


def _set_database_timeouts(cursor, timeout: float) -> None:
    """SQLite: wait at most `timeout` for a lock (the connection is closed
    after the probe). PostgreSQL: statement and lock timeouts for the current
    transaction only."""
    milliseconds = max(1, int(timeout * 1000))
    if connection.vendor == "sqlite":
        cursor.execute(f"PRAGMA busy_timeout = {milliseconds}")
    elif connection.vendor == "postgresql":
        cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(milliseconds)])
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [str(milliseconds)])


def _database_answers(timeout: float) -> None:
    # Not in a transaction on SQLite, where BEGIN IMMEDIATE would wait for the
    # write lock that a read does not need.
    with transaction.atomic() if connection.vendor != "sqlite" else nullcontext():
        with connection.cursor() as cursor:
            _set_database_timeouts(cursor, timeout)
            cursor.execute("SELECT 1")


def _database_takes_writes(timeout: float) -> None:
    """A write transaction (on SQLite, BEGIN IMMEDIATE takes the write lock)
    running a write statement that matches no row, and a read; rolled back."""
    if connection.vendor == "sqlite":  # set before BEGIN IMMEDIATE waits for the lock
        with connection.cursor() as cursor:
            _set_database_timeouts(cursor, timeout)
    with transaction.atomic():
        with connection.cursor() as cursor:
            _set_database_timeouts(cursor, timeout)
        Room.objects.filter(pk__lt=0).update(last_seq=F("last_seq"))
        Room.objects.order_by().values_list("pk", flat=True).first()
        transaction.set_rollback(True)


async def _redis_answers(timeout: float) -> None:
    client = aioredis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),  # one try: a retry would outlast the deadline
    )
    try:
        await client.ping()
    finally:
        await client.aclose()


async def _ok(timeout: float) -> None:
    """The in-memory channel layer lives in this process: it always answers."""


async def _outcome(name: str, check: Check, timeout: float) -> str:
    try:
        await asyncio.wait_for(check(timeout), timeout)
    except TimeoutError:
        logger.warning("health check %r gave no answer within %.2f s", name, timeout)
        return "timeout"
    except Exception:
        logger.warning("health check %r failed", name, exc_info=True)
        return "error"
    return "ok"


async def run_checks(checks: dict[str, Check]) -> dict[str, str]:
    """{check name: "ok" | "error" | "timeout"}, all within one timeout."""
    timeout = settings.CHAT_HEALTH_TIMEOUT
    outcomes = await asyncio.gather(
        *(_outcome(name, check, timeout) for name, check in checks.items())
    )
    return dict(zip(checks, outcomes, strict=True))


def _redis_check() -> Check:
    return _redis_answers if settings.REDIS_URL else _ok


def health_checks() -> dict[str, Check]:
    return {
        "database": _with_fresh_connection(_database_answers),
        "channel_layer": _redis_check(),
    }


async def _not_draining(timeout: float) -> None:
    if shutdown.draining():
        raise RuntimeError("draining after SIGTERM")


def readiness_checks() -> dict[str, Check]:
    return {
        "accepting": _not_draining,
        "database": _with_fresh_connection(_database_takes_writes),
        "redis": _redis_check(),
    }
