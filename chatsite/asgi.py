"""ASGI entry point: `daphne chatsite.asgi:application`."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
# Set up Django (apps, settings) before importing code that uses the ORM.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from chat.routing import HttpRouter, websocket_application  # noqa: E402

application = ProtocolTypeRouter(
    {"http": HttpRouter(django_asgi_app), "websocket": websocket_application()}
)
