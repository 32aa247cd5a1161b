"""Real servers on loopback for the forwarders: victoria-metrics (accepts the InfluxDB v2
write API), mosquitto, and nginx as a reverse proxy with a request-body limit."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """A Debian-packaged server as a child process on a free port; stop() then start() keeps the port."""

    package = binary = ""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def args(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def start(self) -> None:
        binary = shutil.which(self.binary) or f"/usr/sbin/{self.binary}"
        if not Path(binary).exists():
            pytest.fail(f"{self.binary} not installed (Debian package {self.package}): run make system-deps")
        self.proc = subprocess.Popen([binary, *self.args()], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):  # readiness poll, not a timed assertion
            if self.ready():
                return
            time.sleep(0.05)
        pytest.fail(f"{self.binary} did not get ready on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()
            self.proc = None


class VictoriaMetrics(_Server):
    package = binary = "victoria-metrics"

    def __init__(self, data: Path, *flags: str) -> None:
        super().__init__()
        self.data, self.flags = data, list(flags)

    def args(self) -> list[str]:
        # No -dedup: every point written is kept, so a test sees each duplicate write
        # (InfluxDB would overwrite an identical re-send; the tests hold the forwarder to more).
        return [f"-storageDataPath={self.data}", f"-httpListenAddr=127.0.0.1:{self.port}", *self.flags]

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def export(self, match: str) -> list[dict]:
        httpx.get(f"{self.url}/internal/force_flush", timeout=10)
        r = httpx.get(f"{self.url}/api/v1/export", params={"match[]": match}, timeout=10)
        return [json.loads(x) for x in r.text.splitlines() if x.strip()]

    def count(self, match: str) -> int:
        return sum(len(s["values"]) for s in self.export(match))

    def points(self, match: str) -> list[tuple[tuple, int, float]]:
        """Every raw point: (labels as sorted pairs, timestamp in ms, value), duplicates included."""
        return [(tuple(sorted(s["metric"].items())), ts, v)
                for s in self.export(match) for v, ts in zip(s["values"], s["timestamps"])]

    async def searchable(self, match: str, at_least: int, timeout: float = 20.0) -> list[dict]:
        """The export once it holds `at_least` points: a 204 comes before points are searchable.

        Returns what is there at the deadline too, so the test's own assertion says what is missing.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            series = self.export(match)
            if sum(len(s["values"]) for s in series) >= at_least or loop.time() > deadline:
                return series
            await asyncio.sleep(0.2)


class Mosquitto(_Server):
    package = binary = "mosquitto"

    def __init__(self, conf_dir: Path) -> None:
        super().__init__()
        self.conf = conf_dir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n")

    def args(self) -> list[str]:
        return ["-c", str(self.conf)]


