"""`linegw discover`: a draft vendor file from a machine on the network.

OPC UA: the address space is browsed below Objects, the machine object is the
deepest object that holds every vendor variable, and each node is matched to
a spec variable of the chosen class by the words of its browse path (split at
case changes, digits and separators, with the abbreviations vendors use:
`NG`, `Alive`, `Set`, `EPC`...) and by type (a String node feeds only a string
variable). A unit at the end of a name (`CycleTimeMs`, `I_mA`, `PowerW`)
becomes the `from_unit` or the scale to the spec's unit. Numbered objects
(`Zone1`, `Slot001`) are array instances (`{i}`, `{i:03d}`). Boolean nodes in
an alarm folder are matched to the class's alarms, methods to its commands.

Modbus has no names of its own. Given the vendor's register list (a CSV of
name, table, address, dtype... as vendors document their maps), each register
is matched by its documented name like a node, and read to see it answers.
Without one, the ranges given are read in bounded requests, four times a
second apart, and what can be told from the values alone is drafted — a heartbeat (a
register counting up between the reads) and text blocks — with every other
non-zero register listed for the integrator under its plausible decodings.

The draft is a starting point, never a finished file: every match carries
its score as a comment, enum codes and command codes are left to fill in, and
the mandatory variables still unmapped are listed as a to-do. `linegw mapping
validate` and the integration conformance run (`linegw conformance
--mapping`) then say when the file is complete.
"""

from __future__ import annotations

import asyncio
import functools
import math
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from interface_spec import Spec
from interface_spec.model import Tier
from interface_spec.vendor import CONVERSIONS

# Words vendors use for a spec word: a node's word on the left counts as the spec words on the right.
WORDS: dict[str, str] = {
    "alive": "heartbeat", "watchdog": "heartbeat", "life": "heartbeat",
    "running": "item state", "busy": "item state", "remote": "control authority", "slot": "channel", "ch": "channel",
    "mode": "operation", "health": "device", "state": "packml",
    "total": "processed count", "ok": "good count", "ng": "defective count", "scrap": "defective count",
    "reject": "defective", "output": "count",
    "vendor": "manufacturer", "maker": "manufacturer", "type": "model", "serialno": "serial number", "sn": "serial number",
    "barcode": "id", "no": "id", "lot": "id", "name": "id", "program": "recipe", "current": "active",
    "set": "setpoint", "sp": "setpoint", "temp": "temperature", "epc": "edge control", "um": "deviation",
    "rpm": "mandrel speed", "judge": "result", "u": "voltage", "i": "current", "q": "capacity",
    "t": "temperature", "k": "k value", "unwind": "unwinder", "rewind": "rewinder", "env": "environment",
    "estop": "emergency stop", "pause": "hold", "resume": "unhold", "fault": "clear", "emergency": "abort",
    "good": "count", "config": "configuration", "overtemp": "overtemperature", "nmp": "solvent",
}
# A unit at the end of a browse name, as UCUM; longest first.
NAME_UNITS = [("MOhm", "MOhm"), ("KWh", "kW.h"), ("kWh", "kW.h"), ("mWh", "mW.h"), ("mAh", "mA.h"), ("Wh", "W.h"),
              ("mA", "mA"), ("mV", "mV"), ("Um", "um"), ("Mm", "mm"), ("Ms", "ms"), ("kW", "kW"), ("W", "W")]
SCALES = {("ms", "s"): 0.001, ("s", "ms"): 1000.0, ("mm", "m"): 0.001}
NUMERIC = {"SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float", "Double"}
THRESHOLD = 0.40


