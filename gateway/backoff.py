"""Waiting between attempts: one backoff for every reconnect and restart loop of the gateway.

Adapters reconnecting to a machine, the line supervisor restarting a machine's
task and the forwarders retrying a sink all wait the same way: exponentially
longer after each failure, up to a cap, with jitter so that a line of gateways
(or a line of machines behind one gateway) does not retry in step, and back to
the first short wait once the thing has worked for a healthy period, so a
crash after an hour of good service is not punished for crashes long ago.

`wait_or_reachable` shortens a long wait for a network peer: it polls the
peer's TCP port and ends the wait as soon as the port answers again after it
had been seen closed, so data returns within about a second of the machine
being back, whatever the backoff had reached. A peer whose port stayed open
while it did not answer (a half-open link through a proxy or a switch) tells
nothing by its port; for it the caller may pass a protocol-level question,
asked every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable

PROBE_EVERY_S = 0.5  # how often a long wait asks whether the peer's port answers again
PROBE_TIMEOUT_S = 0.5
ANSWER_EVERY_S = 2.0  # how often a long wait asks a silent peer a protocol-level question


class Backoff:
    """Exponential delays with jitter, a cap, and a reset after a healthy period.

    `next()` is called after each failure and gives the wait before the next
    attempt: initial x factor^n, capped at `maximum`, then scaled by a random
    factor in [1 - jitter, 1]. `healthy()` is called when an attempt starts
    working (connected, task running); if it is still working `healthy_after_s`
    later (by the time of the next failure), the delays start over from `initial`.
    """

    def __init__(self, initial: float, maximum: float, *, factor: float = 2.0, jitter: float = 0.5,
                 healthy_after_s: float | None = None, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if initial <= 0:
            raise ValueError(f"backoff initial delay must be > 0, got {initial!r}")
        if maximum < initial:
            raise ValueError(f"backoff maximum {maximum!r} is below its initial delay {initial!r}")
        if factor < 1:
            raise ValueError(f"backoff factor must be >= 1, got {factor!r}")
        if not 0 <= jitter < 1:
            raise ValueError(f"backoff jitter must be in [0, 1), got {jitter!r}")
        self.initial, self.maximum, self.factor, self.jitter = initial, maximum, factor, jitter
        # Healthy for as long as the longest wait: a flapping peer keeps backing off.
        self.healthy_after_s = maximum if healthy_after_s is None else healthy_after_s
        self._rng = rng or random.Random()
        self._clock = clock
        self.attempt = 0  # failures since the last reset
        self.last_delay = 0.0  # the wait next() gave last
        self._healthy_since: float | None = None

    def next(self) -> float:
        """The wait before the next attempt, after a failure."""
        if self._healthy_since is not None and self._clock() - self._healthy_since >= self.healthy_after_s:
            self.attempt = 0
        self._healthy_since = None
        # The exponent is bounded so a long outage cannot overflow the float.
        delay = min(self.maximum, self.initial * self.factor ** min(self.attempt, 64))
        self.attempt += 1
        self.last_delay = delay * self._rng.uniform(1.0 - self.jitter, 1.0)
        return self.last_delay

    def healthy(self, since: float | None = None) -> None:
        """The attempt works (since `since` on the backoff's clock, or now); the healthy
        period counts from the first call after a failure."""
        if self._healthy_since is None:
            self._healthy_since = self._clock() if since is None else since

    def reset(self) -> None:
        """Start over from the initial delay at once."""
        self.attempt = 0
        self._healthy_since = None


async def port_answers(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to host:port opens within `timeout` (it is closed again at once)."""
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def wait_or_reachable(delay: float, host: str, port: int, seen_closed: bool = False,
                            every: float = PROBE_EVERY_S,
                            answers: Callable[[], Awaitable[bool]] | None = None) -> bool:
    """Wait `delay` seconds, or less: until the port answers again after it was seen closed,
    or `answers()` (asked every ANSWER_EVERY_S while the port is open) says the peer serves again.

    `seen_closed` says the last attempt could not connect at all. Without
    `answers`, a port that answers throughout (a peer that accepts
    connections but not requests) gives no news, so then the whole delay is
    waited. Returns True when the wait was cut short.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + delay
    if not seen_closed and delay > every:
        # A connection that broke may mean the peer is going away: look at once, so a
        # restart that is quick is seen closed. Never cut short before the first
        # interval, though: a peer that accepts and then fails is not asked in a loop.
        seen_closed = not await port_answers(host, port, min(PROBE_TIMEOUT_S, every))
    ask_at = loop.time() + ANSWER_EVERY_S  # a silent peer is not asked in a loop either
    while (left := deadline - loop.time()) > 0:
        await asyncio.sleep(min(every, left))
        if deadline - loop.time() <= 0:
            break
        if await port_answers(host, port, min(PROBE_TIMEOUT_S, every)):
            if seen_closed:
                return True
            if answers is not None and loop.time() >= ask_at:
                ask_at = loop.time() + ANSWER_EVERY_S
                if await answers():
                    return True
        else:
            seen_closed = True
    return False
