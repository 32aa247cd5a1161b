"""The conforming OPC UA binding, browsed, read, subscribed and commanded by a plain asyncua client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from asyncua import Client, ua
from asyncua.common.node import Node
from asyncua.crypto import cert_gen, uacrypto
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from interface_spec import split_path
from interface_spec.model import SelfDescription
from interface_spec.opcua_map import opcua_type, relative_path, unece_unit_id
from simulators.line import SimConfig
from simulators.simulator import Simulator

from .harness import run_until, serving

pytestmark = pytest.mark.asyncio(loop_scope="module")
NAME = "Coater7"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def coater(spec) -> AsyncIterator[Simulator]:
    config = SimConfig("coater7", "coater", "opcua", seed=7, counts={"dryer_zone": 3, "lane": 2}, machine_name=NAME,
                       auto_start=False)
    async with serving(config, spec) as sim:
        yield sim


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(coater) -> AsyncIterator[Client]:
    c = Client(coater.url)
    await c.connect()
    try:
        yield c
    finally:
        await c.disconnect()


async def machine_node(client: Client, spec, *names: str) -> Node:
    ns = await client.get_namespace_index(spec.core.opcua.namespace_uri)
    path = [spec.core.opcua.machines_folder, NAME, *names]
    return await client.nodes.objects.get_child([f"{ns}:{n}" for n in path])


async def call(client: Client, spec, folder: str, method: str, *args):
    """A method's single output (asyncua unwraps one output argument)."""
    parent = await machine_node(client, spec, folder)
    ns = await client.get_namespace_index(spec.core.opcua.namespace_uri)
    return await parent.call_method(f"{ns}:{method}", *args)


async def to_state(sim: Simulator, target: str) -> None:
    """Drive the hand-stepped machine to Idle or Execute from wherever a previous test left it."""
    m = sim.machine
    m.set_control_authority("Remote")
    if m.state() not in ("Stopped", "Idle", "Execute"):
        m.execute("Stop", source="local")
        m.execute("Clear", source="local")
        await run_until(sim, lambda: m.state() == "Stopped", "Stopped")
    if m.state() == "Stopped":
        m.execute("Reset", source="local")
        await run_until(sim, lambda: m.state() == "Idle", "Idle")
    if target == "Execute" and m.state() == "Idle":
        m.execute("Start", source="local")
        await run_until(sim, lambda: m.state() == "Execute", "Execute")
    if target == "Idle" and m.state() == "Execute":
        m.execute("Stop", source="local")
        await run_until(sim, lambda: m.state() == "Stopped", "Stopped")
        m.execute("Reset", source="local")
        await run_until(sim, lambda: m.state() == "Idle", "Idle")


async def test_machines_folder_and_identification(client, coater, spec):
    ns = await client.get_namespace_index(spec.core.opcua.namespace_uri)
    machines = await client.nodes.objects.get_child(f"{ns}:{spec.core.opcua.machines_folder}")
    names = [(await n.read_browse_name()) for n in await machines.get_children()]
    assert [(q.NamespaceIndex, q.Name) for q in names] == [(ns, NAME)]
    maker = await machine_node(client, spec, "Identification", "Manufacturer")
    assert await maker.read_value() == coater.machine.get("identification.manufacturer")
    cls = await machine_node(client, spec, "Identification", "EquipmentClass")
    assert await cls.read_value() == "coater"


async def test_every_spec_variable_is_served_with_its_type(client, coater, spec):
    m = coater.machine
    nodes, paths = [], []
    for path, var in m.variables.items():
        d = spec.variable("coater", path)
        _, index = split_path(path)
        nodes.append(await machine_node(client, spec, *relative_path(d.sub_unit, var.id, index)))
        paths.append(path)
    values = await client.read_values(nodes)
    for path, _node, value in zip(paths, nodes, values):
        assert value == pytest.approx(m.values[path]) if isinstance(value, float) else value == m.values[path], path
    speed = nodes[paths.index("web.line_speed")]
    assert (await speed.read_data_type_as_variant_type()).name == opcua_type(m.variables["web.line_speed"])
    assert "availability" not in " ".join(paths)  # the gateway's, not the machine's


async def test_numeric_variables_carry_engineering_units_and_range(client, spec):
    node = await machine_node(client, spec, "Web", "LineSpeed")
    eu = await (await node.get_child("0:EngineeringUnits")).read_value()
    unit = spec.units[spec.variable("coater", "web.line_speed").var.unit]
    assert eu.UnitId == unece_unit_id(unit.unece) and eu.DisplayName.Text == unit.symbol
    assert eu.NamespaceUri == "http://www.opcfoundation.org/UA/units/un/cefact"
    rng = await (await node.get_child("0:EURange")).read_value()
    assert (rng.Low, rng.High) == tuple(spec.variable("coater", "web.line_speed").var.range)


