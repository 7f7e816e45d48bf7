"""Cache backends that never fail a request.

The cache only makes pages fast: every piece of data also lives in PostgreSQL (sessions are
``cached_db``). So when the cache server is down or slow, a call answers as a miss (``get``
returns the default, ``set`` does nothing) instead of raising, and for ``RETRY_AFTER``
seconds after a failure the server is not asked at all: a dead cache costs each request no
connect timeout, only the database queries the cache would have saved. ``incr``/``decr`` raise
``CacheUnavailable`` (there is no sensible value to make up); a missing key still raises
``ValueError`` as Django documents.
"""
import logging
import threading
import time

from django.core.cache.backends.memcached import PyMemcacheCache
from django.core.cache.backends.redis import RedisCache

log = logging.getLogger(__name__)

# Seconds the server is skipped after a failure (OPTIONS cannot carry it: they go to the client).
RETRY_AFTER = 5.0


class CacheUnavailable(Exception):
    """The cache server did not answer; the value cannot be computed without it."""


class TolerantMixin:
    _lock = threading.Lock()

    def __init__(self, server, params):
        super().__init__(server, params)
        self._skip_until = 0.0

    def _guarded(self, fallback, call, raises=False):
        if self._skip_until > time.monotonic():
            if raises:
                raise CacheUnavailable("the cache is down")
            return fallback
        try:
            return call()
        except (ValueError, TypeError):  # a missing key for incr, or a caller's mistake: Django's semantics
            raise
        except Exception as exc:  # noqa: BLE001 - any server failure turns into a miss
            with self._lock:
                first = self._skip_until <= time.monotonic()
                self._skip_until = time.monotonic() + RETRY_AFTER
            if first:
                log.warning("cache unavailable, serving without it for %.0f s: %s: %s",
                            RETRY_AFTER, type(exc).__name__, exc)
            if raises:
                raise CacheUnavailable(f"the cache failed: {type(exc).__name__}") from exc
            return fallback

    def get(self, key, default=None, version=None):
        parent = super()
        return self._guarded(default, lambda: parent.get(key, default, version))

    def set(self, *args, **kwargs):
        parent = super()
        return self._guarded(None, lambda: parent.set(*args, **kwargs))

    def add(self, *args, **kwargs):
        parent = super()
        return self._guarded(False, lambda: parent.add(*args, **kwargs))

    def touch(self, *args, **kwargs):
        parent = super()
        return self._guarded(False, lambda: parent.touch(*args, **kwargs))

    def delete(self, *args, **kwargs):
        parent = super()
        return self._guarded(False, lambda: parent.delete(*args, **kwargs))

    def has_key(self, *args, **kwargs):
        parent = super()
        return self._guarded(False, lambda: parent.has_key(*args, **kwargs))

    def get_many(self, *args, **kwargs):
        parent = super()
        return self._guarded({}, lambda: parent.get_many(*args, **kwargs))

    def set_many(self, data, *args, **kwargs):
        parent = super()
        return self._guarded(list(data), lambda: parent.set_many(data, *args, **kwargs))

    def delete_many(self, *args, **kwargs):
        parent = super()
        return self._guarded(None, lambda: parent.delete_many(*args, **kwargs))

    def incr(self, *args, **kwargs):
        parent = super()
        return self._guarded(None, lambda: parent.incr(*args, **kwargs), raises=True)

    def decr(self, *args, **kwargs):
        parent = super()
        return self._guarded(None, lambda: parent.decr(*args, **kwargs), raises=True)


class TolerantRedisCache(TolerantMixin, RedisCache):
    pass


class TolerantPyMemcacheCache(TolerantMixin, PyMemcacheCache):
    pass
