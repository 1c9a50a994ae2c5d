import json

import pytest

from chat.frames import (
    DeleteMessage,
    EditMessage,
    FrameError,
    HistoryRequest,
    Ping,
    React,
    Read,
    SendMessage,
    Typing,
    parse_after,
    parse_client_frame,
)


def send(**fields):
    return json.dumps({"type": "message.send", **fields})


@pytest.mark.parametrize(
    "text, expected",
    [
        (send(body="hi", client_id="c1"), SendMessage("hi", "c1")),
        (send(body="hi"), SendMessage("hi", None)),
        (send(body=" padded "), SendMessage(" padded ", None)),
        ('{"type": "typing"}', Typing()),
        ('{"type": "ping", "extra": 1}', Ping()),
        ('{"type": "history", "before": 10, "limit": 5}', HistoryRequest(10, 5)),
        ('{"type": "history", "before": 10}', HistoryRequest(10, 50)),
        ('{"type": "read", "seq": 7}', Read(7)),
        ('{"type": "read", "seq": 0}', Read(0)),
    ],
)
def test_valid_frames(text, expected):
    assert parse_client_frame(text) == expected


@pytest.mark.parametrize(
    "text, code",
    [
        ("not json", "bad_request"),
        ("[1, 2]", "bad_request"),
        ('"a string"', "bad_request"),
        ("{}", "bad_request"),
        ('{"type": 5}', "bad_request"),
        ('{"type": "dance"}', "bad_request"),
        ('{"type": "message.send"}', "bad_request"),
        (send(body=5), "bad_request"),
        (send(body=None), "bad_request"),
        (send(body=""), "bad_request"),
        (send(body=" \n\t "), "bad_request"),
        (send(body="a\x00b"), "bad_request"),
        (send(body="ok", client_id=""), "bad_request"),
        (send(body="ok", client_id="x" * 65), "bad_request"),
        (send(body="ok", client_id=7), "bad_request"),
        (send(body="ok", client_id="a\x00"), "bad_request"),
        ('{"type": "message.send", "body": "\\ud800"}', "bad_request"),
        ('{"type": "history", "before": "10"}', "bad_request"),
        ('{"type": "history", "before": true}', "bad_request"),
        ('{"type": "history", "before": -1}', "bad_request"),
        ('{"type": "history", "before": 10, "limit": 0}', "bad_request"),
        ('{"type": "history", "before": 10, "limit": 101}', "bad_request"),
        ('{"type": "history", "before": 10, "limit": 2.5}', "bad_request"),
        ('{"type": "history", "before": NaN}', "bad_request"),
        ('{"type": "read"}', "bad_request"),
        ('{"type": "read", "seq": "5"}', "bad_request"),
        ('{"type": "read", "seq": -1}', "bad_request"),
        ('{"type": "read", "seq": 1.5}', "bad_request"),
        ('{"type": "read", "seq": false}', "bad_request"),
        ('{"type": "read", "seq": 9223372036854775808}', "bad_request"),
        ('{"type": "read", "seq": ' + "9" * 5000 + "}", "bad_request"),
    ],
)
def test_bad_frames(text, code):
    with pytest.raises(FrameError) as caught:
        parse_client_frame(text)
    assert caught.value.code == code
    assert caught.value.detail


def test_body_length_limit_counts_characters(settings):
    settings.CHAT_MAX_MESSAGE_LENGTH = 10
    assert parse_client_frame(send(body="é" * 10)).body == "é" * 10
    with pytest.raises(FrameError) as caught:
        parse_client_frame(send(body="x" * 11))
    assert caught.value.code == "too_long"


def test_deeply_nested_json_is_a_bad_request():
    with pytest.raises(FrameError):
        parse_client_frame("[" * 100000 + "]" * 100000)


@pytest.mark.parametrize("raw, expected", [(None, None), ("", None), ("0", 0), ("42", 42)])
def test_after_parameter(raw, expected):
    assert parse_after(raw) == expected


@pytest.mark.parametrize("raw", ["-1", "abc", "1.5", "٣"])
def test_bad_after_parameter(raw):
    with pytest.raises(FrameError):
        parse_after(raw)


# ---------------------------------------------------------------- message changes

THUMBS = "\U0001f44d"


@pytest.mark.parametrize(
    "frame, expected",
    [
        ({"type": "message.send", "body": "re", "reply_to": 7}, SendMessage("re", None, 7)),
        ({"type": "message.edit", "id": 3, "body": "new"}, EditMessage(3, "new", None)),
        ({"type": "message.delete", "id": 3, "client_id": "d"}, DeleteMessage(3, "d")),
        ({"type": "reaction", "id": 3, "emoji": THUMBS}, React(3, THUMBS, True, None)),
        (
            {"type": "reaction", "id": 3, "emoji": THUMBS, "on": False},
            React(3, THUMBS, False, None),
        ),
    ],
)
def test_change_frames_parse(frame, expected):
    assert parse_client_frame(json.dumps(frame)) == expected


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "message.send", "body": "re", "reply_to": "7"},
        {"type": "message.send", "body": "re", "reply_to": 0},
        {"type": "message.edit", "id": 3},
        {"type": "message.edit", "id": True, "body": "x"},
        {"type": "message.edit", "id": 3, "body": "\u202eevil"},
        {"type": "message.delete"},
        {"type": "message.delete", "id": 3, "client_id": ""},
        {"type": "reaction", "id": 3, "emoji": "\U0001f44d", "on": 1},
        {"type": "reaction", "id": 3, "emoji": "x"},
    ],
)
def test_bad_change_frames_are_bad_requests(frame):
    with pytest.raises(FrameError) as refused:
        parse_client_frame(json.dumps(frame))
    assert refused.value.code == "bad_request"
