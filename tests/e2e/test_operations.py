"""Operating `linegw`: its version, the API address and the store path taken over the line file from
options or LINEGW_* variables, and a port already taken said in one line that names where it came from."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path

import httpx

from gateway import __version__
from interface_spec import load_spec
from tests.conftest import find_free_port
from tests.e2e.linegw_process import ROOT, line_starting, stop

LINE = """\
line: ops
api: {{host: 127.0.0.1, port: {port}}}
store: {{path: {db}}}
equipment:
  - {{id: w1, class: winder, protocol: modbus, endpoint: "127.0.0.1:{machine}"}}
"""


async def linegw(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway.cli", *args, cwd=ROOT,
                                                env={**os.environ, **(env or {})},
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def finished(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


def line_file(tmp_path: Path, port: int, db: Path) -> Path:
    path = tmp_path / "line.yaml"
    path.write_text(LINE.format(port=port, db=db, machine=find_free_port()))  # nothing listens there: no matter
    return path


def taken_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


async def test_version_names_the_gateway_and_the_spec():
    code, out, err = await finished(await linegw("--version"))
    assert (code, out.strip(), err) == (0, f"linegw {__version__} (line interface spec {load_spec().version})", "")


async def test_a_taken_port_from_the_line_file_is_one_line_naming_file_line_and_the_option(tmp_path):
    with taken_port() as busy:
        port = busy.getsockname()[1]
        path = line_file(tmp_path, port, tmp_path / "line.sqlite")
        code, _, err = await finished(await linegw("run", str(path)))
    assert code == 1
    assert err.strip().splitlines() == [
        f"error: {path}:2: api.port: cannot listen on 127.0.0.1 port {port}: Address already in use; is another "
        "gateway running? Choose another port with --port (or LINEGW_PORT)"]


async def test_a_taken_port_from_an_option_or_the_environment_names_that(tmp_path):
    path = line_file(tmp_path, 0, tmp_path / "line.sqlite")
    with taken_port() as busy:
        port = busy.getsockname()[1]
        for args, env in ((["--port", str(port)], None), ([], {"LINEGW_PORT": str(port)})):
            code, _, err = await finished(await linegw("run", str(path), *args, env=env))
            assert code == 1, err
            assert err.strip().splitlines() == [
                f"error: --port / LINEGW_PORT: cannot listen on 127.0.0.1 port {port}: Address already in use; is "
                "another gateway running? Choose another port with --port (or LINEGW_PORT)"], (args, env)
    assert not (tmp_path / "line.sqlite").exists()  # refused before anything started


async def test_overrides_move_the_api_and_the_store(tmp_path):
    with taken_port() as busy:  # the file's own port is taken: only the override lets the gateway start
        path = line_file(tmp_path, busy.getsockname()[1], tmp_path / "from-file.sqlite")
        elsewhere = tmp_path / "elsewhere" / "store.sqlite"
        gateway = await linegw("run", str(path), "--store", str(elsewhere), env={"LINEGW_PORT": "0"})
        try:
            api = (await line_starting(gateway, "linegw: line 'ops' API on ")).split()[5]
            async with httpx.AsyncClient(timeout=10) as c:
                r = await c.get(f"{api}/line")
            assert r.status_code == 200 and [m["id"] for m in r.json()["machines"]] == ["w1"]
            assert elsewhere.exists() and not (tmp_path / "from-file.sqlite").exists()
        finally:
            code, err = await stop(gateway)
    assert code == 0, err


async def test_an_override_out_of_range_is_refused_naming_it(tmp_path):
    path = line_file(tmp_path, 0, tmp_path / "line.sqlite")
    code, _, err = await finished(await linegw("run", str(path), "--port", "70000"))
    assert code == 1
    assert err.strip().splitlines() == [
        "error: port (option or LINEGW_ variable): Input should be less than or equal to 65535"]


async def test_json_logs_carry_the_machine_as_a_field(tmp_path):
    path = line_file(tmp_path, 0, tmp_path / "line.sqlite")  # w1's endpoint has nothing listening
    gateway = await linegw("run", str(path), "--log-format", "json")
    try:
        await line_starting(gateway, "linegw: line 'ops' API on ")
        async with asyncio.timeout(60):
            while True:
                text = (await gateway.stderr.readline()).decode()
                assert text, "the gateway ended before logging about w1"
                record = json.loads(text)  # every line is one JSON object
                assert {"ts", "level", "logger", "message"} <= record.keys(), record
                if record.get("equipment") == "w1":
                    break
        assert record["message"].startswith("w1: ") and record["level"] in ("WARNING", "INFO", "ERROR"), record
    finally:
        code, err = await stop(gateway)
    assert code == 0, err
    for text in err.splitlines():
        json.loads(text)  # the shutdown's lines too


async def test_an_unknown_log_format_is_refused():
    code, _, err = await finished(await linegw("run", "deploy/lines/demo.yaml", "--log-format", "xml"))
    assert code == 2 and "'xml' is not a log format: text or json" in err
