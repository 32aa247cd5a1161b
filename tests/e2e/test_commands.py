"""`linegw simulate` and `linegw run` as commands: they serve a line and stop cleanly on SIGTERM.

The simulators run in one process and the gateway in another, as on a bench
with the machines on the network; the gateway is asked through its API whether
it reads them.
"""

from __future__ import annotations

import sqlite3

from tests.conftest import find_free_port
from tests.e2e.linegw_process import every_machine_available, line_starting, start, stop

LINE = """\
line: clitest
api: {{host: 127.0.0.1, port: 0}}
store: {{path: {db}}}
equipment:
  - id: winder1
    class: winder
    protocol: modbus
    endpoint: modbus://127.0.0.1:{modbus}
    adapter: {{scan_interval_ms: 200}}
    simulate: {{seed: 5, time_scale: 20}}
  - id: coater1
    class: coater
    protocol: opcua
    endpoint: opc.tcp://127.0.0.1:{opcua}/linegw/coater1
    counts: {{dryer_zone: 2, lane: 2}}
    simulate: {{seed: 5, time_scale: 20}}
"""


async def test_simulate_and_run_serve_a_line_and_stop_cleanly_on_sigterm(tmp_path):
    db = tmp_path / "line.sqlite"
    line_file = tmp_path / "line.yaml"
    line_file.write_text(LINE.format(db=db, modbus=find_free_port(), opcua=find_free_port()))
    sims = await start("simulate", str(line_file))
    gateway = None
    try:
        await line_starting(sims, "simulators running")
        gateway = await start("run", str(line_file))
        banner = await line_starting(gateway, "linegw: line 'clitest' API on ")
        api = banner.split()[5]  # http://127.0.0.1:PORT/api/v1
        machines = await every_machine_available(api)
        assert {m["id"] for m in machines} == {"winder1", "coater1"}

        code, err = await stop(gateway)
        gateway = None
        assert code == 0, err
        assert "Traceback" not in err
        with sqlite3.connect(db) as conn:  # the store was closed in order: readable, with what it recorded
            assert conn.execute("SELECT count(*) FROM samples").fetchone()[0] > 0
    finally:
        if gateway is not None:
            gateway.kill()
            await gateway.wait()
        code, err = await stop(sims)
    assert code == 0, err
    assert "Traceback" not in err
