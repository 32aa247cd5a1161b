"""GET /audit: every command request, accepted or refused, with who sent it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from gateway.api.deps import PresenterDep, Store, View, equipment_filter
from gateway.api.models import AuditRecord

router = APIRouter(tags=["audit"])


@router.get("/audit", response_model=list[AuditRecord], summary="The command audit log, newest first")
async def get_audit(
    view: View, store: Store, presenter: PresenterDep,
    equipment: Annotated[str | None, Query(description="one machine's id")] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 200,
) -> list[dict[str, Any]]:
    equipment_filter(view, equipment)
    return [presenter.row(r) for r in await store.audit(limit=limit, equipment=equipment)]
