#!/bin/sh
# The part of the official postgres image's entrypoint that compose relies on:
# the first start initializes $PGDATA for POSTGRES_USER with POSTGRES_PASSWORD
# (required, as there) and creates POSTGRES_DB; then postgres serves every
# address with password authentication.
set -eu
if [ "${1:-}" = postgres ]; then
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
        user=${POSTGRES_USER:-postgres}
        db=${POSTGRES_DB:-$user}
        pwfile=$(mktemp)
        printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
        initdb --username="$user" --pwfile="$pwfile" \
            --auth-local=trust --auth-host=scram-sha-256 > /dev/null
        rm -f "$pwfile"
        echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
        if [ "$db" != postgres ]; then
            echo "CREATE DATABASE \"$db\";" | postgres --single -D "$PGDATA" postgres > /dev/null
        fi
        echo "initialized $PGDATA: database $db, user $user"
    fi
    shift
    exec postgres -c listen_addresses='*' "$@"
fi
exec "$@"
