"""The spec's native OPC UA binding for a machine, per `interface_spec.opcua_map`.

    Objects/Machines/<machine>/<SubUnit>/<Variable>        spec variables
    Objects/Machines/<machine>/<SubUnit>_<NN>/<Variable>   array instances
    .../Commands/<Command>(params) -> Int32                 result code
    .../Alarms/ActiveCodes                                  UInt32[]
    .../Events/LastSequence, Events/Read(from, max)         String[] of JSON envelopes
    .../Recipes/List(), Get(id), Put(json) -> Int32
    .../SelfDescription                                     String, JSON

Every node is in the spec's namespace (`spec.core.opcua.namespace_uri`);
numeric variables carry EngineeringUnits and EURange. Writable variables
(access rw) take client writes through the machine, which may refuse them
(Bad_OutOfRange). Only changed values are written on each publish.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from asyncua import Server, ua
from asyncua.common.callback import CallbackType, ServerItemCallback
from asyncua.common.node import Node
from asyncua.common.utils import ServiceError

from interface_spec import split_path
from interface_spec.opcua_map import (
    ACTIVE_ALARMS,
    ALARMS_FOLDER,
    BINDING_METHODS,
    COMMAND_RESULT,
    COMMANDS_FOLDER,
    EU_NAMESPACE_URI,
    EVENTS_FOLDER,
    EVENTS_LAST_SEQ,
    EVENTS_READ,
    RECIPES_FOLDER,
    RECIPES_GET,
    RECIPES_LIST,
    RECIPES_PUT,
    SELF_DESCRIPTION,
    MethodArg,
    command_inputs,
    opcua_type,
    relative_path,
    unece_unit_id,
)
from simulators.machine import Machine
from simulators.servers.opcua_server import NodeBatch, OpcUaSecurity, OpcUaSimServer, argument, data_value, now

log = logging.getLogger("linegw.sim.opcua_binding")

EVENTS_READ_MAX = 1000


def _variant_value(v: Any) -> Any:
    return v.Value if isinstance(v, ua.Variant) else v


def _argument(arg: MethodArg) -> ua.Argument:
    return argument(arg.name, ua.VariantType[arg.data_type], arg.array)


class OpcUaBinding:
    """Serves one machine over the conforming OPC UA address space."""

    protocol = "opcua"

    def __init__(self, machine: Machine, host: str = "127.0.0.1", port: int = 0, machine_name: str | None = None,
                 security: OpcUaSecurity | None = None):
        self.machine = machine
        spec = machine.spec
        self.machine_name = machine_name or machine.equipment_id
        self.server = OpcUaSimServer(
            host=host, port=port, path=f"linegw/{machine.equipment_id}", name=f"linegw simulator {machine.equipment_id}",
            app_uri=f"urn:linegw:sim:{machine.equipment_id}", namespace_uri=spec.core.opcua.namespace_uri,
            populate=self._populate, security=security)
        self.types: dict[str, ua.VariantType] = {p: ua.VariantType[opcua_type(v)] for p, v in machine.variables.items()}
        self.nodes: dict[str, ua.NodeId] = {}
        self._writable: dict[ua.NodeId, str] = {}
        self._alarms_node: ua.NodeId | None = None
        self._last_seq_node: ua.NodeId | None = None
        self._alarms_version = -1
        self._last_seq = -1
        self.commands_run = 0
        self.clock = now  # the SourceTimestamp of what is published

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

    # --- address space -----------------------------------------------------------------------------
    async def _populate(self, server: Server, ns: int) -> None:
        m, spec = self.machine, self.machine.spec
        batch = NodeBatch(ns)
        name = self.machine_name
        machines = batch.folder(ua.NodeId(ua.ObjectIds.ObjectsFolder), spec.core.opcua.machines_folder,
                                spec.core.opcua.machines_folder)
        root = batch.obj(machines, name, name)
        folders: dict[str, ua.NodeId] = {}

        def folder(folder_name: str) -> ua.NodeId:
            nid = folders.get(folder_name)
            if nid is None:
                nid = folders[folder_name] = batch.obj(root, f"{name}/{folder_name}", folder_name)
            return nid

        self.nodes = {}
        self._writable = {}
        for path, var in m.variables.items():
            d = spec.variable(m.cls, path)
            _, index = split_path(path)
            sub, leaf = relative_path(d.sub_unit, var.id, index)
            ident = f"{name}/{sub}/{leaf}"
            vtype = self.types[path]
            nid = batch.variable(folder(sub), ident, leaf, m.values[path], vtype, writable=var.access == "rw")
            self.nodes[path] = nid
            if var.access == "rw":
                self._writable[nid] = path
            if var.type in ("float", "int", "uint"):
                unit = spec.units[var.unit]
                batch.engineering_units(nid, ident, EU_NAMESPACE_URI, unece_unit_id(unit.unece), unit.symbol,
                                        unit.name)
                if var.range:
                    batch.eu_range(nid, ident, *var.range)
        alarms = folder(ALARMS_FOLDER)
        self._alarms_node = batch.variable(alarms, f"{name}/{ALARMS_FOLDER}/{ACTIVE_ALARMS}", ACTIVE_ALARMS,
                                           m.active_alarm_codes(), ua.VariantType.UInt32, array=True)
        events = folder(EVENTS_FOLDER)
        self._last_seq_node = batch.variable(events, f"{name}/{EVENTS_FOLDER}/{EVENTS_LAST_SEQ}", EVENTS_LAST_SEQ,
                                             m.last_seq, ua.VariantType.UInt32)
        batch.variable(root, f"{name}/{SELF_DESCRIPTION}", SELF_DESCRIPTION,
                       json.dumps(m.self_description(), separators=(",", ":")), ua.VariantType.String)
        commands = folder(COMMANDS_FOLDER)
        for method in BINDING_METHODS:
            folder(method.folder)
        await batch.commit(server)
        self._alarms_version = m.alarms_version
        self._last_seq = m.last_seq

        isession = server.iserver.isession
        for cmd in spec.commands.values():
            await Node(isession, commands).add_method(
                ua.NodeId(f"{name}/{COMMANDS_FOLDER}/{cmd.id}", ns), ua.QualifiedName(cmd.id, ns),
                self._command_handler(cmd.id), [_argument(a) for a in command_inputs(cmd.params)],
                [_argument(COMMAND_RESULT)])
        handlers = {(EVENTS_FOLDER, EVENTS_READ): self._read_events, (RECIPES_FOLDER, RECIPES_LIST): self._recipe_list,
                    (RECIPES_FOLDER, RECIPES_GET): self._recipe_get, (RECIPES_FOLDER, RECIPES_PUT): self._recipe_put}
        for method in BINDING_METHODS:
            await Node(isession, folders[method.folder]).add_method(
                ua.NodeId(f"{name}/{method.folder}/{method.name}", ns), ua.QualifiedName(method.name, ns),
                handlers[(method.folder, method.name)], [_argument(a) for a in method.inputs],
                [_argument(a) for a in method.outputs])
        server.subscribe_server_callback(CallbackType.PreWrite, self._pre_write)

    # --- publishing ------------------------------------------------------------------------------------
    async def publish(self, changes: dict[str, Any]) -> None:
        server = self.server.server
        if server is None:
            return
        ts = self.clock()
        nodes, types = self.nodes, self.types
        write = server.iserver.aspace.write_attribute_value
        value_attr = ua.AttributeIds.Value
        for path, value in changes.items():
            nid = nodes.get(path)
            if nid is not None:
                await write(nid, value_attr, data_value(value, types[path], ts))
        m = self.machine
        if m.alarms_version != self._alarms_version and self._alarms_node is not None:
            self._alarms_version = m.alarms_version
            await write(self._alarms_node, value_attr, data_value(m.active_alarm_codes(), ua.VariantType.UInt32, ts))
        if m.last_seq != self._last_seq and self._last_seq_node is not None:
            self._last_seq = m.last_seq
            await write(self._last_seq_node, value_attr, data_value(m.last_seq, ua.VariantType.UInt32, ts))

    # --- client writes and method calls -------------------------------------------------------------------
    async def _pre_write(self, event: ServerItemCallback, dispatcher: Any) -> None:
        if not event.is_external:
            return
        for wv in event.request_params.NodesToWrite:
            path = self._writable.get(wv.NodeId)
            if path is None or wv.AttributeId != ua.AttributeIds.Value:
                continue
            value = wv.Value.Value.Value if wv.Value and wv.Value.Value else None
            if self.machine.write_locked(path):
                raise ServiceError(ua.StatusCodes.BadUserAccessDenied)
            if not self.machine.write(path, value):
                raise ServiceError(ua.StatusCodes.BadOutOfRange)

    def _command_handler(self, command: str) -> Any:
        params = self.machine.spec.commands[command].params

        async def handler(parent: ua.NodeId, *args: Any) -> list[ua.Variant]:
            given = {p.name: _variant_value(a) for p, a in zip(params, args)}
            code = self.machine.execute(command, given) if len(args) <= len(params) else \
                self.machine.spec.result_codes["parameter_invalid"]
            self.commands_run += 1
            return [ua.Variant(code, ua.VariantType.Int32)]

        return handler

    async def _read_events(self, parent: ua.NodeId, *args: Any) -> list[ua.Variant]:
        first = int(_variant_value(args[0])) if args else 1
        limit = int(_variant_value(args[1])) if len(args) > 1 else 0
        # MaxCount 0 (or less): no limit of the client's, the server's own applies (the rule opcua.events-read.zero).
        envelopes = self.machine.events_from(first, min(limit, EVENTS_READ_MAX) if limit > 0 else EVENTS_READ_MAX)
        texts = [json.dumps(e, separators=(",", ":")) for e in envelopes]
        return [ua.Variant(texts, ua.VariantType.String, is_array=True)]

    async def _recipe_list(self, parent: ua.NodeId, *args: Any) -> list[ua.Variant]:
        listing = [{"id": r.id, "version": r.version, "hash": r.hash} for r in self.machine.recipes.values()]
        return [ua.Variant(json.dumps(listing), ua.VariantType.String)]

    async def _recipe_get(self, parent: ua.NodeId, *args: Any) -> list[ua.Variant]:
        recipe = self.machine.recipes.get(str(_variant_value(args[0]))) if args else None
        return [ua.Variant(json.dumps(recipe.as_dict()) if recipe else "", ua.VariantType.String)]

    async def _recipe_put(self, parent: ua.NodeId, *args: Any) -> list[ua.Variant]:
        codes = self.machine.spec.result_codes
        try:
            doc = json.loads(str(_variant_value(args[0]))) if args else None
        except json.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            return [ua.Variant(codes["parameter_invalid"], ua.VariantType.Int32)]
        code, _ = self.machine.put_recipe(doc.get("id", ""), doc.get("parameters"), doc.get("version"))
        return [ua.Variant(code, ua.VariantType.Int32)]
