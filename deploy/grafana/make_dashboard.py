"""Write linegw-influx.json, the Grafana dashboard for the InfluxDB schema of the forwarder.

State and availability colours and names come from the spec's enums, so the
dashboard says "Execute" where the data says 6. Run after a spec change:

    .venv/bin/python deploy/grafana/make_dashboard.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from interface_spec import load_spec

OUT = Path(__file__).with_name("linegw-influx.json")
DS = {"type": "influxdb", "uid": "linegw-influx"}
COLOURS = {  # PackML states people look for first; the rest stay neutral
    "Execute": "green", "Idle": "blue", "Stopped": "yellow", "Held": "orange", "Suspended": "orange",
    "Aborted": "red", "Aborting": "red", "UNAVAILABLE": "red", "AVAILABLE": "green", "Complete": "purple",
}


def _base(pred: str) -> str:
    return ('from(bucket: v.defaultBucket)\n  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)\n'
            f'  |> filter(fn: (r) => r.line == "${{line}}" and r.equipment =~ /^${{equipment:regex}}$/ and {pred})')


def _mappings(codes: dict[str, int]) -> list[dict]:
    return [{"type": "value", "options": {str(code): {"text": name, "color": COLOURS.get(name, "text"), "index": i}
                                          for i, (name, code) in enumerate(codes.items())}}]


def _panel(pid: int, title: str, kind: str, query: str, pos: tuple[int, int, int, int], **extra) -> dict:
    x, y, w, h = pos
    panel = {"id": pid, "type": kind, "title": title, "datasource": DS,
             "gridPos": {"x": x, "y": y, "w": w, "h": h},
             "targets": [{"refId": "A", "datasource": DS, "query": query}],
             "fieldConfig": {"defaults": {}, "overrides": []}, "options": {}}
    panel.update(extra)
    return panel


def _by_equipment(query: str) -> str:
    return query + '\n  |> group(columns: ["equipment"])\n  |> keep(columns: ["_time", "_value", "equipment"])'


def dashboard() -> dict:
    spec = load_spec()
    state = _panel(2, "PackML state", "state-timeline",
                   _by_equipment(_base('r.sub_unit == "state" and r._field == "packml_state"')), (0, 4, 24, 6),
                   fieldConfig={"defaults": {"mappings": _mappings(spec.enum("packml_state")),
                                             "color": {"mode": "thresholds"}}, "overrides": []},
                   options={"showValue": "auto", "mergeValues": True})
    availability = _panel(1, "Availability now", "stat",
                          _by_equipment(_base('r.sub_unit == "status" and r._field == "availability"')) + "\n  |> last()",
                          (0, 0, 24, 4),
                          fieldConfig={"defaults": {"mappings": _mappings(spec.enum("availability")),
                                                    "color": {"mode": "thresholds"}}, "overrides": []},
                          options={"colorMode": "background", "textMode": "value_and_name"})
    variable = _panel(3, "${sub_unit}.${variable}", "timeseries",
                      _base('r.sub_unit == "${sub_unit}" and r._field == "${variable}"')
                      + '\n  |> aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)'
                      + '\n  |> map(fn: (r) => ({r with _field: r.equipment + (if exists r.index then "[" + r.index + "]" else "")'
                      + ' + (if exists r.unit then " (" + r.unit + ")" else "")}))'
                      + '\n  |> group(columns: ["_field"])',
                      (0, 10, 24, 9))
    counters = _panel(4, "Units processed, good and defective", "timeseries",
                      _base('r.sub_unit == "counters" and (r._field == "processed_count" or r._field == "good_count" '
                            'or r._field == "defective_count")')
                      + '\n  |> aggregateWindow(every: v.windowPeriod, fn: last, createEmpty: false)'
                      + '\n  |> map(fn: (r) => ({r with _field: r.equipment + " " + r._field}))'
                      + '\n  |> group(columns: ["_field"])', (0, 19, 12, 8))
    quality = _panel(5, "Samples not good (uncertain or bad), per machine", "bargauge",
                     _base('r._field =~ /_q$/ and r._value > 0')
                     + '\n  |> group(columns: ["equipment"])\n  |> count()', (12, 19, 12, 8),
                     options={"orientation": "horizontal", "displayMode": "basic"})

    def tag_var(name: str, tag: str, predicate: str, multi: bool) -> dict:
        query = (f'import "influxdata/influxdb/schema"\n'
                 f'schema.tagValues(bucket: v.defaultBucket, tag: "{tag}", predicate: (r) => {predicate}, '
                 f'start: v.timeRangeStart)')
        return {"name": name, "label": name, "type": "query", "datasource": DS, "query": query, "refresh": 2,
                "multi": multi, "includeAll": multi, "current": {}, "sort": 1}

    field_var = {"name": "variable", "label": "variable", "type": "query", "datasource": DS, "refresh": 2, "sort": 1,
                 "current": {}, "multi": False, "includeAll": False,
                 "query": ('import "influxdata/influxdb/schema"\n'
                           'schema.fieldKeys(bucket: v.defaultBucket, predicate: (r) => r.line == "${line}" and '
                           'r.sub_unit == "${sub_unit}", start: v.timeRangeStart)\n'
                           '  |> filter(fn: (r) => r._value !~ /_q$/)')}
    return {
        "uid": "linegw-line", "title": "linegw line (InfluxDB)", "tags": ["linegw", "battery"],
        "schemaVersion": 39, "version": 1, "editable": True, "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "description": ("Data forwarded by linegw: measurement = equipment class; tags line, equipment, sub_unit, "
                        "index, unit; fields <variable> and <variable>_q (quality 0 good, 1 uncertain, 2 bad)."),
        "templating": {"list": [
            tag_var("line", "line", "true", False),
            tag_var("equipment", "equipment", 'r.line == "${line}"', True),
            tag_var("sub_unit", "sub_unit", 'r.line == "${line}" and r.equipment =~ /^${equipment:regex}$/', False),
            field_var,
        ]},
        "panels": [availability, state, variable, counters, quality],
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(dashboard(), indent=2) + "\n")
    print(f"wrote {OUT}")
