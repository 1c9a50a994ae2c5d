"""Invite links to private rooms."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .. import selectors
from ..models import Invite, Membership, Room
from .errors import Forbidden, InvalidInput, NotFound

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# How long a new link lasts, in hours: what the settings page offers.
INVITE_HOURS = (1, 24, 24 * 7)
DEFAULT_INVITE_HOURS = 24 * 7


@transaction.atomic
def create_invite(*, room: Room, actor: User, hours: int | str = DEFAULT_INVITE_HOURS) -> Invite:
    """A new link to a private room, by its owner (or staff who may change
    rooms), lasting `hours` (one of INVITE_HOURS). At most
    CHAT_INVITES_PER_ROOM usable links per room at once."""
    if room.is_direct:
        raise InvalidInput("A direct conversation has exactly two people: no invites.")
    if not selectors.can_manage_room(user=actor, room=room):
        raise Forbidden("Only the room's owner can make invite links.")
    if not room.is_private:
        raise InvalidInput("Anyone can open a public room: share its address instead.")
    if str(hours) not in {str(h) for h in INVITE_HOURS}:
        offered = ", ".join(str(h) for h in INVITE_HOURS)
        raise InvalidInput(f"An invite lasts one of {offered} hours.")
    # One creation at a time per room, so that parallel requests cannot pass the cap.
    Room.objects.select_for_update().filter(pk=room.pk).first()
    cap = settings.CHAT_INVITES_PER_ROOM
    if cap and selectors.room_invites(room=room).count() >= cap:
        raise InvalidInput(f"{room.name} has {cap} invite links that still work: revoke one first.")
    return Invite.objects.create(
        room=room,
        token=secrets.token_urlsafe(24),
        created_by=actor,
        expires_at=timezone.now() + timedelta(hours=int(hours)),
    )


def revoke_invite(*, invite: Invite, actor: User) -> bool:
    """The link stops working at once. False if it was revoked already."""
    if not selectors.can_manage_room(user=actor, room=invite.room):
        raise Forbidden("Only the room's owner can revoke invite links.")
    revoked = Invite.objects.filter(pk=invite.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    return bool(revoked)


def usable_invite(*, token: str) -> Invite:
    """The invite with this token if it still works; else a refusal that
    says why (unknown, revoked, expired)."""
    invite = Invite.objects.select_related("room").filter(token=token).first()
    if invite is None:
        raise NotFound("This invite link is not valid: check that you copied all of it.")
    if invite.revoked_at is not None:
        raise InvalidInput("This invite link was revoked by the room's owner.")
    if invite.expires_at <= timezone.now():
        raise InvalidInput("This invite link has expired: ask the room's owner for a new one.")
    return invite


@transaction.atomic
def accept_invite(*, token: str, user: User) -> Room:
    """Someone logged in uses a link: they become a member of its room (a
    member already stays one). Someone banned from the room stays out."""
    invite = usable_invite(token=token)
    room = invite.room
    membership, created = Membership.objects.get_or_create(room=room, user=user)
    if membership.is_banned:
        raise Forbidden(f"You cannot join {room.name}.")
    if created:
        Invite.objects.filter(pk=invite.pk).update(uses=F("uses") + 1)
    return room
