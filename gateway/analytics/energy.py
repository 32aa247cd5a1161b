"""Energy and carbon per unit and per cell, from each machine's electricity meter (spec 1.1 `meter.*`).

Method, for a time range:

1. **Metered energy.** A machine drew what its `meter.active_energy` rose by: the sum of the increases between
   consecutive GOOD readings (a reading below the one before is a replaced meter, counted from its new value),
   linear between readings. The range's edges are interpolated between the readings around them (looked for up to
   a minute outside the range); where there is none, the nearest reading inside stands for the edge.
2. **Slices.** The range is cut at every start and end of the units' production windows on the machine (the
   windows of the cell's record, `record.py`: from the unit before, or the tray's loading, to the unit's
   UnitProcessed) and at every change of its E10 state. A slice in PRD goes to the units whose windows cover it,
   shared equally (the cells of a formation tray share their rack); a slice in PRD that no finished unit covers is
   *unfinished* work; any other slice is *idle*.
3. **Idle energy** is spread by the rule configured (`energy.idle` in the line file): `time` (default) over the
   units the machine finished in the range in proportion to their productive seconds, `count` equally over them,
   or `none`; without a unit in the range it stays unattributed.
4. **Carbon.** Each slice's kWh times the grid emission factor in force at its middle (kgCO2e/kWh; per local hour
   of day when `emission_factors_by_hour` is given).
5. **Down the genealogy.** A unit's energy passes to the units made from it, equally among them (an electrode
   roll's share goes to each jelly roll it went into, a jelly roll's to its cell). What reaches a cell is the
   cell's energy, by stage (the class of the machine that drew it); what reaches a unit not made into anything
   yet is *in process*.

It reconciles by construction, and `reconciliation` shows it: for every range the cells, the units in process and
the unattributed energy (unfinished work, idle energy not spread) add up to the meters' total.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from gateway.analytics import timeline as tl
from gateway.analytics.energy_settings import EnergySettings
from gateway.analytics.record import RecordBuilder
from gateway.api.timeparams import iso
from gateway.store.base import Store
from interface_spec import Spec

ENERGY = "meter.active_energy"
E10 = "state.e10_state"
CELL = "cell"
MAX_UNITS = 1_000_000
EDGE_S = 60.0  # how far beyond a range's edge a meter reading is looked for (meters are read about every second)


@dataclass
class Amount:
    kwh: float = 0.0
    kg: float = 0.0

    def add(self, other: Amount, share: float = 1.0) -> None:
        self.kwh += other.kwh * share
        self.kg += other.kg * share

    def out(self) -> dict[str, float]:
        return {"kwh": self.kwh, "kg_co2e": self.kg}


@dataclass
class Unit:
    unit_id: str
    unit_type: str
    equipment: str
    cls: str
    start: float
    end: float
    made_from: list[str]
    own: Amount = field(default_factory=Amount)
    productive_s: float = 0.0


class Meter:
    """A machine's metered energy as a cumulative series: cumulative kWh at reading times, interpolated."""

    def __init__(self, points: list[tuple[float, float]]):
        self.times = [t for t, _ in points]
        self.kwh = [c for _, c in points]

    @classmethod
    async def read(cls, store: Store, equipment: str, t0: float, t1: float) -> Meter | None:
        """The readings in [t0, t1) with the last before t0 and the first after t1 (within EDGE_S), so that the
        range's edges are interpolated; without one, the reading nearest inside the range stands for its edge."""
        def good(rows: list[dict[str, Any]]) -> list[tuple[float, float]]:
            return [(r["ts"], float(r["value"])) for r in rows if r["quality"] != tl.BAD
                    and isinstance(r["value"], (int, float)) and not isinstance(r["value"], bool)]

        before = good(await store.history(equipment, ENERGY, t0 - EDGE_S, t0, limit=1_000_000))[-1:]
        inside = good([r async for r in tl.raw_rows(store, equipment, ENERGY, t0, t1)])
        after = good(await store.history(equipment, ENERGY, t1, t1 + EDGE_S, limit=1))[:1]
        readings = before + inside + after
        if not readings:
            return None
        points, total = [(readings[0][0], 0.0)], 0.0
        for (_, a), (t, b) in zip(readings, readings[1:]):
            total += b - a if b >= a else b  # a lower reading: a new meter, counted from its value
            points.append((t, total))
        return cls(points)

    def at(self, t: float) -> float:
        i = bisect.bisect_right(self.times, t)
        if i == 0:
            return self.kwh[0]
        if i >= len(self.times):
            return self.kwh[-1]
        (ta, a), (tb, b) = (self.times[i - 1], self.kwh[i - 1]), (self.times[i], self.kwh[i])
        return a if tb == ta else a + (b - a) * (t - ta) / (tb - ta)

    def between(self, a: float, b: float) -> float:
        return self.at(b) - self.at(a)

    @property
    def total(self) -> float:
        return self.kwh[-1] - self.kwh[0]


