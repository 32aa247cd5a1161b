"""`linegw spec`: validate, show and document the line interface spec.

A typer sub-app; gateway/cli.py mounts it as `linegw spec`. Every command is
a thin shell over `interface_spec.tooling`, which returns an exit status and
the text to print.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.measure import Measurement

from . import tooling
from .loader import SpecError

spec_app = typer.Typer(help="Validate, show and document the line interface spec.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)


class Binding(str, Enum):
    opcua = "opcua"
    modbus = "modbus"


def _finish(status: int, text: str) -> None:
    # soft_wrap: paths and file:line messages must not be broken at the terminal width.
    (console if status == 0 else err_console).print(text, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(status)


@spec_app.command("validate")
def validate(
    folder: Path | None = typer.Argument(None, help="spec folder (default: the spec shipped with linegw)"),
) -> None:
    """Load the spec with every check; print OK with version and counts, or every error as file:line: field: problem."""
    _finish(*tooling.validate(folder))


@spec_app.command("show")
def show(
    cls: str = typer.Argument(..., metavar="CLASS", help="equipment class: coater, winder, formation"),
    binding: Binding | None = typer.Option(None, "--binding", "-b", help="show the OPC UA or Modbus map instead"),
    folder: Path | None = typer.Option(None, "--folder", help="spec folder (default: the shipped spec)"),
) -> None:
    """A class's variables with types, units, ranges and tiers, or its binding map."""
    try:
        spec = tooling.fresh_spec(folder)
        table = tooling.show_table(spec, cls, binding.value if binding else None)
    except SpecError as exc:
        _finish(1, str(exc))
    except KeyError as exc:
        _finish(1, str(exc.args[0]) if exc.args else str(exc))
    # Wider than the terminal rather than squeezed: the table is for reading and for grep.
    width = Measurement.get(console, console.options.update(max_width=1000), table).maximum
    (Console(width=width) if width > console.width else console).print(table)


@spec_app.command("docs")
def docs(
    check: bool = typer.Option(False, "--check", help="do not write; exit 1 when the committed docs or schemas are stale"),
) -> None:
    """Regenerate the reference docs (interface_spec/docs/) and the JSON Schemas (interface_spec/schema/)."""
    _finish(*tooling.docs(check=check))


@spec_app.command("schema")
def schema(
    folder: Path = typer.Argument(tooling.SCHEMA_DIR, help="where to write the JSON Schema files"),
) -> None:
    """Export the JSON Schemas of the spec format: core file, class file, self-description."""
    _finish(*tooling.schema(folder))
