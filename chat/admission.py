"""Who may open a socket in a room: the session's user and the room access,
checked in the database thread, for every socket opening at the same moment
in one trip (the hub's `authorizer` batches them)."""

from __future__ import annotations

import functools

from django.conf import settings
from django.utils.module_loading import import_string

from . import selectors, services


def authorize(session_key: str | None, slug: str) -> selectors.SocketAccess | None:
    """User and room access for a socket, in one query; None when not logged
    in; RoomNotFound when the room is not for this user. A public room's
    visitor becomes a member. Blocking: the hub runs it in the database
    thread, for every socket opening at the same moment in one trip."""
    access = selectors.socket_access(session=_session_store(session_key), slug=slug)
    if access is not None and not access.is_member:
        services.join_room(room=access.room, user=access.user)
    return access


def authorize_many(sockets: list[tuple[str | None, str]]) -> list:
    """authorize() for each (session key, slug): its access, or its error."""
    results = []
    for session_key, slug in sockets:
        try:
            results.append(authorize(session_key, slug))
        except Exception as error:
            results.append(error)
    return results


@functools.cache
def _session_store_class():
    return import_string(settings.SESSION_ENGINE).SessionStore


def _session_store(session_key: str | None):
    """The session (not loaded yet): built where it is read, in the database
    thread, and not kept by the socket."""
    return _session_store_class()(session_key)
