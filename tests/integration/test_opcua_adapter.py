"""The OPC UA adapter against a real asyncua server on loopback.

Every test starts the small server from opcua_test_server.py on a free port and
runs the adapter exactly as the runtime does: `run(on_readings, on_link)` in a
task, `read`/`write`/`call` alongside. Waiting is done on conditions with a
deadline; the deadline only bounds a failing test.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua

from gateway.adapters.base import AdapterError, Point, RawReading
from gateway.adapters.opcua import OpcUaAdapter
from gateway.mapping.compile import load_mapping, mapped_plan
from interface_spec import SpecError, load_spec
from tests.integration.opcua_test_server import MACHINE, MANUFACTURER, NS_URI, EquipmentServer, start_server, wait_until

# Short intervals keep the file fast; the adapter's defaults are for real lines.
FAST = {
    "publishing_interval_ms": 50,
    "sampling_ms": 0,
    "keepalive_ms": 200,
    "poll_interval_ms": 100,
    "backoff_initial_s": 0.05,
    "backoff_max_s": 0.3,
    "request_timeout_s": 2,
}
VARIABLES = ["Temperature", "Count", "Running", "Mode", "Setpoint", "Label"]


def by_path(name: str, **options: Any) -> Point:
    return Point(name, {"browse_path": f"{MACHINE}/{name}", "namespace": NS_URI, **options})


def all_points() -> list[Point]:
    """Seven value points, addressed three ways, plus the method."""
    points = [by_path(n) for n in VARIABLES[:5]]
    points.append(Point("Label", {"node": f"nsu={NS_URI};s=M1.Label"}))
    points.append(Point("Manufacturer", {"browse_path": f"{MACHINE}/Identification/Manufacturer", "namespace": NS_URI}))
    points.append(Point("Start", {"object": MACHINE, "method": f"{MACHINE}/Start", "namespace": NS_URI}))
    return points


class Run:
    """The adapter's callbacks, recorded."""

    def __init__(self, adapter: OpcUaAdapter) -> None:
        self.adapter = adapter
        self.readings: list[RawReading] = []
        self.latest: dict[str, RawReading] = {}
        self.links: list[tuple[bool, str]] = []

    def on_readings(self, batch: list[RawReading]) -> None:
        self.readings.extend(batch)
        self.latest.update((r.key, r) for r in batch)

    def on_link(self, up: bool, reason: str) -> None:
        self.links.append((up, reason))

    @property
    def up(self) -> bool:
        return bool(self.links) and self.links[-1][0]

    def has(self, key: str, value: Any) -> bool:
        r = self.latest.get(key)
        return r is not None and not r.error and r.value == value


@contextlib.asynccontextmanager
async def running(endpoint: str, points: list[Point], **settings: Any) -> AsyncIterator[Run]:
    adapter = OpcUaAdapter(endpoint, points, {**FAST, **settings})
    run = Run(adapter)
    task = asyncio.create_task(adapter.run(run.on_readings, run.on_link))
    try:
        yield run
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def server() -> AsyncIterator[EquipmentServer]:
    ts = await start_server()
    try:
        yield ts
    finally:
        await ts.stop()


async def test_subscribed_values_arrive_with_source_timestamps(server: EquipmentServer) -> None:
    async with running(server.endpoint, all_points()) as run:
        keys = set(VARIABLES) | {"Manufacturer"}
        await wait_until(lambda: keys <= run.latest.keys(), "a first value of every point")
        assert run.links[0] == (True, "")
        assert run.latest["Temperature"].value == 21.5
        assert run.latest["Count"].value == 7
        assert run.latest["Running"].value is True
        assert run.latest["Label"].value == "idle"
        assert run.latest["Manufacturer"].value == MANUFACTURER
        assert all(r.error == "" for r in run.latest.values())

        stamp = await server.set_value("Temperature", 42.25)
        await wait_until(lambda: run.has("Temperature", 42.25), "the changed temperature")
        assert run.latest["Temperature"].source_ts == pytest.approx(stamp.timestamp(), abs=1e-6)
        health = run.adapter.health()
        assert health.connected and health.extra["notifications"] >= 1 and health.last_data_ts is not None


