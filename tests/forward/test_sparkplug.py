"""The Sparkplug B sink against a real mosquitto, every payload decoded by Eclipse Tahu's own JavaScript
implementation (npm sparkplug-payload, run with node): births before data, every spec variable in DBIRTH
with its datatype and unit, seq without gaps, aliases that resolve, DDEATH and DBIRTH following a machine's
link, rebirth on NCMD, NDEATH as the will after SIGKILL and the next bdSeq after a restart, a primary
host's outage backfilled as historical with nothing lost or repeated, and DCMD refused and audited."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.forward.config import SparkplugForward
from gateway.forward.sparkplug import SparkplugForwarder
from gateway.forward.sparkplug import payload as sp
from gateway.samples import Quality, Sample
from gateway.store.sqlite import SqliteStore
from interface_spec import load_spec
from tests.forward.conftest import Mosquitto, stopped_while_publishing
from tests.node_peers import run_node
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
CLASSES = {"form1": "formation", "winder1": "winder"}
UP, DOWN = 1, 0  # the spec's availability codes


def tahu_decode(payloads: list[bytes]) -> list[dict[str, Any]]:
    """Decode with sparkplug-payload (tests/node, installed by `make test`)."""
    lines = run_node("decode_sparkplug.js", "sparkplug-payload", [base64.b64encode(p).decode() for p in payloads])
    out = [json.loads(line) for line in lines]
    assert len(out) == len(payloads) and not [o for o in out if "error" in o], out
    return out


class Backbone:
    """What a Sparkplug host sees: every message under spBv1.0/ for the group, in arrival order."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.raw: list[tuple[str, bytes]] = []

    async def run(self, ready: asyncio.Event) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port) as c:
            await c.subscribe("spBv1.0/plant/#", qos=1)
            ready.set()
            async for m in c.messages:
                if str(m.topic).split("/")[2] not in ("NCMD", "DCMD"):  # what the host itself sends
                    self.raw.append((str(m.topic), bytes(m.payload)))

    def kinds(self) -> list[str]:
        return [t.split("/")[2] + ("/" + t.split("/")[4] if len(t.split("/")) > 4 else "") for t, _ in self.raw]

    def decoded(self) -> list[tuple[str, dict[str, Any]]]:
        return list(zip([t for t, _ in self.raw], tahu_decode([p for _, p in self.raw])))


@contextlib.asynccontextmanager
async def listening(port: int) -> AsyncIterator[Backbone]:
    """A subscriber in place (SUBACK received) for as long as the block runs."""
    backbone = Backbone(port)
    ready = asyncio.Event()
    task = asyncio.create_task(backbone.run(ready))
    try:
        async with asyncio.timeout(30):
            await ready.wait()
        yield backbone
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def forwarding(fwd: SparkplugForwarder) -> AsyncIterator[asyncio.Task[None]]:
    """The forwarder running for as long as the block runs; stopped cleanly (its NDEATH sent) after."""
    task = asyncio.create_task(fwd.run())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

async def publish(port: int, topic: str, payload: bytes, retain: bool = False) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as c:
        await c.publish(topic, payload, qos=1, retain=retain)


def rebirth() -> bytes:
    p = sp.Payload()
    p.timestamp = int(time.time() * 1000)
    m = p.metrics.add()
    m.name, m.datatype, m.boolean_value = "Node Control/Rebirth", sp.BOOLEAN, True
    return bytes(p.SerializeToString())


def command(name: str) -> bytes:
    p = sp.Payload()
    p.timestamp = int(time.time() * 1000)
    m = p.metrics.add()
    m.name, m.datatype, m.boolean_value = name, sp.BOOLEAN, True
    return bytes(p.SerializeToString())


def samples(t: float, n: int = 3, avail: int = UP) -> list[Sample]:
    out = [Sample(eq, "status.availability", avail, "", t, t, Quality.GOOD) for eq in CLASSES]
    out += [Sample("form1", f"channel[{i}].voltage", 3.6 + i / 100, "V", t, t, Quality.GOOD) for i in range(1, n + 1)]
    out.append(Sample("winder1", "winding.tension", 12.5, "N", t, t, Quality.UNCERTAIN, "stale"))
    return out


