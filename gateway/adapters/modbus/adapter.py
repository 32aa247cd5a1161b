"""The Modbus TCP adapter: scans a device's points and writes commands to it.

One pymodbus client per device and one request in flight at a time: Modbus
devices answer one request after another, and the adapter's own lock also
covers what the client's per-call handling does not (connecting, pacing,
read-modify-write of a register bit). Points are read in planned
requests (see planner.py); a scan delivers one list of readings. Modbus
carries no timestamps, so readings have none.

Faults stay as small as they are:

* An exception response spoils only the points of its request. A merged
  request refused with an address exception (2, or 3 where the length is what
  the device refuses) is split in halves and retried, down to the points that
  really fail; those are marked unreadable with the reason and left out of the
  scans. The plan remembers the split, so later scans do not pay for it
  again: the points between the refused ones are merged again (and should
  such a request be refused too, for a hole no point asks for, the split's
  requests stay). Refused points are tried alone every `reprobe_scans` scans
  (a few at a time, in turn), and the merged plan tried again after every
  reconnect; once they all answer, the merged plan is back.
* A device that refuses every request of a scan as busy (6) or through a
  gateway (10, 11) does not serve data: the link is reported down with the
  reason, and the device is asked again on the same connection, one request
  at a time, backing off to at most REFUSING_MAX_S; the link is reported up
  with the next scan once a request is answered.
* A missing or garbled reply means the connection can no longer be trusted
  (transaction ids may be out of step), so it is closed and opened again,
  with backoff (gateway/backoff.py), until the device answers or the adapter
  is cancelled. During a long wait the device's port is probed every half
  second, and a port that opens again after it was closed ends the wait;
  after a missing reply (the port may have stayed open: a half-open link),
  a one-register read on a connection of its own, every 2 s, does too.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from itertools import repeat
from struct import Struct
from typing import Any, NamedTuple, TypeGuard, TypeVar

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from gateway.adapters.base import AdapterError, AdapterHealth, LinkCallback, Point, RawReading, ReadingsCallback, new_reading
from gateway.adapters.modbus.planner import BIT_TABLES, MAX_REGISTERS, Extent, Limits, Request, check_extent, plan
from gateway.backoff import Backoff, wait_or_reachable
from gateway.cancellation import keep_cancellation
from gateway.endpoint import SCHEMES
from gateway.endpoint import parse_endpoint as endpoint_of
from interface_spec import modbus_codec as codec

log = logging.getLogger("linegw.modbus")
T = TypeVar("T")
_NONE, _NO_ERROR = repeat(None), repeat("")

DEFAULT_PORT = 502
MAX_WRITE_REGISTERS = 123  # function code 16
_READER = {"coil": "read_coils", "discrete": "read_discrete_inputs", "holding": "read_holding_registers",
           "input": "read_input_registers"}
_READ_FUNCTION = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
_EXCEPTIONS = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    7: "negative acknowledge",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
_READ_PLAN_CACHE = 64  # read() key sets remembered (command read-backs repeat the same few)
# Refusals that may be about part of a merged request: registers the device lacks
# (2), or a length it will not serve in one request (3). Split and retry.
_SPLIT_CODES = frozenset({2, 3})
# Refusals about the device or the path to it, not about the registers: busy (6),
# gateway path unavailable (10), gateway target failed to respond (11).
_LINK_CODES = frozenset({6, 10, 11})
_PROBE_FRAME = Struct(">HHHBBHH")  # MBAP header and a read of one register (or bit)
_PROBE_REPLY = Struct(">HHHBB")
_PROBE_TID = 0x6C67
REFUSING_MAX_S = 2.0  # longest wait between single requests to a device that refuses every read
REPROBE_BATCH = 8  # refused points tried alone per reprobe round


def exception_text(code: int) -> str:
    return f"modbus exception {code} ({_EXCEPTIONS.get(code, 'unknown')})"


def refusing_text(code: int) -> str:
    """The link's reason when a device refuses every read with this code."""
    return f"every read refused: {_EXCEPTIONS.get(code, 'unknown')} (exception {code})"


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """Host and port of "host:port", "modbus://host:port", "modbus+tcp://[::1]:port" (gateway/endpoint.py)."""
    where = endpoint_of(endpoint, SCHEMES["modbus"])
    if where.port == 0:
        raise ValueError(f"modbus endpoint {endpoint!r}: port must be 1..65535")
    return where.host, DEFAULT_PORT if where.port is None else where.port


