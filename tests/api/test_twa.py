"""The time-weighted average: each value weighed by how long it held."""

from __future__ import annotations

import pytest

from gateway.api.twa import time_weighted

BAD = 2


def row(ts: float, value: float | None, quality: int = 0) -> dict:
    return {"ts": ts, "value": value, "quality": quality}


def test_a_speed_that_held_35_most_of_the_minute_averages_near_35():
    out = time_weighted([row(0, 30.0), row(5, 35.0)], 0, 60, 60)
    assert out == {0: pytest.approx((30 * 5 + 35 * 55) / 60)}  # 34.58, where the mean of the samples is 32.5


def test_the_value_before_the_range_holds_into_it():
    out = time_weighted([row(-10, 10.0), row(30, 20.0)], 0, 60, 60)
    assert out == {0: pytest.approx((10 * 30 + 20 * 30) / 60)}


def test_a_bad_sample_holds_nothing():
    # Link down from 20 s to 40 s: the average is over the 40 s that were known.
    out = time_weighted([row(0, 10.0), row(20, None, BAD), row(40, 30.0)], 0, 60, 60)
    assert out == {0: pytest.approx((10 * 20 + 30 * 20) / 40)}


def test_values_spread_over_buckets_and_empty_buckets_have_no_row():
    out = time_weighted([row(0, 1.0), row(90, 3.0), row(250, 5.0)], 0, 300, 60)
    # 1.0 held 0..90 (bucket 0 whole, bucket 60 half), 3.0 from 90 on; buckets 120 and 180 hold no sample.
    assert out == {0: 1.0, 60: pytest.approx((1 * 30 + 3 * 30) / 60), 240: pytest.approx((3 * 10 + 5 * 50) / 60)}


def test_a_bucket_of_bad_samples_only_has_no_value():
    assert time_weighted([row(0, None, BAD), row(30, None, BAD)], 0, 60, 60) == {0: None}
