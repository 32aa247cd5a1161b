"""Every value is validated against the spec; nothing bad passes as good, nothing is dropped."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.adapters.base import RawReading
from gateway.bindings.modbus import ModbusBinding
from gateway.mapping.compile import Target, load_mapping, mapped_plan
from gateway.runtime.ingest import convert, to_samples
from gateway.samples import Quality
from interface_spec import SpecError, load_spec
from interface_spec.vendor import vendor_path


@pytest.fixture(scope="module")
def targets():
    return ModbusBinding().plan(load_spec(), "w1", "winder", "w1", {}).targets


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


# --- bit fields of a mapping --------------------------------------------------------------------

PACKED = """\
mapping: packed-status-word
class: winder
protocol: modbus
variables:
  - path: state.control_authority
    source: {address: 101, dtype: uint16, bit: 2}
    enum: {0: Local, 1: Remote}
  - path: state.operation_mode
    source: {address: 101, dtype: uint16, bit: 4, bits: 3}
    enum: {0: Setup, 1: Processing, 5: Maintenance}
"""


def test_bit_fields_of_one_word_are_read_apart(tmp_path):
    spec = load_spec()
    (tmp_path / "m.yaml").write_text(PACKED)
    plan = mapped_plan(spec, "w1", load_mapping(tmp_path / "m.yaml", spec), {})
    [key] = {k for k, ts in plan.targets.items() if {t.path for t in ts} >= {"state.operation_mode"}}
    word = 0b1101_0101_0100  # bit 2 set (Remote); bits 4-6 = 0b101 (Maintenance); bits 7+ are other flags
    got = {s.path: s for s in to_samples("w1", plan.targets, [RawReading(key, word, None)], 2000.0)}
    modes = spec.enum("operation_mode")
    assert got["state.operation_mode"].value == modes["Maintenance"] and got["state.operation_mode"].quality == Quality.GOOD
    assert got["state.control_authority"].quality == Quality.GOOD
    # The same word with field value 0b111: no such vendor code, bad and named, not a neighbouring mode.
    got = {s.path: s for s in to_samples("w1", plan.targets, [RawReading(key, word | 0b0111_0000, None)], 2000.0)}
    assert (got["state.operation_mode"].quality, got["state.operation_mode"].reason) == (Quality.BAD, "unknown_vendor_code:7")


@pytest.mark.parametrize("source, message", [
    ("{address: 101, dtype: uint16, bit: 14, bits: 3}", "bit 14 + bits 3 do not fit in a uint16 (16 bits)"),
    ("{address: 101, dtype: uint16, bits: 3}", "bits: 3 needs 'bit'"),
    ("{address: 101, dtype: float32, bit: 1}", "bit: only for integer sources, not dtype float32"),
])
def test_a_bit_field_that_does_not_fit_is_refused_with_its_line(tmp_path, source, message):
    (tmp_path / "m.yaml").write_text(PACKED.replace("{address: 101, dtype: uint16, bit: 4, bits: 3}", source))
    with pytest.raises(SpecError) as exc:
        load_mapping(tmp_path / "m.yaml", load_spec())
    assert "m.yaml:9: variables[1].source: " in str(exc.value) and message in str(exc.value)


@pytest.mark.parametrize("declared, quality", [("1.0.0", Quality.BAD), ("1.1.0", Quality.GOOD)])
async def test_a_machine_declaring_1_0_has_no_meter_however_its_registers_read(tmp_path, declared, quality):
    """The meter came in 1.1, after the mailbox: a 1.0 machine's registers there read 0, which is no reading. The
    gateway keeps those samples, bad, with the reason; the machine's other values are untouched."""
    from gateway.config import Equipment
    from gateway.runtime.device import Device
    from gateway.store import SqliteStore

    spec = load_spec()
    async with SqliteStore(tmp_path / "s.sqlite") as store:
        dev = Device(spec, Equipment.model_validate({"id": "w1", "class": "winder", "protocol": "modbus",
                                                     "endpoint": "127.0.0.1:1502"}), store, lambda message: None)
        dev.plan = dev._build_plan({})
        dev._on_readings([RawReading("identification.spec_version", declared, 1000.0),
                          RawReading("meter.active_energy", 0.0, 1000.0), RawReading("tension.cathode", 5.0, 1000.0)])
        meter, tension = dev.latest["meter.active_energy"], dev.latest["tension.cathode"]
        assert meter.quality == quality and tension.quality == Quality.GOOD
        if quality == Quality.BAD:
            assert meter.reason == "not_in_spec_version 1.0.0" and meter.value == 0.0  # kept, not dropped
        await store.flush()
        [row] = await store.history("w1", "meter.active_energy", 0, 2000)
        assert row["quality"] == int(quality)


