"""Login sessions and the sockets opened with them."""

from __future__ import annotations

from .. import events


def end_session(*, session_key: str) -> None:
    """Close every socket opened with this login session (logout)."""
    events.send_sync(
        events.CONTROL_GROUP,
        events.close_sockets(code=events.Close.SESSION_ENDED, session_key=session_key),
    )
