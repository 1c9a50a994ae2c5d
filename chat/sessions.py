"""Sessions read through the cache, that keep working while the cache is away.

Django's cached_db store falls back to the database when reading the cache
fails, but not when writing the session back into it: with Redis down every
login check would fail, nor when checking whether a new session key is taken (every login
and sign-up makes one), nor when deleting a session from it (a password change and a login
that follows an anonymous session cycle the key, which deletes the old one).
This store treats the cache as an optimisation only.
"""

import logging

from django.contrib.sessions.backends import cached_db, db

from .redis import unless_redis_is_away

logger = logging.getLogger(__name__)


class SessionStore(cached_db.SessionStore):
    def load(self):
        cache = self._cache
        try:
            data = cache.get(self.cache_key)
        except Exception:
            data = None
        if data is not None:
            return data
        stored = self._get_session_from_db()
        if not stored:
            return {}
        data = self.decode(stored.session_data)
        try:
            cache.set(self.cache_key, data, self.get_expiry_age(expiry=stored.expire_date))
        except Exception:
            logger.warning("session cache unavailable; read the session from the database")
        return data

    def exists(self, session_key):
        with unless_redis_is_away("session key checked in the database only"):
            if self.cache_key_prefix + session_key in self._cache:
                return True
        return db.SessionStore.exists(self, session_key)

    def delete(self, session_key=None):
        """Delete from the database, then from the cache if it answers. A
        copy left in a cache that was away holds no more than it did: the
        key cycled on login was an anonymous session's, and the sessions of
        a user whose password changed fail Django's session hash check."""
        with unless_redis_is_away("session deleted from the database only"):
            super().delete(session_key)
