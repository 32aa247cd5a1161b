"""What a check is given: the run's options and the context it reads the machine through.

Apart from the runner so that the checks import it without importing the runner that calls them.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.conformance.catalogue import Catalogue
from gateway.conformance.probe import Probe, ProbeError
from interface_spec import Spec

Operator = Callable[[str], Awaitable[None] | None]  # told what to do at the machine's panel


@dataclass
class Options:
    cls: str
    protocol: str  # opcua | modbus
    endpoint: str
    machine: str | None = None  # OPC UA: the machine object under Objects/Machines (default: last URL segment)
    unit_id: int = 1  # Modbus unit id
    mapping: str | None = None  # integration mode: the vendor mapping file
    # Integration mode: mandatory variables the integrator declares the machine does not have (spec templates,
    # "*" matches anything: "state.previous_*", "channel[*].step_type"); reported as gaps, not failures.
    absent: list[str] = field(default_factory=list)
    profiles: list[str] | None = None  # None: what the machine claims
    only: list[str] | None = None  # run only cases whose ID starts with one of these (e.g. a unit, "CTRL-PACKML")
    allow_control: bool = False
    observe_s: float = 10.0  # observation window for the passive checks
    command_timeout_s: float = 30.0  # a commanded transition must complete within this
    outage_s: float = 2.0  # how long the kit drops its link in the resilience checks
    operator_timeout_s: float = 120.0  # how long an operator step may take
    clock_tolerance_s: float = 5.0  # allowed difference between the machine's clock and the kit's
    events_max: int = 300  # newest events read for the history checks
    unit_wait_s: float = 60.0  # how long to wait for a unit to be made when the observation saw none
    scan_ms: int = 200
    connect_timeout_s: float = 10.0
    adapter: dict[str, Any] = field(default_factory=dict)  # adapter settings: security_mode, username, password, ...


class Context:
    """What the checks see: the probe, the options, the observation and the profiles under test."""

    def __init__(self, spec: Spec, options: Options, probe: Probe, catalogue: Catalogue, operator: Operator | None):
        self.spec = spec
        self.cls = options.cls
        self.options = options
        self.probe = probe
        self.catalogue = catalogue
        self.operator = operator
        self.claimed: list[str] = []
        self.tested: list[str] = []
        self.t0 = self.t1 = 0.0
        self.events: list[dict[str, Any]] = []  # newest events, oldest first
        self.events_error = ""
        self.seq_t0: int | None = None
        self.self_description: dict[str, Any] | None = None
        self.notes: list[str] = []
        self.cache: dict[str, Any] = {}  # shared between checks of one run (e.g. the control tour)

    @property
    def mode(self) -> str:
        return self.probe.mode

    def declared(self) -> set[str]:
        """Recommended/optional variable templates the machine says it serves."""
        if self.mode == "integration":
            return {p for p in self.probe.mapped_templates()}
        sd = self.self_description or {}
        return set(sd.get("optional_variables") or [])

    async def tell_operator(self, text: str) -> None:
        if self.operator is None:
            raise ProbeError(f"an operator step is needed and no operator is present: {text}")
        out = self.operator(text)
        if inspect.isawaitable(out):
            await out

    async def observe(self) -> None:
        """The observation window: values keep arriving; events are read at its end."""
        probe = self.probe
        self.t0 = time.time()
        if probe.mode == "native":
            self.seq_t0 = await probe.last_seq()
        await asyncio.sleep(self.options.observe_s)
        self.t1 = time.time()
        await self.read_events()

    async def read_self_description(self) -> None:
        """What the machine declares decides which optional variables are required."""
        text, _ = await self.probe.self_description()
        try:
            doc = json.loads(text or "")
        except ValueError:
            return  # CORE-SELF-001 says why
        self.self_description = doc if isinstance(doc, dict) else None

    async def read_events(self) -> None:
        probe = self.probe
        if probe.mode != "native":
            self.events = list(getattr(probe, "events", []))  # an integration probe records what the gateway stored
            return
        try:
            last = await probe.last_seq()
            if last is None:
                self.events_error = "the newest event sequence number cannot be read"
                return
            self.events = await probe.events_since(max(1, last - self.options.events_max + 1))
        except Exception as exc:  # reported by the event checks
            self.events_error = f"reading events failed: {exc}"
