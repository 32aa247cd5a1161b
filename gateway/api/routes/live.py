"""WebSocket /live: the runtime's live messages, filtered, after a first snapshot.

`?equipment=<id>` keeps one machine, `?paths=<glob>` keeps matching sample
paths; every other kind passes the paths filter, so a client watching a few
values still sees state changes and alarms. Messages are JSON: first
`{"kind": "snapshot", "line", "ts", "equipment": [...]}`, then
`{"kind": ..., "equipment", "data"}` with `data` by kind:

* `samples`: `{"samples": [{path, value, raw, unit, quality, reason, source_ts}, ...]}`
* `state`: a state variable changed (PackML state, operation mode, control
  authority, ...): `{variable, value, previous, source_ts, state: {all state
  variables}, available}`
* `link`: availability changed: `{available, reason, ts}`
* `alarm`: an occurrence was raised, acknowledged or cleared: `{state:
  "raised"|"acknowledged"|"cleared", occurrence_id, code, id, text, severity,
  stop_reason, raised_ts, acknowledged, ts}`
* `event`: a lot/unit event: `{type, source_ts, seq, payload}`
A slow client is not buffered without bound: the runtime keeps at most
`api.live_queue` messages for it (1000 by default); when more pile up, it is
dropped (close code 1013, "too slow") and the messages it missed are counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from typing import Annotated, Any

from fastapi import APIRouter, Query, WebSocket
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect

from gateway.api.auth import KEY_HEADER, AuthError, identify
from gateway.api.present import PathFilter, Presenter
from gateway.api.routes.line import summary
from gateway.runtime.view import LineView, LiveMessage

router = APIRouter(tags=["live"])
log = logging.getLogger("linegw.api.live")

LIVE_QUEUE = 1000  # messages kept for one client when the app has no api.live_queue


async def _deny(ws: WebSocket, status: int, detail: str) -> None:
    """Refuse the handshake with an HTTP status and a JSON reason (close code 1008 where unsupported)."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(JSONResponse({"detail": detail}, status_code=status))
    else:
        await ws.close(code=1008, reason=detail[:120])


def snapshot(view: LineView, presenter: Presenter, equipment: str | None, paths: PathFilter) -> dict[str, Any]:
    machines = []
    for eq in view.equipment():
        if equipment not in (None, eq.id):
            continue
        machines.append({
            **summary(eq).model_dump(by_alias=True),
            "state": dict(eq.state), "identity": dict(eq.identity),
            "active_alarm_list": [presenter.alarm(a) for a in eq.active_alarms],
            "values": [presenter.sample(eq.cls, s) for s in sorted(view.current(eq.id), key=lambda s: s.path)
                       if paths.match(s.path)],
        })
    return {"kind": "snapshot", "line": view.line_id, "ts": time.time(), "equipment": machines}


def outgoing(msg: LiveMessage, classes: dict[str, str], presenter: Presenter, equipment: str | None,
             paths: PathFilter) -> dict[str, Any] | None:
    """The client's form of a runtime message, or None when the filters drop it."""
    if equipment is not None and msg.equipment != equipment:
        return None
    data = msg.data
    if msg.kind == "samples":
        cls = classes.get(msg.equipment, "")
        rows = [presenter.live_row(cls, r) for r in data.get("samples", ()) if paths.match(r[0])]
        if not rows:
            return None
        data = {"samples": rows}
    return {"kind": msg.kind, "equipment": msg.equipment, "data": data}


async def _send_loop(ws: WebSocket, view: LineView, presenter: Presenter, equipment: str | None, paths: PathFilter,
                     stream: AsyncGenerator[LiveMessage, None]) -> None:
    classes = {eq.id: eq.cls for eq in view.equipment()}
    # Subscribe before taking the snapshot, so nothing falls between the two: the generator
    # registers its queue when it first runs, which the sleep(0) lets happen.
    first = asyncio.ensure_future(anext(stream))
    try:
        await asyncio.sleep(0)
        await ws.send_json(snapshot(view, presenter, equipment, paths))
        msg = await first
    finally:
        if not first.done():
            first.cancel()  # leaves the generator closed, so aclose() below never meets it running
            await asyncio.gather(first, return_exceptions=True)
    while True:
        out = outgoing(msg, classes, presenter, equipment, paths)
        if out is not None:
            await ws.send_json(out)
        msg = await anext(stream)


async def _until_closed(ws: WebSocket) -> None:
    while (await ws.receive())["type"] != "websocket.disconnect":
        pass  # the stream is one-way; anything a client sends is ignored


@router.websocket("/live")
async def live(
    ws: WebSocket,
    equipment: Annotated[str | None, Query()] = None,
    paths: Annotated[list[str] | None, Query()] = None,
    key: Annotated[str | None, Query(description="API key, for clients that cannot send the X-API-Key header")] = None,
) -> None:
    app = ws.app
    view: LineView = app.state.view
    try:
        identify(app.state.keys, ws.headers.get(KEY_HEADER) or key, ws.client.host if ws.client else None)
    except AuthError as exc:
        await _deny(ws, exc.status, exc.detail)
        return
    if equipment is not None and view.get(equipment) is None:
        known = ", ".join(e.id for e in view.equipment())
        await _deny(ws, 404, f"equipment='{equipment}': no such machine on line '{view.line_id}' (known: {known})")
        return
    await ws.accept()
    overflow = asyncio.Event()
    queue = getattr(app.state, "live_queue", LIVE_QUEUE)
    stream = view.live(max_queue=queue, overflow=overflow, equipment=equipment)
    sender = asyncio.create_task(_send_loop(ws, view, app.state.presenter, equipment, PathFilter(paths), stream))
    closer = asyncio.create_task(_until_closed(ws))
    slow = asyncio.create_task(overflow.wait())
    try:
        done, _ = await asyncio.wait({sender, closer, slow}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, closer, slow):
            task.cancel()
        results = await asyncio.gather(sender, closer, slow, return_exceptions=True)
        await stream.aclose()  # unsubscribes from the runtime
    if slow in done:
        # More than `queue` messages waited for this client: it does not keep up (or does not read at all).
        # It is dropped, so no client holds the gateway's memory; a dashboard reconnects by itself.
        log.info("dropped a live client %s: more than %d messages waited for it",
                 ws.client.host if ws.client else "?", queue)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):  # a client that never reads may not take the close frame either
                await ws.close(code=1013, reason=f"too slow: more than {queue} live messages waited")
    for r in results:
        # A client that went away mid-send is the normal end of a stream, not an error.
        if isinstance(r, Exception) and not isinstance(r, (asyncio.CancelledError, WebSocketDisconnect, OSError, RuntimeError)):
            log.error("live stream ended with an error", exc_info=r)
