"""Request planning: read a set of points in as few Modbus requests as possible.

Each request covers one contiguous range of one table of one device. Points
close together share a request: a gap of up to `max_gap` unused registers is
read along rather than paid for with another round trip. A request never
exceeds the protocol limits (125 registers, 2000 bits) or the lower limits a
picky device needs. Within those rules the greedy merge below is minimal:
whether points i..j fit in one request only gets easier when the range shrinks,
so extending each request as far as it goes never costs a request later.

A point too large for one request (a long string) is read alone, in as many
requests as it needs; each request says which part of which point it carries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

TABLES: tuple[str, ...] = ("holding", "input", "coil", "discrete")
BIT_TABLES: frozenset[str] = frozenset({"coil", "discrete"})
MAX_REGISTERS = 125  # function codes 3 and 4
MAX_BITS = 2000  # function codes 1 and 2
ADDRESS_SPACE = 65536
_TABLE_RANK = {t: i for i, t in enumerate(TABLES)}


class Extent(NamedTuple):
    """Where one point lives: the planner's input."""

    device_id: int
    table: str
    address: int  # 0-based
    count: int  # type: ignore[assignment]  # registers, or bits in a bit table (named like tuple.count on purpose)


class Span(NamedTuple):
    """The part of one point a request carries."""

    point: int  # index of the point in the planned sequence
    offset: int  # first register (or bit) of the part within the response
    count: int  # type: ignore[assignment]  # registers (or bits) of the part (named like tuple.count on purpose)
    into: int  # where the part starts within the point: 0 unless the point is split


@dataclass(frozen=True, slots=True)
class Request:
    device_id: int
    table: str
    address: int
    count: int
    spans: tuple[Span, ...]

    @property
    def end(self) -> int:
        return self.address + self.count


@dataclass(frozen=True, slots=True)
class Limits:
    """How far requests may stretch; lower the maxima for devices that need it."""

    max_gap: int = 50  # unused registers read along to save a request
    max_registers: int = MAX_REGISTERS
    max_bits: int = MAX_BITS
    max_bit_gap: int | None = None  # unused bits read along; 16 x max_gap when not given

    def __post_init__(self) -> None:
        if self.max_gap < 0:
            raise ValueError(f"max_gap must be >= 0, got {self.max_gap}")
        if not 1 <= self.max_registers <= MAX_REGISTERS:
            raise ValueError(f"max_registers must be 1..{MAX_REGISTERS}, got {self.max_registers}")
        if not 1 <= self.max_bits <= MAX_BITS:
            raise ValueError(f"max_bits must be 1..{MAX_BITS}, got {self.max_bits}")
        if self.max_bit_gap is not None and self.max_bit_gap < 0:
            raise ValueError(f"max_bit_gap must be >= 0, got {self.max_bit_gap}")

    def size_for(self, table: str) -> int:
        return self.max_bits if table in BIT_TABLES else self.max_registers

    def gap_for(self, table: str) -> int:
        if table not in BIT_TABLES:
            return self.max_gap
        return self.max_bit_gap if self.max_bit_gap is not None else 16 * self.max_gap


def check_extent(e: Extent) -> None:
    """Raise ValueError when a point cannot be addressed at all."""
    if e.table not in _TABLE_RANK:
        raise ValueError(f"unknown table {e.table!r} (one of {', '.join(TABLES)})")
    if not 0 <= e.address < ADDRESS_SPACE:
        raise ValueError(f"address {e.address} is outside 0..{ADDRESS_SPACE - 1}")
    if e.count < 1 or e.address + e.count > ADDRESS_SPACE:
        raise ValueError(f"{e.count} from address {e.address} does not fit the {ADDRESS_SPACE} addresses")


def _split(index: int, e: Extent, size: int) -> list[Request]:
    """A point larger than one request, read in consecutive parts."""
    out = []
    for into in range(0, e.count, size):
        n = min(size, e.count - into)
        out.append(Request(e.device_id, e.table, e.address + into, n, (Span(index, 0, n, into),)))
    return out


def _plan_group(indexed: list[tuple[int, Extent]], limits: Limits) -> list[Request]:
    """Merge the points of one table of one device, sorted by address."""
    device_id, table = indexed[0][1].device_id, indexed[0][1].table
    size, max_gap = limits.size_for(table), limits.gap_for(table)
    out: list[Request] = []
    start = end = -1
    members: list[tuple[int, Extent]] = []

    def flush() -> None:
        if members:
            spans = tuple(Span(i, e.address - start, e.count, 0) for i, e in members)
            out.append(Request(device_id, table, start, end - start, spans))
            members.clear()

    for index, e in indexed:
        if e.count > size:
            flush()
            out.extend(_split(index, e, size))
            continue
        e_end = e.address + e.count
        if members and e.address - end <= max_gap and max(end, e_end) - start <= size:
            end = max(end, e_end)
            members.append((index, e))
            continue
        flush()
        start, end = e.address, e_end
        members.append((index, e))
    flush()
    return out


def plan(extents: Sequence[Extent], limits: Limits | None = None) -> list[Request]:
    """The fewest requests that read every extent, ordered by device, table, address."""
    limits = limits or Limits()
    groups: dict[tuple[int, str], list[tuple[int, Extent]]] = {}
    for index, e in enumerate(extents):
        check_extent(e)
        groups.setdefault((e.device_id, e.table), []).append((index, e))
    requests: list[Request] = []
    for key in sorted(groups, key=lambda k: (k[0], _TABLE_RANK[k[1]])):
        members = sorted(groups[key], key=lambda ie: (ie[1].address, ie[1].address + ie[1].count))
        requests.extend(_plan_group(members, limits))
    return requests
