"""Equipment time and OEE of a machine, a stage and the line over any stored range.

Time states (SEMI E10). Each machine's range is split into PRD productive,
SBY standby, ENG engineering, SDT scheduled down, UDT unscheduled down, NST
non-scheduled, and `unobserved`; the seven add up to the range to the
microsecond. The E10 state is the machine's own `state.e10_state` where it is
stored. A machine that serves none (a vendor mapping of PackML only) gets it
derived by the spec's rule from `state.packml_state` and
`state.operation_mode`: Starting/Execute/Unholding/Unsuspending/Completing are
PRD; Idle, Stopped, Stopping, Resetting, Complete, Suspending, Suspended are
SBY; Holding, Held, Aborting, Aborted, Clearing are down, UDT while a
stop-reason alarm is active and SDT otherwise; Undefined is NST (a code
outside the spec's PackML states is unobserved); operation mode Maintenance
makes SDT and Setup ENG.

`unobserved` is its own bucket, not UDT: while the link is down (or the
heartbeat stopped) the gateway does not know what the machine did, and a
network fault blamed on the machine would falsify its availability, MTBF and
MTTR. Unobserved time is left out of every KPI and reported, so a reader sees
how much of the range the figures cover.

KPIs (ISO 22400-2). Planned busy time PBT = PRD + SBY + UDT (NST is not
planned; SDT and ENG are planned non-production). Actual production time
APT = PRD. Availability = APT / PBT. Effectiveness (performance) =
sum over produced units of the ideal cycle time / APT, the ideal cycle time
being 60 / `counters.design_speed` (units per minute) in force when the unit
was counted, so a recipe change of the design speed is honoured. Quality ratio
= good quantity / produced quantity, from the increments of
`counters.good_count` and `counters.processed_count` (a counter that falls was
reset and counts on from 0). OEE = availability × effectiveness × quality
ratio. Units the counters show after an unobserved stretch are counted (the
counters are cumulative), so output made while unobserved raises effectiveness;
`unobserved_s` says when that can be the case.

Reliability (SEMI E10). A failure is an entry into UDT from an observed
non-UDT state within the range. MTBF(p) = productive time / failures; MTTR =
UDT time / UDT episodes (a range starting in UDT counts that episode).

Stop reasons. Alarm occurrences the spec flags `stop_reason`, active in the
range, per alarm code: occurrences, time active and the UDT time during which
they were active; sorted by that downtime (a Pareto), with the cumulative
share.

Stages and line. A stage is the machines of one class (same unit type), its
figures from the summed times and counts. The bottleneck is found by the
utilization (active period) method: the stage whose machines spent the largest
share of their observed, scheduled time working or being repaired
((PRD + UDT) / (PRD + UDT + SBY)), i.e. the least time waiting in SBY, starved
of input or blocked by the next stage. The line's OEE is the bottleneck
stage's OEE, since that stage sets the line's output.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.analytics import timeline as tl
from gateway.analytics.shifts import Shifts, occurrences
from gateway.store.base import Store
from interface_spec import Spec

E10_STATES = ("PRD", "SBY", "ENG", "SDT", "UDT", "NST")
UNOBSERVED = "unobserved"
BUCKETS = (*E10_STATES, UNOBSERVED)
STAGE_ORDER = ("coater", "winder", "formation")  # material flow through a cell line

PRD_STATES = {"Starting", "Execute", "Unholding", "Unsuspending", "Completing"}
SBY_STATES = {"Idle", "Stopped", "Stopping", "Resetting", "Complete", "Suspending", "Suspended"}
DOWN_STATES = {"Holding", "Held", "Aborting", "Aborted", "Clearing"}
MODE_E10 = {"Maintenance": "SDT", "Setup": "ENG"}
MAX_ALARMS = 100_000


def derive_e10(packml: str | None, mode: str | None, stop_alarm: bool) -> str | None:
    """The spec's rule: the E10 state that follows from a PackML state, the operation mode and the alarms."""
    if packml is None:
        return None
    if mode in MODE_E10:
        return MODE_E10[mode]
    if packml in PRD_STATES:
        return "PRD"
    if packml in SBY_STATES:
        return "SBY"
    if packml in DOWN_STATES:
        return "UDT" if stop_alarm else "SDT"
    return "NST" if packml == "Undefined" else None  # a code the spec does not know: not a state we can place


