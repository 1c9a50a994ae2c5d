"""A gentle SIGTERM for Daphne workers.

Left to Twisted, SIGTERM stops the reactor at once: every socket drops
without a close frame (1006) and this worker's users stay "online" until
their presence entries expire. Instead, on SIGTERM the worker stops accepting
connections, closes every socket with 1012 (service restart: pages reconnect
at once, to another worker), closes its presence entries so that `leave`
goes out now, and then lets Twisted stop as before, within a few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

logger = logging.getLogger(__name__)

_installed = False
_draining = False


def draining() -> bool:
    """Whether this worker got SIGTERM and is closing its sockets."""
    return _draining


def start_draining() -> None:
    """From now on this worker is on its way out: /readyz answers 503."""
    global _draining
    _draining = True


def reset() -> None:
    """Forget a drain (tests; the SIGTERM handler, once installed, stays)."""
    global _draining
    _draining = False


def _reactor():
    """Twisted's reactor if it is already running this process (Daphne);
    never imported here, which would install one."""
    reactor = sys.modules.get("twisted.internet.reactor")
    return reactor if getattr(reactor, "running", False) else None


def install(hub) -> None:
    """Take over SIGTERM for the process running `hub` (once; not outside Daphne)."""
    global _installed
    if _installed or _reactor() is None:
        return
    previous = signal.getsignal(signal.SIGTERM)
    loop = hub.loop

    def on_sigterm(signum, frame):
        loop.call_soon_threadsafe(lambda: loop.create_task(_drain_then(previous, signum, frame)))

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread
        return
    _installed = True


async def _drain_then(previous, signum, frame) -> None:
    from . import hub as hubs

    start_draining()
    logger.warning("SIGTERM: closing every socket with 1012, then stopping")
    _stop_listening()
    try:
        await asyncio.wait_for(
            asyncio.gather(*(hub.drain() for hub in hubs.running_hubs())), timeout=5
        )
    except Exception:
        logger.exception("draining did not finish; stopping anyway")
    if callable(previous):
        previous(signum, frame)
    else:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)


def _stop_listening() -> None:
    """Close the listening sockets: new connections go to other workers."""
    reactor = _reactor()
    if reactor is None:
        return
    from twisted.internet import tcp, unix

    for reader in reactor.getReaders():
        if isinstance(reader, tcp.Port | unix.Port):
            reader.stopListening()
