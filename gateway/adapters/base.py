"""The small interface between the runtime and a protocol adapter.

An adapter knows a protocol, nothing of the spec: it is handed a list of points
(protocol addresses with a key each) and reports raw readings by key. The
mapping layer turns readings into spec samples. Third-party adapters implement
this protocol and register a factory under the `linegw.adapters` entry point.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple, Protocol


class RawReading(NamedTuple):
    """A value as the device gave it, before mapping onto the spec."""

    key: str  # the point key the runtime handed in
    value: Any  # decoded protocol value (number, bool, str, list)
    source_ts: float | None  # Unix seconds from the device, None if it gives none
    error: str = ""  # non-empty when the read failed for this point (value is None)


# RawReading from a (key, value, source_ts, error) tuple, built in C without the NamedTuple's Python-level __new__:
# adapters make thousands per scan.
new_reading = partial(tuple.__new__, RawReading)


@dataclass(frozen=True)
class Point:
    """One address to read, with adapter-specific details in `options`.

    Modbus options: table ("holding"|"input"|"coil"|"discrete"), address (0-based),
    dtype (int16, uint16, int32, uint32, int64, uint64, float32, float64, bit, string),
    count (registers, for strings), order ("ABCD"|"DCBA"|"BADC"|"CDAB"), bit (for a bit
    in a register). OPC UA options: node (a NodeId string or a browse path
    "ns=<uri>;/Objects/..."), sampling_ms.
    """

    key: str
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


# The runtime may answer a batch with an awaitable: the store is behind, and the
# adapter awaits it before its next read (back-pressure) instead of the store dropping.
ReadingsCallback = Callable[[list[RawReading]], Awaitable[None] | None]
LinkCallback = Callable[[bool, str], None]  # (up, reason)


@dataclass
class AdapterHealth:
    connected: bool = False
    last_error: str = ""
    reconnects: int = 0
    reads: int = 0
    read_errors: int = 0
    requests: int = 0  # protocol requests issued (Modbus requests, OPC UA service calls)
    last_data_ts: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Adapter(Protocol):
    """What the runtime needs from a protocol adapter.

    Built as `factory(endpoint: str, points: list[Point], settings: dict)`.
    """

    async def run(self, on_readings: ReadingsCallback, on_link: LinkCallback) -> None:
        """Connect, deliver readings until cancelled; reconnect on its own with backoff.

        Polling adapters scan at settings["scan_interval_ms"]; subscribing adapters
        deliver notifications. When `on_readings` returns an awaitable, await it
        before reading or delivering more. Must never raise on device errors: report them
        through `on_link(False, reason)` and per-point `RawReading.error`.

        `on_link` is called once per change: down with the reason as an outage
        starts (a reason that moves on during it is for `health()`), up as it
        ends; the runtime logs each call as one line. A device that answers but
        serves no data (a Modbus device refusing every read as busy) is down.
        Reconnect and retry waits use gateway/backoff.py, so every adapter backs
        off alike and comes back promptly once the device is reachable.
        """

    async def read(self, keys: list[str]) -> list[RawReading]:
        """Read the given points now (used for read-back after a command)."""

    async def write(self, key: str, value: Any) -> None:
        """Write one point; raises `AdapterError` with a reason on failure."""

    async def call(self, key: str, args: list[Any]) -> list[Any]:
        """Call a method point (OPC UA); raises `AdapterError` on failure."""

    def health(self) -> AdapterHealth: ...


class AdapterError(Exception):
    """A protocol operation failed; the message says what and where."""


AdapterFactory = Callable[[str, list[Point], dict[str, Any]], Adapter]
