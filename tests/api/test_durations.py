"""Durations as people write them ("10min", "2 hours") are accepted; anything else is refused listing the forms."""

from __future__ import annotations

import pytest
from fastapi import HTTPException

from gateway.api.timeparams import parse_duration, parse_time

NOW = 1795420800.0


@pytest.mark.parametrize("text, seconds", [
    ("10min", 600), ("10 min", 600), ("2hours", 7200), ("2 hr", 7200), ("90sec", 90), ("1day", 86400),
    ("1 week", 604800), ("500msec", 0.5), ("15 minutes", 900), ("1H", 3600), ("10m", 600), ("1.5h", 5400),
])
def test_spelled_out_units_are_accepted(text, seconds):
    assert parse_duration(text, "bucket") == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["10mins ago", "1y", "5 fortnights", "min", "10 m s"])
def test_an_unknown_unit_is_refused_with_the_accepted_forms(text):
    with pytest.raises(HTTPException) as exc:
        parse_duration(text, "bucket")
    detail = exc.value.detail
    assert exc.value.status_code == 422 and detail.startswith(f"bucket: '{text}' is not a duration")
    for form in ("500ms", "10min", "2h", "1d", "hours", "a bare number is seconds"):
        assert form in detail, (form, detail)


def test_relative_times_take_the_same_units():
    assert parse_time("-10min", "start", NOW) == NOW - 600
    assert parse_time("-2hours", "start", NOW) == NOW - 7200
    with pytest.raises(HTTPException) as exc:
        parse_time("-3 lightyears", "start", NOW)
    assert "10min" in exc.value.detail