@dataclass
class Tally:
    """What adds up over machines and shifts; every ratio is derived from it."""

    time_us: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))
    processed: int = 0
    good: int = 0
    defective: int = 0
    ideal_s: float = 0.0  # sum over produced units of their ideal cycle time
    units_without_ideal: int = 0  # produced while no design speed was known
    failures: int = 0
    udt_episodes: int = 0

    def __iadd__(self, other: Tally) -> Tally:
        for k, v in other.time_us.items():
            self.time_us[k] += v
        for name in ("processed", "good", "defective", "ideal_s", "units_without_ideal", "failures", "udt_episodes"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    def s(self, *states: str) -> float:
        return sum(self.time_us[x] for x in states) / tl.US

    def kpis(self) -> dict[str, Any]:
        apt, pbt = self.s("PRD"), self.s("PRD", "SBY", "UDT")
        availability = apt / pbt if pbt > 0 else None
        effectiveness = (self.ideal_s / apt if apt > 0 and self.units_without_ideal == 0 and self.processed > 0
                         else None)
        quality = self.good / self.processed if self.processed > 0 else None
        oee = (availability * effectiveness * quality
               if availability is not None and effectiveness is not None and quality is not None else None)
        return {
            "planned_busy_time_s": round(pbt, 6),
            "actual_production_time_s": round(apt, 6),
            "availability": _r(availability),
            "effectiveness": _r(effectiveness),
            "quality_ratio": _r(quality),
            "oee": _r(oee),
            "failures": self.failures,
            "mtbf_s": round(apt / self.failures, 3) if self.failures else None,
            "mttr_s": round(self.s("UDT") / self.udt_episodes, 3) if self.udt_episodes else None,
        }

    def active_share(self) -> float | None:
        """(PRD + UDT) / (PRD + UDT + SBY): the share of scheduled, observed time not spent waiting."""
        busy, total = self.s("PRD", "UDT"), self.s("PRD", "UDT", "SBY")
        return busy / total if total > 0 else None

    def as_dict(self) -> dict[str, Any]:
        notes = []
        if self.units_without_ideal:
            notes.append(f"{self.units_without_ideal} units were counted while no counters.design_speed was known: "
                         "effectiveness and OEE are left out")
        if self.time_us[UNOBSERVED]:
            notes.append(f"{self.s(UNOBSERVED):.1f} s unobserved (link down or no state recorded) are left out of "
                         "the KPIs; units made then are in the counts")
        return {
            "time_s": {k: round(v / tl.US, 6) for k, v in self.time_us.items()},
            "time_us": dict(self.time_us),
            "unobserved_s": round(self.s(UNOBSERVED), 6),
            "counts": {"processed": self.processed, "good": self.good, "defective": self.defective},
            "ideal_time_s": round(self.ideal_s, 6),
            **self.kpis(),
            "active_share": _r(self.active_share()),
            "notes": notes,
        }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


@dataclass
class MachineResult:
    equipment: str
    cls: str
    e10_source: str
    tally: Tally
    stop_reasons: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"equipment": self.equipment, "class": self.cls, "e10_source": self.e10_source,
                **self.tally.as_dict(), "stop_reasons": self.stop_reasons}


