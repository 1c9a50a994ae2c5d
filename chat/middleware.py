"""WebSocket authentication by the Django session cookie, resolved once.

Channels' AuthMiddlewareStack wraps `send` so that it can save a modified
session on every outgoing frame; a chat socket never modifies its session,
and that wrapper was about 8% of the CPU per delivered message when profiled.
This middleware loads the session and the user at connect and leaves `send`
alone.
"""

from channels.auth import get_user
from channels.sessions import CookieMiddleware
from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.utils.module_loading import import_string


class SessionAuthMiddleware:
    def __init__(self, inner):
        self.inner = inner
        self.session_store = import_string(settings.SESSION_ENGINE).SessionStore

    async def __call__(self, scope, receive, send):
        session_key = scope.get("cookies", {}).get(settings.SESSION_COOKIE_NAME)
        session: SessionBase = self.session_store(session_key)
        scope = dict(scope, session=session)
        scope["user"] = await get_user(scope)  # AnonymousUser without a valid session
        return await self.inner(scope, receive, send)


def SessionAuthMiddlewareStack(inner):  # noqa: N802 (named like Channels' stacks)
    return CookieMiddleware(SessionAuthMiddleware(inner))
