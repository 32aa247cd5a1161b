"""Every value is validated against the spec; nothing bad passes as good, nothing is dropped."""

import math

import pytest

from gateway.adapters.base import RawReading
from gateway.mapping.compile import native_modbus_plan
from gateway.runtime.ingest import to_samples
from gateway.samples import Quality
from interface_spec import load_spec


@pytest.fixture(scope="module")
def targets():
    return native_modbus_plan(load_spec(), "w1", "winder", {}).targets


def one(targets, key, value, error=""):
    [s] = to_samples("w1", targets, [RawReading(key, value, 1000.0, error)], 2000.0)
    return s


def test_good_value_keeps_unit_and_timestamps(targets):
    s = one(targets, "tension.cathode", 12.5)
    assert (s.value, s.unit, s.quality, s.source_ts, s.gateway_ts) == (12.5, "N", Quality.GOOD, 1000.0, 2000.0)


def test_out_of_range_is_kept_as_uncertain(targets):
    s = one(targets, "tension.cathode", 250.0)  # range 0..100 N
    assert (s.value, s.quality, s.reason) == (250.0, Quality.UNCERTAIN, "out_of_range")


def test_nan_is_bad_not_dropped(targets):
    s = one(targets, "tension.cathode", math.nan)
    assert (s.value, s.quality, s.reason) == (None, Quality.BAD, "nan")


def test_wrong_type_is_bad(targets):
    s = one(targets, "tension.cathode", "twelve")
    assert (s.quality, s.reason) == (Quality.BAD, "wrong_type")


def test_unknown_enum_code_is_bad(targets):
    s = one(targets, "state.packml_state", 99)
    assert (s.value, s.quality, s.reason) == (99, Quality.BAD, "unknown_enum_code")


def test_failed_read_is_bad_with_reason_never_a_stale_value(targets):
    s = one(targets, "tension.cathode", None, error="modbus exception 2 (illegal data address)")
    assert (s.value, s.quality, s.reason) == (None, Quality.BAD, "modbus exception 2 (illegal data address)")


def test_device_without_timestamps_gets_gateway_time(targets):
    [s] = to_samples("w1", targets, [RawReading("tension.cathode", 1.0, None)], 2000.0)
    assert s.source_ts == 2000.0


def test_strings_lose_padding(targets):
    assert one(targets, "jelly_roll.roll_id", "JR-1\x00\x00").value == "JR-1"


def test_uncertain_status_keeps_the_value_as_uncertain(targets):
    s = one(targets, "tension.cathode", 12.5, error="UncertainLastUsableValue")
    assert (s.value, s.quality, s.reason) == (12.5, Quality.UNCERTAIN, "UncertainLastUsableValue")