async def test_status_codes_arrive_as_errors(server: EquipmentServer) -> None:
    async with running(server.endpoint, [by_path("Count")]) as run:
        await wait_until(lambda: run.has("Count", 7), "the first value")

        await server.set_value("Count", 8, status=ua.StatusCodes.BadSensorFailure)
        await wait_until(lambda: run.latest["Count"].error == "BadSensorFailure", "the bad status")
        assert run.latest["Count"].value is None  # a Bad value is not a value

        await server.set_value("Count", 9, status=ua.StatusCodes.UncertainLastUsableValue)
        await wait_until(lambda: run.latest["Count"].error == "UncertainLastUsableValue", "the uncertain status")
        assert run.latest["Count"].value == 9  # an uncertain value is kept, with its status

        await server.set_value("Count", 10)
        await wait_until(lambda: run.has("Count", 10), "a good value again")
        assert run.adapter.health().read_errors >= 2


@pytest.mark.parametrize("advertised", [True, False], ids=["limits-published", "limits-only-enforced"])
async def test_small_operation_limits_still_give_every_point(advertised: bool) -> None:
    ts = await start_server(limits={"read": 2, "monitored_items": 2, "translate": 2}, advertise_limits=advertised)
    try:
        async with running(ts.endpoint, all_points()) as run:
            keys = set(VARIABLES) | {"Manufacturer"}
            assert len(keys) == 7
            await wait_until(lambda: keys <= run.latest.keys(), "all seven points")
            assert all(not r.error for r in run.readings), [r for r in run.readings if r.error]
            assert await run.adapter.call("Start", [3]) == [103]
            assert [r.value for r in await run.adapter.read(sorted(keys))] == [7, "idle", MANUFACTURER, 1, True, 60.0, 21.5]
            limits = run.adapter.health().extra["operation_limits"]
            if advertised:
                assert limits["read"] == limits["monitored_items"] == limits["translate"] == 2
                assert ts.refused == {}  # chunked from the start, never refused
            else:
                assert ts.refused  # learned by being refused, then within the limit
            assert max(ts.largest.values()) <= 2
    finally:
        await ts.stop()


async def test_unresolved_points_are_reported_once_and_the_rest_flow(server: EquipmentServer) -> None:
    points = [
        by_path("Temperature"),
        by_path("NoSuchVariable"),
        Point("other_ns", {"node": "nsu=urn:not:there;s=M1.Count"}),
        Point("Identification", {"browse_path": f"{MACHINE}/Identification", "namespace": NS_URI}),
    ]
    async with running(server.endpoint, points) as run:
        await wait_until(lambda: "Temperature" in run.latest, "the resolvable point")
        await wait_until(lambda: {"NoSuchVariable", "other_ns", "Identification"} <= run.latest.keys(), "the reports")
        assert run.latest["NoSuchVariable"].error == f"unresolved node {MACHINE}/NoSuchVariable: BadNoMatch"
        assert "namespace 'urn:not:there' is not on the server" in run.latest["other_ns"].error
        assert "is an Object, not a Variable" in run.latest["Identification"].error
        await server.set_value("Temperature", 5.0)
        await wait_until(lambda: run.has("Temperature", 5.0), "a later change")
        assert sum(1 for r in run.readings if r.key == "NoSuchVariable") == 1
        assert (await run.adapter.read(["NoSuchVariable"]))[0].error.startswith("unresolved node")


async def test_restart_with_shifted_namespace_index_reconnects_by_itself(server: EquipmentServer) -> None:
    async with running(server.endpoint, all_points()) as run:
        await wait_until(lambda: run.has("Temperature", 21.5) and run.up, "values from the first server")
        assert server.ns == 2
        await server.stop()
        await wait_until(lambda: not run.up, "the link reported down")

        again = await start_server(server.port, namespaces_before=["urn:vendor:a", "urn:vendor:b"])
        try:
            assert again.ns == 4  # same machine, other index: NodeIds from before would be wrong
            await again.set_value("Temperature", 99.5)
            await wait_until(lambda: run.up and run.has("Temperature", 99.5), "values from the restarted server")
            await again.set_value("Label", "after restart")
            await wait_until(lambda: run.has("Label", "after restart"), "the nsu= point re-resolved")
            ups = [up for up, _ in run.links]
            assert ups[0] is True and ups[-1] is True and False in ups
            assert run.adapter.health().reconnects == 1
            assert await run.adapter.call("Start", [1]) == [101]
        finally:
            await again.stop()


