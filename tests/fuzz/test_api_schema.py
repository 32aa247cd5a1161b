"""The API fuzzed from its own OpenAPI schema (schemathesis) on a running demo line, with and without a key.

`linegw demo` runs as a process of its own with API keys configured; every operation of the published schema is
called with requests generated from the schema (and derived from it: bad types, missing parameters): as an
engineer with a key, and as a caller without one. No answer is a 5xx, every 4xx says why (a non-empty `detail`),
and every answer the schema documents conforms to it. The examples are derandomized: the same run each time.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.e2e.test_demo_command import demo_line_on_free_ports

pytestmark = pytest.mark.slow

KEY = "fuzz-engineer-key-0123456789abcdef"
LIVE_QUEUE = 20  # live messages kept per WebSocket client
KEEPALIVE_S = 2.0  # the WebSocket ping and its deadline: a client that never reads is found within two of them
CLIENTS = 200
EXAMPLES = 12  # per operation and caller: the whole file stays near a minute on two cores
ROOT = Path(__file__).resolve().parents[2]


_PID: list[int] = []


def api_pid() -> int:
    return _PID[-1]


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("fuzz")
    line_file = demo_line_on_free_ports(tmp)
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    text = line_file.read_text().replace(
        "api: {host: 127.0.0.1, port: 0}",
        "api:\n  host: 127.0.0.1\n  port: 0\n"
        f"  keys: [{{user: fuzzer, role: engineer, key_sha256: {digest}}}]\n"
        "  command_limits: {per_caller_per_min: 100000, per_machine_per_min: 100000}\n"
        f"  live_queue: {LIVE_QUEUE}\n"
        f"  ws_keepalive_s: {KEEPALIVE_S}")
    assert "key_sha256" in text, "the demo line's api: line changed; adapt the fuzz line file"
    line_file.write_text(text)
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "demo", "--line", str(line_file), "--for", "15m"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        deadline = time.monotonic() + 90
        assert proc.stdout is not None
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"linegw demo ended: {proc.stderr.read() if proc.stderr else ''}")
            m = re.search(r"(http://127\.0\.0\.1:\d+)/api/v1", line)
            url = m.group(1) if m else None
        assert url, "linegw demo did not print its API address within 90 s"
        while time.monotonic() < deadline:
            r = httpx.get(f"{url}/api/v1/line", headers={"X-API-Key": KEY}, timeout=5)
            if r.status_code == 200 and all(m["available"] for m in r.json()["machines"]):
                break
            time.sleep(0.5)
        _PID.append(proc.pid)  # the gateway's process, for its memory
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def fuzz(url: str, headers: dict[str, str], calls: list[str] | None = None) -> list[str]:
    """Every operation, EXAMPLES generated requests each: what went wrong, as sentences; `calls` gets every
    operation called."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    problems: list[str] = []
    calls = calls if calls is not None else []
    for result in schema.get_all_operations():
        _fuzz_operation(result.ok(), url, headers, problems, calls)
    return problems


def _fuzz_operation(operation, url: str, headers: dict[str, str], problems: list[str], calls: list[str]) -> None:
    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def run(case) -> None:
        # The schema declares the key header: the generated one gives way to the caller's (or to none).
        case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "x-api-key"} | headers
        response = case.call(base_url=url, timeout=30)
        calls.append(f"{case.method} {operation.path}")
        where = f"{case.method} {case.formatted_path} {case.query or ''}"
        if response.status_code >= 500:
            problems.append(f"{where}: {response.status_code} {response.text[:200]}")
        elif response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            if not (isinstance(body, dict) and isinstance(body.get("detail"), (str, list)) and body["detail"]):
                problems.append(f"{where}: {response.status_code} without a reason: {response.text[:200]}")
        else:
            try:
                case.validate_response(response, checks=[schemathesis.checks.response_schema_conformance])
            except Exception as exc:  # a FailureGroup naming what does not conform
                problems.append(f"{where}: {response.status_code} does not conform: {str(exc)[:300]}")

    run()


