"""GET /oee: equipment time (SEMI E10), ISO 22400-2 KPIs, MTBF/MTTR, stop reasons and the bottleneck.

Computed on request from the stored records for any range (gateway/analytics/oee.py
says how); nothing is cached, so a past range and the current shift are asked
the same way.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query

from gateway.analytics.oee import OeeCalculator
from gateway.api.deps import SpecDep, Store, View, equipment_filter
from gateway.api.timeparams import iso, report_range

router = APIRouter(tags=["line intelligence"])

DEFAULT_SPAN_S = 86400.0
MAX_SPAN_S = 93 * 86400.0  # a quarter: one request stays seconds, not minutes, on the event loop's time


def _shifts(view: Any) -> Any:
    """The line file's shift calendar; the runtime carries its line file, another view may not."""
    config = getattr(view, "config", None)
    return getattr(config, "shifts", None)


def _times(report: dict[str, Any]) -> dict[str, Any]:
    r = report["range"]
    r["start_time"], r["end_time"] = iso(r["start"]), iso(r["end"])
    return report


@router.get("/oee", summary="Time per E10 state, availability, effectiveness, quality, OEE, MTBF/MTTR, "
                            "stop-reason Pareto per machine, stage and line, and the bottleneck")
async def get_oee(
    view: View, store: Store, spec: SpecDep,
    start: Annotated[str | None, Query(description="ISO 8601, epoch seconds or relative (-8h); default end - 24 h")] = None,
    end: Annotated[str | None, Query(description="default now")] = None,
    equipment: Annotated[str | None, Query(description="one machine's id; default every machine")] = None,
    by: Annotated[Literal["range", "shift"], Query(description="shift: also per shift of the line file's calendar")] = "range",
) -> dict[str, Any]:
    equipment_filter(view, equipment)
    t0, t1 = report_range(start, end, time.time(), DEFAULT_SPAN_S, MAX_SPAN_S)
    shifts = _shifts(view)
    if by == "shift" and shifts is None:
        raise HTTPException(422, "by=shift: the line file has no shifts: section (a calendar of named shifts)")
    calc = OeeCalculator(store, spec, {eq.id: eq.cls for eq in view.equipment()})
    ids = [equipment] if equipment else None
    report = _times(await calc.report(t0, t1, ids))
    if by == "shift":
        report["shifts"] = [_times(r) for r in await calc.shift_report(shifts, t0, t1, ids)]
    return report
