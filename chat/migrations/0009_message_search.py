"""Full-text search of message bodies (chat.search): a GIN index on
PostgreSQL, an FTS5 table kept in step by triggers on SQLite. Each database
gets only its own; on any other database this does nothing (and search
falls back to a scan, see chat.selectors.search_messages)."""

from django.db import migrations

from chat import search

POSTGRES_CREATE = (
    f"CREATE INDEX IF NOT EXISTS {search.POSTGRES_INDEX} ON chat_message "
    f"USING gin (to_tsvector('{search.POSTGRES_CONFIG}'::regconfig, COALESCE(body, '')))"
)
POSTGRES_DROP = f"DROP INDEX IF EXISTS {search.POSTGRES_INDEX}"


def forwards(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_CREATE)
    elif connection.vendor == "sqlite":
        search.ensure_sqlite_index(connection)


def backwards(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_DROP)
    elif connection.vendor == "sqlite":
        search.drop_sqlite_index(connection)


class Migration(migrations.Migration):
    dependencies = [("chat", "0008_fill_name_skeletons")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
