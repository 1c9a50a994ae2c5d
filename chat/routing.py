from channels.routing import URLRouter
from django.urls import re_path

from .consumers import NoRouteConsumer, RoomConsumer
from .middleware import SessionAuthMiddlewareStack
from .origins import OriginValidator


def websocket_application(**consumer_kwargs):
    """The WebSocket side: the Origin must be an allowed origin, scheme, host
    and port (chat.origins; or the handshake gets HTTP 403), then session
    authentication, then routing."""
    routes = [
        re_path(r"^ws/rooms/(?P<slug>[^/]+)/$", RoomConsumer.as_asgi(**consumer_kwargs)),
        # Any other path: a documented close code, not an HTTP 500.
        re_path(r"", NoRouteConsumer.as_asgi()),
    ]
    return OriginValidator(SessionAuthMiddlewareStack(URLRouter(routes)))
