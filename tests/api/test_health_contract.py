"""/health and /ready as a contract: a real storage fault under a running gateway turns /health 'failing'
(HTTP 503) naming the store, and its end brings 'ok' back with every held sample caught up; /ready is
503 before the runtime starts and after it stops.

The storage fault is real: `linegw run` runs in its own process and the test lowers that process's
file size limit (RLIMIT_FSIZE, prlimit) to one byte, so every write to the store's files fails as on a
full disk (CPython ignores SIGXFSZ); raising it again is the disk being freed. It needs no root.
The simulators run in this process.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from pathlib import Path

import httpx

from gateway.api.app import create_app
from gateway.config import LineConfig
from gateway.runtime.line import LineRuntime
from gateway.store.sqlite import SqliteStore
from interface_spec import load_spec
from simulators.line import SimConfig, SimLine
from tests.e2e import test_fault_logs as fault_logs
from tests.e2e.linegw_process import serving, stop
from tests.waiting import wait_for

LINE = fault_logs.LINE  # the same two machines, under the line name 'logtest'
MACHINES = [SimConfig(equipment_id="winder1", cls="winder", protocol="modbus", port=0, seed=3, time_scale=10),
            SimConfig(equipment_id="coater1", cls="coater", protocol="opcua", port=0, seed=3, time_scale=10,
                      counts={"dryer_zone": 2, "lane": 2})]


async def health(api: str) -> tuple[int, dict]:
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.get(f"{api}/health")
    return r.status_code, r.json()


async def test_a_full_disk_makes_health_failing_503_and_its_end_ok_again(tmp_path: Path):
    sims = SimLine()
    await sims.start(MACHINES)
    line_file = tmp_path / "line.yaml"
    line_file.write_text(LINE.format(db=tmp_path / "line.sqlite", **sims.endpoints()))
    gateway = None
    try:
        gateway, api = await serving(line_file, "logtest")

        async def status_is(wanted: str, code: int):
            got, body = await health(api)
            return got == code and body["status"] == wanted and body

        ok = await wait_for(lambda: status_is("ok", 200), "/health ok", timeout=60)
        assert ok["problems"] == [] and ok["store"]["commit_failures"] == 0
        async with httpx.AsyncClient(timeout=10) as c:
            r = await c.get(f"{api}/ready")
        assert r.status_code == 200 and r.json() == {"ready": True, "reasons": []}

        # The disk fills: every write of the gateway's process to a file fails.
        soft, hard = resource.prlimit(gateway.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(gateway.pid, resource.RLIMIT_FSIZE, (1, hard))
        try:
            # First degraded (a hiccup within the grace), then failing once the grace is over.
            failing = await wait_for(lambda: status_is("failing", 503), "/health failing", timeout=60)
            store_problem = next(p for p in failing["problems"] if p["component"] == "store")
            assert failing["problems"][0] == store_problem and store_problem["status"] == "failing"
            assert "store commits failing" in store_problem["reason"] and "samples held" in store_problem["reason"]
            held_then = failing["store"]["held"]
            assert held_then > 0 and failing["store"]["dropped"] == 0
            assert failing["available"] == 2  # the machines are fine; it is the store that is not
            # It keeps acquiring: the samples held grow while the fault lasts.
            grown = await wait_for(lambda: status_is("failing", 503), "still failing")
            held_max = max(held_then, grown["store"]["held"])
        finally:
            resource.prlimit(gateway.pid, resource.RLIMIT_FSIZE, (soft, hard))

        back = await wait_for(lambda: status_is("ok", 200), "/health ok again", timeout=60)
        assert back["store"]["commit_failures"] == 0 and back["store"]["failing_since"] is None
        assert back["store"]["dropped"] == 0  # nothing held was lost
        # Every sample held was committed: the count written grew past what was held at its most.
        await wait_for(lambda: _written_past(api, ok["store"]["written"] + held_max), "the held samples written")

        code, err = await stop(gateway)
        gateway = None
        assert code == 0
        # One line as commits start failing (with a true count), one as they succeed again.
        starts = [ln for ln in err.splitlines() if "commits fail (" in ln]
        ends = [ln for ln in err.splitlines() if "commits succeed again" in ln]
        assert len(starts) == 1 and len(ends) == 1, err[-3000:]
        assert "samples (up to 500000)" in starts[0]  # the batch in hand and the queue behind it
        caught_up = int(ends[0].split("; the ")[1].split()[0])
        assert caught_up >= held_then, ends[0]  # at its end, at least what /health saw held
    finally:
        if gateway is not None:
            gateway.kill()
            await gateway.wait()
        await sims.stop()


async def _written_past(api: str, n: int) -> int | None:
    _, body = await health(api)
    written = body["store"]["written"]
    return written if written >= n else None


async def test_ready_is_503_before_the_runtime_starts_and_after_it_stops(tmp_path: Path):
    sims = SimLine()
    await sims.start(MACHINES[:1])
    store = SqliteStore(tmp_path / "store.sqlite")
    task = None
    try:
        cfg = LineConfig.model_validate({
            "line": "readytest", "store": {"path": str(store.path)},
            "equipment": [{"id": "winder1", "class": "winder", "protocol": "modbus",
                           "endpoint": sims.endpoints()["winder1"]}]})
        spec = load_spec()
        runtime = LineRuntime(cfg, spec, store)
        app = create_app(runtime, store, spec, cfg.api)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw", timeout=30) as c:
            async def ready() -> tuple[int, dict]:
                r = await c.get("/api/v1/ready")
                # The probes' answer, without a key and without details, follows it step by step.
                probe = await c.get("/readyz")
                assert (probe.status_code, probe.text) == ((200, "ready") if r.status_code == 200 else (503, "not ready"))
                return r.status_code, r.json()

            code, body = await ready()
            assert code == 503 and "the store is not open" in body["reasons"]
            await store.start()
            code, body = await ready()
            assert code == 503 and body["reasons"] == ["the runtime has not started winder1"]
            task = asyncio.create_task(runtime.run())
            await wait_for(lambda: runtime.devices["winder1"].running, "the machine's task")
            assert await ready() == (200, {"ready": True, "reasons": []})
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            task = None
            code, body = await ready()
            assert code == 503 and body["reasons"] == ["the runtime is not running (stopping)"]
            await store.close()
            code, body = await ready()
            assert code == 503 and body["reasons"][0] == "the store is not open"
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await store.close()
        await sims.stop()


async def test_a_machine_reading_only_bad_values_is_a_fault_with_its_reason(tmp_path: Path, caplog):
    """Exception 2 (illegal address) on every register: the link is up, the machine AVAILABLE, every value
    BAD. /health names it; being the line's only machine, nothing is recorded: failing, 503."""
    caplog.set_level(logging.INFO, logger="linegw")
    sims = SimLine()
    await sims.start(MACHINES[:1])
    task = None
    try:
        async with SqliteStore(tmp_path / "store.sqlite") as store:
            cfg = LineConfig.model_validate({
                "line": "badtest", "store": {"path": str(store.path)},
                "equipment": [{"id": "winder1", "class": "winder", "protocol": "modbus",
                               "endpoint": sims.endpoints()["winder1"], "adapter": {"scan_interval_ms": 200}}]})
            spec = load_spec()
            runtime = LineRuntime(cfg, spec, store)
            task = asyncio.create_task(runtime.run())
            await wait_for(lambda: runtime.get("winder1").available, "winder1 available")
            app = create_app(runtime, store, spec, cfg.api)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw",
                                         timeout=30) as c:
                async def health_is(code: int, status: str):
                    r = await c.get("/api/v1/health")
                    return r.status_code == code and r.json()["status"] == status and r.json()

                await wait_for(lambda: health_is(200, "ok"), "/health ok")
                faults = sims.simulators["winder1"].faults
                span = faults.exception("*", "illegal_address")
                try:
                    body = await wait_for(lambda: health_is(503, "failing"), "/health failing")
                    assert body["available"] == 1  # the link is up ...
                    [line_wide, machine] = body["problems"]
                    assert line_wide["status"] == "failing" and "no machine delivers data" in line_wide["reason"]
                    assert machine["id"] == "winder1" and machine["status"] == "degraded"
                    assert "every value read is BAD" in machine["reason"] and "exception 2" in machine["reason"]
                    assert body["equipment"]["winder1"]["data_fault"] in machine["reason"]
                finally:
                    del sims.simulators["winder1"].binding.server.faults.exception_addresses[span]
                await wait_for(lambda: health_is(200, "ok"), "/health ok again")
                await wait_for(lambda: any("good values again" in r.getMessage() for r in caplog.records),
                               "the end logged")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            task = None
        said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("winder1: ")]
        assert len([m for m in said if "connected but every value read is BAD" in m]) == 1, said  # once as it starts
        assert len([m for m in said if "good values again" in m]) == 1, said  # once as it ends
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await sims.stop()