async def test_watchdog_reconnects_when_the_subscription_goes_silent(server: EquipmentServer) -> None:
    async with running(server.endpoint, [by_path("Temperature")], watchdog_s=0.6) as run:
        await wait_until(lambda: run.has("Temperature", 21.5) and run.up, "the first value")
        server.stop_publishing()  # the session still answers reads; only publishing stops
        await wait_until(lambda: not run.up, "the watchdog", timeout=5)
        assert run.links[-1][1].startswith("watchdog: no data or keep-alive")
        await wait_until(lambda: run.up, "the new session")
        await server.set_value("Temperature", 30.5)
        await wait_until(lambda: run.has("Temperature", 30.5), "values on the new subscription")


async def test_write_then_read_back(server: EquipmentServer) -> None:
    points = [by_path("Mode"), by_path("Setpoint"), by_path("Label"), by_path("Temperature")]
    async with running(server.endpoint, points) as run:
        await wait_until(lambda: run.up, "the link")
        await run.adapter.write("Mode", 5)
        await run.adapter.write("Setpoint", 12)  # an int to a Float node
        await run.adapter.write("Label", "run")
        back = {r.key: r.value for r in await run.adapter.read(["Mode", "Setpoint", "Label"])}
        assert back == {"Mode": 5, "Setpoint": 12.0, "Label": "run"}
        # Written with the node's own types, not Python's guesses.
        assert (await server.nodes["Mode"].read_data_value()).Value.VariantType is ua.VariantType.UInt16
        assert (await server.nodes["Setpoint"].read_data_value()).Value.VariantType is ua.VariantType.Float

        with pytest.raises(AdapterError, match="out of range for UInt16"):
            await run.adapter.write("Mode", 70000)
        with pytest.raises(AdapterError, match=r"write Temperature: Bad\w+"):
            await run.adapter.write("Temperature", 1.0)  # not writable on the server
        with pytest.raises(AdapterError, match="no such variable point"):
            await run.adapter.write("Nope", 1)


async def test_call_returns_output_arguments(server: EquipmentServer) -> None:
    async with running(server.endpoint, all_points()) as run:
        await wait_until(lambda: run.up, "the link")
        # The server refuses anything but UInt16; the adapter reads the declared type.
        assert await run.adapter.call("Start", [7]) == [107]
        with pytest.raises(AdapterError, match="call Start: BadInvalidArgument"):
            await run.adapter.call("Start", [0])


async def test_sign_and_encrypt_with_a_persistent_gateway_certificate(tmp_path: Path) -> None:
    ts = await start_server(secure_dir=tmp_path / "server-pki")
    pki = tmp_path / "gateway-pki"
    secure = {"security_mode": "SignAndEncrypt", "security_policy": "Basic256Sha256", "certificate_dir": str(pki)}
    try:
        async with running(ts.endpoint, [by_path("Temperature")], **secure) as run:
            await wait_until(lambda: run.has("Temperature", 21.5), "a value over the encrypted channel")
            first = run.adapter.health().extra["certificate_thumbprint"]
        cert = (pki / "own" / "cert.der").read_bytes()
        assert hashlib.sha1(cert).hexdigest() == first
        assert len(list((pki / "trusted").glob("*.der"))) == 1  # the server, trusted on first use

        async with running(ts.endpoint, [by_path("Temperature")], **secure) as run:
            await wait_until(lambda: run.has("Temperature", 21.5), "a value on the second connect")
            assert run.adapter.health().extra["certificate_thumbprint"] == first
        assert (pki / "own" / "cert.der").read_bytes() == cert
        assert ts.client_thumbprints == [first, first]  # the server saw the same gateway both times

        # Without security the server does not talk at all.
        async with running(ts.endpoint, [by_path("Temperature")]) as run:
            await wait_until(lambda: run.links and not run.links[-1][0], "a refusal")
            assert not run.latest
    finally:
        await ts.stop()

    # Another certificate at the same endpoint is not trusted silently.
    impostor = await start_server(ts.port, secure_dir=tmp_path / "other-server-pki")
    try:
        async with running(impostor.endpoint, [by_path("Temperature")], **secure) as run:
            await wait_until(lambda: run.links and not run.links[-1][0], "the refusal")
            assert "server certificate changed" in run.links[-1][1] and "linegw certs trust" in run.links[-1][1]
            assert len(list((pki / "rejected").glob("*.der"))) == 1  # kept for `linegw certs trust`
            assert not run.latest
    finally:
        await impostor.stop()


