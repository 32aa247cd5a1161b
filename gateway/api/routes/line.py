"""GET /line: the whole line at a glance, one row per machine."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.api.deps import View
from gateway.api.models import LineOut, MachineSummary
from gateway.api.timeparams import iso
from gateway.runtime.view import EquipmentView

router = APIRouter(tags=["line"])


def summary(eq: EquipmentView) -> MachineSummary:
    return MachineSummary(**{
        "id": eq.id, "class": eq.cls, "available": eq.available,
        "availability": "AVAILABLE" if eq.available else "UNAVAILABLE", "link_reason": eq.link_reason,
        "packml_state": eq.state.get("packml_state"), "health": eq.health,
        "active_alarms": len(eq.active_alarms), "last_data_ts": eq.last_data_ts, "last_data_time": iso(eq.last_data_ts),
    })


@router.get("/line", response_model=LineOut, summary="Line overview")
async def get_line(view: View) -> LineOut:
    return LineOut(line=view.line_id, machines=[summary(eq) for eq in view.equipment()])
