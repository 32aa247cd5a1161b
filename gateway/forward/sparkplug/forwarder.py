"""The Sparkplug B sink: the gateway as an edge node on the plant's MQTT backbone, each machine a device.

Topics are `spBv1.0/<group>/<type>/<edge node>[/<machine>]`. One MQTT session is one node
lifetime:

* connect with NDEATH as the will, carrying the session's `bdSeq` (persisted in the store, one more
  at every connect, so a host tells a restart from a late will);
* with a primary host configured, wait for its `spBv1.0/STATE/<host>` to say online before anything
  is published; when it goes offline, NDEATH, disconnect, and wait again: the outbox holds the data;
* NBIRTH (`bdSeq`, `Node Control/Rebirth`), then a DBIRTH per machine that is available: every
  metric with its alias, datatype, engineering unit, range, description and quality, and its
  current value; `seq` counts 0-255 over the session's messages from NBIRTH on;
* the outbox, in commit order, as DDATA: many metrics per message, aliases only, source timestamps,
  `is_historical` on samples recorded more than `historical_after_s` before they are sent (a backlog
  after an outage of the broker or the host). A machine's availability going down is its DDEATH, its
  return a DBIRTH; a path not in its birth makes a new DBIRTH before it is sent;
* `Node Control/Rebirth` in an NCMD births everything again.

The cursor advances only after the broker acknowledged every QoS 1 publish of a batch, so a lost
connection resends at most that batch. Commands from the backbone (DCMD) are refused, logged and
audited unless `commands` names the identity they act as; then each goes through the runtime's
interlocks and audit like a REST command.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from typing import Any, Protocol

import aiomqtt

from gateway.cancellation import raise_if_stopped, stop_requests
from gateway.forward.config import SparkplugForward
from gateway.forward.outage import Outage
from gateway.forward.sparkplug import payload as sp
from gateway.runtime.view import LineView
from gateway.samples import Sample
from gateway.store.base import Outbox, Records, SampleHistory
from interface_spec import Spec

log = logging.getLogger("linegw.forward.sparkplug")

AVAILABILITY = "status.availability"
REBIRTH = "Node Control/Rebirth"
COMMAND_PREFIX = "Command/"
READ_SAMPLES = 5000  # outbox samples read at a time
GOODBYE_TIMEOUT_S = 2.0


class HostOffline(Exception):
    """The primary host went offline: the node died on purpose and waits for it."""


class SparkplugStore(Outbox, Records, SampleHistory, Protocol):
    """What the sink asks of the store."""


class SparkplugForwarder:
    def __init__(self, store: SparkplugStore, cfg: SparkplugForward, line: str, classes: dict[str, str], spec: Spec,
                 view: LineView | None = None) -> None:
        self.store, self.cfg, self.line, self.classes, self.spec, self.view = store, cfg, line, classes, spec, view
        self.consumer = cfg.consumer
        self.node = cfg.edge_node_id or line
        self._stats: dict[str, Any] = {"published": 0, "messages": 0, "reconnects": 0, "cursor": 0, "births": 0,
                                       "bdseq": None, "host_online": None, "commands_refused": 0,
                                       "commands_run": 0, "skipped_dead": 0}
        self._outage = Outage(log, f"sparkplug {cfg.host}:{cfg.port}", self._stats, cfg.backoff_max_s)
        self._available = self.spec.enum("availability")["AVAILABLE"]
        self._commands: set[asyncio.Task[None]] = set()
        self._reset_session()

    def stats(self) -> dict[str, Any]:
        return dict(self._stats)

    def topic(self, kind: str, device: str | None = None) -> str:
        return f"spBv1.0/{self.cfg.group_id}/{kind}/{self.node}" + (f"/{device}" if device else "")

    def _reset_session(self) -> None:
        self._seq = 0
        self._defs: dict[tuple[str, str], sp.MetricDef] = {}  # (machine, path) -> its alias and datatype
        self._next_alias = 1  # 0 is left unused: some hosts read it as "no alias"
        self._alive: set[str] = set()  # machines born (DBIRTH) and not dead (DDEATH) in this session
        self._rebirth = False
        self._host_state: bool | None = None if self.cfg.primary_host_id else True
        self._host_changed = asyncio.Event()

    # --- the connection ----------------------------------------------------------------------
    async def run(self) -> None:
        self._stats["cursor"] = await self.store.register_consumer(self.consumer)
        password = os.environ.get(self.cfg.password_env, "") if self.cfg.password_env else None
        before = stop_requests()  # aiomqtt can lose a stop: the loops look at the task's count (gateway/cancellation.py)
        while True:
            bdseq = await self._next_bdseq()
            will = aiomqtt.Will(self.topic("NDEATH"), self._ndeath(bdseq), qos=1, retain=False)
            try:
                async with aiomqtt.Client(self.cfg.host, self.cfg.port, username=self.cfg.username,
                                          password=password, will=will) as client:
                    self._outage.recovered()
                    try:
                        # Resumes after the last batch the broker took: the cursor moves with each one.
                        await self._session(client, bdseq, self._stats["cursor"], before)
                    except asyncio.CancelledError:
                        await self._goodbye(client, bdseq)
                        raise
            except HostOffline:
                continue  # NDEATH is out; connect again with the next bdSeq and wait for the host
            except aiomqtt.MqttError as e:  # broker away: reconnect with backoff, resume from the cursor
                raise_if_stopped(before)  # the disconnect on a stop can fail too: a stop, not an outage
                self._stats["reconnects"] += 1
                refused = isinstance(e, aiomqtt.MqttCodeError) and getattr(e.rc, "value", e.rc) in (4, 5, 134, 135)
                await asyncio.sleep(self._outage.failed(f"{type(e).__name__}: {e}",
                                                        "check username and password_env" if refused else ""))

    async def _next_bdseq(self) -> int:
        name = f"{self.consumer}.bdseq"
        last = await self.store.get_cursor(name)
        bdseq = 0 if last is None else (last + 1) % 256
        await self.store.set_cursor(name, bdseq)
        self._stats["bdseq"] = bdseq
        return bdseq

    def _ndeath(self, bdseq: int) -> bytes:
        p = sp.Payload()
        p.timestamp = _ms(time.time())
        m = p.metrics.add()
        m.name, m.datatype, m.long_value = "bdSeq", sp.INT64, bdseq
        return bytes(p.SerializeToString())

    async def _session(self, client: aiomqtt.Client, bdseq: int, cursor: int, before: int) -> None:
        self._reset_session()
        await client.subscribe(self.topic("NCMD"), qos=1)
        await client.subscribe(self.topic("DCMD") + "/+", qos=1)
        if self.cfg.primary_host_id:
            await client.subscribe(f"spBv1.0/STATE/{self.cfg.primary_host_id}", qos=1)
        reader = asyncio.create_task(self._read(client), name="sparkplug-read")
        try:
            while not self._host_state:
                raise_if_stopped(before)
                if reader.done():
                    reader.result()  # the connection ended: its MqttError goes up
                self._host_changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._host_changed.wait()
            await self._birth(client, bdseq)
            while True:
                raise_if_stopped(before)
                if reader.done():
                    reader.result()
                if self._host_offline():
                    log.warning("sparkplug: primary host %s went offline; node %s dies (NDEATH) and waits for it, "
                                "the outbox holds the data", self.cfg.primary_host_id, self.node)
                    await client.publish(self.topic("NDEATH"), self._ndeath(bdseq), qos=1)
                    raise HostOffline
                if self._rebirth:
                    self._rebirth = False
                    await self._birth(client, bdseq)
                batch, nxt = await self.store.read_since(cursor, READ_SAMPLES)
                if not batch:
                    self._host_changed.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.cfg.poll_s):
                            await self._host_changed.wait()
                    continue
                await self._send(client, [s for _, s in batch])
                cursor = nxt
                await self.store.set_cursor(self.consumer, cursor)
                self._stats.update(published=self._stats["published"] + len(batch), cursor=cursor)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    def _host_offline(self) -> bool:
        """The primary host said offline (its STATE arrives on the reader task, at any time)."""
        return self._host_state is False

    async def _goodbye(self, client: aiomqtt.Client, bdseq: int) -> None:
        """A clean stop: NDEATH before the DISCONNECT (which sends no will)."""
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(GOODBYE_TIMEOUT_S):
                await client.publish(self.topic("NDEATH"), self._ndeath(bdseq), qos=1)
                return
        log.warning("sparkplug: could not publish NDEATH on stop; hosts learn it from the will or the timeout")

    async def _publish(self, client: aiomqtt.Client, kind: str, device: str | None, p: Any) -> None:
        p.seq = self._seq
        self._seq = (self._seq + 1) % 256
        await client.publish(self.topic(kind, device), bytes(p.SerializeToString()), qos=1)
        self._stats["messages"] += 1

    # --- births and deaths ------------------------------------------------------------------
    async def _birth(self, client: aiomqtt.Client, bdseq: int) -> None:
        """NBIRTH, then a DBIRTH for every machine whose latest availability is available."""
        self._seq = 0
        self._alive.clear()
        now = _ms(time.time())
        p = sp.Payload()
        p.timestamp = now
        for name, dtype, value in (("bdSeq", sp.INT64, bdseq), (REBIRTH, sp.BOOLEAN, False),
                                   ("Properties/Line", sp.STRING, self.line),
                                   ("Properties/Spec version", sp.STRING, self.spec.version)):
            m = p.metrics.add()
            m.name, m.datatype, m.timestamp = name, dtype, now
            sp.set_value(m, dtype, value)
        await self._publish(client, "NBIRTH", None, p)
        self._stats["births"] += 1
        latest = await self.store.latest()
        by_machine: dict[str, dict[str, Sample]] = {}
        for s in latest:
            by_machine.setdefault(s.equipment, {})[s.path] = s
        for machine in self.classes:
            current = by_machine.get(machine, {})
            avail = current.get(AVAILABILITY)
            if avail is not None and avail.value == self._available:
                await self._device_birth(client, machine, current)

    def _catalogue(self, machine: str, current: dict[str, Sample], extra: set[str]) -> list[str]:
        """The paths a machine's birth declares: the spec's (arrays as far as their sizes are known),
        what the store holds for it, and any path about to be sent."""
        cls = self.classes.get(machine)
        paths: dict[str, None] = {}
        if cls is not None:
            view = self.view.get(machine) if self.view is not None else None
            counts = dict(view.counts) if view is not None else {}
            for su in self.spec.array_sub_units(cls):
                counts.setdefault(su.id, 0)  # unknown size: its paths join when they are sent
            for path, _ in self.spec.instances(cls, counts):
                paths[path] = None
        for path in (*current, *sorted(extra)):
            paths[path] = None
        return list(paths)

    def _define(self, machine: str, path: str, value: Any) -> sp.MetricDef:
        key = (machine, path)
        d = self._defs.get(key)
        if d is None:
            var = None
            cls = self.classes.get(machine)
            if cls is not None:
                with contextlib.suppress(KeyError):
                    var = self.spec.variable(cls, path).var
            unit = var.unit if var is not None else ""
            symbol = self.spec.units[unit].symbol if unit in self.spec.units and unit != "1" else ""
            d = self._defs[key] = sp.MetricDef(path, self._next_alias, sp.datatype(var, value), var, symbol)
            self._next_alias += 1
        return d

    async def _device_birth(self, client: aiomqtt.Client, machine: str, current: dict[str, Sample] | None = None,
                            extra: set[str] | None = None) -> None:
        if current is None:
            current = {s.path: s for s in await self.store.latest(machine)}
        p = sp.Payload()
        now = _ms(time.time())
        p.timestamp = now
        for path in self._catalogue(machine, current, extra or set()):
            s = current.get(path)
            d = self._define(machine, path, s.value if s is not None else None)
            sp.birth_metric(p, d, s.value if s is not None else None, s.quality if s is not None else None,
                            _ms(s.source_ts) if s is not None else now)
        if self.cfg.commands is not None:
            for command in self.spec.commands:
                m = p.metrics.add()
                m.name, m.datatype, m.timestamp = COMMAND_PREFIX + command, sp.BOOLEAN, now
                m.boolean_value = False
        await self._publish(client, "DBIRTH", machine, p)
        self._alive.add(machine)

    async def _device_death(self, client: aiomqtt.Client, machine: str) -> None:
        p = sp.Payload()
        p.timestamp = _ms(time.time())
        await self._publish(client, "DDEATH", machine, p)
        self._alive.discard(machine)

    # --- data -----------------------------------------------------------------------------------
    async def _send(self, client: aiomqtt.Client, batch: list[Sample]) -> None:
        pending: dict[str, Any] = {}
        historical_before = time.time() - self.cfg.historical_after_s

        async def flush(machine: str) -> None:
            p = pending.pop(machine, None)
            if p is not None and len(p.metrics):
                await self._publish(client, "DDATA", machine, p)

        for s in batch:
            machine = s.equipment
            if s.path == AVAILABILITY:
                up = s.value == self._available
                if up and machine not in self._alive:
                    await flush(machine)
                    await self._device_birth(client, machine)
                    continue  # the birth carries the current values, availability among them
                if not up and machine in self._alive:
                    await flush(machine)
                    await self._device_death(client, machine)
                    continue
            if machine not in self._alive:
                self._stats["skipped_dead"] += 1  # a dead device publishes nothing until it is born again
                continue
            d = self._defs.get((machine, s.path))
            if d is None:  # a path its birth did not declare: born again with it
                await flush(machine)
                await self._device_birth(client, machine, extra={s.path})
                d = self._defs[(machine, s.path)]
            p = pending.get(machine)
            if p is None:
                p = pending[machine] = sp.Payload()
                p.timestamp = _ms(time.time())
            sp.data_metric(p, d, s.value, s.quality, _ms(s.source_ts), s.gateway_ts < historical_before)
            if len(p.metrics) >= self.cfg.batch_size:
                await flush(machine)
        for machine in list(pending):
            await flush(machine)

    # --- what the backbone sends ------------------------------------------------------------
    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = str(message.topic)
            body = bytes(message.payload) if isinstance(message.payload, (bytes, bytearray)) else b""
            if topic.startswith("spBv1.0/STATE/"):
                self._on_state(body)
            elif topic == self.topic("NCMD"):
                self._on_ncmd(body)
            elif topic.startswith(self.topic("DCMD") + "/"):
                self._on_dcmd(topic.rsplit("/", 1)[1], body)

    def _on_state(self, body: bytes) -> None:
        try:
            online = bool(json.loads(body)["online"])
        except (ValueError, KeyError, TypeError):
            log.warning("sparkplug: a STATE message of %s that is not {\"online\": ..., \"timestamp\": ...}; ignored",
                        self.cfg.primary_host_id)
            return
        self._host_state = online
        self._stats["host_online"] = online
        self._host_changed.set()

    def _decode(self, body: bytes, what: str) -> Any:
        p = sp.Payload()
        try:
            p.ParseFromString(body)
        except Exception:
            log.warning("sparkplug: a %s payload that is not Sparkplug B; ignored", what)
            return None
        return p

    def _on_ncmd(self, body: bytes) -> None:
        p = self._decode(body, "NCMD")
        if p is None:
            return
        for m in p.metrics:
            if m.name == REBIRTH and sp.value_of(m):
                log.info("sparkplug: rebirth asked by the backbone")
                self._rebirth = True
                self._host_changed.set()

    def _on_dcmd(self, machine: str, body: bytes) -> None:
        p = self._decode(body, "DCMD")
        if p is None:
            return
        for m in p.metrics:
            name = m.name or ""
            command = name.removeprefix(COMMAND_PREFIX)
            task = asyncio.get_running_loop().create_task(self._command(machine, command, name, sp.value_of(m)))
            self._commands.add(task)
            task.add_done_callback(self._commands.discard)

    async def _command(self, machine: str, command: str, metric: str, value: Any) -> None:
        allowed = self.cfg.commands
        if allowed is None or self.view is None or not metric.startswith(COMMAND_PREFIX) \
                or command not in self.spec.commands or machine not in self.classes:
            why = ("commands from the MQTT backbone are off (forward.sparkplug.commands)" if allowed is None
                   else f"'{metric}' on '{machine}' is not a command of this line")
            self._stats["commands_refused"] += 1
            log.warning("sparkplug: DCMD %s for %s refused: %s", metric, machine, why)
            await self.store.record_audit(time.time(), allowed.user if allowed else "sparkplug",
                                          allowed.role if allowed else "none", machine, command or metric, {},
                                          self.spec.result_codes["not_supported"], "not_supported", why)
            return
        if value is False or value is None:
            return  # a host writing the metric back to false is no command
        params: dict[str, Any] = {}
        if isinstance(value, str) and value.strip().startswith("{"):
            with contextlib.suppress(ValueError):
                params = json.loads(value)
        elif not isinstance(value, bool):
            declared = self.spec.commands[command].params
            if len(declared) == 1:
                params = {declared[0].name: value}
        result = await self.view.command(machine, command, params, allowed.user, allowed.role)
        self._stats["commands_run"] += 1
        log.info("sparkplug: DCMD %s on %s as %s: %s %s", command, machine, allowed.user, result.result, result.detail)


def _ms(ts: float) -> int:
    return int(round(ts * 1000))
