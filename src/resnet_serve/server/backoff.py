"""How long ``serve`` waits before recovering the server again: exponential backoff with a cap."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass
class Backoff:
    """No wait before a first recovery, then ``first_s``, doubling up to ``cap_s``, for ever.

    A recovery more than ``reset_after_s`` after the previous one (the server served in between)
    counts as a first again. The cap keeps a crash loop's outage bounded by a restart every
    ``cap_s`` seconds at worst, and never ends in giving up: an orchestrator decides that (SIGTERM).
    """

    first_s: float = 1.0
    cap_s: float = 30.0
    reset_after_s: float = 300.0
    attempt: int = 0  # recoveries in the current run of them
    _last: float = -math.inf

    def next_delay(self, now: float | None = None) -> float:
        """Seconds to wait before the recovery about to happen (and count it)."""
        now = time.monotonic() if now is None else now
        if now - self._last > self.reset_after_s:
            self.attempt = 0
        self.attempt, self._last = self.attempt + 1, now
        return 0.0 if self.attempt == 1 else min(self.cap_s, self.first_s * 2 ** (self.attempt - 2))
