"""A unit's manufacturing record, and the recall query from a lot or roll to every cell made from it.

The record of a cell (or a jelly roll, or an electrode roll) is its genealogy
(GET /trace's tree: formation <- jelly roll <- electrode rolls <- foil, slurry,
separator lots) with, for every stage a UnitProcessed event made, what the
machine did while it made that very unit:

* the production window (start, end] of the unit on that machine, by a stated rule:
  - machines that make one unit after the other (coater, winder): from the
    previous UnitProcessed or JobStarted of the same machine (the unit before
    it was finished, or the job began) to this unit's UnitProcessed;
  - the formation rack, which makes a tray of cells in parallel: from the
    MaterialConsumed of the unit's jelly roll on that rack (the tray was
    loaded) to the cell's UnitProcessed, on the channel whose
    `channel[n].cell_id` showed the cell;
  - no such start event: the hour before the unit's UnitProcessed, said so.
* the process values of the class in that window: every numeric, read-only
  sample variable of the class profile (tensions, edge deviations, line speed,
  areal weights, dryer temperatures, the channel's voltage, current, capacity
  and temperature), with n/mean/min/max/std (population) over GOOD samples and
  the raw points (downsampled to bucket averages above `max_points`);
* the alarm occurrences active at any time in the window, and the StateChanged
  events in it.

The recall query walks the other way (GET /trace/{id}/made_into's tree) and
lists the cells at its leaves, with the units still in process (not yet a
cell) apart.
"""

from __future__ import annotations

import math
import re
from typing import Any

from gateway.analytics import timeline as tl
from gateway.analytics.genealogy import MadeIntoNode, Tracer
from gateway.api.timeparams import iso
from gateway.store.base import Store
from interface_spec import Spec

SEQUENTIAL_START = ("UnitProcessed", "JobStarted")
FALLBACK_WINDOW_S = 3600.0
CHANNEL_SEARCH_ROWS = 400  # samples of one channel's cell_id read around the tray start
MAX_ALARMS = 10_000
MAX_STATE_EVENTS = 2000
CELL = "cell"


def process_variables(spec: Spec, cls: str) -> list[str]:
    """Path templates ("lane[].areal_weight") of the class's numeric, read-only sample variables."""
    out = []
    for d in spec.variables(cls):
        v = d.var
        if (d.owner == cls and v.type in ("float", "int", "uint") and v.category.value == "sample"
                and v.access == "r"):
            out.append(d.template)
    return out


def _template(path: str) -> str:
    return re.sub(r"\[\d+\]", "[]", path)


