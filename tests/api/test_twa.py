"""The time-weighted average: each value weighed by how long it held."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.api.twa import time_weighted
from gateway.store import SampleColumns

BAD = 2


def row(ts: float, value, quality: int = 0) -> tuple:
    return ts, value, quality


def columns(rows: list[tuple]) -> SampleColumns:
    """A series' raw samples as the store reads them (sorted by time)."""
    rows = sorted(rows, key=lambda r: r[0])
    number = [float(v) if isinstance(v, (int, float)) else math.nan for _, v, _ in rows]
    return SampleColumns(np.array([r[0] for r in rows], dtype=float), np.array([r[0] for r in rows], dtype=float),
                         np.array([r[2] for r in rows], dtype=np.uint8), np.array(number, dtype=float),
                         [r[1] for r in rows], ["" for _ in rows])


def twa(rows: list[tuple], start: float, end: float, bucket_s: float) -> dict:
    return time_weighted(columns(rows), start, end, bucket_s)


def slow_twa(rows: list[tuple], start: float, end: float, bucket_s: float) -> dict:
    """The definition, sample by sample: each GOOD number holds until the next sample, cut at the bucket edges."""
    area: dict[float, float] = {}
    known: dict[float, float] = {}
    rows = sorted((r for r in rows if r[0] < end), key=lambda r: r[0])
    for i, (ts, value, quality) in enumerate(rows):
        if quality != 0 or type(value) not in (int, float) or not math.isfinite(value):
            continue
        t0, t1 = max(ts, start), min(rows[i + 1][0] if i + 1 < len(rows) else end, end)
        while t0 < t1:
            b = math.floor(t0 / bucket_s) * bucket_s
            stop = min(t1, b + bucket_s)
            area[b] = area.get(b, 0.0) + value * (stop - t0)
            known[b] = known.get(b, 0.0) + (stop - t0)
            t0 = stop
    holding = sorted({math.floor(ts / bucket_s) * bucket_s for ts, _, _ in rows if ts >= start})
    return {b: (area[b] / known[b] if known.get(b) else None) for b in holding}


def test_a_speed_that_held_35_most_of_the_minute_averages_near_35():
    out = twa([row(0, 30.0), row(5, 35.0)], 0, 60, 60)
    assert out == {0: pytest.approx((30 * 5 + 35 * 55) / 60)}  # 34.58, where the mean of the samples is 32.5


def test_the_value_before_the_range_holds_into_it():
    out = twa([row(-10, 10.0), row(30, 20.0)], 0, 60, 60)
    assert out == {0: pytest.approx((10 * 30 + 20 * 30) / 60)}


def test_a_bad_sample_holds_nothing():
    # Link down from 20 s to 40 s: the average is over the 40 s that were known.
    out = twa([row(0, 10.0), row(20, None, BAD), row(40, 30.0)], 0, 60, 60)
    assert out == {0: pytest.approx((10 * 20 + 30 * 20) / 40)}


def test_values_spread_over_buckets_and_empty_buckets_have_no_row():
    out = twa([row(0, 1.0), row(90, 3.0), row(250, 5.0)], 0, 300, 60)
    # 1.0 held 0..90 (bucket 0 whole, bucket 60 half), 3.0 from 90 on; buckets 120 and 180 hold no sample.
    assert out == {0: 1.0, 60: pytest.approx((1 * 30 + 3 * 30) / 60), 240: pytest.approx((3 * 10 + 5 * 50) / 60)}


def test_a_bucket_of_bad_samples_only_has_no_value():
    assert twa([row(0, None, BAD), row(30, None, BAD)], 0, 60, 60) == {0: None}


def test_text_flags_and_infinities_hold_nothing():
    out = twa([row(0, 10.0), row(10, "warming"), row(20, True), row(30, math.inf), row(40, 20)], 0, 60, 60)
    assert out == {0: pytest.approx((10 * 10 + 20 * 20) / 30)}
    assert twa([], 0, 60, 60) == {} and twa([row(70, 1.0)], 0, 60, 60) == {}


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(-200, 900).map(lambda t: t / 4),
                               st.one_of(st.floats(-1e6, 1e6), st.integers(-1000, 1000), st.none(), st.booleans(),
                                         st.just("text"), st.just(math.nan)),
                               st.sampled_from([0, 0, 0, 1, BAD])), max_size=40),
       window=st.tuples(st.integers(-50, 150), st.integers(1, 150)), bucket=st.sampled_from([1.0, 7.0, 30.0, 60.0]))
def test_column_wise_it_is_the_definition_sample_by_sample(rows, window, bucket):
    start, end = float(window[0]), float(window[0] + window[1])
    fast, slow = twa(rows, start, end, bucket), slow_twa(rows, start, end, bucket)
    assert list(fast) == list(slow)
    for b in slow:
        assert (fast[b] is None) == (slow[b] is None), b
        if slow[b] is not None:
            assert fast[b] == pytest.approx(slow[b], rel=1e-9, abs=1e-6), b
