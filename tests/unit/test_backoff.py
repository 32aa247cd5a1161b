"""The one backoff of every reconnect and restart loop: growth, cap, jitter bounds, reset after a healthy period."""

from __future__ import annotations

import asyncio
import random

import pytest

from gateway.backoff import Backoff, port_answers, wait_or_reachable
from simulators.servers.modbus_server import ModbusSimServer
from tests.conftest import find_free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_delays_double_within_their_jitter_bounds_up_to_the_cap() -> None:
    b = Backoff(0.5, 30.0, jitter=0.5, rng=random.Random(7))
    delays = [b.next() for _ in range(12)]
    for n, d in enumerate(delays):
        nominal = min(30.0, 0.5 * 2 ** n)
        assert nominal * 0.5 <= d <= nominal, (n, d)
    assert max(delays) <= 30.0
    assert all(d >= 15.0 for d in delays[6:])  # capped: 30 s less at most half of it


def test_jitter_spreads_gateways_that_failed_together() -> None:
    firsts = {round(Backoff(1.0, 60.0, rng=random.Random(seed)).next(), 6) for seed in range(50)}
    assert len(firsts) == 50 and min(firsts) >= 0.5 and max(firsts) <= 1.0
    fixed = Backoff(1.0, 60.0, jitter=0.0, rng=random.Random(1))
    assert [fixed.next() for _ in range(4)] == [1.0, 2.0, 4.0, 8.0]


def test_same_seed_same_delays() -> None:
    a, b = Backoff(0.2, 5.0, rng=random.Random(3)), Backoff(0.2, 5.0, rng=random.Random(3))
    assert [a.next() for _ in range(8)] == [b.next() for _ in range(8)]


def test_a_healthy_period_starts_the_delays_over() -> None:
    clock = Clock()
    b = Backoff(1.0, 60.0, jitter=0.0, rng=random.Random(1), clock=clock)
    assert [b.next() for _ in range(8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    b.healthy()  # it works again ...
    clock.now += 59.0  # ... but fails again before the healthy period (the cap, by default) is over
    assert b.next() == 60.0
    b.healthy()
    clock.now += 60.0
    b.healthy()  # later calls do not move the start of the healthy period
    assert b.next() == 1.0  # an hour of good service is not punished for crashes long ago
    assert b.next() == 2.0


def test_explicit_healthy_period_and_reset() -> None:
    clock = Clock()
    b = Backoff(1.0, 8.0, jitter=0.0, healthy_after_s=5.0, rng=random.Random(1), clock=clock)
    b.next(), b.next(), b.next()
    b.healthy()
    clock.now += 5.0
    assert b.next() == 1.0
    b.next()
    b.reset()
    assert b.next() == 1.0


@pytest.mark.parametrize("args", [(0, 1), (2, 1), (1, 2, {"factor": 0.5}), (1, 2, {"jitter": 1.0})])
def test_nonsense_is_refused(args) -> None:
    kwargs = args[2] if len(args) > 2 else {}
    with pytest.raises(ValueError):
        Backoff(args[0], args[1], **kwargs)


async def test_a_long_wait_ends_when_the_port_opens_again() -> None:
    port = find_free_port()
    assert not await port_answers("127.0.0.1", port)
    server = ModbusSimServer(port=port)
    loop = asyncio.get_running_loop()

    async def comes_back() -> None:
        await asyncio.sleep(1.0)
        await server.start()

    back = asyncio.create_task(comes_back())
    started = loop.time()
    try:
        assert await wait_or_reachable(30.0, "127.0.0.1", port, seen_closed=True) is True
        took = loop.time() - started
    finally:
        await back
        await server.stop()
    assert 1.0 <= took < 5.0  # not the 30 s asked for


async def test_a_port_that_answers_throughout_gives_no_news(modbus_sim: ModbusSimServer) -> None:
    # A peer that accepts connections but fails requests: the whole wait is waited.
    assert await wait_or_reachable(1.2, "127.0.0.1", modbus_sim.port, every=0.2) is False
