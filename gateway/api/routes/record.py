"""GET /record/{unit_id}: a unit's manufacturing record; GET /recall/{id}: every cell made from a lot or roll.

The record is the genealogy with, per stage, the unit's production window and
the process values, alarms and state changes in it; the method and the window
rules are in gateway/analytics/record.py.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query

from gateway.analytics.record import RecordBuilder
from gateway.api.deps import PresenterDep, SpecDep, Store, View

router = APIRouter(tags=["line intelligence"])


def _unknown(unit_id: str) -> HTTPException:
    return HTTPException(404, f"no event mentions '{unit_id}'; IDs are as the machines report them "
                              "(see GET /api/v1/events?type=UnitProcessed)")


@router.get("/record/{unit_id}", summary="A cell's (or roll's) manufacturing record: genealogy, and per stage the "
                                         "process values, alarms and state changes while that unit was made",
            responses={404: {"description": "no event mentions this ID"}})
async def get_record(
    unit_id: Annotated[str, Path(description="cell, jelly roll or electrode roll ID")],
    view: View, store: Store, spec: SpecDep, presenter: PresenterDep,
    max_points: Annotated[int, Query(ge=1, le=100_000, description="raw points per series at most; above it, "
                                                                    "bucket averages")] = 2000,
) -> dict[str, Any]:
    classes = {eq.id: eq.cls for eq in view.equipment()}
    record = await RecordBuilder(store, spec, classes, max_points).record(unit_id)
    if record is None:
        raise _unknown(unit_id)
    # Values as the history route shows them: floats to the resolution the spec gives.
    for stage in record["stages"]:
        cls = classes.get(stage["equipment"], "")
        for path, pv in stage["process_values"].items():
            pv["points"] = [[ts, presenter.rounded(cls, path, v)] for ts, v in pv["points"]]
            pv["min"], pv["max"] = presenter.rounded(cls, path, pv["min"]), presenter.rounded(cls, path, pv["max"])
            pv["mean"] = presenter.aggregate(cls, path, "avg", pv["mean"])
    return record


@router.get("/recall/{lot_id}", summary="Every cell made from a material lot, electrode roll or jelly roll",
            responses={404: {"description": "no event mentions this ID"}})
async def get_recall(
    lot_id: Annotated[str, Path(description="foil, slurry or separator lot, electrode roll or jelly roll ID")],
    view: View, store: Store, spec: SpecDep,
) -> dict[str, Any]:
    result = await RecordBuilder(store, spec, {eq.id: eq.cls for eq in view.equipment()}).recall(lot_id)
    if result is None:
        raise _unknown(lot_id)
    return result
