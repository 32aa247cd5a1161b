"""How the API reads times, durations and path patterns, and what it says when it cannot."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi import HTTPException

from gateway.api.auth import is_loopback
from gateway.api.present import PathFilter
from gateway.api.routes.history import MAX_POINTS, suggest_bucket
from gateway.api.timeparams import iso, parse_duration, parse_time, time_range

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("text, expected", [
    ("now", NOW),
    ("-1h", NOW - 3600),
    ("-15m", NOW - 900),
    ("-500ms", NOW - 0.5),
    ("1795420800", 1795420800.0),
    ("1795420800.25", 1795420800.25),
    ("2026-11-23T07:00:00Z", NOW - 3600),
    ("2026-11-23T09:00:00+02:00", NOW - 3600),
    ("2026-11-23T07:00:00", NOW - 3600),  # naive means UTC
])
def test_times_are_iso_epoch_or_relative(text, expected):
    assert parse_time(text, "start", NOW) == pytest.approx(expected)


def test_a_bad_time_names_the_parameter_and_the_accepted_forms():
    with pytest.raises(HTTPException) as exc:
        parse_time("last tuesday", "end", NOW)
    assert exc.value.status_code == 422
    assert "end" in exc.value.detail and "ISO 8601" in exc.value.detail and "-1h" in exc.value.detail


def test_end_before_start_is_refused():
    with pytest.raises(HTTPException) as exc:
        time_range("-1h", "-2h", NOW, 3600)
    assert exc.value.status_code == 422 and "before" in exc.value.detail
    assert time_range(None, None, NOW, 600) == (NOW - 600, NOW)


@pytest.mark.parametrize("text, seconds", [("60s", 60), ("5m", 300), ("1h", 3600), ("250ms", 0.25), ("30", 30), ("1d", 86400)])
def test_durations(text, seconds):
    assert parse_duration(text, "bucket") == seconds


@pytest.mark.parametrize("text", ["fast", "0s", "-5m", "1y"])
def test_bad_durations_are_422(text):
    with pytest.raises(HTTPException) as exc:
        parse_duration(text, "bucket")
    assert exc.value.status_code == 422 and "bucket" in exc.value.detail


def test_iso_is_utc_with_milliseconds():
    assert iso(NOW + 0.1234) == "2026-11-23T08:00:00.123Z"
    assert iso(None) is None


def test_path_globs_treat_brackets_as_array_indexes():
    voltages = PathFilter(["channel[*].voltage"])
    assert voltages.match("channel[12].voltage")
    assert not voltages.match("channel[12].current")
    assert not voltages.match("rack.voltage")
    several = PathFilter(["state.*,lane[2].*", "web.line_speed"])
    assert several.match("state.packml_state") and several.match("lane[2].areal_weight") and several.match("web.line_speed")
    assert not several.match("lane[1].areal_weight")
    assert PathFilter(None).match("anything") and not PathFilter(None)


def test_suggested_bucket_keeps_a_query_within_the_limit():
    month = 30 * 86400
    text = suggest_bucket(month, 3)
    seconds = parse_duration(text, "bucket")
    assert month / seconds * 3 <= MAX_POINTS
    assert suggest_bucket(60, 1) == "1s"


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("::1", True), ("127.8.9.1", True),
                                            ("192.0.2.10", False), ("", False), (None, False), ("testclient", False)])
def test_loopback_clients(host, loopback):
    assert is_loopback(host) is loopback
