"""Rooms and membership."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from ..models import Membership, Room
from .errors import Forbidden, InvalidInput

# Letters that NFKD does not take apart into ASCII: Cyrillic (a common
# simplified romanization) and a few Latin ones.
_TO_LATIN = str.maketrans(
    dict(zip("абвгдезийклмнопрстуфыэіґ", "abvgdeziyklmnoprstufyeig", strict=True))
    | {"ё": "e", "ж": "zh", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch"}
    | {"ъ": "", "ь": "", "ю": "yu", "я": "ya", "ї": "yi", "є": "ye"}
    | {"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "þ": "th", "ð": "d"}
)


def slug_for(name: str) -> str:
    """The contract's ASCII slug ([a-z0-9-]) for a room name: accents dropped,
    Cyrillic romanized; a name in another script (CJK, …) gets
    `room-<random>`. Empty only for a name with no letter or digit at all."""
    slug = slugify(name.lower().translate(_TO_LATIN))[:50].strip("-")
    if slug or not any(c.isalnum() for c in name):
        return slug
    return f"room-{secrets.token_hex(4)}"


@transaction.atomic
def create_room(*, owner, name: str, is_private: bool = False) -> Room:
    name = name.strip()
    if not name:
        raise InvalidInput("A room needs a name.")
    if len(name) > 100:
        raise InvalidInput("A room name has at most 100 characters.")
    slug = slug_for(name)
    if not slug:
        raise InvalidInput("A room name needs at least one letter or digit.")
    if Room.objects.filter(slug=slug).exists():
        raise InvalidInput(f"A room with the address '{slug}' exists already.")
    try:
        with transaction.atomic():
            room = Room.objects.create(name=name, slug=slug, is_private=is_private, owner=owner)
    except IntegrityError:  # created by someone else a moment ago
        raise InvalidInput(f"A room with the address '{slug}' exists already.") from None
    Membership.objects.create(room=room, user=owner, role=Membership.Role.OWNER)
    return room


def add_member(*, room: Room, actor, username: str) -> Membership:
    """The room's owner (or site staff) adds a member by username."""
    if not (actor.is_staff or room.owner_id == actor.pk):
        raise Forbidden("Only the room's owner can add members.")
    try:
        user = get_user_model().objects.get(username=username.strip())
    except get_user_model().DoesNotExist:
        raise InvalidInput(f"There is no user called '{username.strip()}'.") from None
    membership, _ = Membership.objects.get_or_create(room=room, user=user)
    return membership


def join_room(*, room: Room, user) -> Membership:
    """Opening a room makes you a member of it (the access check came first)."""
    membership, _ = Membership.objects.get_or_create(room=room, user=user)
    return membership
