"""Run the catalogue against one machine: connect, observe, check, collect results with evidence.

    run = await run_conformance(Options(cls="coater", protocol="opcua", endpoint="opc.tcp://..."))
    run.passed        # nothing mandatory that ran failed, was not implemented, or ended in an error
    run.complete      # every mandatory case ran (run.untested(): those that did not)
    run.conforms      # both

Order: connect (array sizes first), an observation window (values, the
heartbeat, events), the passive checks, the link drop (the gateway's Device
through a relay the kit cuts), then, only with
`allow_control`, the behaviour and negative checks that send commands; the
machine is left in Stopped. Without `allow_control` no command, write or
recipe call reaches the machine.

Nothing mandatory is skipped silently: a case that applies to the machine
but that this run leaves out (no `allow_control`, excluded by `only`, a
claimed profile not asked for) ends `not_tested`, mandatory as its tier
says, and the run is not `complete`. Only a case that does not apply
(another binding or mode, a profile the machine does not claim) is
`not_applicable`.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.conformance import KIT_VERSION
from gateway.conformance.catalogue import Catalogue, TestCase, build_catalogue
from gateway.conformance.checks import (
    ERROR,
    FAIL,
    NOT_APPLICABLE,
    NOT_IMPLEMENTED,
    NOT_TESTED,
    PASS,
    WARNING,
    Outcome,
    load,
)
from gateway.conformance.context import Context, Operator, Options
from gateway.conformance.probe import NativeProbe, Probe, ProbeError
from interface_spec import Spec, load_spec

log = logging.getLogger("linegw.conformance")

Progress = Callable[["Result", int, int], None]  # a case decided, how many so far, of how many
IDENTITY = ("manufacturer", "model", "serial_number", "product_instance_uri", "software_revision",
            "hardware_revision")


@dataclass
class Result:
    case: TestCase
    status: str
    message: str
    evidence: list[dict[str, Any]]
    mandatory: bool
    started: float
    duration_s: float

    @property
    def failing(self) -> bool:
        """What makes a machine non-conforming: a mandatory case not passed."""
        return self.mandatory and self.status in (FAIL, NOT_IMPLEMENTED, ERROR)


@dataclass
class Run:
    options: Options
    catalogue: Catalogue
    results: list[Result]
    identity: dict[str, str]
    claimed_profiles: list[str]
    tested_profiles: list[str]
    started: float
    finished: float
    spec_version: str
    kit_version: str = KIT_VERSION
    notes: list[str] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)  # everything sent to the machine

    @property
    def passed(self) -> bool:
        """Nothing mandatory that was run failed, was not implemented or ended in an error."""
        return not any(r.failing for r in self.results)

    @property
    def complete(self) -> bool:
        """Every mandatory case was run."""
        return not self.untested()

    @property
    def conforms(self) -> bool:
        return self.passed and self.complete

    def untested(self) -> list[Result]:
        """Mandatory cases this run left out."""
        return [r for r in self.results if r.mandatory and r.status == NOT_TESTED]

    def result(self, case_id: str) -> Result:
        return next(r for r in self.results if r.case.id == case_id)

    def failing(self) -> list[Result]:
        return [r for r in self.results if r.failing]


def claimed_profiles(spec: Spec, probe: Probe) -> list[str]:
    """The profiles the machine says it implements (identification, or what its mapping provides)."""
    if probe.mode == "integration":
        return probe.claimed_profiles()
    text = probe.value("identification.supported_profiles")
    if not isinstance(text, str):
        return []
    return [p.strip() for p in text.split(",") if p.strip()]


def _skipped(case: TestCase, ctx: Context) -> tuple[str, str] | None:
    """(not_applicable or not_tested, why) for a case this run does not run, or None when it runs."""
    if ctx.probe.protocol not in case.bindings:
        return NOT_APPLICABLE, f"not part of the {ctx.probe.protocol} binding"
    if ctx.mode not in case.modes:
        return NOT_APPLICABLE, ("not checked in integration mode" if ctx.mode == "integration"
                                else "integration mode only")
    if case.profile not in ctx.tested:
        if case.profile in ctx.claimed:
            return NOT_TESTED, f"profile {case.profile} is claimed by the machine but was not asked for (--profile)"
        return NOT_APPLICABLE, f"profile {case.profile} is not claimed by the machine nor asked for"
    if case.needs_control and not ctx.options.allow_control:
        return NOT_TESTED, "sends commands or changes the machine: run with --allow-control"
    if ctx.options.only and not case.id.startswith(tuple(ctx.options.only)):
        return NOT_TESTED, f"not selected (--only {' '.join(ctx.options.only)})"
    return None


def _mandatory(case: TestCase, ctx: Context) -> bool:
    return case.tier == "M" and (case.profile in ctx.tested or case.profile in ctx.claimed)


async def run_conformance(options: Options, spec: Spec | None = None, operator: Operator | None = None,
                          progress: Progress | None = None, probe: Probe | None = None) -> Run:
    spec = spec or load_spec()
    if options.cls not in spec.classes:
        raise ValueError(f"unknown class '{options.cls}' (known: {', '.join(spec.classes)})")
    catalogue = build_catalogue(spec).for_class(options.cls)
    if probe is None:
        if options.mapping:
            from gateway.conformance.through_gateway import GatewayProbe

            probe = GatewayProbe(spec, options.cls, options.protocol, options.endpoint, options.mapping,
                                 unit_id=options.unit_id, scan_ms=options.scan_ms, timeout_s=options.connect_timeout_s,
                                 settings=options.adapter)
        else:
            probe = NativeProbe(spec, options.cls, options.protocol, options.endpoint, machine=options.machine,
                                unit_id=options.unit_id, scan_ms=options.scan_ms, timeout_s=options.connect_timeout_s,
                                settings=options.adapter)
    probe.clock_tolerance_s = options.clock_tolerance_s  # separates a late answer from a clock going back
    ctx = Context(spec, options, probe, catalogue, operator)
    started = time.time()
    cases = list(catalogue.cases.values())
    outcomes: dict[str, tuple[Outcome, float, float]] = {}
    connect_error = ""
    try:
        await probe.open()
    except (ProbeError, OSError, ValueError) as exc:
        connect_error = str(exc)
    class_profile = options.cls.capitalize()
    ctx.claimed = claimed_profiles(spec, probe) if not connect_error else []
    wanted = options.profiles if options.profiles is not None else ctx.claimed
    ctx.tested = [p for p in catalogue.profiles if p in set(wanted) | {"Core", class_profile}]
    done = 0
    applicable = [c for c in cases if _skipped(c, ctx) is None]

    def record(case: TestCase, outcome: Outcome, t0: float) -> None:
        nonlocal done
        outcomes[case.id] = (outcome, t0, time.time() - t0)
        done += 1
        if progress is not None:
            progress(_result(case, outcome, t0, time.time() - t0, ctx), done, len(applicable))

    try:
        if connect_error:
            for c in applicable:
                record(c, Outcome(ERROR, f"not run: {connect_error}"), time.time())
        else:
            if probe.mode == "native":
                await ctx.read_self_description()
            if not all(c.needs_control for c in applicable):  # the passive cases need the observation
                await ctx.observe()
            for chk in load():
                mine = [c for c in applicable if chk.decides(c) and c.id not in outcomes]
                if not mine:
                    continue
                t0 = time.time()
                try:
                    got = await chk.fn(ctx)
                except Exception as exc:
                    log.debug("check %s failed", chk.fn.__name__, exc_info=True)
                    where = traceback.extract_tb(exc.__traceback__)[-1]
                    got = Outcome(ERROR, f"the check could not run: {type(exc).__name__}: {exc} "
                                         f"({where.filename.rsplit('/', 1)[-1]}:{where.lineno})")
                if isinstance(got, Outcome):
                    got = {c.id: got for c in mine}
                for c in mine:
                    record(c, got.get(c.id, Outcome(ERROR, "the check did not decide this case")), t0)
            for c in applicable:
                if c.id not in outcomes:
                    record(c, Outcome(ERROR, "no check decides this case"), time.time())
            if ctx.cache.get("commanded"):
                from gateway.conformance.checks.control import leave_stopped

                await leave_stopped(ctx)
    finally:
        await probe.close()
    results = []
    for c in cases:
        if c.id in outcomes:
            outcome, t0, dt = outcomes[c.id]
        else:
            status, why = _skipped(c, ctx) or (NOT_APPLICABLE, "")
            outcome, t0, dt = Outcome(status, why), started, 0.0
        results.append(_result(c, outcome, t0, dt, ctx))
    identity = {k: str(probe.value(f"identification.{k}") or "") for k in IDENTITY}
    identity.update(getattr(probe, "nameplate", {}))
    return Run(options, catalogue, results, identity, ctx.claimed, ctx.tested, started, time.time(), spec.version,
               notes=ctx.notes, requests=list(probe.requests))


def _result(case: TestCase, outcome: Outcome, t0: float, dt: float, ctx: Context) -> Result:
    mandatory = outcome.mandatory if outcome.mandatory is not None else _mandatory(case, ctx)
    if outcome.status == NOT_APPLICABLE:
        mandatory = False
    return Result(case, outcome.status, outcome.message, outcome.evidence, mandatory, t0, round(dt, 3))


__all__ = [
    "ERROR",
    "FAIL",
    "NOT_APPLICABLE",
    "NOT_IMPLEMENTED",
    "NOT_TESTED",
    "PASS",
    "WARNING",
    "Context",
    "Options",
    "Result",
    "Run",
    "run_conformance",
]
