"""GET /alarms (active now, or the stored history) and POST .../alarms/{code}/ack."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse

from gateway.api.deps import Commander, Machine, PresenterDep, SpecDep, Store, View, equipment_filter
from gateway.api.models import AlarmRecord
from gateway.api.routes.commands import RESPONSES, run_command
from gateway.api.timeparams import optional_range
from interface_spec import Spec

router = APIRouter(tags=["alarms"])


@router.get("/alarms", response_model=list[AlarmRecord],
            summary="Alarms: active now (active=true) or the stored occurrences, newest first")
async def get_alarms(
    view: View, store: Store, spec: SpecDep, presenter: PresenterDep,
    equipment: Annotated[str | None, Query(description="one machine's id")] = None,
    active: Annotated[bool | None, Query(description="true: active now; false: cleared only; absent: all stored")] = None,
    start: Annotated[str | None, Query(description="ISO 8601, epoch seconds or relative (-1h)")] = None,
    end: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> list[dict[str, Any]]:
    equipment_filter(view, equipment)
    classes = {eq.id: eq.cls for eq in view.equipment()}
    t0, t1 = optional_range(start, end, time.time())
    if active:
        # The runtime's live picture is the truth about what is active now; the store lags by its write queue.
        out = [{"equipment": eq.id, "active": True, **presenter.alarm(a)} for eq in view.equipment()
               if equipment in (None, eq.id) for a in eq.active_alarms
               if (t0 is None or a.get("raised_ts", 0) >= t0) and (t1 is None or a.get("raised_ts", 0) <= t1)]
        return sorted(out, key=lambda a: a.get("raised_ts") or 0, reverse=True)[:limit]
    rows = await store.alarms(equipment=equipment, active_only=False, start=t0, end=t1, limit=limit)
    out = []
    for r in rows:
        if active is False and r["active"]:
            continue
        catalogue = _catalogue(spec, classes.get(r["equipment"]))
        out.append({**presenter.row(r), "id": catalogue.get(r["code"])})
    return out


def _catalogue(spec: Spec, cls: str | None) -> dict[int, str]:
    return {a.code: a.id for a in spec.alarms(cls)} if cls in spec.classes else {}


@router.post("/equipment/{equipment_id}/alarms/{code}/ack", responses=RESPONSES,
             summary="Acknowledge an active alarm (the AcknowledgeAlarm command)")
async def ack_alarm(eq: Machine, code: int, view: View, spec: SpecDep, who: Commander) -> JSONResponse:
    if code not in {a.code for a in spec.alarms(eq.cls)}:
        raise HTTPException(404, f"alarm code {code} is not in the {eq.cls} catalogue; GET /api/v1/spec/{eq.cls} lists them")
    if not any(a.get("code") == code for a in eq.active_alarms):
        active = ", ".join(str(a.get("code")) for a in eq.active_alarms) or "none"
        raise HTTPException(409, f"alarm {code} is not active on {eq.id} (active: {active}); nothing to acknowledge")
    return await run_command(view, eq, "AcknowledgeAlarm", {"alarm_code": code}, who)
