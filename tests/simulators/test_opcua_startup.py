"""OPC UA's standard address space is read from a shelf made once, not built at every start."""

from __future__ import annotations

import asyncio
from pathlib import Path

from asyncua import Client, Server, ua

from simulators.servers.opcua_server import OpcUaSimServer, standard_shelf


async def _nothing(server: Server, ns: int) -> None:
    folder = await server.nodes.objects.add_folder(ns, "Machines")
    await folder.add_variable(ns, "Speed", 1.5)


async def _serve_and_read(tmp: Path) -> tuple[list[str], ua.ServerState, float]:
    sim = OpcUaSimServer(host="127.0.0.1", port=0, path="sim", name="startup", app_uri="urn:linegw:test:startup",
                         namespace_uri="urn:linegw:test:startup", populate=_nothing)
    await sim.start()
    try:
        async with Client(sim.url) as client:
            namespaces = await client.get_namespace_array()
            state = await client.get_node(ua.ObjectIds.Server_ServerStatus_State).read_value()
            speed = await (await client.nodes.objects.get_child([f"{sim.ns}:Machines", f"{sim.ns}:Speed"])).read_value()
    finally:
        await sim.stop()
    return namespaces, state, speed


async def test_the_shelf_is_made_once_by_concurrent_starts_and_serves_the_standard_nodes(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    shelves = await asyncio.gather(*(standard_shelf() for _ in range(3)))
    assert len(set(shelves)) == 1 and shelves[0] is not None
    made = sorted(p.name for p in (tmp_path / "linegw").iterdir())
    assert len(made) == 1 and made[0].startswith("opcua-standard-"), made  # no half-made folder left behind
    assert (shelves[0].parent / "aspace.dat").stat().st_size > 1_000_000

    namespaces, state, speed = await _serve_and_read(tmp_path)
    assert namespaces[0] == "http://opcfoundation.org/UA/" and "urn:linegw:test:startup" in namespaces
    assert state == ua.ServerState.Running
    assert speed == 1.5


async def test_without_a_writable_cache_the_server_builds_its_address_space_and_starts(tmp_path, monkeypatch):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    assert await standard_shelf() is None
    namespaces, state, speed = await _serve_and_read(tmp_path)
    assert namespaces[0] == "http://opcfoundation.org/UA/"
    assert state == ua.ServerState.Running and speed == 1.5


