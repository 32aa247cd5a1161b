"""`linegw demo` itself, the command behind `make demo`."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from gateway.cli import DEMO_LINE
from gateway.config import load_line
from tests.e2e.linegw_process import every_machine_available, line_starting, start

RUN_FOR_S = 20  # about twice what the demo takes to read every machine on a busy 2-core machine


def demo_line_on_free_ports(tmp_path: Path) -> Path:
    """The shipped demo line with every port 0 (the OS picks) and the store in `tmp_path`."""
    text = DEMO_LINE.read_text()
    for port in ("4841", "4842", "5021", "5022", "8080"):
        text = text.replace(f":{port}", ":0").replace(f"port: {port}", "port: 0")
    text = text.replace("path: var/demo.sqlite", f"path: {tmp_path / 'demo.sqlite'}")
    line_file = tmp_path / "demo.yaml"
    line_file.write_text(text)
    return line_file


async def test_linegw_demo_starts_serves_and_stops_by_itself(tmp_path):
    """The `make demo` command itself, with free ports: every machine of the line is served, then it stops."""
    line_file = demo_line_on_free_ports(tmp_path)
    started = time.monotonic()
    proc = await start("demo", "--line", str(line_file), "--for", f"{RUN_FOR_S}s")
    printed: list[str] = []
    try:
        api = (await line_starting(proc, "gateway API", printed)).split()[2]  # http://127.0.0.1:PORT/api/v1
        machines = await every_machine_available(api, timeout=RUN_FOR_S)
        assert [m["id"] for m in machines] == [eq.id for eq in load_line(line_file).equipment]
        async with asyncio.timeout(RUN_FOR_S + 60):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert time.monotonic() - started >= RUN_FOR_S  # it stopped because its time was up, not before
    printed.append(out.decode())
    assert any(line.startswith("dashboard    http://127.0.0.1:") for line in printed)
    for eq_id in ("coater1", "winder1", "winder2", "formation1"):
        assert any(eq_id in line for line in printed)
    assert Path(tmp_path / "demo.sqlite").exists()
