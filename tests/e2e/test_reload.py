"""Hot reload: `linegw run` reads its line file again on SIGHUP or POST /api/v1/reload.

Three winders are simulated in this process; the gateway runs in its own. A
changed machine restarts, a new one starts, a removed one stops, and the machine
left alone keeps its connection and its data without a gap. A file that does not
load is refused with its file:line reasons and the running line stays.
"""

from __future__ import annotations

import signal
import time

import httpx

from simulators.line import SimConfig, SimLine
from tests.e2e.linegw_process import line_starting, serving, start, stop
from tests.waiting import wait_for

HEAD = """\
line: reload
api: {{host: 127.0.0.1, port: {port}}}
store: {{path: {db}}}
equipment:
"""
WINDER = """\
  - id: {id}
    class: winder
    protocol: modbus
    endpoint: {endpoint}
    adapter: {{scan_interval_ms: {scan}, timeout_s: 2}}
"""


def line_text(tmp_path, endpoints: dict[str, str], scans: dict[str, int], port: int = 0) -> str:
    return HEAD.format(port=port, db=tmp_path / "line.sqlite") + "".join(
        WINDER.format(id=eq, endpoint=endpoints[eq], scan=scan) for eq, scan in scans.items())


async def machines(c: httpx.AsyncClient, api: str) -> dict[str, bool]:
    return {m["id"]: m["available"] for m in (await c.get(f"{api}/line")).json()["machines"]}


async def test_sighup_and_the_api_apply_a_changed_line_file_and_leave_the_rest_running(tmp_path):
    sims = SimLine()
    await sims.start([SimConfig(equipment_id=eq, cls="winder", protocol="modbus", port=0, seed=3, time_scale=10)
                      for eq in ("winder1", "winder2", "winder3")])
    endpoints = sims.endpoints()
    line_file = tmp_path / "line.yaml"
    line_file.write_text(line_text(tmp_path, endpoints, {"winder1": 200, "winder2": 200}))
    gateway = None
    try:
        gateway, api = await serving(line_file, "reload")
        async with httpx.AsyncClient(timeout=10) as c:
            before = (await c.get(f"{api}/health")).json()["equipment"]
            t0 = time.time()

            # SIGHUP: winder2's scan changes, winder3 joins, winder1 is left alone.
            line_file.write_text(line_text(tmp_path, endpoints, {"winder1": 200, "winder2": 300, "winder3": 200}))
            gateway.send_signal(signal.SIGHUP)
            await wait_for(lambda: _all_up(c, api, {"winder1", "winder2", "winder3"}), "winder3 started", timeout=60)
            since = {eq: e["since"] for eq, e in (await c.get(f"{api}/health")).json()["equipment"].items()}
            assert since["winder1"] == before["winder1"]["since"]  # left alone
            assert since["winder2"] > before["winder2"]["since"]  # restarted
            audit = (await c.get(f"{api}/audit")).json()
            assert not [a for a in audit if a["command"] == "ReloadLine"]  # a signal has no caller to audit

            # A file that does not load: refused with its line, the line runs on unchanged.
            good = line_file.read_text()
            line_file.write_text(good.replace("scan_interval_ms: 300", "scan_intervall_ms: 300"))
            r = await c.post(f"{api}/reload")
            assert r.status_code == 422, r.text
            assert f"{line_file}:" in r.json()["detail"] and "scan_intervall_ms" in r.json()["detail"]
            assert "running line is unchanged" in r.json()["detail"]
            assert await machines(c, api) == {"winder1": True, "winder2": True, "winder3": True}

            line_file.write_text(good.replace("line: reload", "line: another"))
            r = await c.post(f"{api}/reload")
            assert r.status_code == 422 and "another line name needs a restart" in r.json()["detail"], r.text

            # Through the API: winder2 goes; the port changes too, which only a restart applies.
            line_file.write_text(line_text(tmp_path, endpoints, {"winder1": 200, "winder3": 200}, port=1))
            r = await c.post(f"{api}/reload")
            assert r.status_code == 200, r.text
            assert r.json() == {"added": [], "changed": [], "removed": ["winder2"], "unchanged": ["winder1", "winder3"],
                                "applied": [], "needs_restart": ["api"]}
            assert set(await machines(c, api)) == {"winder1", "winder3"}
            entries = [(a["result"], a["detail"]) for a in (await c.get(f"{api}/audit")).json()
                       if a["command"] == "ReloadLine"]
            assert entries[0] == ("ok", "removed: winder2; unchanged: winder1, winder3; needs_restart: api")
            assert entries[1][0] == "parameter_invalid" and "'another' is not the running line" in entries[1][1]
            assert entries[2][0] == "parameter_invalid" and "scan_intervall_ms" in entries[2][1]

            # winder1 was never touched: the same connection, and its heartbeat without a gap through it all.
            after = (await c.get(f"{api}/health")).json()["equipment"]["winder1"]
            assert after["since"] == before["winder1"]["since"]
            assert after["adapter"]["reconnects"] == before["winder1"]["adapter"]["reconnects"] == 0
            async def heartbeats() -> list[dict]:
                r = await c.get(f"{api}/equipment/winder1/history", params={"path": "status.heartbeat", "start": t0})
                points = r.json()["series"][0]["points"]
                return points if len(points) >= 15 else []  # 3 s and more at a 200 ms scan, across both reloads

            points = await wait_for(heartbeats, "winder1's heartbeats since the first reload", timeout=30)
            times = [p["ts"] for p in points]
            assert max(b - a for a, b in zip(times, times[1:])) < 1.0, times  # no scan lost: 0.2 s apart, not 1 s
            assert {p["quality"] for p in points} == {"good"}
        code, err = await stop(gateway)
        gateway = None
        assert code == 0, err
        assert "line reloaded: added winder3; changed winder2; unchanged winder1" in err
    finally:
        if gateway is not None:
            await stop(gateway)
        await sims.stop()


