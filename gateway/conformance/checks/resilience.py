"""Resilience layer: the kit drops its own link and checks what a gateway relies on when it comes back.

A machine cannot be told to lose its network; what the binding makes
observable is how it serves a client that went away: it answers again at
once, its heartbeat kept counting (so a gateway's availability is right
again as soon as it reconnects), and its events can be fetched from where
the client stopped, in order (so nothing recorded during the outage is lost).
"""

from __future__ import annotations

import time
from typing import Any

from gateway.conformance.checks import ERROR, FAIL, Outcome, check, ev, verdict
from gateway.conformance.checks.quality import step
from gateway.conformance.runner import Context

REPLAY_CHECKED = 20  # envelopes seen before the drop that must come back unchanged


@check("CORE-LINK-001", "CORE-LINK-002")
async def link_drop(ctx: Context) -> dict[str, Outcome]:
    probe: Any = ctx.probe
    spec, outage = ctx.spec, ctx.options.outage_s
    hb0, t0 = await probe.read_value("status.heartbeat"), time.monotonic()
    last0 = await probe.last_seq()
    before = {e["seq"]: e for e in ctx.events[-REPLAY_CHECKED:] if isinstance(e.get("seq"), int)}
    try:
        took = await probe.reconnect(outage)
    except Exception as exc:
        failed = Outcome(FAIL, f"no connection after the link drop: {exc}")
        return {"CORE-LINK-001": failed, "CORE-LINK-002": failed}
    hb1, t1 = await probe.read_value("status.heartbeat"), time.monotonic()
    limit = spec.core.heartbeat_timeout_s
    evidence = [ev("observe", "link", value=f"closed for {outage:g} s, answered {took:.2f} s after reconnecting"),
                ev("read", "status.heartbeat", value=[hb0, hb1], note=f"{t1 - t0:.1f} s apart")]
    problems = []
    if took > limit:
        problems.append(f"the machine answered {took:.1f} s after the kit reconnected (more than {limit:g} s)")
    if not isinstance(hb0, int) or not isinstance(hb1, int):
        problems.append(f"status.heartbeat not readable around the drop ({hb0!r}, {hb1!r})")
    else:
        expected = (t1 - t0) / spec.core.heartbeat_period_s
        moved = step(hb0, hb1)
        if not 0.5 * expected - 1 <= moved <= 1.5 * expected + 1:
            problems.append(f"status.heartbeat moved {moved} over {t1 - t0:.1f} s with the link down, expected about "
                            f"{expected:.0f}")
    first = verdict(problems, evidence, f"answered {took:.2f} s after reconnecting; heartbeat counted through the outage")
    if last0 is None:
        return {"CORE-LINK-001": first, "CORE-LINK-002": Outcome(ERROR, "events.last_seq not readable before the drop")}
    start = min(before) if before else last0
    newest = await probe.last_seq()
    replay = await probe.events_since(start)
    seqs = [e.get("seq") for e in replay]
    problems = []
    if seqs[:1] != [start]:
        problems.append(f"reading from seq {start} after the drop starts at {seqs[:1]}")
    problems += [f"seq {b} follows {a}" for a, b in zip(seqs, seqs[1:]) if b != a + 1]
    if isinstance(newest, int) and seqs and seqs[-1] < newest:
        problems.append(f"the replay ends at {seqs[-1]}, the newest is {newest}")
    changed = [s for s, e in before.items() if next((r for r in replay if r.get("seq") == s), None) != e]
    if changed:
        problems.append(f"events {changed[:5]} read after the drop differ from before it")
    second = verdict(problems, [ev("read", f"events from {start}", value=f"{len(replay)} events, seq "
                                                                           f"{seqs[:1]}..{seqs[-1:]}",
                                   note=f"{len(before)} compared with what was read before the drop; newest before "
                                        f"{last0}, after {newest}")],
                     f"{len(replay)} events replayed in order from seq {start}; {len(before)} unchanged")
    return {"CORE-LINK-001": first, "CORE-LINK-002": second}