def test_raw_is_what_the_machine_sent_where_the_gateway_changed_it():
    """A vendor's enum code, mapped to the spec's member, and an unscaled number keep what the machine sent as
    `raw`; the API shows it beside the spec's value. A value the gateway did not change has no raw of its own."""

    from gateway.api.models import ValueOut
    from gateway.api.present import Presenter

    spec = load_spec()
    mapping = load_mapping(vendor_path("tobu-winder-modbus"), spec)
    plan = mapped_plan(spec, "w1", mapping, {})
    [state_key] = [k for k, ts in plan.targets.items() if [t.path for t in ts] == ["state.packml_state"]]
    [s] = to_samples("w1", plan.targets, [RawReading(state_key, 30, 1000.0)], 2000.0)  # Tobu's 30 is Execute
    assert (s.value, s.raw, s.quality) == (spec.enum("packml_state")["Execute"], 30, Quality.GOOD)
    shown = Presenter(spec).sample("winder", s)
    assert (shown["value"], shown["raw"]) == ("Execute", 30)
    live = Presenter(spec).live_row("winder", [s.path, s.value, s.unit, int(s.quality), s.reason, s.source_ts, s.raw])
    assert (live["value"], live["raw"]) == ("Execute", 30)
    scaled = [(k, t) for k, ts in plan.targets.items() for t in ts if t.scale != 1.0 and t.kind == "num"]
    assert scaled, "the Tobu map scales some of its values"
    key, target = scaled[0]
    [v] = to_samples("w1", {key: [target]}, [RawReading(key, 1234, 1000.0)], 2000.0)
    assert v.raw == 1234 and v.value == pytest.approx(1234 * target.scale + target.offset)
    # A vendor's number with a fraction (a float register, unscaled) is shown as sent; once, the API answered 500.
    [f] = to_samples("w1", {key: [target]}, [RawReading(key, 90.342, 1000.0)], 2000.0)
    assert ValueOut.model_validate(Presenter(spec).sample("winder", f)).raw == 90.342
    native = ModbusBinding().plan(spec, "w1", "winder", "w1", {}).targets
    [n] = to_samples("w1", native, [RawReading("state.packml_state", 6, 1000.0)], 2000.0)
    assert n.raw is None and Presenter(spec).sample("winder", n)["raw"] == 6  # the spec's code, as it was sent


async def test_live_samples_are_built_only_while_someone_listens(tmp_path):
    """A batch's live message is a list per sample: with no WebSocket client it is not made at all."""
    from gateway.config import Equipment
    from gateway.runtime.device import Device
    from gateway.store import SqliteStore

    sent: list = []
    listeners = [0]
    async with SqliteStore(tmp_path / "s.sqlite") as store:
        dev = Device(load_spec(), Equipment.model_validate({"id": "w1", "class": "winder", "protocol": "modbus",
                                                            "endpoint": "127.0.0.1:1502"}), store, sent.append,
                     lambda: listeners[0] > 0)
        dev.plan = dev._build_plan({})
        dev._link_up = True
        dev._on_readings([RawReading("tension.cathode", 5.0, 1000.0)])
        assert [m for m in sent if m.kind == "samples"] == []
        assert dev.latest["tension.cathode"].value == 5.0  # recorded all the same
        listeners[0] = 1
        dev._on_readings([RawReading("tension.cathode", 5.5, 1001.0)])
        [msg] = [m for m in sent if m.kind == "samples"]
        assert msg.data["samples"][0][:2] == ["tension.cathode", 5.5]


_raw = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, 7, 7.5]), st.floats(), st.integers(-2**70, 2**70), st.booleans(), st.text(max_size=3), st.none())
_target = st.builds(Target, path=st.just("v"), unit=st.just("V"), kind=st.sampled_from(["num", "enum", "bool", "str"]),
                    lo=st.sampled_from([-math.inf, 0.0, -5]), hi=st.sampled_from([math.inf, 10.0, 5]),
                    scale=st.sampled_from([1.0, 0.001]), offset=st.sampled_from([0.0, -273.15]),
                    bit=st.sampled_from([None, 3]))


@settings(max_examples=500)
@given(raw=_raw, t=_target)
def test_the_hot_paths_inline_case_is_what_convert_says(raw, t):
    """to_samples takes in-range numbers without calling convert(): for every value and target, the sample must be
    exactly the one convert() makes (NaN, infinities, out of range, bools, huge ints and text included)."""
    [s] = to_samples("w1", {"k": [t]}, [RawReading("k", raw, 1000.0, "")], 2000.0)
    expected = convert("w1", t, raw, 1000.0, 2000.0)
    assert s == expected and [type(x) for x in s] == [type(x) for x in expected]


@pytest.mark.parametrize("kind", ["enum", "bool"])
@pytest.mark.parametrize("raw, reason", [(math.nan, "nan"), (math.inf, "infinite"), (-math.inf, "infinite")])
def test_a_code_or_flag_that_is_not_a_number_is_bad_not_a_crash_or_true(kind, raw, reason):
    """A float register read as an enum or a flag: NaN made int() raise out of the hot path, and bool(NaN) is True."""
    s = convert("w1", Target("v", "", kind), raw, 1000.0, 2000.0)
    assert (s.value, s.quality, s.reason) == (None, Quality.BAD, reason)
