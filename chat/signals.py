"""Changes made anywhere (a view, the admin, the shell) that end a socket's
right to stay open: the receivers hand them to chat.services.access."""

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out, user_login_failed
from django.contrib.sessions.models import Session
from django.db import connections
from django.db.models.signals import post_delete, post_migrate, post_save, pre_save
from django.dispatch import receiver

from . import auth_throttle, search, services
from .models import Membership, Room


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


@receiver(post_delete, sender=Session)
def close_sockets_of_deleted_session(sender, instance, **kwargs):
    services.session_deleted(session_key=instance.session_key)


def _changed(instance, field: str, update_fields) -> bool:
    """Whether `field` of a saved row is about to change (one query, only
    when the save may write that field)."""
    if instance._state.adding or (update_fields is not None and field not in update_fields):
        return False
    stored = type(instance)._base_manager.filter(pk=instance.pk).values_list(field, flat=True)
    return stored.first() != getattr(instance, field)


@receiver(pre_save, sender=get_user_model())
def note_password_change(sender, instance, update_fields=None, **kwargs):
    instance._password_changing = _changed(instance, "password", update_fields)


@receiver(post_save, sender=get_user_model())
def reconnect_sockets_after_password_change(sender, instance, **kwargs):
    if getattr(instance, "_password_changing", False):
        instance._password_changing = False
        services.password_changed(user_id=instance.pk)


@receiver(pre_save, sender=Room)
def note_privacy_change(sender, instance, update_fields=None, **kwargs):
    instance._turning_private = instance.is_private and _changed(
        instance, "is_private", update_fields
    )


@receiver(post_save, sender=Room)
def recheck_sockets_of_room_turned_private(sender, instance, **kwargs):
    if getattr(instance, "_turning_private", False):
        instance._turning_private = False
        services.room_became_private(room_id=instance.pk)


@receiver(post_delete, sender=Room)
def close_sockets_of_deleted_room(sender, instance, **kwargs):
    services.room_deleted(room_id=instance.pk)


@receiver(post_delete, sender=Membership)
def close_sockets_of_removed_member(sender, instance, origin=None, **kwargs):
    if isinstance(origin, Room) or getattr(origin, "model", None) is Room:
        return  # the room itself is being deleted: that closes every socket in it
    if getattr(instance, "_left", False):
        return  # the member left (services.leave_room closes their sockets)
    room = Room.objects.filter(pk=instance.room_id).only("is_private").first()
    if room is not None:
        services.membership_removed(
            room_id=room.pk, user_id=instance.user_id, room_is_private=room.is_private
        )


@receiver(post_migrate)
def keep_search_index(sender, using="default", **kwargs):
    """A later migration that rebuilds chat_message on SQLite drops the
    search index's triggers with it: put them back (chat.search)."""
    if sender.name == "chat":
        search.ensure_sqlite_index(connections[using], create=False)
