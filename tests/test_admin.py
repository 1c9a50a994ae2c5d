"""The admin as a moderation console (issue 11): open reports on the front
page and as the report list's default, action-form fields only where an
action uses them, states in words, no internal counters, and a moderation
log in names and local times with filters. Through Django's test client, as
a moderator's browser posts and reads."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat import services
from chat.admin import MembershipAdmin
from chat.models import Message, Report

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(make_user):
    return make_user("mod", is_staff=True, is_superuser=True)


@pytest.fixture
def console(staff):
    client = Client(HTTP_HOST="localhost")
    client.force_login(staff)
    return client


def post(room, author, body):
    return services.store_message(room=room, author=author, body=body, client_id=None).message


def cells(html: str, field: str) -> list[str]:
    """The inner HTML of a changelist column's cells."""
    return re.findall(rf'<t[dh] class="field-{field}[^"]*">(.*?)</t[dh]>', html, re.S)


@pytest.fixture
def reports(staff, alice, bob, carol, room):
    """Three reports of bob's messages; one of them resolved."""
    messages = [post(room, bob, f"rude {n}") for n in range(3)]
    made = [
        services.report_message(message=messages[0], reporter=alice, reason="rude"),
        services.report_message(message=messages[1], reporter=alice),
        services.report_message(message=messages[2], reporter=carol),
    ]
    services.close_report(report=made[2], actor=staff, resolved=True)
    return made


def test_the_front_page_counts_open_reports_and_links_to_them(console, reports):
    html = console.get("/admin/").content.decode()
    assert re.search(
        r'<a href="/admin/chat/report/\?status=open">2 open reports</a> waiting for a moderator',
        html,
    )
    Report.objects.update(status=Report.Status.DISMISSED)
    html = console.get("/admin/").content.decode()
    assert "No open reports." in html and "open reports</a>" not in html


def test_the_front_page_says_nothing_of_reports_to_staff_who_cannot_see_them(make_user):
    clerk = make_user("clerk", is_staff=True)  # staff, but no permission on reports
    client = Client(HTTP_HOST="localhost")
    client.force_login(clerk)
    assert "open report" not in client.get("/admin/").content.decode()


def test_the_report_list_opens_on_the_open_reports(console, reports):
    def listed(query=""):
        response = console.get(f"/admin/chat/report/{query}")
        assert response.status_code == 200
        return sorted(report.status for report in response.context["cl"].result_list)

    assert listed() == ["open", "open"]
    assert listed("?status=open") == ["open", "open"]
    assert listed("?status=resolved") == ["resolved"]
    assert listed("?status=all") == ["open", "open", "resolved"]
    html = console.get("/admin/chat/report/").content.decode()
    # The filter offers every status and "All", with "Open" chosen.
    assert re.search(r'<li class="selected">\s*<a href="\?status=open"', html)
    assert 'href="?status=all"' in html


def action_field_attrs(html: str, name: str) -> str | None:
    """The data-for-actions of the action form's field `name` (None: absent)."""
    match = re.search(rf'<(?:input|select)[^>]*name="{name}"[^>]*>', html)
    if match is None:
        return None
    actions = re.search(r'data-for-actions="([^"]*)"', match.group())
    return actions.group(1) if actions else ""


def test_action_fields_belong_to_the_actions_that_use_them(console, settings, bob, room):
    settings.CHAT_MUTE_MINUTES = [5, 120, 2880]
    html = console.get("/admin/chat/membership/").content.decode()
    # Every action of this list takes a reason (for the log).
    assert action_field_attrs(html, "reason").split() == MembershipAdmin.actions
    assert "ban" in MembershipAdmin.actions
    assert action_field_attrs(html, "mute_for") == "mute"
    select = re.search(r'<select[^>]*name="mute_for".*?</select>', html, re.S).group()
    assert re.findall(r"<option[^>]*>([^<]*)</option>", select) == [
        "5 minutes",
        "2 hours",
        "2 days",
        "until unmuted",
    ]
    # "Mute for" means something on the memberships list only; "Reason" is
    # never offered for Django's bulk delete, which logs nothing.
    for path in ["room", "message", "report", "moderationlog"]:
        page = console.get(f"/admin/chat/{path}/").content.decode()
        assert action_field_attrs(page, "mute_for") is None, path
    for path in ["chat/room", "auth/user"]:
        page = console.get(f"/admin/{path}/").content.decode()
        assert "delete_selected" in page
        assert "delete_selected" not in action_field_attrs(page, "reason").split()