async def test_username_login_accepted_and_refused() -> None:
    ts = await start_server(users={"operator": "s3cret"})
    try:
        async with running(ts.endpoint, [by_path("Temperature")], username="operator", password="s3cret") as run:
            await wait_until(lambda: run.has("Temperature", 21.5), "a value after login")
        async with running(ts.endpoint, [by_path("Temperature")], username="operator", password="wrong") as run:
            await wait_until(lambda: bool(run.links), "the login result")
            assert run.links[0][0] is False and "BadUserAccessDenied" in run.links[0][1]
            assert not run.latest
            assert run.adapter.health().connected is False
    finally:
        await ts.stop()


async def test_polled_points_follow_changes(server: EquipmentServer) -> None:
    async with running(server.endpoint, [by_path("Count", mode="poll")]) as run:
        await wait_until(lambda: run.has("Count", 7), "the first poll")
        assert run.adapter.health().extra["subscribed"] == 0
        await server.set_value("Count", 11)
        await wait_until(lambda: run.has("Count", 11), "a later poll")
        assert sum(1 for r in run.readings if r.key == "Count") >= 2


async def test_points_the_server_refuses_to_monitor_are_polled_with_good_values(caplog: pytest.LogCaptureFixture) -> None:
    ts = await start_server(max_monitored_items=2)
    points = [by_path("Temperature"), by_path("Count"), by_path("Running", sampling_ms=150), by_path("Label")]
    try:
        with caplog.at_level(logging.WARNING, logger="linegw.opcua"):
            async with running(ts.endpoint, points) as run:
                await wait_until(lambda: run.has("Label", "idle") and run.has("Running", True), "values of the refused points")
                refused = {r.node for r in ts.monitored if r.status != "Good"}
                assert refused == {"M1.Running", "M1.Label"}  # the server's own word
                health = run.adapter.health()
                why = "monitored item refused: BadTooManyMonitoredItems"
                assert health.extra["poll_fallback"] == {"Running": why, "Label": why}
                assert (health.extra["subscribed"], health.extra["polled"]) == (2, 2)
                assert f"{why}; polling 2 points instead: Running, Label" in caplog.text

                stamps = [await ts.set_value("Label", "coating"), await ts.set_value("Running", False)]
                await wait_until(lambda: run.has("Label", "coating") and run.has("Running", False), "changes, by polling")
                later = await ts.set_value("Label", "drying")
                await wait_until(lambda: run.has("Label", "drying"), "a later change")
                labels = [r for r in run.readings if r.key == "Label"]
                assert all(not r.error for r in labels)
                assert run.latest["Running"].source_ts == pytest.approx(stamps[1].timestamp(), abs=1e-6)
                coating = [r.source_ts for r in labels if r.value == "coating"]
                assert coating and coating == pytest.approx([stamps[0].timestamp()] * len(coating), abs=1e-6)
                # Read again and again, not once: polling, and the unchanged value keeps its stamp.
                await wait_until(lambda: sum(1 for r in run.readings if r.key == "Label" and r.value == "drying") >= 3, "repeated polls")
                drying = [r.source_ts for r in run.readings if r.key == "Label" and r.value == "drying"]
                assert drying == pytest.approx([later.timestamp()] * len(drying), abs=1e-6)
                await ts.set_value("Temperature", 30.0)
                await wait_until(lambda: run.has("Temperature", 30.0), "the subscribed points go on")
                assert [up for up, _ in run.links] == [True]
    finally:
        await ts.stop()


async def test_without_any_subscription_every_point_is_polled_and_the_link_stays_up() -> None:
    ts = await start_server(max_subscriptions=0)
    try:
        async with running(ts.endpoint, [by_path("Temperature"), by_path("Count", sampling_ms=120)]) as run:
            await wait_until(lambda: run.has("Temperature", 21.5) and run.has("Count", 7), "polled first values")
            health = run.adapter.health()
            why = "subscription refused: BadTooManySubscriptions"
            assert health.extra["poll_fallback"] == {"Temperature": why, "Count": why}
            assert health.extra["subscriptions"] == [] and ts.subscriptions() == {} and ts.monitored == []
            stamp = await ts.set_value("Count", 12)
            await wait_until(lambda: run.has("Count", 12), "a change, by polling")
            assert run.latest["Count"].source_ts == pytest.approx(stamp.timestamp(), abs=1e-6)
            # No subscription, so no keep-alives: the watchdog must not take polls for silence.
            await wait_until(lambda: sum(1 for r in run.readings if r.key == "Temperature") >= 10, "ten polls")
            assert run.links == [(True, "")]
    finally:
        await ts.stop()


