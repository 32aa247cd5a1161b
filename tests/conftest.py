"""Fixtures shared by the test suites: free ports and real servers on loopback."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from simulators.servers.modbus_server import ModbusSimServer


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.fixture
def free_port() -> int:
    return find_free_port()


@pytest.fixture
async def modbus_sim() -> AsyncIterator[ModbusSimServer]:
    """A started Modbus TCP simulator server (device id 1) on a free loopback port."""
    server = ModbusSimServer(host="127.0.0.1", port=0)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
