"""Full-text search of message bodies: the query language, the index of each
database, and the highlighted excerpts.

The query language is deliberately small and the same on both databases:
the words of the query (runs of letters, digits and underscores; everything
else, quotes, asterisks, parentheses and operators included, only separates
words), every one of which must start a word of the message (so `deploy`
finds "deploying"), case-insensitively. Nothing the user types reaches the
database's own query syntax: each word is quoted into it here.

Indexes, both keyed by `chat_message.body`, so that any write of the body
(a send, an edit, a deletion of the row) keeps them in step by itself:

- PostgreSQL: a GIN index on `to_tsvector('simple', COALESCE(body, ''))`,
  the very expression `SearchVector("body", config="simple")` compiles to,
  so the planner uses it for `@@` matches.
- SQLite: an FTS5 table `chat_message_fts` over `chat_message` (external
  content, rowid = message id) kept in step by triggers on INSERT, UPDATE
  OF body and DELETE. Django's SQLite schema editor rebuilds a table to
  alter it, which drops its triggers: `ensure_sqlite_index` (run by the
  migration and after every `migrate`) puts back whatever is missing and
  rebuilds the index when it had to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

MAX_QUERY_LENGTH = 200
MAX_TERMS = 8
EXCERPT_CHARS = 240  # about this many characters of the body around the first match

_WORD = re.compile(r"\w+")
# Case-folded, as both indexes fold case (to_tsvector('simple'), unicode61).
SQLITE_FTS_TABLE = "chat_message_fts"


class InvalidQuery(ValueError):
    """A query that cannot be searched for; the message says why, to a person."""


@dataclass(frozen=True)
class Query:
    text: str  # as typed, trimmed
    terms: tuple[str, ...]  # lower-cased words, each a prefix to match

    def tsquery(self) -> str:
        """PostgreSQL tsquery text (raw): every term as a quoted prefix."""
        return " & ".join(f"'{term}':*" for term in self.terms)

    def fts5(self) -> str:
        """SQLite FTS5 MATCH text: every term as a quoted prefix."""
        return " ".join(f'"{term}"*' for term in self.terms)


def parse_query(raw: str | None) -> Query:
    text = (raw or "").strip()
    if not text:
        raise InvalidQuery("Type a word to search for.")
    if len(text) > MAX_QUERY_LENGTH:
        raise InvalidQuery(
            f"That search is {len(text)} characters long; the limit is {MAX_QUERY_LENGTH}."
        )
    if "\x00" in text:
        raise InvalidQuery("The search must not contain NUL characters.")
    terms: list[str] = []
    for word in _WORD.findall(text):
        term = word.casefold().replace("_", " ").strip()
        # An underscore splits words in both indexes: keep the parts.
        for part in term.split():
            if part not in terms:
                terms.append(part)
    if not terms:
        raise InvalidQuery(
            "Search for words or numbers: punctuation and symbols on their own are not searched."
        )
    if len(terms) > MAX_TERMS:
        raise InvalidQuery(f"Use at most {MAX_TERMS} words in a search.")
    return Query(text=text, terms=tuple(terms))


# ---------------------------------------------------------------- excerpts


def highlight(body: str, query: Query, *, width: int = EXCERPT_CHARS) -> SafeString:
    """An excerpt of `body` around its first match, HTML-escaped, with every
    word that matches a term wrapped in <mark>. Only this function's own tags
    are markup: the body is text, whatever it contains."""
    spans = [
        (m.start(), m.end())
        for m in _WORD.finditer(body)
        if any(part.startswith(term) for term in query.terms for part in _parts(m.group()))
    ]
    start, end = _window(body, spans[0][0] if spans else 0, width)
    out: list[str] = ["…" if start > 0 else ""]
    cursor = start
    for span_start, span_end in spans:
        if span_end <= start or span_start >= end:
            continue
        span_start, span_end = max(span_start, start), min(span_end, end)
        out.append(escape(body[cursor:span_start]))
        out.append(f"<mark>{escape(body[span_start:span_end])}</mark>")
        cursor = span_end
    out.append(escape(body[cursor:end]))
    if end < len(body):
        out.append("…")
    return mark_safe("".join(out))  # noqa: S308  (every piece of the body went through escape)


def _parts(word: str) -> list[str]:
    return word.casefold().replace("_", " ").split()


def _window(body: str, at: int, width: int) -> tuple[int, int]:
    """[start, end) of about `width` characters of body showing position
    `at`, a third of the way in, cut at whitespace where there is some."""
    if len(body) <= width:
        return 0, len(body)
    start = max(0, at - width // 3)
    end = min(len(body), start + width)
    start = max(0, end - width)
    if start > 0:
        space = body.find(" ", start, at)
        if space != -1:
            start = space + 1
    if end < len(body):
        space = body.rfind(" ", max(at + 1, end - 40), end)
        if space != -1:
            end = space
    return start, end


# ---------------------------------------------------------------- SQLite index

_SQLITE_TRIGGERS = {
    "chat_message_fts_insert": f"""
        CREATE TRIGGER IF NOT EXISTS chat_message_fts_insert AFTER INSERT ON chat_message BEGIN
            INSERT INTO {SQLITE_FTS_TABLE}(rowid, body) VALUES (new.id, new.body);
        END""",
    "chat_message_fts_delete": f"""
        CREATE TRIGGER IF NOT EXISTS chat_message_fts_delete AFTER DELETE ON chat_message BEGIN
            INSERT INTO {SQLITE_FTS_TABLE}({SQLITE_FTS_TABLE}, rowid, body)
                VALUES ('delete', old.id, old.body);
        END""",
    "chat_message_fts_update": f"""
        CREATE TRIGGER IF NOT EXISTS chat_message_fts_update AFTER UPDATE OF body ON chat_message
        BEGIN
            INSERT INTO {SQLITE_FTS_TABLE}({SQLITE_FTS_TABLE}, rowid, body)
                VALUES ('delete', old.id, old.body);
            INSERT INTO {SQLITE_FTS_TABLE}(rowid, body) VALUES (new.id, new.body);
        END""",
}


def ensure_sqlite_index(connection, *, create: bool = True) -> bool:
    """Create the FTS5 table and its triggers where missing; rebuild the
    index from chat_message when anything was missing (a table rebuilt by a
    later migration loses its triggers, and the writes since). With
    create=False (after `migrate`), only repair an index that exists: its
    migration may be unapplied. True when it rebuilt."""
    if connection.vendor != "sqlite":
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM sqlite_master WHERE name IN (%s, %s, %s, %s)",
            [SQLITE_FTS_TABLE, *_SQLITE_TRIGGERS],
        )
        present = {row[0] for row in cursor.fetchall()}
        if present == {SQLITE_FTS_TABLE, *_SQLITE_TRIGGERS}:
            return False
        if not create and SQLITE_FTS_TABLE not in present:
            return False
        cursor.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {SQLITE_FTS_TABLE} USING fts5("
            "body, content='chat_message', content_rowid='id', "
            "tokenize='unicode61 remove_diacritics 0')"
        )
        for sql in _SQLITE_TRIGGERS.values():
            cursor.execute(sql)
        cursor.execute(f"INSERT INTO {SQLITE_FTS_TABLE}({SQLITE_FTS_TABLE}) VALUES ('rebuild')")
    return True


def drop_sqlite_index(connection) -> None:
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        for name in _SQLITE_TRIGGERS:
            cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
        cursor.execute(f"DROP TABLE IF EXISTS {SQLITE_FTS_TABLE}")


# ---------------------------------------------------------------- PostgreSQL index

POSTGRES_INDEX = "chat_message_body_fts"
POSTGRES_CONFIG = "simple"
