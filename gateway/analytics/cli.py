"""`linegw report oee`: equipment time and OEE of a line from its store, for any range, as a table or JSON.

Reads the store the line file names (the gateway may be running on it: SQLite
in WAL mode lets a second process read) and computes what GET /api/v1/oee
serves, with the same method (gateway/analytics/oee.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import typer
from fastapi import HTTPException

from gateway.analytics.oee import E10_STATES, UNOBSERVED, OeeCalculator
from gateway.api.timeparams import TIME_FORMS, iso, parse_duration, parse_time
from gateway.clitools import DEMO_LINE, console, load_or_fail

report_app = typer.Typer(help="Reports computed from a line's stored records.", no_args_is_help=True)


def parse_range(text: str, now: float) -> tuple[float, float]:
    """"START..END" (either side ISO 8601, epoch seconds, relative like -8h, or now), or "8h": the last 8 hours."""
    try:
        if ".." in text:
            a, b = text.split("..", 1)
            t0, t1 = parse_time(a, "range start", now), parse_time(b or "now", "range end", now)
        else:
            t1 = now
            t0 = now - parse_duration(text, "range")
    except HTTPException as exc:
        raise typer.BadParameter(f"{exc.detail}; a range is START..END ({TIME_FORMS}) or a duration (8h)") from None
    if t1 <= t0:
        raise typer.BadParameter(f"the range ends ({iso(t1)}) before or when it starts ({iso(t0)})")
    return t0, t1


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _hours(s: float) -> str:
    return f"{s / 3600:.2f}"


def _print(report: dict[str, Any], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in ("machine", "class", *E10_STATES, UNOBSERVED, "avail.", "effect.", "quality", "OEE", "MTBF h",
                "MTTR min"):
        table.add_column(col, justify="left" if col in ("machine", "class") else "right")
    for m in report["machines"]:
        t = m["time_s"]
        table.add_row(m["equipment"], m["class"], *(_hours(t[s]) for s in (*E10_STATES, UNOBSERVED)),
                      _pct(m["availability"]), _pct(m["effectiveness"]), _pct(m["quality_ratio"]), _pct(m["oee"]),
                      "-" if m["mtbf_s"] is None else _hours(m["mtbf_s"]),
                      "-" if m["mttr_s"] is None else f"{m['mttr_s'] / 60:.1f}")
    # A narrow terminal or a pipe (80 columns) would squeeze the figures to ellipses.
    Console(width=max(console.width, 150)).print(table)
    console.print("times in hours; KPIs after ISO 22400-2, time states and MTBF/MTTR after SEMI E10")
    neck = report["bottleneck"]
    console.print(f"line OEE {_pct(report['line']['oee'])} ({report['line']['oee_basis']})")
    if neck:
        console.print(f"bottleneck: {neck['stage']} ({neck['equipment']}): {neck['why']}")
    for m in report["machines"]:
        for r in m["stop_reasons"][:5]:
            console.print(f"  stop reason {m['equipment']} {r['code']} {r['text']}: {r['occurrences']}x, "
                          f"{r['downtime_s'] / 60:.1f} min down ({_pct(r['cumulative_share'])} cumulative)")
        for note in m["notes"]:
            console.print(f"  {m['equipment']}: {note}")


@report_app.command("oee")
def oee(
    line_file: Path = typer.Argument(DEMO_LINE, help="line configuration YAML (its store.path is read)"),
    range_: str = typer.Option("24h", "--range", help="START..END or a duration back from now, e.g. 8h, "
                                                      "2026-12-01T06:00Z..2026-12-01T14:00Z, -2d..-1d"),
    equipment: str | None = typer.Option(None, "--equipment", help="one machine's id"),
    by_shift: bool = typer.Option(False, "--by-shift", help="also per shift of the line file's shifts: calendar"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON (what GET /api/v1/oee serves)"),
) -> None:
    """Time per SEMI E10 state, availability, effectiveness, quality, OEE, MTBF/MTTR, stop reasons, bottleneck."""
    cfg, spec = load_or_fail(line_file, secrets=False)  # a report needs none of the gateway's secrets
    t0, t1 = parse_range(range_, time.time())
    machines = {eq.id: eq.cls for eq in cfg.equipment}
    if equipment is not None and equipment not in machines:
        raise typer.BadParameter(f"no machine '{equipment}' on line '{cfg.line}' (known: {', '.join(machines)})")
    if by_shift and cfg.shifts is None:
        raise typer.BadParameter(f"--by-shift: {line_file} has no shifts: section")
    if not Path(cfg.store.path).exists():
        raise typer.BadParameter(f"{line_file}: store.path {cfg.store.path} does not exist; nothing was recorded")

    async def main() -> dict[str, Any]:
        from gateway.store.sqlite import SqliteStore

        async with SqliteStore(cfg.store.path) as store:  # no retention: a report deletes nothing
            calc = OeeCalculator(store, spec, machines)
            ids = [equipment] if equipment else None
            report = await calc.report(t0, t1, ids)
            if by_shift and cfg.shifts is not None:  # refused above when asked without a calendar
                report["shifts"] = await calc.shift_report(cfg.shifts, t0, t1, ids)
            return report

    report = asyncio.run(main())
    if as_json:
        print(json.dumps(report, indent=1))
        return
    _print(report, f"line '{cfg.line}' {iso(t0)} .. {iso(t1)}")
    for row in report.get("shifts", []):
        _print(row, f"shift {row['shift']}" + (f" of {row['day']}" if row["day"] else ", all days"))


@report_app.command("energy")
def energy(
    line_file: Path = typer.Argument(DEMO_LINE, help="line configuration YAML (its store.path is read)"),
    range_: str = typer.Option("24h", "--range", help="START..END or a duration back from now, e.g. 8h"),
    cell: str | None = typer.Option(None, "--cell", help="a cell's id: its energy and carbon by stage"),
    idle: str | None = typer.Option(None, "--idle", help="time, count or none: how idle energy is spread "
                                                         "(default: the line file's energy.idle, else time)"),
    factor: float | None = typer.Option(None, "--factor", min=0, help="grid emission factor, kgCO2e/kWh"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON (what GET /api/v1/energy serves)"),
) -> None:
    """Each machine's metered energy attributed to the units made, energy and carbon per cell, reconciled."""
    from gateway.analytics.energy import EnergyReport
    from gateway.analytics.energy_settings import EnergySettings

    cfg, spec = load_or_fail(line_file, secrets=False)
    t0, t1 = parse_range(range_, time.time())
    if idle is not None and idle not in ("time", "count", "none"):
        raise typer.BadParameter(f"--idle {idle}: give time, count or none")
    if not Path(cfg.store.path).exists():
        raise typer.BadParameter(f"{line_file}: store.path {cfg.store.path} does not exist; nothing was recorded")
    settings = (cfg.energy or EnergySettings()).asked(idle, factor)

    async def main() -> dict[str, Any]:
        from gateway.store.sqlite import SqliteStore

        async with SqliteStore(cfg.store.path) as store:
            machines: dict[str, str] = {eq.id: eq.cls for eq in cfg.equipment}
            return await EnergyReport(store, spec, machines, settings).report(t0, t1, cell)

    report = asyncio.run(main())
    if as_json:
        print(json.dumps(report, indent=1))
        return
    from rich.table import Table

    table = Table(title=f"line '{cfg.line}' {iso(t0)} .. {iso(t1)}: energy (kWh)", title_justify="left")
    for col in ("machine", "class", "metered", "to units", "idle", "idle spread", "unfinished", "units", "kgCO2e"):
        table.add_column(col, justify="left" if col in ("machine", "class") else "right")
    for eq, m in report["machines"].items():
        if not m["metered"]:
            table.add_row(eq, m["class"], "no meter", "", "", "", "", "", "")
            continue
        table.add_row(eq, m["class"], *(f"{m[k]:.3f}" for k in ("metered_kwh", "attributed_kwh", "idle_kwh",
                                                                "idle_spread_kwh", "unfinished_kwh")),
                      str(m["units"]), f"{m['kg_co2e']:.3f}")
    console.print(table)
    cells, rec = report["cells"], report["reconciliation"]
    per = cells["per_cell"]
    console.print(f"{cells['count']} cells: {cells['kwh']:.3f} kWh"
                  + (f", {per['kwh']:.4f} kWh and {per['kg_co2e']:.4f} kgCO2e per cell" if per else ""))
    console.print(f"reconciled: meters {rec['meters_kwh']:.3f} = cells {rec['cells_kwh']:.3f} + in process "
                  f"{rec['in_process_kwh']:.3f} + unattributed {rec['unattributed_kwh']:.3f} "
                  f"(difference {rec['difference_kwh']:.2e})")
    if cell is not None:
        if report["cell"] is None:
            console.print(f"cell {cell}: no energy reached it in this range")
        else:
            stages = ", ".join(f"{k} {v['kwh']:.4f}" for k, v in report["cell"]["by_stage"].items())
            console.print(f"cell {cell}: {report['cell']['kwh']:.4f} kWh, {report['cell']['kg_co2e']:.4f} kgCO2e "
                          f"({stages})")


