from django.conf import settings
from django.db import models
from django.db.models import Q


class RoomQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Public rooms, and private rooms the user owns or belongs to; never
        a room the user is banned from."""
        banned = Membership.objects.filter(user=user, is_banned=True).values("room_id")
        member_of = Membership.objects.filter(user=user, is_banned=False).values("room_id")
        return self.filter(Q(is_private=False) | Q(owner=user) | Q(pk__in=member_of)).exclude(
            pk__in=banned
        )


TOPIC_MAX_LENGTH = 200


class Room(models.Model):
    name = models.CharField(max_length=100)
    # One line under the name (room page, directory); set by the owner.
    topic = models.CharField(max_length=TOPIC_MAX_LENGTH, blank=True, default="")
    # What the name looks like (chat.text.skeleton): a new room may not look
    # like one its creator can already see.
    name_skeleton = models.CharField(max_length=300, db_index=True, editable=False, default="")
    slug = models.SlugField(max_length=50, unique=True)
    is_private = models.BooleanField("private", default=False)
    # The one record of who owns the room (memberships say moderator or member).
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_rooms"
    )
    created = models.DateTimeField(auto_now_add=True)
    # The seq of the room's latest message: incremented in the same transaction
    # as the insert, so the row lock orders seq by commit across workers.
    last_seq = models.BigIntegerField(default=0, editable=False)
    is_locked = models.BooleanField(
        "locked", default=False, help_text="Read-only: nobody can send messages."
    )
    # The room's change counter: every edit, deletion and reaction takes the
    # next value (Message.rev), so a client that resumes can ask for the
    # changes after the last one it saw.
    last_change = models.BigIntegerField(default=0, editable=False)

    class Kind(models.TextChoices):
        ROOM = "room"
        DIRECT = "direct", "direct conversation"

    # A direct conversation is a private room of exactly two members, one per
    # pair of users: direct_key is "<lower user id>-<higher user id>".
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.ROOM)
    direct_key = models.CharField(  # noqa: DJ001 (NULL for rooms: unique among the direct ones)
        max_length=50, null=True, blank=True, unique=True, editable=False
    )

    objects = RoomQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(slug__regex=r"^[a-z0-9-]{1,50}$"), name="room_slug_format"
            ),
            models.CheckConstraint(
                condition=Q(kind="room", direct_key__isnull=True)
                | Q(kind="direct", is_private=True, direct_key__isnull=False),
                name="room_kind_valid",
            ),
        ]

    def __str__(self):
        return self.name

    @property
    def is_direct(self) -> bool:
        return self.kind == Room.Kind.DIRECT


class Membership(models.Model):
    """A user's standing in a room. The owner is Room.owner, not a role here."""

    class Role(models.TextChoices):
        MODERATOR = "moderator"
        MEMBER = "member"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    is_banned = models.BooleanField("banned", default=False)
    muted_until = models.DateTimeField(
        null=True, blank=True, help_text="Muted while this is in the future."
    )
    created = models.DateTimeField(auto_now_add=True)
    # The highest seq this user has seen in the room (on any device): messages
    # after it are unread. Only ever moves forward (services.mark_read).
    last_read_seq = models.BigIntegerField(default=0, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["room", "user"], name="one_membership_per_user"),
            models.CheckConstraint(
                condition=Q(role__in=["moderator", "member"]), name="membership_role_valid"
            ),
        ]

    def __str__(self):
        return f"{self.user} in {self.room} ({self.role})"


class Invite(models.Model):
    """A link that lets whoever opens it (logged in) into a private room,
    until it expires or the owner revokes it."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="invites")
    token = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    uses = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self):
        return f"Invite to {self.room} by {self.created_by}"


class UsernameSkeleton(models.Model):
    """What each username looks like (chat.text.skeleton), kept beside
    Django's user table so that a new name is checked against every existing
    one with an index lookup. Written when a user is saved (chat.signals)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    skeleton = models.CharField(max_length=300, db_index=True)

    def __str__(self):
        return self.skeleton


