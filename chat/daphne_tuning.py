"""Two per-connection costs of autobahn (Daphne's WebSocket layer) that a
chat server with thousands of sockets should not pay, measured on a storm of
2000 connects (../shared/bench, MODE=connect) with py-spy and tracemalloc:

- Every new connection pretty-prints its whole configuration for a debug log
  line, logged or not: about 6% of the CPU of a connect. The text is now made
  only if something reads it.
- Every connection copies the ~40 settings of its factory into its own
  attribute dict, although they are the same for all of them. Set once on
  the protocol class, `_connectionMade` finds them there and copies nothing.

Both are applied when the first socket opens (`tune(protocol)`); a change in
autobahn that removes what they rely on leaves them without effect, never
broken (see tests/test_sockets.py).
"""

from __future__ import annotations

import logging
from pprint import pformat

logger = logging.getLogger(__name__)

_tuned: set[type] = set()


class DeferredPformat(str):
    """pformat(obj) as a str that computes its text only when used."""

    def __new__(cls, obj, *args, **kwargs):
        text = super().__new__(cls, "")
        text.obj = obj
        return text

    def __str__(self) -> str:
        return pformat(self.obj)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def tune(protocol) -> None:
    """Apply both to the class of this (Daphne) WebSocket protocol, once."""
    cls = type(protocol)
    if cls in _tuned:
        return
    _tuned.add(cls)
    try:
        import autobahn.websocket.protocol as autobahn_protocol

        if getattr(autobahn_protocol, "pformat", None) is pformat:
            autobahn_protocol.pformat = DeferredPformat
        factory = protocol.factory
        for name in getattr(cls, "CONFIG_ATTRS", ()):
            if name not in cls.__dict__ and hasattr(factory, name):
                value = getattr(factory, name)
                # A function (perMessageCompressionAccept) on a class would
                # become a method and get the protocol as its first argument.
                setattr(cls, name, staticmethod(value) if callable(value) else value)
    except Exception:  # an autobahn that looks otherwise: leave it as it is
        logger.warning("autobahn tuning skipped", exc_info=True)