class OeeCalculator:
    """Computes the figures of a line's machines from a store; one instance per request, no state kept."""

    def __init__(self, store: Store, spec: Spec, machines: Mapping[str, str]):
        self.store = store
        self.spec = spec
        self.machines = machines  # equipment id -> class, in line order

    def _name(self, enum: str, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):
            return value
        return self.spec.enum_name(enum, int(value)) or f"code {value}"

    async def _alarms(self, equipment: str, t0: float, t1: float) -> list[dict[str, Any]]:
        rows = await self.store.alarms(equipment=equipment, end=t1, limit=MAX_ALARMS)
        return [a for a in rows if a["cleared_ts"] is None or a["cleared_ts"] > t0]

    async def e10_line(self, equipment: str, t0: float, t1: float,
                       stop_alarms: list[dict[str, Any]]) -> tuple[tl.Timeline, str]:
        paths = {p for _, p, _ in await self.store.series(equipment)}
        a, b = tl.us(t0), tl.us(t1)
        if "state.e10_state" in paths:
            raw = await tl.state_line(self.store, equipment, "state.e10_state", t0, t1)
            line = [tl.Segment(s.start, s.end, self._name("e10_state", s.value)) for s in raw]
            source = "state.e10_state"
        elif "state.packml_state" in paths:
            packml = await tl.state_line(self.store, equipment, "state.packml_state", t0, t1)
            if "state.operation_mode" in paths:
                mode = await tl.state_line(self.store, equipment, "state.operation_mode", t0, t1)
            else:
                mode = [tl.Segment(a, b, None)]
            alarm_on = tl.intervals_line(a, b, [(tl.us(x["raised_ts"]), tl.us(x["cleared_ts"] or t1))
                                                for x in stop_alarms])
            line = tl.combine([packml, mode, alarm_on], lambda p, m, al: derive_e10(
                self._name("packml_state", p), self._name("operation_mode", m), bool(al)))
            source = "derived from state.packml_state and state.operation_mode (spec rule)"
        else:
            return [tl.Segment(a, b, None)], "none: no state series stored"
        return tl.unobserve(line, await tl.link_gaps(self.store, equipment, t0, t1)), source

    async def machine(self, equipment: str, t0: float, t1: float) -> MachineResult:
        alarms = await self._alarms(equipment, t0, t1)
        stops = [x for x in alarms if x["stop_reason"]]
        line, source = await self.e10_line(equipment, t0, t1, stops)
        tally = Tally()
        for seg in line:
            key = seg.value if seg.value in E10_STATES else UNOBSERVED
            tally.time_us[key] += seg.length
        _reliability(tally, line)
        await self._counts(tally, equipment, t0, t1)
        return MachineResult(equipment, self.machines.get(equipment, ""), source, tally,
                             _pareto(stops, line, t0, t1))

    async def _counts(self, tally: Tally, equipment: str, t0: float, t1: float) -> None:
        processed, good, defective = await tl.bounded([
            tl.increments(self.store, equipment, f"counters.{c}", t0, t1)
            for c in ("processed_count", "good_count", "defective_count")])
        tally.good = sum(d for _, d in good)
        tally.defective = sum(d for _, d in defective)
        tally.processed = sum(d for _, d in processed)
        if not processed:
            return
        design = await tl.state_line(self.store, equipment, "counters.design_speed", t0, t1)
        for ts, n in processed:
            rate = tl.at(design, tl.us(min(max(ts, t0), t1)))  # units per minute
            if isinstance(rate, (int, float)) and rate > 0:
                tally.ideal_s += n * 60.0 / rate
            else:
                tally.units_without_ideal += n

    async def report(self, t0: float, t1: float, equipment: Iterable[str] | None = None) -> dict[str, Any]:
        """Per machine, per stage and for the line over [t0, t1), with the bottleneck."""
        ids = list(equipment) if equipment is not None else list(self.machines)
        results = await tl.bounded([self.machine(e, t0, t1) for e in ids])
        return summarize(results, t0, t1)

    async def shift_report(self, shifts: Shifts, t0: float, t1: float,
                           equipment: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """One report per shift occurrence in [t0, t1), then one per shift name summing its occurrences."""
        ids = list(equipment) if equipment is not None else list(self.machines)
        out: list[dict[str, Any]] = []
        by_name: dict[str, list[MachineResult]] = {}
        for occ in occurrences(shifts, t0, t1):
            results = await tl.bounded([self.machine(e, occ.start, occ.end) for e in ids])
            out.append({"shift": occ.name, "day": occ.day.isoformat(), **summarize(results, occ.start, occ.end)})
            by_name.setdefault(occ.name, []).extend(results)
        for name, results in by_name.items():
            merged: dict[str, MachineResult] = {}
            for r in results:
                m = merged.setdefault(r.equipment, MachineResult(r.equipment, r.cls, r.e10_source, Tally(), []))
                m.tally += r.tally
                m.stop_reasons = _merge_pareto(m.stop_reasons + r.stop_reasons)
            total = sum(o["range"]["seconds"] for o in out if o["shift"] == name)
            summary = summarize(list(merged.values()), t0, t1)
            summary["range"]["seconds"] = round(total, 6)  # the shift's own hours, not the asked range
            out.append({"shift": name, "day": None, **summary})
        return out


def _reliability(tally: Tally, line: tl.Timeline) -> None:
    prev: Any = "start"
    for seg in line:
        if seg.value == "UDT":
            if prev == "start":
                tally.udt_episodes += 1
            elif prev not in ("UDT", None):
                tally.failures += 1
                tally.udt_episodes += 1
        prev = seg.value


def _pareto(stops: list[dict[str, Any]], line: tl.Timeline, t0: float, t1: float) -> list[dict[str, Any]]:
    udt = [(s.start, s.end) for s in line if s.value == "UDT"]
    rows: dict[int, dict[str, Any]] = {}
    for x in stops:
        a, b = tl.us(max(x["raised_ts"], t0)), tl.us(min(x["cleared_ts"] or t1, t1))
        if b <= a:
            continue
        row = rows.setdefault(x["code"], {"code": x["code"], "text": x["text"], "occurrences": 0,
                                          "active_s": 0.0, "downtime_s": 0.0})
        row["occurrences"] += 1
        row["active_s"] += (b - a) / tl.US
        row["downtime_s"] += sum(max(0, min(b, e) - max(a, s)) for s, e in udt) / tl.US
    return _merge_pareto(list(rows.values()))


def _merge_pareto(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: dict[int, dict[str, Any]] = {}
    for r in rows:
        m = merged.setdefault(r["code"], {**r, "occurrences": 0, "active_s": 0.0, "downtime_s": 0.0})
        for k in ("occurrences", "active_s", "downtime_s"):
            m[k] += r[k]
    out = sorted(merged.values(), key=lambda r: (-r["downtime_s"], -r["occurrences"], r["code"]))
    total = sum(r["downtime_s"] for r in out)
    running = 0.0
    for r in out:
        running += r["downtime_s"]
        r["active_s"], r["downtime_s"] = round(r["active_s"], 6), round(r["downtime_s"], 6)
        r["cumulative_share"] = round(running / total, 6) if total > 0 else None
    return out


def summarize(results: list[MachineResult], t0: float, t1: float) -> dict[str, Any]:
    stages: dict[str, Tally] = {}
    members: dict[str, list[str]] = {}
    for r in results:
        stages.setdefault(r.cls, Tally())
        stages[r.cls] += r.tally
        members.setdefault(r.cls, []).append(r.equipment)
    order = sorted(stages, key=lambda c: (STAGE_ORDER.index(c) if c in STAGE_ORDER else len(STAGE_ORDER), c))
    stage_rows = [{"stage": c, "equipment": members[c], **stages[c].as_dict()} for c in order]
    line = Tally()
    for t in stages.values():
        line += t
    neck = bottleneck(results, stages)
    neck_oee = stages[neck["stage"]].kpis()["oee"] if neck else None
    return {
        "range": {"start": t0, "end": t1, "seconds": round(t1 - t0, 6)},
        "machines": [r.as_dict() for r in results],
        "stages": stage_rows,
        "line": {"time_s": {k: round(v / tl.US, 6) for k, v in line.time_us.items()},
                 "availability": line.kpis()["availability"],
                 "oee": neck_oee,
                 "oee_basis": f"bottleneck stage {neck['stage']}" if neck else "no bottleneck: nothing observed"},
        "bottleneck": neck,
    }


def bottleneck(results: list[MachineResult], stages: dict[str, Tally]) -> dict[str, Any] | None:
    """The stage (and its busiest machine) with the largest active share, with the evidence for every stage."""
    evidence: list[dict[str, Any]] = []
    for cls, t in stages.items():
        share = t.active_share()
        if share is None:
            continue
        machines = sorted(((r.tally.active_share() or 0.0, r.equipment) for r in results if r.cls == cls), reverse=True)
        prd_h = t.s("PRD") / 3600.0
        evidence.append({
            "stage": cls, "active_share": round(share, 6), "waiting_s": round(t.s("SBY"), 6),
            "productive_s": round(t.s("PRD"), 6), "down_s": round(t.s("UDT"), 6),
            "units_per_productive_hour": round(t.processed / prd_h, 3) if prd_h > 0 else None,
            "busiest_machine": machines[0][1] if machines else None,
        })
    if not evidence:
        return None
    evidence.sort(key=lambda e: -e["active_share"])
    top = evidence[0]
    others = ", ".join(f"{e['stage']} {100 * e['active_share']:.1f} %" for e in evidence[1:]) or "no other stage"
    return {
        "stage": top["stage"], "equipment": top["busiest_machine"], "method": "utilization (active period)",
        "why": (f"{top['stage']} was working or under repair {100 * top['active_share']:.1f} % of its observed "
                f"scheduled time and waited {top['waiting_s']:.0f} s; {others}"),
        "evidence": evidence,
    }
