"""Per-API-key rate limits in the deployment guide's format ("1200 per minute").

A token bucket per key and method class: it refills continuously, so a client that
keeps to the rate is never refused, and a burst up to the full amount is allowed.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

_PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
_LIMIT = re.compile(
    r"^\s*(\d+)\s*(?:per|/)\s*(second|minute|hour|day)s?\s*$", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class RateLimit:
    amount: int
    period: float

    @property
    def per_second(self) -> float:
        return self.amount / self.period


def parse_rate_limit(text: str, setting: str = "rate limit") -> RateLimit:
    """Parse ``"1200 per minute"`` or ``"20/second"``; raise ValueError if invalid."""
    match = _LIMIT.match(text)
    if match is None or int(match.group(1)) < 1:
        raise ValueError(
            f"{setting} {text!r} is not a rate: write e.g. '1200 per minute' "
            "(per second, minute, hour or day)"
        )
    return RateLimit(int(match.group(1)), _PERIODS[match.group(2).lower()])


class RateLimiter:
    """Token buckets keyed by any string (here: key label and method class)."""

    def __init__(
        self, limit: RateLimit, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def acquire(self, key: str) -> float | None:
        """Take one token. Return None when allowed, else the seconds to wait."""
        now = self.clock()
        capacity = float(self.limit.amount)
        tokens, last = self._buckets.get(key, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * self.limit.per_second)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return None
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.limit.per_second


def retry_after_header(seconds: float) -> str:
    """Retry-After takes whole seconds; round up so the retry is not early."""
    return str(max(1, math.ceil(seconds)))
