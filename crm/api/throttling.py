"""Throttles that fail open: an unreachable cache must not turn every API request into a 500.

The counts live in the shared default cache (Redis, or a file cache; see CACHES in
crm.settings). When it cannot be read or written, the request is let through and a warning
is logged, at most once a minute per process so an outage does not flood the log.
"""
import logging
import time

from rest_framework import throttling

log = logging.getLogger(__name__)

# Seconds between two warnings about the same unreachable cache, per process.
WARN_EVERY = 60.0
_last_warning = {"at": float("-inf")}


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


class AnonRateThrottle(_FailOpen, throttling.AnonRateThrottle):
    pass


class UserRateThrottle(_FailOpen, throttling.UserRateThrottle):
    pass
