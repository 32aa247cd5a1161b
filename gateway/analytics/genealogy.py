"""A unit's genealogy both ways, from the events the store indexes by every ID they mention.

Each node is the UnitProcessed event that made the unit (result, measurements, where and when). `Tracer.node`
follows `made_from` back to the inputs (a cell to its jelly roll to its electrode rolls); `Tracer.made_into`
follows the other way, to every unit made from it. The API's /trace routes and each cell's record use it.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.api.models import TraceNode
from gateway.api.timeparams import iso
from gateway.store.base import Store as StoreProtocol
from interface_spec import Spec

MAX_DEPTH = 12  # cell <- jelly roll <- electrode roll <- foil/slurry, with room for rework loops
MAX_MADE_INTO = 5000  # units shown made from one unit (an electrode roll feeds hundreds of jelly rolls)


class MadeIntoNode(TraceNode):
    """A unit and, recursively, the units made from it (`made_from` stays empty: that is the other direction)."""

    made_into: list[MadeIntoNode] = []


def _get(row: Any, *names: str) -> Any:
    for n in names:
        if isinstance(row, dict):
            if n in row:
                return row[n]
        elif hasattr(row, n):
            return getattr(row, n)
        else:
            try:
                return row[n]
            except (KeyError, IndexError, TypeError):
                continue
    return None


def _payload(row: Any) -> dict[str, Any]:
    p = _get(row, "payload")
    if isinstance(p, str):
        p = json.loads(p or "{}")
    return p or {}


class Tracer:
    def __init__(self, store: StoreProtocol, spec: Spec, classes: dict[str, str]):
        self.store = store
        self.spec = spec
        self.classes = classes  # equipment id -> class, for the measurement units

    def _units(self, equipment: str | None, measurements: dict[str, Any]) -> dict[str, str]:
        cls = self.classes.get(equipment or "")
        table = self.spec.get_class(cls).unit_processed if cls in self.spec.classes else {}
        # Symbols, as /equipment and /history show units ("Ah", not the UCUM code "A.h").
        return {k: self._symbol(table[k]) for k in measurements if k in table}

    def _symbol(self, code: str) -> str:
        unit = self.spec.units.get(code)
        return unit.symbol if unit else code

    def _fields(self, row: Any) -> dict[str, Any]:
        """What a node shows of the UnitProcessed event that made its unit."""
        p = _payload(row)
        ts = _get(row, "source_ts", "ts")
        equipment = _get(row, "equipment")
        measurements = p.get("measurements") or {}
        return {"unit_type": p.get("unit_type"), "equipment": equipment, "result": p.get("result"),
                "reason": p.get("reason"), "job_id": p.get("job_id"), "measurements": measurements,
                "measurement_units": self._units(equipment, measurements), "source_ts": ts, "source_time": iso(ts)}

    async def made_into(self, unit_id: str, rows: list[Any] | None = None, lineage: tuple[str, ...] = (),
                        budget: list[int] | None = None) -> MadeIntoNode:
        """The unit and every unit made from it, depth first, at most MAX_MADE_INTO nodes in all."""
        budget = budget if budget is not None else [MAX_MADE_INTO]
        rows = rows if rows is not None else await self.store.events_referencing(unit_id)
        own = [r for r in rows if _get(r, "type", "event_type") == "UnitProcessed" and _payload(r).get("unit_id") == unit_id]
        node = MadeIntoNode(unit_id=unit_id, event_type="UnitProcessed" if own else None, **(self._fields(max(own, key=lambda r: _get(r, "source_ts", "ts") or 0))
                                                if own else {}))
        children: dict[str, Any] = {}
        for r in rows:
            p = _payload(r)
            child = str(p.get("unit_id") or "")
            if (_get(r, "type", "event_type") == "UnitProcessed" and child and child != unit_id
                    and unit_id in [str(x) for x in p.get("made_from") or []]):
                children[child] = r  # a child reworked twice appears once
        for child in sorted(children, key=lambda c: _get(children[c], "source_ts", "ts") or 0):
            if budget[0] <= 0:
                node.note = f"more than {MAX_MADE_INTO} units; trace a branch on its own"
                break
            budget[0] -= 1
            if child in lineage:
                node.made_into.append(MadeIntoNode(unit_id=child, note="cycle: this unit is already above in the tree"))
            elif len(lineage) >= MAX_DEPTH:
                node.made_into.append(MadeIntoNode(unit_id=child, note=f"deeper than {MAX_DEPTH} levels; trace it on its own"))
            else:
                node.made_into.append(await self.made_into(child, None, lineage + (unit_id,), budget))
        return node

    async def node(self, unit_id: str, lineage: tuple[str, ...]) -> TraceNode | None:
        rows = await self.store.events_referencing(unit_id)
        if not rows:
            return None
        made = [r for r in rows if _get(r, "type", "event_type") == "UnitProcessed" and _payload(r).get("unit_id") == unit_id]
        if not made:
            consumed = next((r for r in rows if _payload(r).get("material_id") == unit_id), None)
            p = _payload(consumed) if consumed is not None else {}
            where = f" (consumed on {_get(consumed, 'equipment')})" if consumed is not None else ""
            return TraceNode(unit_id=unit_id, unit_type=p.get("material_type"),
                             note=f"no UnitProcessed event for this ID: an input made outside the line{where}")
        # A unit processed twice (rework) is shown as its latest processing.
        row = max(made, key=lambda r: _get(r, "source_ts", "ts") or 0)
        p = _payload(row)
        node = TraceNode(unit_id=unit_id, event_type="UnitProcessed", **self._fields(row))
        for parent in p.get("made_from") or []:
            parent = str(parent)
            if parent in lineage or parent == unit_id:
                node.made_from.append(TraceNode(unit_id=parent, note="cycle: this unit is already above in the tree"))
            elif len(lineage) >= MAX_DEPTH:
                node.made_from.append(TraceNode(unit_id=parent, note=f"deeper than {MAX_DEPTH} levels; trace it on its own"))
            else:
                sub = await self.node(parent, lineage + (unit_id,))
                node.made_from.append(sub or TraceNode(unit_id=parent, note="no event mentions this ID"))
        return node
