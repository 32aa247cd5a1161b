"""The Grafana dashboard in deploy/ matches the forwarder's InfluxDB schema and the spec."""

from __future__ import annotations

import json
import re
import runpy
from pathlib import Path

import yaml

from gateway.forward.influx import to_line
from gateway.samples import Quality, Sample
from interface_spec import load_spec

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
TAGS = {"line", "equipment", "sub_unit", "index", "unit"}  # what to_line writes, besides _measurement/_field/_value/_time


def _dashboard() -> dict:
    return json.loads((GRAFANA / "linegw-influx.json").read_text())


def _queries(d: dict) -> list[str]:
    return [t["query"] for p in d["panels"] for t in p["targets"]] + [v["query"] for v in d["templating"]["list"]]


def test_dashboard_is_the_generated_one() -> None:
    made = runpy.run_path(str(GRAFANA / "make_dashboard.py"))["dashboard"]()
    assert _dashboard() == made, "deploy/grafana/linegw-influx.json is stale: run deploy/grafana/make_dashboard.py"


def test_tags_are_the_ones_the_forwarder_writes() -> None:
    point = to_line(Sample("f1", "channel[2].voltage", 3.7, "V", 1.0, 1.0, Quality.GOOD), "L1", {"f1": "formation"})
    tags = dict(kv.split("=") for kv in point.split(" ")[0].split(",")[1:])
    assert set(tags) == TAGS and tags["unit"] == "V" and tags["index"] == "2"


def test_queries_use_only_the_tags_the_forwarder_writes() -> None:
    used = {name for q in _queries(_dashboard()) for name in re.findall(r"\br\.([A-Za-z_]\w*)", q)}
    used |= {m for q in _queries(_dashboard()) for m in re.findall(r'tag: "(\w+)"', q)}
    assert used - {"_field", "_value", "_measurement", "_time"} <= TAGS, used


def test_fixed_fields_exist_in_the_spec_and_reach_influx_with_those_tags() -> None:
    spec = load_spec()
    checked = []
    for q in _queries(_dashboard()):
        for sub_unit, expr in re.findall(r'r\.sub_unit == "(\w+)" and \(?(.*?)\)?\)', q):
            for field in re.findall(r'r\._field == "(\w+)"', expr):
                path = f"{sub_unit}.{field}"
                spec.variable("winder", path)  # a common variable: KeyError names it when the spec has no such path
                checked.append(path)
                point = to_line(Sample("w1", path, 1, "", 1.0, 1.0, Quality.GOOD), "L1", {"w1": "winder"})
                assert f"sub_unit={sub_unit}" in point and f" {field}=1i," in point
    assert len(checked) >= 5  # availability, packml_state and the three counters


def test_state_names_are_the_spec_enum() -> None:
    spec = load_spec()
    panels = {p["title"]: p for p in _dashboard()["panels"]}
    for title, enum in (("PackML state", "packml_state"), ("Availability now", "availability")):
        (mapping,) = panels[title]["fieldConfig"]["defaults"]["mappings"]
        assert {int(code): o["text"] for code, o in mapping["options"].items()} == \
            {code: name for name, code in spec.enum(enum).items()}


def test_provisioning_points_at_the_dashboard_datasource() -> None:
    (ds,) = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "linegw.yaml").read_text())["datasources"]
    uids = {p["datasource"]["uid"] for p in _dashboard()["panels"]}
    assert uids == {ds["uid"]} and ds["jsonData"]["version"] == "Flux"
    compose = yaml.safe_load((GRAFANA.parent / "compose" / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert any(m.startswith("../grafana/linegw-influx.json:") for m in mounts)