export_app = typer.Typer(help="Exports computed from a line's stored records: the feature table, passports.",
                         no_args_is_help=True)


def _store_of(line_file: Path) -> tuple[Any, Any]:
    cfg, spec = load_or_fail(line_file, secrets=False)
    if not Path(cfg.store.path).exists():
        raise typer.BadParameter(f"{line_file}: store.path {cfg.store.path} does not exist; nothing was recorded")
    return cfg, spec


@export_app.command("cells")
def export_cells(
    line_file: Path = typer.Argument(DEMO_LINE, help="line configuration YAML (its store.path is read)"),
    range_: str = typer.Option("24h", "--range", help="cells graded in START..END or a duration back from now"),
    fmt: str = typer.Option("parquet", "--format", help="parquet or csv"),
    out: Path = typer.Option(..., "--out", help="the file to write"),
) -> None:
    """The quality feature table: one row per graded cell with its grade, results and upstream stage statistics."""
    from gateway.analytics.features import FeatureTable, to_csv, to_parquet

    if fmt not in ("parquet", "csv"):
        raise typer.BadParameter(f"--format {fmt}: give parquet or csv")
    cfg, spec = _store_of(line_file)
    t0, t1 = parse_range(range_, time.time())

    async def main() -> tuple[list[dict[str, Any]], Any]:
        from gateway.store.sqlite import SqliteStore

        async with SqliteStore(cfg.store.path) as store:
            machines: dict[str, str] = {eq.id: eq.cls for eq in cfg.equipment}
            return await FeatureTable(store, spec, machines).rows(t0, t1)

    rows, columns = asyncio.run(main())
    if fmt == "csv":
        out.write_text(to_csv(rows, columns), encoding="utf-8")
    else:
        out.write_bytes(to_parquet(rows, columns, {"from": iso(t0) or "", "to": iso(t1) or "",
                                                   "method": "gateway/analytics/features.py"}))
    console.print(f"{len(rows)} cells, {len(columns)} columns -> {out}")