def words(text: str) -> list[str]:
    """"LinearSpeedSet" -> [linear, speed, set]; "CycleTimeMs" -> [cycle, time] (a unit is no word);
    "Slot001" -> [slot]; plurals count as their singular ("Zones" -> zone)."""
    unit = name_unit(text)
    if unit is not None:
        text = text[: -len(next(suffix for suffix, u in NAME_UNITS if u == unit and text.endswith(suffix)))]
    parts = re.findall(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+", text)
    return [p.lower()[:-1] if len(p) > 3 and p.endswith("s") and not p.endswith("ss") else p.lower() for p in parts]


def bag(parts: list[list[str]], weights: list[float], vendor: bool = True) -> dict[str, float]:
    """Weighted words, with neighbours joined ("over"+"voltage"); a vendor's words also count as the
    spec words they stand for."""
    out: dict[str, float] = {}
    for ws, weight in zip(parts, weights):
        joined = ["".join(ws[i:i + 2]) for i in range(len(ws) - 1)] + ["".join(ws)]
        for w in ws + joined:
            for x in [w, *(WORDS.get(w, "").split() if vendor else [])]:
                out[x] = max(out.get(x, 0.0), weight)
    return out


def similarity(a: dict[str, float], b: dict[str, float]) -> float:
    shared = sum(min(a[w], b[w]) for w in a.keys() & b.keys())
    return shared / math.sqrt(sum(a.values()) * sum(b.values())) if a and b else 0.0


def name_unit(name: str) -> str | None:
    for suffix, unit in NAME_UNITS:
        if name.endswith(suffix) and len(name) > len(suffix) and (name[-len(suffix) - 1].islower() or name[-len(suffix) - 1] == "_"):
            return unit
    return None


def unit_fields(given: str | None, spec_unit: str) -> dict[str, Any]:
    """from_unit or scale for a unit read off a name; nothing when it is the spec's or unknown."""
    if given is None or given == spec_unit:
        return {}
    if (given, spec_unit) in CONVERSIONS:
        return {"from_unit": given}
    if (given, spec_unit) in SCALES:
        return {"scale": SCALES[(given, spec_unit)]}
    return {}


@dataclass
class Node:
    """A variable or method seen on an OPC UA machine, below the machine object."""

    path: list[str]  # browse names below the root
    kind: str  # variable | method
    vtype: str = ""  # builtin type of a variable
    value: Any = None
    template: str = ""  # the path with the number as {i} / {i:03d}

    @property
    def rel(self) -> str:
        return "/".join(self.path)


@dataclass
class Draft:
    """A drafted vendor file, and what the draft could not tell."""

    cls: str
    protocol: str
    header: dict[str, Any]
    variables: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # (entry, comment)
    alarms: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    commands: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict)
    todo: list[str] = field(default_factory=list)  # mandatory spec paths not drafted
    unmatched: list[str] = field(default_factory=list)  # what the machine has that matched nothing

    def text(self, source: str) -> str:
        lines = [f"# Draft vendor file: `linegw discover` of {source}, for a {self.cls}.",
                 "# Names were matched to the spec by their words and units by name suffixes: check every line,",
                 "# fill in enum and command codes, then `linegw mapping validate` this file.",
                 f"mapping: discovered-{self.cls}-{self.protocol}", f"class: {self.cls}", f"protocol: {self.protocol}"]
        lines += [f"{k}: {_flow(v)}" for k, v in self.header.items()]
        lines.append("variables:")
        lines += [f"  - {_flow(entry)}" + (f"  # {comment}" if comment else "") for entry, comment in self.variables]
        if self.alarms:
            lines.append("alarms:")
            lines += [f"  - {_flow(entry)}" + (f"  # {comment}" if comment else "") for entry, comment in self.alarms]
        if self.commands:
            lines.append("commands:")
            lines += [f"  {name}: {_flow(entry)}" + (f"  # {comment}" if comment else "")
                      for name, (entry, comment) in self.commands.items()]
        if self.todo:
            lines.append(f"# To do: {len(self.todo)} mandatory variables not found on the machine (or not matched):")
            lines += [f"#   {p}" for p in self.todo]
        if self.unmatched:
            lines.append(f"# Seen on the machine and matched to nothing ({len(self.unmatched)}):")
            lines += [f"#   {u}" for u in self.unmatched]
        return "\n".join(lines) + "\n"


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"' if re.search(r"[{}\[\]:,#*&!|>'\"%@`]|^\s|\s$|^$", value) or value in ("true", "false", "null") else value
    return repr(value) if isinstance(value, float) else str(value)


def _mandatory(spec: Spec, cls: str) -> list[str]:
    return [d.template.replace("[]", "[*]") for d in spec.variables(cls)
            if d.var.origin == "equipment" and d.var.tier == Tier.mandatory and d.sub_unit.tier == Tier.mandatory]


def _candidates(spec: Spec, cls: str) -> list[tuple[str, Any, dict[str, float]]]:
    """(path, variable, word bag) of every variable a machine of the class serves."""
    out = []
    for d in spec.variables(cls):
        if d.var.origin != "equipment":
            continue
        out.append((d.template.replace("[]", "[*]"), d.var, bag([words(_camel(d.var.id)), words(_camel(d.sub_unit.id))], [2.0, 1.0],
                                                                     vendor=False)))
    return out


def _camel(ident: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in ident.split("_"))


def _fits(var: Any, vtype: str) -> bool:
    """Whether a value of this OPC UA builtin type can feed the variable."""
    if vtype == "String":
        return bool(var.type == "string")
    if var.type == "string":
        return False
    if vtype == "Boolean":
        return var.type in ("bool", "enum")
    return vtype in NUMERIC and var.type != "bool"


def _greedy(scored: list[tuple[float, str, str]]) -> list[tuple[float, str, str]]:
    """(score, key, target) above the threshold, best first, each key and each target used once."""
    keys: set[str] = set()
    targets: set[str] = set()
    out = []
    for s, key, target in sorted(scored, key=lambda t: -t[0]):
        if s < THRESHOLD or key in keys or target in targets:
            continue
        keys.add(key)
        targets.add(target)
        out.append((s, key, target))
    return out


def match_variables(spec: Spec, cls: str, items: dict[str, tuple[dict[str, float], str, bool]]) -> list[tuple[float, str, str]]:
    """(score, key, spec path) for items {key: (word bag, builtin type, stands for array instances)}."""
    return _greedy([(similarity(b, vb), key, path) for key, (b, vtype, array) in items.items()
                    for path, var, vb in _candidates(spec, cls) if ("[*]" in path) == array and _fits(var, vtype)])


def match_alarms(spec: Spec, cls: str, items: dict[str, dict[str, float]]) -> list[tuple[float, str, str]]:
    return _greedy([(similarity(b, bag([words(_camel(a.id))], [1.0], vendor=False)), key, a.id)
                    for key, b in items.items() for a in spec.alarms(cls)])


def _enum_note(var: Any) -> str:
    return "; TODO: enum codes (vendor code: spec member)" if var.type == "enum" else ""


def draft_from_nodes(spec: Spec, cls: str, namespace: str, root: str, nodes: list[Node]) -> Draft:
    """Match browsed nodes to the class's variables, alarms and commands."""
    draft = Draft(cls, "opcua", {"opcua": {"namespace_uri": namespace, "root": root}})
    alarm_folder = {"alarm", "alarms", "fault", "faults"}
    in_alarms = [n for n in nodes if n.kind == "variable" and n.vtype == "Boolean" and alarm_folder & set(words(n.path[0]))]
    # One candidate per node, or per numbered group: "Dryer/Zone{i}/TempActual" stands for all its instances.
    groups: dict[str, Node] = {}
    for n in nodes:
        if n.kind == "variable" and n not in in_alarms:
            groups.setdefault(n.template or n.rel, n)
    items = {key: (bag([words(n.path[-1]), [w for p in n.path[:-1] for w in words(p)]], [2.0, 1.0]), n.vtype,
                   bool(n.template)) for key, n in groups.items()}
    taken: set[str] = set()
    for s, key, path in match_variables(spec, cls, items):
        n, var = groups[key], spec.variable(cls, path.replace("[*]", "[1]")).var
        taken.add(key)
        entry = {"path": path, "source": {"node": key}, **unit_fields(name_unit(n.path[-1]), var.unit)}
        draft.variables.append((entry, f"matched {s:.2f}, reads {n.value!r}{_enum_note(var)}"))
    for s, rel, alarm in match_alarms(spec, cls, {n.rel: bag([words(n.path[-1])], [1.0]) for n in in_alarms}):
        taken.add(rel)
        draft.alarms.append(({"alarm": alarm, "source": {"node": rel}}, f"matched {s:.2f}"))
    methods = {n.rel: n for n in nodes if n.kind == "method"}
    for s, rel, command in _greedy([(similarity(bag([words(n.path[-1])], [1.0]), bag([words(c)], [1.0], vendor=False)), rel, c)
                                    for rel, n in methods.items() for c in spec.commands]):
        taken.add(rel)
        draft.commands[command] = ({"call": {"object": "/".join(methods[rel].path[:-1]) or ".", "method": rel}},
                                   f"matched {s:.2f}")
    drafted = {entry["path"] for entry, _ in draft.variables}
    draft.todo = [p for p in _mandatory(spec, cls) if p not in drafted]
    draft.unmatched = [f"{key} ({n.vtype or n.kind}, reads {n.value!r})" for key, n in
                       {**groups, **{n.rel: n for n in in_alarms}, **methods}.items() if key not in taken]
    return draft


_NUMBERED = re.compile(r"^(.*?[A-Za-z_])(\d+)$")


def _number(nodes: list[Node]) -> None:
    """Numbered objects ("Zone1", "Slot001") with siblings are array instances: give each its template."""
    counts: dict[tuple[int, str], set[int]] = {}
    for n in nodes:
        for depth, part in enumerate(n.path[:-1]):
            m = _NUMBERED.match(part)
            if m:
                counts.setdefault((depth, "/".join(n.path[:depth]) + "/" + m.group(1)), set()).add(int(m.group(2)))
    for n in nodes:
        for depth, part in enumerate(n.path[:-1]):
            m = _NUMBERED.match(part)
            if m and len(counts[(depth, "/".join(n.path[:depth]) + "/" + m.group(1))]) > 1:
                digits = m.group(2)
                fmt = f"{{i:0{len(digits)}d}}" if digits.startswith("0") else "{i}"
                n.template = "/".join(n.path[:depth] + [m.group(1) + fmt] + n.path[depth + 1:])
                break


async def browse_opcua(url: str, timeout_s: float = 10.0, limit: int = 20000) -> tuple[str, str, list[Node]]:
    """(namespace URI, root browse path, nodes below the root) of the vendor's machine on an OPC UA server."""
    from asyncua import Client, ua

    client = Client(url, timeout=timeout_s)
    await client.connect()
    try:
        namespaces = await client.get_namespace_array()
        found: list[tuple[list[str], Any, ua.NodeClass]] = []

        async def walk(node: Any, path: list[str], depth: int) -> None:
            if depth > 10 or len(found) >= limit:
                return
            for child in await node.get_children(refs=ua.ObjectIds.HierarchicalReferences):
                if child.nodeid.NamespaceIndex == 0:
                    continue  # the server's own nodes
                name = (await child.read_browse_name()).Name
                cls = await child.read_node_class()
                if cls == ua.NodeClass.Object:
                    await walk(child, path + [name], depth + 1)
                elif cls in (ua.NodeClass.Variable, ua.NodeClass.Method):
                    found.append((path + [name], child, cls))

        await walk(client.nodes.objects, [], 0)
        if not found:
            raise ValueError(f"{url}: no vendor variables below Objects")
        root = found[0][0][:-1]
        for p, _, _ in found:
            k = 0
            while k < min(len(root), len(p) - 1) and root[k] == p[k]:
                k += 1
            root = root[:k]
        nodes = []
        for p, node, cls in found:
            rel = p[len(root):]
            if cls == ua.NodeClass.Method:
                nodes.append(Node(rel, "method"))
                continue
            try:
                dv = await node.read_data_value()
                vtype = dv.Value.VariantType.name if dv.Value is not None else ""
                value = dv.Value.Value if dv.Value is not None else None
            except ua.UaError:
                vtype, value = "", None
            nodes.append(Node(rel, "variable", vtype, value))
        namespace = namespaces[found[0][1].nodeid.NamespaceIndex]
        _number(nodes)
        return namespace, "/" + "/".join(["Objects", *root]), nodes
    finally:
        await client.disconnect()


async def discover_opcua(spec: Spec, cls: str, url: str) -> Draft:
    namespace, root, nodes = await browse_opcua(url)
    return draft_from_nodes(spec, cls, namespace, root, nodes)


# --- Modbus ---------------------------------------------------------------------------------------


def parse_ranges(text: str) -> list[tuple[str, int, int]]:
    """"holding:0-999,input:0-499" -> [(table, first, last)]."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"(holding|input):(\d+)-(\d+)", part)
        if not m or int(m.group(2)) > int(m.group(3)) or int(m.group(3)) > 65535:
            raise ValueError(f"'{part}': a range is holding:FIRST-LAST or input:FIRST-LAST (0-65535)")
        out.append((m.group(1), int(m.group(2)), int(m.group(3))))
    return out


async def read_ranges(host: str, port: int, device_id: int, ranges: list[tuple[str, int, int]],
                      max_requests: int = 2000) -> dict[tuple[str, int], int]:
    """Every register of the ranges the device answers, in requests of at most 125 registers; a block
    the device refuses is split in halves down to 8 registers. Never more than `max_requests`."""
    from pymodbus.client import AsyncModbusTcpClient

    client = AsyncModbusTcpClient(host, port=port, timeout=3, retries=0)
    if not await client.connect():
        raise ConnectionError(f"cannot connect to {host}:{port}")
    out: dict[tuple[str, int], int] = {}
    requests = 0
    try:
        pending = [(t, a, min(b, a + 124)) for t, lo, hi in ranges for a in range(lo, hi + 1, 125)
                   for b in [hi]]
        while pending and requests < max_requests:
            table, a, b = pending.pop(0)
            reader = client.read_holding_registers if table == "holding" else client.read_input_registers
            requests += 1
            rr = await reader(a, count=b - a + 1, device_id=device_id)
            if not rr.isError():
                out.update({(table, a + k): v for k, v in enumerate(rr.registers)})
            elif b - a >= 8:  # a refused block is split to find the registers the device has, down to 8
                mid = (a + b) // 2
                pending[:0] = [(table, a, mid), (table, mid + 1, b)]
    finally:
        client.close()
    return out


def _text_at(regs: Iterable[int]) -> tuple[int, str] | None:
    """The longest text the registers begin with: printable ASCII, then NUL or space padding to a register's
    end; (registers it takes, the text), or None when it is shorter than three registers or three characters.
    One pass over the registers it reads: a thousand contiguous registers are a thousand steps, not a billion."""
    raw = bytearray()
    padding = False  # a NUL was read: only NUL or space may follow
    for value in regs:
        pair = value.to_bytes(2, "big")
        for c in pair:
            padding = padding or c == 0
            if not (c in (0, 32) or (32 < c < 127 and not padding)):
                break
        else:
            raw += pair
            continue
        break
    n = len(raw) // 2
    text = bytes(raw).rstrip(b"\0 ")
    return (n, text.decode()) if n >= 3 and len(text) >= 3 else None


def _values_from(values: dict[tuple[str, int], int], keys: list[tuple[str, int]], k: int) -> Iterator[int]:
    """The values of keys[k] and of the registers right after it, as far as they are contiguous."""
    table, address = keys[k]
    for j in range(k, len(keys)):
        if keys[j] != (table, address + j - k):
            return
        yield values[keys[j]]


def _swapped(value: int) -> int:
    return (value & 0xFF) << 8 | value >> 8


def draft_from_registers(spec: Spec, cls: str, device_id: int, reads: list[dict[tuple[str, int], int]]) -> Draft:
    """A draft from several reads of the same registers, about a second apart."""
    draft = Draft(cls, "modbus", {"modbus": {"device_id": device_id}})
    first = reads[0]
    used: set[tuple[str, int]] = set()
    # A heartbeat counts up by one a second: every read a little higher than the one before (bytes
    # swapped, as some PLCs keep them, counts too). Noise rises now and then, not every time.
    for key in sorted(first):
        if any(key not in r for r in reads):
            continue
        series = [r[key] for r in reads]
        for swap in (False, True):
            values = [_swapped(v) if swap else v for v in series]
            if all(0 < (b - a) % 65536 <= 3 for a, b in zip(values, values[1:])):
                table, address = key
                note = f"counted {' -> '.join(map(str, values))} over the reads" + (
                    "; its bytes are swapped: check dtype and order" if swap else "")
                draft.variables.append(({"path": "status.heartbeat",
                                         "source": {"table": table, "address": address, "dtype": "uint16"}}, note))
                used.add(key)
                break
        if used:
            break
    second = reads[-1]
    lines = []
    keys = sorted(k for k in first if k not in used)
    k = 0
    while k < len(keys):
        table, address = keys[k]
        found = _text_at(_values_from(first, keys, k))
        if found:
            n, text = found
            run = keys[k:k + n]
            while first[run[-1]] == 0:  # the padding after the text belongs to no one yet
                run.pop()
            lines.append(f"{table} {address}-{address + len(run) - 1}: text {text!r} (dtype string, count "
                         f"{len(run)} or more)")
            used.update(run)
            k += len(run)
            continue
        value = first[keys[k]]
        if value:
            decoded = [f"uint16 {value}", f"int16 {value - 65536 if value > 32767 else value}"]
            if k + 1 < len(keys) and keys[k + 1] == (table, address + 1):
                hi, lo = value, first[keys[k + 1]]
                for order, pair in (("ABCD", (hi, lo)), ("CDAB", (lo, hi))):
                    f = struct.unpack(">f", struct.pack(">HH", *pair))[0]
                    if math.isfinite(f) and 1e-3 <= abs(f) <= 1e7:
                        decoded.append(f"float32 {order} {f:.6g}")
                decoded.append(f"uint32 ABCD {hi << 16 | lo}, CDAB {lo << 16 | hi}")
            changed = " (changing)" if second.get(keys[k]) != value else ""
            lines.append(f"{table} {address}: {', '.join(decoded)}{changed}")
        k += 1
    draft.todo = [p for p in _mandatory(spec, cls) if p != "status.heartbeat" or not draft.variables]
    draft.unmatched = lines
    return draft


@dataclass
class Register:
    """One row of a vendor's register list: what its documentation says a register holds."""

    name: str
    table: str
    address: int
    dtype: str | None
    count: int | None = None
    bit: int | None = None
    stride: int | None = None
    scale: float = 1.0
    unit: str | None = None
    description: str = ""

    @property
    def key(self) -> str:
        return f"{self.table} {self.address}" + (f" bit {self.bit}" if self.bit is not None else "")

    @property
    def vtype(self) -> str:
        if self.bit is not None or self.table in ("coil", "discrete"):
            return "Boolean"
        if self.dtype == "string":
            return "String"
        return "Double" if (self.dtype or "").startswith("float") else "Int32"

    def source(self) -> dict[str, Any]:
        out: dict[str, Any] = {"table": self.table, "address": self.address}
        out |= {k: v for k, v in (("dtype", self.dtype or ("uint16" if self.bit is not None else None)),
                                  ("count", self.count), ("bit", self.bit), ("stride", self.stride)) if v is not None}
        return out


def _cell(row: dict[str, str], key: str, kind: Any = int) -> Any:
    """A number from a CSV row; None where the cell is empty."""
    return kind(row[key]) if row.get(key) not in (None, "") else None


def read_register_list(path: str) -> list[Register]:
    """A vendor's register list as CSV: name, table, address, dtype, count, bit, stride, scale, unit,
    description (a header row; only name and address are required). Raises ValueError naming the row."""
    import csv

    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.DictReader(f), start=2):
            try:
                num = functools.partial(_cell, row)
                table = row.get("table") or "holding"
                if table not in ("holding", "input", "coil", "discrete"):
                    raise ValueError(f"table '{table}' is not holding, input, coil or discrete")
                rows.append(Register(row["name"], table, num("address"),
                                     row.get("dtype") or (None if table in ("coil", "discrete") else "uint16"),
                                     num("count"), num("bit"), num("stride"), num("scale", float) or 1.0,
                                     row.get("unit") or None, row.get("description") or ""))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{n}: {exc}") from None
    return rows


