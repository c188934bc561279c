"""API throttles: a sliding-window counter in the shared cache, failing open.

The counts live in the shared default cache (Redis, or a file cache; see CACHES in
crm.settings), so every web worker sees the same count. DRF's own throttles keep a list of
every request's time per client and read and write it whole on each request (up to 1,200
timestamps at the default user rate, two round trips); these keep one counter per client and
window instead, and estimate the last ``duration`` seconds as the current window's count plus
the share of the previous window's count that still overlaps it (the sliding-window counter).
On Redis that is one pipelined round trip (and one more for a refused request, which is not
counted).

When the cache cannot be read or written, the request is let through and a warning is logged,
at most once a minute per process so an outage does not flood the log.
"""
import logging
import time

from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache import cache as default_cache
from django.core.cache.backends.redis import RedisCache
from rest_framework import throttling

from crm.clientip import client_ip

log = logging.getLogger(__name__)

# Seconds between two warnings about the same unreachable cache, per process.
WARN_EVERY = 60.0
_last_warning = {"at": float("-inf")}


class _SlidingWindowCounter:
    def get_ident(self, request):
        """The anonymous client's key: crm.clientip's address. DRF's own reads X-Forwarded-For
        whenever it is sent (NUM_PROXIES unset), so a client could pick a fresh count per request."""
        return client_ip(request)

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.now = self.timer()
        window, self.offset = divmod(self.now, self.duration)
        self.current, self.previous = self._count(int(window))
        if self.previous * (1 - self.offset / self.duration) + self.current <= self.num_requests:
            return True
        # Refused: take it back out, as DRF counts only served requests (a client that waits as
        # long as Retry-After says is then served).
        self.cache.decr(f"{self.key}:{int(window)}")
        self.current -= 1
        return False

    def _count(self, window: int) -> tuple[int, int]:
        """Count this request in the window's counter: (this window's count, the previous one's)."""
        current, previous, ttl = f"{self.key}:{window}", f"{self.key}:{window - 1}", 2 * self.duration + 1
        cache = caches[DEFAULT_CACHE_ALIAS] if self.cache is default_cache else self.cache  # the backend, not the proxy
        if isinstance(cache, RedisCache):
            keys = cache.make_and_validate_key(current), cache.make_and_validate_key(previous)
            # One client per cache backend (Django builds a new one on every call, which costs more
            # than the round trip); the backend object is per thread, the client shares its pool.
            client = getattr(cache, "_throttle_client", None)
            if client is None:
                client = cache._throttle_client = cache._cache.get_client(write=True)
            pipe = client.pipeline(transaction=False)
            pipe.incr(keys[0])
            pipe.expire(keys[0], ttl)
            pipe.get(keys[1])
            count, _, before = pipe.execute()
            return int(count), int(before or 0)
        # Other caches (the file cache of the default set-up): the portable calls, not atomic.
        count = 1 if cache.add(current, 1, ttl) else cache.incr(current)
        return count, int(cache.get(previous, 0))

    def counted(self, ident_key: str) -> int:
        """Requests counted for a cache key (e.g. ``throttle_user_7``) in this and the previous window."""
        window = int(self.timer() // self.duration)
        return sum(int(self.cache.get(f"{ident_key}:{w}", 0)) for w in (window, window - 1))

    def wait(self):
        """Seconds until the estimate falls below the limit again if no more requests come."""
        limit, d = self.num_requests - 1, self.duration
        if self.current <= limit and self.previous:
            # within this window: the previous window's share slides out
            seconds = d * (1 - (limit - self.current) / self.previous) - self.offset
        else:
            # the next window, once enough of this window's count has slid out
            seconds = (d - self.offset) + d * (1 - limit / max(self.current, 1))
        return max(seconds, 1.0)


class _FailOpen:
    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # any cache backend error (redis-py, OSError, ...): serve, unthrottled
            now = time.monotonic()
            if now - _last_warning["at"] >= WARN_EVERY:
                _last_warning["at"] = now
                log.warning("API throttling is off: the cache is unreachable (%s: %s)", type(exc).__name__, exc)
            return True


class AnonRateThrottle(_FailOpen, _SlidingWindowCounter, throttling.AnonRateThrottle):
    pass


class UserRateThrottle(_FailOpen, _SlidingWindowCounter, throttling.UserRateThrottle):
    pass