async def test_commands_are_methods_returning_result_codes(client, coater, spec):
    codes = spec.result_codes
    m = coater.machine
    await to_state(coater, "Idle")
    assert await call(client, spec, "Commands", "Start", "LOT-9") == codes["accepted_completes_later"]
    await run_until(coater, lambda: m.state() == "Execute", "Execute")
    state = await machine_node(client, spec, "State", "PackmlState")
    assert await state.read_value() == spec.enum("packml_state")["Execute"]
    assert await (await machine_node(client, spec, "Job", "JobId")).read_value() == "LOT-9"
    assert await call(client, spec, "Commands", "Start") == codes["already_in_state"]
    assert await call(client, spec, "Commands", "SetOperationMode", ua.Variant(77, ua.VariantType.Int32)) == \
        codes["parameter_invalid"]
    assert await call(client, spec, "Commands", "SelectRecipe", "NOPE") == codes["no_such_object"]
    assert await call(client, spec, "Commands", "Stop") == codes["accepted_completes_later"]
    await run_until(coater, lambda: m.state() == "Stopped", "Stopped")
    assert await state.read_value() == spec.enum("packml_state")["Stopped"]
    m.set_control_authority("Local")
    await coater.publish()
    assert await call(client, spec, "Commands", "Reset") == codes["cannot_perform_now"]
    m.set_control_authority("Remote")


async def test_events_read_in_order(client, coater, spec):
    await to_state(coater, "Execute")
    last = await (await machine_node(client, spec, "Events", "LastSequence")).read_value()
    assert last == coater.machine.last_seq
    texts = await call(client, spec, "Events", "Read", ua.Variant(1, ua.VariantType.UInt32),
                          ua.Variant(1000, ua.VariantType.UInt32))
    envelopes = [json.loads(t) for t in texts]
    assert [e["seq"] for e in envelopes] == list(range(1, last + 1))
    assert envelopes == list(coater.machine.events)
    tail = await call(client, spec, "Events", "Read", ua.Variant(last - 1, ua.VariantType.UInt32),
                         ua.Variant(5, ua.VariantType.UInt32))
    assert [json.loads(t)["seq"] for t in tail] == [last - 1, last]
    none = await call(client, spec, "Events", "Read", ua.Variant(last + 1, ua.VariantType.UInt32),
                         ua.Variant(5, ua.VariantType.UInt32))
    assert not none


async def test_active_alarm_codes(client, coater, spec):
    node = await machine_node(client, spec, "Alarms", "ActiveCodes")
    alarm = next(a for a in spec.alarms("coater") if not a.stop_reason)
    coater.machine.raise_alarm(alarm.code)
    await coater.publish()
    assert await node.read_value() == [alarm.code]
    assert await call(client, spec, "Commands", "AcknowledgeAlarm", ua.Variant(alarm.code, ua.VariantType.Int32)) == \
        spec.result_codes["ok"]
    coater.machine.clear_alarm(alarm.code)
    await coater.publish()
    assert await node.read_value() == []


async def test_self_description_and_recipes(client, coater, spec):
    text = await (await machine_node(client, spec, "SelfDescription")).read_value()
    assert SelfDescription.model_validate(json.loads(text)).counts == {"dryer_zone": 3, "lane": 2}
    params = {"line_speed": 20.0, "pump_flow": 2000.0, "dryer_temperature": 100.0, "areal_weight_target": 15.0,
              "roll_length": 400.0}
    doc = json.dumps({"id": "SLOW", "parameters": params})
    assert await call(client, spec, "Recipes", "Put", doc) == spec.result_codes["ok"]
    bad = json.dumps({"id": "BAD", "parameters": {**params, "line_speed": -5.0}})
    assert await call(client, spec, "Recipes", "Put", bad) == spec.result_codes["parameter_invalid"]
    assert await call(client, spec, "Recipes", "Put", "not json") == spec.result_codes["parameter_invalid"]
    listing = await call(client, spec, "Recipes", "List")
    assert "SLOW" in {r["id"] for r in json.loads(listing)}
    got = await call(client, spec, "Recipes", "Get", "SLOW")
    recipe = json.loads(got)
    assert recipe["parameters"] == params and recipe["hash"] == coater.machine.recipes["SLOW"].hash
    assert await call(client, spec, "Recipes", "Get", "NOPE") == ""
    await to_state(coater, "Idle")
    assert await call(client, spec, "Commands", "SelectRecipe", "SLOW") == spec.result_codes["ok"]
    await coater.publish()
    assert await (await machine_node(client, spec, "Recipe", "ActiveRecipeId")).read_value() == "SLOW"
    assert await (await machine_node(client, spec, "Web", "LineSpeedSetpoint")).read_value() == 20.0


