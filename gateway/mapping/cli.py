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