def aliases(decoded: list[tuple[str, dict[str, Any]]]) -> dict[tuple[str, int], str]:
    """(machine, alias) -> metric name, from every DBIRTH."""
    out = {}
    for topic, p in decoded:
        if "/DBIRTH/" in topic:
            for m in p["metrics"]:
                out[(topic.rsplit("/", 1)[1], m["alias"])] = m["name"]
    return out


def check_seq(decoded: list[tuple[str, dict[str, Any]]]) -> None:
    """Every message of a node session but NDEATH carries seq: NBIRTH 0, then one more each, mod 256."""
    expected = None
    for topic, p in decoded:
        kind = topic.split("/")[2]
        if kind == "NDEATH":
            expected = None
            continue
        if kind == "NBIRTH":
            assert p["seq"] == 0, (topic, p)
        else:
            assert p["seq"] == expected, (topic, p["seq"], expected)
        expected = (p["seq"] + 1) % 256


async def test_births_data_deaths_and_rebirth_as_a_host_decodes_them(tmp_path: Path, mosquitto: Mosquitto) -> None:
    spec = load_spec()
    store = SqliteStore(tmp_path / "g.db")
    await store.start()
    try:
        t = time.time()
        await store.write_samples_async(samples(t))
        await store.flush()
        fwd = SparkplugForwarder(store, SparkplugForward(port=mosquitto.port, group_id="plant", poll_s=0.05),
                                 "L1", CLASSES, spec)
        async with listening(mosquitto.port) as backbone:
            async with forwarding(fwd):
                await wait_for(lambda: fwd.stats()["published"] == 6, "the first samples sent", timeout=30)
                # winder1's link drops and comes back; form1 goes on.
                t2 = time.time()
                await store.write_samples_async([Sample("winder1", "status.availability", DOWN, "", t2, t2, Quality.GOOD,
                                                        "connection lost"),
                                                 Sample("form1", "channel[1].voltage", 3.7, "V", t2, t2, Quality.GOOD),
                                                 Sample("winder1", "status.availability", UP, "", t2 + 1, t2 + 1,
                                                        Quality.GOOD)])
                await wait_for(lambda: fwd.stats()["published"] == 9, "the link's down and up sent", timeout=30)
                await publish(mosquitto.port, "spBv1.0/plant/NCMD/L1", rebirth())
                await wait_for(lambda: backbone.kinds().count("NBIRTH") == 2, "a second NBIRTH", timeout=30)
                await wait_for(lambda: backbone.kinds()[-1] == "DBIRTH/winder1", "the rebirth's DBIRTHs", timeout=30)
            await wait_for(lambda: backbone.kinds()[-1:] == ["NDEATH"], "the clean stop's NDEATH", timeout=30)
        decoded = backbone.decoded()
        kinds = backbone.kinds()
        assert kinds[:3] == ["NBIRTH", "DBIRTH/form1", "DBIRTH/winder1"]  # births before any data
        # A batch's messages go machine by machine, each machine's in the order of its samples.
        assert kinds[3:] == ["DDATA/form1", "DDATA/winder1", "DDEATH/winder1", "DBIRTH/winder1", "DDATA/form1",
                             "NBIRTH", "DBIRTH/form1", "DBIRTH/winder1", "NDEATH"], kinds
        check_seq(decoded)
        nbirth = decoded[0][1]
        metrics = {m["name"]: m for m in nbirth["metrics"]}
        assert metrics["bdSeq"]["type"] == "Int64" and metrics["Node Control/Rebirth"]["value"] is False
        assert decoded[5][1].get("metrics", []) == [] and decoded[-1][1]["metrics"][0]["name"] == "bdSeq"  # DDEATH, NDEATH
        assert decoded[-1][1]["metrics"][0]["value"] == metrics["bdSeq"]["value"]  # the clean stop's NDEATH

        # Every spec variable of the class is in its DBIRTH, typed and with its unit and range.
        birth = {m["name"]: m for m in decoded[1][1]["metrics"]}
        wanted = {sp.metric_name(path) for path, _ in spec.instances("formation", {"channel": 0})}
        assert wanted <= set(birth), wanted - set(birth)
        v = birth["channel/2/voltage"]
        assert v["type"] == "Float" and v["value"] == pytest.approx(3.62)
        props = {k: p["value"] for k, p in v["properties"].items()}
        assert props == {"engUnit": "V", "engLow": 0.0, "engHigh": 5.0, "Quality": 192}
        assert birth["identification.serial_number".replace(".", "/")]["type"] == "String"
        assert birth["state/packml_state"]["type"] == "Int32"

        # Data: aliases only, each resolving to the metric its birth declared, with the source timestamp.
        names = aliases(decoded)
        ddata = [(topic.rsplit("/", 1)[1], p) for topic, p in decoded if "/DDATA/" in topic]
        sent = [(machine, names[(machine, m["alias"])], m["value"], m["timestamp"], m.get("properties"))
                for machine, p in ddata for m in p["metrics"] if "name" not in m]
        assert all("name" not in m for _, p in ddata for m in p["metrics"])
        assert ("winder1", "winding/tension", 12.5, round(t * 1000), {"Quality": {"type": "Int32", "value": 64}}) in sent
        assert ("form1", "channel/1/voltage", pytest.approx(3.7), round(t2 * 1000), None) in sent
        assert [s[1] for s in sent if s[0] == "form1"] == ["status/availability", "channel/1/voltage", "channel/2/voltage",
                                                         "channel/3/voltage", "channel/1/voltage"]
    finally:
        await store.close()


