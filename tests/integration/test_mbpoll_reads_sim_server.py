"""A foreign Modbus master (Debian's mbpoll) reads the simulator server.

This checks the server against a client that is not pymodbus: 1-based
references, register layout on the wire, exception responses.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import pytest

from interface_spec.modbus_codec import encode
from simulators.servers.modbus_server import ModbusSimServer

MBPOLL = "/usr/bin/mbpoll"
_LINE = re.compile(r"^\[(\d+)\]:\s+(0x[0-9A-Fa-f]+|-?\d+)\s*$")


@pytest.fixture(scope="module")
def mbpoll() -> str:
    path = MBPOLL if Path(MBPOLL).exists() else shutil.which("mbpoll")
    if not path:
        pytest.fail("mbpoll not installed: run make system-deps")
    return path


async def poll(mbpoll: str, port: int, ref: int, count: int, kind: str = "4:hex",
               device: int = 1) -> tuple[int, dict[int, int], str]:
    """Run mbpoll once; (exit code, {reference: value}, all output)."""
    proc = await asyncio.create_subprocess_exec(
        mbpoll, "-m", "tcp", "-a", str(device), "-r", str(ref), "-c", str(count), "-t", kind, "-1",
        "-o", "2", "-p", str(port), "127.0.0.1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    values = {}
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if m:
            values[int(m.group(1))] = int(m.group(2), 0)
    return proc.returncode or 0, values, text


async def test_mbpoll_reads_holding_registers(mbpoll: str, modbus_sim: ModbusSimServer) -> None:
    modbus_sim.set_registers(99, [0x0001, 0xBEEF] + encode(1.0, "float32"))
    code, values, text = await poll(mbpoll, modbus_sim.port, ref=100, count=4)
    assert code == 0, text
    # mbpoll's reference 100 is the 0-based address 99
    assert values == {100: 0x0001, 101: 0xBEEF, 102: 0x3F80, 103: 0x0000}, text


async def test_mbpoll_reads_input_registers_and_coils(mbpoll: str, modbus_sim: ModbusSimServer) -> None:
    modbus_sim.set_registers(0, [7, 65535], table="input")
    code, values, text = await poll(mbpoll, modbus_sim.port, ref=1, count=2, kind="3:hex")
    assert code == 0, text
    assert values == {1: 7, 2: 0xFFFF}, text
    modbus_sim.set_coils(10, [True, False, True])
    code, values, text = await poll(mbpoll, modbus_sim.port, ref=11, count=3, kind="0")
    assert code == 0, text
    assert values == {11: 1, 12: 0, 13: 1}, text


async def test_mbpoll_sees_injected_exceptions(mbpoll: str, modbus_sim: ModbusSimServer) -> None:
    modbus_sim.faults.exception_addresses[range(500, 510)] = 2
    code, values, text = await poll(mbpoll, modbus_sim.port, ref=505, count=2)
    assert values == {}, text
    assert "Illegal data address" in text, text
    modbus_sim.faults.exception_addresses.clear()
    code, values, text = await poll(mbpoll, modbus_sim.port, ref=505, count=2)
    assert code == 0 and values == {505: 0, 506: 0}, text
