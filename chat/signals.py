from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

from . import services


@receiver(user_logged_out)
def close_sockets_of_ended_session(sender, request, user, **kwargs):
    session_key = getattr(request.session, "session_key", None)
    if session_key:
        services.end_session(session_key=session_key)
