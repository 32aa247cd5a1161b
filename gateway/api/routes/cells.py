"""GET /cells/features: the quality feature table of the cells graded in a range, as JSON, CSV or Parquet;
GET /passport/{id}: the manufacturing part of a cell's (or a lot's cells') battery passport as AAS JSON.

One row per cell: its grade and results, and for each stage that made it the statistics of the class's process
variables over its unit's window (gateway/analytics/features.py says how, and names every column).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response

from gateway.analytics.features import FeatureTable, to_csv, to_parquet
from gateway.analytics.passport import PassportBuilder, to_json
from gateway.api.deps import SpecDep, Store, View
from gateway.api.timeparams import iso, report_range

router = APIRouter(tags=["line intelligence"])

DEFAULT_SPAN_S = 86400.0
MAX_SPAN_S = 31 * 86400.0  # a month of cells at once; longer ranges month by month
PARQUET = "application/vnd.apache.parquet"


@router.get("/cells/features", summary="The quality feature table: per graded cell its grade, results and the "
                                       "statistics of every upstream stage's process values over its unit's window",
            responses={200: {"content": {"text/csv": {}, PARQUET: {}}}})
async def get_features(
    view: View, store: Store, spec: SpecDep,
    start: Annotated[str | None, Query(description="cells graded from: ISO 8601, epoch seconds or relative (-8h); "
                                                   "default end - 24 h")] = None,
    end: Annotated[str | None, Query(description="default now")] = None,
    format: Annotated[Literal["json", "csv", "parquet"], Query(description="json, csv or parquet")] = "json",
) -> Any:
    t0, t1 = report_range(start, end, time.time(), DEFAULT_SPAN_S, MAX_SPAN_S)
    rows, columns = await FeatureTable(store, spec, {eq.id: eq.cls for eq in view.equipment()}).rows(t0, t1)
    if format == "csv":
        return Response(to_csv(rows, columns), media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="cell-features.csv"'})
    if format == "parquet":
        meta = {"from": iso(t0) or "", "to": iso(t1) or "", "method": "gateway/analytics/features.py"}
        return Response(to_parquet(rows, columns, meta), media_type=PARQUET,
                        headers={"Content-Disposition": 'attachment; filename="cell-features.parquet"'})
    return {"from": iso(t0), "to": iso(t1), "columns": [vars(c) for c in columns],
            "rows": [{**r, "graded_time": iso(r["graded_time"])} for r in rows]}


@router.get("/passport/{unit_id}", summary="The manufacturing part of the battery passport, as Asset Administration "
                                          "Shell JSON: of a cell, or of every cell made from a lot or roll",
            responses={404: {"description": "no cell was made from this ID"}})
async def get_passport(
    unit_id: Annotated[str, Path(description="a cell's id, or a material lot, electrode roll or jelly roll")],
    view: View, store: Store, spec: SpecDep,
) -> Any:
    builder = PassportBuilder(store, spec, {eq.id: eq.cls for eq in view.equipment()}, view.line_id,
                              getattr(getattr(view, "config", None), "energy", None))
    objects = await builder.cell(unit_id)
    if objects is None:
        found = await builder.lot(unit_id)
        if found is None or not found[1]:
            raise HTTPException(404, f"no cell was graded as '{unit_id}' or made from it; ids are as the machines "
                                     "report them (see GET /api/v1/events?type=UnitProcessed)")
        objects = found[0]
    return Response(to_json(objects), media_type="application/json")
