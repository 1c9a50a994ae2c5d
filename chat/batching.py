"""Work submitted in the same turn of the event loop, done in one call.

In a reconnect storm hundreds of sockets open at once, and each would make
its own trip to the database thread and its own Redis command: the fixed cost
of a trip (a future, a context copy, a thread handoff; packing and parsing a
command) outweighs the work. A Batcher gathers what is submitted before the
loop next runs and hands it over in one call: one trip for the lot. A lone
socket pays nothing extra (its batch is itself, run on the next turn).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


class Batcher:
    def __init__(self, run: Callable[[list], Awaitable[list]], *, limit: int = 200):
        """`run(items)` returns one result per item, in order; a result that
        is an exception is raised to that item's submitter alone."""
        self.run = run
        self.limit = limit
        self.pending: list[tuple[Any, asyncio.Future]] = []

    async def submit(self, item) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.append((item, future))
        if len(self.pending) == 1:
            loop.call_soon(self._flush)
        elif len(self.pending) >= self.limit:
            self._flush()
        return await future

    def _flush(self) -> None:
        if self.pending:
            batch, self.pending = self.pending, []
            asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        try:
            results = await self.run([item for item, _ in batch])
        except BaseException as error:  # the whole trip failed: every submitter hears it
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue  # its socket went away meanwhile
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
