"""GET /energy: each machine's metered energy attributed to the units it made, down to energy and carbon per cell.

Computed on request from the stored meter readings, states and events for any range (gateway/analytics/energy.py
says how); the reconciliation in every answer shows that cells, units in process and unattributed energy add up
to the meters' total.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query

from gateway.analytics.energy import EnergyReport
from gateway.analytics.energy_settings import EnergySettings
from gateway.api.deps import SpecDep, Store, View
from gateway.api.routes.oee import MAX_SPAN_S
from gateway.api.timeparams import report_range

router = APIRouter(tags=["line intelligence"])

DEFAULT_SPAN_S = 86400.0


@router.get("/energy", summary="Metered energy per machine attributed to the units made: energy and carbon per "
                               "cell by stage, units in process, idle energy, and the reconciliation")
async def get_energy(
    view: View, store: Store, spec: SpecDep,
    start: Annotated[str | None, Query(description="ISO 8601, epoch seconds or relative (-8h); default end - 24 h")] = None,
    end: Annotated[str | None, Query(description="default now")] = None,
    cell: Annotated[str | None, Query(description="a cell's id: its energy and carbon by stage")] = None,
    idle: Annotated[Literal["time", "count", "none"] | None,
                    Query(description="how idle energy is spread; default the line file's energy.idle")] = None,
    factor: Annotated[float | None, Query(ge=0, description="grid emission factor, kgCO2e/kWh; default the line "
                                                            "file's")] = None,
) -> dict[str, Any]:
    t0, t1 = report_range(start, end, time.time(), DEFAULT_SPAN_S, MAX_SPAN_S)
    settings = (getattr(getattr(view, "config", None), "energy", None) or EnergySettings()).asked(idle, factor)
    report = await EnergyReport(store, spec, {eq.id: eq.cls for eq in view.equipment()}, settings).report(t0, t1, cell)
    if cell is not None and report["cell"] is None:
        raise HTTPException(404, f"no energy reached cell '{cell}' in this range: no cell of that id was made from "
                                 "units finished in it")
    return report
