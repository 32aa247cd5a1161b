"""POST /equipment/{id}/commands/{command}: a command through the runtime's interlocks.

The runtime decides (role, availability, Remote authority, PackML table,
parameters) and audits; this route only maps its result code to HTTP:
accepted 200, refused by state 409, bad request 422, unknown object 404,
not supported 501. The body is always the result, with the reason in `detail`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from gateway.api.auth import Principal
from gateway.api.deps import Commander, Machine, SpecDep, View
from gateway.api.models import CommandBody, CommandOut, Problem
from gateway.runtime.view import CommandResult, EquipmentView, LineView
from interface_spec import Spec

router = APIRouter(tags=["commands"])

HTTP_STATUS = {
    "ok": 200,
    "accepted_completes_later": 200,
    "cannot_perform_now": 409,
    "already_in_state": 409,
    "parameter_invalid": 422,
    "invalid_command": 422,
    "no_such_object": 404,
    "not_supported": 501,
}


def command_id(spec: Spec, name: str) -> str:
    """The spec's spelling of a command ("start" -> "Start").

    An unknown name goes on as given: the runtime refuses it as invalid_command, and audits the attempt.
    """
    if name in spec.commands:
        return name
    return next((cid for cid in spec.commands if cid.lower() == name.lower()), name)


async def run_command(view: LineView, eq: EquipmentView, command: str, params: dict[str, Any],
                      who: Principal) -> JSONResponse:
    res: CommandResult = await view.command(eq.id, command, params, who.user, who.role)
    # A code the spec does not name came from the equipment itself: the gateway in between reports it as 502.
    status = HTTP_STATUS.get(res.result, 502)
    body = CommandOut(equipment=eq.id, command=res.command, code=res.code, result=res.result, detail=res.detail,
                      state_after=res.state_after, confirmed=res.confirmed, user=who.user, role=who.role)
    return JSONResponse(body.model_dump(), status_code=status)


RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": CommandOut, "description": "accepted: result ok or accepted_completes_later"},
    403: {"model": Problem, "description": "the caller may not command"},
    404: {"model": Problem, "description": "unknown equipment"},
    409: {"model": CommandOut, "description": "refused by interlock or state: cannot_perform_now, already_in_state"},
    422: {"model": CommandOut, "description": "parameter_invalid or invalid_command"},
    429: {"model": Problem, "description": "past api.command_limits for the caller or the machine; see Retry-After"},
    501: {"model": CommandOut, "description": "not_supported by this machine"},
}


@router.post("/equipment/{equipment_id}/commands/{command}", response_model=CommandOut, responses=RESPONSES,
             summary="Send a command (Start, Stop, Reset, SetOperationMode, ...)")
async def post_command(eq: Machine, command: str, view: View, spec: SpecDep, who: Commander,
                       body: Annotated[CommandBody | None, Body()] = None) -> JSONResponse:
    return await run_command(view, eq, command_id(spec, command), (body.params if body else {}), who)