def draft_from_register_list(spec: Spec, cls: str, device_id: int, rows: list[Register],
                             answered: dict[tuple[str, int], int]) -> Draft:
    """Match a vendor's documented registers to the class's variables and alarms by their names."""
    draft = Draft(cls, "modbus", {"modbus": {"device_id": device_id}})
    alarm_words = {"alarm", "fault"}
    is_alarm = {r.key: r.vtype == "Boolean" and bool(alarm_words & set(words(r.name) + words(r.description)))
                for r in rows}
    by_key = {r.key: r for r in rows}
    items = {r.key: (bag([words(r.name), words(r.description)], [2.0, 1.0]), r.vtype, r.stride is not None)
             for r in rows if not is_alarm[r.key]}
    taken: set[str] = set()
    for s, key, path in match_variables(spec, cls, items):
        r, var = by_key[key], spec.variable(cls, path.replace("[*]", "[1]")).var
        taken.add(key)
        entry: dict[str, Any] = {"path": path, "source": r.source()}
        fields = unit_fields(r.unit, var.unit) if var.type in ("float", "int", "uint") else {}
        scale = r.scale * fields.pop("scale", 1.0)
        entry |= ({"scale": scale} if scale != 1.0 else {}) | fields
        seen = "answers" if (r.table, r.address) in answered else "did not answer"
        draft.variables.append((entry, f"{r.name!r} matched {s:.2f}; {seen}{_enum_note(var)}"))
    alarms = {r.key: bag([words(r.name)], [1.0]) for r in rows if is_alarm[r.key] or r.vtype == "Boolean"}
    for s, key, alarm in match_alarms(spec, cls, {k: b for k, b in alarms.items() if k not in taken}):
        taken.add(key)
        draft.alarms.append(({"alarm": alarm, "source": by_key[key].source()}, f"{by_key[key].name!r} matched {s:.2f}"))
    drafted = {entry["path"] for entry, _ in draft.variables}
    draft.todo = [p for p in _mandatory(spec, cls) if p not in drafted]
    draft.unmatched = [f"{r.key}: {r.name} ({r.description})" if r.description else f"{r.key}: {r.name}"
                       for r in rows if r.key not in taken]
    return draft


async def discover_modbus(spec: Spec, cls: str, host: str, port: int, device_id: int,
                          ranges: list[tuple[str, int, int]], reads: int = 4, pause_s: float = 1.1,
                          register_list: list[Register] | None = None) -> Draft:
    if register_list is not None:  # the vendor's documentation names the registers: read only those
        regs = [(r.table, r.address, r.address + max(1, r.count or 1) - 1) for r in register_list
                if r.table in ("holding", "input")]
        answered = await read_ranges(host, port, device_id, regs)
        return draft_from_register_list(spec, cls, device_id, register_list, answered)
    seen = [await read_ranges(host, port, device_id, ranges)]
    if not seen[0]:
        raise ValueError(f"{host}:{port} unit {device_id} answered none of the registers asked")
    for _ in range(reads - 1):
        await asyncio.sleep(pause_s)
        seen.append(await read_ranges(host, port, device_id, ranges))
    return draft_from_registers(spec, cls, device_id, seen)