class Nginx(_Server):
    """A reverse proxy in front of a sink, as plants put in front of InfluxDB: a request-body limit,
    an access log of method, path, status and Content-Encoding, and answers of its own on demand."""

    package, binary = "nginx-light", "nginx"

    def __init__(self, work: Path, upstream: str, max_body: str = "10m") -> None:
        super().__init__()
        work.mkdir(parents=True, exist_ok=True)
        self.work, self.upstream, self.max_body = work, upstream, max_body
        self.conf = work / "nginx.conf"
        self.access_log = work / "access.log"
        self.proxy()

    def _configure(self, location: str) -> None:
        work = self.work
        temps = "\n".join(f"  {kind}_temp_path {work}/{kind};"
                          for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        self.conf.write_text(f"""daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log;
worker_processes 1;
events {{}}
http {{
  log_format requests '$request_method $uri $status $http_content_encoding';
  access_log {self.access_log} requests;
{temps}
  server {{
    listen 127.0.0.1:{self.port};
    client_max_body_size {self.max_body};
    location / {{ {location} }}
  }}
}}
""")

    def proxy(self) -> None:
        """Pass every request to the upstream (call reload() when running)."""
        self._configure(f"proxy_pass {self.upstream};")

    def answer(self, status: int, body: str, retry_after: int | None = None) -> None:
        """Answer every request itself with this status and JSON body, as InfluxDB does (call reload())."""
        header = f"add_header Retry-After {retry_after} always; " if retry_after is not None else ""
        self._configure(f"default_type application/json; {header}return {status} '{body}';")

    def reload(self) -> None:
        binary = shutil.which(self.binary) or f"/usr/sbin/{self.binary}"
        subprocess.run([binary, *self.args(), "-s", "reload"], check=True, capture_output=True)

    def requests(self) -> list[tuple[str, str, int, str]]:
        """(method, path, status, Content-Encoding or "-") of every request so far."""
        if not self.access_log.exists():
            return []
        rows = [line.split(" ") for line in self.access_log.read_text().splitlines() if line]
        return [(m, path, int(status), enc) for m, path, status, enc in rows]

    def args(self) -> list[str]:
        return ["-c", str(self.conf), "-p", str(self.conf.parent)]


def series_key(s: Any, cls: str) -> tuple[str, str, str, str, int]:
    """What victoria-metrics makes of a sample of a machine of class `cls`: metric name and labels, time in ms.
    The forwarder writes ns; victoria-metrics keeps ms, cutting the rest off (not rounding)."""
    head, _, variable = s.path.rpartition(".")
    sub_unit, _, index = head.partition("[")
    return (f"{cls}_{variable}", sub_unit, index.rstrip("]"), s.unit, round(s.source_ts * 1e9) // 1_000_000)


def vm_key(labels: tuple[tuple[str, str], ...], ts: int) -> tuple[str, str, str, str, int]:
    """A raw victoria-metrics point keyed as series_key keys samples."""
    m = dict(labels)
    return (m["__name__"], m.get("sub_unit", ""), m.get("index", ""), m.get("unit", ""), ts)


async def retained(port: int, topic: str, timeout: float = 10.0) -> bytes:
    """The message the broker keeps retained on `topic`, as a subscriber connecting now gets it."""
    async with aiomqtt.Client("127.0.0.1", port) as late:
        await late.subscribe(topic, qos=1)
        async with asyncio.timeout(timeout):
            async for m in late.messages:
                assert m.retain, f"{topic}: a live message, not the retained one"
                return bytes(m.payload)
    raise AssertionError(f"{topic}: nothing retained")


def assert_resends_identical(points: list[tuple[tuple, int, float]], at_most: int) -> dict[tuple, float]:
    """Points keyed by (series, ms); a key seen twice must be an identical re-send, at most `at_most` of them.

    After a SIGKILL the forwarder re-sends the batch it had not marked as acknowledged:
    the same series, timestamp and value, which InfluxDB overwrites in place.
    """
    got: dict[tuple, float] = {}
    resent = 0
    for labels, ts, value in points:
        key = (labels, ts)
        if key in got:
            assert got[key] == value, f"two different values at {key}: {got[key]} and {value}"
            resent += 1
        got[key] = value
    assert resent <= at_most, f"{resent} points re-sent; at most {at_most} (one batch per kill) may be"
    return got


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    v = VictoriaMetrics(tmp_path / "vm")
    v.start()
    yield v
    v.stop()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    m = Mosquitto(tmp_path)
    m.start()
    yield m
    m.stop()


async def stopped_while_publishing(fwd: Any, stops: int = 30, progress: str = "published") -> None:
    """Start and cancel a forwarder again and again while it publishes: each cancellation ends it.

    aiomqtt waits for each PUBACK with Python 3.11's asyncio.wait_for, which returns the PUBACK instead of raising
    when the cancellation lands just as it arrives; a forwarder stopped at that moment published on, and the
    gateway's stop waited for it for ever. The stops land anywhere in the publish-and-acknowledge cycle,
    once the stat `progress` shows the forwarder publishing.
    """
    rng = random.Random(7)
    for stop in range(stops):
        task = asyncio.create_task(fwd.run())
        before = fwd.stats()[progress]
        async with asyncio.timeout(30):
            while fwd.stats()[progress] == before:
                await asyncio.sleep(0.005)
        await asyncio.sleep(rng.uniform(0, 0.02))
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=10)
        assert done, f"stop {stop}: the forwarder was cancelled and still runs ({fwd.stats()['published']} sent)"
        assert task.cancelled()
