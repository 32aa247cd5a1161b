"""Clients from other stacks read the conforming simulators: mbpoll (Modbus) and node-opcua (OPC UA).

Both are required: a missing tool fails the test with what to install. node-opcua
is installed with npm into a cache outside the repository (LINEGW_NODE_CACHE,
default ~/.cache/linegw-node) and reused by later runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from interface_spec import modbus_codec as codec
from interface_spec.modbus_map import layout
from simulators.line import SimConfig

from .harness import serving

HERE = Path(__file__).parent
NODE_OPCUA = "node-opcua-client@2.182.2"  # pinned: the version this test runs with
NODE_CACHE = Path(os.environ.get("LINEGW_NODE_CACHE", Path.home() / ".cache" / "linegw-node")) / NODE_OPCUA


def tool(name: str, install: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"'{name}' is not installed; the interoperability test needs it ({install})")
    return path


@pytest.fixture(scope="session")
def node_modules() -> Path:
    tool("node", "apt-get install nodejs")
    npm = tool("npm", "apt-get install npm")
    modules = NODE_CACHE / "node_modules"
    if not (modules / "node-opcua-client").is_dir():
        NODE_CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([npm, "install", "--prefix", str(NODE_CACHE), "--no-audit", "--no-fund",
                               "--save-exact", NODE_OPCUA], capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.fail(f"npm could not install node-opcua-client into {NODE_CACHE}:\n{done.stderr[-2000:]}")
    return modules


async def run(*argv: str, env: dict[str, str] | None = None, timeout: float = 60.0) -> str:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{argv[0]} did not finish within {timeout:g} s") from None
    assert proc.returncode == 0, f"{' '.join(argv)} failed ({proc.returncode}):\n{err.decode()}\n{out.decode()}"
    return out.decode()


async def mbpoll_registers(mbpoll: str, port: int, address: int, count: int) -> list[int]:
    out = await run(mbpoll, "-m", "tcp", "-a", "1", "-0", "-r", str(address), "-c", str(count), "-t", "4:hex",
                    "-1", "-p", str(port), "127.0.0.1")
    found = dict(re.findall(r"^\[(\d+)\]:\s*0x([0-9A-Fa-f]{4})", out, re.MULTILINE))
    assert len(found) == count, out
    return [int(found[str(a)], 16) for a in range(address, address + count)]


async def test_mbpoll_reads_the_marker_and_identification(spec):
    mbpoll = tool("mbpoll", "apt-get install mbpoll")
    lay = layout(spec.core, spec.get_class("formation"))
    config = SimConfig("rack1", "formation", "modbus", counts={"channel": 8}, identification={"manufacturer": "Foreign Check"})
    async with serving(config, spec) as sim:
        port = sim.binding.port
        head = await mbpoll_registers(mbpoll, port, spec.core.modbus.base_address, 4)
        assert codec.decode(head[:2], "string") == spec.core.modbus.marker
        assert head[2:] == [spec.core.modbus.common_block, spec.core.modbus.common_length]
        p = lay.point("identification.manufacturer")
        assert codec.decode(await mbpoll_registers(mbpoll, port, p.address, p.count), "string") == "Foreign Check"
        c = lay.point("configuration.channel_count")
        assert await mbpoll_registers(mbpoll, port, c.address, 1) == [8]


async def test_node_opcua_browses_machines_and_reads_the_manufacturer(spec, node_modules):
    node = tool("node", "apt-get install nodejs")
    config = SimConfig("coater3", "coater", "opcua", machine_name="Coater3", identification={"manufacturer": "Interop AG"},
                       counts={"dryer_zone": 2, "lane": 2})
    async with serving(config, spec) as sim:
        env = {**os.environ, "NODE_PATH": str(node_modules)}
        out = await run(node, str(HERE / "opcua_browse.js"), sim.url, spec.core.opcua.namespace_uri, env=env,
                        timeout=120.0)
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert lines, out
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["machines"] == ["Coater3"]
    assert result["manufacturer"] == {"Coater3": "Interop AG"}
    assert result["namespaceIndex"] >= 1
