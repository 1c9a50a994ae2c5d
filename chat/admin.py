"""The Django admin as the moderation console.

Every moderation change goes through chat.services (bulk actions, and edits of
moderated fields in the change forms alike), so that it reaches open sockets
at once and is written to the moderation log.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import Count, F, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import Truncator

from . import selectors, services, text
from .forms import AdminAddUserForm, AdminChangeUserForm
from .models import Invite, Membership, Message, MessageEdit, ModerationLog, Report, Room

User = get_user_model()


def _mute_for_choices():
    # The durations of settings.CHAT_MUTE_MINUTES, read when the form is drawn.
    return [(str(minutes), label) for minutes, label in services.mute_choices()] + [
        ("", "until unmuted")
    ]


def moderation_action_form(*, reason=(), mute=()) -> type[ActionForm]:
    """The form beside a list's action menu: "Reason" (written to the log) for
    the actions named in `reason`, "Mute for" for those in `mute`, and no
    field that none of the list's actions use. Each field names its actions
    (data-for-actions) and the console's script (chat/admin.js) shows it only
    while one of them is chosen."""
    fields = {
        "reason": forms.CharField(
            required=False,
            max_length=500,
            widget=forms.TextInput(
                attrs={"placeholder": "optional", "data-for-actions": " ".join(reason)}
            ),
        )
    }
    if mute:
        fields["mute_for"] = forms.ChoiceField(
            required=False,
            label="Mute for",
            choices=_mute_for_choices,
            initial=lambda: str(settings.CHAT_MUTE_MINUTES[0]),
            widget=forms.Select(attrs={"data-for-actions": " ".join(mute)}),
        )
    return type("ModerationActionForm", (ActionForm,), fields)


def text_badge(text: str, css: str = "state"):
    """A state said in words: the admin's boolean icons read backwards for
    states that are bad news (a green tick for "banned")."""
    return format_html('<span class="{}">{}</span>', css, text) if text else "—"


# An ISO-8601 UTC time as the services write it (wire.iso_utc).
_ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?Z")


def local_time(value):
    """A <time> the console's script shows in the reader's own time zone;
    the server's formatting (UTC) stands until it runs."""
    if value is None:
        return "—"
    utc = value.astimezone(UTC)
    return format_html(
        '<time datetime="{}" data-local>{}</time>',
        utc.isoformat(timespec="seconds").replace("+00:00", "Z"),
        utc.strftime("%d %b %Y, %H:%M UTC"),
    )


def with_local_times(text: str):
    """Text in which every ISO time becomes a local_time."""
    parts = []
    last = 0
    for match in _ISO_TIME.finditer(text):
        parts.append(format_html("{}", text[last : match.start()]))
        moment = datetime.fromisoformat(match.group().replace("Z", "+00:00"))
        parts.append(local_time(moment))
        last = match.end()
    parts.append(format_html("{}", text[last:]))
    return mark_safe("".join(parts))  # each part escaped above


def moderation_action(description: str):
    """An admin action offered only to staff with the change permission of
    its model: the same permission the services require."""
    return admin.action(description=description, permissions=["change"])


def _reason(request) -> str:
    return request.POST.get("reason", "").strip()


def _refused(modeladmin, request, error, obj=None) -> None:
    """A service's refusal as the console shows it: an error message with its
    detail (naming the object when a refusal is one of several)."""
    detail = error.detail if obj is None else f"{obj}: {error.detail}"
    modeladmin.message_user(request, detail, messages.ERROR)


def _apply(modeladmin, request, objects, do, done: str) -> None:
    """Run a service on each selected object; report what changed and what
    was refused (a refusal changes nothing for that object)."""
    changed = refused = 0
    for obj in objects:
        try:
            if do(obj) is not False:
                changed += 1
        except services.ServiceError as error:
            refused += 1
            _refused(modeladmin, request, error, obj)
    if changed:
        modeladmin.message_user(request, f"{done}: {changed}.", messages.SUCCESS)
    elif not refused:
        modeladmin.message_user(request, "Nothing to change.", messages.INFO)


def _admin_link(obj, text=None):
    if obj is None:
        return "—"
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, text or str(obj))


# ---------------------------------------------------------------- rooms


