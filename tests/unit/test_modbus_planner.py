"""Request planning: fewest requests, within gap and size limits, per table and device."""

from __future__ import annotations

import random
from functools import cache

import pytest

from gateway.adapters.modbus.planner import BIT_TABLES, Extent, Limits, plan


def _feasible(group: list[Extent], limits: Limits) -> bool:
    """Can these points (sorted by address) share one request?"""
    size, gap = limits.size_for(group[0].table), limits.gap_for(group[0].table)
    start, end = group[0].address, group[0].address + group[0].count
    for e in group[1:]:
        if e.address - end > gap:
            return False
        end = max(end, e.address + e.count)
    return end - start <= size


def minimum_requests(extents: list[Extent], limits: Limits) -> int:
    """Brute force over every way to cut each (device, table) group into requests."""
    total = 0
    groups: dict[tuple[int, str], list[Extent]] = {}
    for e in extents:
        groups.setdefault((e.device_id, e.table), []).append(e)
    for members in groups.values():
        pts = sorted(members, key=lambda e: (e.address, e.address + e.count))

        @cache
        def best(i: int, pts: tuple[Extent, ...] = tuple(pts)) -> int:
            if i == len(pts):
                return 0
            return min(1 + best(j) for j in range(i + 1, len(pts) + 1) if _feasible(list(pts[i:j]), limits))

        total += best(0)
    return total


def covered(extents: list[Extent], limits: Limits) -> None:
    """Every point read exactly once, wholly inside one request, within the limits."""
    requests = plan(extents, limits)
    seen: dict[int, int] = {}
    for r in requests:
        assert r.count <= limits.size_for(r.table)
        for s in r.spans:
            e = extents[s.point]
            assert (e.device_id, e.table) == (r.device_id, r.table)
            assert r.address + s.offset == e.address + s.into
            assert s.offset + s.count <= r.count
            seen[s.point] = seen.get(s.point, 0) + s.count
    assert seen == {i: e.count for i, e in enumerate(extents)}


def test_close_points_share_one_request() -> None:
    pts = [Extent(1, "holding", a, 2) for a in (0, 2, 10, 40)]
    requests = plan(pts)
    assert [(r.address, r.count) for r in requests] == [(0, 42)]
    assert [s.offset for s in requests[0].spans] == [0, 2, 10, 40]


def test_gap_beyond_max_gap_splits() -> None:
    pts = [Extent(1, "holding", 0, 1), Extent(1, "holding", 52, 1), Extent(1, "holding", 104, 1)]
    # gaps of 51 registers: above the default max_gap of 50
    assert len(plan(pts)) == 3
    assert len(plan(pts, Limits(max_gap=51))) == 1
    assert len(plan(pts, Limits(max_gap=0))) == 3


def test_requests_never_exceed_125_registers() -> None:
    pts = [Extent(1, "holding", a, 2) for a in range(0, 400, 2)]
    requests = plan(pts)
    assert all(r.count <= 125 for r in requests)
    assert len(requests) == 4  # 400 registers, 62 float32s (124 registers) per request


def test_picky_device_limit() -> None:
    pts = [Extent(1, "input", a, 1) for a in range(100)]
    assert [r.count for r in plan(pts, Limits(max_registers=32))] == [32, 32, 32, 4]


def test_points_are_never_split_when_they_fit() -> None:
    # 62 float32 at 0..123, then one at 124..125: it must start a new request.
    pts = [Extent(1, "holding", a, 2) for a in range(0, 126, 2)]
    requests = plan(pts)
    assert [(r.address, r.count) for r in requests] == [(0, 124), (124, 2)]


