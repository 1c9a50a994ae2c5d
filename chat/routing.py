"""The WebSocket side, in one step per socket (and the HTTP side's event
streams, chat.sse).

Channels' stack (origin validator, cookie and session middleware, URL router)
copies the scope at each layer and keeps each layer's coroutine alive for the
socket's whole life: about 4 KB per idle socket, measured with tracemalloc on
2000 sockets. This does the same checks once: the Origin must be allowed
(chat.origins: scheme, host and port; or the handshake gets HTTP 403), the
session key comes from the cookie, and the path picks the consumer (any
other path is accepted and closed with 4404).
"""

from __future__ import annotations

import re

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.cookie import parse_cookie

from .consumers import NoRouteConsumer, RoomConsumer
from .origins import origin_allowed

ROOM_PATH = re.compile(r"^/?ws/rooms/(?P<slug>[^/]+)/$")
STREAM_PATH = re.compile(r"^/?sse/rooms/(?P<slug>[^/]+)/$")


def session_key_from(scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            return parse_cookie(value.decode("latin1")).get(settings.SESSION_COOKIE_NAME)
    return None


class WebSocketRouter:
    def __init__(self, *, channel_layer_alias: str | None = None):
        self.channel_layer_alias = channel_layer_alias

    async def __call__(self, scope, receive, send):
        if not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        match = ROOM_PATH.match(scope["path"])
        if match is None:
            return await NoRouteConsumer()(scope, receive, send)
        consumer = RoomConsumer(channel_layer_alias=self.channel_layer_alias)
        consumer.slug = match["slug"]
        consumer.session_key = session_key_from(scope)
        return await consumer(scope, receive, send)


def websocket_application(*, channel_layer_alias: str | None = None):
    return WebSocketRouter(channel_layer_alias=channel_layer_alias)


class HttpRouter:
    """HTTP: a room's event stream (GET /sse/rooms/<slug>/, chat.sse) is a
    consumer of its own, held open for as long as the client reads it;
    everything else, the frames POSTed beside it included, is Django's."""

    def __init__(self, django_app, *, channel_layer_alias: str | None = None):
        self.django_app = django_app
        self.channel_layer_alias = channel_layer_alias

    async def __call__(self, scope, receive, send):
        match = STREAM_PATH.match(scope["path"]) if scope["method"] == "GET" else None
        if match is None:
            return await self.django_app(scope, receive, send)
        from .sse import RoomEventStream

        stream = RoomEventStream(channel_layer_alias=self.channel_layer_alias)
        stream.slug = match["slug"]
        stream.session_key = session_key_from(scope)
        return await stream(scope, receive, send)
