"""WebSocket authentication by the Django session cookie.

The middleware only attaches the session (not loaded yet); the consumer
resolves the user together with its room access check in one query
(chat.selectors.socket_access). Channels' AuthMiddlewareStack loads the
user in a trip of its own, and wraps `send` so that it can save a modified
session on every outgoing frame: a chat socket never modifies its session,
and that wrapper was about 8% of the CPU per delivered message when profiled.
"""

from channels.sessions import CookieMiddleware
from django.conf import settings
from django.utils.module_loading import import_string


class SessionAuthMiddleware:
    def __init__(self, inner):
        self.inner = inner
        self.session_store = import_string(settings.SESSION_ENGINE).SessionStore

    async def __call__(self, scope, receive, send):
        session_key = scope.get("cookies", {}).get(settings.SESSION_COOKIE_NAME)
        scope = dict(scope, session=self.session_store(session_key))
        return await self.inner(scope, receive, send)


def SessionAuthMiddlewareStack(inner):  # noqa: N802 (named like Channels' stacks)
    return CookieMiddleware(SessionAuthMiddleware(inner))