class RoomAdminForm(forms.ModelForm):
    """Staff name rooms by the same rules as everyone, against every room."""

    def clean_name(self):
        try:
            return services.check_room_name(
                name=self.cleaned_data["name"], among=Room.objects.all(), room_pk=self.instance.pk
            )
        except services.ServiceError as error:
            raise forms.ValidationError(error.detail) from None

    def clean_is_private(self):
        if self.instance.pk and self.instance.is_direct and not self.cleaned_data["is_private"]:
            raise forms.ValidationError("A direct conversation stays private.")
        return self.cleaned_data["is_private"]

    def clean_topic(self):
        try:
            return services.check_topic(topic=self.cleaned_data.get("topic", ""))
        except services.ServiceError as error:
            raise forms.ValidationError(error.detail) from None


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ["user", "role", "is_banned", "muted_until", "created"]
    readonly_fields = ["user", "role", "is_banned", "muted_until", "created"]
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    form = RoomAdminForm
    list_display = [
        "name",
        "slug",
        "owner",
        "kind",
        "is_private",
        "locked",
        "member_count",
        "created",
    ]
    list_filter = ["kind", "is_private", "is_locked", "created"]
    search_fields = ["name", "slug", "owner__username"]
    # last_seq is the message counter's internals: not shown. A direct
    # conversation stays one (services.start_direct makes them).
    readonly_fields = ["created", "is_locked", "kind"]
    autocomplete_fields = ["owner"]
    inlines = [MembershipInline]
    actions = ["lock_rooms", "unlock_rooms"]
    action_form = moderation_action_form(reason=actions)

    def save_model(self, request, obj, form, change):
        obj.name_skeleton = text.skeleton(obj.name)[:300]
        # Room.owner is the one record of ownership: a change goes through the
        # service (checked and logged), and a room made here gets its owner
        # as a member like any other.
        if change and "owner" in form.changed_data:
            new_owner = obj.owner
            obj.owner_id = form.initial["owner"]
            super().save_model(request, obj, form, change)
            try:
                services.set_room_owner(room=obj, user=new_owner, actor=request.user)
            except services.ServiceError as error:
                _refused(self, request, error)
            return
        super().save_model(request, obj, form, change)
        if not change:
            Membership.objects.get_or_create(room=obj, user=obj.owner)

    def get_queryset(self, request):
        # The member count in the list's own query, not one query per row.
        return (
            super()
            .get_queryset(request)
            .select_related("owner")
            .annotate(members=Count("memberships", filter=Q(memberships__is_banned=False)))
        )

    @admin.display(description="members", ordering="members")
    def member_count(self, room):
        return room.members

    @admin.display(description="locked", ordering="is_locked")
    def locked(self, room):
        return text_badge("locked" if room.is_locked else "")

    @moderation_action("Lock selected rooms (read-only)")
    def lock_rooms(self, request, queryset):
        _apply(
            self,
            request,
            queryset,
            lambda room: services.set_room_locked(
                room=room, actor=request.user, locked=True, reason=_reason(request)
            ),
            "Locked",
        )

    @moderation_action("Unlock selected rooms")
    def unlock_rooms(self, request, queryset):
        _apply(
            self,
            request,
            queryset,
            lambda room: services.set_room_locked(
                room=room, actor=request.user, locked=False, reason=_reason(request)
            ),
            "Unlocked",
        )


