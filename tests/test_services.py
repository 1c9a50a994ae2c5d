import json
import re
import threading
from datetime import timedelta

import pytest
from channels.layers import get_channel_layer
from django.db import connection
from django.utils import timezone

from chat import events, selectors, services
from chat.models import Membership, Message, Room


@pytest.mark.django_db
class TestRooms:
    def test_create_room_derives_slug_and_makes_owner(self, alice):
        room = services.create_room(owner=alice, name="  Coffee & Tea Talk! ")
        assert room.slug == "coffee-tea-talk"
        assert room.name == "Coffee & Tea Talk!"
        assert room.owner == alice  # the one record of ownership
        assert Membership.objects.get(room=room, user=alice).role == "member"
        assert selectors.moderation_rank(user=alice, room=room) == selectors.RANK_OWNER

    def test_slug_is_at_most_50_characters(self, alice):
        room = services.create_room(owner=alice, name="a" * 100)
        assert room.slug == "a" * 50

    def test_duplicate_slug_is_refused(self, alice, bob):
        services.create_room(owner=alice, name="General")
        with pytest.raises(services.InvalidInput, match="exists already"):
            services.create_room(owner=bob, name="general!")
        assert Room.objects.count() == 1

    @pytest.mark.parametrize("name", ["", "   ", "!!!", "—·—"])
    def test_name_without_letters_or_digits_is_refused(self, alice, name):
        with pytest.raises(services.InvalidInput):
            services.create_room(owner=alice, name=name)
        assert Room.objects.count() == 0

    @pytest.mark.parametrize(
        "name, slug",
        [
            ("Привет, мир", "privet-mir"),
            ("Київ", "kiyiv"),
            ("Café Déjà Vu", "cafe-deja-vu"),
            ("Straße", "strasse"),
        ],
    )
    def test_non_latin_names_get_a_readable_ascii_slug(self, alice, name, slug):
        room = services.create_room(owner=alice, name=name)
        assert (room.slug, room.name) == (slug, name)

    @pytest.mark.parametrize("name", ["日本語", "聊天室", "العربية", "한국어 방"])
    def test_names_in_other_scripts_get_a_generated_slug(self, alice, name):
        first = services.create_room(owner=alice, name=name)
        second = services.create_room(owner=alice, name=f"{name} 2")
        assert re.fullmatch(r"room-[0-9a-f]{8}", first.slug), first.slug
        assert first.slug != second.slug and first.name == name
        # The same name again is not a second room: it would look like the first.
        with pytest.raises(services.InvalidInput, match="looks too much like"):
            services.create_room(owner=alice, name=name)

    def test_owner_adds_member(self, private_room, alice, bob):
        services.add_member(room=private_room, actor=alice, username="bob")
        assert Membership.objects.filter(room=private_room, user=bob).exists()

    def test_non_owner_cannot_add_member(self, private_room, bob, carol):
        with pytest.raises(services.Forbidden):
            services.add_member(room=private_room, actor=bob, username="carol")
        assert not Membership.objects.filter(room=private_room, user=carol).exists()

    def test_unknown_username_adds_nobody_and_says_nothing_more(self, private_room, alice):
        assert services.add_member(room=private_room, actor=alice, username="nobody") is None
        assert Membership.objects.filter(room=private_room).count() == 1  # the owner


def store(room, author, body="hello", client_id=None):
    return services.store_message(room=room, author=author, body=body, client_id=client_id)


