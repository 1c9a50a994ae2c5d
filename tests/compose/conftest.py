"""The compose scaling test: docker-compose.yml for real, three web replicas
behind nginx, driven from outside over HTTP and WebSockets.

Skipped by `make test` (it needs Docker and minutes); `make compose-test`
runs it (CHAT_COMPOSE_TEST=1). It starts dockerd when no engine answers and
stops it afterwards, uses real base images when they can be pulled and local
stand-ins otherwise (deploy/images.py), and ends with `docker compose down -v`.
A failing step prints the end of every container's log.
"""

from __future__ import annotations

import os
import sys
import time

import pytest

from deploy.images import ensure_base_images

from .engine import Engine
from .stack import bring_up, new_stack, remove_leftovers, stop_stack

ENABLED = os.environ.get("CHAT_COMPOSE_TEST") == "1"


def say(text: str) -> None:
    print(f"[compose-test {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def pytest_collection_modifyitems(config, items):
    if ENABLED:
        return
    skip = pytest.mark.skip(reason="needs Docker: run it with `make compose-test`")
    for item in items:
        if "tests/compose/" in item.nodeid:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.failed and stack is not None:
        report.sections.append(("container logs", stack.report()))


@pytest.fixture(scope="session")
def engine():
    with Engine(say=say) as running:
        yield running


@pytest.fixture(scope="session")
def stack(engine):
    remove_leftovers(say)
    started = time.monotonic()
    ensure_base_images()
    say(f"base images ready in {time.monotonic() - started:.0f}s")
    running = new_stack()
    try:
        try:
            bring_up(running, say)
        except Exception as error:
            raise RuntimeError(f"the stack did not come up: {error}\n{running.report()}") from None
        yield running
    finally:
        stop_stack(running, say)
