"""Recovery does not wait on backoff: a machine back on the network is read again within seconds.

The reconnect backoff may have grown long during an outage; the adapters poll
the machine's port meanwhile and reconnect once it listens again. (The Modbus
case is in test_modbus_adapter.py, next to the adapter's other link tests.)
"""

from __future__ import annotations

import asyncio

from tests.integration.opcua_test_server import start_server, wait_until
from tests.integration.test_opcua_adapter import by_path, running


async def test_opcua_data_returns_soon_after_the_server_whatever_the_backoff() -> None:
    server = await start_server()
    port = server.port
    # A first wait of 15-30 s: what a long outage leaves the backoff at.
    async with running(server.endpoint, [by_path("Temperature")], backoff_initial_s=30, backoff_max_s=60) as run:
        await wait_until(lambda: run.up and run.has("Temperature", 21.5), "a first value")
        await server.stop()
        await wait_until(lambda: not run.up, "the link reported down")
        await asyncio.sleep(1.0)  # the machine stays away a while (the fault, not a wait for the adapter)
        server = await start_server(port)
        loop = asyncio.get_running_loop()
        back = loop.time()
        try:
            await server.set_value("Temperature", 33.5)
            await wait_until(lambda: run.up and run.has("Temperature", 33.5), "values from the server again", 40)
            took = loop.time() - back
        finally:
            await server.stop()
    # The bound is about not waiting out the backoff (15 s at least), not a benchmark.
    assert took < 5, f"data came back {took:.1f} s after the server"
