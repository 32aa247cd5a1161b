"""The API end to end: real simulators, a real LineRuntime, a real SQLite store.

One simulated line (coater over OPC UA, winder over Modbus, formation rack
over OPC UA) runs for the whole module; each test talks to it through the
ASGI app (httpx) or, for the WebSocket, through uvicorn on a free port.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gateway.api.app import create_app
from gateway.api.auth import KEY_HEADER, ApiConfigError
from gateway.config import Api, ApiKey, CommandLimits, LineConfig
from gateway.runtime.line import LineRuntime
from gateway.store.sqlite import SqliteStore
from interface_spec import load_spec
from simulators.line import SimConfig, SimLine
from tests.waiting import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

LINE = "apitest"
MACHINES = [
    # (id, class, protocol, counts, time scale: formation takes hours of simulated time per cell)
    ("coater1", "coater", "opcua", {"dryer_zone": 3, "lane": 2}, 20.0),
    ("winder1", "winder", "modbus", {}, 20.0),
    ("form1", "formation", "opcua", {"channel": 8}, 2000.0),
]
VIEWER_ENV, OPERATOR_ENV = "LINEGW_TEST_VIEWER_KEY", "LINEGW_TEST_OPERATOR_KEY"
VIEWER_KEY, OPERATOR_KEY = "viewer-key-0123456789", "operator-key-0123456789"



@dataclass
class Gateway:
    sims: SimLine
    runtime: LineRuntime
    store: SqliteStore
    cfg: LineConfig
    spec: Any


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    sims = SimLine()
    await sims.start([
        SimConfig(equipment_id=eid, cls=cls, protocol=proto, host="127.0.0.1", port=0, dialect="conforming",
                  seed=7, time_scale=scale, counts=counts, faults=[], machine_name=eid,
                  options={"alarm_interval_s": 0})  # alarms only when a test raises them
        for eid, cls, proto, counts, scale in MACHINES
    ])
    store = None
    task = None
    try:
        urls = sims.endpoints()
        cfg = LineConfig.model_validate({
            "line": LINE,
            "store": {"path": str(tmp / "store.sqlite")},
            "equipment": [{"id": eid, "class": cls, "protocol": proto, "endpoint": urls[eid], "counts": counts,
                           "adapter": {"scan_interval_ms": 200}, "command_timeout_s": 15}
                          for eid, cls, proto, counts, _ in MACHINES],
        })
        spec = load_spec()
        store = SqliteStore(cfg.store.path)
        await store.start()
        runtime = LineRuntime(cfg, spec, store)
        task = asyncio.create_task(runtime.run())
        await wait_for(lambda: all(eq.available and eq.state.get("packml_state") for eq in runtime.equipment()),
                       "every machine available with a PackML state", timeout=60)
        yield Gateway(sims, runtime, store, cfg, spec)
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if store is not None:
            await store.close()
        await sims.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(gateway):
    """No keys configured; the ASGI transport's client is 127.0.0.1, a loopback caller."""
    app = create_app(gateway.runtime, gateway.store, gateway.spec, gateway.cfg.api)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw", timeout=60) as c:
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def keyed_client(gateway):
    os.environ[VIEWER_ENV], os.environ[OPERATOR_ENV] = VIEWER_KEY, OPERATOR_KEY
    try:
        api = Api(keys=[ApiKey(user="viewer1", role="viewer", key_env=VIEWER_ENV),
                        ApiKey(user="operator1", role="operator", key_env=OPERATOR_ENV)])
        app = create_app(gateway.runtime, gateway.store, gateway.spec, api)
    finally:
        del os.environ[VIEWER_ENV], os.environ[OPERATOR_ENV]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw", timeout=60) as c:
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(gateway):
    """The app on uvicorn, on a free loopback port (the sans-I/O websockets protocol, uvicorn's future default)."""
    app = create_app(gateway.runtime, gateway.store, gateway.spec, gateway.cfg.api)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on",
                                           ws="websockets-sansio"))
    task = asyncio.create_task(server.serve())
    try:
        await wait_for(lambda: server.started, "uvicorn to start")
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def assert_reason(response: httpx.Response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    for w in words:
        assert w in detail, f"{w!r} not in {detail!r}"
    return detail


# --- reading -----------------------------------------------------------------------------

async def test_line_overview_shows_every_machine(client):
    r = await client.get("/api/v1/line")
    assert r.status_code == 200
    body = r.json()
    assert body["line"] == LINE
    machines = {m["id"]: m for m in body["machines"]}
    assert {eid: m["class"] for eid, m in machines.items()} == {m[0]: m[1] for m in MACHINES}
    for m in machines.values():
        assert m["available"] is True and m["availability"] == "AVAILABLE"
        assert m["packml_state"] in load_spec().core.packml.states
        assert m["last_data_time"].endswith("Z")


async def test_equipment_values_have_units_quality_and_enum_names(client):
    r = await client.get("/api/v1/equipment/form1", params={"paths": "channel[*].voltage"})
    assert r.status_code == 200
    eq = r.json()
    assert (eq["id"], eq["class"], eq["counts"]["channel"]) == ("form1", "formation", 8)
    paths = sorted(v["path"] for v in eq["values"])
    assert paths == sorted(f"channel[{i}].voltage" for i in range(1, 9))
    for v in eq["values"]:
        assert v["unit"] == {"code": "V", "symbol": "V"}
        assert v["quality"] in ("good", "uncertain", "bad")
        assert isinstance(v["source_ts"], float) and v["source_time"].endswith("Z")

    r = await client.get("/api/v1/equipment/coater1", params=[("paths", "state.packml_state"), ("paths", "lane[*].*")])
    values = {v["path"]: v for v in r.json()["values"]}
    state = values["state.packml_state"]
    assert load_spec().enum("packml_state")[state["value"]] == state["raw"]
    assert values["lane[1].areal_weight"]["unit"] == {"code": "mg/cm2", "symbol": "mg/cm²"}
    assert r.json()["authority"] in ("Local", "Remote", "Offline")


async def test_equipment_list_and_spec(client):
    r = await client.get("/api/v1/equipment")
    assert [e["id"] for e in r.json()] == [m[0] for m in MACHINES]
    spec = (await client.get("/api/v1/spec")).json()
    assert {c["id"] for c in spec["classes"]} == {"coater", "winder", "formation"}
    coater = (await client.get("/api/v1/spec/coater")).json()
    speed = next(v for v in coater["variables"] if v["path"] == "web.line_speed")
    assert speed["unit"] == {"code": "m/min", "symbol": "m/min"} and speed["range"] == [0, 150]
    assert_reason(await client.get("/api/v1/spec/press"), 404, "coater", "winder", "formation")


async def test_unknown_equipment_is_404_with_the_known_ones(client):
    detail = assert_reason(await client.get("/api/v1/equipment/mixer9"), 404, "mixer9")
    assert "coater1" in detail
    assert_reason(await client.get("/api/v1/equipment/mixer9/history", params={"path": "web.line_speed"}), 404, "mixer9")
    assert_reason(await client.post("/api/v1/equipment/mixer9/commands/Start"), 404, "mixer9")
    assert_reason(await client.get("/api/v1/events", params={"equipment": "mixer9"}), 404, "mixer9")


async def test_health_reports_each_machine(client):
    r = await client.get("/api/v1/health")
    assert r.status_code == 200
    body = r.json()
    assert body["line"] == LINE and body["status"] == "ok"
    assert set(body["equipment"]) == {m[0] for m in MACHINES}
    assert all(e["available"] for e in body["equipment"].values())
    assert body["store"] is not None
    assert body["forward"] == {}  # this line forwards nowhere


async def test_forward_routes_without_sinks(client):
    assert (await client.get("/api/v1/forward")).json() == {}
    assert (await client.get("/api/v1/forward/rejects")).json() == []
    assert_reason(await client.get("/api/v1/forward/rejects", params={"sink": "influx"}), 404, "forwards to nothing")


# --- history -----------------------------------------------------------------------------

async def test_history_bucketed_gives_each_aggregate_per_bucket(client):
    # The Modbus winder is polled: every scan is stored, so each second holds samples
    # (an OPC UA subscription stores changes only, and a steady value has none).
    params = {"path": "tension.cathode", "start": "-2m", "bucket": "1s", "agg": "avg,min,max,last,count"}

    async def buckets():
        r = await client.get("/api/v1/equipment/winder1/history", params=params)
        assert r.status_code == 200, r.text
        points = r.json()["series"][0]["points"]
        return points if len(points) >= 3 else None

    points = await wait_for(buckets, "three buckets of stored cathode tension")
    for p in points:
        assert p["count"] >= 1
        assert p["min"] <= p["avg"] <= p["max"]
        assert p["min"] <= p["last"] <= p["max"]
        assert p["time"].endswith("Z")
    assert [p["ts"] for p in points] == sorted(p["ts"] for p in points)
    assert all(b["ts"] - a["ts"] >= 1.0 - 1e-6 for a, b in zip(points, points[1:]))


async def test_history_raw_with_several_paths(client):
    r = await client.get("/api/v1/equipment/form1/history",
                         params=[("path", "channel[1].voltage"), ("path", "channel[2].voltage"), ("start", "-1h")])
    assert r.status_code == 200, r.text
    body = r.json()
    assert [s["path"] for s in body["series"]] == ["channel[1].voltage", "channel[2].voltage"]
    assert body["bucket_s"] is None
    points = body["series"][0]["points"]
    assert points and {"ts", "value", "quality"} <= points[0].keys()


async def test_history_rejects_bad_requests_with_reasons(client):
    url = "/api/v1/equipment/coater1/history"
    assert_reason(await client.get(url, params={"path": "web.line_speed", "start": "-1h", "end": "-2h"}), 422, "before")
    assert_reason(await client.get(url, params={"path": "web.line_speed", "start": "yesterday"}), 422,
                  "start", "ISO 8601")
    assert_reason(await client.get(url, params={"path": "web.warp_speed"}), 404, "web.warp_speed", "/api/v1/spec/coater")
    assert_reason(await client.get(url, params={"path": "lane[7].areal_weight"}), 404, "lane")
    assert_reason(await client.get(url, params={"path": "web.line_speed", "bucket": "1m", "agg": "median"}), 422,
                  "median")


async def test_history_refuses_a_raw_query_that_is_too_large_and_suggests_a_bucket(client):
    url = "/api/v1/equipment/form1/history"
    detail = assert_reason(await client.get(url, params={"path": "channel[1].voltage", "start": "-30d"}), 422,
                           "limit", "bucket=")
    suggested = detail.split("bucket=")[1].split()[0]
    r = await client.get(url, params={"path": "channel[1].voltage", "start": "-30d", "bucket": suggested})
    assert r.status_code == 200, r.text
    assert_reason(await client.get(url, params={"path": "channel[1].voltage", "start": "-30d", "bucket": "1s"}), 422,
                  "buckets")


# --- commands ----------------------------------------------------------------------------

async def command(client, eq: str, name: str, params: dict | None = None, **kw) -> httpx.Response:
    return await client.post(f"/api/v1/equipment/{eq}/commands/{name}", json={"params": params or {}}, **kw)


async def drive_to_idle(client, gateway, eq: str) -> None:
    view = gateway.runtime.get(eq)
    await wait_for(lambda: view.state.get("control_authority") == "Remote", f"{eq} under Remote authority")
    if view.state["packml_state"] not in ("Stopped", "Complete", "Idle"):
        r = await command(client, eq, "Stop")
        assert r.status_code == 200 and r.json()["confirmed"], r.text
    if view.state["packml_state"] != "Idle":
        r = await command(client, eq, "Reset")
        assert r.status_code == 200 and r.json()["confirmed"], r.text
    assert view.state["packml_state"] == "Idle"


async def test_commands_accepted_and_refused_map_to_http(client, gateway):
    eq = "coater1"
    await drive_to_idle(client, gateway, eq)

    r = await command(client, eq, "start")  # the spec's spelling is found whatever the case
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["command"] == "Start" and body["result"] in ("ok", "accepted_completes_later")
    assert (body["confirmed"], body["state_after"]) == (True, "Execute")
    assert (body["user"], body["role"]) == ("local", "engineer")

    r = await command(client, eq, "Start")
    assert r.status_code == 409 and r.json()["result"] == "already_in_state"
    assert "Execute" in r.json()["detail"]

    r = await command(client, eq, "Reset")
    assert r.status_code == 409 and r.json()["result"] == "cannot_perform_now"

    r = await command(client, eq, "SetOperationMode", {"mode": "Turbo"})
    assert r.status_code == 422 and r.json()["result"] == "parameter_invalid"
    assert "Turbo" in r.json()["detail"] and "Processing" in r.json()["detail"]

    r = await command(client, eq, "Teleport")
    assert r.status_code == 422 and r.json()["result"] == "invalid_command"
    assert "Start" in r.json()["detail"]

    r = await client.post(f"/api/v1/equipment/{eq}/commands/Stop", json={"params": "fast"})
    assert_reason(r, 422, "params")

    r = await command(client, eq, "Stop")
    assert r.status_code == 200 and r.json()["state_after"] == "Stopped", r.text

    audit = (await client.get("/api/v1/audit", params={"equipment": eq, "limit": 50})).json()
    assert len(audit) >= 6
    assert all(a.get("user") == "local" for a in audit)


# --- auth ----------------------------------------------------------------------------------

async def test_api_keys_roles_and_reasons(keyed_client):
    assert_reason(await keyed_client.get("/api/v1/line"), 401, "X-API-Key")
    assert_reason(await keyed_client.get("/api/v1/line", headers={"X-API-Key": "guess"}), 401, "unknown")
    r = await keyed_client.get("/api/v1/line", headers={"X-API-Key": VIEWER_KEY})
    assert r.status_code == 200 and r.json()["line"] == LINE

    r = await command(keyed_client, "winder1", "Stop", headers={"X-API-Key": VIEWER_KEY})
    assert_reason(r, 403, "viewer1", "viewer", "operator")
    assert_reason(await command(keyed_client, "winder1", "Stop"), 401, "X-API-Key")

    r = await command(keyed_client, "winder1", "Teleport", headers={"X-API-Key": OPERATOR_KEY})
    assert r.status_code == 422 and r.json()["user"] == "operator1"


async def test_commands_past_a_callers_limit_are_refused_with_429_and_audited_once(gateway, monkeypatch):
    monkeypatch.setenv(OPERATOR_ENV, OPERATOR_KEY)
    monkeypatch.setenv(VIEWER_ENV, VIEWER_KEY)
    api = Api(keys=[ApiKey(user="operator1", role="operator", key_env=OPERATOR_ENV),
                    ApiKey(user="viewer1", role="viewer", key_env=VIEWER_ENV)],
              command_limits=CommandLimits(per_caller_per_min=3, per_machine_per_min=100))
    app = create_app(gateway.runtime, gateway.store, gateway.spec, api)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw", timeout=60) as c:
        op = {KEY_HEADER: OPERATOR_KEY}
        for _ in range(3):  # refused or not by the machine's state, each counts
            assert (await command(c, "winder1", "Hold", headers=op)).status_code != 429
        audit_before = len(await gateway.store.audit(limit=1000))
        for _ in range(3):
            r = await command(c, "winder1", "Hold", headers=op)
            assert_reason(r, 429, "user 'operator1' had 3 commands in the last minute",
                          "api.command_limits.per_caller_per_min: 3")
            assert 1 <= int(r.headers["Retry-After"]) <= 60
        refusals = (await gateway.store.audit(limit=1000))[:len(await gateway.store.audit(limit=1000)) - audit_before]
        assert [(a["user"], a["command"], a["result"]) for a in refusals] == [("operator1", "Hold", "cannot_perform_now")]
        assert "per_caller_per_min" in refusals[0]["detail"]


async def test_without_keys_only_loopback_clients_may_command(gateway):
    app = create_app(gateway.runtime, gateway.store, gateway.spec, gateway.cfg.api)
    transport = httpx.ASGITransport(app=app, client=("192.0.2.10", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as remote:
        assert (await remote.get("/api/v1/line")).status_code == 200
        assert_reason(await command(remote, "winder1", "Stop"), 403, "loopback", "192.0.2.10", "api.keys")


ENGINEER_ENV, ENGINEER_KEY = "LINEGW_TEST_ENGINEER_KEY", "engineer-key-0123456789"


@pytest.mark.parametrize("engineer_env, engineer_key", [
    (VIEWER_ENV, VIEWER_KEY),  # the engineer entry names the viewer's variable
    (ENGINEER_ENV, VIEWER_KEY),  # its own variable, holding the viewer's key
])
async def test_a_key_that_two_entries_share_is_refused_before_serving(gateway, monkeypatch, engineer_env, engineer_key):
    monkeypatch.setenv(VIEWER_ENV, VIEWER_KEY)
    monkeypatch.setenv(engineer_env, engineer_key)
    api = Api(keys=[ApiKey(user="viewer1", role="viewer", key_env=VIEWER_ENV),
                    ApiKey(user="engineer1", role="engineer", key_env=engineer_env)])
    with pytest.raises(ApiConfigError, match=r"^api\.keys\[1\]\.key_env: .*api\.keys\[0\] \(user 'viewer1'"):
        create_app(gateway.runtime, gateway.store, gateway.spec, api)


async def test_a_viewer_key_carries_viewer_rights_only(gateway, monkeypatch):
    """The escalation found from outside: with a viewer entry first and an engineer entry second, the
    viewer's key commanded as the engineer. Whatever the order, a viewer's key is refused as the viewer."""
    monkeypatch.setenv(VIEWER_ENV, VIEWER_KEY)
    monkeypatch.setenv(ENGINEER_ENV, ENGINEER_KEY)
    api = Api(keys=[ApiKey(user="viewer1", role="viewer", key_env=VIEWER_ENV),
                    ApiKey(user="engineer1", role="engineer", key_env=ENGINEER_ENV)])
    app = create_app(gateway.runtime, gateway.store, gateway.spec, api)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw", timeout=60) as c:
        r = await command(c, "form1", "Stop", headers={"X-API-Key": VIEWER_KEY})
        assert_reason(r, 403, "user 'viewer1' has role 'viewer'")
        # Refused before the runtime, and audited in the viewer's name.
        [last] = (await c.get("/api/v1/audit", params={"equipment": "form1", "limit": 1},
                              headers={"X-API-Key": VIEWER_KEY})).json()
        assert (last["user"], last["role"], last["command"], last["result"]) == ("viewer1", "viewer", "Stop", "cannot_perform_now")
        assert "role 'viewer'" in last["detail"]
        # The engineer's own key is the engineer: the runtime answers (an unknown command, audited as engineer1).
        r = await command(c, "form1", "Teleport", headers={"X-API-Key": ENGINEER_KEY})
        assert r.status_code == 422 and (r.json()["user"], r.json()["role"]) == ("engineer1", "engineer")
        audit = (await c.get("/api/v1/audit", params={"equipment": "form1", "limit": 1},
                             headers={"X-API-Key": VIEWER_KEY})).json()
        assert (audit[0]["user"], audit[0]["role"], audit[0]["command"]) == ("engineer1", "engineer", "Teleport")


# --- alarms --------------------------------------------------------------------------------

async def test_an_alarm_is_acknowledged_through_the_command(client, gateway):
    machine = gateway.sims.simulators["winder1"].machine
    view = gateway.runtime.get("winder1")
    machine.raise_alarm(2005)
    await wait_for(lambda: any(a["code"] == 2005 for a in view.active_alarms), "the alarm in the runtime")

    active = (await client.get("/api/v1/alarms", params={"equipment": "winder1", "active": "true"})).json()
    alarm = next(a for a in active if a["code"] == 2005)
    assert (alarm["id"], alarm["active"], alarm["acknowledged"]) == ("dew_point_high", True, False)
    assert (await client.get("/api/v1/line")).json()["machines"][1]["active_alarms"] >= 1

    r = await client.post("/api/v1/equipment/winder1/alarms/2005/ack")
    assert r.status_code == 200 and r.json()["result"] == "ok", r.text
    assert r.json()["command"] == "AcknowledgeAlarm"

    async def acknowledged_in_store():
        rows = (await client.get("/api/v1/alarms", params={"equipment": "winder1"})).json()
        return [a for a in rows if a["code"] == 2005 and a["acknowledged"]]

    stored = (await wait_for(acknowledged_in_store, "the acknowledgement in the store"))[0]
    assert stored["acked_time"].endswith("Z") and stored["active"] is True

    machine.clear_alarm(2005)
    await wait_for(lambda: not any(a["code"] == 2005 for a in view.active_alarms), "the alarm to clear")
    # Acknowledged while active, then cleared: nothing is left to acknowledge.
    assert_reason(await client.post("/api/v1/equipment/winder1/alarms/2005/ack"), 409, "nothing to acknowledge")
    assert_reason(await client.post("/api/v1/equipment/winder1/alarms/3001/ack"), 404, "winder")
    cleared = (await client.get("/api/v1/alarms", params={"equipment": "winder1", "active": "false"})).json()
    assert any(a["occurrence_id"] == stored["occurrence_id"] for a in cleared)


# --- events and traceability ------------------------------------------------------------------

async def test_events_filter_and_reject_unknown_types(client):
    assert_reason(await client.get("/api/v1/events", params={"type": "Exploded"}), 422, "UnitProcessed")
    r = await client.get("/api/v1/events", params={"equipment": "coater1", "start": "-1h", "limit": 20})
    assert r.status_code == 200
    assert all(e["equipment"] == "coater1" for e in r.json())


async def test_trace_of_a_cell_follows_made_from(client, gateway):
    for eq in ("coater1", "winder1", "form1"):
        if gateway.runtime.get(eq).state.get("packml_state") != "Execute":
            await drive_to_idle(client, gateway, eq)
            r = await command(client, eq, "Start")
            assert r.status_code == 200, r.text

    async def a_traced_cell():
        """A cell whose jelly roll came from winder1 through the line's material flow."""
        r = await client.get("/api/v1/events", params={"equipment": "form1", "type": "UnitProcessed", "limit": 20})
        for cell in r.json():
            tree = (await client.get(f"/api/v1/trace/{cell['payload']['unit_id']}")).json()
            if any(n.get("event_type") == "UnitProcessed" for n in tree["made_from"]):
                return cell["payload"], tree
        return None

    payload, tree = await wait_for(a_traced_cell, "a finished cell made from a wound jelly roll", timeout=120)
    assert (tree["unit_id"], tree["unit_type"], tree["equipment"]) == (payload["unit_id"], "cell", "form1")
    assert tree["result"] in ("good", "reject") and tree["source_time"].endswith("Z")
    assert tree["measurements"] and set(tree["measurements"]) <= set(load_spec().get_class("formation").unit_processed)
    assert tree["measurement_units"]["ocv"] == "V"
    assert [n["unit_id"] for n in tree["made_from"]] == [str(x) for x in payload["made_from"]]

    roll = next(n for n in tree["made_from"] if n.get("event_type") == "UnitProcessed")
    assert (roll["unit_type"], roll["equipment"]) == ("jelly_roll", "winder1")
    assert set(roll["measurements"]) <= set(load_spec().get_class("winder").unit_processed)
    winder_event = (await client.get(f"/api/v1/trace/{roll['unit_id']}")).json()
    assert [n["unit_id"] for n in roll["made_from"]] == [n["unit_id"] for n in winder_event["made_from"]]
    assert roll["made_from"], "a jelly roll is made from electrode rolls and separator"

    assert_reason(await client.get("/api/v1/trace/NO-SUCH-CELL"), 404, "NO-SUCH-CELL")


# --- WebSocket and dashboard ---------------------------------------------------------------------

async def test_websocket_sends_a_snapshot_then_filtered_samples(served):
    url = f"ws://{served}/api/v1/live?equipment=form1&paths=channel[*].voltage"
    async with connect(url) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert first["kind"] == "snapshot" and first["line"] == LINE
        assert [m["id"] for m in first["equipment"]] == ["form1"]
        assert all(v["path"].endswith(".voltage") for v in first["equipment"][0]["values"])

        async def next_samples():
            while True:
                msg = json.loads(await ws.recv())
                assert msg["equipment"] == "form1"
                if msg["kind"] == "samples":
                    return msg

        msg = await asyncio.wait_for(next_samples(), 30)
        rows = msg["data"]["samples"]
        assert rows and all(r["path"].startswith("channel[") and r["path"].endswith("].voltage") for r in rows)
        assert all(r["unit"]["code"] == "V" for r in rows)


async def test_websocket_sends_state_and_alarm_messages_whatever_the_paths_filter(served, client, gateway):
    """A PackML state change and an alarm's raise, acknowledgement and clearing arrive as messages of their
    own, for the machine asked for, even though no sample path matches the filter."""
    eq = "winder1"
    code = next(a.code for a in gateway.spec.alarms("winder") if a.id == "epc_limit")  # not a stop reason
    machine = gateway.sims.simulators[eq].machine
    await drive_to_idle(client, gateway, eq)
    async with connect(f"ws://{served}/api/v1/live?equipment={eq}&paths=no.such.path") as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert first["kind"] == "snapshot" and first["equipment"][0]["values"] == []
        seen: list[dict] = []

        async def until(predicate: Callable[[dict], bool]) -> dict:
            while True:
                msg = json.loads(await ws.recv())
                seen.append(msg)
                if predicate(msg):
                    return msg

        r = await command(client, eq, "Start")
        assert r.status_code == 200 and r.json()["state_after"] == "Execute", r.text
        state = await asyncio.wait_for(until(lambda m: m["kind"] == "state" and m["data"]["value"] == "Execute"), 30)
        assert (state["data"]["variable"], state["data"]["state"]["packml_state"]) == ("packml_state", "Execute")
        assert state["data"]["previous"] in ("Idle", "Starting") and state["data"]["source_ts"] > 0

        machine.raise_alarm(code)
        raised = await asyncio.wait_for(until(lambda m: m["kind"] == "alarm"), 30)
        assert (raised["data"]["state"], raised["data"]["code"], raised["data"]["acknowledged"]) == ("raised", code, False)
        r = await client.post(f"/api/v1/equipment/{eq}/alarms/{code}/ack")
        assert r.status_code == 200, r.text
        acked = await asyncio.wait_for(until(lambda m: m["kind"] == "alarm"), 30)
        assert (acked["data"]["state"], acked["data"]["acknowledged"]) == ("acknowledged", True)
        machine.clear_alarm(code)
        cleared = await asyncio.wait_for(until(lambda m: m["kind"] == "alarm"), 30)
        assert cleared["data"]["state"] == "cleared"
        assert cleared["data"]["occurrence_id"] == raised["data"]["occurrence_id"] == acked["data"]["occurrence_id"]
    assert {m["equipment"] for m in seen} == {eq}
    assert "samples" not in {m["kind"] for m in seen}  # the paths filter holds for samples only


async def test_websocket_refuses_an_unknown_machine_with_a_reason(served):
    with pytest.raises(InvalidStatus) as exc:
        async with connect(f"ws://{served}/api/v1/live?equipment=mixer9"):
            pass
    assert exc.value.response.status_code == 404
    assert b"mixer9" in exc.value.response.body


async def test_dashboard_is_served_with_the_line(client, tmp_path):
    r = await client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = r.text
    assert f"line {LINE}" in page
    assert "http://" not in page and "https://" not in page  # self-contained: the network is closed
    modules = ["app.js", "lib.js", "chart.js", "series.js", "pages/line.js", "pages/machine.js", "pages/alarms.js", "pages/trace.js"]
    code = {}
    for name in modules:
        served = await client.get(f"/static/{name}")
        assert served.status_code == 200, name
        assert "http://" not in served.text and "https://" not in served.text, name
        code[name] = served.text
    assert '"/api/v1"' in code["lib.js"] and "/live?" in code["lib.js"]
    for kind in ("samples", "state", "link", "alarm", "event"):  # the machine page shows every live message kind
        assert f'msg.kind === "{kind}"' in code["pages/machine.js"], kind
    assert shutil.which("node"), "the dashboard's modules are checked with node: apt-get install nodejs"
    for name, text in code.items():
        copy = tmp_path / name.replace("/", "_").replace(".js", ".mjs")  # .mjs: checked as an ES module
        copy.write_text(text)
        check = subprocess.run(["node", "--check", str(copy)], capture_output=True, text=True)
        assert check.returncode == 0, (name, check.stderr)
    assert (await client.get("/docs")).status_code == 200


async def scrape(client) -> dict[str, list]:
    """GET /metrics parsed by prometheus-client's own parser: family name -> samples."""
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=")  # the Prometheus text format
    return {f.name: f.samples for f in text_string_to_metric_families(r.text)}


def sample(families: dict[str, list], name: str, **labels: str) -> float:
    family = families.get(name) or families.get(name.removesuffix("_total").removesuffix("_count"), [])
    found = [s.value for s in family if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, f"{name}{labels}: {found} in {sorted(families)}"
    return found[0]


async def test_metrics_for_prometheus_cover_machines_store_and_api(client, gateway):
    assert (await client.get("/api/v1/line")).status_code == 200  # one request whose latency is observed
    m = await scrape(client)
    for eid, cls, proto, _, _ in MACHINES:
        assert sample(m, "linegw_machine_available", equipment=eid, **{"class": cls}, protocol=proto) == 1.0
        assert sample(m, "linegw_machine_link_up", equipment=eid) == 1.0
        assert sample(m, "linegw_machine_samples_total", equipment=eid) > 0
        assert sample(m, "linegw_machine_samples_stored_total", equipment=eid) > 0
        assert sample(m, "linegw_machine_last_data_timestamp_seconds", equipment=eid) > time.time() - 60
        assert sample(m, "linegw_adapter_reconnects_total", equipment=eid) >= 0
        assert sample(m, "linegw_adapter_errors_total", equipment=eid, kind="read") >= 0
    assert sample(m, "linegw_adapter_scans_total", equipment="winder1") > 0  # Modbus scans
    assert sample(m, "linegw_adapter_overruns_total", equipment="winder1") >= 0
    assert sample(m, "linegw_store_written_total") > 0
    assert sample(m, "linegw_store_running") == 1.0
    assert 0 <= sample(m, "linegw_event_loop_lag_seconds") <= sample(m, "linegw_event_loop_lag_max_seconds") < 60
    assert all(sample(m, "linegw_gc_seconds_total", generation=str(g)) >= 0 for g in range(3))
    assert sample(m, "linegw_build_info", line=LINE) == 1.0
    # Latency by route template: one series for /api/v1/line, none per raw path.
    assert sample(m, "linegw_api_request_duration_seconds_count", route="/api/v1/line", method="GET") >= 1
    assert not any(s.labels.get("route", "").startswith("/api/v1/equipment/coater1")
                   for s in m.get("linegw_api_request_duration_seconds", []))


async def test_metrics_move_with_the_machines(client, gateway):
    before = sample(await scrape(client), "linegw_adapter_reconnects_total", equipment="winder1")
    read_before = sample(await scrape(client), "linegw_machine_samples_total", equipment="winder1")
    gateway.sims.simulators["winder1"].faults.drop_connections()

    async def reconnected():
        m = await scrape(client)
        return (sample(m, "linegw_adapter_reconnects_total", equipment="winder1") > before
                and sample(m, "linegw_machine_available", equipment="winder1") == 1.0)

    await wait_for(reconnected, "winder1's reconnect counted in /metrics", timeout=60)
    after = await scrape(client)
    assert sample(after, "linegw_machine_samples_total", equipment="winder1") > read_before


async def test_probes_answer_without_a_key_and_say_nothing_more(keyed_client):
    assert (await keyed_client.get("/api/v1/ready")).status_code == 401
    for path, word in (("/readyz", "ready"), ("/livez", "alive")):
        r = await keyed_client.get(path)
        assert (r.status_code, r.text) == (200, word)


async def test_reloading_the_line_needs_an_engineer(keyed_client):
    r = await keyed_client.post("/api/v1/reload", headers={KEY_HEADER: OPERATOR_KEY})
    assert_reason(r, 403, "operator1", "operator", "engineer")
    assert_reason(await keyed_client.post("/api/v1/reload"), 401, "X-API-Key")


async def test_metrics_need_a_key_where_keys_are_configured(keyed_client):
    assert (await keyed_client.get("/metrics")).status_code == 401
    r = await keyed_client.get("/metrics", headers={KEY_HEADER: VIEWER_KEY})
    assert r.status_code == 200 and "linegw_machine_available" in r.text
