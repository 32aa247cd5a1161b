"""Resilience layer: the gateway's own Device reaches the machine through a relay the kit cuts.

The kit runs the gateway's Device (gateway/runtime/device.py, as integration
mode does) against the machine through a loopback TCP relay it owns, and
pulls the cable: every connection through the relay is closed on both sides
and new ones are refused for the outage. The kit's own connection does not
go through the relay and stays up, so it sees what the machine does
meanwhile.

* CORE-LINK-001: the gateway marks the machine UNAVAILABLE within
  `heartbeat_timeout_s` of the cut and AVAILABLE again within
  `heartbeat_timeout_s` of the link coming back; the heartbeat counted on
  through the outage.
* CORE-LINK-002: the events the machine recorded while the link was down
  (and after) reach the gateway once it is back, in order, with no gap, as
  the machine serves them. At least one event must happen during the outage:
  a producing machine makes units; a stopped one is given an operation-mode
  change there and back (only with --allow-control). Without either the
  replay cannot be shown: a warning, saying so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from gateway.conformance.checks import ERROR, FAIL, PASS, WARNING, Outcome, check, ev, plural, verdict
from gateway.conformance.checks.control import send
from gateway.conformance.context import Context
from gateway.conformance.probe import ProbeError, advance
from gateway.conformance.relay import Relay, endpoint_host_port, through
from gateway.conformance.through_gateway import GatewayRuntime
from gateway.runtime.view import LiveMessage

CASES = ("CORE-LINK-001", "CORE-LINK-002")
BACKOFF_MAX_S = 1.0  # the kit's gateway tries to reconnect at least this often


class Watch:
    """What the gateway publishes: events (seq, type, payload) and link changes, in order."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.links: list[tuple[float, bool, str]] = []

    def __call__(self, msg: LiveMessage) -> None:
        if msg.kind == "event":
            self.events.append({"seq": msg.data["seq"], "type": msg.data["type"], "payload": msg.data["payload"]})
        elif msg.kind == "link":
            self.links.append((time.monotonic(), msg.data["available"], msg.data["reason"]))

    def newest(self, default: int) -> int:
        return max((e["seq"] for e in self.events), default=default)


