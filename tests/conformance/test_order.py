"""The kit never fails a conforming machine for the order in which observations reach it.

Fresh reads and notifications (or scans) reach the probe by two paths, so a
read answered late can arrive after a newer value. These tests connect a real
probe to real simulators (OPC UA with source timestamps, Modbus without),
observe, and then feed the probe, through its one recording function
(`Probe.take`), an answer older than a value it has already recorded, for
every order-dependent check: none of them fails, and the late answer shows
as evidence. A real step back (newer source time, smaller value) still fails;
a step back as the machine's clock goes back is reported as the clock's.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import pytest_asyncio

from gateway.conformance.catalogue import build_catalogue
from gateway.conformance.checks.consistency import state_events
from gateway.conformance.checks.quality import counters, event_envelopes, event_order, heartbeat, source_timestamps
from gateway.conformance.context import Context, Options
from gateway.conformance.probe import NativeProbe, advance, in_seq_order
from gateway.samples import Sample
from simulators.line import SimLine

from .conftest import KIT, SPEC, endpoint, only, sim_config, start

pytestmark = pytest.mark.asyncio(loop_scope="module")
SUBJECTS = {"opcua": ("coater", "opcua"), "modbus": ("winder", "modbus")}
HEARTBEAT, COUNTER = "status.heartbeat", "counters.time_prd"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lines() -> Any:
    started = await asyncio.gather(*(start(sim_config(c, p, f"order-{p}")) for c, p in SUBJECTS.values()))
    try:
        yield dict(zip(SUBJECTS, started))
    finally:
        for line in started:
            await line.stop()


async def observed(line: SimLine, observe_s: float = 2.5) -> Context:
    """A real probe on a real simulator, after an observation window of its own (the window stays open:
    the test adds to it and closes it)."""
    sim = only(line)
    options = Options(cls=sim.config.cls, protocol=sim.config.protocol, endpoint=endpoint(line),
                      **{**KIT, "observe_s": observe_s})
    probe = NativeProbe(SPEC, options.cls, options.protocol, options.endpoint, scan_ms=options.scan_ms)
    ctx = Context(SPEC, options, probe, build_catalogue(SPEC).for_class(options.cls), None)
    await probe.open()
    ctx.t0 = time.time()
    await asyncio.sleep(observe_s)
    await ctx.read_events()
    return ctx


def newest(ctx: Context, path: str) -> Sample:
    o = ctx.probe.order[path]
    assert o.newest is not None, f"{path} was never read"
    return o.newest[2]


def answer(ctx: Context, path: str, value: Any, *, older: bool, clock_back_s: float = 0.0) -> Sample:
    """Feed the probe an answer for `path` arriving now: older than the newest value recorded (a read answered
    late), or newer (after it, in the machine's time). OPC UA stamps it with a source time; a Modbus answer has
    none and is placed by when it was asked."""
    probe: Any = ctx.probe
    n, now = newest(ctx, path), time.time()
    if probe.protocol == "opcua":
        ts = n.source_ts - clock_back_s if clock_back_s else n.source_ts - 0.3 if older else n.source_ts + 0.001
        s = n._replace(value=value, source_ts=ts, gateway_ts=now)
        probe.take([s])
    else:
        s = n._replace(value=value, source_ts=now, gateway_ts=now)
        probe.take([s], n.gateway_ts - 0.1 if older else now, {path})
    return s


async def close_window(ctx: Context) -> None:
    """Let the machine tick on after what was fed (a step back shows between two real values), then close."""
    await asyncio.sleep(1.3)
    ctx.t1 = time.time()


async def test_a_wrap_is_only_a_wrap_near_the_top_and_near_zero():
    u32 = 0xFFFFFFFF
    assert advance(5, 4, u32) is None  # the heartbeat: [5, 4, 5, ...] is a step back, not +65535
    assert advance(65535, 3, u32) is None  # a 16-bit wrap is no wrap of a 32-bit counter
    assert advance(u32 - 1, 2, u32) == 4
    assert advance(u32, 0, u32) == 1
    assert advance(7, 7, u32) == 0 and advance(2, 9, u32) == 7
    assert advance(0xFFFF, 1, 0xFFFF) == 2 and advance(0x8000, 1, 0xFFFF) is None


async def test_events_count_once_and_keep_the_machine_order():
    a, b, c = ({"seq": n, "type": "StateChanged", "source_ts": 100.0 + n, "payload": {}} for n in (1, 2, 3))
    ordered, conflicts = in_seq_order([a, b, c, dict(b), a])
    assert ordered == [a, b, c] and conflicts == []
    ordered, conflicts = in_seq_order([a, c, {**b, "type": "UnitProcessed"}, b])
    assert [e["seq"] for e in ordered] == [1, 2, 3] and len(conflicts) == 1


@pytest.mark.parametrize("protocol", SUBJECTS)
async def test_an_answer_older_than_one_recorded_fails_no_order_check(lines, protocol):
    ctx = await observed(lines[protocol])
    try:
        hb, count = newest(ctx, HEARTBEAT), newest(ctx, COUNTER)
        # The two cases: a heartbeat read answered late ([5, 4, 5, ...]) and a counter ([2, 1]).
        late = [answer(ctx, HEARTBEAT, hb.value - 1, older=True), answer(ctx, COUNTER, count.value - 1, older=True)]
        for v in ("packml_state", "operation_mode"):
            n = newest(ctx, f"state.{v}")
            late.append(answer(ctx, f"state.{v}", 1 if n.value != 1 else 2, older=True))
        # An event read twice, the second time late, after newer ones.
        ctx.events = list(ctx.events) + [dict(ctx.events[0])]
        await close_window(ctx)
        outcomes = {fn.__name__: await fn(ctx) for fn in (heartbeat, counters, event_order, event_envelopes,
                                                           state_events, source_timestamps)}
    finally:
        await ctx.probe.close()
    for name, o in outcomes.items():
        assert o.status == "pass", f"{protocol} {name}: {o.status} {o.message}"
    for s in late:  # kept as evidence, never taken as the newer value
        assert s not in ctx.probe.history[s.path] and s in [x for x, _ in ctx.probe.order[s.path].late]
        assert ctx.probe.value(s.path) != s.value
    shown = [e for e in outcomes["heartbeat"].evidence if "older than a value already recorded" in e["target"]]
    assert shown and shown[0]["value"][0]["value"] == hb.value - 1, outcomes["heartbeat"].evidence
    assert outcomes["heartbeat"].message.startswith("advanced by ")


@pytest.mark.parametrize("protocol", SUBJECTS)
async def test_a_real_step_back_still_fails(lines, protocol):
    ctx = await observed(lines[protocol])
    try:
        hb, count = newest(ctx, HEARTBEAT), newest(ctx, COUNTER)
        answer(ctx, HEARTBEAT, hb.value - 1, older=False)
        answer(ctx, COUNTER, count.value - 1, older=False)
        seq = max(e["seq"] for e in ctx.events)
        before = next(e for e in ctx.events if e["seq"] == seq)
        # The next event stamped a second before the one it follows (within the clock tolerance).
        ctx.events = list(ctx.events) + [{**before, "seq": seq + 1, "source_ts": before["source_ts"] - 1.0}]
        await close_window(ctx)
        beat, count_o, env = await heartbeat(ctx), await counters(ctx), await event_envelopes(ctx)
        # Served out of seq order (not a late answer: every event once).
        served = list(ctx.events[:-1])
        served[-1], served[-2] = served[-2], served[-1]
        ctx.events = served
        order = await event_order(ctx)
    finally:
        await ctx.probe.close()
    assert beat.status == "fail" and f"status.heartbeat went back from {hb.value} to {hb.value - 1}" in beat.message
    assert count_o.status == "fail" and f"{COUNTER} went down from {count.value} to {count.value - 1}" in count_o.message
    assert env.status == "fail" and f"event {seq + 1}: source_ts goes back 1.000 s" in env.message
    assert order.status == "fail" and "events were served out of seq order" in order.message, order.message


async def test_a_step_back_as_the_machine_clock_goes_back_is_reported_as_the_clock(lines):
    ctx = await observed(lines["opcua"])
    try:
        hb = newest(ctx, HEARTBEAT)
        stepped = answer(ctx, HEARTBEAT, hb.value - 1, older=True, clock_back_s=60.0)
        n = newest(ctx, COUNTER)  # the same source time with another value: a tie, its order unknown
        ctx.probe.take([n._replace(value=n.value + 1000, gateway_ts=time.time())])
        await close_window(ctx)
        beat, stamps = await heartbeat(ctx), await source_timestamps(ctx)
    finally:
        await ctx.probe.close()
    assert stepped in ctx.probe.history[HEARTBEAT]  # taken: arrival order is all there is past a clock step
    assert beat.status == "warning" and "the machine's clock went back 60.0 s" in beat.message, beat.message
    # The timestamp check is the one that judges the clock; the same source time with two values is a tie.
    assert stamps.status == "fail" and "status.heartbeat: SourceTimestamp went back 60.000 s" in stamps.message
    assert [(s.value, x.value) for s, x in ctx.probe.order[COUNTER].ties] == [(n.value + 1000, n.value)]
    assert f"{COUNTER}: {n.value!r} and {n.value + 1000!r} both carry SourceTimestamp" in stamps.message
