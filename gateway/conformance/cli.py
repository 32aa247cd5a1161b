"""`linegw conformance`: run the kit against one machine, list the catalogue, or verify a report.

    linegw conformance --opcua opc.tcp://10.0.0.21:4840/linegw/coater1 --class coater --out reports/
    linegw conformance --modbus 10.0.0.31:502 --unit-id 1 --class winder --allow-control
    linegw conformance --modbus 10.0.0.32:502 --class winder --mapping tobu-winder-modbus
    linegw conformance --list [--class coater]
    linegw conformance --verify reports/report.json

Exit codes: 0 conforms (every mandatory case ran and passed), 1 does not
conform (a mandatory case failed, is not implemented or ended in an error),
2 usage error, 3 incomplete (nothing mandatory failed, but mandatory cases
did not run: no --allow-control, --only, a claimed profile not asked for).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gateway.clitools import parse_duration
from gateway.conformance.runner import Result, Run

console = Console()
COLOURS = {"pass": "green", "fail": "red", "error": "red", "warning": "yellow", "not_implemented": "magenta",
           "not_applicable": "dim", "not_tested": "blue"}
EXIT_FAIL, EXIT_INCOMPLETE = 1, 3


def _list(cls: str | None) -> None:
    """The catalogue as plain lines: profile, unit, then one line per case (ID, layer, severity, tier, flags)."""
    from gateway.conformance.catalogue import build_catalogue
    from interface_spec import load_spec

    cat = build_catalogue(load_spec())
    if cls:
        cat = cat.for_class(cls)
    profiles, units, cases = cat.counts()
    print(f"Conformance catalogue, spec {cat.spec_version}{' for ' + cls if cls else ''}: {profiles} profiles, "
          f"{units} conformance units, {cases} test cases")
    print("Columns: ID, layer, severity, tier (M mandatory, R recommended), flags (control: needs --allow-control; "
          "binding), title, clause")
    profile = None
    for unit in cat.units.values():
        if unit.profile != profile:
            profile = unit.profile
            print(f"\n{profile}")
        print(f"  {unit.id} — {unit.title}")
        for c in unit.cases:
            flags = ",".join(f for f in ("control" if c.needs_control else "",
                                         c.bindings[0] if len(c.bindings) == 1 else "",
                                         "integration" if c.modes == ("integration",) else "") if f)
            print(f"    {c.id:<28} {c.layer:<12} {c.severity:<8} {c.tier}  {flags:<16} {c.title}  [{c.clause}]")


def _verify(path: Path) -> None:
    from gateway.conformance.report import verify

    ok, carried, actual = verify(path)
    if ok:
        console.print(f"[green]OK[/green] {path}: sha256 {actual}")
        return
    console.print(f"[red]MODIFIED[/red] {path}: carries {carried or '(no hash)'}, content hashes to {actual}")
    raise typer.Exit(1)


async def _operator(text: str) -> None:
    console.print(Panel(f"{escape(text)}\nThe kit waits until the machine shows it.", title="operator step",
                        style="bold yellow"))


def conformance(
    opcua: str | None = typer.Option(None, "--opcua", help="OPC UA endpoint, opc.tcp://host:port/path"),
    modbus: str | None = typer.Option(None, "--modbus", help="Modbus TCP endpoint, host:port"),
    unit_id: int = typer.Option(1, "--unit-id", help="Modbus unit id"),
    cls: str | None = typer.Option(None, "--class", help="claimed equipment class: coater, winder, formation"),
    profile: list[str] | None = typer.Option(None, "--profile", help="profile to test (repeatable); default: "
                                                                         "what the machine claims"),
    allow_control: bool = typer.Option(False, "--allow-control", help="send commands (behaviour and negative "
                                                                       "checks); never without it"),
    only: list[str] | None = typer.Option(None, "--only", help="run only the cases whose ID starts with this "
                                                                   "(repeatable), e.g. CTRL-PACKML"),
    out: Path = typer.Option(Path("conformance-report"), "--out", help="directory for the reports"),
    machine: str | None = typer.Option(None, "--machine", help="OPC UA machine object under Objects/Machines "
                                                                   "(default: last segment of the endpoint path)"),
    mapping: Path | None = typer.Option(None, "--mapping", help="integration mode: the machine's vendor file (a path, or a shipped name)"),
    absent: list[str] | None = typer.Option(None, "--absent", help="integration mode: a mandatory variable the "
                                                                       "machine does not have (repeatable; spec path, "
                                                                       "* matches anything: state.previous_*); "
                                                                       "reported as a gap instead of a failure"),
    security_mode: str = typer.Option("None", "--security-mode", help="OPC UA: None, Sign or SignAndEncrypt "
                                                                      "(Basic256Sha256)"),
    username: str | None = typer.Option(None, "--username", help="OPC UA user name"),
    password_env: str | None = typer.Option(None, "--password-env", help="environment variable holding the "
                                                                            "OPC UA password"),
    observe: str = typer.Option("10s", "--observe", help="observation window for the passive checks"),
    command_timeout: str = typer.Option("30s", "--command-timeout", help="time a commanded transition may take"),
    outage: str = typer.Option("2s", "--outage", help="how long the kit drops its link in the resilience checks"),
    unit_wait: str = typer.Option("60s", "--unit-wait", help="how long to wait for a unit made, if the observation "
                                                              "saw none"),
    operator_timeout: str = typer.Option("2m", "--operator-timeout", help="time an operator step may take"),
    clock_tolerance: str = typer.Option("5s", "--clock-tolerance", help="how far the machine's clock may be from "
                                        "the kit's; a source time going back by more is the clock's, not an order"),
    list_: bool = typer.Option(False, "--list", help="print the catalogue (of --class, if given) and exit"),
    verify_: Path | None = typer.Option(None, "--verify", help="check the SHA-256 a report carries and exit"),
    coverage: bool = typer.Option(False, "--coverage", help="print the coverage matrix (every clause of the spec and "
                                                            "the case that checks it) as Markdown and exit"),
) -> None:
    """Check that a machine implements the line interface spec; write JUnit, JSON, HTML and a compliance statement."""
    if list_:
        _list(cls)
        return
    if coverage:
        from gateway.conformance.catalogue import build_catalogue
        from gateway.conformance.coverage import markdown
        from interface_spec import load_spec

        spec = load_spec()
        print(markdown(spec, build_catalogue(spec)), end="")
        return
    if verify_ is not None:
        _verify(verify_)
        return
    if (opcua is None) == (modbus is None):
        raise typer.BadParameter("give exactly one of --opcua or --modbus")
    if cls is None:
        raise typer.BadParameter("--class is required (coater, winder or formation)")
    if absent and mapping is None:
        raise typer.BadParameter("--absent is for integration mode: give --mapping")
    if profile and ("Control" in profile or "Recipe" in profile) and not allow_control:
        raise typer.BadParameter("Control and Recipe send commands: add --allow-control")
    adapter: dict[str, object] = {"security_mode": security_mode}
    if username:
        adapter["username"] = username
    if password_env:
        if password_env not in os.environ:
            raise typer.BadParameter(f"environment variable {password_env} is not set", param_hint="--password-env")
        adapter["password"] = os.environ[password_env]
    from gateway.conformance.report import visible, write_reports
    from gateway.conformance.runner import Options, run_conformance
    from gateway.logs import configure

    configure("error")  # the kit reports link problems itself; adapter warnings would only interleave
    for name in ("asyncua", "pymodbus"):
        logging.getLogger(name).setLevel(logging.ERROR)
    options = Options(cls=cls, protocol="opcua" if opcua else "modbus", endpoint=opcua or modbus or "",
                      machine=machine, unit_id=unit_id, mapping=str(mapping) if mapping else None,
                      absent=list(absent or []),
                      profiles=list(profile) if profile else None, only=list(only) if only else None,
                      allow_control=allow_control,
                      observe_s=parse_duration(observe), command_timeout_s=parse_duration(command_timeout),
                      outage_s=parse_duration(outage), operator_timeout_s=parse_duration(operator_timeout),
                      unit_wait_s=parse_duration(unit_wait), clock_tolerance_s=parse_duration(clock_tolerance),
                      adapter=adapter)
    console.print("[bold]linegw conformance[/bold] " + escape(
        f"{options.cls} over {options.protocol} {options.endpoint}"
        f"{' through ' + options.mapping if options.mapping else ''}"
        f"{'' if allow_control else ' — no command will be sent (no --allow-control)'}"), highlight=False)

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("connecting and observing", total=None)

        said: set[str] = set()

        def progress(result: Result, done: int, total: int) -> None:
            bar.update(task, total=total, completed=done, description=result.case.id)
            if result.message.startswith("not run:") and result.message in said:
                return  # a connection failure is said once, not once per case
            said.add(result.message)
            if result.status != "pass":
                colour = COLOURS[result.status]
                bar.console.print(f"  [{colour}]{result.status:<15}[/{colour}] {result.case.id:<26} "
                                  f"{escape(visible(result.message))}", highlight=False)

        run = asyncio.run(run_conformance(options, operator=_operator, progress=progress))
    paths = write_reports(run, out)
    _summary(run, paths)
    if not run.passed:
        raise typer.Exit(EXIT_FAIL)
    if not run.complete:
        raise typer.Exit(EXIT_INCOMPLETE)


def _summary(run: Run, paths: dict[str, Path]) -> None:
    from gateway.conformance.report import summary, visible

    counts = summary(run)
    table = Table(title="Summary", show_header=True)
    for status in counts:
        table.add_column(status, justify="right", style=COLOURS[status])
    table.add_row(*(str(n) for n in counts.values()))
    console.print(table)
    failing = run.failing()
    shown: set[str] = set()
    for r in failing:
        if r.message.startswith("not run:") and r.message in shown:
            continue
        shown.add(r.message)
        console.print(f"  [red]{r.status}[/red] {r.case.id} ({escape(r.case.clause)}): {escape(visible(r.message))}",
                      highlight=False)
    for note in run.notes:
        console.print(f"  note: {escape(visible(note))}")
    ident = run.identity
    console.print(escape(visible(f"{ident.get('manufacturer', '')} {ident.get('model', '')} serial "
                         f"{ident.get('serial_number', '')}, software {ident.get('software_revision', '')}; "
                         f"spec {run.spec_version}, kit {run.kit_version}")), highlight=False)
    for kind, path in paths.items():
        console.print(f"  {kind:<9} {path}")
    from gateway.conformance.report import verdict_line

    colour = "green" if run.conforms else "red" if not run.passed else "blue"
    console.print(f"verdict: [{colour}]{escape(verdict_line(run))}[/{colour}]", highlight=False)
