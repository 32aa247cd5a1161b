"""GET /events: the line's events (state changes, jobs, units made, alarms) from the store, as JSON or CSV."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from gateway.api.csvout import FORMAT_DOC, csv_response, each, wants_csv
from gateway.api.deps import PresenterDep, SpecDep, Store, View, equipment_filter
from gateway.api.models import EventRecord
from gateway.api.timeparams import optional_range

router = APIRouter(tags=["events"])

CSV_FIELDS = ["id", "equipment", "type", "source_time", "seq", "payload", "source_ts"]


@router.get("/events", response_model=list[EventRecord], summary="Stored events, newest first")
async def get_events(
    view: View, store: Store, spec: SpecDep, presenter: PresenterDep, request: Request,
    equipment: Annotated[str | None, Query(description="one machine's id")] = None,
    type: Annotated[str | None, Query(description="event type: UnitProcessed, StateChanged, JobStarted, ...")] = None,
    start: Annotated[str | None, Query(description="ISO 8601, epoch seconds or relative (-1h)")] = None,
    end: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    format: Annotated[str | None, Query(description=FORMAT_DOC + "; the payload is one JSON column")] = None,
) -> list[dict[str, Any]] | StreamingResponse:
    as_csv = wants_csv(request, format)
    equipment_filter(view, equipment)
    if type is not None and type not in spec.events:
        raise HTTPException(422, f"type='{type}' is not an event type; the spec has {', '.join(spec.events)}")
    t0, t1 = optional_range(start, end, time.time())
    rows = await store.events(equipment=equipment, event_type=type, start=t0, end=t1, limit=limit)
    out = [presenter.row(r) for r in rows]
    if as_csv:
        return csv_response("events", CSV_FIELDS, each([e.get(f) for f in CSV_FIELDS] for e in out))
    return out
