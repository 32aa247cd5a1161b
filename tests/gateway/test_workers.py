"""Acquisition workers: machines' adapters in processes of their own (gateway/runtime/workers.py).

Real simulated machines over Modbus and OPC UA, a real runtime and store, real worker processes: what a line records
with its adapters in workers is what it records in process; commands go through; back-pressure holds across the
process boundary; a worker killed takes its machines' links down with the reason and they come back; the adapters'
log lines reach the gateway's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.adapters.base import Point, RawReading
from gateway.bindings import binding_for
from gateway.config import LineConfig, load_line
from gateway.runtime.device import HEARTBEAT
from gateway.runtime.line import LineRuntime
from gateway.runtime.workers import WINDOW, RemoteAdapter, Worker, pack, unpack
from gateway.store.sqlite import SqliteStore
from interface_spec import SpecError, load_spec
from simulators.line import SimConfig, SimLine
from tests.waiting import wait_for

SPEC = load_spec()


def _line(sims: SimLine, machines: list[SimConfig], workers: int) -> LineConfig:
    return LineConfig.model_validate({"line": "workers", "acquisition": {"workers": workers}, "equipment": [{
        "id": m.equipment_id, "class": m.cls, "protocol": m.protocol, "endpoint": sims.endpoints()[m.equipment_id],
        "counts": m.counts, "adapter": {"scan_interval_ms": 100} if m.protocol == "modbus" else {}}
        for m in machines]})


async def _stop(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def _running(tmp_path: Path, machines: list[SimConfig], workers: int) -> AsyncIterator[tuple[LineRuntime, Any]]:
    """The simulated machines and a runtime recording them with `workers` acquisition workers; stopped after."""
    sims = SimLine(SPEC)
    await sims.start(machines)
    task = None
    try:
        async with SqliteStore(tmp_path / "store.sqlite") as store:
            runtime = LineRuntime(_line(sims, machines, workers), SPEC, store)
            task = asyncio.create_task(runtime.run())
            yield runtime, store
    finally:
        await _stop(task)
        await sims.stop()


def test_a_batch_crosses_as_columns_and_comes_back_the_same():
    index = {"a": 0, "b": 1}
    keys = ["a", "b"]
    plain = [RawReading("a", 1.5, 10.0), RawReading("b", [1, 2], 11.0)]
    packed = pack(plain, index, 99.0)
    assert packed[0] == [] and packed[4] is None, "errors sent only when there are some"
    assert unpack(keys, packed) == plain
    mixed = [RawReading("b", None, 17.0, "illegal data address"), RawReading("c", "x", None),
             RawReading("a", True, 18.0)]
    packed = pack(mixed, index, 99.0)
    assert packed[0] == ["c"] and index["c"] == 2, "a key the worker had not seen is numbered and sent once"
    assert unpack(keys, packed) == [mixed[0], mixed[1]._replace(source_ts=99.0), mixed[2]], \
        "a reading without a source time has the time the worker received it"
    assert keys == ["a", "b", "c"]
    assert pack(mixed, index, 99.0)[0] == [], "and not again"
    modbus = [RawReading("a", 1, None), RawReading("b", 2, None)]
    packed = pack(modbus, index, 42.0)
    assert packed[3] is None, "no column of source times when the device gives none"
    assert [r.source_ts for r in unpack(keys, packed)] == [42.0, 42.0]
    assert unpack(keys, pack([], index, 1.0)) == []


async def test_machines_in_workers_record_what_they_record_in_process_and_take_commands(tmp_path):
    machines = [SimConfig("f1", "formation", "modbus", port=0, seed=1, time_scale=60, counts={"channel": 16}),
                SimConfig("w1", "winder", "modbus", port=0, seed=2, time_scale=30),
                SimConfig("c1", "coater", "opcua", port=0, seed=3, time_scale=30)]
    async with _running(tmp_path, machines, workers=2) as (runtime, store):
        for m in machines:
            dev = runtime.devices[m.equipment_id]
            await wait_for(lambda dev=dev: dev.view.available and dev.samples_stored > 200,
                           f"{m.equipment_id} recorded through its worker", timeout=60)
        health = runtime.health()
        workers = {w["index"]: w for w in health["acquisition_workers"]}
        assert {w["pid"] for w in workers.values()}.isdisjoint({None, os.getpid()}), workers
        assert workers[0]["equipment"] == ["c1", "f1"] and workers[1]["equipment"] == ["w1"], workers
        assert {e: h["adapter"]["extra"]["acquisition_worker"] for e, h in health["equipment"].items()} == {
            "f1": 0, "w1": 1, "c1": 0}
        assert all(h["adapter"]["connected"] and h["adapter"]["reads"] > 0 for h in health["equipment"].values())
        # The values are the machines': identity as each simulator serves it, per-channel values for every channel.
        for m in machines:
            dev = runtime.devices[m.equipment_id]
            assert dev.view.identity.get("machine_name") or dev.view.identity.get("serial_number"), dev.view
            assert dev.view.state.get("packml_state"), dev.view.state
        f1 = runtime.devices["f1"].latest
        assert {p for p in f1 if p.startswith("channel[") and p.endswith("].voltage")} == {
            f"channel[{i}].voltage" for i in range(1, 17)}
        stored = await store.history("c1", "state.packml_state", 0, 2e9)
        assert stored, "the OPC UA machine's state is stored"

        # A command is written through the worker and read back: Stop, then Reset to Idle.
        dev = runtime.devices["w1"]
        await wait_for(lambda: dev.view.state.get("control_authority") == "Remote", "w1 in Remote")
        for command, target in (("Stop", "Stopped"), ("Reset", "Idle")):
            result = await runtime.command("w1", command, {}, "test", "engineer")
            assert result.result in ("ok", "accepted_completes_later"), result
            await wait_for(lambda target=target: dev.view.state.get("packml_state") == target, target)
        refused = await runtime.command("w1", "Reset", {}, "test", "engineer")
        assert refused.result != "ok", "a command the state machine refuses is refused through a worker too"
    assert all(w.pid is None for w in runtime.workers.workers), "the runtime stops its workers"


async def test_a_killed_worker_takes_its_machines_down_with_the_reason_and_they_come_back(tmp_path):
    machines = [SimConfig("w1", "winder", "modbus", port=0, seed=2, time_scale=30)]
    async with _running(tmp_path, machines, workers=1) as (runtime, _):
        dev = runtime.devices["w1"]
        await wait_for(lambda: dev.view.available and dev.samples_read > 0, "w1 recorded")
        worker = runtime.workers.workers[0]
        pid = worker.pid
        assert pid is not None and worker.starts == 1
        os.kill(pid, signal.SIGKILL)
        await wait_for(lambda: not dev.view.available, "w1 down when its worker is killed", timeout=20)
        assert "acquisition worker 0 ended (exit code -9)" in dev.view.link_reason, dev.view.link_reason
        read_before = dev.samples_read
        await wait_for(lambda: dev.view.available and dev.samples_read > read_before, "w1 back", timeout=30)
        assert worker.starts == 2 and worker.pid not in (None, pid)
        assert runtime.restarts["w1"] == 0, "the machine's task went on: only its adapter was opened again"


async def test_a_reload_runs_an_added_machine_in_a_worker_and_leaves_the_worker_count_to_a_restart(tmp_path):
    machines = [SimConfig("w1", "winder", "modbus", port=0, seed=2, time_scale=30),
                SimConfig("w2", "winder", "modbus", port=0, seed=4, time_scale=30)]
    async with _running(tmp_path, machines, workers=1) as (runtime, _):
        first = runtime.config.model_dump(by_alias=True)
        await wait_for(lambda: runtime.devices["w1"].view.available, "w1 recorded")
        # The first line file had both machines; start from w1 alone, then add w2 back with two workers asked for.
        alone = LineConfig.model_validate({**first, "equipment": [e for e in first["equipment"] if e["id"] == "w1"]})
        assert (await runtime.reload(alone))["removed"] == ["w2"]
        grown = LineConfig.model_validate({**first, "acquisition": {"workers": 2}})
        result = await runtime.reload(grown)
        assert result["added"] == ["w2"] and result["needs_restart"] == ["acquisition"], result
        assert len(runtime.workers) == 1 and runtime.config.acquisition.workers == 1
        w2 = runtime.devices["w2"]
        await wait_for(lambda: w2.view.available and w2.samples_read > 0, "w2 recorded after the reload")
        assert w2.adapter is not None and w2.adapter.health().extra["acquisition_worker"] == 0
        assert runtime.health()["acquisition_workers"][0]["equipment"] == ["w1", "w2"]


async def test_a_worker_waits_while_the_gateway_has_not_taken_its_batches():
    """The runtime answers every batch with an awaitable that is not done (the store is behind): the worker's
    adapter sends WINDOW batches and then reads no more until they are taken."""
    machines = [SimConfig("w1", "winder", "modbus", port=0, seed=2, time_scale=30)]
    sims = SimLine(SPEC)
    await sims.start(machines)
    worker = Worker(0)
    task = None
    try:
        plan = binding_for("modbus").plan(SPEC, "w1", "winder", "w1", {})
        points = [p for p in plan.points if p.key.endswith(HEARTBEAT)]
        assert len(points) == 1, [p.key for p in plan.points][:20]
        adapter = RemoteAdapter(worker, "modbus", sims.endpoints()["w1"], points, {"scan_interval_ms": 20})
        batches: list[list[RawReading]] = []
        room: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_readings(readings: list[RawReading]) -> asyncio.Future[None]:
            batches.append(readings)
            return room

        task = asyncio.create_task(adapter.run(on_readings, lambda up, reason: None))
        await wait_for(lambda: len(batches) >= WINDOW, f"{WINDOW} batches")
        await asyncio.sleep(1.0)  # fifty scan intervals
        assert len(batches) == WINDOW, "the worker read on while the gateway had not taken its batches"
        assert adapter.health().reads >= WINDOW
        room.set_result(None)
        await wait_for(lambda: len(batches) > 3 * WINDOW, "reading again once they are taken")
        assert all(r.key == points[0].key and not r.error for b in batches for r in b), batches[-1]
    finally:
        await _stop(task)
        await worker.stop()
        await sims.stop()


async def test_an_adapters_log_lines_and_failures_reach_the_gateway(caplog):
    """A machine that is not there: the Modbus client's warning, logged in the worker, is in the gateway's log;
    a write fails with the adapter's reason, raised in the gateway as the same exception."""
    worker = Worker(0)
    task = None
    caplog.set_level(logging.INFO)
    # The gateway's process decides what it logs of what a worker sends: `linegw run` (gateway/logs.py) silences
    # pymodbus, and a test before this one may have run it in this process; here its warnings are let through.
    caplog.set_level(logging.WARNING, logger="pymodbus")
    try:
        adapter = RemoteAdapter(worker, "modbus", "modbus://127.0.0.1:1", [Point("x", {"table": "holding",
                                                                                         "address": 0})], {})
        links: list[tuple[bool, str]] = []
        task = asyncio.create_task(adapter.run(lambda readings: None, lambda up, reason: links.append((up, reason))))
        await wait_for(lambda: links, "the link reported down")
        assert links[0][0] is False and links[0][1], links
        await wait_for(lambda: any(r.name.startswith("pymodbus") for r in caplog.records),
                       "the adapter's log line in the gateway's log", timeout=20)
        record = next(r for r in caplog.records if r.name.startswith("pymodbus"))
        assert record.process == worker.pid and record.process != os.getpid()
        assert record.levelno == logging.WARNING and "Failed to connect" in record.getMessage(), record
        with pytest.raises(Exception) as failed:
            await adapter.write("x", 1)
        assert type(failed.value).__name__ == "AdapterError" and str(failed.value), failed.value
        assert adapter.health().connected is False and adapter.health().last_error
    finally:
        await _stop(task)
        await worker.stop()



