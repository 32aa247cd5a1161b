"""How late the event loop runs: the gateway's own measure of a stall.

Everything the gateway does (scans, subscriptions, the API, the store's hand-offs) waits its turn
on one event loop; a callback that blocks it delays all of them. The monitor asks to wake every
`interval_s` and records how much later than asked it woke. `/api/v1/health` and `/metrics` show
the last lag and the worst within the last minute, so a stall is visible the moment it happens.
"""

from __future__ import annotations

import asyncio
import collections
import time

INTERVAL_S = 0.1
WINDOW_S = 60.0


class LoopLag:
    def __init__(self, interval_s: float = INTERVAL_S, window_s: float = WINDOW_S) -> None:
        self.interval_s = interval_s
        self.window_s = window_s
        self.last_s = 0.0
        self.total_s = 0.0  # summed lateness since start: a counter for rates
        self._recent: collections.deque[tuple[float, float]] = collections.deque()  # (when, lag)

    async def run(self) -> None:
        while True:
            asked = time.monotonic()
            await asyncio.sleep(self.interval_s)
            self.record(time.monotonic() - asked - self.interval_s)

    def record(self, lag_s: float) -> None:
        now = time.monotonic()
        lag_s = max(0.0, lag_s)
        self.last_s = lag_s
        self.total_s += lag_s
        recent = self._recent
        recent.append((now, lag_s))
        while recent and recent[0][0] < now - self.window_s:
            recent.popleft()

    @property
    def max_s(self) -> float:
        """The worst lag within the window."""
        return max((lag for _, lag in self._recent), default=0.0)

    def summary(self) -> dict[str, float]:
        return {"last_ms": round(self.last_s * 1000, 3), "max_1m_ms": round(self.max_s * 1000, 3)}
