"""The demo line served in a thread of its own, for a browser to look at.

Playwright's synchronous API owns the test thread, so the line (simulators,
runtime, store, and the API on uvicorn) runs on an event loop in a second
thread. `DemoLine.call` runs a function on that loop, for what a test does to
the machines themselves (raising an alarm on a simulator).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from gateway.api.app import create_app
from gateway.cli import DEMO_LINE, start_simulators
from gateway.config import Api, ApiKey, load_line
from gateway.runtime.line import LineRuntime
from gateway.store.sqlite import SqliteStore
from interface_spec import load_spec
from tests.waiting import wait_for

# Simulated seconds per wall second, as in tests/e2e/test_demo_line.py: cells within a minute or two.
TIME_SCALE = {"coater": 120.0, "winder": 10.0, "formation": 3000.0}
VIEWER_ENV, VIEWER_KEY = "LINEGW_BROWSER_VIEWER_KEY", "viewer-key-for-the-browser-tests"
START_TIMEOUT_S = 90


class DemoLine:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, name="demo-line", daemon=True)
        self.ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.url = ""         # the gateway without keys: the page's caller is a loopback engineer
        self.viewer_url = ""  # the same line behind API keys, where the key given is a viewer's
        self.runtime: LineRuntime | None = None
        self.sims: Any = None
        self._stop: asyncio.Event | None = None

    def start(self) -> DemoLine:
        self.thread.start()
        self.ready.result(timeout=START_TIMEOUT_S)
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(timeout=60)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run fn on the line's loop (simulators and runtime are not thread-safe) and return its result."""
        async def run() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=30)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:  # a failed start is handed to the test thread, which raises it
            if not self.ready.done():
                self.ready.set_exception(exc)
            raise
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        cfg = load_line(DEMO_LINE)
        cfg.store.path = str(self.tmp / "demo.sqlite")
        for eq in cfg.equipment:
            eq.endpoint = eq.endpoint.replace(f":{eq.endpoint.rsplit(':', 1)[1].split('/')[0]}", ":0", 1)
            eq.simulate.time_scale = TIME_SCALE[eq.cls]
            eq.command_timeout_s = 20
            if eq.cls == "coater":  # its alarms come only from the tests, which raise and acknowledge one
                eq.simulate.options = {**(eq.simulate.options or {}), "alarm_interval_s": 0}
        self.sims = await start_simulators(cfg)
        store = SqliteStore(cfg.store.path)
        await store.start()
        self.runtime = runtime = LineRuntime(cfg, load_spec(), store)
        servers: list[uvicorn.Server] = []
        tasks: list[asyncio.Task[Any]] = []
        try:
            tasks.append(asyncio.create_task(runtime.run(), name="runtime"))
            os.environ[VIEWER_ENV] = VIEWER_KEY
            try:
                keyed = create_app(runtime, store, runtime.spec,
                                   Api(keys=[ApiKey(user="viewer1", role="viewer", key_env=VIEWER_ENV)]))
            finally:
                del os.environ[VIEWER_ENV]
            for app in (create_app(runtime, store, runtime.spec, cfg.api), keyed):
                server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                       lifespan="on", ws="websockets-sansio"))
                servers.append(server)
                tasks.append(asyncio.create_task(server.serve(), name="api"))
            await wait_for(lambda: all(s.started for s in servers), "the API servers to start")
            self.url, self.viewer_url = (f"http://127.0.0.1:{s.servers[0].sockets[0].getsockname()[1]}" for s in servers)
            await wait_for(lambda: all(e.available and e.state.get("packml_state") for e in runtime.equipment()),
                           "every machine available with a state", timeout=START_TIMEOUT_S)
            self.ready.set_result(None)
            await self._stop.wait()
        finally:
            for s in servers:
                s.should_exit = True
            await asyncio.gather(*tasks[1:], return_exceptions=True)  # the servers end by themselves
            if tasks:
                tasks[0].cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await store.close()
            await self.sims.stop()
