"""Material handed from one simulated machine to the next.

A line's simulators share one `MaterialFlow`: the coater puts finished
electrode rolls in, winders read the newest cathode and anode rolls, the
formation rack takes finished good jelly rolls. Every queue is bounded; a
model that finds a queue empty uses its own placeholder IDs, so a simulator
also runs alone.
"""

from __future__ import annotations

from collections import deque

QUEUE_LIMIT = 10_000
JELLY_ROLL = "jelly_roll"


def electrode_roll(electrode: str) -> str:
    """The flow kind of finished electrode rolls: "cathode_roll" or "anode_roll"."""
    return f"{electrode}_roll"


class MaterialFlow:
    """Bounded queues of unit IDs by material kind ("cathode_roll", "jelly_roll", ...)."""

    def __init__(self, limit: int = QUEUE_LIMIT):
        self._limit = limit
        self._queues: dict[str, deque[str]] = {}
        self.dropped = 0  # IDs pushed out of a full queue, oldest first

    def _queue(self, kind: str) -> deque[str]:
        q = self._queues.get(kind)
        if q is None:
            q = self._queues[kind] = deque(maxlen=self._limit)
        return q

    def put(self, kind: str, unit_id: str) -> None:
        q = self._queue(kind)
        if len(q) == q.maxlen:
            self.dropped += 1
        q.append(unit_id)

    def newest(self, kind: str) -> str | None:
        """The newest unit of a kind, left in place (a roll feeds many jelly rolls)."""
        q = self._queues.get(kind)
        return q[-1] if q else None

    def take(self, kind: str, n: int) -> list[str]:
        """Up to `n` units of a kind, oldest first, removed from the flow."""
        q = self._queues.get(kind)
        out: list[str] = []
        while q and len(out) < n:
            out.append(q.popleft())
        return out

    def count(self, kind: str) -> int:
        q = self._queues.get(kind)
        return len(q) if q else 0
