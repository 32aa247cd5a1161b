"""GET /ready: whether the gateway has started (store open, every machine's task up) and is not stopping.

Readiness is about the process, not the line: a machine that is down leaves the gateway
ready (it reports that in /health); a store that is closed, or a runtime not yet started
or shutting down, does not. HTTP 200 when ready, 503 when not.

/readyz and /livez are the same facts for a cluster's probes, outside /api/v1 and without a key
(a probe cannot send a secret): the status code and one word, nothing about the line. /livez is
503 only when a restart is the remedy: the store's writer has stopped.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse

from gateway.api.deps import Store, View
from gateway.api.models import ReadyOut
from gateway.runtime.view import LineView
from gateway.store.base import Store as StoreProtocol

router = APIRouter(tags=["health"])


@router.get("/ready", response_model=ReadyOut,
            responses={503: {"model": ReadyOut, "description": "not ready: starting or stopping"}},
            summary="200 once the store is open and the runtime started, 503 before and while shutting down")
async def get_ready(view: View, store: Store, response: Response) -> ReadyOut:
    reasons = not_ready(view, store)
    if reasons:
        response.status_code = 503
    return ReadyOut(ready=not reasons, reasons=reasons)


def not_ready(view: LineView, store: StoreProtocol) -> list[str]:
    """Why the gateway is not ready; [] when it is."""
    reasons = []
    if not store.stats().get("running", True):
        reasons.append("the store is not open")
    machines = (view.health().get("equipment") or {}) if hasattr(view, "health") else {}
    waiting = [eq for eq, e in machines.items() if not e.get("started", True)]
    if waiting:
        reasons.append(f"the runtime has not started {', '.join(waiting)}")
    elif machines and not any(e.get("running", True) for e in machines.values()):
        reasons.append("the runtime is not running (stopping)")
    return reasons


probes = APIRouter(tags=["health"])


@probes.get("/readyz", summary="Readiness for a cluster's probe, without a key: 200 ready, 503 not (no details)",
            response_class=PlainTextResponse, responses={503: {"description": "not ready"}})
async def get_readyz(view: View, store: Store) -> PlainTextResponse:
    ready = not not_ready(view, store)
    return PlainTextResponse("ready" if ready else "not ready", status_code=200 if ready else 503)


@probes.get("/livez", summary="Liveness for a cluster's probe, without a key: 503 only when the store's writer has "
                              "stopped (restart the gateway)", response_class=PlainTextResponse,
            responses={503: {"description": "the store's writer has stopped"}})
async def get_livez(store: Store) -> PlainTextResponse:
    alive = bool(store.stats().get("running", True))
    return PlainTextResponse("alive" if alive else "store stopped", status_code=200 if alive else 503)
