"""Helpers for the simulator tests: hand-stepped simulators, waiting on conditions and events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from interface_spec import Spec, load_spec
from simulators.line import SimConfig
from simulators.machine import Machine
from simulators.simulator import Simulator


@asynccontextmanager
async def serving(config: SimConfig, spec: Spec | None = None) -> AsyncIterator[Simulator]:
    """A simulator whose server listens but whose clock does not run: the test steps it."""
    sim = Simulator(config, spec or load_spec())
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def run_until(sim: Simulator, condition: Callable[[], bool], what: str, dt: float = 1.0,
                    limit: int = 20_000) -> None:
    """Step a hand-driven simulator until a condition holds (bounded, so a bug cannot hang the suite)."""
    for _ in range(limit):
        if condition():
            return
        await sim.advance(dt, dt)
    raise AssertionError(f"not reached after {limit} steps of {dt} s: {what}")


def step_machine(m: Machine, until: Callable[[], bool], what: str, dt: float = 0.5, limit: int = 10_000) -> None:
    for _ in range(limit):
        if until():
            return
        m.tick(dt)
    raise AssertionError(f"machine did not reach: {what}")


async def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll a condition of a running (clocked) simulator; the timeout bounds a hang, it is not measured."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def wait_event(machine: Machine, match: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> dict[str, Any]:
    """The next event of a running machine that matches (an asyncio event, no polling)."""
    found: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    def listener(env: dict[str, Any]) -> None:
        if not found.done() and match(env):
            found.set_result(env)

    machine.event_listeners.append(listener)
    try:
        return await asyncio.wait_for(found, timeout)
    finally:
        machine.event_listeners.remove(listener)
