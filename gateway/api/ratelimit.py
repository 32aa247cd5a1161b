"""How many commands a caller, and a machine, take per minute.

A sliding window of the last minute's accepted requests per caller (the user a
key names, or "local"/"anonymous") and per machine. Past a limit the request
is refused with 429 and Retry-After before it reaches the runtime: a script
in a loop, or a stuck client, cannot hammer a machine with Start/Stop. Memory
is bounded: one window per configured user and per machine of the line.
"""

from __future__ import annotations

import collections
import time

WINDOW_S = 60.0


class Limiter:
    def __init__(self, per_caller: int, per_machine: int) -> None:
        self.per_caller = per_caller
        self.per_machine = per_machine
        self._seen: dict[tuple[str, str], collections.deque[float]] = {}
        self._reported: dict[tuple[str, str], float] = {}  # (kind, name) -> when its last refusal was audited

    def _wait(self, kind: str, name: str, limit: int, now: float) -> float:
        times = self._seen.setdefault((kind, name), collections.deque())
        while times and times[0] <= now - WINDOW_S:
            times.popleft()
        return 0.0 if len(times) < limit else times[0] + WINDOW_S - now

    def take(self, caller: str, machine: str, now: float | None = None) -> tuple[str, float] | None:
        """None when the request may go (and it is counted); else (why, seconds until it may)."""
        now = time.monotonic() if now is None else now
        for kind, name, limit, setting in (("caller", caller, self.per_caller, "per_caller_per_min"),
                                           ("machine", machine, self.per_machine, "per_machine_per_min")):
            wait = self._wait(kind, name, limit, now)
            if wait > 0:
                who = f"user '{name}'" if kind == "caller" else f"machine {name}"
                return (f"{who} had {limit} commands in the last minute (api.command_limits.{setting}: {limit}); "
                        f"try again in {wait:.0f} s"), wait
        self._seen[("caller", caller)].append(now)
        self._seen[("machine", machine)].append(now)
        return None

    def first_refusal(self, caller: str, machine: str, now: float | None = None) -> bool:
        """Whether this refusal is the first for the caller and machine in a minute: only those are audited,
        so that a flood of refused requests does not flood the audit log."""
        now = time.monotonic() if now is None else now
        key = (caller, machine)
        if now - self._reported.get(key, -WINDOW_S) < WINDOW_S:
            return False
        self._reported[key] = now
        return True
