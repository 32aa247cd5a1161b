"""Real servers on loopback for the forwarders: victoria-metrics (accepts the InfluxDB v2
write API), mosquitto, and nginx as a reverse proxy with a request-body limit."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

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
        # dedup: one sample per series and timestamp, as InfluxDB keeps (a replay overwrites)
        return [f"-storageDataPath={self.data}", f"-httpListenAddr=127.0.0.1:{self.port}",
                "-dedup.minScrapeInterval=1ms", *self.flags]

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
    """A reverse proxy in front of a sink with a request-body limit, as plants put in front of InfluxDB."""

    package, binary = "nginx-light", "nginx"

    def __init__(self, work: Path, upstream: str, max_body: str) -> None:
        super().__init__()
        work.mkdir(parents=True, exist_ok=True)
        self.conf = work / "nginx.conf"
        temps = "\n".join(f"  {kind}_temp_path {work}/{kind};"
                          for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        self.conf.write_text(f"""daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log;
worker_processes 1;
events {{}}
http {{
  access_log off;
{temps}
  server {{
    listen 127.0.0.1:{self.port};
    client_max_body_size {max_body};
    location / {{ proxy_pass {upstream}; }}
  }}
}}
""")

    def args(self) -> list[str]:
        return ["-c", str(self.conf), "-p", str(self.conf.parent)]


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
