"""GET /trace/{unit_id}: a unit's genealogy both ways, as JSON trees or one CSV table.

Each node is the UnitProcessed event that made the unit (result, measurements,
where and when). `/trace/{id}` follows `made_from` back to the inputs (a cell
to its jelly roll to its electrode rolls); `/trace/{id}/made_into` follows
the other way, to every unit made from it (an electrode roll to its jelly
rolls to their cells). The store indexes every ID an event mentions, so one
lookup per unit finds both the event that made it and those that used it.
`format=csv` (or `Accept: text/csv`) gives both directions as one table.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import StreamingResponse

from gateway.api.csvout import FORMAT_DOC, csv_response, wants_csv
from gateway.api.deps import SpecDep, Store, View
from gateway.api.models import TraceNode
from gateway.api.timeparams import iso
from gateway.store.base import Store as StoreProtocol
from interface_spec import Spec

router = APIRouter(tags=["traceability"])

MAX_DEPTH = 12  # cell <- jelly roll <- electrode roll <- foil/slurry, with room for rework loops
MAX_MADE_INTO = 5000  # units shown made from one unit (an electrode roll feeds hundreds of jelly rolls)
CSV_FIELDS = ["direction", "depth", "unit_id", "unit_type", "equipment", "source_time", "result", "reason", "job_id",
              "measurements", "measurement_units", "parent", "note", "source_ts"]


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


@router.get("/trace/{unit_id}", response_model=TraceNode, response_model_exclude_none=True,
            summary="Genealogy of a cell, jelly roll or electrode roll",
            responses={404: {"description": "no event mentions this ID"}})
async def get_trace(unit_id: Annotated[str, Path(description="cell, jelly roll or electrode roll ID")],
                    view: View, store: Store, spec: SpecDep, request: Request,
                    format: Annotated[str | None, Query(description=FORMAT_DOC + "; CSV holds both directions")] = None,
                    ) -> TraceNode | StreamingResponse:
    as_csv = wants_csv(request, format)
    tracer = Tracer(store, spec, {eq.id: eq.cls for eq in view.equipment()})
    node = await tracer.node(unit_id, ())
    if node is None:
        raise _unknown(unit_id)
    if as_csv:
        forward = await tracer.made_into(unit_id)
        return csv_response(f"trace-{unit_id}", CSV_FIELDS, _csv_rows(node, forward))
    return node


@router.get("/trace/{unit_id}/made_into", response_model=MadeIntoNode, response_model_exclude_none=True,
            summary="Every unit made from a unit: an electrode roll's jelly rolls and their cells",
            responses={404: {"description": "no event mentions this ID"}})
async def get_made_into(unit_id: Annotated[str, Path(description="electrode roll, jelly roll or cell ID")],
                        view: View, store: Store, spec: SpecDep) -> MadeIntoNode:
    rows = await store.events_referencing(unit_id)
    if not rows:
        raise _unknown(unit_id)
    return await Tracer(store, spec, {eq.id: eq.cls for eq in view.equipment()}).made_into(unit_id, rows)


def _unknown(unit_id: str) -> HTTPException:
    return HTTPException(404, f"no event mentions unit '{unit_id}'; IDs are as the machines report them "
                              "(see GET /api/v1/events?type=UnitProcessed)")


def _csv_row(direction: str, depth: int, node: TraceNode | MadeIntoNode, parent: str | None) -> list[Any]:
    d = node.model_dump()
    d.update(direction=direction, depth=depth, parent=parent)
    return [d.get(f) for f in CSV_FIELDS]


async def _csv_rows(back: TraceNode, forward: MadeIntoNode) -> AsyncIterator[list[Any]]:
    """The unit itself, then its inputs (depth 1, 2, ... upstream), then what was made from it (downstream)."""
    yield _csv_row("self", 0, back, None)
    stack: list[tuple[TraceNode, int, str]] = [(c, 1, back.unit_id) for c in reversed(back.made_from)]
    while stack:
        node, depth, parent = stack.pop()
        yield _csv_row("made_from", depth, node, parent)
        stack.extend((c, depth + 1, node.unit_id) for c in reversed(node.made_from))
    fstack: list[tuple[MadeIntoNode, int, str]] = [(c, 1, forward.unit_id) for c in reversed(forward.made_into)]
    while fstack:
        fnode, depth, parent = fstack.pop()
        yield _csv_row("made_into", depth, fnode, parent)
        fstack.extend((c, depth + 1, fnode.unit_id) for c in reversed(fnode.made_into))
