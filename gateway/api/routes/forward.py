"""GET /forward: each forwarding sink's state, and the points sinks refused for good."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from gateway.api.deps import ForwardStatus, Store

router = APIRouter(tags=["forward"])


@router.get("/forward", summary="Per sink (influx, mqtt): connected, written, backlog, lag, refused and discarded")
async def get_forward(forward: ForwardStatus) -> dict[str, Any]:
    return forward


@router.get("/forward/rejects", summary="Points a sink refused (4xx) and that were set aside, newest first")
async def get_rejects(
    forward: ForwardStatus, store: Store,
    sink: Annotated[str | None, Query(description="influx or mqtt")] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
) -> list[dict[str, Any]]:
    consumer = None
    if sink is not None:
        if sink not in forward:
            raise HTTPException(404, f"sink='{sink}': this line forwards to {', '.join(forward) or 'nothing'}")
        consumer = forward[sink]["consumer"]
    result: list[dict[str, Any]] = await store.rejects(consumer, limit)
    return result