async def _all_up(c: httpx.AsyncClient, api: str, expected: set[str]) -> bool:
    found = await machines(c, api)
    return set(found) == expected and all(found.values())


KEYED = """\
line: keys
api:
  host: 127.0.0.1
  port: 0
  keys:
{keys}
store: {{path: {db}}}
equipment:
  - id: winder1
    class: winder
    protocol: modbus
    endpoint: {endpoint}
"""


async def new_key(user: str, role: str) -> tuple[str, str]:
    """`linegw keys new`: the key, and the api.keys entry with only its hash."""
    proc = await start("keys", "new", "--user", user, "--role", role)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    key = lines[0].rsplit(": ", 1)[1]
    entry = lines[2].strip()
    assert entry.startswith(f"- {{user: {user}, role: {role}, key_sha256: ") and key not in out.decode().split("\n", 1)[1]
    return key, entry


async def test_keys_rotate_without_a_restart(tmp_path):
    sims = SimLine()
    await sims.start([SimConfig(equipment_id="winder1", cls="winder", protocol="modbus", port=0, seed=4, time_scale=10)])
    (old_key, old_entry), (new_key_, new_entry) = await new_key("scada", "viewer"), await new_key("scada", "viewer")
    eng_key, eng_entry = await new_key("engineer1", "engineer")
    line_file = tmp_path / "line.yaml"

    def write(*entries: str) -> None:
        line_file.write_text(KEYED.format(keys="\n".join(f"    {e}" for e in entries), db=tmp_path / "line.sqlite",
                                          endpoint=sims.endpoints()["winder1"]))

    write(old_entry, eng_entry)
    assert old_key not in line_file.read_text()  # the file holds hashes only
    gateway = await start("run", str(line_file))
    try:
        api = (await line_starting(gateway, "linegw: line 'keys' API on ")).split()[5]
        async with httpx.AsyncClient(timeout=10) as c:
            async def status(key: str) -> int:
                return (await c.get(f"{api}/line", headers={"X-API-Key": key})).status_code

            assert await status(old_key) == 200 and await status(new_key_) == 401
            write(new_entry, eng_entry)
            r = await c.post(f"{api}/reload", headers={"X-API-Key": eng_key})
            assert r.status_code == 200 and r.json()["applied"] == ["api.keys"] and r.json()["needs_restart"] == [], r.text
            assert await status(old_key) == 401 and await status(new_key_) == 200
            audit = (await c.get(f"{api}/audit", headers={"X-API-Key": eng_key})).json()
            assert audit[0]["command"] == "ReloadLine" and audit[0]["user"] == "engineer1"
            assert "applied: api.keys" in audit[0]["detail"]
        code, err = await stop(gateway)
        assert code == 0, err
        gateway = None
        for key in (old_key, new_key_, eng_key):
            assert key not in err  # the log never holds a key
    finally:
        if gateway is not None:
            await stop(gateway)
        await sims.stop()
