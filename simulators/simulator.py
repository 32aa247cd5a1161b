"""One running simulated machine: the machine, its physics, its server, its faults.

`Simulator.run()` is the machine's clock: every `TICK_S` of wall time it
advances the machine (state timers, heartbeat, counters), steps the physics
when its period is due, lets the operator act, and publishes the changed
values through the protocol binding. `time_scale` simulated seconds pass per
wall second.

The operator is the person at the machine's panel. With `auto_start` it
resets and starts the machine after power-on, so a line produces from the
start; with `auto_recover` it brings the machine back to Execute once an
alarm that stopped it has cleared (Unhold, or Clear, Reset, Start). It never
undoes a stop that somebody commanded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from interface_spec import Spec
from simulators.defects import apply_defect, parse_defects
from simulators.dialects import Dialect, load_dialect
from simulators.faults import FaultControls, parse_faults
from simulators.machine import LOCAL_PANEL, Machine
from simulators.material import MaterialFlow
from simulators.models import model_for
from simulators.servers.opcua_server import OpcUaSecurity

if TYPE_CHECKING:
    from simulators.line import SimConfig

log = logging.getLogger("linegw.sim")

TICK_S = 0.1  # wall seconds between machine ticks and publishes


class Binding(Protocol):
    """What a simulator needs from a protocol server serving its machine."""

    protocol: str
    server: Any  # ModbusSimServer or OpcUaSimServer: carries `.faults`

    @property
    def url(self) -> str: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def restart(self, *, shift_namespace: bool = ..., downtime_s: float = ..., new_certificate: bool = ...) -> None: ...

    def drop_connections(self) -> None: ...

    async def publish(self, changes: dict[str, Any]) -> None: ...


@dataclass
class TickStats:
    """Wall-clock cost of the simulator's work, for benchmarks."""

    ticks: int = 0
    physics_steps: int = 0
    last_ms: float = 0.0
    max_ms: float = 0.0
    total_ms: float = 0.0
    physics_ms: float = 0.0
    publish_ms: float = 0.0
    published_values: int = 0

    @property
    def mean_ms(self) -> float:
        return self.total_ms / self.ticks if self.ticks else 0.0


def make_binding(config: SimConfig, machine: Machine, dialect: Dialect | None = None) -> Binding:
    """The protocol server for a config: the conforming binding, or the vendor dialect given."""
    security = config.opcua_security()
    if dialect is None:
        if config.protocol == "opcua":
            from simulators.servers.opcua_binding import OpcUaBinding

            return OpcUaBinding(machine, config.host, config.port, config.machine_name, security)
        if config.protocol == "modbus":
            from simulators.servers.modbus_binding import ModbusBinding

            return ModbusBinding(machine, config.host, config.port)
        raise ValueError(f"{config.equipment_id}: protocol must be opcua or modbus, got '{config.protocol}'")
    # The generic server of the dialect's protocol.
    if dialect.protocol == "modbus":
        from simulators.servers.dialect_modbus import DialectModbusBinding

        return DialectModbusBinding(dialect, machine, config.host, config.port)
    from simulators.servers.dialect_opcua import DialectOpcUaBinding

    return DialectOpcUaBinding(dialect, machine, config.host, config.port, security)


