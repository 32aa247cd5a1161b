"""A line file with OPC UA SignAndEncrypt and a login whose password comes from the environment."""

from __future__ import annotations

import asyncio
import logging


from gateway.config import load_line
from gateway.logs import configure as configure_logging
from gateway.runtime.line import LineRuntime
from gateway.store.sqlite import SqliteStore
from interface_spec import load_spec
from simulators.line import SimConfig, SimLine
from simulators.servers.opcua_server import OpcUaSecurity

PASSWORD = "s3cret-line-pw"


async def test_sign_and_encrypt_with_login_from_the_line_file(tmp_path, monkeypatch, caplog):
    sims = SimLine()
    await sims.start([SimConfig(equipment_id="coater9", cls="coater", port=0, counts={"dryer_zone": 2, "lane": 2},
                                security=OpcUaSecurity(modes=["SignAndEncrypt"], username="line", password=PASSWORD))])
    monkeypatch.setenv("LINEGW_TEST_OPCUA_PASSWORD", PASSWORD)
    (tmp_path / "line.yaml").write_text(
        "line: secure\nequipment:\n  - id: coater9\n    class: coater\n    protocol: opcua\n"
        f"    endpoint: {sims.endpoints()['coater9']}\n    counts: {{dryer_zone: 2, lane: 2}}\n"
        "    security:\n      mode: SignAndEncrypt\n      username: line\n"
        f"      password_env: LINEGW_TEST_OPCUA_PASSWORD\n      certificate_dir: {tmp_path / 'pki'}\n"
    )
    store = SqliteStore(tmp_path / "store.sqlite")
    await store.start()
    runtime = LineRuntime(load_line(tmp_path / "line.yaml"), load_spec(), store)
    configure_logging("info")  # as `linegw run` does
    caplog.set_level(logging.INFO)
    task = asyncio.create_task(runtime.run())
    try:
        dev = runtime.devices["coater9"]
        for _ in range(300):
            if "identification.manufacturer" in dev.latest and dev.view.available:
                break
            await asyncio.sleep(0.1)
        assert dev.view.available, f"not connected: {dev.view.link_reason}"
        assert dev.latest["identification.manufacturer"].value
        assert any((tmp_path / "pki").rglob("*")), "the gateway certificate was not kept in certificate_dir"
        assert caplog.records, "nothing was logged: the check below would prove nothing"
        assert PASSWORD not in caplog.text, "a secret reached the log"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()
        await sims.stop()
