"""The one endpoint parser: every form a line file may use, read the same by the config check and
the adapters; a Modbus device on IPv6 loopback read through an IPv6 URL and a bracketed address."""

from __future__ import annotations

import asyncio
import socket

import pytest

from gateway.adapters.base import Point, RawReading
from gateway.adapters.modbus import ModbusAdapter
from gateway.adapters.modbus.adapter import parse_endpoint as modbus_endpoint
from gateway.adapters.opcua.adapter import OpcUaAdapter
from gateway.config import load_line
from gateway.endpoint import Endpoint, EndpointError, host_problem, parse_endpoint
from interface_spec import SpecError
from simulators.servers.modbus_server import ModbusSimServer
from tests.waiting import wait_for


@pytest.mark.parametrize("text, expected", [
    ("[::1]:502", Endpoint("", "::1", 502)),
    ("[::1]", Endpoint("", "::1", None)),
    ("fe80::1", Endpoint("", "fe80::1", None)),
    ("::1:502", Endpoint("", "::1:502", None)),  # an IPv6 address: a bare one never carries a port
    ("host", Endpoint("", "host", None)),
    ("host:5020", Endpoint("", "host", 5020)),
    (" plc-7.line2.example:502 ", Endpoint("", "plc-7.line2.example", 502)),
    ("10.0.0.31:502", Endpoint("", "10.0.0.31", 502)),
    ("modbus://10.0.0.31", Endpoint("modbus", "10.0.0.31", None)),
    ("modbus+tcp://[::1]:5020", Endpoint("modbus+tcp", "::1", 5020)),
    ("MODBUS+TCP://[2001:db8::7]", Endpoint("modbus+tcp", "2001:db8::7", None)),
    ("opc.tcp://127.0.0.1:4841/linegw/coater1", Endpoint("opc.tcp", "127.0.0.1", 4841, "/linegw/coater1")),
    ("opc.tcp://[fe80::1%25eth0]:4840/x", Endpoint("opc.tcp", "fe80::1%eth0", 4840, "/x")),
])
def test_every_form_of_an_endpoint(text, expected):
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize("text, message", [
    ("127.0.0.1:70000", "port must be 0-65535, got 70000"),
    ("modbus://plc:50x", "port '50x' is not a number"),
    ("[::1", "'[::1': unbalanced brackets around an IPv6 address"),
    ("fe80:::1", "'fe80:::1' is not an IPv6 address; write an IPv6 address with a port as [address]:port"),
    ("modbus://:502", "'modbus://:502' has no host"),
    ("127.0.0.256:502", "'127.0.0.256' is not a valid IPv4 address"),
    ("-plc:502", "'-plc' is neither an IP address nor a host name"),
    ("opc.tcp://line:secret@plc:4840", "credentials do not belong in an endpoint; use the security section"),
])
def test_a_bad_endpoint_says_what_is_wrong(text, message):
    with pytest.raises(EndpointError) as exc:
        parse_endpoint(text)
    assert message in str(exc.value)


def test_a_scheme_the_protocol_does_not_speak_is_refused():
    with pytest.raises(EndpointError, match=r"scheme 'opc.tcp' is not accepted here \(use modbus://, modbus\+tcp://, tcp:// or none\)"):
        parse_endpoint("opc.tcp://plc:4840", ("", "modbus", "modbus+tcp", "tcp"))


def test_hosts():
    assert host_problem("127.0.0.1") is None and host_problem("::1") is None
    assert host_problem("gateway.line2.example.") is None
    assert host_problem("127.0.0.l") is None  # a name as far as syntax goes: whether it resolves is another check
    assert host_problem("localhost:8080") == "'localhost:8080' is neither an IP address nor a host name"
    assert host_problem("") == "no host"


@pytest.mark.parametrize("text, host, port", [
    ("[::1]:502", "::1", 502), ("[::1]", "::1", 502), ("fe80::1", "fe80::1", 502), ("host", "host", 502),
    ("host:5020", "host", 5020), ("modbus+tcp://[::1]:5020", "::1", 5020), ("tcp://10.0.0.31:503", "10.0.0.31", 503),
])
def test_the_modbus_adapter_and_the_config_read_an_endpoint_alike(tmp_path, text, host, port):
    assert modbus_endpoint(text) == (host, port)
    path = tmp_path / "line.yaml"
    path.write_text(f"line: t\nequipment:\n  - {{id: w1, class: winder, protocol: modbus, endpoint: '{text}'}}\n")
    assert load_line(path).equipment[0].endpoint == text


@pytest.mark.parametrize("text", ["[::1]:4840", "opc.tcp://[::1]"])
def test_the_opcua_adapter_reads_ipv6_endpoints(text):
    if "://" not in text:
        with pytest.raises(ValueError, match="scheme '' is not accepted here"):
            OpcUaAdapter(text, [])
        return
    adapter = OpcUaAdapter(text, [])
    assert (adapter._host, adapter._port) == ("::1", 4840)


def test_the_config_refuses_what_the_adapter_would_refuse(tmp_path):
    path = tmp_path / "line.yaml"
    path.write_text("line: t\nequipment:\n  - id: c1\n    class: coater\n    protocol: opcua\n"
                    "    endpoint: modbus://127.0.0.1:502\n")
    with pytest.raises(SpecError) as exc:
        load_line(path)
    assert str(exc.value) == (f"{path}:6: equipment[0].endpoint: 'modbus://127.0.0.1:502': scheme 'modbus' "
                              "is not accepted here (use opc.tcp://)")


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
@pytest.mark.parametrize("form", ["modbus+tcp://[::1]:{port}", "[::1]:{port}"])
async def test_a_modbus_device_on_ipv6_loopback_is_read(form):
    server = ModbusSimServer(host="::1", port=0)
    await server.start()
    try:
        server.set_registers(7, [4242])
        adapter = ModbusAdapter(form.format(port=server.port), [Point("x", {"address": 7, "dtype": "uint16"})],
                                {"scan_interval_ms": 50, "timeout_s": 1})
        got: list[RawReading] = []
        task = asyncio.create_task(adapter.run(got.extend, lambda up, reason: None))
        try:
            reading = await wait_for(lambda: next((r for r in got if r.value is not None), None), "a reading over IPv6",
                                     timeout=15)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert (reading.key, reading.value, reading.error) == ("x", 4242, "")
        assert adapter.health().extra["endpoint"] == f"[::1]:{server.port}"
    finally:
        await server.stop()