async def test_when_subscriptions_run_out_the_slower_points_are_polled() -> None:
    ts = await start_server(max_subscriptions=1)
    points = [by_path("Temperature", publishing_ms=40), by_path("Count"), by_path("Running")]
    try:
        async with running(ts.endpoint, points) as run:
            await wait_until(lambda: {"Temperature", "Count", "Running"} <= run.latest.keys(), "every point")
            health = run.adapter.health()
            why = "subscription refused: BadTooManySubscriptions"
            assert health.extra["poll_fallback"] == {"Count": why, "Running": why}
            assert [s["publishing_interval_ms"] for s in health.extra["subscriptions"]] == [40]
            await ts.set_value("Count", 3)
            await wait_until(lambda: run.has("Count", 3), "the polled point follows")
    finally:
        await ts.stop()


async def test_each_publishing_interval_gets_its_own_subscription_and_items_their_sampling(server: EquipmentServer) -> None:
    points = [
        by_path("Temperature", publishing_ms=40, sampling_ms=20),
        by_path("Count", publishing_ms=300, sampling_ms=100),
        by_path("Running", publishing_ms=300, sampling_ms=250),
        by_path("Label"),  # the adapter's publishing interval and sampling interval
    ]
    async with running(server.endpoint, points) as run:
        await wait_until(lambda: run.up and {"Temperature", "Count", "Running", "Label"} <= run.latest.keys(), "every point")
        subs = server.subscriptions()
        assert sorted(subs.values()) == [40, FAST["publishing_interval_ms"], 300]
        by_node = {r.node: r for r in server.monitored}
        assert {n: r.sampling_ms for n, r in by_node.items()} == {"M1.Temperature": 20, "M1.Count": 100, "M1.Running": 250, "M1.Label": 0}
        assert subs[by_node["M1.Count"].subscription_id] == subs[by_node["M1.Running"].subscription_id] == 300
        assert subs[by_node["M1.Temperature"].subscription_id] == 40
        items = run.adapter.monitored_items()
        assert {k: (i.publishing_interval_ms, i.revised_sampling_ms) for k, i in items.items()} == {
            "Temperature": (40, 20), "Count": (300, 100), "Running": (300, 250), "Label": (FAST["publishing_interval_ms"], 0)
        }
        assert {k: i.subscription_id for k, i in items.items()} == {k: by_node[f"M1.{k}"].subscription_id for k in items}
        health = run.adapter.health()
        assert sorted((s["publishing_interval_ms"], s["monitored_items"]) for s in health.extra["subscriptions"]) == [
            (40, 1), (FAST["publishing_interval_ms"], 1), (300, 2)
        ]
        await server.set_value("Temperature", 1.25)
        await server.set_value("Count", 99)
        await wait_until(lambda: run.has("Temperature", 1.25) and run.has("Count", 99), "changes through both subscriptions")


async def test_publishing_follows_sampling_when_asked(server: EquipmentServer) -> None:
    points = [by_path("Temperature", sampling_ms=400), by_path("Count", sampling_ms=10), by_path("Running")]
    async with running(server.endpoint, points, publishing_from_sampling=True) as run:
        await wait_until(lambda: run.up and len(server.subscriptions()) == 2, "the subscriptions")
        # The slower of sampling and publishing interval; a faster sampling keeps the adapter's interval.
        assert sorted(server.subscriptions().values()) == [FAST["publishing_interval_ms"], 400]
        assert run.adapter.monitored_items()["Count"].publishing_interval_ms == FAST["publishing_interval_ms"]


async def test_a_whole_machine_polled_by_setting_with_one_point_subscribed(server: EquipmentServer) -> None:
    points = [by_path("Temperature"), by_path("Count", mode="subscribe")]
    async with running(server.endpoint, points, mode="poll") as run:
        await wait_until(lambda: run.has("Temperature", 21.5) and run.has("Count", 7), "first values")
        assert [r.node for r in server.monitored] == ["M1.Count"]
        health = run.adapter.health()
        assert (health.extra["subscribed"], health.extra["polled"], health.extra["poll_fallback"]) == (1, 1, {})
        await server.set_value("Temperature", 8.5)
        await wait_until(lambda: run.has("Temperature", 8.5), "a change, by polling")


