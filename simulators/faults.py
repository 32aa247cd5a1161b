"""Fault injection: a simulator that misbehaves the way field equipment does.

Faults are switched on at start-up (`SimConfig.faults`) or at run time
through `Simulator.faults` (a `FaultControls`). At start-up a fault is
a name with parameters, written either way:

    ["slow:delay_s=0.5", "nan:path=web.line_speed", "drop_connections:period_s=30"]
    [{"name": "exception", "path": "web.line_speed", "code": "device_busy"}]
    {"restart": {"period_s": 120}, "freeze": {}}

Names and parameters (`FAULTS` is the list):

    drop_connections  [period_s]               close every client connection (every period_s)
    restart           [period_s, downtime_s, shift_namespace]
                                               stop and start the server; OPC UA registers an extra
                                               namespace first, so namespace indexes change
    slow              delay_s                  every request answered late
    exception         path | address, code, [count]
                                               Modbus exception for requests touching those
                                               registers (path "*": every register, as a busy
                                               device or a failing gateway answers): illegal_address
                                               (2), device_busy (6), gateway_target_failed (11) or a number
    refuse                                     Modbus: the port stops listening
    freeze            [path]                   values stop changing (one path, or all incl. heartbeat)
    out_of_range      path                     a value beyond the variable's spec range
    nan               path                     a float variable served as NaN
    limits            [max_nodes_per_read, max_monitored_items_per_call]
                                               OPC UA operation limits, announced and enforced
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulators.simulator import Simulator

EXCEPTION_CODES = {"illegal_function": 1, "illegal_address": 2, "illegal_value": 3, "device_failure": 4,
                   "device_busy": 6, "gateway_path_unavailable": 10, "gateway_target_failed": 11}
FAULTS = ("drop_connections", "restart", "slow", "exception", "refuse", "freeze", "out_of_range", "nan", "limits")
ALL = "*"


def parse_faults(faults: Any) -> list[tuple[str, dict[str, Any]]]:
    """Start-up faults in any of the accepted shapes -> [(name, params)]; unknown names are errors."""
    return parse_switches(faults, FAULTS, "fault")


def parse_switches(entries: Any, known: Any, kind: str) -> list[tuple[str, dict[str, Any]]]:
    """Named switches with parameters (faults, defects) in any of the accepted shapes -> [(name, params)]."""
    items: list[tuple[str, dict[str, Any]]] = []
    if isinstance(entries, dict):
        items = [(name, dict(params or {})) for name, params in entries.items()]
    else:
        for entry in entries or []:
            if isinstance(entry, str):
                name, _, rest = entry.partition(":")
                params: dict[str, Any] = {}
                for part in filter(None, (p.strip() for p in rest.split(","))):
                    key, eq, raw = part.partition("=")
                    if not eq:
                        raise ValueError(f"{kind} '{entry}': parameter '{part}' is not key=value")
                    params[key.strip()] = _scalar(raw.strip())
                items.append((name.strip(), params))
            elif isinstance(entry, dict) and "name" in entry:
                items.append((str(entry["name"]), {k: v for k, v in entry.items() if k != "name"}))
            else:
                raise ValueError(f"{kind} {entry!r}: give 'name:key=value,...' or {{name: ..., key: value}}")
    for name, _ in items:
        if name not in known:
            raise ValueError(f"unknown {kind} '{name}' (known: {', '.join(known)})")
    return items


def _scalar(raw: str) -> Any:
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


class ValueFaults:
    """Frozen and replaced values, applied between the machine and the protocol binding."""

    def __init__(self) -> None:
        self.frozen: set[str] = set()  # paths, or {ALL}
        self.overrides: dict[str, Any] = {}
        self._released: set[str] = set()

    @property
    def active(self) -> bool:
        return bool(self.frozen or self.overrides or self._released)

    def apply(self, changes: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
        """The values to serve, given what changed in the machine since the last publish."""
        out = changes
        if self.frozen:
            if ALL in self.frozen:
                out = {}
            else:
                out = {p: v for p, v in out.items() if p not in self.frozen}
        if self._released:
            out = {**out, **{p: current[p] for p in self._released if p in current}}
            self._released = set()
        if self.overrides:
            out = {**out, **self.overrides}
        return out

    def release(self, paths: set[str], current: dict[str, Any]) -> None:
        """Serve the machine's values again for these paths (ALL: everything)."""
        self._released |= set(current) if ALL in paths else paths


