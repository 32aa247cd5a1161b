"""The MQTT forwarder against a real mosquitto: topics, JSON payloads, retained online status."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import aiomqtt
import pytest

from gateway.forward.config import MqttForward
from gateway.forward.mqtt import MqttForwarder
from gateway.samples import Quality, Sample
from gateway.store.sqlite import SqliteStore


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def broker(tmp_path: Path):
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.fail("mosquitto not installed: run make system-deps")
    port = _free_port()
    conf = tmp_path / "m.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):  # readiness poll
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait()


async def test_topics_payloads_and_status(tmp_path: Path, broker: int) -> None:
    store = SqliteStore(tmp_path / "g.db")
    await store.start()
    try:
        t = time.time()
        await store.write_samples_async([Sample("form1", f"channel[{i}].voltage", 3.5 + i, "V", t, t, Quality.GOOD)
                                         for i in range(3)])
        await store.flush()
        fwd = MqttForwarder(store, MqttForward(port=broker), "L1", poll_s=0.05)
        async with aiomqtt.Client("127.0.0.1", broker) as sub:
            await sub.subscribe("linegw/#", qos=1)
            got: dict[str, bytes] = {}
            async with asyncio.TaskGroup() as tg:
                task = tg.create_task(fwd.run())
                async for m in sub.messages:
                    got[str(m.topic)] = bytes(m.payload)
                    if len(got) == 4:
                        break
                task.cancel()
        assert got["linegw/L1/$gateway/status"] == b"online"
        p = json.loads(got["linegw/L1/form1/channel/2/voltage"])
        assert p == {"value": 5.5, "unit": "V", "quality": "GOOD", "reason": "", "source_ts": t, "gateway_ts": t}
        assert {"linegw/L1/form1/channel/0/voltage", "linegw/L1/form1/channel/1/voltage"} <= set(got)
    finally:
        await store.close()


WILL_CHILD = """
import asyncio, sys
from gateway.forward.config import MqttForward
from gateway.forward.mqtt import MqttForwarder
from gateway.store.sqlite import SqliteStore
async def main():
    store = SqliteStore(sys.argv[1]); await store.start()
    await MqttForwarder(store, MqttForward(port=int(sys.argv[2])), "L1", poll_s=0.05).run()
asyncio.run(main())
"""


async def test_last_will_when_the_connection_dies(tmp_path: Path, broker: int) -> None:
    import os
    import signal
    import sys
    async with aiomqtt.Client("127.0.0.1", broker) as sub:
        await sub.subscribe("linegw/L1/$gateway/status", qos=1)
        child = subprocess.Popen([sys.executable, "-c", WILL_CHILD, str(tmp_path / "g.db"), str(broker)],
                                 cwd=Path(__file__).parents[2])
        try:
            seen = []
            async for m in sub.messages:
                seen.append(bytes(m.payload))
                if seen[-1] == b"online":
                    os.kill(child.pid, signal.SIGKILL)  # no DISCONNECT: the broker sends the will
                if seen[-1] == b"offline":
                    break
        finally:
            if child.poll() is None:
                child.kill()
            child.wait()
    assert seen == [b"online", b"offline"]
    async with aiomqtt.Client("127.0.0.1", broker) as late:  # the will is retained for late subscribers
        await late.subscribe("linegw/L1/$gateway/status", qos=1)
        async for m in late.messages:
            assert bytes(m.payload) == b"offline" and m.retain
            break
