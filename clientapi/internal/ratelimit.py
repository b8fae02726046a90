"""Token-bucket rate limits (config ``rate_limits``): per user for sends,
joins, invites and room creation; per IP for login and registration; per
account for logins and failed logins. A refused request answers 429
M_LIMIT_EXCEEDED with ``retry_after_ms``.

The buckets live in the process: behind a load balancer each client API
instance limits on its own, as Synapse's workers do.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from common import errors
from common.config import RateLimit

# Bounds memory when many keys (IPs) pass through: full buckets are dropped
# first, as they carry no information.
MAX_KEYS = 100_000


class TokenBucketLimiter:
    def __init__(self, limit: RateLimit, *, enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = float(limit.per_second)
        self._burst = float(max(limit.burst, 1))
        self._enabled = enabled and self._rate > 0
        self._clock = clock
        # key -> (tokens, when they were counted)
        self._buckets: dict[str, tuple[float, float]] = {}

    def check(self, key: str) -> None:
        """Takes one token for ``key``, or raises LimitExceeded."""
        self._take(key, consume=True, refuse=True)

    def ensure_available(self, key: str) -> None:
        """Raises LimitExceeded when ``key`` has no token left, taking none."""
        self._take(key, consume=False, refuse=True)

    def record(self, key: str) -> None:
        """Takes a token for ``key`` if there is one; never refuses (for
        failures, counted after the fact)."""
        self._take(key, consume=True, refuse=False)

    def _take(self, key: str, *, consume: bool, refuse: bool) -> None:
        if not self._enabled:
            return
        now = self._clock()
        tokens, then = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - then) * self._rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            if refuse:
                retry_after_ms = math.ceil((1.0 - tokens) / self._rate * 1000)
                raise errors.LimitExceeded("Too many requests", retry_after_ms=retry_after_ms)
            return
        self._buckets[key] = (tokens - 1.0 if consume else tokens, now)
        if len(self._buckets) > MAX_KEYS:
            self._prune(now)

    def _prune(self, now: float) -> None:
        for key, (tokens, then) in list(self._buckets.items()):
            if tokens + (now - then) * self._rate >= self._burst:
                del self._buckets[key]
        while len(self._buckets) > MAX_KEYS:
            self._buckets.pop(next(iter(self._buckets)))
