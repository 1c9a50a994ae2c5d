from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out, user_login_failed
from django.db.models.signals import post_save
from django.dispatch import receiver

from . import auth_throttle, services


@receiver(user_logged_out)
def close_sockets_of_ended_session(sender, request, user, **kwargs):
    session_key = getattr(request.session, "session_key", None)
    if session_key:
        services.end_session(session_key=session_key)


@receiver(post_save, sender=get_user_model())
def keep_username_skeleton(sender, instance, raw=False, **kwargs):
    """Every way a user is saved (sign-up, the admin, createsuperuser, the
    shell) keeps the skeleton of the name in step, for the confusable check."""
    if not raw:  # not while loading fixtures
        services.record_username(user=instance)


@receiver(user_login_failed)
def count_failed_login(sender, credentials, request=None, **kwargs):
    """A wrong password on either login page counts toward its limits."""
    if request is not None:
        auth_throttle.login_failed(request=request, username=credentials.get("username", ""))
