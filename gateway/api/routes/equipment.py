"""GET /equipment and /equipment/{id}: identity, state, alarms and current values."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gateway.api.deps import Machine, PresenterDep, View
from gateway.api.models import EquipmentOut
from gateway.api.present import PathFilter, Presenter
from gateway.api.timeparams import iso
from gateway.runtime.view import EquipmentView, LineView

router = APIRouter(tags=["equipment"])

PathsQuery = Annotated[list[str] | None, Query(
    description="glob patterns over spec paths, repeated or comma-separated: channel[*].voltage, state.*")]


def describe(eq: EquipmentView, presenter: Presenter, view: LineView | None = None,
             paths: PathFilter | None = None) -> EquipmentOut:
    values = None
    if view is not None:
        paths = paths or PathFilter(None)
        values = [presenter.sample(eq.cls, s) for s in sorted(view.current(eq.id), key=lambda s: s.path)
                  if paths.match(s.path)]
    return EquipmentOut(**{
        "id": eq.id, "class": eq.cls, "protocol": eq.protocol, "endpoint": eq.endpoint, "profile": eq.profile,
        "identity": dict(eq.identity), "available": eq.available,
        "availability": "AVAILABLE" if eq.available else "UNAVAILABLE", "link_reason": eq.link_reason,
        "state": dict(eq.state), "packml_state": eq.state.get("packml_state"),
        "mode": eq.state.get("operation_mode"), "authority": eq.state.get("control_authority"),
        "health": eq.health, "counts": dict(eq.counts),
        "last_data_ts": eq.last_data_ts, "last_data_time": iso(eq.last_data_ts),
        "active_alarms": [presenter.alarm(a) for a in eq.active_alarms], "values": values,
    })


@router.get("/equipment", response_model=list[EquipmentOut], response_model_exclude_none=False,
            summary="Every machine of the line (without current values)")
async def list_equipment(view: View, presenter: PresenterDep) -> list[EquipmentOut]:
    return [describe(eq, presenter) for eq in view.equipment()]


@router.get("/equipment/{equipment_id}", response_model=EquipmentOut, summary="One machine with its current values",
            responses={404: {"description": "no such equipment"}})
async def get_equipment(eq: Machine, view: View, presenter: PresenterDep, paths: PathsQuery = None) -> EquipmentOut:
    return describe(eq, presenter, view, PathFilter(paths))