def test_tables_and_devices_are_planned_apart() -> None:
    pts = [Extent(1, "holding", 0, 1), Extent(1, "input", 1, 1), Extent(2, "holding", 1, 1),
           Extent(1, "coil", 0, 1), Extent(1, "discrete", 0, 1), Extent(1, "holding", 2, 1)]
    requests = plan(pts)
    assert [(r.device_id, r.table, r.address, r.count) for r in requests] == [
        (1, "holding", 0, 3), (1, "input", 1, 1), (1, "coil", 0, 1), (1, "discrete", 0, 1), (2, "holding", 1, 1),
    ]


def test_bits_up_to_2000_per_request() -> None:
    pts = [Extent(1, "coil", a, 1) for a in range(0, 4500, 3)]
    requests = plan(pts)
    assert all(r.count <= 2000 for r in requests)
    assert len(requests) == 3
    assert len(plan(pts, Limits(max_bits=100))) == 45


def test_overlapping_points_share_registers() -> None:
    # A uint32 and the two uint16 halves of it, and bits of one register.
    pts = [Extent(1, "holding", 10, 2), Extent(1, "holding", 10, 1), Extent(1, "holding", 11, 1),
           Extent(1, "holding", 11, 1)]
    requests = plan(pts)
    assert [(r.address, r.count) for r in requests] == [(10, 2)]
    assert sorted(s.offset for s in requests[0].spans) == [0, 0, 1, 1]


def test_a_point_larger_than_a_request_is_read_in_parts() -> None:
    pts = [Extent(1, "holding", 0, 2), Extent(1, "holding", 100, 300), Extent(1, "holding", 402, 1)]
    requests = plan(pts)
    assert [(r.address, r.count) for r in requests] == [(0, 2), (100, 125), (225, 125), (350, 50), (402, 1)]
    parts = [s for r in requests for s in r.spans if s.point == 1]
    assert [(s.into, s.count) for s in parts] == [(0, 125), (125, 125), (250, 50)]
    covered(pts, Limits())


def test_bad_extents_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown table"):
        plan([Extent(1, "holdings", 0, 1)])
    with pytest.raises(ValueError, match="outside"):
        plan([Extent(1, "holding", 65536, 1)])
    with pytest.raises(ValueError, match="does not fit"):
        plan([Extent(1, "holding", 65535, 2)])
    with pytest.raises(ValueError, match="max_registers"):
        Limits(max_registers=126)


def test_example_map_needs_the_minimum() -> None:
    """A realistic map: float32 values in blocks, a status word far away, strings, coils."""
    pts = [Extent(1, "holding", 40004 + 2 * i, 2) for i in range(80)]  # 160 registers of values
    pts += [Extent(1, "holding", 40300 + i, 1) for i in range(8)]  # alarm words
    pts += [Extent(1, "holding", 41000, 16)]  # a string
    pts += [Extent(1, "input", 0, 2), Extent(1, "input", 30, 2)]
    pts += [Extent(1, "coil", i * 7, 1) for i in range(10)]
    pts += [Extent(2, "holding", 0, 4)]
    limits = Limits()
    requests = plan(pts, limits)
    # holding dev 1: 40004..40127, 40128..40163 (+ nothing within 50), 40300..40307, 41000..41015
    assert len(requests) == minimum_requests(pts, limits) == 4 + 1 + 1 + 1
    covered(pts, limits)


@pytest.mark.parametrize("seed", range(40))
def test_random_maps_need_the_minimum(seed: int) -> None:
    rng = random.Random(seed)
    limits = Limits(max_gap=rng.choice([0, 5, 20, 50]), max_registers=rng.choice([16, 60, 125]),
                    max_bits=rng.choice([64, 2000]))
    pts = []
    for _ in range(rng.randint(1, 40)):
        table = rng.choice(["holding", "input", "coil", "discrete"])
        count = 1 if table in BIT_TABLES else rng.choice([1, 1, 2, 2, 4, 8])
        pts.append(Extent(rng.choice([1, 2]), table, rng.randint(0, 600), count))
    requests = plan(pts, limits)
    assert len(requests) == minimum_requests(pts, limits)
    covered(pts, limits)
