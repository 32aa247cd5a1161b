"""GET /trace/{unit_id}: a unit's genealogy, from a cell back to its electrode rolls.

Each node is the UnitProcessed event that made the unit (result, measurements,
where and when); `made_from` recurses into the units it was made from. The
store indexes every ID an event mentions, so one lookup per unit finds it.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path

from gateway.api.deps import SpecDep, Store, View
from gateway.api.models import TraceNode
from gateway.api.timeparams import iso
from interface_spec import Spec

router = APIRouter(tags=["traceability"])

MAX_DEPTH = 12  # cell <- jelly roll <- electrode roll <- foil/slurry, with room for rework loops


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
    def __init__(self, store: Any, spec: Spec, classes: dict[str, str]):
        self.store = store
        self.spec = spec
        self.classes = classes  # equipment id -> class, for the measurement units

    def _units(self, equipment: str | None, measurements: dict[str, Any]) -> dict[str, str]:
        cls = self.classes.get(equipment or "")
        table = self.spec.get_class(cls).unit_processed if cls in self.spec.classes else {}
        return {k: table[k] for k in measurements if k in table}

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
        ts = _get(row, "source_ts", "ts")
        equipment = _get(row, "equipment")
        measurements = p.get("measurements") or {}
        node = TraceNode(unit_id=unit_id, unit_type=p.get("unit_type"), equipment=equipment, event_type="UnitProcessed",
                         result=p.get("result"), reason=p.get("reason"), job_id=p.get("job_id"),
                         measurements=measurements, measurement_units=self._units(equipment, measurements),
                         source_ts=ts, source_time=iso(ts))
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


@router.get("/trace/{unit_id}", response_model=TraceNode, response_model_exclude_none=True,
            summary="Genealogy of a cell, jelly roll or electrode roll",
            responses={404: {"description": "no event mentions this ID"}})
async def get_trace(unit_id: Annotated[str, Path(description="cell, jelly roll or electrode roll ID")],
                    view: View, store: Store, spec: SpecDep) -> TraceNode:
    tracer = Tracer(store, spec, {eq.id: eq.cls for eq in view.equipment()})
    node = await tracer.node(unit_id, ())
    if node is None:
        raise HTTPException(404, f"no event mentions unit '{unit_id}'; IDs are as the machines report them "
                                 "(see GET /api/v1/events?type=UnitProcessed)")
    return node
