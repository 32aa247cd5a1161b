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

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import StreamingResponse

from gateway.analytics.genealogy import MadeIntoNode, Tracer
from gateway.api.csvout import FORMAT_DOC, csv_response, wants_csv
from gateway.api.deps import SpecDep, Store, View
from gateway.api.models import TraceNode

router = APIRouter(tags=["traceability"])

CSV_FIELDS = ["direction", "depth", "unit_id", "unit_type", "equipment", "source_time", "result", "reason", "job_id",
              "measurements", "measurement_units", "parent", "note", "source_ts"]


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
