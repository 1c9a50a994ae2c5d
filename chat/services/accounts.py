"""Accounts: what the chat keeps beside Django's users."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import text
from ..models import UsernameSkeleton
from .errors import InvalidInput

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def record_username(*, user: User) -> None:
    """Keep the skeleton of the user's name (see chat.text), which the
    confusable-name check looks up."""
    UsernameSkeleton.objects.update_or_create(
        user_id=user.pk, defaults={"skeleton": text.skeleton(user.username)[:300]}
    )


def check_username(*, username: str, user_pk: int | None = None) -> None:
    """Refuse a username that would be a URL path trick (".", ".."), hide
    characters, or look like someone else's (InvalidInput says which)."""
    if text.has_hidden(username):
        raise InvalidInput("A username cannot contain invisible or direction-changing characters.")
    if not any(char.isalnum() for char in username):
        raise InvalidInput("A username needs at least one letter or digit.")
    look_alikes = UsernameSkeleton.objects.filter(skeleton=text.skeleton(username)[:300])
    if user_pk is not None:
        look_alikes = look_alikes.exclude(user_id=user_pk)
    if look_alikes.exists():
        raise InvalidInput("That username looks too much like an existing one; choose another.")
