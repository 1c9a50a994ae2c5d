"""Sockets follow what let them in: when a session ends, a password changes,
a membership of a private room goes, a room turns private or is deleted, the
sockets that depended on it are closed on every worker, once the change has
committed.

A socket whose access may still hold (a password change keeps the session it
was made in; a member of a room turned private stays a member) is asked to
reconnect (4000) and is checked again on the way back in; one whose access is
gone for certain is closed with 4401 or 4403.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.sessions.backends.cached_db import KEY_PREFIX as CACHED_SESSION_PREFIX
from django.core.cache import caches

from .. import events
from ..events import Close
from ..redis import unless_redis_is_away


def session_deleted(*, session_key: str) -> None:
    """A session row was deleted (the admin, a script): it must not live on in
    the session cache, and its sockets close. With Redis away the cache
    copy cannot be deleted (a copy that outlives a stall is served until
    it expires); the deletion itself goes through rather than failing the
    logout or the password change that made it."""
    with unless_redis_is_away("deleted session left in the session cache"):
        caches[settings.SESSION_CACHE_ALIAS].delete(CACHED_SESSION_PREFIX + session_key)
    events.send_on_commit(
        events.CONTROL_GROUP,
        events.close_sockets(code=Close.SESSION_ENDED, session_key=session_key),
    )


def password_changed(*, user_id: int) -> None:
    """Every other session of the user is void now (Django checks a hash of
    the password); the sockets reconnect and are checked again."""
    events.send_on_commit(
        events.CONTROL_GROUP, events.close_sockets(code=Close.RECONNECT, user_id=user_id)
    )


def membership_removed(*, room_id: int, user_id: int, room_is_private: bool) -> None:
    """Out of a private room: the user's sockets there close (4403)."""
    if room_is_private:
        events.send_on_commit(
            events.room_group(room_id),
            events.room_close(room_id, code=Close.NO_ACCESS, user_id=user_id),
        )


def room_became_private(*, room_id: int) -> None:
    """Every socket in the room reconnects; members get back in, others get 4403."""
    events.send_on_commit(
        events.room_group(room_id), events.room_close(room_id, code=Close.RECONNECT)
    )


def room_deleted(*, room_id: int) -> None:
    events.send_on_commit(
        events.room_group(room_id), events.room_close(room_id, code=Close.NO_ACCESS)
    )
