"""GET /equipment/{id}/history: stored values of one or more paths, raw or in time buckets.

Paths are repeated, comma-separated, or globs over the machine's variables
(`channel[*].voltage`, `dryer_zone[2].*`), expanded in numeric order. Every
query is bounded: at most MAX_POINTS points (raw samples or buckets, summed
over the paths). A raw query that would return more is refused with a bucket
that fits, never truncated silently. `format=csv` (or `Accept: text/csv`)
streams the same points as CSV, one row per point, read path by path.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from gateway.api.csvout import FORMAT_DOC, csv_response, wants_csv
from gateway.api.deps import Machine, PresenterDep, SpecDep, Store, View
from gateway.api.models import HistoryOut, HistorySeries
from gateway.api.present import QUALITY_NAMES, PathFilter, Presenter
from gateway.api.timeparams import iso, parse_duration, time_range
from gateway.api.twa import time_weighted
from gateway.runtime.view import EquipmentView, LineView
from gateway.store.base import AGGREGATES
from gateway.store.base import Store as StoreProtocol
from interface_spec import Spec, split_path

router = APIRouter(tags=["history"])

MAX_POINTS = 100_000
MAX_PATHS = 1024  # a formation rack's 512 channels, two variables each; MAX_POINTS still bounds the answer
DEFAULT_SPAN_S = 3600.0
# Aggregates this route computes itself from raw samples, beside the store's.
ROUTE_AGGREGATES = {"twa": "time-weighted average: each value weighed by how long it held"}
ALL_AGGREGATES = (*AGGREGATES, *ROUTE_AGGREGATES)
TWA_RAW_LIMIT = 500_000  # raw samples read for one series' twa: a day at 5 Hz
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


def natural_key(path: str) -> list[Any]:
    """Sort key that puts channel[2] before channel[10]: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


async def known_paths(spec: Spec, view: LineView, store: StoreProtocol, eq: EquipmentView) -> set[str]:
    """Every concrete path of the machine: the spec's, the extensions it serves, and what the store holds.

    Arrays count as many members as the machine reported; before it has (never connected), as many as
    the store or the current values hold, and only with neither as many as the spec allows.
    """
    seen = {s.path for s in view.current(eq.id)} | {p for _, p, _ in await store.series(eq.id)}
    out = set(seen)
    for d in spec.variables(eq.cls):
        arr = d.sub_unit.array
        if arr is None:
            out.add(d.path())
            continue
        size = eq.counts.get(d.sub_unit.id)
        if size is None and not any(split_path(p)[0] == d.template for p in seen):
            size = arr.max
        out.update(d.path(i) for i in range(1, (size or 0) + 1))
    return out


async def expand_paths(spec: Spec, view: LineView, store: StoreProtocol, eq: EquipmentView, given: list[str]) -> list[str]:
    """Paths as asked, globs expanded in numeric order; 404 for a glob that matches nothing."""
    out: list[str] = []
    known: set[str] | None = None
    for raw in given:
        for p in (p.strip() for p in raw.split(",")):
            if not p:
                continue
            if "*" not in p and "?" not in p:
                out.append(p)
                continue
            known = known if known is not None else await known_paths(spec, view, store, eq)
            match = PathFilter([p]).match
            found = sorted((k for k in known if match(k)), key=natural_key)
            if not found:
                raise HTTPException(404, f"path '{p}' matches no variable of {eq.id} ({eq.cls}); "
                                         f"GET /api/v1/spec/{eq.cls} lists them")
            out.extend(found)
    return list(dict.fromkeys(out))


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
    eq: Machine, view: View, store: Store, spec: SpecDep, presenter: PresenterDep, request: Request,
    path: Annotated[list[str], Query(description="spec path or glob, repeatable or comma-separated: "
                                                "channel[3].voltage, channel[*].voltage, dryer_zone[2].*")],
    start: Annotated[str | None, Query(description="ISO 8601, epoch seconds or relative (-1h); default end - 1h")] = None,
    end: Annotated[str | None, Query(description="ISO 8601, epoch seconds or relative; default now")] = None,
    bucket: Annotated[str | None, Query(description="bucket width (60s, 5m, 1h); none = raw samples")] = None,
    agg: Annotated[str, Query(description=f"with a bucket: comma-separated of {', '.join(ALL_AGGREGATES)} "
                                          "(twa: time-weighted average; avg is the plain mean of the samples)")] = "avg",
    format: Annotated[str | None, Query(description=FORMAT_DOC)] = None,
) -> HistoryOut | StreamingResponse:
    as_csv = wants_csv(request, format)
    paths = await expand_paths(spec, view, store, eq, path)
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
        unknown = [a for a in aggs if a not in ALL_AGGREGATES]
        if unknown or not aggs:
            raise HTTPException(422, f"agg: {', '.join(unknown) or 'empty'} not known; use a comma-separated list of "
                                     f"{', '.join(ALL_AGGREGATES)}")
        buckets = math.ceil(span / bucket_s) * len(paths)
        if buckets > MAX_POINTS:
            raise HTTPException(422, f"{buckets:,} buckets of {bucket} over {len(paths)} path(s) (limit {MAX_POINTS:,}); "
                                     f"use bucket={suggest_bucket(span, len(paths))} or shorten the range")

    if as_csv:
        return csv_response(f"{eq.id}-history", _csv_header(aggs),
                            _csv_rows(store, presenter, eq, paths, t0, t1, bucket_s, aggs))
    series = []
    budget = MAX_POINTS
    for p in paths:
        rows = await _rows(store, eq, p, t0, t1, bucket_s, aggs, budget + 1)
        if len(rows) > budget:
            # On-change variables and fast scans have no nominal rate: the limit is the check.
            raise HTTPException(422, f"a raw query of {', '.join(paths)} over {_duration_text(round(span))} returns more than "
                                     f"{MAX_POINTS:,} points; add bucket={suggest_bucket(span, len(paths))} or shorten the range")
        budget -= len(rows)
        if aggs is None:
            points = [_raw_point(r, presenter.enum_value(eq.cls, p, r["value"])) for r in rows]
        else:
            points = [_bucket_point(presenter.bucket(eq.cls, p, r)) for r in rows]
        series.append(HistorySeries(path=p, unit=presenter.unit(presenter.var_info(eq.cls, p)[1]), points=points))
    return HistoryOut(equipment=eq.id, start=t0, end=t1, start_time=iso(t0), end_time=iso(t1),
                      bucket_s=bucket_s, agg=aggs, series=series)