class RecordBuilder:
    """Builds records from a store; one instance per request, no state kept."""

    def __init__(self, store: Store, spec: Spec, machines: dict[str, str], max_points: int = 2000):
        self.store = store
        self.spec = spec
        self.machines = machines  # equipment id -> class
        self.max_points = max_points
        self.tracer = Tracer(store, spec, machines)

    async def record(self, unit_id: str) -> dict[str, Any] | None:
        tree = await self.tracer.node(unit_id, ())
        if tree is None:
            return None
        stages = []
        stack = [tree]
        while stack:
            node = stack.pop(0)  # breadth first: the unit itself, then its inputs, stage by stage upstream
            stack.extend(node.made_from)
            if node.equipment and node.source_ts is not None and node.event_type == "UnitProcessed":
                stages.append(await self.stage(node))
        return {"unit_id": unit_id, "genealogy": tree.model_dump(exclude_none=True), "stages": stages}

    async def stage(self, node: Any) -> dict[str, Any]:
        eq, end = node.equipment, float(node.source_ts)
        cls = self.machines.get(eq, "")
        start, rule, channel = await self.window(node, cls)
        paths = await self._paths(eq, cls, channel)
        values = {p: await self._values(eq, p, start, end) for p in paths}
        return {
            "unit_id": node.unit_id, "unit_type": node.unit_type, "equipment": eq, "class": cls,
            "result": node.result, "reason": node.reason, "measurements": node.measurements,
            "window": {"start": start, "end": end, "start_time": iso(start), "end_time": iso(end),
                       "seconds": round(end - start, 6), "rule": rule, **({"channel": channel} if channel else {})},
            "process_values": values,
            "alarms": await self._alarms(eq, start, end),
            "state_changes": await self._state_changes(eq, start, end),
        }

    async def window(self, node: Any, cls: str) -> tuple[float, str, int | None]:
        """(start, the rule that gave it, the formation channel or None) of the unit's production window."""
        eq, end = node.equipment, float(node.source_ts)
        if cls == "formation":
            loaded = None
            for source in [c.unit_id for c in node.made_from]:
                rows = await self.store.events_referencing(source)
                starts = [r["source_ts"] for r in rows if r["type"] == "MaterialConsumed" and r["equipment"] == eq
                          and (r.get("payload") or {}).get("material_id") == source and r["source_ts"] <= end]
                if starts:
                    loaded = max(starts + ([loaded] if loaded is not None else []))
            if loaded is not None:
                channel = await self._channel(eq, node.unit_id, loaded, end)
                return loaded, "from the MaterialConsumed of its jelly roll on this rack to its UnitProcessed", channel
        else:
            found = []
            for kind in SEQUENTIAL_START:
                rows = await self.store.events(equipment=eq, event_type=kind, end=end, limit=1)
                found += [r["source_ts"] for r in rows]
            if found:
                return max(found), "from the previous UnitProcessed or JobStarted of this machine to its UnitProcessed", None
        return end - FALLBACK_WINDOW_S, f"no start event found: the {FALLBACK_WINDOW_S:.0f} s before its UnitProcessed", None

    async def series(self, eq: str) -> list[tuple[str, str, str]]:
        """The machine's stored series (a subclass that builds many records keeps them)."""
        return await self.store.series(eq)

    async def _channel(self, eq: str, unit_id: str, start: float, end: float) -> int | None:
        """The channel whose cell_id showed the unit while the tray was in (None when no channel did)."""
        for _, path, _ in await self.series(eq):
            m = re.fullmatch(r"channel\[(\d+)\]\.cell_id", path)
            if not m:
                continue
            rows = await self.store.history(eq, path, start - 60.0, end + 1.0, limit=CHANNEL_SEARCH_ROWS)
            if any(r["value"] == unit_id for r in rows):
                return int(m.group(1))
        return None

    async def _paths(self, eq: str, cls: str, channel: int | None) -> list[str]:
        wanted = set(process_variables(self.spec, cls)) if cls in self.spec.classes else set()
        out = []
        for _, path, _ in await self.series(eq):
            if _template(path) not in wanted:
                continue
            if cls == "formation" and path.startswith("channel["):
                if channel is None or not path.startswith(f"channel[{channel}]."):
                    continue  # a cell's record holds its own channel, not the tray's other cells
            out.append(path)
        return sorted(out, key=_natural)

    async def _values(self, eq: str, path: str, start: float, end: float) -> dict[str, Any]:
        unit = self.spec.variable(self.machines[eq], path).var.unit
        # The window is (start, end]: the value shown as a unit was reported belongs to it, not to the next one.
        lo, hi = math.nextafter(start, math.inf), math.nextafter(end, math.inf)
        rows = [r async for r in tl.raw_rows(self.store, eq, path, lo, hi)]
        good = [float(r["value"]) for r in rows if r["quality"] == 0 and isinstance(r["value"], (int, float))]
        out: dict[str, Any] = {"unit": unit, **summary(good), "bad": sum(1 for r in rows if r["quality"] != 0)}
        if len(rows) <= self.max_points:
            out["points"] = [[r["ts"], r["value"]] for r in rows]
        else:
            bucket = (end - start) / self.max_points
            hist = await self.store.history(eq, path, lo, hi, bucket_s=bucket,
                                            agg=["avg"], limit=self.max_points + 2)
            out["points"] = [[r["ts"], r["avg"]] for r in hist]
            out["points_bucket_s"] = bucket  # points are bucket averages, the summary is over every sample
        return out

    async def _alarms(self, eq: str, start: float, end: float) -> list[dict[str, Any]]:
        rows = await self.store.alarms(equipment=eq, end=end, limit=MAX_ALARMS)
        hit = [a for a in rows if a["cleared_ts"] is None or a["cleared_ts"] >= start]
        return [{**a, "raised_time": iso(a["raised_ts"]), "cleared_time": iso(a["cleared_ts"])}
                for a in sorted(hit, key=lambda a: a["raised_ts"])]

    async def _state_changes(self, eq: str, start: float, end: float) -> list[dict[str, Any]]:
        rows = await self.store.events(equipment=eq, event_type="StateChanged", start=start,
                                       end=math.nextafter(end, math.inf), limit=MAX_STATE_EVENTS)
        return [{"source_ts": r["source_ts"], "source_time": iso(r["source_ts"]), **(r.get("payload") or {})}
                for r in reversed(rows)]

    async def recall(self, lot_id: str) -> dict[str, Any] | None:
        """Every cell made from a lot, roll or unit, and the units made from it that are not cells (yet)."""
        rows = await self.store.events_referencing(lot_id)
        if not rows:
            return None
        tree = await self.tracer.made_into(lot_id, rows)
        cells: list[dict[str, Any]] = []
        in_process: list[dict[str, Any]] = []
        notes: list[str] = []
        stack: list[tuple[MadeIntoNode, tuple[str, ...]]] = [(tree, ())]
        while stack:
            node, via = stack.pop()
            if node.note:
                notes.append(f"{node.unit_id}: {node.note}")
            if node is not tree and node.unit_type == CELL:
                cells.append(_unit(node, via))
                continue
            if node is not tree and not node.made_into:
                in_process.append(_unit(node, via))
            stack.extend((child, via + (node.unit_id,)) for child in reversed(node.made_into))
        results: dict[str, int] = {}
        for c in cells:
            results[c["result"] or "unknown"] = results.get(c["result"] or "unknown", 0) + 1
        return {"id": lot_id, "unit_type": tree.unit_type, "cells": cells, "cell_count": len(cells),
                "cells_by_result": results, "not_yet_cells": in_process, "notes": notes}


def _unit(node: MadeIntoNode, via: tuple[str, ...]) -> dict[str, Any]:
    return {"unit_id": node.unit_id, "unit_type": node.unit_type, "equipment": node.equipment,
            "result": node.result, "reason": node.reason, "source_time": node.source_time,
            "measurements": node.measurements, "via": list(via[1:])}


def summary(values: list[float]) -> dict[str, Any]:
    """n, mean, min, max and population standard deviation of the values (None without values)."""
    n = len(values)
    if not n:
        return {"n": 0, "mean": None, "min": None, "max": None, "std": None}
    mean = math.fsum(values) / n
    var = math.fsum((v - mean) ** 2 for v in values) / n
    return {"n": n, "mean": mean, "min": min(values), "max": max(values), "std": math.sqrt(var)}


def _natural(path: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path))