async def until(pred: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until pred() held, or None when it did not within the timeout."""
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            return None
        await asyncio.sleep(0.02)
    return time.monotonic() - t0


@check(*CASES)
async def link_drop(ctx: Context) -> dict[str, Outcome]:
    probe: Any = ctx.probe
    first = await probe.last_seq()
    if first is None:
        return dict.fromkeys(CASES, Outcome(ERROR, "events.last_seq cannot be read: the replay has nowhere to start"))
    relay = Relay(*endpoint_host_port(probe.protocol, probe.endpoint))
    watch = Watch()
    await relay.start()
    try:
        gateway = GatewayRuntime(ctx.spec, ctx.cls, probe.protocol, through(probe.protocol, probe.endpoint, relay.port),
                                 watch, machine=probe.machine if probe.protocol == "opcua" else None,
                                 counts=probe.counts, timeout_s=ctx.options.connect_timeout_s,
                                 settings={**probe.settings, "backoff_max_s": BACKOFF_MAX_S})
        try:
            await gateway.start(events_from=first + 1)
        except ProbeError as exc:
            return dict.fromkeys(CASES, Outcome(FAIL, f"through the kit's relay: {exc}"))
        try:
            return await _outage(ctx, gateway, relay, watch, first)
        finally:
            await gateway.stop()
    finally:
        await relay.close()


async def _outage(ctx: Context, gateway: GatewayRuntime, relay: Relay, watch: Watch, first: int) -> dict[str, Outcome]:
    probe: Any = ctx.probe
    spec = ctx.spec
    limit, outage = spec.core.heartbeat_timeout_s, ctx.options.outage_s
    newest = await probe.last_seq() or first
    await until(lambda: watch.newest(first) >= newest, limit)  # the gateway has what there was before the cut
    before = watch.newest(first)
    mark = len(watch.events)
    state = await probe.state()
    hb0, t_hb0 = await probe.read_value("status.heartbeat"), time.monotonic()

    t_cut = time.monotonic()
    await relay.cut()
    went_down = await until(lambda: not gateway.available, limit)
    none = await _event_during_outage(ctx, before, state)
    if (left := outage - (time.monotonic() - t_cut)) > 0:
        await asyncio.sleep(left)
    during = (await probe.last_seq() or before) - before
    down_for = time.monotonic() - t_cut
    await relay.restore()
    came_back = await until(lambda: gateway.available, limit)
    hb1, t_hb1 = await probe.read_value("status.heartbeat"), time.monotonic()

    reason = next((why for _, up, why in watch.links if not up), "")
    evidence = [ev("observe", "link through the kit's relay", value=f"cut for {down_for:.1f} s",
                   note=f"{relay.accepted} connections relayed"),
                ev("observe", "status.availability (gateway)", value="UNAVAILABLE" if went_down is not None else
                   "AVAILABLE", expected=f"UNAVAILABLE within {limit:g} s",
                   note=f"after {went_down:.2f} s: {reason}" if went_down is not None else "never went down"),
                ev("observe", "status.availability after the link came back",
                   value="AVAILABLE" if came_back is not None else "UNAVAILABLE", expected=f"AVAILABLE within {limit:g} s",
                   note=f"after {came_back:.2f} s" if came_back is not None else gateway.device.view.link_reason
                   if gateway.device else ""),
                ev("read", "status.heartbeat (the kit's own connection)", value=[hb0, hb1],
                   note=f"{t_hb1 - t_hb0:.1f} s apart")]
    problems = []
    if went_down is None:
        problems.append(f"the gateway still shows the machine AVAILABLE {limit:g} s after the link was cut")
    if came_back is None:
        problems.append(f"the gateway does not show the machine AVAILABLE again within {limit:g} s after the link "
                        f"came back ({gateway.device.view.link_reason if gateway.device else 'no device'})")
    if not isinstance(hb0, int) or not isinstance(hb1, int):
        problems.append(f"status.heartbeat not readable around the outage ({hb0!r}, {hb1!r})")
    else:
        expected = (t_hb1 - t_hb0) / spec.core.heartbeat_period_s
        moved = advance(hb0, hb1, 0xFFFFFFFF)
        if moved is None:
            problems.append(f"status.heartbeat went back from {hb0} to {hb1} across the outage (two reads, one after "
                            f"the other; a wrap is near the top and near zero)")
        elif not 0.5 * expected - 1 <= moved <= 1.5 * expected + 1:
            problems.append(f"status.heartbeat moved {moved} over {t_hb1 - t_hb0:.1f} s across the outage, expected "
                            f"about {expected:.0f}")
    link = verdict(problems, evidence, f"UNAVAILABLE {went_down or 0:.2f} s after the cut, AVAILABLE again "
                                       f"{came_back or 0:.2f} s after the link came back; heartbeat counted through")
    if came_back is None:
        return {"CORE-LINK-001": link, "CORE-LINK-002": Outcome(FAIL, "the gateway did not reconnect: nothing was "
                                                                      "replayed", evidence[2:3])}
    return {"CORE-LINK-001": link, "CORE-LINK-002": await _replay(ctx, gateway, watch, mark, before, during, none)}


async def _event_during_outage(ctx: Context, before: int, state: str | None) -> tuple[str, str] | None:
    """Wait for (or, with --allow-control, cause) an event while the link is down: None, or (status, why none)."""
    probe: Any = ctx.probe

    async def recorded(timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while (await probe.last_seq() or before) <= before:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)
        return True

    if state == "Execute":
        if await recorded(ctx.options.unit_wait_s):
            return None
        # A producing machine must make units during the test (as TRACE-UNIT-001 says): not decided.
        return ERROR, f"the machine was in Execute but recorded no event within {ctx.options.unit_wait_s:g} s"
    if not ctx.options.allow_control:
        return WARNING, (f"the machine was in {state}, not producing, and without --allow-control the kit causes no "
                         f"event: the replay of events recorded during an outage is not shown")
    modes = ctx.spec.enum("operation_mode")
    mode = await probe.state("operation_mode")
    other = "Maintenance" if mode != "Maintenance" else "Processing"
    answers = [await send(ctx, "SetOperationMode", {"mode": modes[m]}) for m in (other, mode or "Processing")]
    if await recorded(ctx.options.command_timeout_s):
        return None
    names = {code: name for name, code in ctx.spec.result_codes.items()}
    return WARNING, (f"the machine was in {state}; SetOperationMode {other} and back answered "
                     f"{', '.join(names.get(a, str(a)) if a is not None else 'nothing' for a in answers)} and recorded no event")


async def _replay(ctx: Context, gateway: GatewayRuntime, watch: Watch, mark: int, before: int, during: int,
                  none: tuple[str, str] | None) -> Outcome:
    probe: Any = ctx.probe
    limit = ctx.spec.core.heartbeat_timeout_s
    newest = await probe.last_seq() or before
    await until(lambda: watch.newest(before) >= newest, limit)
    if probe.protocol == "modbus":
        # The kit reads the events it compares only once the gateway has stopped: the Modbus mailbox is one
        # window for every client, and the kit selecting an event there while the gateway reads the next one
        # would tear the gateway's read (a difference the machine did not cause: found by the kit stress).
        await gateway.stop()
    replayed = watch.events[mark:]
    seqs = [e["seq"] for e in replayed]
    served = {e.get("seq"): e for e in await probe.events_since(before + 1)}
    evidence = [ev("observe", "events the gateway received after the cut", value=seqs[:40],
                   expected=f"{before + 1}..{newest} in order",
                   note=f"{plural(during, 'event')} recorded while the link was down")]
    problems = []
    expected_first = before + 1
    if seqs and seqs[0] != expected_first:
        problems.append(f"the gateway's replay starts at seq {seqs[0]}, the first event after the cut is "
                        f"{expected_first}: {_missing(expected_first, seqs[0] - 1)} not replayed")
    for a, b in zip(seqs, seqs[1:]):
        if b > a + 1:
            problems.append(f"the gateway's replay jumps from seq {a} to {b}: {_missing(a + 1, b - 1)}, recorded while "
                            f"the link was down, not replayed")
        elif b <= a:
            problems.append(f"seq {b} replayed after seq {a} (out of order)")
    if newest > before and (not seqs or seqs[-1] < newest):
        problems.append(f"the replay ends at seq {seqs[-1] if seqs else before}; the machine's newest is {newest}")
    differ = [e["seq"] for e in replayed if e["seq"] in served and
              (served[e["seq"]].get("type"), served[e["seq"]].get("payload")) != (e["type"], e["payload"])]
    if differ:
        problems.append(f"events {differ[:5]} reached the gateway other than the machine serves them")
        evidence.append(ev("read", f"event {differ[0]}", value=served[differ[0]],
                           expected=next(e for e in replayed if e["seq"] == differ[0])))
    if problems:
        return verdict(problems, evidence, "")
    if none is not None:
        status, why = none
        evidence.append(ev("observe", "events during the outage", value=during, expected="at least one", note=why))
        return Outcome(status, f"{why}; {plural(len(seqs), 'event')} replayed in order", evidence)
    return Outcome(PASS, f"{plural(during, 'event')} recorded while the link was down; the gateway replayed seq "
                   f"{before + 1}..{newest} in order with no gap, as the machine serves them", evidence)


def _missing(a: int, b: int) -> str:
    return f"event {a}" if a == b else f"events {a}..{b}"