# --- settings and points ------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    scan_interval_s: float = 1.0
    timeout_s: float = 1.0
    retries: int = 0
    limits: Limits = field(default_factory=Limits)
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    pause_after_connect_s: float = 0.0
    pause_between_requests_s: float = 0.0
    device_id: int = 1
    busy_retries: int = 2
    busy_pause_s: float = 0.05
    reprobe_scans: int = 10  # scans between tries of the points a device refused

    @classmethod
    def from_dict(cls, s: dict[str, Any]) -> Settings:
        def num(name: str, default: float, lo: float = 0.0) -> float:
            value = s.get(name, default)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < lo:
                raise ValueError(f"modbus setting {name} must be a number >= {lo:g}, got {value!r}")
            return float(value)

        def whole(name: str, default: int, lo: int = 0, hi: int | None = None) -> int:
            value = s.get(name, default)
            if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
                bound = f"{lo}..{hi}" if hi is not None else f">= {lo}"
                raise ValueError(f"modbus setting {name} must be a whole number {bound}, got {value!r}")
            return value

        interval = num("scan_interval_ms", 1000) / 1000.0
        if interval <= 0:
            raise ValueError("modbus setting scan_interval_ms must be > 0")
        timeout = num("timeout_s", 1.0)
        if timeout <= 0:
            raise ValueError("modbus setting timeout_s must be > 0")
        limits = Limits(
            max_gap=whole("max_gap", 50),
            max_registers=whole("max_registers_per_request", MAX_REGISTERS, 1, MAX_REGISTERS),
            max_bits=whole("max_bits_per_request", 2000, 1, 2000),
        )
        initial = num("backoff_initial_s", 0.5)
        if initial <= 0:
            raise ValueError("modbus setting backoff_initial_s must be > 0")
        return cls(
            scan_interval_s=interval,
            timeout_s=timeout,
            retries=whole("retries", 0),
            limits=limits,
            backoff_initial_s=initial,
            backoff_max_s=max(initial, num("backoff_max_s", 30.0)),
            pause_after_connect_s=num("pause_after_connect_ms", 0) / 1000.0,
            pause_between_requests_s=num("pause_between_requests_ms", 0) / 1000.0,
            device_id=whole("device_id", 1, 0, 255),
            busy_retries=whole("busy_retries", 2),
            busy_pause_s=num("busy_pause_ms", 50) / 1000.0,
            reprobe_scans=whole("reprobe_scans", 10, 1),
        )


class _Point(NamedTuple):
    key: str
    extent: Extent
    dtype: str
    order: str
    bit: int | None
    scan: bool
    decode: Callable[[Sequence[Any]], Any]
    code: str | None  # struct code when the value reads straight from big-endian bytes


def _first_bit(bits: Sequence[bool]) -> bool:
    return bool(bits[0])


def _bit_list(bits: Sequence[bool]) -> list[bool]:
    return [bool(b) for b in bits]


