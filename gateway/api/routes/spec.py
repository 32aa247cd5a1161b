"""GET /spec and /spec/{class}: the line interface spec the gateway serves, as JSON."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from gateway.api.deps import PresenterDep, SpecDep

router = APIRouter(tags=["spec"])


@router.get("/spec", summary="Spec version, classes, commands, result codes and enums")
async def get_spec(spec: SpecDep) -> dict[str, Any]:
    core = spec.core
    return {
        "version": spec.version,
        "title": core.title,
        "classes": [{"id": c.id, "title": c.title, "processed_unit": c.processed_unit} for c in spec.classes.values()],
        "commands": [c.model_dump() for c in core.commands],
        "result_codes": dict(spec.result_codes),
        "packml": core.packml.model_dump(),
        "enums": dict(core.enums),
        "units": [u.model_dump() for u in core.units],
        "events": [e.model_dump() for e in core.events],
    }


@router.get("/spec/{cls}", summary="One equipment class: variables with units and ranges, alarms, commands, events")
async def get_class(cls: str, spec: SpecDep, presenter: PresenterDep) -> dict[str, Any]:
    if cls not in spec.classes:
        raise HTTPException(404, f"no equipment class '{cls}'; the spec has {', '.join(spec.classes)}")
    c = spec.get_class(cls)
    variables = []
    for d in spec.variables(cls):
        v = d.var
        variables.append({
            "path": d.template, "type": v.type, "unit": presenter.unit(v.unit), "range": v.range,
            "enum": v.enum, "members": spec.enum(v.enum) if v.enum else None, "category": v.category.value,
            "access": v.access, "tier": v.tier.value, "sampling_ms": v.sampling_ms,
            "array_max": d.sub_unit.array.max if d.sub_unit.array else None, "owner": d.owner, "doc": v.doc,
        })
    return {
        "id": c.id, "title": c.title, "doc": c.doc, "processed_unit": c.processed_unit, "spec_version": spec.version,
        "profiles": spec.profiles(cls),
        "variables": variables,
        "alarms": [a.model_dump() for a in spec.alarms(cls)],
        "commands": [x.model_dump() for x in spec.core.commands],
        "events": c.events,
        "unit_processed": {k: presenter.unit(u) for k, u in c.unit_processed.items()},
        "recipe": [r.model_dump() for r in c.recipe],
    }
