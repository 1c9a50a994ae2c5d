"""Login sessions and the sockets opened with them."""

from __future__ import annotations

from .. import events


def end_session(*, session_key: str) -> None:
    """Close every socket opened with this login session (logout)."""
    events.send_sync(events.session_group(session_key), events.socket_close(4401))
