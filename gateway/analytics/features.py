"""The quality feature table: one row per graded cell, with its grade, its results and what every upstream stage did.

The table a quality engineer loads to find which upstream variable explains a bad grade. For each cell graded
(a formation UnitProcessed of a cell) in a range:

* **the cell**: `cell_id`, `equipment`, `graded_time` (UTC), `result` (good/reject), `reason`, `grade` (the
  member of `cell_grade` its channel's `result_grade` showed when it was graded), and its UnitProcessed
  measurements as `formation.<measurement>` (the class profile's `unit_processed`, with their units);
* **every stage that made it**, walking `made_from` up from the cell: the cell's own formation, its jelly roll's
  winder, the jelly roll's electrode rolls' coater. A stage is named by its class (`formation`, `winder`,
  `coater`); where a cell has more than one unit of a class (a jelly roll of a cathode and an anode roll) they are
  `coater_1`, `coater_2` in the order `made_from` lists them (the spec's winders list the cathode roll first).
  Per stage: `<stage>.unit_id`, `<stage>.equipment`, `<stage>.window_s` (the production window, by the rule of
  the cell's record, `record.py`), and for each of the class's process variables (numeric, read-only sample
  variables of the class profile: `record.process_variables`) over the unit's window, from GOOD samples:
  `<stage>.<path>.n`, `.mean`, `.min`, `.max`, `.std` (population). Array instances keep their index
  (`coater_1.lane[2].areal_weight.mean`); the formation channel is the cell's own, without its index
  (`formation.channel.voltage.mean`).

Columns are the union over the rows, in a stable order: the cell's columns, then the stages in the order above,
paths in natural order. Numbers are float64 (`.n` int64); the Parquet schema carries each column's unit and
meaning as field metadata (`unit`, `description`) and the range and this method as schema metadata.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from gateway.analytics import timeline as tl
from gateway.analytics.record import RecordBuilder, _natural, summary
from gateway.api.timeparams import iso
from gateway.store.base import Store
from interface_spec import Spec

STATS = ("n", "mean", "min", "max", "std")
CELL = "cell"
MAX_CELLS = 1_000_000
GRADE_LOOK_S = 60.0  # how long after a cell's UnitProcessed its channel's result_grade is looked for
CHANNEL = re.compile(r"^channel\[(\d+)\]\.")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "string", "float", "int", "time"
    unit: str = ""
    description: str = ""


CELL_COLUMNS = [
    Column("cell_id", "string", "", "the cell's id"),
    Column("equipment", "string", "", "the formation rack that graded it"),
    Column("graded_time", "time", "", "when it was graded (its UnitProcessed), UTC"),
    Column("result", "string", "", "good or reject"),
    Column("reason", "string", "", "why it was rejected"),
    Column("grade", "string", "", "its channel's result_grade when it was graded (cell_grade member)"),
]


class _Records(RecordBuilder):
    """The record's window rules with what one table reads again and again kept: a machine's series, and the
    channel of every cell of a formation tray (found once per tray, not once per cell)."""

    def __init__(self, store: Store, spec: Spec, machines: dict[str, str]):
        super().__init__(store, spec, machines)
        self._series: dict[str, list[tuple[str, str, str]]] = {}
        self._trays: dict[tuple[str, float], dict[str, int]] = {}

    async def series(self, eq: str) -> list[tuple[str, str, str]]:
        if eq not in self._series:
            self._series[eq] = await self.store.series(eq)
        return self._series[eq]

    async def _channel(self, eq: str, unit_id: str, start: float, end: float) -> int | None:
        key = (eq, start)
        if key not in self._trays:
            found: dict[str, int] = {}
            for _, path, _ in await self.series(eq):
                m = re.fullmatch(r"channel\[(\d+)\]\.cell_id", path)
                if m:
                    rows = await self.store.history(eq, path, start - 60.0, end + 1.0, limit=400)
                    for r in rows:
                        if isinstance(r["value"], str) and r["value"]:
                            found.setdefault(r["value"], int(m.group(1)))
            self._trays[key] = found
        return self._trays[key].get(unit_id)


class FeatureTable:
    """One table per request; what it reads repeatedly is kept for the request only."""

    def __init__(self, store: Store, spec: Spec, machines: dict[str, str]):
        self.store = store
        self.spec = spec
        self.machines = machines
        self.records = _Records(store, spec, machines)
        self._made: dict[str, dict[str, Any] | None] = {}  # unit id -> its UnitProcessed row
        self._stage_features: dict[str, dict[str, Any]] = {}  # unit id -> its stage's features (shared rolls)

    async def rows(self, t0: float, t1: float) -> tuple[list[dict[str, Any]], list[Column]]:
        """The rows of the cells graded in [t0, t1), oldest first, and the columns in order."""
        graded = []
        for eq, cls in self.machines.items():
            if self.spec.get_class(cls).processed_unit != CELL:
                continue
            events = await self.store.events(equipment=eq, event_type="UnitProcessed", start=t0, end=t1,
                                             limit=MAX_CELLS)
            graded += [e for e in events if (e.get("payload") or {}).get("unit_type") == CELL]
        graded.sort(key=lambda e: (e["source_ts"], e["id"]))
        rows = [await self._row(e) for e in graded]
        return rows, self.columns(rows)

    async def _row(self, event: dict[str, Any]) -> dict[str, Any]:
        p = event.get("payload") or {}
        eq = event["equipment"]
        row: dict[str, Any] = {"cell_id": p.get("unit_id"), "equipment": eq, "graded_time": event["source_ts"],
                               "result": p.get("result"), "reason": p.get("reason")}
        cls = self.machines.get(eq, "formation")
        for name, value in (p.get("measurements") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                row[f"{cls}.{name}"] = float(value)
        stage = await self._stage(cls, event, own=True)
        row["grade"] = stage.pop("grade", None)
        row.update(stage)
        seen: dict[str, int] = {}
        # Upstream, breadth first: the jelly roll, then its electrode rolls, each named by class (and order).
        queue = list(p.get("made_from") or [])
        upstream: list[tuple[str, dict[str, Any]]] = []
        while queue:
            made = await self._made_row(queue.pop(0))
            if made is None:
                continue
            ucls = self.machines.get(made["equipment"])
            if ucls is None:
                continue
            upstream.append((ucls, made))
            queue += list((made.get("payload") or {}).get("made_from") or [])
        count: dict[str, int] = {}
        for ucls, _ in upstream:
            count[ucls] = count.get(ucls, 0) + 1
        for ucls, made in upstream:
            seen[ucls] = seen.get(ucls, 0) + 1
            label = ucls if count[ucls] == 1 else f"{ucls}_{seen[ucls]}"
            uid = made["payload"]["unit_id"]
            if uid not in self._stage_features:
                self._stage_features[uid] = await self._stage(ucls, made, own=False)
            row.update({f"{label}.{k}": v for k, v in self._stage_features[uid].items()})
        return row

    async def _made_row(self, unit_id: str) -> dict[str, Any] | None:
        """The UnitProcessed that made a unit (None for a lot no machine of the line made)."""
        if unit_id not in self._made:
            rows = await self.store.events_referencing(unit_id)
            self._made[unit_id] = next((r for r in rows if r["type"] == "UnitProcessed"
                                        and (r.get("payload") or {}).get("unit_id") == unit_id), None)
        return self._made[unit_id]

    async def _stage(self, cls: str, event: dict[str, Any], own: bool) -> dict[str, Any]:
        """A unit's stage features: unit id, equipment, window, and the stats of each process variable; for the
        cell's own formation stage (own=True) also its grade, and the columns prefixed by the class."""
        p = event.get("payload") or {}
        eq, end = event["equipment"], float(event["source_ts"])
        node = SimpleNamespace(equipment=eq, source_ts=end, unit_id=p.get("unit_id"),
                               made_from=[SimpleNamespace(unit_id=x) for x in p.get("made_from") or []])
        start, _, channel = await self.records.window(node, cls)
        out: dict[str, Any] = {}
        prefix = f"{cls}." if own else ""
        if not own:
            out.update({"unit_id": p.get("unit_id"), "equipment": eq})
        out[f"{prefix}window_s"] = end - start
        lo, hi = math.nextafter(start, math.inf), math.nextafter(end, math.inf)
        for path in await self.records._paths(eq, cls, channel):
            rows = [r async for r in tl.raw_rows(self.store, eq, path, lo, hi)]
            good = [float(r["value"]) for r in rows if r["quality"] == 0 and isinstance(r["value"], (int, float))
                    and not isinstance(r["value"], bool)]
            name = CHANNEL.sub("channel.", path) if cls == "formation" else path
            for stat, value in summary(good).items():
                out[f"{prefix}{name}.{stat}"] = value
        if own and channel is not None:
            out["grade"] = await self._grade(eq, channel, end)
        return out

    async def _grade(self, eq: str, channel: int, end: float) -> str | None:
        rows = await self.store.history(eq, f"channel[{channel}].result_grade", end, end + GRADE_LOOK_S, limit=20)
        code = next((r["value"] for r in rows if r["quality"] == 0 and isinstance(r["value"], int)), None)
        return None if code is None else self.spec.enum_name("cell_grade", code)

    def columns(self, rows: Sequence[dict[str, Any]]) -> list[Column]:
        names: dict[str, None] = {}
        for row in rows:
            for k in row:
                names.setdefault(k)
        fixed = [c.name for c in CELL_COLUMNS]
        rest = [n for n in names if n not in fixed]
        order = {"formation": 0, "winder": 1, "coater": 2}
        rest.sort(key=lambda n: (order.get(n.split(".")[0].split("_")[0], 9), n.split(".")[0], _natural(n)))
        cols = list(CELL_COLUMNS)
        for n in rest:
            stat = n.rsplit(".", 1)[-1]
            if n.endswith((".unit_id", ".equipment")):
                cols.append(Column(n, "string", "", f"the {n.split('.')[0]} stage's {n.rsplit('.', 1)[1]}"))
            elif stat == "n":
                cols.append(Column(n, "int", "", "GOOD samples in the unit's window"))
            elif n.endswith(".window_s"):
                cols.append(Column(n, "float", "s", "the unit's production window"))
            else:
                what = {"mean": "mean", "min": "minimum", "max": "maximum", "std": "population standard deviation"}
                desc = f"{what[stat]} over the unit's window" if stat in what else "as measured at grading"
                cols.append(Column(n, "float", self._unit(n), desc))
        return cols


    def _unit(self, column: str) -> str:
        """The unit of a number column, from the spec: `<stage>.<path>.<stat>` or `<class>.<measurement>`."""
        label, _, rest = column.partition(".")
        cls = label.split("_")[0]
        if cls not in self.spec.classes:
            return ""
        measured = self.spec.get_class(cls).unit_processed
        if rest in measured:
            return measured[rest]
        path = rest.rsplit(".", 1)[0].replace("channel.", "channel[1].", 1) if rest.startswith("channel.") else \
            rest.rsplit(".", 1)[0]
        try:
            return self.spec.variable(cls, path).var.unit
        except KeyError:
            return ""


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> str:
    import csv

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([c.name for c in columns])
    for row in rows:
        w.writerow([iso(row.get(c.name)) if c.kind == "time" else _cell(row.get(c.name)) for c in columns])
    return buf.getvalue()


def _cell(value: Any) -> Any:
    return "" if value is None else repr(value) if isinstance(value, float) else value


def to_parquet(rows: Sequence[dict[str, Any]], columns: Sequence[Column], meta: dict[str, str]) -> bytes:
    """The table as Parquet: typed columns, each with its unit and meaning as field metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"string": pa.string(), "float": pa.float64(), "int": pa.int64(), "time": pa.timestamp("us", tz="UTC")}
    fields, arrays = [], []
    for c in columns:
        values = [row.get(c.name) for row in rows]
        if c.kind == "time":
            values = [None if v is None else int(round(v * 1_000_000)) for v in values]
        fields.append(pa.field(c.name, types[c.kind], metadata={"unit": c.unit, "description": c.description}))
        arrays.append(pa.array(values, type=types[c.kind]))
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=meta))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


__all__ = ["Column", "FeatureTable", "to_csv", "to_parquet"]
