"""Southbound protocol adapters, found through the `linegw.adapters` entry point.

A plug-in adapter may declare, as attributes of its class, pydantic models of
what it takes: `Settings` (its `adapter:` settings in a line file) and
`Address` (the fields of a point's `source: {point: {...}}` in a vendor file).
Both are checked when a line or vendor file loads, each refusal at its field.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

from gateway.adapters.base import AdapterFactory


def declared_model(protocol: str, kind: str) -> type[BaseModel] | None:
    """The pydantic model a plug-in adapter declares as its class's `kind` ("Settings", "Address"), if any."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="linegw.adapters"):
        if ep.name == protocol:
            declared = getattr(ep.load(), kind, None)
            return declared if isinstance(declared, type) and issubclass(declared, BaseModel) else None
    return None


def model_problems(model: type[BaseModel], raw: dict[str, Any], what: str,
                   where: tuple[Any, ...]) -> list[tuple[tuple[Any, ...], str]]:
    """`raw` against a plug-in's model: each refusal at its field; a name it does not know with the nearest.
    `what` names a field of the model in messages, e.g. "a setting of the jsonfile adapter"."""
    try:
        model.model_validate(raw)
    except ValidationError as exc:
        out = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else ""
            if err["type"] == "extra_forbidden":
                near = difflib.get_close_matches(name, sorted(model.model_fields), n=1)
                hint = f"did you mean {near[0]}?" if near else f"known: {', '.join(sorted(model.model_fields))}"
                out.append((where + (name,), f"not {what}; {hint}"))
            else:
                out.append((where + ((name,) if name else ()), err["msg"]))  # the location names the field
        return out
    return []


def adapter_factory(protocol: str) -> AdapterFactory:
    """Find an adapter by entry-point name: built-in and third-party adapters alike."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="linegw.adapters"):
        if ep.name == protocol:
            result: AdapterFactory = ep.load()
            return result
    known = ", ".join(sorted(ep.name for ep in entry_points(group="linegw.adapters")))
    raise LookupError(f"no adapter '{protocol}' is installed (entry point group linegw.adapters: {known})")
