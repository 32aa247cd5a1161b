"""Tooling around the spec: validation, tables of a class and its bindings,
JSON Schema export and the reference docs.

Plain functions that return an exit status and text (or a rich renderable),
so that the `linegw spec` commands in `interface_spec/cli.py` stay thin and
tests call exactly what the commands run.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from . import docs as docs_mod
from .loader import SpecError
from .modbus_map import layout
from .model import Core, EquipmentClass, SelfDescription
from .opcua_map import opcua_type, pascal, unece_unit_id
from .spec import SPEC_DIR, Spec, load_spec

SCHEMA_DIR = SPEC_DIR / "schema"
DOCS_DIR = docs_mod.DOCS_DIR
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

# File name -> (model, title, what the file describes).
SCHEMAS: dict[str, tuple[type[BaseModel], str, str]] = {
    "core.schema.json": (Core, "Line interface spec: core file (common.yaml)",
                         "The frozen core every equipment class carries."),
    "class.schema.json": (EquipmentClass, "Line interface spec: class profile (coater.yaml, winder.yaml, ...)",
                          "One equipment class: sub-units, variables, alarms, events, recipe parameters."),
    "self-description.schema.json": (SelfDescription, "Line interface spec: equipment self-description",
                                     "The data dictionary a machine serves about itself (after SEMI E172)."),
}
BINDINGS = ("opcua", "modbus")
STALE_HINT = "run `make docs` (or `linegw spec docs`) and commit the result"


# --- loading -----------------------------------------------------------------------------


def fresh_spec(folder: str | Path | None = None) -> Spec:
    """Load a spec folder from disk, bypassing load_spec's cache: files may have changed since."""
    return load_spec.__wrapped__(folder)


def summary(spec: Spec) -> str:
    core = spec.core
    core_vars = sum(len(su.variables) for su in core.sub_units)
    lines = [
        f"OK: line interface spec {spec.version} ({spec.folder})",
        f"  core: {core_vars} variables in {len(core.sub_units)} sub-units, {len(core.alarms)} alarms, "
        f"{len(core.commands)} commands, {len(core.events)} event types, {len(core.enums)} enums, "
        f"{len(core.units)} units",
    ]
    for cid, cls in spec.classes.items():
        own = sum(len(su.variables) for su in cls.sub_units)
        lines.append(f"  {cid}: {own} variables in {len(cls.sub_units)} sub-units, {len(cls.alarms)} alarms, "
                     f"{len(cls.recipe)} recipe parameters, Modbus block {cls.modbus_block}")
    return "\n".join(lines)


def validate(folder: str | Path | None = None) -> tuple[int, str]:
    """Load a spec folder with every check: (0, summary) or (1, the errors, one per line)."""
    try:
        spec = fresh_spec(folder)
    except SpecError as exc:
        problems = str(exc).splitlines()
        where = folder or SPEC_DIR
        head = f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in the spec at {where}:"
        return 1, "\n".join([head, *problems])
    return 0, summary(spec)


# --- JSON Schema ---------------------------------------------------------------------------


def schemas() -> dict[str, str]:
    """The JSON Schema files, by file name, as the text that is committed."""
    out = {}
    for name, (model, title, description) in SCHEMAS.items():
        body = model.model_json_schema()
        doc = {"$schema": JSON_SCHEMA_DIALECT, "$id": f"urn:linegw:line-interface:schema:{name.removesuffix('.schema.json')}",
               **body, "title": title, "description": description}
        out[name] = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    return out