# ---------------------------------------------------------------- memberships


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    # Narrow enough for a 1280 px screen beside the admin's two sidebars.
    list_display = ["user", "room", "standing", "state"]
    list_filter = ["role", "is_banned", "room"]
    search_fields = ["user__username", "room__name", "room__slug"]
    list_select_related = ["user", "room"]
    autocomplete_fields = ["user", "room"]
    # Ban and mute state change only through the actions, which reach open
    # sockets and write the log.
    readonly_fields = ["is_banned", "muted_until", "created"]
    actions = [
        "ban",
        "unban",
        "mute",
        "unmute",
        "make_moderator",
        "make_member",
        "remove_members",
    ]
    action_form = moderation_action_form(reason=actions, mute=["mute"])

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:  # room and user of an existing membership are fixed
            return [*self.readonly_fields, "room", "user"]
        return self.readonly_fields

    def get_actions(self, request):
        # Removal goes through remove_members (checked and logged), never
        # the generic bulk delete.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_delete_permission(self, request, obj=None):
        # Deleting a banned membership would be an unban nobody logged, and
        # the owner's stays while they own the room.
        if obj is not None and (obj.is_banned or obj.user_id == obj.room.owner_id):
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request, obj):
        try:
            services.remove_member(
                room=obj.room, user=obj.user, actor=request.user, reason=_reason(request)
            )
        except services.ServiceError as error:
            _refused(self, request, error)

    def save_model(self, request, obj, form, change):
        # Roles change through the service (checked and logged), also for a
        # membership made here: it starts as a member.
        role = obj.role
        if not change:
            obj.role = Membership.Role.MEMBER
            super().save_model(request, obj, form, change)
        if role != obj.role or (change and "role" in form.changed_data):
            try:
                services.set_role(room=obj.room, user=obj.user, role=role, actor=request.user)
            except services.ServiceError as error:
                _refused(self, request, error)

    def _act(self, request, queryset, service, done: str, **extra):
        """Call a moderation service for each selected membership."""
        _apply(
            self,
            request,
            queryset.select_related("room", "user"),
            lambda m: service(
                room=m.room, user=m.user, actor=request.user, reason=_reason(request), **extra
            ),
            done,
        )

    @moderation_action("Ban selected users from their rooms (closes their sockets)")
    def ban(self, request, queryset):
        self._act(request, queryset, services.ban_user, "Banned")

    @moderation_action("Unban selected users")
    def unban(self, request, queryset):
        self._act(request, queryset, services.unban_user, "Unbanned")

    @admin.display(description="role", ordering="role")
    def standing(self, membership):
        # Room.owner is the one record of ownership; the role says the rest.
        return "owner" if membership.user_id == membership.room.owner_id else membership.role

    @admin.display(description="state")
    def state(self, membership):
        """Banned, muted until when: in words (a tick for "banned" read as
        good news)."""
        states = ["banned"] if membership.is_banned else []
        until = membership.muted_until
        if until is not None and until >= services.MUTED_INDEFINITELY:
            states.append("muted until unmuted")
        elif until is not None and until > timezone.now():
            states.append(format_html("muted until {}", local_time(until)))
        if not states:
            return "—"
        return format_html(
            '<span class="state state-bad">{}</span>',
            format_html_join(", ", "{}", ([s] for s in states)),
        )

    @moderation_action("Mute selected users (for the time chosen beside)")
    def mute(self, request, queryset):
        try:
            until = services.mute_until(request.POST.get("mute_for", ""))
        except services.ServiceError as error:
            return _refused(self, request, error)
        self._act(request, queryset, services.mute_user, "Muted", until=until)

    @moderation_action("Unmute selected users")
    def unmute(self, request, queryset):
        self._act(request, queryset, services.unmute_user, "Unmuted")

    @moderation_action("Make selected users room moderators")
    def make_moderator(self, request, queryset):
        self._act(
            request, queryset, services.set_role, "Made moderator", role=Membership.Role.MODERATOR
        )

    @moderation_action("Make selected users plain members")
    def make_member(self, request, queryset):
        self._act(request, queryset, services.set_role, "Made member", role=Membership.Role.MEMBER)

    @admin.action(description="Remove selected members from their rooms", permissions=["delete"])
    def remove_members(self, request, queryset):
        self._act(request, queryset, services.remove_member, "Removed")


# ---------------------------------------------------------------- messages


class RemovedFilter(admin.SimpleListFilter):
    title = "removed"
    parameter_name = "removed"

    def lookups(self, request, model_admin):
        return [
            ("yes", "Removed"),
            ("author", "Deleted by its author"),
            ("moderator", "Removed by a moderator"),
            ("no", "Visible"),
        ]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(deleted_at__isnull=False)
        if self.value() == "author":
            return queryset.filter(deleted_at__isnull=False, deleted_by=F("author"))
        if self.value() == "moderator":
            return queryset.filter(deleted_at__isnull=False).exclude(deleted_by=F("author"))
        if self.value() == "no":
            return queryset.filter(deleted_at__isnull=True)
        return queryset


