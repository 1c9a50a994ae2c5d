from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import re_path

from .consumers import RoomConsumer
from .middleware import SessionAuthMiddlewareStack


def websocket_application(**consumer_kwargs):
    """The WebSocket side: the Origin must name an allowed host (or the
    handshake gets HTTP 403), then session authentication, then routing."""
    return AllowedHostsOriginValidator(
        SessionAuthMiddlewareStack(
            URLRouter(
                [re_path(r"^ws/rooms/(?P<slug>[^/]+)/$", RoomConsumer.as_asgi(**consumer_kwargs))]
            )
        )
    )
