"""Sessions read through the cache, that keep working while the cache is away.

Django's cached_db store falls back to the database when reading the cache
fails, but raises when the cache fails it elsewhere: writing a session read
from the database back into the cache (every request with Redis down),
checking whether a new session key is taken (every login and sign-up), and
deleting a session's copy (logout, and the key cycled by a login or a
password change). This store treats the cache as an optimisation only.
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
        """Delete from the database, then from the cache if it answers.
        A copy left in a cache that was only stalled (its data kept) is
        served until it expires: harmless for a key cycled on login (an
        anonymous session's) or on a password change (the old sessions fail
        Django's session hash check); a logout's session lives on that long
        (docs/operations.md says what to do)."""
        with unless_redis_is_away("session deleted from the database only"):
            super().delete(session_key)
