"""GET /api/v1/oee and `linegw report oee` on the scripted hour, through a real line file and store.

The app is the gateway's own (create_app over a LineRuntime built from the
line file, not started: the figures come from the store alone); the CLI runs
as a process of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from gateway.api.app import create_app
from gateway.config import load_line
from gateway.runtime.line import LineRuntime
from gateway.store import SqliteStore
from interface_spec import SpecError
from tests.analytics.script import SPEC, alarm
from tests.analytics.test_oee import T0, T1, steady, winder_script

ROOT = Path(__file__).resolve().parents[2]
HAND_OEE = 2600 / 3200 * 2000 / 2600 * 0.95


def line_file(tmp_path: Path, shifts: str = "") -> Path:
    path = tmp_path / "line.yaml"
    path.write_text(textwrap.dedent(f"""\
        line: scripted
        store: {{path: {tmp_path / 'line.sqlite'}}}
        {shifts}
        equipment:
          - {{id: coater1, class: coater, protocol: opcua, endpoint: "opc.tcp://127.0.0.1:1/c"}}
          - {{id: winder1, class: winder, protocol: modbus, endpoint: "127.0.0.1:1"}}
          - {{id: formation1, class: formation, protocol: modbus, endpoint: "127.0.0.1:1"}}
        """))
    return path


SHIFTS = 'shifts: {timezone: UTC, calendar: [{name: day, start: "06:00", end: "23:30"}, {name: night, start: "23:30", end: "06:00"}]}'


@pytest.fixture
async def line(tmp_path):
    path = line_file(tmp_path, SHIFTS)
    async with SqliteStore(tmp_path / "line.sqlite") as store:
        await winder_script().write(store)
        await steady("coater1", 0.4).write(store)
        await steady("formation1", 0.5).write(store)
        await alarm(store, "winder1", 2002, T0 + 1200, T0 + 1490, stop_reason=True)
    return path


@pytest.fixture
async def client(line):
    cfg = load_line(line)
    async with SqliteStore(cfg.store.path) as store:
        app = create_app(LineRuntime(cfg, SPEC, store), store, SPEC, cfg.api)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
            yield c


async def test_the_route_serves_the_hand_computed_oee_and_the_bottleneck(client):
    r = await client.get("/api/v1/oee", params={"start": str(T0), "end": str(T1)})
    assert r.status_code == 200, r.text
    body = r.json()
    winder = next(m for m in body["machines"] if m["equipment"] == "winder1")
    assert winder["oee"] == pytest.approx(HAND_OEE)
    assert sum(winder["time_s"].values()) == pytest.approx(3600, abs=1e-6)
    assert body["bottleneck"]["equipment"] == "winder1"
    assert body["range"]["start_time"].endswith("Z")


async def test_per_shift_the_times_add_up_to_the_range(client):
    r = await client.get("/api/v1/oee", params={"start": str(T0), "end": str(T1), "equipment": "winder1",
                                                "by": "shift"})
    assert r.status_code == 200, r.text
    occurrences = [s for s in r.json()["shifts"] if s["day"] is not None]
    assert {s["shift"] for s in occurrences} == {"day", "night"}  # T0 is 23:03 UTC: the hour spans both
    assert sum(s["machines"][0]["time_s"]["PRD"] for s in occurrences) == pytest.approx(2600)


async def test_bad_requests_say_why(client):
    r = await client.get("/api/v1/oee", params={"equipment": "nosuch"})
    assert r.status_code == 404 and "known: coater1, winder1, formation1" in r.json()["detail"]
    r = await client.get("/api/v1/oee", params={"start": str(T1), "end": str(T0)})
    assert r.status_code == 422 and "before start" in r.json()["detail"]
    r = await client.get("/api/v1/oee", params={"start": "-200d"})
    assert r.status_code == 422 and "at most 93 days" in r.json()["detail"]
    r = await client.get("/api/v1/oee", params={"by": "week"})
    assert r.status_code == 422 and "by" in r.json()["detail"]


def test_cli_reports_the_same_figures_as_json_and_as_a_table(line):
    # The installed command: `python -m gateway.cli` would register `report` on another copy of the app.
    cmd = [str(Path(sys.executable).parent / "linegw"), "report", "oee", str(line), "--range", f"{T0}..{T1}"]
    out = subprocess.run([*cmd, "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["line"]["oee"] == pytest.approx(HAND_OEE)
    table = subprocess.run([*cmd, "--by-shift"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert table.returncode == 0, table.stderr
    assert "bottleneck: winder (winder1)" in table.stdout and "59.4%" in table.stdout
    assert "shift night" in table.stdout
    bad = subprocess.run([*cmd[:-1], "yesterday..now"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "is not a time" in bad.stderr


def test_a_bad_shift_calendar_is_refused_with_file_line_and_field(tmp_path):
    path = line_file(tmp_path, 'shifts: {calendar: [{name: a, start: "06:00", end: "6pm"}]}')
    with pytest.raises(SpecError, match=r"line\.yaml:3: shifts\.calendar\[0\]\.end: '6pm' is not a time of day"):
        load_line(path)
