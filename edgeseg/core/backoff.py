"""The one reconnect / retry back-off: ``first`` seconds, doubling, capped at ``cap``.

Streams that drop (``edgeseg.io.sources``), gateway cameras (``edgeseg.apps.gateway.readers``) and
sinks whose receiver is away (webhook) all wait the same way, so a site's logs read the same.
"""
from __future__ import annotations


class Backoff:
    """``delay()`` after each failure, ``reset()`` after a success; ``attempts`` counts failures."""

    def __init__(self, first: float = 0.5, cap: float = 8.0) -> None:
        if first <= 0 or cap < first:
            raise ValueError(f"back-off needs 0 < first <= cap, got first={first}, cap={cap}")
        self.first, self.cap = float(first), float(cap)
        self.attempts = 0

    def wait_for(self, attempt: int) -> float:
        """Seconds before retry ``attempt`` (1-based)."""
        return min(self.first * 2 ** min(max(attempt, 1) - 1, 30), self.cap)

    def delay(self) -> float:
        """Count one more failure and return how long to wait before the next try."""
        self.attempts += 1
        return self.wait_for(self.attempts)

    def reset(self) -> None:
        self.attempts = 0

    @property
    def current(self) -> float:
        """The wait the last failure asked for (0 after a success)."""
        return self.wait_for(self.attempts) if self.attempts else 0.0
