"""Per-client request rate limit: a sliding one-second window.

A sliding window (not a fixed per-second bucket) so a burst straddling a second boundary is
still caught, which is what makes a client's back-off on 429 testable. Each request time is
appended once and dropped once, so a request costs O(1) (amortised) and a client at most
``limit`` remembered times.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


class RateLimiter:
    """Allows at most ``limit`` requests per client in any ``window`` seconds; 0 = no limit."""

    def __init__(self, limit: int, window: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, deque[float]] = {}

    def allow(self, client_id: str) -> bool:
        """Count the request and say whether it may pass; refused requests are not counted,
        so a client that waits ``Retry-After`` gets through."""
        if self.limit <= 0:
            return True
        now = self._clock()
        with self._lock:
            seen = self._seen.setdefault(client_id, deque())
            while seen and seen[0] <= now - self.window:
                seen.popleft()
            if len(seen) >= self.limit:
                return False
            seen.append(now)
            return True