class EditedFilter(admin.SimpleListFilter):
    title = "edited"
    parameter_name = "edited"

    def lookups(self, request, model_admin):
        return [("yes", "Edited"), ("no", "Never edited")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(edited_at__isnull=self.value() == "no")
        return queryset


class MessageEditInline(admin.TabularInline):
    """Every earlier text of a message, newest first: only moderators see them."""

    model = MessageEdit
    verbose_name = "earlier text"
    verbose_name_plural = "earlier texts (before each edit)"
    fields = ["created", "body"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = [
        "seq",
        "room_link",
        "author_link",
        "short_body",
        "created",
        "edited",
        "removed",
    ]
    list_display_links = ["seq", "short_body"]
    list_filter = [
        RemovedFilter,
        EditedFilter,
        "room",
        "created",
        ("author", admin.RelatedOnlyFieldListFilter),
    ]
    inlines = [MessageEditInline]
    search_fields = ["body", "author__username", "room__slug"]
    list_select_related = ["room", "author"]
    date_hierarchy = "created"
    fields = [
        "room_link",
        "author_link",
        "seq",
        "created",
        "body",
        "edited_at",
        "reply_to",
        "client_id",
        "deleted_at",
        "deleted_by",
        "context",
    ]
    readonly_fields = fields
    actions = ["remove_messages", "restore_messages"]
    action_form = moderation_action_form(reason=actions)

    def has_add_permission(self, request):
        return False  # messages are written by people in rooms

    def has_delete_permission(self, request, obj=None):
        return False  # removal is a soft delete, through the action

    @admin.display(description="room", ordering="room__name")
    def room_link(self, message):
        return _admin_link(message.room)

    @admin.display(description="author", ordering="author__username")
    def author_link(self, message):
        return _admin_link(message.author, message.author.username)

    @admin.display(description="body")
    def short_body(self, message):
        return Truncator(message.body).chars(80)

    @admin.display(description="removed", ordering="deleted_at")
    def removed(self, message):
        if message.deleted_at is None:
            return text_badge("", "state state-bad")
        if message.deleted_by_id == message.author_id:
            return text_badge("deleted by its author", "state state-bad")
        return text_badge("removed", "state state-bad")

    @admin.display(description="edited", ordering="edited_at")
    def edited(self, message):
        if message.edited_at is None:
            return ""
        return format_html(
            '<a href="{}">edited {}</a>',
            reverse("admin:chat_message_change", args=[message.pk]),
            local_time(message.edited_at),
        )

    @admin.display(description="in context")
    def context(self, message):
        return render_context(message)

    @moderation_action("Remove selected messages (from every open client)")
    def remove_messages(self, request, queryset):
        _apply(
            self,
            request,
            queryset.select_related("room", "author"),
            lambda m: services.remove_message(
                message=m, actor=request.user, reason=_reason(request)
            ),
            "Removed",
        )

    @moderation_action("Restore selected messages")
    def restore_messages(self, request, queryset):
        _apply(
            self,
            request,
            queryset.select_related("room", "author"),
            lambda m: services.restore_message(
                message=m, actor=request.user, reason=_reason(request)
            ),
            "Restored",
        )


def render_context(message: Message):
    rows = [
        (
            "reported" if m.pk == message.pk else "",
            m.seq,
            m.author.username,
            Truncator(m.body).chars(300) + (" [removed]" if m.deleted_at else ""),
        )
        for m in selectors.message_in_context(message=message)
    ]
    return format_html(
        '<table class="message-context">{}</table>',
        format_html_join("", '<tr class="{}"><td>#{}</td><th>{}</th><td>{}</td></tr>', rows),
    )


# ---------------------------------------------------------------- reports


class ReportStatusFilter(admin.SimpleListFilter):
    """The list opens on the open reports, the queue moderators work through;
    "All" shows every report."""

    title = "status"
    parameter_name = "status"
    ALL = "all"

    def lookups(self, request, model_admin):
        return [*Report.Status.choices, (self.ALL, "All")]

    def value(self):
        return super().value() or Report.Status.OPEN

    def queryset(self, request, queryset):
        if self.value() == self.ALL:
            return queryset
        return queryset.filter(status=self.value())

    def choices(self, changelist):
        # Django's own "All" entry would drop the parameter: that is "Open" here.
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    list_display = [
        "when",
        "status",
        "reporter",
        "message_author",
        "message_room",
        "message_excerpt",
        "reason",
    ]
    list_filter = [ReportStatusFilter, "created", "message__room"]
    search_fields = ["reason", "message__body", "reporter__username", "message__author__username"]
    list_select_related = ["reporter", "message__author", "message__room"]
    fields = [
        "status",
        "reporter",
        "reason",
        "created",
        "message_link",
        "context",
        "handled_by",
        "handled_at",
    ]
    readonly_fields = fields
    actions = ["resolve", "dismiss", "remove_and_resolve"]
    action_form = moderation_action_form(reason=actions)

    def has_add_permission(self, request):
        return False

    @admin.display(description="reported", ordering="created")
    def when(self, report):
        return local_time(report.created)

    @admin.display(description="author", ordering="message__author__username")
    def message_author(self, report):
        return _admin_link(report.message.author, report.message.author.username)

    @admin.display(description="room", ordering="message__room__name")
    def message_room(self, report):
        return _admin_link(report.message.room)

    @admin.display(description="message")
    def message_excerpt(self, report):
        return Truncator(report.message.body).chars(60)

    @admin.display(description="message")
    def message_link(self, report):
        return _admin_link(report.message, f"#{report.message.seq} in {report.message.room}")

    @admin.display(description="in context")
    def context(self, report):
        return render_context(report.message)

    def _close(self, request, queryset, resolved, done):
        _apply(
            self,
            request,
            queryset.select_related("message__room"),
            lambda r: services.close_report(
                report=r, actor=request.user, resolved=resolved, reason=_reason(request)
            ),
            done,
        )

    @moderation_action("Resolve selected reports")
    def resolve(self, request, queryset):
        self._close(request, queryset, True, "Resolved")

    @moderation_action("Dismiss selected reports")
    def dismiss(self, request, queryset):
        self._close(request, queryset, False, "Dismissed")

    @moderation_action("Remove the reported messages and resolve")
    def remove_and_resolve(self, request, queryset):
        def remove_then_resolve(report):
            services.remove_message(
                message=report.message, actor=request.user, reason=_reason(request)
            )
            return services.close_report(
                report=report, actor=request.user, resolved=True, reason=_reason(request)
            )

        _apply(
            self,
            request,
            queryset.select_related("message__room", "message__author"),
            remove_then_resolve,
            "Removed and resolved",
        )


# ---------------------------------------------------------------- the log


@admin.register(Invite)
class InviteAdmin(admin.ModelAdmin):
    """Invite links, to see and revoke (owners make them on the room's
    settings page)."""

    list_display = ["room", "created_by", "created", "expires_at", "revoked_at", "uses"]
    list_filter = ["created", "expires_at"]
    search_fields = ["room__name", "room__slug", "created_by__username"]
    readonly_fields = ["room", "created_by", "created", "expires_at", "revoked_at", "uses"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Revoke the selected invite links", permissions=["change"])
    def revoke(self, request, queryset):
        revoked = 0
        for invite in queryset.select_related("room"):
            try:
                revoked += services.revoke_invite(invite=invite, actor=request.user)
            except services.ServiceError as error:
                self.message_user(request, error.detail, messages.ERROR)
                return
        self.message_user(request, f"Revoked {revoked} invite link(s).")


@admin.register(ModerationLog)
class ModerationLogAdmin(admin.ModelAdmin):
    # Who did what to whom is the summary, in names (the actor, the person
    # acted on, the room); times show in the reader's own time zone.
    list_display = ["when", "what", "room", "reason"]
    list_filter = [
        ("room", admin.RelatedOnlyFieldListFilter),
        ("actor", admin.RelatedOnlyFieldListFilter),
        "action",
        "created",
    ]
    search_fields = ["summary", "reason", "actor__username", "target_user__username", "room__name"]
    list_select_related = ["room"]
    date_hierarchy = "created"
    fields = ["when", "actor", "action", "target_user", "room", "message", "what", "reason"]
    readonly_fields = ["when", "what"]

    @admin.display(description="when", ordering="created")
    def when(self, entry):
        return local_time(entry.created)

    @admin.display(description="what happened")
    def what(self, entry):
        return with_local_times(entry.summary)

    # Append-only: readable by moderators, written only by the services.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# ---------------------------------------------------------------- users


admin.site.unregister(User)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    form = AdminChangeUserForm
    add_form = AdminAddUserForm
    list_display = ["username", "email", "is_active", "is_staff", "date_joined", "last_login"]
    actions = ["deactivate", "reactivate"]
    action_form = moderation_action_form(reason=actions)

    def save_model(self, request, obj, form, change):
        # Deactivating through the form closes the user's sockets too.
        if change and "is_active" in form.changed_data:
            active = obj.is_active
            obj.is_active = not active  # saved by the service, with its checks
            super().save_model(request, obj, form, change)
            try:
                services.set_account_active(user=obj, actor=request.user, active=active)
            except services.ServiceError as error:
                _refused(self, request, error)
            return
        super().save_model(request, obj, form, change)

    @moderation_action("Deactivate selected accounts (closes their sockets)")
    def deactivate(self, request, queryset):
        _apply(
            self,
            request,
            queryset,
            lambda u: services.set_account_active(
                user=u, actor=request.user, active=False, reason=_reason(request)
            ),
            "Deactivated",
        )

    @moderation_action("Reactivate selected accounts")
    def reactivate(self, request, queryset):
        _apply(
            self,
            request,
            queryset,
            lambda u: services.set_account_active(
                user=u, actor=request.user, active=True, reason=_reason(request)
            ),
            "Reactivated",
        )


admin.site.site_header = "Chat moderation"
admin.site.site_title = "Chat moderation"
admin.site.index_title = "Rooms, people and messages"
