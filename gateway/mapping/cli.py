"""`linegw mapping`: check a vendor file for both of its uses, and draft one from a machine.

`validate` reads the file as the gateway does (every path, enum member,
alarm, command, unit and register against the spec) and then as the
simulators serve it (a code for every member, one command register...), and
prints every problem as `file:line: field: message`.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from gateway.clitools import console, err_console, fail
from interface_spec import SpecError, load_spec
from interface_spec.vendor import vendor_path

mapping_app = typer.Typer(help="Vendor files: the gateway reads a machine through one, the simulators serve it.",
                          no_args_is_help=True)


@mapping_app.command("validate")
def validate(file: str = typer.Argument(..., help="a vendor file, or a shipped vendor's name"),
             strict: bool = typer.Option(False, "--strict", help="mandatory variables left unmapped are errors")) -> None:
    """Check a vendor file as the gateway reads it and as the simulators serve it; errors give file:line: field."""
    from gateway.mapping.compile import load_mapping, unmapped_mandatory
    from simulators.dialects import load_dialect

    path = vendor_path(file)
    if not path.is_file():
        fail(SpecError(f"{path}: no such file"))
    spec = load_spec()
    problems: list[str] = []
    m = None
    try:
        m = load_mapping(path, spec)
    except SpecError as exc:
        problems += str(exc).splitlines()
    if m is not None:  # serving asks more of a file the gateway reads; the same problem is reported once
        try:
            load_dialect(path, spec)
        except SpecError as exc:
            problems += str(exc).splitlines()
    gaps = unmapped_mandatory(spec, m) if m is not None else []
    if strict and gaps:
        problems.append(f"{path}: leaves {len(gaps)} mandatory variables unmapped: {', '.join(gaps)}")
    if problems or m is None:
        fail(SpecError("\n".join(problems)))
    console.print(f"[green]OK[/green] {path}: a {m.cls} over {m.protocol}: {len(m.variables)} variables, "
                  f"{sum(a.alarm != '*' for a in m.alarms) + len(m.alarm_code.codes if m.alarm_code else {})} alarm "
                  f"sources, {len(m.commands)} commands, {len(m.events)} event triggers; read by the gateway and "
                  "served by the simulators alike")
    if gaps:
        err_console.print(f"[yellow]warning:[/yellow] {Path(path).name} leaves {len(gaps)} mandatory variables unmapped: "
                          f"{escape(', '.join(gaps))}", highlight=False)


def discover(cls: str = typer.Option(..., "--class", help="the equipment class the machine is (coater, winder, formation)"),
             opcua: str | None = typer.Option(None, "--opcua", help="browse this OPC UA server (opc.tcp://host:port/path)"),
             modbus: str | None = typer.Option(None, "--modbus", help="read this Modbus TCP device (host:port)"),
             unit_id: int = typer.Option(1, "--unit-id", min=0, max=255, help="Modbus unit id"),
             ranges: str = typer.Option("holding:0-999,input:0-999", "--ranges",
                                        help="Modbus registers to read, e.g. holding:4000-4499,input:0-99"),
             registers: Path | None = typer.Option(None, "--registers", help="the vendor's Modbus register list (CSV: "
                                                   "name, table, address, dtype, count, bit, stride, scale, unit, "
                                                   "description): registers matched by their names"),
             out: Path | None = typer.Option(None, "--out", help="write the draft here (default: print it)")) -> None:
    """Draft a vendor file from a machine: names and units matched to the spec, the rest listed to do."""
    import asyncio

    from gateway.endpoint import parse_endpoint
    from gateway.mapping.discover import discover_modbus, discover_opcua, parse_ranges, read_register_list

    spec = load_spec()
    if cls not in spec.classes:
        fail(SpecError(f"--class: unknown equipment class '{cls}' (known: {', '.join(spec.classes)})"))
    if (opcua is None) == (modbus is None):
        fail(SpecError("give one of --opcua URL or --modbus HOST:PORT"))
    try:
        if opcua is not None:
            draft, source = asyncio.run(discover_opcua(spec, cls, opcua)), opcua
        else:
            assert modbus is not None
            where = parse_endpoint(modbus if "://" in modbus else f"modbus://{modbus}")
            rows = read_register_list(str(registers)) if registers is not None else None
            draft = asyncio.run(discover_modbus(spec, cls, where.host, where.port or 502, unit_id, parse_ranges(ranges),
                                                register_list=rows))
            source = f"modbus://{modbus.removeprefix('modbus://')} unit {unit_id} " + (
                f"(register list {registers.name})" if registers is not None else f"({ranges})")
    except (OSError, ValueError, TimeoutError) as exc:
        fail(SpecError(f"{opcua or modbus}: {exc}"))
    text = draft.text(source)
    if out is None:
        console.print(text, end="", markup=False, highlight=False)
    else:
        out.write_text(text, encoding="utf-8")
    err_console.print(f"drafted {len(draft.variables)} variables, {len(draft.alarms)} alarms, {len(draft.commands)} "
                      f"commands; {len(draft.todo)} mandatory variables to do"
                      + (f"; written to {out}" if out else ""), highlight=False)
