"""What the spec's native profile means on one protocol, written once for the gateway and the kit.

A machine that serves the spec natively is read with the plan its binding builds (no mapping
file), sized by the array counts it reports, commanded through the binding's command mechanism
and read for events through the binding's event reader. `Device` (gateway/runtime) and the
conformance kit's `NativeProbe` both go through a `Binding`; neither knows which protocol it is.

The operations that touch a machine's shared windows (the Modbus command area and event
mailbox are one window for every client) take a `NativeIO`: the caller's way of reading,
writing and calling, with the lock that keeps its own requests from interleaving. The gateway
passes a `NativeLink` over its adapter; the kit passes one that retries and records requests.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.adapters.base import Adapter, AdapterError, Point, RawReading
from gateway.mapping.compile import Plan
from gateway.runtime.ingest import to_samples
from gateway.samples import Quality
from interface_spec import Spec

log = logging.getLogger("linegw.bindings")

Envelope = dict[str, Any]  # an event as the spec defines it: type, seq, source_ts, payload
AdapterFactory = Callable[[str, list[Point], dict[str, Any]], Adapter]


class NoCommandResult(AdapterError):
    """The machine took no command result within the time allowed."""


class DiscoveryTimeout(AdapterError):
    """The array sizes could not be read within the time allowed."""


class NativeIO(Protocol):
    """How a binding reaches one machine: reads, writes, method calls, and the caller's own lock."""

    lock: asyncio.Lock  # one request at a time per client on the machine's shared windows

    def next_seq(self) -> int: ...

    async def read(self, keys: list[str]) -> dict[str, RawReading]: ...

    async def write(self, key: str, value: Any) -> None: ...

    async def select(self, key: str, value: Any) -> None:
        """An idempotent write that selects a window (e.g. the event mailbox); may be sent again."""
        ...

    async def call(self, key: str, args: list[Any]) -> list[Any]: ...


@dataclass
class NativeLink:
    """The gateway's `NativeIO` over one adapter: requests go straight to the machine."""

    adapter: Adapter
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    seq: int = field(default_factory=lambda: random.randint(1, 60000))  # not 0: a restart must not repeat seq 1

    def next_seq(self) -> int:
        self.seq = self.seq % 65535 + 1
        return self.seq

    async def read(self, keys: list[str]) -> dict[str, RawReading]:
        return {r.key: r for r in await self.adapter.read(keys)}

    async def write(self, key: str, value: Any) -> None:
        await self.adapter.write(key, value)

    async def select(self, key: str, value: Any) -> None:
        await self.adapter.write(key, value)

    async def call(self, key: str, args: list[Any]) -> list[Any]:
        return await self.adapter.call(key, args)


class Binding(ABC):
    """The native profile of the spec on one protocol."""

    protocol: str

    @abstractmethod
    def plan(self, spec: Spec, equipment: str, cls: str, machine: str, counts: dict[str, int],
             only: set[str] | None = None) -> Plan:
        """The points to read and what each becomes; `only` restricts it to these spec paths (no binding extras)."""

    def kit_points(self, spec: Spec, cls: str, machine: str, plan: Plan) -> list[Point]:
        """Binding elements beyond the gateway's plan that the kit reads on demand (self-description, metadata)."""
        return []

    @abstractmethod
    async def command(self, io: NativeIO, spec: Spec, name: str, args: list[Any], timeout: float) -> int | None:
        """Send a spec command with its arguments in the spec's order; the result code, None if none came."""

    async def raw_command(self, io: NativeIO, code: int, timeout: float) -> int | None:
        """A command by number, for codes the spec does not know; None where the binding has no such form."""
        return None

    @abstractmethod
    async def read_events(self, io: NativeIO, spec: Spec, first: int, count: int) -> list[Envelope]:
        """Events from seq `first`, oldest first, at most `count`; [] when the machine no longer holds `first`."""

    @abstractmethod
    async def self_description(self, io: NativeIO, spec: Spec, cls: str, machine: str) -> tuple[str | None, str]:
        """The machine's self-description text and where it was read, or None and why not."""

    @abstractmethod
    def alarm_keys(self, plan: Plan) -> list[str]:
        """The keys that carry the active alarms."""

    @abstractmethod
    def alarm_codes(self, spec: Spec, cls: str, plan: Plan, raw: dict[str, RawReading]) -> tuple[list[int] | None, str]:
        """Active alarm codes from the readings of `alarm_keys`, and their raw form; None and why when unread."""


async def discover_counts(spec: Spec, cls: str, plan: Plan, wanted: dict[str, str], factory: AdapterFactory,
                          endpoint: str, settings: dict[str, Any], timeout: float, *, give_up_on_error: bool,
                          on_link: Callable[[bool, str], None] = lambda up, why: None) -> dict[str, int]:
    """Array sizes read from the machine's count variables (sub-unit -> count), within `timeout`.

    `plan` reads the count variables `wanted` (sub-unit -> path) and nothing else. A count the
    machine serves badly (unreadable, out of the spec's range) falls back to the spec's maximum, so
    every instance stays in view and the bad count is reported where it is checked. With
    `give_up_on_error` (the kit) the first failed read decides; without it (the gateway) only good
    values do. Raises DiscoveryTimeout when no answer came in time: the caller decides whether to
    ask again (the gateway, while the machine is away) or to give up (the kit).
    """
    if not wanted:
        return {}
    only = set(wanted.values())
    found: dict[str, int] = {}
    done = asyncio.Event()

    def got(readings: list[RawReading]) -> None:
        for s in to_samples(plan.equipment, plan.targets, readings, time.time()):
            if s.quality != Quality.BAD and isinstance(s.value, int):
                found[s.path] = s.value
        if only <= found.keys() or (give_up_on_error and any(r.error for r in readings)):
            done.set()

    adapter = factory(endpoint, plan.points, settings)
    task = asyncio.create_task(adapter.run(got, on_link), name=f"discover counts {endpoint}")
    try:
        async with asyncio.timeout(timeout):
            await done.wait()
    except TimeoutError:
        raise DiscoveryTimeout(f"cannot read the array sizes ({', '.join(sorted(only))}) from {endpoint} "
                               f"within {timeout:g} s") from None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    counts = {}
    for su, path in wanted.items():
        arr = next(s.array for s in spec.array_sub_units(cls) if s.id == su)
        assert arr is not None
        n = found.get(path)
        counts[su] = n if isinstance(n, int) and 1 <= n <= arr.max else arr.max
    return counts


def count_paths(spec: Spec, cls: str) -> dict[str, str]:
    """Array sub-unit -> the variable path that says how many instances a machine has."""
    return {su.id: su.array.count_variable for su in spec.array_sub_units(cls) if su.array is not None}
