"""GET /health: is the gateway running, which machines are reachable, how far behind each sink is."""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import APIRouter

from gateway.api.deps import ForwardStatus, Store, View
from gateway.api.models import HealthOut

router = APIRouter(tags=["health"])


async def _resolved(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


@router.get("/health", response_model=HealthOut,
            summary="200 while the gateway runs; status 'degraded' when a machine is unavailable, a forwarding "
                    "sink fails, falls behind or loses samples (its reasons in forward.<sink>.problems), "
                    "or the store drops samples")
async def get_health(view: View, store: Store, forward: ForwardStatus) -> HealthOut:
    runtime = dict(view.health())
    # Whether the store's stats() is sync or async, both the runtime's copy and ours end up as plain data.
    runtime_store = runtime.pop("store", None)
    store_stats = await _resolved(store.stats()) if hasattr(store, "stats") else await _resolved(runtime_store)
    if inspect.iscoroutine(runtime_store):
        runtime_store.close()
    equipment = {}
    for eq in view.equipment():
        equipment[eq.id] = {"class": eq.cls, "available": eq.available, "reason": eq.link_reason,
                            "last_data_ts": eq.last_data_ts,
                            **{k: v for k, v in (runtime.get("equipment") or {}).get(eq.id, {}).items()
                               if k not in ("available", "reason", "last_data_ts")}}
    up = sum(1 for e in equipment.values() if e["available"])
    healthy = (up == len(equipment) and not any(sink.get("problems") for sink in forward.values())
               and not (store_stats or {}).get("dropped"))
    return HealthOut(status="ok" if healthy else "degraded", line=view.line_id, available=up,
                     unavailable=len(equipment) - up, equipment=equipment,
                     runtime={k: v for k, v in runtime.items() if k != "equipment"}, store=store_stats,
                     forward=forward)
