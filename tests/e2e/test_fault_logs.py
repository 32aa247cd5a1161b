"""The gateway's log through a fault, read as an operator reads it: one line when a machine goes, one when
it is back, with its ID and the reason; no library frames, hex dumps or tracebacks at the default level.

The simulators run in this process (so the test can pull a machine off the
network); the gateway is `linegw run` in its own process, and its log is what
it wrote to stderr.
"""

from __future__ import annotations

import re
import time

import httpx

from simulators.line import SimConfig, SimLine
from tests.e2e.linegw_process import serving, stop
from tests.waiting import wait_for

LINE = """\
line: logtest
api: {{host: 127.0.0.1, port: 0}}
store: {{path: {db}}}
equipment:
  - id: winder1
    class: winder
    protocol: modbus
    endpoint: {winder1}
    adapter: {{scan_interval_ms: 200, timeout_s: 2}}
  - id: coater1
    class: coater
    protocol: opcua
    endpoint: {coater1}
    counts: {{dryer_zone: 2, lane: 2}}
"""
# What a library writes when it dumps a frame or a stack: pymodbus's "send: 0x.. 0x..", ">>>>> recv: ...".
DUMP = re.compile(r"(send|recv|extra):? 0x|>>>>>|Traceback|^\s+File \"", re.MULTILINE)


async def available(api: str, eq: str) -> bool:
    async with httpx.AsyncClient(timeout=5) as c:
        machines = (await c.get(f"{api}/line")).json()["machines"]
    return any(m["id"] == eq and m["available"] for m in machines)


async def test_a_dropped_machine_is_one_line_down_and_one_line_up(tmp_path):
    sims = SimLine()
    await sims.start([SimConfig(equipment_id="winder1", cls="winder", protocol="modbus", port=0, seed=5,
                                time_scale=10),
                      SimConfig(equipment_id="coater1", cls="coater", protocol="opcua", port=0, seed=5,
                                time_scale=10, counts={"dryer_zone": 2, "lane": 2})])
    line_file = tmp_path / "line.yaml"
    line_file.write_text(LINE.format(db=tmp_path / "line.sqlite", **sims.endpoints()))
    gateway = None
    try:
        gateway, api = await serving(line_file, "logtest")

        # The Modbus machine drops off the network: connections cut, the port closed, for a few seconds.
        faults = sims.simulators["winder1"].faults
        faults.refuse(True)
        faults.drop_connections()
        await wait_for(lambda: _down(api, "winder1"), "winder1 unavailable", timeout=30)
        gone = time.monotonic()
        while time.monotonic() - gone < 3.0:  # it stays away a few seconds: several reconnect attempts
            await wait_for(lambda: _down(api, "winder1"), "winder1 still unavailable", timeout=5)
        faults.refuse(False)
        await wait_for(lambda: available(api, "winder1"), "winder1 back", timeout=30)

        # The OPC UA machine's server goes away and comes back.
        server = sims.simulators["coater1"].binding.server
        await server.stop()
        await wait_for(lambda: _down(api, "coater1"), "coater1 unavailable", timeout=30)
        await server.start()
        await sims.simulators["coater1"].publish_all()
        await wait_for(lambda: available(api, "coater1"), "coater1 back", timeout=60)

        code, err = await stop(gateway)
        gateway = None
    finally:
        if gateway is not None:
            gateway.kill()
            await gateway.wait()
        await sims.stop()
    assert code == 0, err
    assert not DUMP.search(err), [line for line in err.splitlines() if DUMP.search(line)][:5]
    lines = err.splitlines()
    for eq in ("winder1", "coater1"):
        # From the machine's first "available" on (a loaded start-up may take two tries to connect).
        first = next(i for i, line in enumerate(lines) if f" {eq}: available" in line)
        down = [line for line in lines[first:] if f" {eq}: UNAVAILABLE " in line]
        up = [line for line in lines[first + 1:] if f" {eq}: available" in line]
        assert len(down) == 1, down  # once as the fault starts, with the reason
        assert len(up) == 1, up  # once as the fault ends
    assert not [line for line in lines if "pymodbus" in line or "asyncua" in line]
    # Not drowned: the fault run is a handful of lines.
    assert len(lines) < 40, "\n".join(lines)


async def _down(api: str, eq: str) -> bool:
    return not await available(api, eq)
