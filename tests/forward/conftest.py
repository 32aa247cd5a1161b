"""Fixtures: a real victoria-metrics (accepts the InfluxDB v2 write API) and a real mosquitto, on loopback."""

from __future__ import annotations

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


class VictoriaMetrics:
    def __init__(self, data: Path, *flags: str) -> None:
        self.data, self.port, self.flags = data, _free_port(), list(flags)
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
        if not Path(binary).exists():
            pytest.fail("victoria-metrics not installed: run make system-deps")
        self.proc = subprocess.Popen([binary, f"-storageDataPath={self.data}", f"-httpListenAddr=127.0.0.1:{self.port}",
                                      # one sample per series and timestamp, as InfluxDB keeps (a replay overwrites)
                                      "-dedup.minScrapeInterval=1ms", *self.flags],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):  # readiness poll, not a timed assertion
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        pytest.fail("victoria-metrics did not answer /health")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()
            self.proc = None

    def export(self, match: str) -> list[dict]:
        import json
        httpx.get(f"{self.url}/internal/force_flush", timeout=10)
        r = httpx.get(f"{self.url}/api/v1/export", params={"match[]": match}, timeout=10)
        return [json.loads(x) for x in r.text.splitlines() if x.strip()]

    def count(self, match: str) -> int:
        return sum(len(s["values"]) for s in self.export(match))

    async def searchable(self, match: str, at_least: int, timeout: float = 20.0) -> list[dict]:
        """The export once it holds `at_least` points: a 204 comes before points are searchable.

        Returns what is there at the deadline too, so the test's own assertion says what is missing.
        """
        import asyncio
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            series = self.export(match)
            if sum(len(s["values"]) for s in series) >= at_least or loop.time() > deadline:
                return series
            await asyncio.sleep(0.2)


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    v = VictoriaMetrics(tmp_path / "vm")
    v.start()
    yield v
    v.stop()


class Mosquitto:
    """A broker on a free port; stop() and start() again keep the port, as a broker restart does."""

    def __init__(self, conf_dir: Path) -> None:
        self.port = _free_port()
        self.conf = conf_dir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            pytest.fail("mosquitto not installed: run make system-deps")
        self.proc = subprocess.Popen([binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):  # readiness poll
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail("mosquitto did not open its port")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    m = Mosquitto(tmp_path)
    m.start()
    yield m
    m.stop()


class Nginx:
    """A reverse proxy in front of a sink with a request-body limit, as plants put in front of InfluxDB."""

    def __init__(self, work: Path, upstream: str, max_body: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        work.mkdir(parents=True, exist_ok=True)
        self.conf = work / "nginx.conf"
        temps = "\n".join(f"  {kind}_temp_path {work}/{kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                                           "uwsgi", "scgi"))
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
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            pytest.fail("nginx not installed: run make system-deps")
        self.proc = subprocess.Popen([binary, "-c", str(self.conf), "-p", str(self.conf.parent)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):  # readiness poll
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"nginx did not open its port; see {self.conf.parent}/error.log")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()
            self.proc = None