def test_an_admin_mute_takes_the_configured_durations_only(console, settings, bob, room):
    settings.CHAT_MUTE_MINUTES = [5]
    membership = services.join_room(room=room, user=bob)

    def mute(minutes):
        data = {"action": "mute", "_selected_action": [membership.pk], "index": "0"}
        return console.post("/admin/chat/membership/", {**data, "mute_for": minutes}, follow=True)

    refused = mute("60")  # not offered: nothing happens
    assert "No action selected" in refused.content.decode()
    membership.refresh_from_db()
    assert membership.muted_until is None
    mute("5")
    membership.refresh_from_db()
    assert timedelta(minutes=4) < membership.muted_until - timezone.now() <= timedelta(minutes=5)


def test_states_read_as_words_not_icons(console, staff, alice, bob, carol, room):
    for member in (bob, carol):
        services.join_room(room=room, user=member)
    services.ban_user(room=room, user=bob, actor=staff)
    services.mute_user(room=room, user=carol, actor=staff)
    html = console.get("/admin/chat/membership/?o=1").content.decode()  # by user
    assert cells(html, "standing") == ["owner", "member", "member"]
    assert cells(html, "state") == [
        "—",
        '<span class="state state-bad">banned</span>',
        '<span class="state state-bad">muted until unmuted</span>',
    ]
    assert "icon-yes" not in html and "icon-no" not in html

    removed = post(room, alice, "gone soon")
    post(room, alice, "stays")
    services.remove_message(message=removed, actor=staff)
    html = console.get("/admin/chat/message/?o=1").content.decode()  # by seq
    assert cells(html, "removed") == ['<span class="state state-bad">removed</span>', "—"]

    services.set_room_locked(room=room, actor=staff, locked=True)
    html = console.get("/admin/chat/room/").content.decode()
    assert cells(html, "locked") == ['<span class="state">locked</span>']


def test_the_rooms_list_and_form_hide_internal_counters(console, alice, room):
    post(room, alice, "one")
    for path in ["/admin/chat/room/", f"/admin/chat/room/{room.pk}/change/"]:
        html = console.get(path).content.decode().lower()
        assert "last_seq" not in html and "last seq" not in html, path


def test_the_log_reads_in_names_and_local_times_with_filters(console, staff, make_user, bob):
    owner = make_user("zoë")
    room = services.create_room(owner=owner, name="Café Déjà Vu")
    services.join_room(room=room, user=bob)
    services.mute_user(
        room=room, user=bob, actor=owner, until=timezone.now() + timedelta(minutes=60)
    )
    services.set_room_locked(room=room, actor=staff, locked=True, reason="calm down")
    response = console.get("/admin/chat/moderationlog/")
    html = response.content.decode()
    what = cells(html, "what")
    assert what[0] == "mod locked Café Déjà Vu"
    assert re.fullmatch(
        r'zoë muted bob in Café Déjà Vu until <time datetime="[\d-]+T[\d:]+Z" data-local>'
        r"\d\d \w{3} \d{4}, \d\d:\d\d UTC</time>",
        what[1],
    ), what[1]
    assert room.slug not in "".join(what)  # names, not addresses
    # Every time on the page is a <time> the console's script shows locally.
    assert re.findall(r"\d{4}-\d\d-\d\dT\d\d:\d\d", re.sub(r'datetime="[^"]*"', "", html)) == []
    assert len(re.findall(r"<time [^>]*data-local>", "".join(cells(html, "when")))) == 2
    assert cells(html, "reason") == ["calm down", "-"]

    titles = [spec.title for spec in response.context["cl"].filter_specs]
    assert titles[:3] == ["room", "actor", "action"]
    by_actor = console.get(f"/admin/chat/moderationlog/?actor__id__exact={owner.pk}")
    assert [e.action for e in by_actor.context["cl"].result_list] == ["mute"]
    by_action = console.get("/admin/chat/moderationlog/?action__exact=lock")
    assert [e.actor for e in by_action.context["cl"].result_list] == [staff]
    by_room = console.get(f"/admin/chat/moderationlog/?room__id__exact={room.pk}")
    assert len(by_room.context["cl"].result_list) == 2
    entry = by_room.context["cl"].result_list[0]
    detail = console.get(f"/admin/chat/moderationlog/{entry.pk}/change/").content.decode()
    assert "data-local" in detail and "Café Déjà Vu" in detail