def test_a_line_file_asking_for_a_negative_number_of_workers_is_refused_at_its_line(tmp_path):
    line = tmp_path / "line.yaml"
    line.write_text("line: l1\nacquisition:\n  workers: -1\nequipment:\n"
                    "  - {id: w1, class: winder, protocol: modbus, endpoint: 'modbus://127.0.0.1:5020'}\n")
    with pytest.raises(SpecError, match=rf"{line}:3: acquisition.workers: .*greater than or equal to 0"):
        load_line(line)
    line.write_text(line.read_text().replace("-1", "2"))
    assert load_line(line).acquisition.workers == 2


async def test_scans_that_keep_missing_their_ticks_are_said_once_with_what_would_help(tmp_path, caplog):
    """A machine that answers each request 50 ms late cannot be scanned every 100 ms: the log says so, once, and
    names the setting that puts the adapters on the box's other cores."""
    machines = [SimConfig("w1", "winder", "modbus", port=0, seed=2, time_scale=30, faults=["slow:delay_s=0.05"])]
    caplog.set_level(logging.WARNING, logger="linegw.runtime")
    async with _running(tmp_path, machines, workers=0) as (runtime, _):
        runtime.scan_check_s = 1.0  # set before the runtime has run a step: its watch checks every second
        dev = runtime.devices["w1"]
        await wait_for(lambda: dev.adapter is not None and dev.adapter.health().extra.get("overruns", 0) > 0,
                       "missed scan ticks")
        said = await wait_for(lambda: [r for r in caplog.records if "scans missed" in r.getMessage()],
                              "the warning", timeout=130)
        cores = os.cpu_count() or 1
        hint = "acquisition: {workers: 2}" if cores > 1 else "a longer scan_interval_ms"
        assert len(said) == 1 and "w1" in said[0].getMessage() and hint in said[0].getMessage(), said[0].getMessage()
        await asyncio.sleep(2.5)
        assert len([r for r in caplog.records if "scans missed" in r.getMessage()]) == 1, "said once"


