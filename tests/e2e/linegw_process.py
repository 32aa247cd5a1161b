"""`linegw` commands run as processes of their own, and asked through the API they serve."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


async def start(*args: str) -> asyncio.subprocess.Process:
    """`linegw <args>` with its stdout and stderr piped."""
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway.cli", *args, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def line_starting(proc: asyncio.subprocess.Process, prefix: str, printed: list[str] | None = None) -> str:
    """The first stdout line that starts with `prefix` (the command printing it means it is serving);
    every line read on the way is added to `printed`."""
    async with asyncio.timeout(60):
        while True:
            text = (await proc.stdout.readline()).decode()
            if not text:
                raise AssertionError(f"ended before printing '{prefix}...': {(await proc.stderr.read()).decode()}")
            if printed is not None:
                printed.append(text)
            if text.startswith(prefix):
                return text


async def every_machine_available(api: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    """GET /line until every machine is available with a PackML state; its machines."""
    async def machines():
        async with httpx.AsyncClient(timeout=5) as c:
            found = (await c.get(f"{api}/line")).json()["machines"]
        return all(m["available"] and m["packml_state"] for m in found) and found

    return await wait_for(machines, f"every machine available through {api}", timeout=timeout)


async def serving(line_file: Path, line: str) -> tuple[asyncio.subprocess.Process, str]:
    """`linegw run <line_file>` until every machine is available: the process and its API address."""
    gateway = await start("run", str(line_file))
    try:
        api = (await line_starting(gateway, f"linegw: line '{line}' API on ")).split()[5]
        await every_machine_available(api)
    except BaseException:
        await stop(gateway)
        raise
    return gateway, api


async def stop(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    """SIGTERM, as systemd and `kill` send it: the exit code and what went to stderr."""
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(60):
        _, err = await proc.communicate()
    return proc.returncode, err.decode()
