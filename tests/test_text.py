"""Text tricks: look-alike usernames and room names, names that are URL path
tricks, bidi controls, and messages that show nothing."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from chat import services, text
from chat.frames import FrameError, SendMessage, parse_client_frame
from chat.models import Room, UsernameSkeleton
from tests.admin_forms import change_form_data

pytestmark = pytest.mark.django_db

CYRILLIC_A = "\u0430"
CYRILLIC_O = "\u043e"
RLO = "\u202e"  # right-to-left override
ZWSP = "\u200b"  # zero-width space


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("admin", f"{CYRILLIC_A}dmin"),
        ("Lobby", f"L{CYRILLIC_O}bby"),
        ("admin", "ADMIN"),
        ("admin", "adrnin"),
        ("admin", "admín"),
        ("Lobby", "ＬＯＢＢＹ"),  # fullwidth
        ("Lobby", "𝐋𝐨𝐛𝐛𝐲"),  # mathematical bold
        ("Lobby", f"Lob{ZWSP}by"),
        ("Ilya", "1lya"),
        ("Book Club", "Book  Club "),
        ("HELLO", "\u0397ELLO"),  # Greek capital eta
        ("paypal", "p\u0430yp\u0430l"),
    ],
)
def test_look_alikes_have_one_skeleton(first, second):
    assert text.skeleton(first) == text.skeleton(second)


@pytest.mark.parametrize(("first", "second"), [("alice", "bob"), ("Lobby", "Lobster")])
def test_different_names_have_different_skeletons(first, second):
    assert text.skeleton(first) != text.skeleton(second)


# ---------------------------------------------------------------- message bodies


def send(body):
    return json.dumps({"type": "message.send", "body": body})


@pytest.mark.parametrize(
    "body",
    [ZWSP, f"{ZWSP}\u200c\u200d\u2060\ufeff", f" {ZWSP} \n", "\u3164", "\u2800", "\u00ad"],
    ids=["zwsp", "zero-widths", "spaces-and-zwsp", "hangul-filler", "braille-blank", "shy"],
)
def test_a_body_of_invisible_characters_only_is_refused(body):
    with pytest.raises(FrameError) as error:
        parse_client_frame(send(body))
    assert error.value.code == "bad_request"


@pytest.mark.parametrize("control", ["\u202a", "\u202b", "\u202d", RLO, "\u2066", "\u2069"])
def test_a_body_with_a_bidi_override_is_refused(control):
    with pytest.raises(FrameError) as error:
        parse_client_frame(send(f"see file {control}gpj.exe"))
    assert error.value.code == "bad_request" and "bidirectional" in error.value.detail


@pytest.mark.parametrize(
    "body",
    [
        "שלום world",  # right-to-left text as such
        "שלום\u200f!",  # with a right-to-left mark
        "👨\u200d👩\u200d👧",  # an emoji family joined by zero-width joiners
        "café",
    ],
)
def test_ordinary_text_with_joiners_and_marks_is_fine(body):
    assert parse_client_frame(send(body)) == SendMessage(body, None)


# ---------------------------------------------------------------- usernames


def sign_up(username):
    client = Client(HTTP_HOST="localhost")
    password = "correct-horse-battery"
    response = client.post(
        "/accounts/signup/",
        {"username": username, "password1": password, "password2": password},
    )
    return response


@pytest.mark.parametrize("username", [".", "..", "...", "+", "@", "-", "._."])
def test_usernames_that_are_url_path_tricks_are_refused_at_signup(username, django_user_model):
    response = sign_up(username)
    assert response.status_code == 400
    assert b"at least one letter or digit" in response.content
    assert not django_user_model.objects.filter(username=username).exists()


@pytest.mark.parametrize("username", [f"bob{ZWSP}", f"{RLO}bob", "\u3164"])
def test_usernames_with_hidden_characters_are_refused(username, django_user_model):
    assert sign_up(username).status_code == 400
    assert not django_user_model.objects.filter(username=username).exists()


@pytest.mark.parametrize(
    ("username", "error"),
    [
        (f"{CYRILLIC_A}lice", b"looks too much like"),
        ("a1ice", b"looks too much like"),
        ("al\u0456ce", b"looks too much like"),  # Cyrillic i
        ("ALICE", b"already exists"),  # Django's own check of case-only differences
    ],
)
def test_usernames_that_look_like_an_existing_one_are_refused(
    username, error, alice, django_user_model
):
    response = sign_up(username)
    assert response.status_code == 400 and error in response.content
    assert not django_user_model.objects.filter(username=username).exists()


def test_a_new_distinct_name_signs_up_and_its_skeleton_is_kept(django_user_model):
    assert sign_up("zoë.b+chat@home").status_code == 302
    user = django_user_model.objects.get(username="zoë.b+chat@home")
    assert UsernameSkeleton.objects.get(user=user).skeleton == text.skeleton(user.username)


def test_renaming_keeps_the_skeleton_in_step(alice):
    alice.username = "alicia"
    alice.save()
    assert UsernameSkeleton.objects.get(user=alice).skeleton == text.skeleton("alicia")
    assert sign_up("ALICIA").status_code == 400
    assert sign_up("alice").status_code == 302  # the old name is free again


@pytest.fixture
def admin_client(make_user):
    client = Client(HTTP_HOST="localhost")
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    return client


def test_the_admins_user_forms_apply_the_same_rules(admin_client, alice, django_user_model):
    for username in ["..", f"{CYRILLIC_A}lice"]:
        response = admin_client.post(
            "/admin/auth/user/add/",
            {"username": username, "usable_password": "false"},
        )
        assert response.status_code == 200  # the form again, with the error
        assert not django_user_model.objects.filter(username=username).exists()
    data = change_form_data(admin_client, f"/admin/auth/user/{alice.pk}/change/")
    data["username"] = "."
    response = admin_client.post(f"/admin/auth/user/{alice.pk}/change/", data)
    assert response.status_code == 200 and b"at least one letter or digit" in response.content
    alice.refresh_from_db()
    assert alice.username == "alice"


def test_moderation_urls_work_for_names_with_symbols(make_user, room):
    # "+" and "@" are allowed in usernames; the room page quotes them.
    target = make_user("x+y@z")
    services.join_room(room=room, user=target)
    client = Client(HTTP_HOST="localhost")
    client.force_login(room.owner)
    response = client.post(f"/rooms/{room.slug}/users/x%2By%40z/mute/")
    assert response.json() == {"ok": True}


# ---------------------------------------------------------------- room names


def test_room_names_that_look_like_a_visible_room_are_refused(alice, bob, room):
    # (Cyrillic look-alikes are romanized into the slug "general": that
    # answers "exists already", tested elsewhere.)
    for name in ["Genera1", "Gener\u03b1l", "GeneraI"]:
        with pytest.raises(services.InvalidInput, match="looks too much like the room 'General'"):
            services.create_room(owner=bob, name=name)
    assert Room.objects.count() == 1


@pytest.mark.parametrize("name", [f"Lob{ZWSP}by", f"{RLO}Lobby", "Lo\u2066bby"])
def test_room_names_with_hidden_characters_are_refused(alice, name):
    with pytest.raises(services.InvalidInput, match="invisible"):
        services.create_room(owner=alice, name=name)
    assert Room.objects.count() == 0


def test_a_room_name_of_invisible_characters_is_refused_on_the_form(alice):
    client = Client(HTTP_HOST="localhost")
    client.force_login(alice)
    response = client.post("/rooms/new/", {"name": f"{ZWSP}{ZWSP}"})
    assert response.status_code == 400 and b"A room needs a name" in response.content
    assert Room.objects.count() == 0


def test_staff_renaming_a_room_in_the_admin_face_the_same_rules(admin_client, alice, room):
    other = services.create_room(owner=alice, name="Lobby")
    path = f"/admin/chat/room/{other.pk}/change/"
    data = change_form_data(admin_client, path)
    data["name"] = "G\u0435neral"
    response = admin_client.post(path, data)
    assert response.status_code == 200 and b"looks too much like" in response.content
    data["name"] = "Lounge"
    assert admin_client.post(path, data).status_code == 302
    other.refresh_from_db()
    assert other.name == "Lounge" and other.name_skeleton == text.skeleton("Lounge")
