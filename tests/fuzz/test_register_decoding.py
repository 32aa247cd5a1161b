"""Any register content a machine can send decodes to a value or to a bad sample: never an exception.

Every point the gateway reads over Modbus, natively (every class of the spec) and through every shipped Modbus
mapping, is compiled as the adapter compiles it; hypothesis fills its registers (or bits) with anything a device
may answer, the point's decoder turns them into a reading, and the gateway's validation turns the reading into
samples. Each sample is good only with a finite value of its type within its plausibility range; otherwise it is
uncertain or bad with a reason.
"""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.adapters.base import RawReading
from gateway.adapters.modbus.adapter import _compile_point
from gateway.bindings.modbus import ModbusBinding
from gateway.mapping.compile import load_mapping, mapped_plan
from gateway.runtime.ingest import to_samples
from gateway.samples import Quality
from interface_spec import load_spec
from interface_spec.vendor import VENDOR_DIR

SPEC = load_spec()
MAPPINGS = VENDOR_DIR


def plans() -> list:
    out = [ModbusBinding().plan(SPEC, "eq", cls, "eq", {}) for cls in SPEC.classes]
    for path in sorted(MAPPINGS.glob("*-modbus.yaml")):
        out.append(mapped_plan(SPEC, "eq", load_mapping(path, SPEC), {}))
    return out


PLANS = plans()
POINTS = [(plan, p, _compile_point(p, 1)) for plan in PLANS for p in plan.points if p.key in plan.targets]


@st.composite
def readings(draw):
    plan, point, compiled = draw(st.sampled_from(POINTS))
    n = compiled.extent.count
    if compiled.dtype == "bit" and compiled.extent.table in ("coil", "discrete"):
        raw = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    else:
        raw = draw(st.lists(st.one_of(st.integers(0, 0xFFFF), st.sampled_from([0, 0xFFFF, 0x7FC0, 0x7F80, 0xFF80])),
                            min_size=n, max_size=n))
    return plan, point, compiled, raw


def test_every_native_and_mapped_point_is_covered():
    assert len(POINTS) > 500, len(POINTS)
    assert {c.dtype for _, _, c in POINTS} >= {"float32", "uint16", "string"}


@settings(max_examples=1500, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(readings())
def test_any_register_content_decodes_or_is_bad_never_an_exception(drawn):
    plan, point, compiled, raw = drawn
    value = compiled.decode(raw)  # the adapter's own decoder for this point: it must not raise on any content
    samples = to_samples("eq", plan.targets, [RawReading(point.key, value, 1000.0)], 2000.0)
    assert samples, f"{point.key}: a reading that vanished"
    for s in samples:
        assert s.quality in (Quality.GOOD, Quality.UNCERTAIN, Quality.BAD)
        if s.quality == Quality.GOOD:
            var = SPEC.variable(plan.cls, s.path).var
            if var.type == "float":
                assert isinstance(s.value, float) and math.isfinite(s.value), (s.path, s.value)
            if var.type in ("float", "int", "uint") and var.range:
                assert var.range[0] <= s.value <= var.range[1], (s.path, s.value)
            if var.type == "string":
                assert isinstance(s.value, str) and len(s.value) <= (var.length or 10**6), (s.path, s.value)
        else:
            assert s.reason, f"{s.path}: {s.quality.name} without a reason"