class FaultControls:
    """The fault switches of one running simulator."""

    def __init__(self, sim: Simulator):
        self._sim = sim
        self.values = ValueFaults()
        self.periodic: dict[str, dict[str, Any]] = {}  # drop_connections / restart -> params, run by the simulator

    # --- connection and server --------------------------------------------------------------------
    def drop_connections(self) -> None:
        self._sim.binding.drop_connections()

    async def restart(self, shift_namespace: bool = True, downtime_s: float = 0.0, new_certificate: bool = False) -> None:
        """Restart the server; OPC UA with a shifted namespace index unless told otherwise, and with a certificate
        made anew when asked."""
        binding = self._sim.binding
        if binding.protocol == "opcua":
            await binding.restart(shift_namespace=shift_namespace, downtime_s=downtime_s,
                                  new_certificate=new_certificate)
        else:
            await binding.restart(downtime_s=downtime_s)
        await self._sim.publish_all()

    def slow(self, delay_s: float) -> None:
        if delay_s < 0:
            raise ValueError("delay_s must be >= 0")
        self._server_faults().delay_s = float(delay_s)

    def exception(self, target: str | int, code: int | str = "device_busy", count: int | None = None) -> range:
        """Modbus exception `code` for requests touching a spec path's registers or an address range."""
        binding: Any = self._sim.binding  # a Modbus binding (checked below): it maps paths to registers
        if binding.protocol != "modbus":
            raise ValueError("Modbus exceptions need a Modbus simulator")
        if isinstance(code, str):
            if code not in EXCEPTION_CODES:
                raise ValueError(f"unknown exception '{code}' (known: {', '.join(EXCEPTION_CODES)})")
            code = EXCEPTION_CODES[code]
        if target == ALL:
            address, n = 0, binding.server.size
        elif isinstance(target, str):
            address, n = binding.address_of(target)
        else:
            address, n = int(target), 1
        span = range(address, address + (count or n))
        binding.server.faults.exception_addresses[span] = int(code)
        return span

    def replies(self, how: str = "ok") -> None:
        """Modbus replies as noise ("garbage") or under another transaction id ("foreign_tid"); "ok" ends it."""
        binding: Any = self._sim.binding
        if binding.protocol != "modbus":
            raise ValueError("garbled replies are a Modbus fault")
        if how not in ("ok", "garbage", "foreign_tid"):
            raise ValueError(f"replies {how!r}: use ok, garbage or foreign_tid")
        binding.server.faults.replies = how

    def refuse(self, on: bool = True) -> None:
        binding = self._sim.binding
        if binding.protocol != "modbus":
            raise ValueError("refuse is a Modbus fault; for OPC UA use restart with a downtime")
        binding.server.faults.refuse = on

    def silence(self, on: bool = True) -> None:
        """OPC UA: the subscriptions clients have now send keep-alives but no data changes (new ones work)."""
        binding = self._sim.binding
        if binding.protocol != "opcua":
            raise ValueError("a silent subscription is an OPC UA fault")
        binding.server.faults.silence(on)

    def session_limit(self, max_sessions: int | None) -> None:
        """OPC UA: sessions past `max_sessions` refused with BadTooManySessions (None: no limit). A session whose
        connection dropped counts until it times out, as on real servers."""
        binding = self._sim.binding
        if binding.protocol != "opcua":
            raise ValueError("a session limit is an OPC UA fault")
        binding.server.faults.max_sessions = max_sessions

    def sessions(self) -> int:
        """OPC UA sessions the server holds now."""
        return int(self._sim.binding.server.faults.sessions())

    async def limits(self, max_nodes_per_read: int | None = None, max_monitored_items_per_call: int | None = None) -> None:
        binding = self._sim.binding
        if binding.protocol != "opcua":
            raise ValueError("operation limits are an OPC UA fault")
        await binding.server.faults.set_limits(max_nodes_per_read, max_monitored_items_per_call)

    def _server_faults(self) -> Any:
        return self._sim.binding.server.faults

    # --- values ------------------------------------------------------------------------------------------
    def _check_path(self, path: str) -> None:
        if path not in self._sim.machine.values:
            raise KeyError(f"{self._sim.machine.equipment_id} serves no variable '{path}'")

    def freeze(self, path: str | None = None) -> None:
        """Stop serving changes of one path, or of everything (the heartbeat included)."""
        if path is not None:
            self._check_path(path)
        self.values.frozen.add(path or ALL)

    def unfreeze(self, path: str | None = None) -> None:
        paths = self.values.frozen if path is None else {path}
        self.values.release(set(paths), self._sim.machine.values)
        self.values.frozen -= set(paths)

    def out_of_range(self, path: str) -> float:
        """Serve a value beyond the spec range of a numeric variable; returns the value served."""
        self._check_path(path)
        var = self._sim.machine.variables[path]
        if var.range is None or var.type not in ("float", "int", "uint"):
            raise ValueError(f"{path} has no numeric range to leave")
        lo, hi = var.range
        value: float = hi + max((hi - lo) * 0.5, 1.0)
        if var.type != "float":
            value = int(value)
            limit = (1 << (var.bits or 32)) - 1 if var.type == "uint" else (1 << ((var.bits or 32) - 1)) - 1
            if value > limit:
                raise ValueError(f"{path}: its range already spans the whole {var.type}{var.bits or 32}")
        self.values.overrides[path] = value
        return value

    def nan(self, path: str) -> None:
        self._check_path(path)
        if self._sim.machine.variables[path].type != "float":
            raise ValueError(f"{path} is not a float variable; NaN needs one")
        self.values.overrides[path] = math.nan

    def restore(self, path: str | None = None) -> None:
        """Undo out_of_range / nan for one path or all."""
        paths = set(self.values.overrides) if path is None else {path}
        for p in paths:
            self.values.overrides.pop(p, None)
        self.values.release(paths, self._sim.machine.values)

    # --- all at once ------------------------------------------------------------------------------------
    async def switch_on(self, name: str, **params: Any) -> None:
        """Switch a fault on by name, as the start-up list does."""
        if name not in FAULTS:
            raise ValueError(f"unknown fault '{name}' (known: {', '.join(FAULTS)})")
        if name in ("drop_connections", "restart") and "period_s" in params:
            period = float(params["period_s"])
            if period <= 0:
                raise ValueError(f"{name}: period_s must be > 0")
            self.periodic[name] = dict(params)
            return
        if name == "drop_connections":
            self.drop_connections()
        elif name == "restart":
            await self.restart(bool(params.get("shift_namespace", True)), float(params.get("downtime_s", 0.0)))
        elif name == "slow":
            self.slow(float(params.get("delay_s", 0.5)))
        elif name == "exception":
            target = params.get("path", params.get("address"))
            if target is None:
                raise ValueError("exception needs 'path' or 'address'")
            self.exception(target, params.get("code", "device_busy"), params.get("count"))
        elif name == "refuse":
            self.refuse(bool(params.get("on", True)))
        elif name == "freeze":
            self.freeze(params.get("path"))
        elif name == "out_of_range":
            self.out_of_range(str(params["path"]))
        elif name == "nan":
            self.nan(str(params["path"]))
        elif name == "limits":
            await self.limits(params.get("max_nodes_per_read"), params.get("max_monitored_items_per_call"))

    async def clear(self) -> None:
        """Back to a well-behaved simulator."""
        self.periodic.clear()
        self.unfreeze()
        self.restore()
        binding = self._sim.binding
        if binding.protocol == "modbus":
            binding.server.faults.clear()
        else:
            await binding.server.faults.clear()
