#!/bin/sh
# As the official image does: a redis-server started without a configuration
# file serves the container's network (protected mode off); the container
# boundary, not Redis, keeps strangers out.
set -e
if [ "${1:-}" = redis-server ]; then
    case "${2:-}" in
        *.conf) ;;
        *) shift; set -- redis-server --protected-mode no "$@" ;;
    esac
fi
exec "$@"
