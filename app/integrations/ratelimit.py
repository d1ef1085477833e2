"""Client-side rate limits and retry delays, shared by every connector.

Pure mechanism with an injectable clock and sleep, so tests run instantly:

- :class:`TokenBucket` keeps us under a service's documented rate
  (HubSpot: 100 requests per 10 s for a private app; Shopify GraphQL: a
  bucket of query-cost points restored per second).
- :class:`Backoff` says how long to wait before retry ``n``: exponential with
  full jitter, capped, and never shorter than a server's ``Retry-After``.
- :func:`parse_retry_after` reads both forms of that header (seconds or an
  HTTP date).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

Clock = Callable[[], float]
Sleep = Callable[[float], None]

MAX_RETRY_AFTER_S = 300.0  # a server asking for more than 5 min is treated as a failure


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate_per_s``; ``take(n)`` waits for them.

    Thread-safe. ``take`` sleeps outside the lock so other threads can see
    the bucket meanwhile. ``drain(available)`` lets a server's own count
    (Shopify's ``currentlyAvailable``) correct ours.
    """

    def __init__(
        self,
        capacity: float,
        rate_per_s: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if capacity <= 0 or rate_per_s <= 0:
            raise ValueError("a token bucket needs a positive capacity and rate")
        self.capacity = capacity
        self.rate_per_s = rate_per_s
        self._clock = clock
        self._sleep = sleep
        self._tokens = capacity
        self._updated = clock()
        self._lock = threading.Lock()

    @property
    def available(self) -> float:
        with self._lock:
            self._refill()
            return self._tokens

    def take(self, tokens: float = 1.0) -> float:
        """Wait until ``tokens`` are there and take them; returns seconds waited."""
        if tokens > self.capacity:
            raise ValueError(f"asked for {tokens} tokens from a bucket of {self.capacity}")
        waited = 0.0
        while True:
            with self._lock:
                self._refill()
                if self._tokens >= tokens:
                    self._tokens -= tokens
                    return waited
                wait_s = (tokens - self._tokens) / self.rate_per_s
            self._sleep(wait_s)
            waited += wait_s

    def set_available(self, tokens: float) -> None:
        """Trust the server's count of what is left (never above capacity)."""
        with self._lock:
            self._refill()
            self._tokens = max(0.0, min(self.capacity, tokens))

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate_per_s)
        self._updated = now


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays before retries: ``base * 2**attempt`` with full jitter, capped at ``cap_s``."""

    base_s: float = 0.5
    cap_s: float = 30.0
    max_retries: int = 4
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0 is the first retry)."""
        ceiling = min(self.cap_s, self.base_s * (2**attempt))
        jittered = self.rng.uniform(ceiling / 2, ceiling)
        if retry_after_s is not None and retry_after_s > 0:
            return retry_after_s  # the server knows when it will have room
        return jittered


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)
