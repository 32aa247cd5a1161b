"""A scan's responses decoded in bulk (plain numbers by one struct, the rest by their own decoders) give exactly
what every point's own decoder gives."""

from __future__ import annotations

import math
import random

import pytest

from gateway.adapters.base import Point
from gateway.adapters.modbus import ModbusAdapter
from gateway.adapters.modbus.adapter import _Collector

DTYPES = [("uint16", 1), ("int16", 1), ("float32", 2), ("uint32", 2), ("float64", 4), ("string", 8)]


def _random_points(rng: random.Random) -> list[Point]:
    points, address = [], 0
    for i in range(rng.randint(1, 60)):
        dtype, n = rng.choice(DTYPES)
        options = {"table": "holding", "address": address, "dtype": dtype}
        if dtype == "string":
            options["count"] = n
        if n > 1 and dtype != "string" and rng.random() < 0.2:
            options["order"] = rng.choice(["CDAB", "BADC", "DCBA"])  # rearranged: its own decoder
        if dtype == "uint16" and rng.random() < 0.1:
            options = {**options, "dtype": "bit", "bit": rng.randint(0, 15)}  # a flag in a word: its own decoder
        points.append(Point(f"p{i}", options))
        address += n + rng.choice([0, 0, 0, 1, 3, 60])  # gaps within and beyond a request's reach
    return points


def _equal(a: object, b: object) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


@pytest.mark.parametrize("seed", range(60))
def test_bulk_decoding_is_each_points_own(seed: int) -> None:
    rng = random.Random(seed)
    points = _random_points(rng)
    adapter = ModbusAdapter("127.0.0.1:502", points)
    steps = adapter._scan_plan
    assert steps, "the points make requests"
    by_key = {p.key: p for p in adapter._scan_points}
    got = _Collector()
    expected = {}
    for step in steps:
        data = [rng.randrange(65536) for _ in range(step.request.count)]
        for it in step.items:
            assert it.whole, "no value here spans two requests"
            expected[it.key] = by_key[it.key].decode(data[it.start:it.end])
        got.take(step, data)
    readings = {r.key: r.value for r in got.out}
    assert len(got.out) == len(readings) == len(points) == got.ok
    assert all(_equal(readings[k], v) and type(readings[k]) is type(v) for k, v in expected.items())


def test_a_line_rack_is_decoded_in_bulk() -> None:
    """A formation rack's map (numbers with a text cell id per channel): every request takes the bulk path."""
    from gateway.bindings import binding_for
    from interface_spec import load_spec

    points = binding_for("modbus").plan(load_spec(), "rack0", "formation", "rack0", {"channel": 512}).points
    steps = ModbusAdapter("127.0.0.1:502", points)._scan_plan
    assert sum(s.unpack is not None for s in steps) == len(steps)
    assert any(s.others for s in steps) and any(s.keys for s in steps)
