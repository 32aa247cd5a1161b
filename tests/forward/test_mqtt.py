"""The MQTT forwarder against a real mosquitto: topics, JSON payloads, retained identity and state,
the gateway status "online" while it runs, "offline" after a clean stop and as last will."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
import pytest

from gateway.forward.config import MqttForward
from gateway.forward.mqtt import MqttForwarder
from gateway.samples import Quality, Sample
from gateway.store.sqlite import SqliteStore
from interface_spec import load_spec
from tests.forward.conftest import Mosquitto, retained, stopped_while_publishing
from tests.waiting import wait_for

STATUS = "linegw/L1/$gateway/status"


async def test_topics_payloads_and_status(tmp_path: Path, mosquitto: Mosquitto) -> None:
    store = SqliteStore(tmp_path / "g.db")
    await store.start()
    try:
        t = time.time()
        await store.write_samples_async([Sample("form1", f"channel[{i}].voltage", 3.5 + i, "V", t, t, Quality.GOOD)
                                         for i in range(3)])
        await store.flush()
        fwd = MqttForwarder(store, MqttForward(port=mosquitto.port), "L1", poll_s=0.05)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as sub:
            await sub.subscribe("linegw/#", qos=1)
            got: dict[str, bytes] = {}
            async with asyncio.TaskGroup() as tg:
                task = tg.create_task(fwd.run())
                async with asyncio.timeout(30):
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


async def test_last_will_when_the_connection_dies(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as sub:
        await sub.subscribe(STATUS, qos=1)
        child = subprocess.Popen([sys.executable, "-c", WILL_CHILD, str(tmp_path / "g.db"), str(mosquitto.port)],
                                 cwd=Path(__file__).parents[2])
        try:
            seen = []
            async with asyncio.timeout(60):
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
    assert await retained(mosquitto.port, STATUS) == b"offline"  # the will is retained for late subscribers


async def test_clean_stop_leaves_the_status_offline(tmp_path: Path, mosquitto: Mosquitto) -> None:
    store = SqliteStore(tmp_path / "g.db")
    await store.start()
    try:
        fwd = MqttForwarder(store, MqttForward(port=mosquitto.port), "L1", poll_s=0.05)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as sub:
            await sub.subscribe(STATUS, qos=1)  # in place once subscribe() returns: the broker sent SUBACK
            seen = []
            async with asyncio.TaskGroup() as tg:
                task = tg.create_task(fwd.run())
                async with asyncio.timeout(30):
                    async for m in sub.messages:
                        seen.append((bytes(m.payload), m.retain))
                        if seen[-1][0] == b"online":
                            task.cancel()  # a clean stop, as the gateway's SIGTERM does
                        if seen[-1][0] == b"offline":
                            break
        assert seen == [(b"online", False), (b"offline", False)]  # live deliveries of retained publishes
        assert task.cancelled()
        assert await retained(mosquitto.port, STATUS) == b"offline"  # what a subscriber connecting later sees
    finally:
        await store.close()


async def test_identity_and_state_are_retained_for_late_subscribers(tmp_path: Path, mosquitto: Mosquitto) -> None:
    store = SqliteStore(tmp_path / "g.db")
    await store.start()
    try:
        t = time.time()
        await store.write_samples_async([
            Sample("w1", "identification.manufacturer", "Tobu Engineering", "", t, t, Quality.GOOD),
            Sample("w1", "state.packml_state", 6, "", t, t, Quality.GOOD),
            Sample("w1", "status.availability", 1, "", t, t, Quality.GOOD),
            Sample("w1", "winding.speed", 42.0, "m/min", t, t, Quality.GOOD)])
        await store.flush()
        fwd = MqttForwarder(store, MqttForward(port=mosquitto.port), "L1", poll_s=0.05)
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(fwd.run())
            await wait_for(lambda: fwd.stats()["published"] == 4, "four samples published", timeout=30)
            task.cancel()
        got: dict[str, tuple[bytes, bool]] = {}
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as late:  # connects after everything was published
            await late.subscribe("linegw/L1/w1/#", qos=1)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):  # retained messages come at once; nothing else is sent
                    async for m in late.messages:
                        got[str(m.topic)] = (bytes(m.payload), m.retain)
        assert set(got) == {"linegw/L1/w1/identification/manufacturer", "linegw/L1/w1/state/packml_state",
                            "linegw/L1/w1/status/availability"}  # the process value is not retained
        assert all(retained for _, retained in got.values())
        assert json.loads(got["linegw/L1/w1/identification/manufacturer"][0])["value"] == "Tobu Engineering"
    finally:
        await store.close()


async def test_broker_restart_loses_nothing(tmp_path: Path, mosquitto: Mosquitto) -> None:
    # The subscriber keeps a persistent session, and the broker its state on disk: what the
    # forwarder publishes while the subscriber reconnects is queued for it, as in a plant.
    mosquitto.stop()
    mosquitto.conf.write_text(mosquitto.conf.read_text() + f"persistence true\npersistence_location {tmp_path}/\n")
    mosquitto.start()
    store = SqliteStore(tmp_path / "g.db")
    await store.start()
    t0 = time.time() - 100
    seen: set[float] = set()
    subscribed = asyncio.Event()

    async def subscriber() -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="plant-historian",
                                          clean_session=False) as sub:
                    await sub.subscribe("linegw/L1/c1/web/speed", qos=1)
                    subscribed.set()  # the broker acknowledged it (SUBACK): matching publishes reach us
                    async for m in sub.messages:
                        seen.add(json.loads(m.payload)["value"])
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    async def until(pred) -> None:
        async with asyncio.timeout(30):
            while not pred():
                await asyncio.sleep(0.05)

    def write(lo: int, hi: int):
        return store.write_samples_async([Sample("c1", "web.speed", float(i), "m/min", t0 + i / 10, t0 + i / 10,
                                                 Quality.GOOD) for i in range(lo, hi)])
    try:
        fwd = MqttForwarder(store, MqttForward(port=mosquitto.port, backoff_max_s=0.5), "L1", poll_s=0.05)
        async with asyncio.TaskGroup() as tg:
            sub = tg.create_task(subscriber())
            await until(subscribed.is_set)
            task = tg.create_task(fwd.run())
            await write(0, 200)
            await until(lambda: len(seen) == 200)
            mosquitto.stop()
            await write(200, 500)
            await until(lambda: fwd.stats()["reconnects"] > 0)
            cursor = fwd.stats()["cursor"]
            await until(lambda: fwd.stats()["reconnects"] > 2)  # more attempts, all refused
            assert fwd.stats()["cursor"] == cursor  # nothing is taken off the outbox while the broker is away
            assert fwd.stats()["failing_since"] is not None and "Connect" in fwd.stats()["last_error"]
            mosquitto.start()
            await until(lambda: len(seen) == 500)
            task.cancel()
            sub.cancel()
        assert seen == {float(i) for i in range(500)}
        assert (await store.outbox_backlog(fwd.stats()["cursor"]))[0] == 0
    finally:
        await store.close()


async def test_a_reconnect_resumes_after_the_last_batch_sent_not_from_the_session_start(tmp_path: Path,
                                                                                        mosquitto: Mosquitto) -> None:
    store = SqliteStore(tmp_path / "g.db")
    await store.start()
    try:
        t = time.time()
        await store.write_samples_async([Sample("w1", "winding.speed", float(i), "m/min", t + i, t + i, Quality.GOOD)
                                         for i in range(20)])
        await store.flush()
        fwd = MqttForwarder(store, MqttForward(port=mosquitto.port, backoff_max_s=0.5), "L1", poll_s=0.05)
        task = asyncio.create_task(fwd.run())
        try:
            await wait_for(lambda: fwd.stats()["published"] == 20, "the first samples", timeout=30)
            mosquitto.stop()  # the broker goes away and comes back on the same port
            await store.write_samples_async([Sample("w1", "winding.speed", 99.0, "m/min", t + 50, t + 50,
                                                    Quality.GOOD)])
            await wait_for(lambda: fwd.stats()["reconnects"] >= 1, "the lost connection noticed", timeout=30)
            mosquitto.start()
            await wait_for(lambda: fwd.stats()["cursor"] == 21, "the new sample sent", timeout=30)
            # Only the new sample: the 20 the broker had acknowledged are not sent again.
            assert fwd.stats()["published"] == 21
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await store.close()


async def test_a_unified_namespace_keeps_current_values_and_describes_each_variable(tmp_path: Path,
                                                                                    mosquitto: Mosquitto) -> None:
    store = SqliteStore(tmp_path / "g.db")
    await store.start()
    try:
        t = time.time()
        await store.write_samples_async([Sample("form1", "channel[1].voltage", 3.71, "V", t, t, Quality.GOOD),
                                         Sample("form1", "vendor.raw_word", 17, "", t, t, Quality.GOOD)])
        await store.flush()
        cfg = MqttForward(port=mosquitto.port, base_topic="acme/site1/area2", retain_values=True, metadata=True)
        fwd = MqttForwarder(store, cfg, "L1", poll_s=0.05, classes={"form1": "formation"}, spec=load_spec())
        task = asyncio.create_task(fwd.run())
        try:
            await wait_for(lambda: fwd.stats()["published"] == 2, "two samples published", timeout=30)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        root = "acme/site1/area2/L1/form1"
        # A subscriber that comes after: the current value and what it is, both retained.
        value = json.loads(await retained(mosquitto.port, f"{root}/channel/1/voltage"))
        assert value["value"] == 3.71 and value["unit"] == "V" and value["quality"] == "GOOD"
        meta = json.loads(await retained(mosquitto.port, f"{root}/channel/1/voltage/$meta"))
        assert (meta["unit"], meta["type"], meta["range"], meta["resolution"]) == ("V", "float", [0.0, 5.0], 0.0001)
        assert json.loads(await retained(mosquitto.port, f"{root}/vendor/raw_word"))["value"] == 17
        with pytest.raises(TimeoutError):  # a path outside the spec has nothing to describe it
            await retained(mosquitto.port, f"{root}/vendor/raw_word/$meta", timeout=1.0)
    finally:
        await store.close()



async def test_a_stop_always_ends_the_forwarder_while_it_publishes(tmp_path: Path, mosquitto: Mosquitto) -> None:
    store = SqliteStore(tmp_path / "g.db")
    await store.start()
    try:
        t = time.time()
        await store.write_samples_async([Sample("w1", "winding.speed", float(i), "m/min", t + i / 1000, t, Quality.GOOD)
                                         for i in range(100_000)])
        await store.flush()
        await stopped_while_publishing(MqttForwarder(store, MqttForward(port=mosquitto.port), "L1", poll_s=0.05))
    finally:
        await store.close()
