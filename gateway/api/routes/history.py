"""GET /equipment/{id}/history: stored values of one or more paths, raw or in time buckets.

Every query is bounded: at most MAX_POINTS points (raw samples or buckets,
summed over the paths). A raw query that would return more is refused with a
bucket that fits, never truncated silently.
"""

from __future__ import annotations

import math
import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from gateway.api.deps import Machine, PresenterDep, SpecDep, Store, View
from gateway.api.models import HistoryOut, HistorySeries
from gateway.api.present import QUALITY_NAMES
from gateway.api.timeparams import iso, parse_duration, time_range
from gateway.runtime.view import EquipmentView, LineView
from gateway.store.base import AGGREGATES
from interface_spec import Spec, split_path

router = APIRouter(tags=["history"])

MAX_POINTS = 100_000
MAX_PATHS = 50
DEFAULT_SPAN_S = 3600.0
NICE_BUCKETS = (1, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)


def _duration_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def suggest_bucket(span: float, n_paths: int) -> str:
    """The smallest round bucket that keeps span × paths within MAX_POINTS."""
    need = span * n_paths / MAX_POINTS
    for b in NICE_BUCKETS:
        if b >= need:
            return _duration_text(b)
    return _duration_text(math.ceil(need / 86400) * 86400)


def check_path(spec: Spec, view: LineView, eq: EquipmentView, path: str) -> None:
    """404 unless the path is a variable of the machine's class (and within its array size)."""
    try:
        vdef = spec.variable(eq.cls, path)
    except KeyError:
        if any(s.path == path for s in view.current(eq.id)):
            return  # a vendor extension the machine serves
        raise HTTPException(404, f"path '{path}': {eq.id} ({eq.cls}) has no such variable; "
                                 f"GET /api/v1/spec/{eq.cls} lists them (arrays as channel[3].voltage)") from None
    _, index = split_path(path)
    arr = vdef.sub_unit.array
    if arr is None and index is None:
        return
    if arr is None or index is None:
        form = f"{vdef.sub_unit.id}[<n>]" if arr else vdef.sub_unit.id
        raise HTTPException(404, f"path '{path}': write the sub-unit as {form}")
    size = eq.counts.get(vdef.sub_unit.id, arr.max)
    if not 1 <= index <= size:
        raise HTTPException(404, f"path '{path}': {eq.id} has {size} {vdef.sub_unit.id} (1..{size})")


def _raw_rate(spec: Spec, eq: EquipmentView, path: str) -> float | None:
    """Nominal samples per second of a path from the spec, None when on change."""
    try:
        ms = spec.variable(eq.cls, path).var.sampling_ms
    except KeyError:
        return None
    return 1000.0 / ms if ms else None


def _raw_point(row: dict[str, Any], shown: tuple[Any, int | None]) -> dict[str, Any]:
    value, raw = shown
    point = {"ts": row["ts"], "time": iso(row["ts"]), "value": value,
             "quality": QUALITY_NAMES.get(row["quality"], row["quality"]), "reason": row.get("reason") or "",
             "gateway_ts": row.get("gateway_ts")}
    if raw is not None:
        point["raw"] = raw
    return point


def _bucket_point(row: dict[str, Any]) -> dict[str, Any]:
    return {"ts": row["ts"], "time": iso(row["ts"]), **{k: v for k, v in row.items() if k != "ts"}}


@router.get("/equipment/{equipment_id}/history", response_model=HistoryOut, summary="Stored values, raw or bucketed",
            responses={404: {"description": "unknown equipment or path"}, 422: {"description": "bad range or too many points"}})
async def get_history(
    eq: Machine, view: View, store: Store, spec: SpecDep, presenter: PresenterDep,
    path: Annotated[list[str], Query(description="spec path, repeatable: channel[3].voltage")],
    start: Annotated[str | None, Query(description="ISO 8601, epoch seconds or relative (-1h); default end - 1h")] = None,
    end: Annotated[str | None, Query(description="ISO 8601, epoch seconds or relative; default now")] = None,
    bucket: Annotated[str | None, Query(description="bucket width (60s, 5m, 1h); none = raw samples")] = None,
    agg: Annotated[str, Query(description=f"with a bucket: comma-separated of {', '.join(AGGREGATES)}")] = "avg",
) -> HistoryOut:
    paths = list(dict.fromkeys(p.strip() for raw in path for p in raw.split(",") if p.strip()))
    if not paths:
        raise HTTPException(422, "give at least one path=<spec path>")
    if len(paths) > MAX_PATHS:
        raise HTTPException(422, f"{len(paths)} paths in one query; at most {MAX_PATHS}")
    for p in paths:
        check_path(spec, view, eq, p)
    t0, t1 = time_range(start, end, time.time(), DEFAULT_SPAN_S)
    span = max(t1 - t0, 1e-3)

    if bucket is None:
        aggs = None
        bucket_s = None
        expected = [(_raw_rate(spec, eq, p) or 0.0) * span for p in paths]
        if sum(expected) > MAX_POINTS:
            raise HTTPException(422, f"a raw query of {len(paths)} path(s) over {_duration_text(round(span))} would return "
                                     f"about {int(sum(expected)):,} points (limit {MAX_POINTS:,}); add bucket="
                                     f"{suggest_bucket(span, len(paths))} or shorten the range")
    else:
        bucket_s = parse_duration(bucket, "bucket")
        aggs = list(dict.fromkeys(a.strip() for a in agg.split(",") if a.strip()))
        unknown = [a for a in aggs if a not in AGGREGATES]
        if unknown or not aggs:
            raise HTTPException(422, f"agg: {', '.join(unknown) or 'empty'} not known; use a comma-separated list of "
                                     f"{', '.join(AGGREGATES)}")
        buckets = math.ceil(span / bucket_s) * len(paths)
        if buckets > MAX_POINTS:
            raise HTTPException(422, f"{buckets:,} buckets of {bucket} over {len(paths)} path(s) (limit {MAX_POINTS:,}); "
                                     f"use bucket={suggest_bucket(span, len(paths))} or shorten the range")

    series = []
    budget = MAX_POINTS
    for p in paths:
        rows = await store.history(eq.id, p, t0, t1, bucket_s=bucket_s, agg=aggs or "avg", limit=budget + 1)
        if len(rows) > budget:
            # On-change variables and fast scans have no nominal rate: the limit is the check.
            raise HTTPException(422, f"a raw query of {', '.join(paths)} over {_duration_text(round(span))} returns more than "
                                     f"{MAX_POINTS:,} points; add bucket={suggest_bucket(span, len(paths))} or shorten the range")
        budget -= len(rows)
        if aggs is None:
            points = [_raw_point(r, presenter.enum_value(eq.cls, p, r["value"])) for r in rows]
        else:
            points = [_bucket_point(r) for r in rows]
        series.append(HistorySeries(path=p, unit=presenter.unit(presenter.var_info(eq.cls, p)[1]), points=points))
    return HistoryOut(equipment=eq.id, start=t0, end=t1, start_time=iso(t0), end_time=iso(t1),
                      bucket_s=bucket_s, agg=aggs, series=series)
