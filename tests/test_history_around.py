"""The `history` frame's `around` and `after` (a search result opens its room
at the message): the messages on both sides of a seq, and the newer side
page by page, over both transports."""

import pytest
from asgiref.sync import sync_to_async

from chat import frames, selectors, services
from chat.frames import FrameError, HistoryRequest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.both_transports]


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ('{"type": "history", "around": 10, "limit": 5}', HistoryRequest(None, 5, around=10)),
        ('{"type": "history", "after": 0}', HistoryRequest(None, 50, after=0)),
        ('{"type": "history", "before": 7}', HistoryRequest(7, 50)),
    ],
)
def test_history_frames_parse(text, parsed):
    assert frames.parse_client_frame(text) == parsed


@pytest.mark.parametrize(
    "text",
    [
        '{"type": "history", "around": "10"}',
        '{"type": "history", "around": -1}',
        '{"type": "history", "after": true}',
        '{"type": "history", "around": 3, "before": 5}',
        '{"type": "history", "after": 3, "around": 5}',
        '{"type": "history", "around": 3, "limit": 0}',
    ],
)
def test_bad_history_frames_are_bad_requests(text):
    with pytest.raises(FrameError) as caught:
        frames.parse_client_frame(text)
    assert caught.value.code == "bad_request"


def fill(room, author, count):
    for i in range(count):
        services.store_message(room=room, author=author, body=f"m{i + 1}", client_id=None)


def seqs(texts):
    import json

    return [json.loads(text)["seq"] for text in texts]


def test_around_a_seq_gives_both_sides(room, alice):
    fill(room, alice, 20)
    texts, older, newer = selectors.message_texts_around(room=room, around=10, limit=6)
    assert seqs(texts) == [7, 8, 9, 10, 11, 12] and older and newer
    texts, older, newer = selectors.message_texts_around(room=room, around=2, limit=6)
    assert seqs(texts) == [1, 2, 3, 4, 5, 6] and not older and newer
    texts, older, newer = selectors.message_texts_around(room=room, around=19, limit=6)
    assert seqs(texts) == [16, 17, 18, 19, 20] and older and not newer


def test_after_a_seq_gives_the_next_ones(room, alice):
    fill(room, alice, 10)
    texts, older, newer = selectors.message_texts_around(room=room, after=4, limit=3)
    assert seqs(texts) == [5, 6, 7] and older and newer
    texts, older, newer = selectors.message_texts_around(room=room, after=7, limit=3)
    assert seqs(texts) == [8, 9, 10] and older and not newer
    texts, older, newer = selectors.message_texts_around(room=room, after=10, limit=3)
    assert texts == [] and older and not newer


def test_removed_messages_are_left_out_around_a_seq(room, alice):
    fill(room, alice, 9)
    from chat.models import Message

    target = Message.objects.get(room=room, seq=5)
    services.remove_message(message=Message.objects.get(room=room, seq=4), actor=alice)
    services.remove_message(message=target, actor=alice)
    texts, _, _ = selectors.message_texts_around(room=room, around=5, limit=4)
    assert seqs(texts) == [2, 3, 6, 7]


async def test_history_around_over_the_socket(connect, alice, room, settings):
    settings.CHAT_RATE_LIMIT = None
    await sync_to_async(fill)(room, alice, 120)
    socket, _, latest = await connect(alice, room.slug)
    assert latest["messages"][0]["seq"] == 71  # the latest 50
    await socket.send(type="history", around=20, limit=10)
    page = await socket.expect("history")
    assert [m["seq"] for m in page["messages"]] == list(range(15, 25))
    assert page["has_more"] is True and page["has_newer"] is True
    await socket.send(type="history", after=24, limit=50)
    page = await socket.expect("history")
    assert [m["seq"] for m in page["messages"]] == list(range(25, 75))
    assert page["has_more"] is True and page["has_newer"] is True
    await socket.send(type="history", after=110, limit=50)
    page = await socket.expect("history")
    assert [m["seq"] for m in page["messages"]] == list(range(111, 121))
    assert page["has_newer"] is False
    # The contract's own `before` answers stay as they were: no has_newer.
    await socket.send(type="history", before=3, limit=5)
    page = await socket.expect("history")
    assert "has_newer" not in page and [m["seq"] for m in page["messages"]] == [1, 2]


async def test_a_bad_around_is_an_error_frame(connect, alice, room):
    socket, _, _ = await connect(alice, room.slug)
    await socket.send(type="history", around=5, before=9)
    error = await socket.expect("error")
    assert error["code"] == "bad_request" and "one of" in error["detail"]