def export_schema(folder: str | Path = SCHEMA_DIR) -> list[Path]:
    """Write the JSON Schemas of the spec format into `folder`; returns the files written."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in schemas().items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


# --- docs ------------------------------------------------------------------------------------


def generated(spec: Spec | None = None) -> dict[str, dict[str, str]]:
    """Everything `docs` writes: {"docs": {file: text}, "schema": {file: text}}."""
    spec = spec or fresh_spec()
    return {"docs": docs_mod.render_docs(spec), "schema": schemas()}


def _compare(folder: Path, wanted: dict[str, str], pattern: str) -> list[str]:
    problems = []
    for name, text in wanted.items():
        path = folder / name
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: out of date")
    if folder.is_dir():
        for path in sorted(folder.glob(pattern)):
            if path.name not in wanted:
                problems.append(f"{path}: not generated any more")
    return problems


def stale_files(docs_dir: str | Path = DOCS_DIR, schema_dir: str | Path = SCHEMA_DIR,
                spec: Spec | None = None) -> list[str]:
    """Generated files that differ from what is on disk, one line each; empty when all are current."""
    gen = generated(spec)
    return _compare(Path(docs_dir), gen["docs"], "*.md") + _compare(Path(schema_dir), gen["schema"], "*.json")


def write_generated(docs_dir: str | Path = DOCS_DIR, schema_dir: str | Path = SCHEMA_DIR,
                    spec: Spec | None = None) -> list[Path]:
    """Regenerate the reference docs and the JSON Schemas; returns the files written."""
    spec = spec or fresh_spec()
    written = docs_mod.write_docs(docs_dir, spec) + export_schema(schema_dir)
    # Pages of classes that no longer exist would mislead readers.
    wanted = set(docs_mod.render_docs(spec))
    for path in Path(docs_dir).glob("*.md"):
        if path.name not in wanted:
            path.unlink()
    return written


def docs(check: bool = False, docs_dir: str | Path = DOCS_DIR, schema_dir: str | Path = SCHEMA_DIR) -> tuple[int, str]:
    """Regenerate docs and schemas, or with `check` report the stale ones (exit status 1)."""
    try:
        spec = fresh_spec()
    except SpecError as exc:
        return 1, f"the spec does not load, so no docs:\n{exc}"
    if check:
        stale = stale_files(docs_dir, schema_dir, spec)
        if stale:
            return 1, "\n".join(["generated spec docs are stale:", *stale, STALE_HINT])
        return 0, f"spec docs and schemas are up to date ({docs_dir}, {schema_dir})"
    written = write_generated(docs_dir, schema_dir, spec)
    return 0, "\n".join(f"wrote {p}" for p in written)


def schema(folder: str | Path = SCHEMA_DIR) -> tuple[int, str]:
    written = export_schema(folder)
    return 0, "\n".join(f"wrote {p}" for p in written)


# --- tables of a class ------------------------------------------------------------------------------


def _plain(markdown: str) -> str:
    """Markdown cell text as plain text: no backticks, links as their text."""
    return re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", str(markdown)).replace("`", "").replace("**", "")


def variables_table(spec: Spec, cls: str) -> Table:
    c = spec.get_class(cls)
    table = Table(title=f"{cls} — {c.title} (spec {spec.version})", title_justify="left")
    for col in ("Path", "Type", "Unit", "Range", "Category", "Access", "Sampling", "Tier", "From"):
        table.add_column(col, no_wrap=col in ("Path", "Range"))
    for d in spec.variables(cls):
        v = d.var
        unit = "" if v.unit == "1" else f"{v.unit} ({spec.units[v.unit].symbol})"
        table.add_row(d.template, _plain(docs_mod.type_text(v)), unit, docs_mod.range_text(v.range),
                      v.category.value, v.access, docs_mod.sampling_text(v.sampling_ms),
                      docs_mod.tier_text(v, d.sub_unit), d.owner if v.origin == "equipment" else "gateway")
    return table


def opcua_table(spec: Spec, cls: str) -> Table:
    ua = spec.core.opcua
    table = Table(title=f"{cls} over OPC UA: Objects/{ua.machines_folder}/<machine>/…, namespace {ua.namespace_uri}",
                  title_justify="left")
    for col in ("Path", "Browse path", "DataType", "UnitId", "EURange", "Access"):
        table.add_column(col, no_wrap=col in ("Path", "Browse path"))
    for d in spec.variables(cls):
        v, su = d.var, d.sub_unit
        if v.origin != "equipment":
            continue
        folder = f"{pascal(su.id)}_{'N' * max(2, len(str(su.array.max)))}" if su.array else pascal(su.id)
        numeric = v.type in ("float", "int", "uint")
        unit_id = str(unece_unit_id(spec.units[v.unit].unece)) if numeric else ""
        table.add_row(d.template, f"{folder}/{pascal(v.id)}", opcua_type(v), unit_id,
                      docs_mod.range_text(v.range) if numeric else "", v.access)
    return table


def modbus_table(spec: Spec, cls: str) -> Table:
    c = spec.get_class(cls)
    lay = layout(spec.core, c)
    table = Table(title=f"{cls} over Modbus: holding registers, block {c.modbus_block}, "
                        f"class data {lay.class_start}–{lay.class_end - 1}", title_justify="left")
    for col in ("Address", "Ref", "Name", "dtype", "Regs", "Access", "Unit", "Notes"):
        table.add_column(col, no_wrap=col in ("Address", "Ref", "Name"))
    for row in docs_mod.modbus_rows(spec, cls):
        table.add_row(*(_plain(x) for x in row))
    for name in ("dictionary.length", "dictionary.text"):
        p = lay.areas[name]
        table.add_row(str(p.address), str(p.address + 1), name, p.dtype, str(p.count), "read", "—",
                      "self-description" if name.endswith("text") else "characters of the self-description")
    return table


def show_table(spec: Spec, cls: str, binding: str | None = None) -> Table:
    """The variables of a class with units and ranges, or its map in one binding."""
    if binding is None:
        return variables_table(spec, cls)
    if binding == "opcua":
        return opcua_table(spec, cls)
    if binding == "modbus":
        return modbus_table(spec, cls)
    raise ValueError(f"unknown binding '{binding}' (one of {', '.join(BINDINGS)})")


def render(renderable: Any, width: int = 200) -> str:
    """A rich renderable as plain text."""
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False).print(renderable)
    return buf.getvalue()


def show(cls: str, binding: str | None = None, folder: str | Path | None = None, width: int = 200) -> tuple[int, str]:
    """`show` as text: (0, the table) or (1, why not)."""
    try:
        spec = fresh_spec(folder)
        return 0, render(show_table(spec, cls, binding), width)
    except SpecError as exc:
        return 1, str(exc)
    except (KeyError, ValueError) as exc:
        return 1, str(exc.args[0]) if exc.args else str(exc)