async def test_what_the_runtime_raises_on_a_batch_ends_the_adapters_run_as_in_process():
    """A batch the runtime fails on (a bug, a store that closed) fails the machine's adapter task with that very
    exception, so the machine's supervisor restarts it and counts it, as it does with adapters in process."""
    machines = [SimConfig("w1", "winder", "modbus", port=0, seed=2, time_scale=30)]
    sims = SimLine(SPEC)
    await sims.start(machines)
    worker = Worker(0)
    try:
        points = binding_for("modbus").plan(SPEC, "w1", "winder", "w1", {}).points

        def on_readings(readings: list[RawReading]) -> None:
            raise ValueError(f"failed on a batch of {len(readings)}")

        with pytest.raises(ValueError, match="failed on a batch of"):
            await asyncio.wait_for(RemoteAdapter(worker, "modbus", sims.endpoints()["w1"], points, {}).run(
                on_readings, lambda up, reason: None), 30)

        async def store_closed() -> None:
            raise RuntimeError("the store is closed")

        with pytest.raises(RuntimeError, match="the store is closed"):
            await asyncio.wait_for(RemoteAdapter(worker, "modbus", sims.endpoints()["w1"], points, {}).run(
                lambda readings: store_closed(), lambda up, reason: None), 30)
    finally:
        await worker.stop()
        await sims.stop()