class MessageQuerySet(models.QuerySet):
    def visible(self):
        return self.filter(deleted_at__isnull=True)


class Message(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    seq = models.BigIntegerField()
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="messages"
    )
    body = models.TextField()
    created = models.DateTimeField(auto_now_add=True)
    # NULL, not "": messages without a client_id must not collide in the
    # unique (room, author, client_id) constraint.
    client_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    deleted_at = models.DateTimeField(null=True, blank=True)
    deleted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # A reply quotes another message of the same room.
    reply_to = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="replies"
    )
    edited_at = models.DateTimeField(null=True, blank=True)
    # The room's change counter (Room.last_change) at the message's last edit,
    # deletion or reaction; 0 for a message never changed.
    rev = models.BigIntegerField(default=0, editable=False)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["room", "seq"]
        indexes = [models.Index(fields=["room", "rev"], name="message_room_rev")]
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="one_message_per_seq"),
            # A retried send (same client_id) is caught here, not by a lookup
            # before every insert.
            models.UniqueConstraint(
                fields=["room", "author", "client_id"], name="idempotent_client_id"
            ),
        ]

    def __str__(self):
        return f"#{self.seq} in {self.room} by {self.author}"


class MessageEdit(models.Model):
    """The text a message had before an edit, kept for moderators (the
    history shows only the latest text)."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="edits")
    body = models.TextField("text before the edit")
    editor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created = models.DateTimeField("edited", auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self):
        return f"Edit of {self.message}"


class Reaction(models.Model):
    """One user's emoji on a message (one of settings.CHAT_REACTIONS)."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reactions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    emoji = models.CharField(max_length=16)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["message", "user", "emoji"], name="one_reaction_each"),
        ]

    def __str__(self):
        return f"{self.emoji} by {self.user} on {self.message}"


class Report(models.Model):
    """A user's report of a message, queued for moderators."""

    class Status(models.TextChoices):
        OPEN = "open"
        RESOLVED = "resolved"
        DISMISSED = "dismissed"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reports")
    reporter = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reports_made"
    )
    reason = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created = models.DateTimeField(auto_now_add=True)
    handled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    handled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(fields=["message", "reporter"], name="one_report_per_reporter"),
        ]

    def __str__(self):
        return f"Report of {self.message} by {self.reporter}"


class ModerationLog(models.Model):
    """Append-only: who did what to whom, when and why. Written by the
    moderation services, whichever door (admin or room page) the action came
    through; the admin shows it read-only."""

    class Action(models.TextChoices):
        REMOVE_MESSAGE = "remove_message", "removed a message"
        RESTORE_MESSAGE = "restore_message", "restored a message"
        BAN = "ban", "banned"
        UNBAN = "unban", "unbanned"
        MUTE = "mute", "muted"
        UNMUTE = "unmute", "unmuted"
        LOCK = "lock", "locked the room"
        UNLOCK = "unlock", "unlocked the room"
        DEACTIVATE = "deactivate", "deactivated the account"
        REACTIVATE = "reactivate", "reactivated the account"
        SET_ROLE = "set_role", "changed the role"
        SET_OWNER = "set_owner", "gave the room to"
        REMOVE_MEMBER = "remove_member", "removed from the room"
        RESOLVE_REPORT = "resolve_report", "resolved a report"
        DISMISS_REPORT = "dismiss_report", "dismissed a report"

    created = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    action = models.CharField(max_length=20, choices=Action.choices)
    room = models.ForeignKey(
        Room, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    target_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    message = models.ForeignKey(
        Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reason = models.CharField(max_length=500, blank=True)
    # A readable account that survives deletion of the rows named above.
    summary = models.CharField(max_length=300)

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name = "moderation log entry"
        verbose_name_plural = "moderation log"

    def __str__(self):
        return self.summary