def test_the_log_list_costs_the_same_few_queries_for_many_entries(
    console, staff, bob, room, django_assert_max_num_queries
):
    for _ in range(30):
        services.set_room_locked(room=room, actor=staff, locked=True)
        services.set_room_locked(room=room, actor=staff, locked=False)
    assert Message.objects.count() == 0
    with django_assert_max_num_queries(12):
        assert console.get("/admin/chat/moderationlog/").status_code == 200


def add_rooms(make_user, first: int, count: int) -> None:
    """Rooms `first`.. with what every console list shows a row of: an owner,
    a member, a message, a report of it, a mute in the log."""
    for n in range(first, first + count):
        owner, member = make_user(f"owner{n}"), make_user(f"member{n}")
        room = services.create_room(owner=owner, name=f"Room {n}")
        services.join_room(room=room, user=member)
        message = post(room, member, f"hello {n}")
        services.report_message(message=message, reporter=owner, reason="rude")
        services.mute_user(room=room, user=member, actor=owner)


def queries_to_list(console, path: str) -> int:
    console.get(path)  # the first request also loads the session, content types…
    with CaptureQueriesContext(connection) as queries:
        response = console.get(path)
    assert response.status_code == 200
    return len(queries)


@pytest.mark.parametrize(
    "path, rows",
    [
        # The room list counts members in its own query (an annotation) and
        # joins the owner: per-row queries were fixed there.
        ("/admin/chat/room/", 1),
        ("/admin/chat/membership/", 2),
        ("/admin/chat/message/", 1),
        ("/admin/chat/report/?status=all", 1),
        ("/admin/chat/moderationlog/", 1),
    ],
)
def test_console_lists_cost_the_same_queries_for_more_rooms(console, make_user, path, rows):
    add_rooms(make_user, 0, 2)
    few = queries_to_list(console, path)
    add_rooms(make_user, 2, 6)
    many = queries_to_list(console, path)
    assert len(console.get(path).context["cl"].result_list) >= 8 * rows
    assert many == few, f"{path}: {few} queries for 2 rooms, {many} for 8"


def test_the_console_shows_edits_with_the_earlier_texts_and_self_deletions(
    console, alice, bob, room
):
    from chat.services import changes

    edited = post(room, alice, "first draft")
    changes.store_edit(room=room, user=alice, message_id=edited.pk, body="final text")
    mine = post(room, bob, "regrettable")
    changes.store_deletion(room=room, user=bob, message_id=mine.pk)
    removed = post(room, bob, "spam")
    services.remove_message(message=removed, actor=alice)

    listing = console.get("/admin/chat/message/").content.decode()
    assert "final text" in listing and "first draft" not in listing
    assert f'href="/admin/chat/message/{edited.pk}/change/">edited <time' in listing
    states = cells(listing, "removed")
    assert sum("deleted by its author" in cell for cell in states) == 1
    assert sum(re.search(r">removed<", cell) is not None for cell in states) == 1

    by_author = console.get("/admin/chat/message/?removed=author").content.decode()
    assert "regrettable" in by_author and "spam" not in by_author
    only_edited = console.get("/admin/chat/message/?edited=yes").content.decode()
    assert "final text" in only_edited and "regrettable" not in only_edited

    page = console.get(f"/admin/chat/message/{edited.pk}/change/").content.decode()
    assert "earlier texts (before each edit)" in page.lower() or "Earlier texts" in page
    assert "first draft" in page