class EnergyReport:
    """One report per request; nothing kept."""

    def __init__(self, store: Store, spec: Spec, machines: dict[str, str], settings: EnergySettings | None = None):
        self.store = store
        self.spec = spec
        self.machines = machines  # equipment id -> class
        self.settings = settings or EnergySettings()
        self.windows = RecordBuilder(store, spec, machines)
        self._children: dict[str, list[str]] = {}

    async def report(self, t0: float, t1: float, cell: str | None = None) -> dict[str, Any]:
        units: dict[str, Unit] = {}
        machines: dict[str, Any] = {}
        unattributed = Amount()
        meters_total = Amount()
        for eq, cls in self.machines.items():
            row, found, rest = await self._machine(eq, cls, t0, t1)
            machines[eq] = row
            units.update(found)
            unattributed.add(rest)
            meters_total.add(Amount(row["metered_kwh"], row["kg_co2e"]))
        cells, in_process = await self._down_the_genealogy(units)
        cells_total = _sum(a for bundle in cells.values() for a in bundle.values())
        process_total = _sum(in_process.values())
        out: dict[str, Any] = {
            "from": iso(t0), "to": iso(t1), "method": __doc__.split("Method, for a time range:")[1].strip()
            if __doc__ else "",
            "settings": self.settings.model_dump(),
            "machines": machines,
            "cells": {"count": len(cells), **cells_total.out(),
                      "per_cell": Amount(cells_total.kwh / len(cells), cells_total.kg / len(cells)).out() if cells
                      else None},
            "in_process": {"count": len(in_process), **process_total.out()},
            "unattributed": unattributed.out(),
            "reconciliation": {
                "meters_kwh": meters_total.kwh,
                "cells_kwh": cells_total.kwh, "in_process_kwh": process_total.kwh,
                "unattributed_kwh": unattributed.kwh,
                "difference_kwh": meters_total.kwh - cells_total.kwh - process_total.kwh - unattributed.kwh,
                "meters_kg_co2e": meters_total.kg,
                "difference_kg_co2e": meters_total.kg - cells_total.kg - process_total.kg - unattributed.kg,
            },
        }
        if cell is not None:
            reached = cells.get(cell)
            out["cell"] = None if reached is None else {
                "cell_id": cell, **_sum(reached.values()).out(),
                "by_stage": {stage: a.out() for stage, a in sorted(reached.items())}}
        return out

    async def _machine(self, eq: str, cls: str, t0: float, t1: float) -> tuple[dict[str, Any], dict[str, Unit], Amount]:
        """(the machine's row, the units it finished in the range with their own energy, what stays unattributed)."""
        meter = await Meter.read(self.store, eq, t0, t1)
        if meter is None:
            return {"class": cls, "metered": False, "metered_kwh": 0.0, "kg_co2e": 0.0, "units": 0}, {}, Amount()
        units = await self._units(eq, cls, t0, t1)
        prd = self.spec.enum("e10_state")["PRD"]
        states = await tl.state_line(self.store, eq, E10, t0, t1)
        cuts = {t0, t1} | {tl.seconds(s.start) for s in states}
        for u in units.values():
            cuts |= {min(max(u.start, t0), t1), min(max(u.end, t0), t1)}
        edges = sorted(cuts)
        starts = [tl.seconds(s.start) for s in states]
        metered, idle, unfinished = Amount(), Amount(), Amount()
        by_window = sorted(units.values(), key=lambda u: u.start)
        for a, b in zip(edges, edges[1:]):
            kwh = meter.between(a, b)
            slice_ = Amount(kwh, kwh * self.settings.factor((a + b) / 2))
            metered.add(slice_)
            i = bisect.bisect_right(starts, a) - 1
            producing = 0 <= i < len(states) and states[i].value == prd
            covering = [u for u in by_window if u.start <= a and b <= u.end] if producing else []
            if covering:
                for u in covering:
                    u.own.add(slice_, 1.0 / len(covering))
                    u.productive_s += (b - a) / len(covering)
            elif producing:
                unfinished.add(slice_)
            else:
                idle.add(slice_)
        spread = self._spread(idle, list(units.values()))
        row = {"class": cls, "metered": True, "metered_kwh": metered.kwh, "kg_co2e": metered.kg, "units": len(units),
               "attributed_kwh": math.fsum(u.own.kwh for u in units.values()) - spread.kwh,
               "idle_kwh": idle.kwh, "idle_spread_kwh": spread.kwh, "unfinished_kwh": unfinished.kwh}
        rest = Amount()
        rest.add(unfinished)
        rest.add(Amount(idle.kwh - spread.kwh, idle.kg - spread.kg))
        return row, units, rest

    def _spread(self, idle: Amount, units: list[Unit]) -> Amount:
        """Idle energy onto the units by the configured rule; what was spread."""
        rule = self.settings.idle
        weights = [u.productive_s for u in units] if rule == "time" else [1.0] * len(units) if rule == "count" else []
        total = math.fsum(weights)
        if not units or total <= 0:
            return Amount()
        for u, w in zip(units, weights):
            u.own.add(idle, w / total)
        return Amount(idle.kwh, idle.kg)

    async def _units(self, eq: str, cls: str, t0: float, t1: float) -> dict[str, Unit]:
        rows = await self.store.events(equipment=eq, event_type="UnitProcessed", start=t0, end=t1, limit=MAX_UNITS)
        out = {}
        for r in rows:
            p = r.get("payload") or {}
            uid = p.get("unit_id")
            if not isinstance(uid, str) or not uid:
                continue
            made_from = [x for x in p.get("made_from") or [] if isinstance(x, str)]
            node = SimpleNamespace(equipment=eq, source_ts=r["source_ts"], unit_id=uid,
                                   made_from=[SimpleNamespace(unit_id=x) for x in made_from])
            start, _, _ = await self.windows.window(node, cls)
            out[uid] = Unit(uid, str(p.get("unit_type") or ""), eq, cls, start, float(r["source_ts"]), made_from)
        return out

    async def _made_into(self, unit_id: str) -> list[str]:
        if unit_id not in self._children:
            rows = await self.store.events_referencing(unit_id)
            kids = {(r.get("payload") or {}).get("unit_id") for r in rows if r["type"] == "UnitProcessed"
                    and unit_id in ((r.get("payload") or {}).get("made_from") or [])}
            self._children[unit_id] = sorted(k for k in kids if isinstance(k, str) and k and k != unit_id)
        return self._children[unit_id]

    async def _down_the_genealogy(self, units: dict[str, Unit]) -> tuple[dict[str, dict[str, Amount]],
                                                                           dict[str, Amount]]:
        """Each unit's energy passed down to what was made from it: (cell -> stage -> amount, unit -> amount)."""
        cells: dict[str, dict[str, Amount]] = {}
        in_process: dict[str, Amount] = {}
        types = {u.unit_id: u.unit_type for u in units.values()}
        stack: list[tuple[str, str, Amount]] = [(u.unit_id, u.cls, u.own) for u in units.values()]
        while stack:
            uid, stage, amount = stack.pop()
            kids = await self._made_into(uid)
            if kids:
                share = 1.0 / len(kids)
                stack += [(k, stage, Amount(amount.kwh * share, amount.kg * share)) for k in kids]
                continue
            kind = types.get(uid) or await self._unit_type(uid)
            if kind == CELL:
                cells.setdefault(uid, {}).setdefault(stage, Amount()).add(amount)
            else:
                in_process.setdefault(uid, Amount()).add(amount)
        return cells, in_process

    async def _unit_type(self, unit_id: str) -> str:
        for r in await self.store.events_referencing(unit_id):
            p = r.get("payload") or {}
            if r["type"] == "UnitProcessed" and p.get("unit_id") == unit_id:
                return str(p.get("unit_type") or "")
        return ""


def _sum(amounts: Any) -> Amount:
    out = Amount()
    for a in amounts:
        out.add(a)
    return out


__all__ = ["EnergyReport", "EnergySettings", "Meter"]