class Simulator:
    """A machine of one class served over one protocol, with physics, an operator and faults."""

    def __init__(self, config: SimConfig, spec: Spec, flow: MaterialFlow | None = None):
        self.config = config
        self.equipment_id = config.equipment_id
        model_cls = model_for(config.cls)
        counts = {**model_cls.DEFAULT_COUNTS, **config.counts}
        identification = dict(config.identification)
        dialect = None
        if config.dialect != "conforming":
            dialect = load_dialect(config.dialect, spec)
            if dialect.cls != config.cls or dialect.protocol != config.protocol:
                raise ValueError(f"{config.equipment_id}: dialect '{dialect.dialect}' is a {dialect.cls} over "
                                 f"{dialect.protocol}, not a {config.cls} over {config.protocol}")
            identification = {**dialect.identification, **identification}
        ring = max(1000, 4 * max(counts.values(), default=0))  # a formation tray's events fit twice over
        self.machine = Machine(spec, config.cls, config.equipment_id, counts=counts, identification=identification,
                               time_scale=config.time_scale, acting_s=config.acting_s, ring_size=ring,
                               profiles=config.profiles)
        self.model = model_cls(self.machine, config.seed, flow, dict(config.options))
        self.model.load_recipes()
        self.binding: Binding = make_binding(config, self.machine, dialect)
        self.faults = FaultControls(self)
        self._startup_faults = parse_faults(config.faults)
        self._defects = parse_defects(config.defects)
        self.stats = TickStats()
        self._operator_goal = "run" if config.auto_start else None
        self._last_operator_state: str | None = None

    @property
    def url(self) -> str:
        return self.binding.url

    async def start(self) -> None:
        """Listen and apply the start-up faults; `run()` then drives the machine."""
        await self.binding.start()
        for name, params in self._startup_faults:
            await self.faults.switch_on(name, **params)
        if self._startup_faults:
            await self.publish()
        for name, params in self._defects:
            await apply_defect(self, name, **params)

    async def stop(self) -> None:
        await self.binding.stop()

    async def run(self) -> None:
        """Tick until cancelled; periodic faults run beside the clock."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._periodic_faults(), name=f"{self.equipment_id}:faults")
            await self._clock()

    async def _clock(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        next_tick = last + TICK_S
        physics_wall = 0.0
        while True:
            await asyncio.sleep(max(next_tick - loop.time(), 0.0))
            now = loop.time()
            dt_wall = now - last
            last = now
            next_tick = max(next_tick + TICK_S, now)
            physics_wall += dt_wall
            due = physics_wall >= self.model.period_s
            await self.advance(dt_wall * self.config.time_scale, dt_wall, physics=due,
                               physics_s=physics_wall * self.config.time_scale)
            if due:
                physics_wall = 0.0

    async def advance(self, dt_sim: float, dt_wall: float | None = None, physics: bool = True,
                      physics_s: float | None = None) -> None:
        """One clock tick: machine, physics (over `physics_s` simulated seconds, dt_sim by default),
        operator, publish. Tests and benchmarks call it to step a simulator by hand."""
        started = time.perf_counter()
        self.machine.tick(dt_sim, dt_wall)
        if physics:
            t0 = time.perf_counter()
            self.model.step(physics_s if physics_s is not None else dt_sim)
            self.stats.physics_ms += (time.perf_counter() - t0) * 1000.0
            self.stats.physics_steps += 1
        self._operate()
        t0 = time.perf_counter()
        await self.publish()
        done = time.perf_counter()
        st = self.stats
        st.publish_ms += (done - t0) * 1000.0
        ms = (done - started) * 1000.0
        st.ticks += 1
        st.last_ms = ms
        st.total_ms += ms
        st.max_ms = max(st.max_ms, ms)

    async def publish(self) -> None:
        m = self.machine
        changes = m.take_changes()
        if self.faults.values.active:
            changes = self.faults.values.apply(changes, m.values)
        self.stats.published_values += len(changes)
        await self.binding.publish(changes)

    async def publish_all(self) -> None:
        """Serve every current value again (after a restart)."""
        values = self.faults.values.apply(dict(self.machine.values), self.machine.values)
        await self.binding.publish(values)

    def _operate(self) -> None:
        """The operator at the panel: start after power-on, recover after an alarm stop."""
        m = self.machine
        if m.stop_reason is not None and self.config.auto_recover:
            if m.stop_reason in m.active_alarm_codes():
                return  # wait for the cause to go
            self._operator_goal = "run"
        if self._operator_goal is None:
            return
        state = m.state()
        if state == "Execute":
            self._operator_goal = None
            self._last_operator_state = None
            return
        if state == self._last_operator_state:
            return  # one action per state; the acting state must complete first
        action = {"Held": "Unhold", "Aborted": "Clear", "Stopped": "Reset", "Complete": "Reset", "Idle": "Start",
                  "Suspended": "Unsuspend"}.get(state)
        if action is None:
            return
        self._last_operator_state = state
        m.execute(action, {}, source=LOCAL_PANEL)

    async def _periodic_faults(self) -> None:
        """Connection drops and restarts every `period_s` wall seconds, while switched on."""
        loop = asyncio.get_running_loop()
        due: dict[str, float] = {}
        while True:
            await asyncio.sleep(TICK_S * 5)
            now = loop.time()
            for name, params in list(self.faults.periodic.items()):
                period = float(params["period_s"])
                when = due.setdefault(name, now + period)
                if now < when:
                    continue
                due[name] = now + period
                if name == "drop_connections":
                    self.faults.drop_connections()
                else:
                    await self.faults.restart(bool(params.get("shift_namespace", True)),
                                              float(params.get("downtime_s", 0.0)))
            for name in set(due) - set(self.faults.periodic):
                del due[name]


def opcua_security(security: Any) -> OpcUaSecurity | None:
    """A SimConfig's security option as the OPC UA server's settings."""
    if security is None or isinstance(security, OpcUaSecurity):
        return security
    if isinstance(security, dict):
        return OpcUaSecurity(**security)
    raise ValueError(f"security must be a dict (modes, username, password), got {security!r}")