def _whole(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _bit_table_point(p: Point, table: str, address: int, device_id: int) -> _Point:
    count = p.options.get("count")
    n = 1 if count is None else count
    if not _whole(n) or n < 1:
        raise ValueError(f"count must be >= 1, got {count!r}")
    decode = _first_bit if n == 1 else _bit_list
    return _Point(p.key, Extent(device_id, table, address, n), "bit", "ABCD", None,
                  bool(p.options.get("scan", True)), decode, None)


def _register_point(p: Point, table: str, address: int, device_id: int) -> _Point:
    o = p.options
    dtype, order, bit, count = o.get("dtype", "uint16"), o.get("order") or "ABCD", o.get("bit"), o.get("count")
    n = codec.register_count(dtype, count if dtype == "string" else None)
    if dtype != "string" and count is not None and count != n:
        raise ValueError(f"count {count} does not match {dtype} ({n} registers)")
    return _Point(p.key, Extent(device_id, table, address, n), dtype, order, bit, bool(o.get("scan", True)),
                  codec.decoder(dtype, order, bit, n), codec.struct_code(dtype, order))


def _compile_point(p: Point, device_default: int) -> _Point:
    """Check a point's options and precompile how it is read; ValueError names the point."""
    o = p.options
    table, address, device_id = o.get("table", "holding"), o.get("address"), o.get("device_id", device_default)
    try:
        if not _whole(address):
            raise ValueError(f"address must be a whole number, got {address!r}")
        if not _whole(device_id) or not 0 <= device_id <= 255:
            raise ValueError(f"device_id must be 0..255, got {device_id!r}")
        build = _bit_table_point if table in BIT_TABLES else _register_point
        point = build(p, table, address, device_id)
        check_extent(point.extent)
    except ValueError as exc:
        raise ValueError(f"point {p.key!r}: {exc}") from None
    return point


# --- compiled read plans ------------------------------------------------------------


class _Item(NamedTuple):
    """How to get one point (or one part of it) out of a response."""

    key: str
    decode: Callable[[Sequence[Any]], Any]
    start: int  # offset in the response
    end: int
    whole: bool  # the point is all in this response
    into: int  # split points: where this part goes in the point
    size: int  # split points: the point's length
    last: bool  # split points: the final part


class _Step(NamedTuple):
    request: Request
    items: tuple[_Item, ...]
    # When every point of the request is whole in it and none overlap: the plain big-endian
    # numbers (`keys`) in two C calls, registers -> bytes -> values; the rest (strings, other
    # byte orders, bit fields: `others`) each by its own decoder.
    pack: Callable[..., bytes] | None = None
    unpack: Callable[[bytes], tuple[Any, ...]] | None = None
    keys: tuple[str, ...] = ()
    others: tuple[_Item, ...] = ()


def _whole_response_struct(req: Request, points: Sequence[_Point]) -> tuple[str, list[int]] | None:
    """A struct format reading a request's plain numbers (skipping the points that need their own
    decoder, listed by index), or None if a point is split or overlaps another: the general path."""
    fmt, pos, others = [">"], 0, []
    for span in sorted(req.spans, key=lambda s: s.offset):
        p = points[span.point]
        if span.count != p.extent.count or span.offset < pos:
            return None
        if span.offset > pos:
            fmt.append(f"{2 * (span.offset - pos)}x")
        if p.code is None:
            fmt.append(f"{2 * span.count}x")
            others.append(span.point)
        else:
            fmt.append(p.code)
        pos = span.offset + span.count
    if pos < req.count:
        fmt.append(f"{2 * (req.count - pos)}x")
    return "".join(fmt), others


def _compile_plan(points: Sequence[_Point], limits: Limits) -> tuple[_Step, ...]:
    requests = plan([p.extent for p in points], limits)
    last_part: dict[int, int] = {}
    for r_index, req in enumerate(requests):
        for span in req.spans:
            last_part[span.point] = r_index
    steps = []
    for r_index, req in enumerate(requests):
        items = []
        for span in req.spans:
            p = points[span.point]
            whole = span.count == p.extent.count
            items.append(_Item(p.key, p.decode, span.offset, span.offset + span.count, whole, span.into,
                               p.extent.count, last_part[span.point] == r_index))
        found = None if req.table in BIT_TABLES else _whole_response_struct(req, points)
        if found is None:
            steps.append(_Step(req, tuple(items)))
            continue
        fmt, others = found
        ordered = sorted(req.spans, key=lambda s: s.offset)
        steps.append(_Step(req, tuple(items), Struct(f">{req.count}H").pack, Struct(fmt).unpack,
                           tuple(points[s.point].key for s in ordered if s.point not in others),
                           tuple(it for it, span in zip(items, req.spans) if span.point in others)))
    return tuple(steps)


class _Collector:
    """The readings of one run of a plan; a split point is put together from its parts.

    It also counts how the device dealt with the requests: `answered` with data
    or with a refusal about the registers, `link_refused` as busy or through a
    failing gateway (`link_code` the last such code).
    """

    __slots__ = ("answered", "bad", "failed", "link_code", "link_refused", "ok", "out", "parts")

    def __init__(self) -> None:
        self.out: list[RawReading] = []
        self.parts: dict[str, list[Any]] = {}  # split points being assembled
        self.failed: dict[str, str] = {}  # split points with a refused part
        self.ok = self.bad = 0
        self.answered = self.link_refused = self.link_code = 0

    @property
    def refusing(self) -> bool:
        """Every request was refused as busy or by a gateway: the device serves no data."""
        return self.link_refused > 0 and self.answered == 0

    def unreadable(self, key: str, reason: str) -> None:
        """A point left out of the requests, known to be refused."""
        self.out.append(RawReading(key, None, None, reason))
        self.bad += 1

    def refused(self, step: _Step, reason: str) -> None:
        for it in step.items:
            if it.whole or it.last:
                self.out.append(RawReading(it.key, None, None, self.failed.pop(it.key, reason)))
                self.parts.pop(it.key, None)
                self.bad += 1
            else:
                self.failed.setdefault(it.key, reason)

    def take(self, step: _Step, data: Sequence[Any]) -> None:
        if step.unpack is not None and step.pack is not None:
            values = step.unpack(step.pack(*data))
            self.out += map(new_reading, zip(step.keys, values, _NONE, _NO_ERROR))
            for it in step.others:
                self.out.append(RawReading(it.key, it.decode(data[it.start:it.end]), None))
            self.ok += len(values) + len(step.others)
            return
        for it in step.items:
            if it.whole:
                self.out.append(RawReading(it.key, it.decode(data[it.start:it.end]), None))
                self.ok += 1
            else:
                self._part(it, data)

    def _part(self, it: _Item, data: Sequence[Any]) -> None:
        buf = self.parts.setdefault(it.key, [0] * it.size)
        buf[it.into:it.into + it.end - it.start] = data[it.start:it.end]
        if not it.last:
            return
        del self.parts[it.key]
        reason = self.failed.pop(it.key, "")
        if reason:
            self.out.append(RawReading(it.key, None, None, reason))
            self.bad += 1
        else:
            self.out.append(RawReading(it.key, it.decode(buf), None))
            self.ok += 1


# --- errors inside the adapter --------------------------------------------------------


class _LinkLost(Exception):
    """The connection is gone or can no longer be trusted; `unreachable` when it could not even be
    opened, `silent` when the device did not answer in time."""

    def __init__(self, reason: str, unreachable: bool = False, silent: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.unreachable = unreachable
        self.silent = silent


class _DeviceRefused(Exception):
    """The device answered with a Modbus exception response."""

    def __init__(self, code: int):
        super().__init__(exception_text(code))
        self.code = code
        self.reason = exception_text(code)


# --- the adapter ---------------------------------------------------------------------


class ModbusAdapter:
    """Adapter for Modbus TCP devices; built as `ModbusAdapter(endpoint, points, settings)`."""

    def __init__(self, endpoint: str, points: list[Point], settings: dict[str, Any] | None = None):
        self.host, self.port = parse_endpoint(endpoint)
        self.where = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        self.settings = Settings.from_dict(settings or {})
        compiled = [_compile_point(p, self.settings.device_id) for p in points]
        self._points: dict[str, _Point] = {}
        for p in compiled:
            if p.key in self._points:
                raise ValueError(f"point key {p.key!r} is given twice")
            self._points[p.key] = p
        self._scan_points = [p for p in compiled if p.scan]
        self._merged_plan = _compile_plan(self._scan_points, self.settings.limits)
        # The plan scans run: the merged one, or what splitting it around refused points left.
        self._scan_plan = self._merged_plan
        self._unreadable: dict[str, str] = {}  # key -> reason: refused alone, left out of the scan plan
        self._fallback: dict[_Step, list[_Step]] = {}  # merged around unreadable points -> the split's leaves
        self._scans_to_reprobe = self.settings.reprobe_scans
        self._read_plans: dict[tuple[str, ...], tuple[_Step, ...]] = {}
        self._client_obj: AsyncModbusTcpClient | None = None  # made on first use: it needs the event loop
        self._lock = asyncio.Lock()
        self._running = False
        self._last_exchange_end = 0.0
        self._connects = 0
        self._health = AdapterHealth()
        self._stats: dict[str, float] = {"scans": 0, "overruns": 0, "exceptions": 0, "timeouts": 0,
                                         "busy_retries": 0, "writes": 0, "write_errors": 0, "last_scan_s": 0.0,
                                         "splits": 0, "refused_scans": 0, "retry_in_s": 0.0, "early_reconnects": 0}

    # --- the Adapter protocol ------------------------------------------------------------
    async def run(self, on_readings: ReadingsCallback, on_link: LinkCallback) -> None:
        """Scan until cancelled; reconnect with backoff and report the link as it changes."""
        if self._running:
            raise RuntimeError(f"modbus adapter for {self.where} is already running")
        self._running = True
        backoff = Backoff(self.settings.backoff_initial_s, self.settings.backoff_max_s)
        reported: bool | None = None

        def report(up: bool, reason: str) -> None:
            """Once per change: a device that is away for a shift is one down and one up."""
            nonlocal reported
            if reported is not up:
                reported = up
                on_link(up, reason)

        try:
            while True:
                try:
                    async with self._lock:
                        await self._connect()
                    await self._scan_forever(on_readings, report, backoff)
                except _LinkLost as exc:
                    self._health.last_error = exc.reason
                    report(False, exc.reason)
                    delay = backoff.next()
                    self._stats["retry_in_s"] = round(delay, 3)
                    # A silent device behind a port that stays open (half-open) is asked a small
                    # read now and then: its port alone cannot say when it serves again.
                    answers = self._answers if exc.silent else None
                    if await wait_or_reachable(delay, self.host, self.port, seen_closed=exc.unreachable,
                                               answers=answers):
                        self._stats["early_reconnects"] += 1
                    self._stats["retry_in_s"] = 0.0
        finally:
            self._running = False
            if self._client_obj is not None:
                self._client_obj.close()

    async def read(self, keys: list[str]) -> list[RawReading]:
        """Read these points now, in planned requests; exception responses come back per point."""
        steps = self._plan_for(keys)
        try:
            readings = await self._read(steps)
        except _LinkLost as exc:
            raise AdapterError(f"modbus {self.where}: reading {', '.join(keys)} failed: {exc.reason}") from None
        by_key = {r.key: r for r in readings}
        return [by_key[k] for k in keys]

    async def write(self, key: str, value: Any) -> None:
        """Encode per the point's dtype and order and write it (function 16, or 5/15 for coils)."""
        p = self._point(key)
        e = p.extent
        try:
            if e.table in ("input", "discrete"):
                raise AdapterError(f"{key}: {e.table} is a read-only table")
            async with self._lock:
                if e.table == "coil":
                    await self._write_coils(p, value)
                elif p.dtype == "bit":
                    await self._write_bit(p, value)
                else:
                    await self._write_registers(p, value)
        except AdapterError:
            self._stats["write_errors"] += 1
            raise
        except (_LinkLost, _DeviceRefused) as exc:
            self._stats["write_errors"] += 1
            raise AdapterError(f"modbus {self.where}: writing {key} failed: {exc.reason}") from None
        self._stats["writes"] += 1

    async def call(self, key: str, args: list[Any]) -> list[Any]:
        raise AdapterError("modbus has no methods")


    def scan_requests(self) -> list[Request]:
        """The requests one scan makes, as planned (a baseline that reads the same registers uses these)."""
        return [step.request for step in self._merged_plan]

    def health(self) -> AdapterHealth:
        extra = {
            "endpoint": self.where,
            "scan_points": len(self._scan_points),
            "scan_requests": len(self._scan_plan),
            "unreadable_points": len(self._unreadable),
            **self._stats,
        }
        return replace(self._health, connected=self._client_obj is not None and self._client_obj.connected,
                       reconnects=max(0, self._connects - 1), extra=extra)

    # --- scanning --------------------------------------------------------------------------
    async def _scan_forever(self, on_readings: ReadingsCallback, report: Callable[[bool, str], None],
                            backoff: Backoff) -> None:
        """Fixed-rate scans: ticks stay on the grid; a scan that overruns skips the ticks it missed.

        The link counts as up once the device has answered a whole scan: a
        connection that takes requests but never answers them is not a link,
        nor is one whose every request is refused as busy.
        """
        loop = asyncio.get_running_loop()
        interval = self.settings.scan_interval_s
        tick = loop.time()
        while True:
            if not self._client.connected:
                raise _LinkLost(self._closed())
            if self._scan_plan or self._unreadable:
                started = loop.time()
                got = await self._scan()
                self._stats["scans"] += 1
                self._stats["last_scan_s"] = loop.time() - started
                if got.refusing:
                    await self._while_refusing(got.link_code, report)
                    tick = loop.time()
                    continue
                report(True, "")
                backoff.healthy()
                if (behind := on_readings(got.out)) is not None:
                    await behind  # the runtime's store is behind: scan again once it has room
            else:
                report(True, "")
                backoff.healthy()
            tick += interval
            now = loop.time()
            if now >= tick:
                missed = int((now - tick) // interval) + 1
                self._stats["overruns"] += missed
                tick += missed * interval
            await asyncio.sleep(tick - now)

    async def _while_refusing(self, code: int, report: Callable[[bool, str], None]) -> None:
        """The device answers but refuses every read (busy, or its gateway fails): the link is down
        until a request is answered again.

        The connection is fine, so it is kept; the device is asked with one
        request at a time, backing off to at most REFUSING_MAX_S: cheap for a
        busy device, and its data is back within seconds once it serves again.
        """
        reason = refusing_text(code)
        self._health.last_error = reason
        report(False, reason)
        s = self.settings
        wait = Backoff(s.backoff_initial_s, max(s.backoff_initial_s, min(s.backoff_max_s, REFUSING_MAX_S)))
        while True:
            self._stats["refused_scans"] += 1
            delay = wait.next()
            self._stats["retry_in_s"] = round(delay, 3)
            await asyncio.sleep(delay)
            self._stats["retry_in_s"] = 0.0
            if not self._client.connected:
                raise _LinkLost(self._closed())
            probe = _Collector()
            await self._run(self._scan_plan[:1], probe, learn=False)
            if not probe.refusing:
                return  # the next scan reads everything and reports the link up

    async def _scan(self) -> _Collector:
        """One scan: the plan, the refused points tried alone now and then, the others marked."""
        got = _Collector()
        plan = await self._run(self._scan_plan, got, learn=True)
        if len(plan) != len(self._scan_plan) or any(a is not b for a, b in zip(plan, self._scan_plan)):
            self._scan_plan = tuple(plan)
        probed: set[str] = set()
        if self._unreadable:
            self._scans_to_reprobe -= 1
            if self._scans_to_reprobe <= 0:
                self._scans_to_reprobe = self.settings.reprobe_scans
                probed = await self._reprobe(got)
            for key, reason in self._unreadable.items():
                if key not in probed:
                    got.unreadable(key, reason)
        self._tally(got)
        return got

    async def _reprobe(self, got: _Collector) -> set[str]:
        """Try refused points alone, REPROBE_BATCH at a time in turn (a device whose whole map is
        wrong costs a few requests, not one per point); the merged plan is back once they all answer."""
        keys = list(self._unreadable)[:REPROBE_BATCH]
        back: list[_Step] = []
        answered = 0
        for key in keys:
            steps = _compile_plan([self._points[key]], self.settings.limits)
            before = len(got.out)
            await self._run(steps, got, learn=False)
            reason = self._unreadable.pop(key)
            if all(not r.error for r in got.out[before:]):
                back += steps
                answered += 1
            else:
                self._unreadable[key] = reason  # to the end of the line: the others are tried first
        if answered == len(keys):  # (a long point may take several steps: points are counted, not steps)
            # Every point tried answers again: most likely a fault of the whole device has ended. The merged
            # plan is tried at once (the next scan learns what is still refused) rather than 8 points a round,
            # which left a third of a winder's values BAD for 10 s after an exception 2 on every register.
            self._scan_plan = self._merged_plan
            self._unreadable.clear()
            self._fallback.clear()
            log.debug("modbus %s: every refused point tried answers again; merged plan restored", self.where)
        elif back:
            self._scan_plan = (*self._scan_plan, *back)
        return set(keys)

    async def _read(self, steps: Sequence[_Step]) -> list[RawReading]:
        """Run a plan; one reading per point. Raises _LinkLost when the connection fails."""
        got = _Collector()
        await self._run(steps, got, learn=False)
        self._tally(got)
        return got.out

    def _tally(self, got: _Collector) -> None:
        h = self._health
        h.reads += got.ok
        h.read_errors += got.bad
        if got.ok:
            h.last_data_ts = time.time()

    async def _run(self, steps: Sequence[_Step], got: _Collector, learn: bool, top: bool = True) -> list[_Step]:
        """Run steps into `got`; the steps that read the same points from now on."""
        kept: list[_Step] = []
        for step in steps:
            kept += await self._run_step(step, got, learn, top)
        return kept

    async def _run_step(self, step: _Step, got: _Collector, learn: bool, top: bool = True) -> list[_Step]:
        """One request; a merged one refused for its addresses is split until only the failing points fail.

        With `learn`, a point refused alone is remembered as unreadable (and
        its step dropped from what is returned), so later scans skip it, and
        what the split leaves is merged again around it.
        """
        try:
            data = await self._request(step.request)
        except _DeviceRefused as exc:
            if exc.code in _LINK_CODES:
                got.link_refused += 1
                got.link_code = exc.code
            else:
                got.answered += 1
            # Parts of a long point cannot be split further: they are refused as one.
            if exc.code in _SPLIT_CODES and all(it.whole for it in step.items):
                fallback = self._fallback.pop(step, None) if learn else None
                if fallback is not None:  # merged again around refused points, and still refused
                    return await self._run(fallback, got, learn, top=False)
                if len(step.items) > 1:
                    self._stats["splits"] += 1
                    leaves = await self._split(step, got, learn)
                    return self._merged_around_unreadable(step, leaves) if learn and top else leaves
                if learn:
                    self._unreadable[step.items[0].key] = exc.reason
                    got.refused(step, exc.reason)
                    return []
            got.refused(step, exc.reason)
            return [step]
        got.answered += 1
        got.take(step, data)
        return [step]

    async def _split(self, step: _Step, got: _Collector, learn: bool) -> list[_Step]:
        """Read a refused request's points again in two halves, each planned anew."""
        points = [self._points[it.key] for it in step.items]
        half = len(points) // 2
        kept: list[_Step] = []
        for part in (points[:half], points[half:]):
            kept += await self._run(_compile_plan(part, self.settings.limits), got, learn, top=False)
        return kept

    def _merged_around_unreadable(self, step: _Step, leaves: list[_Step]) -> list[_Step]:
        """Fewer requests than a split left: the points between the refused ones, merged again.

        Tentative, as the registers between two leaves were never read on
        their own: each merged step keeps the leaves it replaces, and a merged
        step that is refused gives way to them for good.
        """
        if not any(it.key in self._unreadable for it in step.items):
            return leaves  # refused for its length: the leaves are what the device takes
        runs: list[list[_Point]] = [[]]
        for it in step.items:  # by address
            if it.key in self._unreadable:
                runs.append([])
            else:
                runs[-1].append(self._points[it.key])
        merged = [s for run in runs if run for s in _compile_plan(run, self.settings.limits)]
        if len(merged) >= len(leaves):
            return leaves
        for m in merged:
            keys = {it.key for it in m.items}
            self._fallback[m] = [leaf for leaf in leaves if keys.issuperset(it.key for it in leaf.items)]
        return merged

    def _plan_for(self, keys: list[str]) -> tuple[_Step, ...]:
        wanted = tuple(dict.fromkeys(keys))
        steps = self._read_plans.get(wanted)
        if steps is None:
            steps = _compile_plan([self._point(k) for k in wanted], self.settings.limits)
            if len(self._read_plans) >= _READ_PLAN_CACHE:
                self._read_plans.pop(next(iter(self._read_plans)))
            self._read_plans[wanted] = steps
        return steps

    def _point(self, key: str) -> _Point:
        try:
            return self._points[key]
        except KeyError:
            raise AdapterError(f"modbus {self.where}: no point {key!r}") from None

    # --- requests --------------------------------------------------------------------------
    @property
    def _client(self) -> AsyncModbusTcpClient:
        client = self._client_obj
        if client is None:
            client = self._client_obj = AsyncModbusTcpClient(
                self.host,
                port=self.port,
                timeout=self.settings.timeout_s,
                retries=self.settings.retries,
                reconnect_delay=0,  # reconnection is ours: with backoff, and reported through on_link
                name=f"modbus {self.where}",
            )
        return client

    async def _request(self, req: Request) -> Sequence[Any]:
        """One planned read; the registers (or bits) it asked for."""
        reader = getattr(self._client, _READER[req.table])
        async with self._lock:
            rr = await self._exchange(lambda: reader(req.address, count=req.count, device_id=req.device_id))
        fc = _READ_FUNCTION[req.table]
        if req.table in BIT_TABLES:
            bits = rr.bits
            if rr.function_code != fc or len(bits) < req.count:
                raise self._garbled(f"asked for {req.count} bits with function {fc}, got {len(bits)} with {rr.function_code}")
            return bits[:req.count]
        registers = rr.registers
        if rr.function_code != fc or len(registers) != req.count:
            raise self._garbled(f"asked for {req.count} registers with function {fc}, got {len(registers)} with {rr.function_code}")
        return registers

    async def _exchange(self, send: Callable[[], Awaitable[ModbusPDU]]) -> ModbusPDU:
        """Send one request and wait for its answer; the caller holds the lock.

        Exception responses raise _DeviceRefused (device busy is retried a few
        times first); anything that leaves the connection in doubt closes it
        and raises _LinkLost.
        """
        busy = 0
        while True:
            if not self._client.connected:
                await self._connect_on_demand()
            if self.settings.pause_between_requests_s > 0:
                await self._pace()
            self._health.requests += 1
            try:
                rr = await keep_cancellation(send())
            except (ModbusException, OSError) as exc:
                raise self._broken(exc) from None
            finally:
                self._last_exchange_end = asyncio.get_running_loop().time()
            if not rr.isError():
                return rr
            code = int(rr.exception_code)
            if code == 6 and busy < self.settings.busy_retries:
                busy += 1
                self._stats["busy_retries"] += 1
                await asyncio.sleep(self.settings.busy_pause_s)
                continue
            self._stats["exceptions"] += 1
            raise _DeviceRefused(code)

    async def _pace(self) -> None:
        wait = self._last_exchange_end + self.settings.pause_between_requests_s - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _connect_on_demand(self) -> None:
        if self._running:
            # run() owns reconnection: it backs off and reports the link.
            raise _LinkLost(self._closed())
        await self._connect()

    def _closed(self) -> str:
        return f"connection to {self.where} closed"

    async def _connect(self) -> None:
        """Open the connection (the caller holds the lock)."""
        if self._client.connected:
            return
        if not await keep_cancellation(self._client.connect()):
            raise _LinkLost(f"cannot connect to {self.where} within {self.settings.timeout_s:g} s", unreachable=True)
        self._connects += 1
        self._last_exchange_end = asyncio.get_running_loop().time()
        # The runtime logs the link's changes with the machine's name; this is the detail.
        log.debug("modbus %s: connected", self.where)
        if self._unreadable or self._scan_plan is not self._merged_plan:
            # A reconnect may follow a reboot or a firmware change: try the merged plan again.
            self._unreadable.clear()
            self._fallback.clear()
            self._scan_plan = self._merged_plan
            self._scans_to_reprobe = self.settings.reprobe_scans
        if self.settings.pause_after_connect_s > 0:
            await asyncio.sleep(self.settings.pause_after_connect_s)

    def _broken(self, exc: Exception) -> _LinkLost:
        text = str(exc)
        if "No response" in text:
            self._stats["timeouts"] += 1
            lost = self._drop(f"no reply from {self.where} within {self.settings.timeout_s:g} s")
            lost.silent = True
            return lost
        return self._drop(f"connection to {self.where} failed: {text}")

    async def _answers(self) -> bool:
        """Whether the device answers one small read, on a connection of its own (outside pymodbus,
        whose client is closed meanwhile). Any well-formed reply counts, an exception too."""
        req = self._scan_plan[0].request if self._scan_plan else None
        device_id = req.device_id if req else self.settings.device_id
        fc = _READ_FUNCTION[req.table] if req else 3
        frame = _PROBE_FRAME.pack(_PROBE_TID, 0, 6, device_id, fc, req.address if req else 0, 1)
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                try:
                    writer.write(frame)
                    await writer.drain()
                    head = await reader.readexactly(8)
                finally:
                    writer.close()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            return False
        tid, protocol, _length, unit, function = _PROBE_REPLY.unpack(head)
        return (tid, protocol, unit, function & 0x7F) == (_PROBE_TID, 0, device_id, fc)

    def _garbled(self, what: str) -> _LinkLost:
        return self._drop(f"garbled reply from {self.where}: {what}")

    def _drop(self, reason: str) -> _LinkLost:
        # Replies may now belong to other requests: start over on a fresh connection.
        self._client.close()
        self._health.last_error = reason
        log.debug("modbus %s: %s; connection closed", self.where, reason)
        return _LinkLost(reason)

    # --- writes ----------------------------------------------------------------------------
    async def _write_registers(self, p: _Point, value: Any) -> None:
        regs = self._encode(p, value)
        e = p.extent
        for i in range(0, len(regs), MAX_WRITE_REGISTERS):
            chunk = regs[i:i + MAX_WRITE_REGISTERS]
            await self._exchange(functools.partial(self._client.write_registers, e.address + i, chunk, device_id=e.device_id))

    async def _write_bit(self, p: _Point, value: Any) -> None:
        """Read-modify-write of one register bit; the lock keeps our own requests out in between."""
        mask = self._encode(p, value)[0]
        e = p.extent
        assert p.bit is not None
        rr = await self._exchange(lambda: self._client.read_holding_registers(e.address, count=1, device_id=e.device_id))
        if len(rr.registers) != 1:
            raise self._garbled(f"asked for 1 register, got {len(rr.registers)}")
        word = (rr.registers[0] & ~(1 << p.bit) & 0xFFFF) | mask
        await self._exchange(lambda: self._client.write_registers(e.address, [word], device_id=e.device_id))

    async def _write_coils(self, p: _Point, value: Any) -> None:
        e = p.extent
        bits = list(value) if isinstance(value, (list, tuple)) else [value]
        if len(bits) != e.count or any(b not in (0, 1) for b in bits):
            raise AdapterError(f"{p.key}: {value!r} is not {e.count} bit value(s)")
        if e.count == 1:
            await self._exchange(lambda: self._client.write_coil(e.address, bool(bits[0]), device_id=e.device_id))
        else:
            await self._exchange(lambda: self._client.write_coils(e.address, [bool(b) for b in bits], device_id=e.device_id))

    @staticmethod
    def _encode(p: _Point, value: Any) -> list[int]:
        try:
            return codec.encode(value, p.dtype, p.order, p.extent.count, p.bit)
        except ValueError as exc:
            raise AdapterError(f"{p.key}: cannot write {value!r}: {exc}") from None
