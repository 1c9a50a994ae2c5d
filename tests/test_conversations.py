"""Room-level conversation features: topics, leaving, the member list,
invites and direct messages (services, views, and the sockets they affect)."""

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from chat import services
from chat.models import Membership, Room

pytestmark = pytest.mark.django_db


def logged_in(user):
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return client


async def as_client(user):
    return await sync_to_async(logged_in)(user)


# ---------------------------------------------------------------- topic


class TestTopic:
    def test_owner_sets_and_clears_the_topic(self, alice, room):
        assert services.set_topic(room=room, actor=alice, topic="  Weekly planning  ") is True
        assert Room.objects.get(pk=room.pk).topic == "Weekly planning"
        assert services.set_topic(room=room, actor=alice, topic="Weekly planning") is False
        assert services.set_topic(room=room, actor=alice, topic="") is True
        assert Room.objects.get(pk=room.pk).topic == ""

    def test_a_member_or_moderator_cannot_set_it(self, alice, bob, room):
        Membership.objects.create(room=room, user=bob, role=Membership.Role.MODERATOR)
        with pytest.raises(services.Forbidden, match="owner"):
            services.set_topic(room=room, actor=bob, topic="mine now")
        assert Room.objects.get(pk=room.pk).topic == ""

    def test_staff_may_set_it(self, make_user, room):
        staff = make_user("mod", is_staff=True, is_superuser=True)
        assert services.set_topic(room=room, actor=staff, topic="by staff")

    @pytest.mark.parametrize(
        ("topic", "error"),
        [
            ("x" * 201, "at most 200"),
            ("two\nlines", "one line"),
            ("hidden\u200bchar", "invisible"),
            ("rtl \u202e trick", "invisible"),
        ],
    )
    def test_bad_topics_are_refused_and_change_nothing(self, alice, room, topic, error):
        services.set_topic(room=room, actor=alice, topic="before")
        with pytest.raises(services.InvalidInput, match=error):
            services.set_topic(room=room, actor=alice, topic=topic)
        assert Room.objects.get(pk=room.pk).topic == "before"

    def test_200_characters_are_fine(self, alice, room):
        assert services.set_topic(room=room, actor=alice, topic="y" * 200)

    def test_room_page_and_directory_show_it(self, alice, bob, room):
        services.set_topic(room=room, actor=alice, topic="Coffee & news")
        for path in ("/", f"/rooms/{room.slug}/"):
            page = logged_in(bob).get(path).content.decode()
            assert "Coffee &amp; news" in page

    def test_settings_page_and_form(self, alice, bob, room):
        owner = logged_in(alice)
        assert owner.get(f"/rooms/{room.slug}/settings/").status_code == 200
        assert 'href="/rooms/general/settings/"' in owner.get("/rooms/general/").content.decode()
        response = owner.post(f"/rooms/{room.slug}/topic/", {"topic": "Hello there"})
        assert response.status_code == 302 and response.url == "/rooms/general/"
        assert Room.objects.get(pk=room.pk).topic == "Hello there"
        response = owner.post(f"/rooms/{room.slug}/topic/", {"topic": "a\u200bb"})
        assert response.status_code == 400 and "invisible" in response.content.decode()
        assert Room.objects.get(pk=room.pk).topic == "Hello there"

    def test_others_get_403_and_strangers_404(self, alice, bob, carol, room, private_room):
        member = logged_in(bob)
        member.get(f"/rooms/{room.slug}/")
        assert member.get(f"/rooms/{room.slug}/settings/").status_code == 403
        assert member.post(f"/rooms/{room.slug}/topic/", {"topic": "x"}).status_code == 403
        assert "settings/" not in member.get(f"/rooms/{room.slug}/").content.decode()
        stranger = logged_in(carol)
        assert stranger.get(f"/rooms/{private_room.slug}/settings/").status_code == 404
        assert (
            stranger.post(f"/rooms/{private_room.slug}/topic/", {"topic": "x"}).status_code == 404
        )
        assert Room.objects.get(pk=room.pk).topic == ""


@pytest.mark.django_db(transaction=True)
@pytest.mark.both_transports
async def test_topic_reaches_open_sockets_on_every_worker(connect, redis_layer, alice, bob, room):
    a, _, _ = await connect(alice, room.slug, layer_alias=None)
    b, _, _ = await connect(bob, room.slug, layer_alias="worker2")
    await sync_to_async(services.set_topic)(room=room, actor=alice, topic="Live topic")
    for socket in (a, b):
        frame = await socket.expect("topic")
        assert frame == {"type": "topic", "room": "general", "topic": "Live topic"}