async def test_set_points_are_writable_within_their_range(client, coater, spec):
    node = await machine_node(client, spec, "Web", "LineSpeedSetpoint")
    await node.write_value(ua.DataValue(ua.Variant(33.0, ua.VariantType.Double)))
    assert coater.machine.get("web.line_speed_setpoint") == 33.0
    with pytest.raises(ua.UaStatusCodeError):
        await node.write_value(ua.DataValue(ua.Variant(999.0, ua.VariantType.Double)))
    assert coater.machine.get("web.line_speed_setpoint") == 33.0
    with pytest.raises(ua.UaStatusCodeError):
        await (await machine_node(client, spec, "Web", "LineSpeed")).write_value(
            ua.DataValue(ua.Variant(1.0, ua.VariantType.Double)))


class Changes:
    def __init__(self) -> None:
        self.values: asyncio.Queue = asyncio.Queue()

    def datachange_notification(self, node, val, data) -> None:
        self.values.put_nowait(val)


async def test_subscriptions_see_published_changes(client, coater, spec):
    handler = Changes()
    sub = await client.create_subscription(50, handler)
    try:
        await sub.subscribe_data_change(await machine_node(client, spec, "Status", "Heartbeat"))
        first = await asyncio.wait_for(handler.values.get(), 10)
        await coater.advance(2.0, 2.0)
        second = await asyncio.wait_for(handler.values.get(), 10)
        assert second == first + 2
    finally:
        await sub.delete()


def client_certificate(tmp_path) -> tuple[str, str]:
    key = cert_gen.generate_private_key()
    uri = "urn:linegw:test:client"
    cert = cert_gen.generate_self_signed_app_certificate(
        key, "linegw test client", {}, [x509.UniformResourceIdentifier(uri)], [ExtendedKeyUsageOID.CLIENT_AUTH])
    cert_path, key_path = tmp_path / "client.der", tmp_path / "client.pem"
    cert_path.write_bytes(uacrypto.der_from_x509(cert))
    key_path.write_bytes(cert_gen.dump_private_key_as_pem(key))
    return str(cert_path), str(key_path)


async def test_basic256sha256_with_username_and_password(spec, tmp_path):
    security = {"modes": ["Sign", "SignAndEncrypt"], "username": "operator", "password": "s3cret-pass"}
    config = SimConfig("secure1", "winder", "opcua", machine_name="Secure1", security=security, auto_start=False)
    cert, key = client_certificate(tmp_path)
    async with serving(config, spec) as sim:
        probe = Client(sim.url)
        endpoints = await probe.connect_and_get_server_endpoints()
        assert {e.SecurityMode for e in endpoints} == {ua.MessageSecurityMode.Sign, ua.MessageSecurityMode.SignAndEncrypt}
        assert all(e.SecurityPolicyUri.endswith("#Basic256Sha256") for e in endpoints)

        good = Client(sim.url)
        good.application_uri = "urn:linegw:test:client"
        await good.set_security_string(f"Basic256Sha256,SignAndEncrypt,{cert},{key}")
        good.set_user("operator")
        good.set_password("s3cret-pass")
        async with good:
            ns = await good.get_namespace_index(spec.core.opcua.namespace_uri)
            node = await good.nodes.objects.get_child([f"{ns}:Machines", f"{ns}:Secure1", f"{ns}:Identification",
                                                       f"{ns}:EquipmentClass"])
            assert await node.read_value() == "winder"

        wrong = Client(sim.url)
        wrong.application_uri = "urn:linegw:test:client"
        await wrong.set_security_string(f"Basic256Sha256,SignAndEncrypt,{cert},{key}")
        wrong.set_user("operator")
        wrong.set_password("guess")
        with pytest.raises(ua.UaError):
            await wrong.connect()
        await wrong.disconnect()

        anonymous = Client(sim.url)
        with pytest.raises((ua.UaError, ConnectionError, TimeoutError)):
            await anonymous.connect()
        await anonymous.disconnect()
