"""Writes, and the broadcasts that follow them: the only code that sends to
channel-layer groups (through chat.events).

One module per seam (rooms, messages, presence, sessions, moderation); every
public name is re-exported here, so callers write `services.post_message(...)`.
"""

from .access import (
    membership_removed,
    password_changed,
    room_became_private,
    room_deleted,
    session_deleted,
)
from .accounts import check_username, record_username
from .errors import Forbidden, InvalidInput, Locked, Muted, NotFound, RateLimited, ServiceError
from .invites import (
    DEFAULT_INVITE_HOURS,
    INVITE_HOURS,
    accept_invite,
    create_invite,
    revoke_invite,
    usable_invite,
)
from .messages import (
    MUTED_INDEFINITELY,
    Posted,
    check_rate,
    muted_error,
    notify_typing,
    post_message,
    store_message,
)
from .moderation import (
    ban_user,
    close_report,
    duration_label,
    mute_choices,
    mute_until,
    mute_user,
    remove_member,
    remove_message,
    report_message,
    restore_message,
    set_account_active,
    set_role,
    set_room_locked,
    set_room_owner,
    unban_user,
    unmute_user,
)
from .presence import close_presence, open_presence, refresh_presence
from .reading import advance_read_position, mark_read
from .rooms import (
    add_member,
    check_room_name,
    check_topic,
    create_room,
    direct_partner,
    join_room,
    leave_room,
    set_topic,
    slug_for,
    start_direct,
)
from .sessions import end_session

__all__ = [
    "DEFAULT_INVITE_HOURS",
    "INVITE_HOURS",
    "accept_invite",
    "create_invite",
    "revoke_invite",
    "usable_invite",
    "membership_removed",
    "password_changed",
    "room_became_private",
    "room_deleted",
    "session_deleted",
    "MUTED_INDEFINITELY",
    "Forbidden",
    "InvalidInput",
    "Locked",
    "Muted",
    "NotFound",
    "Posted",
    "RateLimited",
    "ServiceError",
    "add_member",
    "advance_read_position",
    "ban_user",
    "check_rate",
    "check_room_name",
    "check_topic",
    "check_username",
    "close_presence",
    "close_report",
    "create_room",
    "direct_partner",
    "start_direct",
    "end_session",
    "join_room",
    "leave_room",
    "mark_read",
    "muted_error",
    "duration_label",
    "mute_choices",
    "mute_until",
    "mute_user",
    "notify_typing",
    "open_presence",
    "post_message",
    "record_username",
    "refresh_presence",
    "remove_member",
    "remove_message",
    "report_message",
    "restore_message",
    "set_account_active",
    "set_role",
    "set_room_locked",
    "set_room_owner",
    "set_topic",
    "slug_for",
    "store_message",
    "unban_user",
    "unmute_user",
]