WILL_CHILD = """
import asyncio, sys
from gateway.forward.config import SparkplugForward
from gateway.forward.sparkplug import SparkplugForwarder
from gateway.store.sqlite import SqliteStore
from interface_spec import load_spec
async def main():
    store = SqliteStore(sys.argv[1]); await store.start()
    cfg = SparkplugForward(port=int(sys.argv[2]), group_id="plant", poll_s=0.05)
    await SparkplugForwarder(store, cfg, "L1", {"form1": "formation"}, load_spec()).run()
asyncio.run(main())
"""


async def test_ndeath_is_the_will_after_sigkill_and_a_restart_births_with_the_next_bdseq(tmp_path: Path,
                                                                                          mosquitto: Mosquitto) -> None:
    children = []
    async with listening(mosquitto.port) as backbone:
      try:
        for _ in range(2):
            child = subprocess.Popen([sys.executable, "-c", WILL_CHILD, str(tmp_path / "g.db"), str(mosquitto.port)],
                                     cwd=ROOT)
            children.append(child)
            births = backbone.kinds().count("NBIRTH")
            await wait_for(lambda b=births: backbone.kinds().count("NBIRTH") == b + 1, "an NBIRTH", timeout=60)
            os.kill(child.pid, signal.SIGKILL)  # no DISCONNECT: the broker publishes the will
            child.wait()
            await wait_for(lambda b=births: backbone.kinds().count("NDEATH") == b + 1, "the will's NDEATH", timeout=60)
      finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    decoded = backbone.decoded()
    bdseq = [(topic.split("/")[2], next(m["value"] for m in p["metrics"] if m["name"] == "bdSeq"))
             for topic, p in decoded if topic.split("/")[2] in ("NBIRTH", "NDEATH")]
    assert bdseq == [("NBIRTH", 0), ("NDEATH", 0), ("NBIRTH", 1), ("NDEATH", 1)]  # each death names its own birth


def host_state(online: bool) -> bytes:
    return json.dumps({"online": online, "timestamp": int(time.time() * 1000)}).encode()