MAPPING = f"""\
mapping: test-m1
class: winder
protocol: opcua
opcua: {{namespace_uri: "{NS_URI}", root: {MACHINE}, publishing_ms: 80}}
variables:
  - {{path: winding.speed, source: {{node: Temperature}}}}
  - {{path: counters.processed_count, source: {{node: Count, mode: poll, sampling_ms: 100}}}}
  - {{path: winding.mandrel_speed, source: {{node: Setpoint, publishing_ms: 200, sampling_ms: 50}}}}
"""


async def test_a_mapping_file_chooses_polling_and_publishing_per_variable(server: EquipmentServer, tmp_path: Path) -> None:
    spec = load_spec()
    (tmp_path / "m1.yaml").write_text(MAPPING)
    plan = mapped_plan(spec, "m1", load_mapping(tmp_path / "m1.yaml", spec), {})
    key = {t.path: k for k, ts in plan.targets.items() for t in ts}
    async with running(server.endpoint, plan.points) as run:
        count = key["counters.processed_count"]
        await wait_until(lambda: run.up and sum(1 for r in run.readings if r.key == count) >= 3, "the polled count, read again and again")
        assert run.adapter.health().extra["polled"] == 1
        subs = server.subscriptions()
        by_node = {r.node: r for r in server.monitored}
        assert sorted(by_node) == ["M1.Setpoint", "M1.Temperature"]  # the count is not monitored
        # The machine model's publishing interval, with the spec's sampling interval of winding.speed.
        assert (subs[by_node["M1.Temperature"].subscription_id], by_node["M1.Temperature"].sampling_ms) == (80, 500)
        assert (subs[by_node["M1.Setpoint"].subscription_id], by_node["M1.Setpoint"].sampling_ms) == (200, 50)
        await server.set_value("Count", 41)
        await wait_until(lambda: run.has(count, 41), "a change of the polled count")

    (tmp_path / "bad.yaml").write_text(MAPPING.replace("mode: poll", "mode: push"))
    with pytest.raises(SpecError, match=r"bad.yaml:7: variables\[1\]\.source\.mode: Input should be 'subscribe' or 'poll'"):
        load_mapping(tmp_path / "bad.yaml", spec)
    (tmp_path / "modbus.yaml").write_text(
        "mapping: x\nclass: winder\nprotocol: modbus\nvariables:\n"
        "  - {path: winding.speed, source: {address: 1, dtype: int16, mode: poll}}\n"
    )
    with pytest.raises(SpecError, match=r"modbus.yaml:5: variables\[0\]\.source: .*mode: only for OPC UA sources"):
        load_mapping(tmp_path / "modbus.yaml", spec)


def test_bad_point_options_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="exactly one of 'node'"):
        OpcUaAdapter("opc.tcp://127.0.0.1:4840", [Point("x", {})], {})
    with pytest.raises(ValueError, match="mode must be"):
        OpcUaAdapter("opc.tcp://127.0.0.1:4840", [by_path("x", mode="push")], {})
    with pytest.raises(ValueError, match="must start with '/'"):
        OpcUaAdapter("opc.tcp://127.0.0.1:4840", [Point("x", {"browse_path": "Objects/M1"})], {})
    with pytest.raises(ValueError, match="security_mode"):
        OpcUaAdapter("opc.tcp://127.0.0.1:4840", [], {"security_mode": "Encrypt"})
    with pytest.raises(ValueError, match="publishing_ms must be a number > 0"):
        OpcUaAdapter("opc.tcp://127.0.0.1:4840", [by_path("x", publishing_ms=0)], {})
    with pytest.raises(ValueError, match="setting mode: 'push'"):
        OpcUaAdapter("opc.tcp://127.0.0.1:4840", [], {"mode": "push"})


async def test_a_server_that_never_answers_is_reported_with_the_timeout_setting_to_raise() -> None:
    """A server too busy to set a session up in time (the TCP connection accepted, no answer): the reason names
    the setting an integrator raises, not just "timed out"."""
    held: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accepted, never answered

    srv = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        async with running(f"opc.tcp://127.0.0.1:{port}", [by_path("Count")], request_timeout_s=0.25) as run:
            await wait_until(lambda: any(not up for up, _ in run.links), "the link reported down", timeout=10)
            reason = next(why for up, why in run.links if not up)
            assert reason.startswith("connect: no answer in time"), reason
            assert "request_timeout_s: 0.25 s per request, 1 s to connect" in reason, reason
            assert held, "the adapter never reached the server"
    finally:
        for w in held:
            w.close()
        srv.close()
        await srv.wait_closed()