@pytest.mark.parametrize("workers", [0, 1])
async def test_a_machine_held_back_for_the_stores_room_is_not_called_frozen(tmp_path, workers):
    """The store cannot commit (another connection holds the file's write lock): its queue passes half its bound,
    and the machine's adapter waits for room, in process and in a worker alike. The machine's heartbeat is not read
    meanwhile; that is the gateway's wait, so the machine is not marked unavailable for a stopped heartbeat, nothing
    is dropped, and recording goes on once the lock is let go."""
    machines = [SimConfig("w1", "winder", "modbus", port=0, seed=2, time_scale=30)]
    sims = SimLine(SPEC)
    await sims.start(machines)
    task = None
    db = tmp_path / "store.sqlite"
    try:
        async with SqliteStore(db, max_queue=2_000) as store:
            runtime = LineRuntime(_line(sims, machines, workers), SPEC, store)
            task = asyncio.create_task(runtime.run())
            dev = runtime.devices["w1"]
            await wait_for(lambda: dev.view.available and dev.samples_stored > 100, "w1 recording")
            lock = sqlite3.connect(db, timeout=30)
            lock.execute("BEGIN EXCLUSIVE")
            try:
                await wait_for(lambda: dev._held, "the adapter held back for the store's room", timeout=30)
                timeout = SPEC.core.heartbeat_timeout_s
                deadline = asyncio.get_running_loop().time() + timeout + 3
                while asyncio.get_running_loop().time() < deadline:
                    assert dev.view.available, dev.view.link_reason
                    await asyncio.sleep(0.1)
                assert dev._held, "the store was still behind: the wait outlasted the heartbeat's timeout"
            finally:
                lock.rollback()
                lock.close()
            read = dev.samples_read
            await wait_for(lambda: not dev._held and dev.samples_read > read, "reading again once the store commits")
            assert dev.view.available and store.stats()["dropped"] == 0, store.stats()
    finally:
        await _stop(task)
        await sims.stop()
