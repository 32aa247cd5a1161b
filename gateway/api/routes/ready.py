"""GET /ready: whether the gateway has started (store open, every machine's task up) and is not stopping.

Readiness is about the process, not the line: a machine that is down leaves the gateway
ready (it reports that in /health); a store that is closed, or a runtime not yet started
or shutting down, does not. HTTP 200 when ready, 503 when not.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from gateway.api.deps import Store, View
from gateway.api.models import ReadyOut

router = APIRouter(tags=["health"])


@router.get("/ready", response_model=ReadyOut,
            responses={503: {"model": ReadyOut, "description": "not ready: starting or stopping"}},
            summary="200 once the store is open and the runtime started, 503 before and while shutting down")
async def get_ready(view: View, store: Store, response: Response) -> ReadyOut:
    reasons = []
    if not store.stats().get("running", True):
        reasons.append("the store is not open")
    machines = (view.health().get("equipment") or {}) if hasattr(view, "health") else {}
    waiting = [eq for eq, e in machines.items() if not e.get("started", True)]
    if waiting:
        reasons.append(f"the runtime has not started {', '.join(waiting)}")
    elif machines and not any(e.get("running", True) for e in machines.values()):
        reasons.append("the runtime is not running (stopping)")
    if reasons:
        response.status_code = 503
    return ReadyOut(ready=not reasons, reasons=reasons)