async def _rows(store: StoreProtocol, eq: EquipmentView, path: str, t0: float, t1: float, bucket_s: float | None,
                aggs: list[str] | None, limit: int) -> list[dict[str, Any]]:
    """Raw samples, or buckets with the store's aggregates and the route's (twa) side by side."""
    if aggs is None or bucket_s is None:
        samples: list[dict[str, Any]] = await store.history(eq.id, path, t0, t1, bucket_s=None, limit=limit)
        return samples
    store_aggs = [a for a in aggs if a in AGGREGATES]
    rows: list[dict[str, Any]] = await store.history(eq.id, path, t0, t1, bucket_s=bucket_s, agg=store_aggs or ["count"],
                                                     limit=limit)
    if "twa" not in aggs:
        return rows
    # One bucket back: the sample before the range says what value held when it began.
    raw = await store.history_columns(eq.id, path, t0 - bucket_s, t1, limit=TWA_RAW_LIMIT + 1)
    if len(raw.ts) > TWA_RAW_LIMIT:
        raise HTTPException(422, f"agg=twa of {path} over {_duration_text(round(t1 - t0))} needs more than "
                                 f"{TWA_RAW_LIMIT:,} raw samples; shorten the range or use agg=avg")
    twa = {round(b, 6): v for b, v in time_weighted(raw, t0, t1, bucket_s).items()}
    for r in rows:
        r["twa"] = twa.get(round(r["ts"], 6))
        if not store_aggs:
            del r["count"]  # asked for only to have the buckets that hold samples
    return rows


def _csv_header(aggs: list[str] | None) -> list[str]:
    head = ["equipment", "path", "unit", "ts", "time"]
    return head + (["value", "quality", "reason"] if aggs is None else [*aggs, "bad"])


async def _csv_rows(store: StoreProtocol, presenter: Presenter, eq: EquipmentView, paths: list[str], t0: float, t1: float,
                    bucket_s: float | None, aggs: list[str] | None) -> AsyncIterator[list[Any]]:
    """Path by path, so that only one series is in memory while the answer streams; the same bound as JSON."""
    budget = MAX_POINTS
    for p in paths:
        unit = presenter.unit(presenter.var_info(eq.cls, p)[1])["symbol"]
        rows = await _rows(store, eq, p, t0, t1, bucket_s, aggs, budget)
        budget -= len(rows)
        for r in rows:
            head = [eq.id, p, unit, r["ts"], iso(r["ts"])]
            if aggs is None:
                value, _ = presenter.enum_value(eq.cls, p, r["value"])
                yield head + [value, QUALITY_NAMES.get(r["quality"], r["quality"]), r.get("reason") or ""]
            else:
                yield head + [presenter.aggregate(eq.cls, p, a, r.get(a)) for a in aggs] + [r.get("bad", 0)]
        if budget <= 0:
            return  # the raw-size check above refused what it could foresee; on-change series stop at the bound
