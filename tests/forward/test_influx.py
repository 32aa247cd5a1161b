"""The InfluxDB forwarder against a real victoria-metrics: every point, value and timestamp; 4xx set aside."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from gateway.forward.config import InfluxForward
from gateway.forward.influx import InfluxForwarder
from gateway.samples import Quality, Sample
from gateway.store.sqlite import SqliteStore
from tests.forward.conftest import Nginx, VictoriaMetrics

T0 = float(int(time.time()) - 3600)  # inside victoria-metrics retention (1 month by default)


def _stream(n: int) -> list[Sample]:
    return [Sample("coater1", f"dryer_zone[{i % 3}].air_temperature", 20.0 + i, "Cel", T0 + i, T0 + i, Quality.GOOD)
            for i in range(n)]


async def _forward(store: SqliteStore, url: str, batch_size: int, written: int) -> InfluxForwarder:
    """Run an InfluxDB forwarder until it has taken `written` samples off the outbox."""
    fwd = InfluxForwarder(store, InfluxForward(url=url, batch_size=batch_size, poll_s=0.05), "L1", {"coater1": "coater"})
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(fwd.run())
        await _until(lambda: fwd.stats()["written"] == written)
        task.cancel()
    return fwd


async def _until(pred, tries: int = 400) -> None:
    for _ in range(tries):
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition never held")


async def test_stream_lands_with_values_and_timestamps(tmp_path: Path, vm: VictoriaMetrics) -> None:
    store = SqliteStore(tmp_path / "g.db")
    await store.start()
    try:
        samples = _stream(300)
        await store.write_samples_async(samples)
        await store.flush()
        fwd = await _forward(store, vm.url, 64, 300)
        assert await store.get_cursor("influx") == fwd.stats()["cursor"]
        got: dict[tuple[str, int], float] = {}
        for series in await vm.searchable('{__name__="coater_air_temperature"}', 300):
            assert series["metric"]["line"] == "L1" and series["metric"]["sub_unit"] == "dryer_zone"
            for v, ts in zip(series["values"], series["timestamps"]):
                got[(series["metric"]["index"], ts)] = v
        want = {(str(i % 3), int((T0 + i) * 1000)): 20.0 + i for i in range(300)}
        assert got == want
        assert sum(len(s["values"]) for s in await vm.searchable('{__name__="coater_air_temperature_q"}', 300)) == 300
    finally:
        await store.close()


async def test_unparsable_point_does_not_block_the_batch(tmp_path: Path, vm: VictoriaMetrics) -> None:
    store = SqliteStore(tmp_path / "g.db")
    await store.start()
    try:
        samples = _stream(20)
        # victoria-metrics skips an unparsable line with a 204 (InfluxDB answers 400 and the forwarder bisects).
        samples[7] = samples[7]._replace(equipment="bad\nname")
        await store.write_samples_async(samples)
        await store.flush()
        fwd = InfluxForwarder(store, InfluxForward(url=vm.url, batch_size=64, poll_s=0.05), "L1", {"coater1": "coater"})
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(fwd.run())
            await _until(lambda: fwd.stats()["cursor"] > 0)
            task.cancel()
        n = sum(len(s["values"]) for s in await vm.searchable('{__name__="coater_air_temperature"}', 19))
        assert n == 19
        assert fwd.stats()["written"] == 20
    finally:
        await store.close()


async def test_outage_catch_up_exactly_once(tmp_path: Path, vm: VictoriaMetrics) -> None:
    store = SqliteStore(tmp_path / "g.db")
    await store.start()
    try:
        samples = _stream(400)
        fwd = InfluxForwarder(store, InfluxForward(url=vm.url, batch_size=50, poll_s=0.05, backoff_max_s=0.5),
                              "L1", {"coater1": "coater"})
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(fwd.run())
            await store.write_samples_async(samples[:100])
            await store.flush()
            await _until(lambda: fwd.stats()["written"] == 100)
            vm.stop()
            await store.write_samples_async(samples[100:])
            await store.flush()
            await _until(lambda: fwd.stats()["retries"] > 0)
            assert fwd.stats()["written"] == 100  # nothing advances while the server is away
            vm.start()
            await _until(lambda: fwd.stats()["written"] == 400)
            task.cancel()
        assert fwd.stats()["rejected"] == 0
        assert sum(len(s["values"]) for s in await vm.searchable('{__name__="coater_air_temperature"}', 400)) == 400
    finally:
        await store.close()


async def test_refused_point_is_set_aside_with_its_reason_and_the_stream_goes_on(tmp_path: Path) -> None:
    # victoria-metrics answers 400 to a request holding one over-long line (InfluxDB answers 400 to a batch
    # with a bad point; the forwarder then halves the batch until the bad point is alone).
    vm = VictoriaMetrics(tmp_path / "vm", "-influx.maxLineSize=300")
    vm.start()
    store = SqliteStore(tmp_path / "g.db")
    await store.start()
    try:
        samples = _stream(10)
        samples[4] = Sample("coater1", "job.job_id", "J" * 400, "", T0 + 4, T0 + 4, Quality.GOOD)
        await store.write_samples_async(samples)
        await store.flush()
        fwd = await _forward(store, vm.url, 1, 10)
        assert fwd.stats()["rejected"] == 1
        assert sum(len(s["values"]) for s in await vm.searchable('{__name__="coater_air_temperature"}', 9)) == 9
        (kept,) = await store.rejects("influx")
        seq_of_long = next(seq for seq, x in (await store.read_since(0, 100))[0] if x.path == "job.job_id")
        assert kept["seq"] == seq_of_long and kept["point"].startswith("coater,") and "J" * 400 in kept["point"]
        assert kept["error"].startswith("HTTP 400") and "too long line" in kept["error"]
        assert await store.reject_counts() == {"influx": 1}
    finally:
        await store.close()
        vm.stop()


async def test_batch_refused_by_a_proxy_is_halved_until_it_passes(tmp_path: Path, vm: VictoriaMetrics) -> None:
    # A reverse proxy answers 413 to a request over 1 KiB: the forwarder halves batches until they pass,
    # and the one point that can never pass is set aside, not retried for ever and not lost silently.
    proxy = Nginx(tmp_path / "nginx", vm.url, "1k")
    proxy.start()
    store = SqliteStore(tmp_path / "g.db")
    await store.start()
    try:
        samples = _stream(200)
        huge = Sample("coater1", "job.job_id", os.urandom(1500).hex(), "", T0 + 7, T0 + 7, Quality.GOOD)
        await store.write_samples_async(samples[:100] + [huge] + samples[100:])
        await store.flush()
        fwd = await _forward(store, proxy.url, 201, 201)
        assert fwd.stats()["batches"] == 1 and fwd.stats()["rejected"] == 1
        got = {ts: v for s in await vm.searchable('{__name__="coater_air_temperature"}', 200)
               for v, ts in zip(s["values"], s["timestamps"])}
        assert got == {int((T0 + i) * 1000): 20.0 + i for i in range(200)}
        (kept,) = await store.rejects("influx")
        assert kept["error"].startswith("HTTP 413") and huge.value in kept["point"]
    finally:
        await store.close()
        proxy.stop()
