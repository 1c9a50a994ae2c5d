"""The services behind edit, delete-your-own, replies and reactions: who may,
bad input, idempotence, and the change numbers a resume relies on."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from chat import selectors, services, wire
from chat.models import Membership, Message, MessageEdit, Reaction, Room
from chat.services import changes

pytestmark = pytest.mark.django_db
THUMBS = "\U0001f44d"


def say(room, user, body, **extra):
    return services.store_message(
        room=room, author=user, body=body, client_id=None, **extra
    ).message


def last_change(room):
    return Room.objects.values_list("last_change", flat=True).get(pk=room.pk)


class TestEdit:
    def test_keeps_the_old_text_for_moderators_and_takes_a_change_number(self, room, alice):
        message = say(room, alice, "teh")
        _, text = changes.store_edit(room=room, user=alice, message_id=message.pk, body="the")
        data = json.loads(text)
        assert data["body"] == "the" and data["edited"] and data["rev"] == last_change(room) == 1
        message.refresh_from_db()
        assert message.body == "the" and message.rev == 1
        assert list(MessageEdit.objects.values_list("body", "editor")) == [("teh", alice.pk)]

    def test_the_same_text_again_is_a_no_op(self, room, alice):
        message = say(room, alice, "same")
        assert (
            changes.store_edit(room=room, user=alice, message_id=message.pk, body="same")[1] is None
        )
        assert last_change(room) == 0 and not MessageEdit.objects.exists()

    def test_only_the_author(self, room, alice, bob):
        message = say(room, alice, "mine")
        with pytest.raises(services.NotYours):
            changes.store_edit(room=room, user=bob, message_id=message.pk, body="theirs")

    def test_staff_is_not_the_author_either(self, room, alice, django_user_model):
        boss = django_user_model.objects.create_superuser("boss", password="x-long-password")
        message = say(room, alice, "mine")
        with pytest.raises(services.NotYours):
            changes.store_edit(room=room, user=boss, message_id=message.pk, body="edited")

    def test_within_the_window_only(self, room, alice, settings):
        settings.CHAT_EDIT_WINDOW = 60
        message = say(room, alice, "old")
        Message.objects.filter(pk=message.pk).update(created=timezone.now() - timedelta(minutes=2))
        with pytest.raises(services.TooLate, match="1 minutes"):
            changes.store_edit(room=room, user=alice, message_id=message.pk, body="new")
        settings.CHAT_EDIT_WINDOW = 0  # no limit
        changes.store_edit(room=room, user=alice, message_id=message.pk, body="new")

    def test_not_a_removed_message_nor_one_of_another_room(self, room, alice):
        message = say(room, alice, "gone")
        Message.objects.filter(pk=message.pk).update(deleted_at=timezone.now())
        with pytest.raises(services.Removed):
            changes.store_edit(room=room, user=alice, message_id=message.pk, body="x")
        other = Room.objects.create(name="Other", slug="other", owner=alice)
        elsewhere = say(other, alice, "there")
        with pytest.raises(services.NotFound):
            changes.store_edit(room=room, user=alice, message_id=elsewhere.pk, body="x")

    def test_banned_muted_and_locked(self, room, alice):
        message = say(room, alice, "text")
        membership, _ = Membership.objects.get_or_create(room=room, user=alice)
        Room.objects.filter(pk=room.pk).update(is_locked=True)
        with pytest.raises(services.Locked):
            changes.store_edit(room=room, user=alice, message_id=message.pk, body="x")
        Room.objects.filter(pk=room.pk).update(is_locked=False)
        Membership.objects.filter(pk=membership.pk).update(
            muted_until=timezone.now() + timedelta(hours=1)
        )
        with pytest.raises(services.Muted):
            changes.store_edit(room=room, user=alice, message_id=message.pk, body="x")
        Membership.objects.filter(pk=membership.pk).update(muted_until=None, is_banned=True)
        with pytest.raises(services.Forbidden):
            changes.store_edit(room=room, user=alice, message_id=message.pk, body="x")
        assert Message.objects.get(pk=message.pk).body == "text"


class TestDelete:
    def test_author_deletes_once(self, room, alice):
        message = say(room, alice, "oops")
        _, rev = changes.store_deletion(room=room, user=alice, message_id=message.pk)
        message.refresh_from_db()
        assert message.deleted_by_id == alice.pk and message.rev == rev == 1
        assert changes.store_deletion(room=room, user=alice, message_id=message.pk)[1] is None
        assert last_change(room) == 1

    def test_even_when_muted_but_not_someone_elses(self, room, alice, bob):
        message = say(room, alice, "oops")
        Membership.objects.update_or_create(
            room=room, user=alice, defaults={"muted_until": timezone.now() + timedelta(hours=1)}
        )
        with pytest.raises(services.NotYours):
            changes.store_deletion(room=room, user=bob, message_id=message.pk)
        changes.store_deletion(room=room, user=alice, message_id=message.pk)

    def test_a_moderators_removal_takes_a_change_number_too(self, room, alice, bob):
        message = say(room, bob, "spam")
        assert services.remove_message(message=message, actor=alice)
        message.refresh_from_db()
        assert message.rev == last_change(room) == 1


class TestReplies:
    def test_quote_of_the_original(self, room, alice, bob, settings):
        settings.CHAT_QUOTE_CHARS = 10
        original = say(room, alice, "a rather   long\nquestion")
        reply = say(room, bob, "answer", reply_to=original.pk)
        assert wire.message_object(reply)["reply_to"] == {
            "id": original.pk,
            "seq": original.seq,
            "user": "alice",
            "excerpt": "a rather \u2026",
        }

    def test_a_removed_original_is_quoted_as_removed(self, room, alice, bob):
        original = say(room, alice, "question")
        say(room, bob, "answer", reply_to=original.pk)
        services.remove_message(message=original, actor=alice)
        (_, text), *_ = selectors.message_texts_between(room=room, after=1, upto=2)
        assert json.loads(text)["reply_to"] == {
            "id": original.pk,
            "seq": 1,
            "user": None,
            "excerpt": "",
            "removed": True,
        }

    def test_not_to_a_removed_or_missing_message(self, room, alice):
        original = say(room, alice, "question")
        Message.objects.filter(pk=original.pk).update(deleted_at=timezone.now())
        for target in (original.pk, original.pk + 99):
            with pytest.raises(services.NotFound):
                say(room, alice, "answer", reply_to=target)
        assert Message.objects.count() == 1


class TestReactions:
    def test_add_and_take_back_idempotently(self, room, alice, bob):
        message = say(room, alice, "hi")
        _, text = changes.store_reaction(
            room=room, user=bob, message_id=message.pk, emoji=THUMBS, on=True
        )
        assert json.loads(text)["reactions"] == {THUMBS: ["bob"]}
        assert (
            changes.store_reaction(
                room=room, user=bob, message_id=message.pk, emoji=THUMBS, on=True
            )[1]
            is None
        )
        _, text = changes.store_reaction(
            room=room, user=bob, message_id=message.pk, emoji=THUMBS, on=False
        )
        assert "reactions" not in json.loads(text)
        assert (
            changes.store_reaction(
                room=room, user=bob, message_id=message.pk, emoji=THUMBS, on=False
            )[1]
            is None
        )
        assert last_change(room) == 2 and not Reaction.objects.exists()

    def test_bad_emoji_and_removed_messages(self, room, alice, bob):
        message = say(room, alice, "hi")
        with pytest.raises(services.InvalidInput):
            changes.store_reaction(room=room, user=bob, message_id=message.pk, emoji="x", on=True)
        Message.objects.filter(pk=message.pk).update(deleted_at=timezone.now())
        with pytest.raises(services.Removed):
            changes.store_reaction(
                room=room, user=bob, message_id=message.pk, emoji=THUMBS, on=True
            )

    def test_banned_users_do_not_react(self, room, alice, bob):
        message = say(room, alice, "hi")
        Membership.objects.create(room=room, user=bob, is_banned=True)
        with pytest.raises(services.Forbidden):
            changes.store_reaction(
                room=room, user=bob, message_id=message.pk, emoji=THUMBS, on=True
            )
        assert not Reaction.objects.exists()

    def test_muted_users_do_not_react(self, room, alice, bob):
        message = say(room, alice, "hi")
        Membership.objects.create(
            room=room, user=bob, muted_until=timezone.now() + timedelta(hours=1)
        )
        with pytest.raises(services.Muted):
            changes.store_reaction(
                room=room, user=bob, message_id=message.pk, emoji=THUMBS, on=True
            )
        assert not Reaction.objects.exists()


def test_changes_since_gives_the_latest_state_of_each_changed_message(room, alice, bob):
    first, second, third = (say(room, alice, body) for body in ("one", "two", "three"))
    changes.store_edit(room=room, user=alice, message_id=first.pk, body="uno")
    changes.store_edit(room=room, user=alice, message_id=first.pk, body="eins")
    changes.store_deletion(room=room, user=alice, message_id=second.pk)
    changes.store_reaction(room=room, user=bob, message_id=third.pk, emoji=THUMBS, on=True)
    found = selectors.changes_since(room=room, since=1, upto_seq=3)
    assert [json.loads(t)["body"] for t in found.texts] == ["eins", "three"]
    assert found.deleted == [{"id": second.pk, "seq": 2, "by": "author"}]
    assert found.last_change == 4
    assert selectors.changes_since(room=room, since=4, upto_seq=3).texts == []
    # Only up to the seq the client has: later messages come in its history.
    assert selectors.changes_since(room=room, since=0, upto_seq=2).texts[0].count("eins") == 1