@export_app.command("passport")
def export_passport(
    unit_id: str = typer.Argument(..., help="a cell's id, or a lot or roll: the passports of every cell made from it"),
    line_file: Path = typer.Option(DEMO_LINE, "--line", help="line configuration YAML (its store.path is read)"),
    out: Path = typer.Option(..., "--out", help="the AAS JSON file to write"),
) -> None:
    """The manufacturing part of the battery passport as Asset Administration Shell JSON."""
    from gateway.analytics.passport import PassportBuilder, to_json

    cfg, spec = _store_of(line_file)

    async def main() -> tuple[Any, int]:
        from gateway.store.sqlite import SqliteStore

        async with SqliteStore(cfg.store.path) as store:
            machines: dict[str, str] = {eq.id: eq.cls for eq in cfg.equipment}
            builder = PassportBuilder(store, spec, machines, cfg.line, cfg.energy)
            one = await builder.cell(unit_id)
            if one is not None:
                return one, 1
            lot = await builder.lot(unit_id)
            return (lot[0], len(lot[1])) if lot else (None, 0)

    objects, cells = asyncio.run(main())
    if objects is None or not cells:
        console.print(f"[red]no cell was graded as '{unit_id}' or made from it[/red]")
        raise typer.Exit(1)
    out.write_text(to_json(objects), encoding="utf-8")
    console.print(f"passport of {cells} cell{'s' if cells != 1 else ''} -> {out}")
