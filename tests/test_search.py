"""Message search: the query language, the excerpts, the access checks of
selectors.search_messages on the database's own index (SQLite's FTS5 table
or PostgreSQL's GIN index: the suite runs on both), and the /search/ page."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client

from chat import search, selectors, services
from chat.models import Membership, Message

# ---------------------------------------------------------------- query language


@pytest.mark.parametrize("raw", ["", "   ", None, "\t\n"])
def test_an_empty_query_is_refused(raw):
    with pytest.raises(search.InvalidQuery, match="Type a word"):
        search.parse_query(raw)


def test_a_long_query_is_refused():
    with pytest.raises(search.InvalidQuery, match="limit is 200"):
        search.parse_query("a" * 201)


@pytest.mark.parametrize("raw", ['"', "*", '"*"', "()", "-", "^:*&|!", "«»"])
def test_punctuation_alone_is_refused_with_a_reason(raw):
    with pytest.raises(search.InvalidQuery, match="words or numbers"):
        search.parse_query(raw)


def test_too_many_words_are_refused():
    with pytest.raises(search.InvalidQuery, match="at most 8"):
        search.parse_query("one two three four five six seven eight nine")


def test_query_syntax_of_either_database_is_only_words():
    query = search.parse_query('"deploy*" NEAR(fix, 2) x\'y:* & !snake_case')
    assert query.terms == ("deploy", "near", "fix", "2", "x", "y", "snake", "case")
    # Each word quoted into the database's syntax, nothing else.
    assert query.fts5().startswith('"deploy"* "near"* "fix"*')
    assert query.tsquery().startswith("'deploy':* & 'near':*")


# ---------------------------------------------------------------- excerpts


def test_highlight_escapes_the_body_and_marks_matches():
    query = search.parse_query("script alert")
    html = search.highlight('<script>alert("x")</script> & <b>bold</b>', query)
    assert "<script>" not in html and "<b>" not in html
    assert html == (
        "&lt;<mark>script</mark>&gt;<mark>alert</mark>(&quot;x&quot;)&lt;/<mark>script</mark>&gt;"
        " &amp; &lt;b&gt;bold&lt;/b&gt;"
    )


def test_highlight_marks_words_starting_with_a_term_case_insensitively():
    html = search.highlight("Deploying the deployment; redeploy", search.parse_query("deploy"))
    assert html == "<mark>Deploying</mark> the <mark>deployment</mark>; redeploy"


def test_highlight_cuts_a_long_body_around_the_first_match():
    body = "filler " * 100 + "needle in the haystack " + "tail " * 100
    html = search.highlight(body, search.parse_query("needle"))
    assert html.startswith("…") and html.endswith("…")
    assert "<mark>needle</mark>" in html
    assert len(re.sub("<[^>]+>", "", html)) <= search.EXCERPT_CHARS + 2


# ---------------------------------------------------------------- the selector


def post(room, author, body):
    return services.store_message(room=room, author=author, body=body, client_id=None).message


def found(user, query, **options):
    return [
        hit.message.body
        for hit in selectors.search_messages(user=user, query=query, **options).hits
    ]


@pytest.mark.django_db
def test_finds_messages_by_words_and_word_starts_newest_first(room, alice, bob):
    post(room, alice, "We deploy on Fridays")
    post(room, bob, "Deployment went fine")
    post(room, bob, "Nothing to see here")
    post(room, alice, "redeploy is not a start")
    assert found(bob, "deploy") == ["Deployment went fine", "We deploy on Fridays"]
    assert found(bob, "DEPLOY fri") == ["We deploy on Fridays"]  # every word, any case
    assert found(bob, "absent") == []


@pytest.mark.django_db
def test_syntax_characters_are_searched_as_words(room, alice):
    post(room, alice, 'say "NEAR" and mean it')
    assert found(alice, '"near*') == ['say "NEAR" and mean it']
    assert found(alice, "NEAR(say mean)") == ['say "NEAR" and mean it']
    assert found(alice, "AND OR NOT") == []


@pytest.mark.django_db
def test_a_private_room_is_searched_by_its_members_only(private_room, alice, bob):
    post(private_room, alice, "the secret launch date")
    assert found(bob, "secret") == []
    Membership.objects.create(room=private_room, user=bob)
    assert found(bob, "secret") == ["the secret launch date"]
    assert found(alice, "secret") == ["the secret launch date"]  # the owner


@pytest.mark.django_db
def test_a_banned_user_finds_nothing_in_that_room(room, alice, bob):
    post(room, alice, "public announcement")
    Membership.objects.create(room=room, user=bob)
    assert found(bob, "announcement") == ["public announcement"]
    services.ban_user(room=room, user=bob, actor=alice)
    assert found(bob, "announcement") == []


@pytest.mark.django_db
def test_a_removed_message_is_never_found(room, alice, bob):
    kept = post(room, bob, "spam kept")
    removed = post(room, bob, "spam removed")
    services.remove_message(message=removed, actor=alice)
    assert found(alice, "spam") == [kept.body]


@pytest.mark.django_db
def test_the_index_follows_edits_and_deletions_of_the_body(room, alice):
    message = post(room, alice, "original wording")
    Message.objects.filter(pk=message.pk).update(body="edited phrasing")
    assert found(alice, "original") == []
    assert found(alice, "phrasing") == ["edited phrasing"]
    Message.objects.filter(pk=message.pk).delete()
    assert found(alice, "phrasing") == []


@pytest.mark.django_db
def test_search_in_one_room(room, alice, make_user):
    other = services.create_room(owner=alice, name="Other")
    post(room, alice, "apples in general")
    post(other, alice, "apples elsewhere")
    assert found(alice, "apples", room=other) == ["apples elsewhere"]
    assert len(found(alice, "apples")) == 2


@pytest.mark.django_db
def test_pages_continue_with_before(room, alice):
    for n in range(5):
        post(room, alice, f"match number {n}")
    first = selectors.search_messages(user=alice, query="match", limit=2)
    assert [h.message.body for h in first.hits] == ["match number 4", "match number 3"]
    second = selectors.search_messages(user=alice, query="match", limit=2, before=first.next_before)
    assert [h.message.body for h in second.hits] == ["match number 2", "match number 1"]
    third = selectors.search_messages(user=alice, query="match", limit=2, before=second.next_before)
    assert [h.message.body for h in third.hits] == ["match number 0"]
    assert third.next_before is None


@pytest.mark.django_db
def test_a_hit_has_an_escaped_excerpt_and_its_room(room, alice):
    post(room, alice, "<script>alert(1)</script> found")
    (hit,) = selectors.search_messages(user=alice, query="found").hits
    assert hit.message.room == room and hit.message.author == alice
    assert hit.excerpt == "&lt;script&gt;alert(1)&lt;/script&gt; <mark>found</mark>"


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's FTS5 index")
def test_sqlite_index_comes_back_after_a_table_rebuild_drops_its_triggers(room, alice):
    post(room, alice, "before the rebuild")
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER chat_message_fts_insert")
        cursor.execute("DROP TRIGGER chat_message_fts_update")
        cursor.execute("DROP TRIGGER chat_message_fts_delete")
    post(room, alice, "written while unindexed")
    assert found(alice, "unindexed") == []
    assert search.ensure_sqlite_index(connection, create=False) is True
    assert found(alice, "unindexed") == ["written while unindexed"]
    assert search.ensure_sqlite_index(connection) is False  # all there: nothing to do


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's GIN index")
def test_postgres_search_uses_the_gin_index(room, alice):
    post(room, alice, "indexed words")
    queryset = selectors._matching(Message.objects.all(), search.parse_query("indexed"))
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    plan = queryset.explain()
    assert search.POSTGRES_INDEX in plan
    assert [m.body for m in queryset] == ["indexed words"]


# ---------------------------------------------------------------- the page


def logged_in(user):
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_the_page_needs_login(room):
    response = Client(HTTP_HOST="localhost").get("/search/?q=x")
    assert response.status_code == 302 and response.url.startswith("/accounts/login/")


@pytest.mark.django_db
def test_the_search_box_is_on_the_directory_and_the_room_page(room, alice):
    client = logged_in(alice)
    for path in ("/", f"/rooms/{room.slug}/"):
        page = client.get(path).content.decode()
        assert 'action="/search/"' in page and 'role="search"' in page
    room_page = client.get(f"/rooms/{room.slug}/").content.decode()
    assert f'name="room" value="{room.slug}"' in room_page
    form = client.get("/search/")
    assert form.status_code == 200 and b'<label for="search-q">' in form.content


@pytest.mark.django_db
def test_results_link_to_the_message_in_its_room_with_the_match_marked(room, alice, bob):
    message = post(room, bob, "<script>alert('pwned')</script> meeting at noon")
    page = logged_in(alice).get("/search/", {"q": "meeting"}).content.decode()
    assert "<script>alert" not in page
    assert (
        "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt; <mark>meeting</mark> at noon" in page
    )
    assert f'href="/rooms/{room.slug}/?at={message.seq}"' in page
    assert '<ol class="hits">' in page and ">bob<" in page and ">General<" in page


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("q", "says"),
    [
        ("", "Type a word to search for."),
        ("x" * 201, "the limit is 200"),
        ('"*"', "Search for words or numbers"),
        ("NEAR(", None),  # searched as the word near: no error
    ],
)
def test_bad_queries_get_a_clear_message_not_an_error(room, alice, q, says):
    response = logged_in(alice).get("/search/", {"q": q})
    if says is None:
        assert response.status_code == 200
        assert "No messages match" in response.content.decode()
    else:
        assert response.status_code == 400
        assert says in response.content.decode()
        assert 'role="alert"' in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("before", ["abc", "-1", "1" * 30, "１２"])
def test_a_bad_page_cursor_is_a_clear_400(room, alice, before):
    response = logged_in(alice).get("/search/", {"q": "x", "before": before})
    assert response.status_code == 400 and b"does not exist" in response.content


@pytest.mark.django_db
def test_results_are_paginated(room, alice, settings):
    settings.CHAT_SEARCH_PAGE = 2
    for n in range(3):
        post(room, alice, f"paged result {n}")
    client = logged_in(alice)
    first = client.get("/search/", {"q": "paged"}).content.decode()
    assert "</mark> result 2" in first and "</mark> result 1" in first and "result 0" not in first
    older = re.search(r'href="(\?q=paged&amp;before=\d+)" rel="next"', first).group(1)
    second = client.get("/search/" + older.replace("&amp;", "&")).content.decode()
    assert "</mark> result 0" in second and "result 2" not in second
    assert 'rel="next"' not in second and "Newest results" in second


@pytest.mark.django_db
def test_a_private_room_filter_is_a_404_for_outsiders(private_room, alice, bob):
    post(private_room, alice, "concealed plans")
    assert (
        logged_in(bob).get("/search/", {"q": "plans", "room": private_room.slug}).status_code == 404
    )
    assert "concealed" not in logged_in(bob).get("/search/", {"q": "plans"}).content.decode()
    page = logged_in(alice).get("/search/", {"q": "plans", "room": private_room.slug})
    assert "concealed <mark>plans</mark>" in page.content.decode()


@pytest.mark.django_db
def test_searches_are_rate_limited_per_user(room, alice, bob, settings):
    settings.CHAT_SEARCH_RATE = (2, 60)
    client = logged_in(alice)
    assert client.get("/search/", {"q": "a"}).status_code == 200
    assert client.get("/search/", {"q": "b"}).status_code == 200
    refused = client.get("/search/", {"q": "c"})
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    assert b"Too many searches" in refused.content
    assert logged_in(bob).get("/search/", {"q": "a"}).status_code == 200  # per user
