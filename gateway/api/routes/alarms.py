"""GET /alarms (active now, or the stored history), GET /alarms/pareto, and POST .../alarms/{code}/ack.

An alarm that cleared before anyone acknowledged it still wants acknowledging
(an operator confirms having seen it): the runtime no longer holds it, so the
acknowledgement is recorded on the stored occurrence and audited here.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from gateway.api.auth import Principal
from gateway.api.csvout import FORMAT_DOC, csv_response, each, wants_csv
from gateway.api.deps import Commander, Machine, PresenterDep, SpecDep, Store, View, equipment_filter
from gateway.api.models import AlarmRecord, CommandOut
from gateway.api.present import Presenter
from gateway.api.routes.commands import RESPONSES, run_command
from gateway.api.timeparams import iso, optional_range, time_range
from gateway.runtime.view import EquipmentView, LineView
from gateway.store.base import Store as StoreProtocol
from interface_spec import Spec

router = APIRouter(tags=["alarms"])

CSV_FIELDS = ["equipment", "occurrence_id", "code", "id", "text", "severity", "stop_reason", "active", "acknowledged",
              "raised_time", "cleared_time", "acked_time", "acked_by", "raised_ts", "cleared_ts", "acked_ts"]
PARETO_SCAN = 100_000  # occurrences counted at most for one Pareto


async def _alarm_rows(view: LineView, store: StoreProtocol, spec: Spec, presenter: Presenter, equipment: str | None,
                      active: bool | None, t0: float | None, t1: float | None, min_severity: int | None,
                      limit: int) -> list[dict[str, Any]]:
    classes = {eq.id: eq.cls for eq in view.equipment()}
    if active:
        # The runtime's live picture is the truth about what is active now; the store lags by its write queue.
        out = [{"equipment": eq.id, "active": True, **presenter.alarm(a)} for eq in view.equipment()
               if equipment in (None, eq.id) for a in eq.active_alarms
               if (t0 is None or a.get("raised_ts", 0) >= t0) and (t1 is None or a.get("raised_ts", 0) <= t1)]
        out = [a for a in out if min_severity is None or a.get("severity", 0) >= min_severity]
        return sorted(out, key=lambda a: a.get("raised_ts") or 0, reverse=True)[:limit]
    rows = await store.alarms(equipment=equipment, active_only=False, start=t0, end=t1, limit=limit)
    out = []
    for r in rows:
        if active is False and r["active"]:
            continue
        if min_severity is not None and r["severity"] < min_severity:
            continue
        catalogue = _catalogue(spec, classes.get(r["equipment"]))
        out.append({**presenter.row(r), "id": catalogue.get(r["code"])})
    return out


@router.get("/alarms", response_model=list[AlarmRecord],
            summary="Alarms: active now (active=true) or the stored occurrences, newest first")
async def get_alarms(
    view: View, store: Store, spec: SpecDep, presenter: PresenterDep, request: Request,
    equipment: Annotated[str | None, Query(description="one machine's id")] = None,
    active: Annotated[bool | None, Query(description="true: active now; false: cleared only; absent: all stored")] = None,
    start: Annotated[str | None, Query(description="ISO 8601, epoch seconds or relative (-1h)")] = None,
    end: Annotated[str | None, Query()] = None,
    min_severity: Annotated[int | None, Query(ge=0, description="only alarms of this severity or higher")] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    format: Annotated[str | None, Query(description=FORMAT_DOC)] = None,
) -> list[dict[str, Any]] | StreamingResponse:
    as_csv = wants_csv(request, format)
    equipment_filter(view, equipment)
    t0, t1 = optional_range(start, end, time.time())
    out = await _alarm_rows(view, store, spec, presenter, equipment, active, t0, t1, min_severity, limit)
    if as_csv:
        return csv_response("alarms", CSV_FIELDS, each([a.get(f) for f in CSV_FIELDS] for a in out))
    return out


class ParetoRow(BaseModel):
    equipment: str
    code: int
    id: str | None
    text: str
    severity: int
    count: int
    share: float  # of all occurrences counted
    cumulative: float


class ParetoOut(BaseModel):
    start: float
    end: float
    start_time: str | None
    end_time: str | None
    total: int
    codes: list[ParetoRow]


@router.get("/alarms/pareto", response_model=ParetoOut,
            summary="Alarm occurrences per machine and code over a time range, most frequent first")
async def get_pareto(
    view: View, store: Store, spec: SpecDep, presenter: PresenterDep,
    equipment: Annotated[str | None, Query(description="one machine's id")] = None,
    start: Annotated[str | None, Query(description="ISO 8601, epoch seconds or relative; default end - 24h")] = None,
    end: Annotated[str | None, Query(description="default now")] = None,
) -> ParetoOut:
    equipment_filter(view, equipment)
    t0, t1 = time_range(start, end, time.time(), 86400.0)
    rows = await _alarm_rows(view, store, spec, presenter, equipment, None, t0, t1, None, PARETO_SCAN)
    counts: dict[tuple[str, int], dict[str, Any]] = {}
    for r in rows:
        key = (r["equipment"], r["code"])
        entry = counts.setdefault(key, {"equipment": r["equipment"], "code": r["code"], "id": r.get("id"),
                                        "text": r["text"], "severity": r["severity"], "count": 0})
        entry["count"] += 1
    total = sum(e["count"] for e in counts.values())
    ranked, running = [], 0
    for e in sorted(counts.values(), key=lambda e: (-e["count"], -e["severity"], e["equipment"], e["code"])):
        running += e["count"]
        ranked.append(ParetoRow(**e, share=round(e["count"] / total, 4), cumulative=round(running / total, 4)))
    return ParetoOut(start=t0, end=t1, start_time=iso(t0), end_time=iso(t1), total=total, codes=ranked)


def _catalogue(spec: Spec, cls: str | None) -> dict[int, str]:
    return {a.code: a.id for a in spec.alarms(cls)} if cls in spec.classes else {}


@router.post("/equipment/{equipment_id}/alarms/{code}/ack", responses=RESPONSES,
             summary="Acknowledge an alarm: the active one (the AcknowledgeAlarm command) or a cleared, unacknowledged one")
async def ack_alarm(eq: Machine, code: int, view: View, store: Store, spec: SpecDep, who: Commander,
                    occurrence_id: Annotated[str | None, Query(description="one stored occurrence; default: the "
                                                                            "active one, else the newest unacknowledged")] = None,
                    ) -> JSONResponse:
    if code not in {a.code for a in spec.alarms(eq.cls)}:
        raise HTTPException(404, f"alarm code {code} is not in the {eq.cls} catalogue; GET /api/v1/spec/{eq.cls} lists them")
    live = next((a for a in eq.active_alarms if a.get("code") == code), None)
    if live is not None and occurrence_id in (None, live.get("occurrence_id")):
        return await run_command(view, eq, "AcknowledgeAlarm", {"alarm_code": code}, who)
    return await _ack_cleared(store, eq, code, occurrence_id, who)


async def _ack_cleared(store: StoreProtocol, eq: EquipmentView, code: int, occurrence_id: str | None, who: Principal) -> JSONResponse:
    await store.flush()  # a clear the runtime has just seen is in the write queue
    rows = [r for r in await store.alarms(equipment=eq.id, limit=10000) if r["code"] == code]
    if occurrence_id is not None:
        rows = [r for r in rows if str(r["occurrence_id"]) == occurrence_id]
        if not rows:
            raise HTTPException(404, f"no occurrence '{occurrence_id}' of alarm {code} on {eq.id}")
    pending = [r for r in rows if not r["active"] and not r["acknowledged"]]
    if not pending:
        active = ", ".join(str(a.get("code")) for a in eq.active_alarms) or "none"
        raise HTTPException(409, f"alarm {code} on {eq.id} has no occurrence waiting for acknowledgement "
                                 f"(active: {active}); nothing to acknowledge")
    occ = pending[0]  # newest raised first
    now = time.time()
    await store.record_alarm(eq.id, str(occ["occurrence_id"]), code, occ["text"], occ["severity"], "acknowledged", now,
                             bool(occ.get("stop_reason")), who.user)
    detail = f"acknowledged occurrence {occ['occurrence_id']} of alarm {code}, cleared at {iso(occ['cleared_ts'])}"
    await store.record_audit(now, who.user, who.role, eq.id, "AcknowledgeAlarm", {"alarm_code": code,
                             "occurrence_id": str(occ["occurrence_id"])}, 0, "ok", detail)
    await store.flush()
    body = CommandOut(equipment=eq.id, command="AcknowledgeAlarm", code=0, result="ok", detail=detail,
                      state_after=eq.state.get("packml_state"), confirmed=True, user=who.user, role=who.role)
    return JSONResponse(body.model_dump(), status_code=200)