def test_no_request_built_from_the_schema_breaks_the_api_with_a_key(api):
    calls: list[str] = []
    assert fuzz(api, {"X-API-Key": KEY}, calls) == []
    operations = set(calls)
    # Every route of the API was tried, commands and the reload included, several times each.
    assert len(operations) >= 25 and len(calls) >= 4 * len(operations), (len(operations), len(calls))
    assert any(c.startswith("POST") and "commands" in c for c in operations)


def test_without_a_key_every_refusal_says_why(api):
    assert fuzz(api, {}) == []
    r = httpx.get(f"{api}/api/v1/line", timeout=5)
    assert r.status_code == 401 and r.json()["detail"]


def test_the_fuzzer_reports_a_5xx_and_a_refusal_without_a_reason(tmp_path):
    """The checker can fail: a small API with a route that breaks and one that refuses without saying why."""
    import threading

    import uvicorn
    from fastapi import FastAPI, Query
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.get("/boom", response_model=None)
    def boom(n: int = Query(0)):
        raise RuntimeError("broken")

    @app.get("/mute", response_model=None)
    def mute(n: int = Query(0)):
        return JSONResponse({"error": True}, status_code=400)

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        problems = fuzz(f"http://127.0.0.1:{port}", {})
    finally:
        server.should_exit = True
        thread.join(timeout=20)
    assert any("/boom" in p and ": 500" in p for p in problems), problems
    assert any("/mute" in p and "without a reason" in p for p in problems), problems


def small_socket(url: str) -> socket.socket:
    """A connected socket with a small receive buffer: a client that never reads fills it after a few messages,
    as a stalled client on a real network would after more."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    return sock


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def live_subscribers(url: str) -> int:
    return httpx.get(f"{url}/api/v1/health", headers={"X-API-Key": KEY}, timeout=10).json()["runtime"][
        "live_subscribers"]


async def test_clients_that_never_read_are_dropped_and_memory_stays_flat(api):
    """Two rounds of 200 WebSocket clients that never read: each is dropped once it leaves a keep-alive ping
    unanswered (the kernel takes megabytes of its messages before a send would wait, so its live queue fills only
    much later), a client that reads keeps receiving, and the gateway's memory after the second round is about what
    it was after the first: nothing is kept per dropped client."""
    import asyncio

    from websockets.asyncio.client import connect

    ws_url = api.replace("http://", "ws://") + f"/api/v1/live?key={KEY}"
    received = 0

    async def reader(stop: asyncio.Event) -> None:
        nonlocal received
        async with connect(ws_url, max_size=None) as ws:
            while not stop.is_set():
                await asyncio.wait_for(ws.recv(), 30)
                received += 1

    async def sleeper() -> Any:
        """A client subscribed (it has its snapshot: the stream registers before sending it) that reads no more."""
        ws = await connect(ws_url + "&paths=status.*", max_queue=1, sock=small_socket(api))
        first = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert first["kind"] == "snapshot", first
        return ws

    async def a_round() -> int:
        sleepers = [await sleeper() for _ in range(CLIENTS)]
        try:
            deadline = asyncio.get_running_loop().time() + 6 * KEEPALIVE_S  # uvicorn's own default takes 40 s
            while live_subscribers(api) > 1 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(1)
            left = live_subscribers(api)
            assert left <= 1, f"{left} live clients still subscribed: the ones that never read were not dropped"
        finally:
            for ws in sleepers:
                ws.transport.abort()
        return rss_kb(api_pid())

    stop = asyncio.Event()
    reading = asyncio.create_task(reader(stop))
    try:
        first = await a_round()
        second = await a_round()
        got = received
        await asyncio.sleep(3)
        assert received > got, "the client that reads stopped receiving"
        grown_mb = (second - first) / 1024
        assert grown_mb < 30, f"the gateway grew {grown_mb:.0f} MB over a second round of {CLIENTS} clients"
    finally:
        stop.set()
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
