"""Sessions read through the cache, that keep working while the cache is away.

Django's cached_db store falls back to the database when reading the cache
fails, but not when writing the session back into it: with Redis down every
login check would fail. This store treats the cache as an optimisation only.
"""

import logging

from django.contrib.sessions.backends import cached_db

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
