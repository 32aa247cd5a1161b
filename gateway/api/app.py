"""The FastAPI application: `create_app(view, store, spec, api_config)`.

The app owns nothing it did not make: the runtime and the store are started
and stopped by whoever built them (the CLI, a test). The lifespan only checks
the key ring and drops per-app caches.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.api.auth import KeyRing
from gateway.api.deps import caller
from gateway.api.models import Problem
from gateway.api.present import Presenter
from gateway.api.ratelimit import Limiter
from gateway.api.routes import (  # line intelligence
    alarms,
    audit,
    cells,
    commands,
    dashboard,
    energy,
    equipment,
    events,
    forward,
    health,
    history,
    line,
    live,
    metrics,
    oee,
    ready,  # readiness for probes, beside /health
    record,
    trace,
)
from gateway.api.routes import reload as reload_routes
from gateway.api.routes import spec as spec_routes
from gateway.config import Api
from gateway.runtime.view import LineView
from gateway.store.base import Store
from interface_spec import Spec

log = logging.getLogger("linegw.api")

API_PREFIX = "/api/v1"


def create_app(view: LineView, store: Store, spec: Spec, api_config: Api | None = None, forwarding: Any = None,
               reload: Callable[[], Awaitable[dict[str, list[str]]]] | None = None) -> FastAPI:
    api_config = api_config or Api()
    keys = KeyRing(api_config)  # fails now, naming the variable, rather than on the first request

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("API for line '%s': %s", view.line_id,
                 "API keys required" if keys.enabled else "no API keys: commands from loopback only")
        yield

    app = FastAPI(
        title=f"linegw — line {view.line_id}",
        version=spec.version,
        summary="One interface over every machine of the line, per the line interface spec",
        lifespan=lifespan,
        docs_url=None, redoc_url=None,  # /docs is served from the package's own files: see routes/dashboard.py
        responses={401: {"model": Problem}, 403: {"model": Problem}, 422: {"model": Problem}},
    )
    app.state.view = view
    app.state.store = store
    app.state.spec = spec
    app.state.keys = keys
    app.state.limiter = Limiter(api_config.command_limits.per_caller_per_min, api_config.command_limits.per_machine_per_min)
    app.state.forwarding = forwarding  # gateway.forward.service.Forwarding, or None
    app.state.presenter = Presenter(spec)
    app.state.live_queue = api_config.live_queue
    app.state.reload = reload  # reads the line file again and applies it (linegw run); None without a file
    app.state.request_latency = metrics.request_latency()

    @app.middleware("http")
    async def time_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        # By route template, never by raw path: /equipment/{equipment_id} is one series, not one per machine.
        # FastAPI hands over the route as its router declared it, without the prefix it was included under.
        template = getattr(request.scope.get("route"), "path", None)
        if template is None:
            template = "unmatched"
        elif request.url.path.startswith(API_PREFIX + "/") and not template.startswith(API_PREFIX + "/"):
            template = API_PREFIX + template
        metrics.observe_latency(app, started, template, request.method)
        return response

    v1 = APIRouter(prefix=API_PREFIX, dependencies=[Depends(caller)])
    for module in (line, equipment, history, alarms, events, trace, commands, audit, spec_routes, forward, health,
                   ready, reload_routes):
        v1.include_router(module.router)
    v1.include_router(oee.router)
    v1.include_router(energy.router)
    v1.include_router(cells.router)
    v1.include_router(record.router)
    app.include_router(v1)
    app.include_router(metrics.router)  # /metrics, where Prometheus looks by default
    app.include_router(ready.probes)  # /livez, /readyz: no key, no details, for a cluster's probes
    app.include_router(live.router, prefix=API_PREFIX)  # authenticates itself: browsers cannot send headers there
    dashboard.install(app)

    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]  # Starlette types handlers for any Exception
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]  # the same
    return app


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no such route: {request.method} {request.url.path}; the API is under {API_PREFIX}, see /docs"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}; see /docs for the methods it takes"
    return JSONResponse({"detail": str(detail)}, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's list of errors as one sentence: where, what, and the value given."""
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        where = {"query": "query parameter", "path": "path parameter", "body": "body", "header": "header"}.get(
            loc[0] if loc else "", "request")
        name = ".".join(loc[1:]) if len(loc) > 1 else ""
        msg = err.get("msg", "is invalid")
        given = err.get("input")
        shown = f" (got {given!r})" if given is not None and not isinstance(given, (dict, list)) else ""
        hint = ' (send JSON: {"params": {...}})' if loc == ["body"] else ""
        parts.append(f"{where}{' ' + name if name else ''}: {msg}{shown}{hint}")
    return JSONResponse({"detail": "; ".join(parts) or "the request is invalid; see /docs"}, status_code=422)