@pytest.mark.django_db
class TestStoreMessage:
    def test_seq_counts_up_per_room(self, alice, room):
        other = services.create_room(owner=alice, name="Other")
        assert [store(room, alice).message.seq for _ in range(3)] == [1, 2, 3]
        assert store(other, alice).message.seq == 1
        room.refresh_from_db()
        assert room.last_seq == 3

    def test_repeated_client_id_is_stored_once(self, alice, bob, room):
        first = store(room, alice, "once", "c-1")
        again = store(room, alice, "once", "c-1")
        assert first.created and not again.created
        assert again.message.id == first.message.id and again.message.seq == first.message.seq
        # another author may use the same client_id
        assert store(room, bob, "mine", "c-1").created
        assert Message.objects.filter(room=room).count() == 2
        room.refresh_from_db()
        assert room.last_seq == 2  # the refused duplicate used no seq

    def test_locked_room_refuses_and_stores_nothing(self, alice, room):
        Room.objects.filter(pk=room.pk).update(is_locked=True)
        with pytest.raises(services.Locked):
            store(room, alice)
        room.refresh_from_db()
        assert room.last_seq == 0 and not Message.objects.exists()

    def test_muted_author_is_refused_until_the_mute_ends(self, alice, bob, room):
        until = timezone.now() + timedelta(minutes=5)
        Membership.objects.create(room=room, user=bob, muted_until=until)
        with pytest.raises(services.Muted, match="until"):
            store(room, bob)
        Membership.objects.filter(room=room, user=bob).update(
            muted_until=timezone.now() - timedelta(seconds=1)
        )
        assert store(room, bob).message.seq == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_get_unique_gapless_seqs(settings, alice, bob, room):
    """Writers on separate database connections (as on separate workers):
    every message gets its own seq, with no gaps."""
    settings.CHAT_RATE_LIMIT = None
    per_thread, threads = 15, 4
    errors = []

    def write(author, tag):
        try:
            for i in range(per_thread):
                store(room, author, f"{tag}-{i}", f"{tag}-{i}")
        except Exception as error:  # surfaced below
            errors.append(error)
        finally:
            connection.close()

    workers = [
        threading.Thread(target=write, args=(alice if n % 2 else bob, f"t{n}"))
        for n in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert not errors
    seqs = sorted(Message.objects.filter(room=room).values_list("seq", flat=True))
    assert seqs == list(range(1, per_thread * threads + 1))
    # within one writer, later messages have higher seqs (commit order)
    for n in range(threads):
        mine = Message.objects.filter(body__startswith=f"t{n}-").order_by("id")
        assert [m.seq for m in mine] == sorted(m.seq for m in mine)


@pytest.mark.django_db(transaction=True)
async def test_post_message_broadcasts_the_message_object_and_again_on_a_retry(alice, room):
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(events.room_group(room.pk), channel)
    posted = await services.post_message(room=room, author=alice, body="hi", client_id="x")
    event = await layer.receive(channel)
    assert event["type"] == "room.message" and event["room"] == room.pk
    assert event["seq"] == posted.message.seq
    message = json.loads(event["text"])
    assert message | {"created": None, "id": None} == {
        "id": None,
        "seq": 1,
        "room": "general",
        "user": "alice",
        "body": "hi",
        "created": None,
        "client_id": "x",
    }
    assert message["created"].endswith("Z")
    # A retry is answered with the first message and broadcast again: the
    # first broadcast may have been lost with the connection that sent it.
    # Hubs drop a seq they have delivered already.
    again = await services.post_message(room=room, author=alice, body="hi", client_id="x")
    assert not again.created and again.message.seq == 1
    assert json.loads((await layer.receive(channel))["text"]) == message
    await services.post_message(room=room, author=alice, body="next", client_id=None)
    assert (await layer.receive(channel))["seq"] == 2


@pytest.mark.django_db(transaction=True)
async def test_rate_limit_counts_posts_per_user(settings, alice, bob, room):
    settings.CHAT_RATE_LIMIT = (3, 60)

    async def post(author):
        return await services.post_message(room=room, author=author, body="hi", client_id=None)

    for _ in range(3):
        await post(alice)
    with pytest.raises(services.RateLimited) as caught:
        await post(alice)
    assert 0 < caught.value.fields["retry_after"] <= 60
    assert (await post(bob)).created  # the limit is per user
    assert await Message.objects.filter(author=alice).acount() == 3


@pytest.mark.django_db(transaction=True)
async def test_rate_limit_off(settings, alice, room):
    settings.CHAT_RATE_LIMIT = None
    for _ in range(30):
        await services.post_message(room=room, author=alice, body="hi", client_id=None)
    assert await Message.objects.acount() == 30


@pytest.mark.parametrize(
    "refusal, code, http_status, close_code",
    [
        # docs/protocol.md: the error codes, the room page's statuses, and the
        # refusal that ends a socket (no access left: 4403).
        (services.InvalidInput, "bad_request", 400, None),
        (services.RateLimited, "rate_limited", 429, None),
        (services.Muted, "muted", 403, None),
        (services.Locked, "locked", 403, None),
        (services.Forbidden, "forbidden", 403, 4403),
        (services.NotFound, "not_found", 404, None),
    ],
)
def test_each_refusal_carries_its_outcome_at_every_door(refusal, code, http_status, close_code):
    error = refusal("no", retry_after=1.5)
    assert (error.code, error.http_status, error.close_code) == (code, http_status, close_code)
    assert error.detail == "no" and error.fields == {"retry_after": 1.5}
    assert issubclass(refusal, services.ServiceError)
