"""Shared needs of the routes, as FastAPI dependencies.

The view, the store, the spec and the key ring live on `app.state` (set by
`create_app`); routes take them through these annotated types and never
import the runtime or the store directly. Dependencies and routes are
`async def`: they run on the event loop that owns the runtime's state, so a
read never races a write from another thread.
"""

from __future__ import annotations

import math
import time
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Security
from fastapi.security import APIKeyHeader
from starlette.requests import HTTPConnection

from gateway.api.auth import KEY_HEADER, AuthError, KeyRing, Principal, command_refusal, identify
from gateway.api.present import Presenter
from gateway.api.ratelimit import Limiter
from gateway.runtime.view import EquipmentView, LineView
from gateway.store.base import Store as StoreProtocol
from interface_spec import Spec


async def get_view(conn: HTTPConnection) -> LineView:
    result: LineView = conn.app.state.view
    return result


async def get_store(conn: HTTPConnection) -> StoreProtocol:
    store: StoreProtocol = conn.app.state.store
    return store


async def get_spec(conn: HTTPConnection) -> Spec:
    result: Spec = conn.app.state.spec
    return result


async def get_presenter(conn: HTTPConnection) -> Presenter:
    result: Presenter = conn.app.state.presenter
    return result


async def forward_status(conn: HTTPConnection) -> dict[str, Any]:
    """Per forwarding sink: counters, backlog, lag and discards; {} when the line forwards nowhere."""
    forwarding = getattr(conn.app.state, "forwarding", None)
    return await forwarding.status() if forwarding is not None else {}


View = Annotated[LineView, Depends(get_view)]
Store = Annotated[StoreProtocol, Depends(get_store)]
SpecDep = Annotated[Spec, Depends(get_spec)]
PresenterDep = Annotated[Presenter, Depends(get_presenter)]
ForwardStatus = Annotated[dict[str, Any], Depends(forward_status)]

# auto_error=False: a missing key is our own 401 with a reason, and only when keys are configured.
_key_header = APIKeyHeader(name=KEY_HEADER, auto_error=False, description="API key from api.keys (when configured)")


async def caller(conn: HTTPConnection, key: Annotated[str | None, Security(_key_header)] = None) -> Principal:
    ring: KeyRing = conn.app.state.keys
    try:
        return identify(ring, key, conn.client.host if conn.client else None)
    except AuthError as exc:
        raise HTTPException(exc.status, exc.detail) from None


Caller = Annotated[Principal, Depends(caller)]


async def commander(conn: HTTPConnection, principal: Caller) -> Principal:
    reason = command_refusal(principal, conn.client.host if conn.client else None)
    if reason:
        await _audit_refusal(conn, principal, reason)
        raise HTTPException(403, reason)
    limiter: Limiter = conn.app.state.limiter
    machine = conn.path_params.get("equipment_id", "")
    refused = limiter.take(principal.user, machine)
    if refused:
        why, wait = refused
        if limiter.first_refusal(principal.user, machine):
            await _audit_refusal(conn, principal, why)
        raise HTTPException(429, why, headers={"Retry-After": str(max(1, math.ceil(wait)))})
    return principal


async def _audit_refusal(conn: HTTPConnection, principal: Principal, reason: str) -> None:
    """A command refused for the caller's role goes into the audit log in the caller's name, as the
    runtime records its own refusals: who tried what is the point of the log. Only callers a key
    identified: an anonymous client could otherwise fill the log at will."""
    equipment_id = conn.path_params.get("equipment_id")
    command = conn.path_params.get("command") or ("AcknowledgeAlarm" if "code" in conn.path_params else None)
    if not principal.via_key or command is None or conn.app.state.view.get(equipment_id) is None:
        return
    spec: Spec = conn.app.state.spec
    await conn.app.state.store.record_audit(time.time(), principal.user, principal.role, equipment_id, command, {},
                                            spec.result_codes["cannot_perform_now"], "cannot_perform_now", reason)


Commander = Annotated[Principal, Depends(commander)]


async def engineer(conn: HTTPConnection, principal: Caller) -> Principal:
    """Changing the line itself (reloading its file) is an engineer's: an operator runs machines, not the gateway."""
    reason = command_refusal(principal, conn.client.host if conn.client else None)
    if reason is None and principal.role != "engineer":
        reason = f"user '{principal.user}' has role '{principal.role}'; changing the line needs role engineer"
    if reason:
        raise HTTPException(403, reason)
    return principal


Engineer = Annotated[Principal, Depends(engineer)]


async def machine(view: View, equipment_id: Annotated[str, Path(description="equipment id from the line file")]) -> EquipmentView:
    eq = view.get(equipment_id)
    if eq is None:
        known = ", ".join(e.id for e in view.equipment())
        raise HTTPException(404, f"no equipment '{equipment_id}' on line '{view.line_id}' (known: {known})")
    return eq


Machine = Annotated[EquipmentView, Depends(machine)]


def equipment_filter(view: LineView, equipment_id: str | None) -> str | None:
    """Check an optional ?equipment= filter: 404 when it names no machine of the line."""
    if equipment_id is not None and view.get(equipment_id) is None:
        known = ", ".join(e.id for e in view.equipment())
        raise HTTPException(404, f"equipment='{equipment_id}': no such machine on line '{view.line_id}' (known: {known})")
    return equipment_id