async def test_a_primary_host_outage_is_backfilled_as_historical_with_nothing_lost_or_repeated(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    spec = load_spec()
    store = SqliteStore(tmp_path / "g.db")
    await store.start()
    state = "spBv1.0/STATE/scada1"
    try:
        t = time.time()
        await store.write_samples_async(samples(t, n=1))
        await store.flush()
        cfg = SparkplugForward(port=mosquitto.port, group_id="plant", primary_host_id="scada1", poll_s=0.05,
                               historical_after_s=0.5)
        fwd = SparkplugForwarder(store, cfg, "L1", CLASSES, spec)
        async with listening(mosquitto.port) as backbone, forwarding(fwd):
            await asyncio.sleep(1.0)
            assert backbone.raw == []  # nothing before the primary host says it is online
            await publish(mosquitto.port, state, host_state(True), retain=True)
            await wait_for(lambda: fwd.stats()["published"] == 4, "live data", timeout=30)
            await publish(mosquitto.port, state, host_state(False), retain=True)
            await wait_for(lambda: "NDEATH" in backbone.kinds(), "the node's death while the host is away", timeout=30)
            t_out = time.time()
            outage = [Sample("form1", "channel[1].voltage", 3.0 + i / 1000, "V", t_out + i * 0.01, t_out + i * 0.01,
                             Quality.GOOD) for i in range(50)]
            await store.write_samples_async(outage)
            await store.flush()
            await asyncio.sleep(1.0)  # older than historical_after_s when sent
            held = len(backbone.raw)
            assert fwd.stats()["published"] == 4  # the outbox holds them while the host is away
            await publish(mosquitto.port, state, host_state(True), retain=True)
            await wait_for(lambda: fwd.stats()["published"] == 54, "the backlog sent", timeout=30)
            live_t = time.time()
            await store.write_samples_async([Sample("form1", "channel[1].voltage", 4.0, "V", live_t, live_t,
                                                    Quality.GOOD)])
            await wait_for(lambda: fwd.stats()["published"] == 55, "live data again", timeout=30)
            await asyncio.sleep(0.2)
        decoded = backbone.decoded()
        assert backbone.kinds()[held:held + 3] == ["NBIRTH", "DBIRTH/form1", "DBIRTH/winder1"]
        nbirths = [next(m["value"] for m in p["metrics"] if m["name"] == "bdSeq")
                   for topic, p in decoded if "/NBIRTH/" in topic]
        assert nbirths == [nbirths[0], nbirths[0] + 1]  # a new session after the host's return
        names = aliases(decoded[held:])
        after = [(names[("form1", m["alias"])], m["value"], m["timestamp"], m.get("isHistorical", False))
                 for topic, p in decoded[held:] if topic.endswith("/DDATA/L1/form1") for m in p["metrics"]]
        backlog = [a for a in after if a[3]]
        assert [(v, ts) for _, v, ts, _ in backlog] == [(pytest.approx(s.value), round(s.source_ts * 1000))
                                                        for s in outage]  # in order, each once
        assert after[-1][1:] == (4.0, round(live_t * 1000), False)  # then live data, not historical
        assert len(after) == 51
    finally:
        await store.close()


async def test_commands_from_the_backbone_are_refused_and_audited_when_off(tmp_path: Path,
                                                                          mosquitto: Mosquitto) -> None:
    store = SqliteStore(tmp_path / "g.db")
    await store.start()
    try:
        await store.write_samples_async(samples(time.time()))
        await store.flush()
        fwd = SparkplugForwarder(store, SparkplugForward(port=mosquitto.port, group_id="plant", poll_s=0.05),
                                 "L1", CLASSES, load_spec())
        async with forwarding(fwd):
            await wait_for(lambda: fwd.stats()["births"] == 1, "the node born", timeout=30)
            await publish(mosquitto.port, "spBv1.0/plant/DCMD/L1/winder1", command("Command/Stop"))
            await wait_for(lambda: fwd.stats()["commands_refused"] == 1, "the refusal", timeout=30)
        [entry] = [a for a in await store.audit() if a["command"] == "Stop"]
        assert (entry["user"], entry["equipment"], entry["result"]) == ("sparkplug", "winder1", "not_supported")
        assert "forward.sparkplug.commands" in entry["detail"]
    finally:
        await store.close()


async def test_commands_from_the_backbone_run_through_the_interlocks_as_the_configured_identity(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A real winder behind a running line: Stop from the backbone goes through the runtime like a REST command."""
    from gateway.config import LineConfig
    from gateway.forward.config import BackboneCommands
    from gateway.runtime.line import LineRuntime
    from simulators.line import SimConfig, SimLine

    sims = SimLine()
    await sims.start([SimConfig(equipment_id="winder1", cls="winder", protocol="modbus", port=0, seed=8,
                                time_scale=10)])
    store = SqliteStore(tmp_path / "g.db")
    await store.start()
    runtime = LineRuntime(LineConfig.model_validate({"line": "L1", "equipment": [
        {"id": "winder1", "class": "winder", "protocol": "modbus", "endpoint": sims.endpoints()["winder1"]}]}),
        load_spec(), store)
    line = asyncio.create_task(runtime.run())
    try:
        await wait_for(lambda: runtime.get("winder1").available, "winder1 available", timeout=30)
        cfg = SparkplugForward(port=mosquitto.port, group_id="plant", poll_s=0.05,
                               commands=BackboneCommands(user="scada", role="operator"))
        fwd = SparkplugForwarder(store, cfg, "L1", {"winder1": "winder"}, runtime.spec, runtime)
        async with listening(mosquitto.port) as backbone, forwarding(fwd):
            await wait_for(lambda: "DBIRTH/winder1" in backbone.kinds(), "winder1 born", timeout=30)
            await publish(mosquitto.port, "spBv1.0/plant/DCMD/L1/winder1", command("Command/Stop"))
            await publish(mosquitto.port, "spBv1.0/plant/DCMD/L1/winder1", command("Command/Teleport"))
            await wait_for(lambda: fwd.stats()["commands_run"] == 1 and fwd.stats()["commands_refused"] == 1,
                           "one run, one refused", timeout=30)
        birth = next(p for topic, p in backbone.decoded() if topic.endswith("/DBIRTH/L1/winder1"))
        assert {"Command/Start", "Command/Stop", "Command/Reset"} <= {m["name"] for m in birth["metrics"]}
        audit = {a["command"]: a for a in await store.audit()}
        assert (audit["Stop"]["user"], audit["Stop"]["role"]) == ("scada", "operator")  # the runtime's own entry
        assert audit["Teleport"]["result"] == "not_supported" and "not a command" in audit["Teleport"]["detail"]
    finally:
        line.cancel()
        await asyncio.gather(line, return_exceptions=True)
        await store.close()
        await sims.stop()


async def test_a_real_link_drop_is_the_machine_s_ddeath_and_its_return_a_dbirth(tmp_path: Path,
                                                                               mosquitto: Mosquitto) -> None:
    """A simulated winder pulled off the network under a running line: its DDEATH, then a DBIRTH when it is back,
    and no DDATA for it in between."""
    from gateway.config import LineConfig
    from gateway.runtime.line import LineRuntime
    from simulators.line import SimConfig, SimLine

    sims = SimLine()
    await sims.start([SimConfig(equipment_id="winder1", cls="winder", protocol="modbus", port=0, seed=9,
                                time_scale=10)])
    store = SqliteStore(tmp_path / "g.db")
    await store.start()
    runtime = LineRuntime(LineConfig.model_validate({"line": "L1", "equipment": [
        {"id": "winder1", "class": "winder", "protocol": "modbus", "endpoint": sims.endpoints()["winder1"],
         "adapter": {"scan_interval_ms": 200, "timeout_s": 1}}]}), load_spec(), store)
    line = asyncio.create_task(runtime.run())
    try:
        await wait_for(lambda: runtime.get("winder1").available, "winder1 available", timeout=30)
        fwd = SparkplugForwarder(store, SparkplugForward(port=mosquitto.port, group_id="plant", poll_s=0.05),
                                 "L1", {"winder1": "winder"}, runtime.spec, runtime)
        async with listening(mosquitto.port) as backbone, forwarding(fwd):
            await wait_for(lambda: "DDATA/winder1" in backbone.kinds(), "winder1's data", timeout=30)
            faults = sims.simulators["winder1"].faults
            faults.refuse(True)
            faults.drop_connections()
            await wait_for(lambda: "DDEATH/winder1" in backbone.kinds(), "winder1's DDEATH", timeout=30)
            faults.refuse(False)
            await wait_for(lambda: backbone.kinds().count("DBIRTH/winder1") == 2, "winder1 born again", timeout=30)
            await wait_for(lambda: backbone.kinds()[-1] == "DDATA/winder1", "its data again", timeout=30)
        kinds = backbone.kinds()
        death, rebirth = kinds.index("DDEATH/winder1"), len(kinds) - 1 - kinds[::-1].index("DBIRTH/winder1")
        assert death < rebirth and "DDATA/winder1" not in kinds[death:rebirth]
        check_seq(backbone.decoded())
    finally:
        line.cancel()
        await asyncio.gather(line, return_exceptions=True)
        await store.close()
        await sims.stop()


async def test_a_stop_always_ends_the_forwarder_while_it_publishes(tmp_path: Path, mosquitto: Mosquitto) -> None:
    store = SqliteStore(tmp_path / "g.db")
    await store.start()
    try:
        t = time.time()
        await store.write_samples_async(samples(t) + [Sample("form1", "channel[1].voltage", 3.0 + i / 1e5, "V", t + i / 1000,
                                                             t, Quality.GOOD) for i in range(300_000)])
        await store.flush()
        cfg = SparkplugForward(port=mosquitto.port, group_id="plant", poll_s=0.05)
        await stopped_while_publishing(SparkplugForwarder(store, cfg, "L1", CLASSES, load_spec()), progress="messages")
    finally:
        await store.close()
