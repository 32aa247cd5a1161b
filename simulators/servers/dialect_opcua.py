"""A machine served over OPC UA in a vendor's dialect.

The vendor's own namespace and object layout (below Objects, not Machines),
its node names and builtin types, string or numeric node ids, scaled
integers and vendor enum codes, Boolean alarm nodes, an alarm-code node,
command methods without result codes or a command node written with a vendor
code. No events, no self-description: what real vendor servers offer.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

from asyncua import Server, ua
from asyncua.common.callback import CallbackType, ServerItemCallback
from asyncua.common.node import Node
from asyncua.common.utils import ServiceError

from simulators.dialects.model import Dialect, Source
from simulators.machine import Machine
from simulators.servers.dialect import Projection, alarm_active, compile_projections, most_severe
from simulators.servers.opcua_server import NodeBatch, OpcUaSecurity, OpcUaSimServer, data_value, now

log = logging.getLogger("linegw.sim.dialect_opcua")


def _vtype(src: Source) -> ua.VariantType:
    assert src.type is not None
    return ua.VariantType[src.type]


class DialectOpcUaBinding:
    protocol = "opcua"

    def __init__(self, dialect: Dialect, machine: Machine, host: str = "127.0.0.1", port: int = 0,
                 security: OpcUaSecurity | None = None):
        assert dialect.opcua is not None
        self.dialect = dialect
        self.machine = machine
        self.cfg = dialect.opcua
        self.root_parts = [p for p in self.cfg.root.split("/") if p]
        self.server = OpcUaSimServer(
            host=host, port=port, path=self.cfg.path or f"{dialect.dialect}/{machine.equipment_id}",
            name=f"{dialect.identification.get('manufacturer', dialect.dialect)} {machine.equipment_id}",
            app_uri=f"urn:{dialect.dialect}:{machine.equipment_id}", namespace_uri=self.cfg.namespace_uri,
            populate=self._populate, security=security)
        self.projections = compile_projections(dialect, machine)
        self.nodes: dict[int, ua.NodeId] = {}  # id(projection) -> node
        self._alarm_nodes: list[tuple[str, ua.NodeId]] = []
        self._alarm_code_node: ua.NodeId | None = None
        self._command_node: ua.NodeId | None = None
        self._writable: dict[ua.NodeId, Projection] = {}
        self._alarms_version = -1
        self.commands_run = 0

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()

    async def restart(self, shift_namespace: bool = True, downtime_s: float = 0.0, new_certificate: bool = False) -> None:
        await self.server.restart(shift_namespace, downtime_s, new_certificate)

    def drop_connections(self) -> None:
        self.server.drop_connections()

    # --- address space ---------------------------------------------------------------------------------
    async def _populate(self, server: Server, ns: int) -> None:
        m, d = self.machine, self.dialect
        batch = NodeBatch(ns)
        numbers = itertools.count(1000)
        numeric = self.cfg.node_ids == "numeric"
        objects: dict[str, ua.NodeId] = {}

        def ident(path: str) -> Any:
            return next(numbers) if numeric else path

        def parent_of(rel: str) -> ua.NodeId:
            """The object holding a node at `rel` below the root; intermediate objects are made on the way."""
            parts = self.root_parts + rel.split("/")[:-1]
            parent = ua.NodeId(ua.ObjectIds.ObjectsFolder)
            for depth in range(1, len(parts) + 1):
                key = "/".join(parts[:depth])
                nid = objects.get(key)
                if nid is None:
                    nid = objects[key] = batch.obj(parent, ident(key), parts[depth - 1])
                parent = nid
            return parent

        def variable(rel: str, value: Any, vtype: ua.VariantType, writable: bool = False) -> ua.NodeId:
            full = "/".join(self.root_parts + [rel])
            return batch.variable(parent_of(rel), ident(full), rel.rsplit("/", 1)[-1], value, vtype, writable)

        parent_of("x")  # the root object exists even for an empty dialect
        self.nodes = {}
        self._writable = {}
        for path, projs in self.projections.items():
            for p in projs:
                assert p.node is not None
                nid = variable(p.node, p.to_raw(m.values[path]), _vtype(p.field), p.field.writable)
                self.nodes[id(p)] = nid
                if p.field.writable:
                    self._writable[nid] = p
        self._alarm_nodes = []
        for a in d.alarms:
            assert a.node is not None
            self._alarm_nodes.append((a.alarm, variable(a.node, alarm_active(m, a.alarm), ua.VariantType.Boolean)))
        self._alarm_code_node = None
        if d.alarm_code is not None and d.alarm_code.node is not None:
            self._alarm_code_node = variable(d.alarm_code.node, most_severe(m, d.alarm_code.codes), _vtype(d.alarm_code))
        self._command_node = None
        reg = d.commands.register_
        if reg is not None and reg.node is not None:
            self._command_node = variable(reg.node, 0, _vtype(reg), writable=True)
        await batch.commit(server)
        self._alarms_version = m.alarms_version
        for command, node in d.commands.methods.items():
            parent = parent_of(node)
            await batch.commit(server)
            full = "/".join(self.root_parts + [node])
            await Node(server.iserver.isession, parent).add_method(
                ua.NodeId(ident(full), ns), ua.QualifiedName(node.rsplit("/", 1)[-1], ns), self._method(command), [], [])
        server.subscribe_server_callback(CallbackType.PreWrite, self._pre_write)
        server.subscribe_server_callback(CallbackType.PostWrite, self._post_write)

    # --- publishing ----------------------------------------------------------------------------------------
    async def publish(self, changes: dict[str, Any]) -> None:
        server = self.server.server
        if server is None or not self.nodes:
            return
        ts = now()
        write = server.iserver.aspace.write_attribute_value
        value_attr = ua.AttributeIds.Value
        for path, value in changes.items():
            for p in self.projections.get(path, ()):
                try:
                    raw = p.to_raw(value)
                except (ValueError, TypeError) as exc:
                    log.warning("%s: %s cannot be served at %s: %s", self.machine.equipment_id, path, p.node, exc)
                    continue
                await write(self.nodes[id(p)], value_attr, data_value(raw, _vtype(p.field), ts))
        m = self.machine
        if m.alarms_version != self._alarms_version:
            self._alarms_version = m.alarms_version
            for alarm_id, nid in self._alarm_nodes:
                await write(nid, value_attr, data_value(alarm_active(m, alarm_id), ua.VariantType.Boolean, ts))
            ac = self.dialect.alarm_code
            if self._alarm_code_node is not None and ac is not None:
                await write(self._alarm_code_node, value_attr, data_value(most_severe(m, ac.codes), _vtype(ac), ts))

    # --- client writes and methods -----------------------------------------------------------------------------
    async def _pre_write(self, event: ServerItemCallback, dispatcher: Any) -> None:
        if not event.is_external:
            return
        for wv in event.request_params.NodesToWrite:
            p = self._writable.get(wv.NodeId)
            if p is None or wv.AttributeId != ua.AttributeIds.Value:
                continue
            raw = wv.Value.Value.Value if wv.Value and wv.Value.Value else None
            value = p.from_raw(raw) if raw is not None else None
            if value is None or not self.machine.write(p.path, value):
                raise ServiceError(ua.StatusCodes.BadOutOfRange)

    async def _post_write(self, event: ServerItemCallback, dispatcher: Any) -> None:
        if not event.is_external or self._command_node is None:
            return
        for wv in event.request_params.NodesToWrite:
            if wv.NodeId != self._command_node or wv.AttributeId != ua.AttributeIds.Value:
                continue
            code = wv.Value.Value.Value if wv.Value and wv.Value.Value else 0
            name = {c: n for n, c in self.dialect.commands.codes.items()}.get(int(code or 0))
            if name is not None:
                self.machine.execute(name, {})
                self.commands_run += 1
            server = self.server.server
            reg = self.dialect.commands.register_
            if server is not None and reg is not None:
                # The command node clears itself once the device has taken the command.
                await server.iserver.aspace.write_attribute_value(
                    self._command_node, ua.AttributeIds.Value, data_value(0, _vtype(reg), now()))

    def _method(self, command: str) -> Any:
        async def handler(parent: ua.NodeId, *args: Any) -> list[ua.Variant]:
            self.machine.execute(command, {})
            self.commands_run += 1
            return []

        return handler
