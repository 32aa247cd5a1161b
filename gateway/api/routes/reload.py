"""POST /reload: the gateway reads its line file again; changed machines restart, the others run on.

The same as sending the gateway SIGHUP. A file that does not load (or a change
only a restart can make) is refused with its file:line reasons and the running
line stays as it was. Every reload, applied or refused, is in the audit log.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Request

from gateway.api.deps import Engineer, SpecDep, Store
from gateway.api.models import Problem, ReloadOut
from gateway.runtime.line import ReloadRefused
from interface_spec import SpecError

router = APIRouter(tags=["line"])
AUDIT_TARGET = "*"  # the audit log's equipment column: the line as a whole


@router.post("/reload", response_model=ReloadOut,
             responses={409: {"model": Problem, "description": "started without a line file (linegw demo)"},
                        422: {"model": Problem, "description": "the file was refused; the running line is unchanged"}},
             summary="Read the line file again: machines whose entry or mapping changed restart, new ones start, "
                     "removed ones stop, the others run on untouched")
async def post_reload(request: Request, who: Engineer, store: Store, spec: SpecDep) -> ReloadOut:
    reload = getattr(request.app.state, "reload", None)
    if reload is None:
        raise HTTPException(409, "this gateway was started without a line file (linegw demo); restart it to change the line")
    try:
        result = await reload()
    except (SpecError, ReloadRefused, OSError) as exc:
        why = str(exc)
        await store.record_audit(time.time(), who.user, who.role, AUDIT_TARGET, "ReloadLine", {},
                                 spec.result_codes["parameter_invalid"], "parameter_invalid", why)
        raise HTTPException(422, f"the line file was not applied, the running line is unchanged: {why}") from None
    await store.record_audit(time.time(), who.user, who.role, AUDIT_TARGET, "ReloadLine", {}, spec.result_codes["ok"],
                             "ok", "; ".join(f"{k}: {', '.join(v)}" for k, v in result.items() if v) or "no change")
    return ReloadOut(**result)
