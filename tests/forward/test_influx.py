"""The InfluxDB forwarder against a real victoria-metrics (and nginx in front of it): every point exactly
once with value, unit and timestamp; a refused point set aside; a refusing sink holds the outbox."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from gateway.forward.config import InfluxForward
from gateway.forward.influx import InfluxForwarder
from gateway.samples import Quality, Sample
from gateway.store.sqlite import SqliteStore
from tests.forward.conftest import Nginx, VictoriaMetrics
from tests.waiting import wait_for

T0 = float(int(time.time()) - 3600)  # inside victoria-metrics retention (1 month by default)


def _stream(n: int) -> list[Sample]:
    return [Sample("coater1", f"dryer_zone[{i % 3}].air_temperature", 20.0 + i, "Cel", T0 + i, T0 + i, Quality.GOOD)
            for i in range(n)]


async def _forward(store: SqliteStore, url: str, batch_size: int, n: int) -> InfluxForwarder:
    """Run an InfluxDB forwarder until it has passed the outbox's first `n` samples: each written or set aside,
    and the cursor past them committed."""
    _, last = await store.read_since(0, n)
    fwd = InfluxForwarder(store, InfluxForward(url=url, batch_size=batch_size, poll_s=0.05), "L1", {"coater1": "coater"})
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(fwd.run())
        # Waiting on written + rejected is not enough: those count as the points land, before the batch's cursor
        # is committed; only after that commit do the stats' `cursor` and `batches` move (together), and a cancel
        # in between would leave them behind.
        await wait_for(lambda: fwd.stats()["cursor"] >= last, f"the cursor committed past {n} samples",
                       timeout=30, interval=0.05)
        task.cancel()
    assert fwd.stats()["written"] + fwd.stats()["rejected"] == n, fwd.stats()
    return fwd


def _exactly_once(points: list[tuple[tuple, int, float]]) -> dict[tuple[str, int], float]:
    """(index, ms) -> value of the air temperatures victoria-metrics holds, asserting none is there twice."""
    twice = [k for k, n in Counter((labels, ts) for labels, ts, _ in points).items() if n > 1]
    assert twice == [], f"written more than once: {twice[:5]}"
    return {(dict(labels)["index"], ts): v for labels, ts, v in points}


def _want(n: int) -> dict[tuple[str, int], float]:
    return {(str(i % 3), int((T0 + i) * 1000)): 20.0 + i for i in range(n)}


async def test_stream_lands_with_values_and_timestamps(tmp_path: Path, vm: VictoriaMetrics) -> None:
    store = SqliteStore(tmp_path / "g.db")
    await store.start()
    try:
        samples = _stream(300)
        await store.write_samples_async(samples)
        await store.flush()
        fwd = await _forward(store, vm.url, 64, 300)
        assert await store.get_cursor("influx") == fwd.stats()["cursor"]
        series = await vm.searchable('{__name__="coater_air_temperature"}', 300)
        assert all(s["metric"]["line"] == "L1" and s["metric"]["sub_unit"] == "dryer_zone"
                   and s["metric"]["unit"] == "Cel" for s in series)  # the spec's unit, as a tag
        assert _exactly_once(vm.points('{__name__="coater_air_temperature"}')) == _want(300)
        assert sum(len(s["values"]) for s in await vm.searchable('{__name__="coater_air_temperature_q"}', 300)) == 300
    finally:
        await store.close()


async def test_unwritable_point_is_set_aside_and_does_not_block_the_batch(tmp_path: Path,
                                                                          vm: VictoriaMetrics) -> None:
    store = SqliteStore(tmp_path / "g.db")
    await store.start()
    try:
        samples = _stream(20)
        # Line protocol cannot carry a line break in a tag: the point would split in two broken lines
        # (InfluxDB answers 400, victoria-metrics skips them with a 204). It is set aside before sending.
        samples[7] = samples[7]._replace(equipment="bad\nname")
        await store.write_samples_async(samples)
        await store.flush()
        fwd = await _forward(store, vm.url, 64, 20)
        assert (fwd.stats()["written"], fwd.stats()["rejected"]) == (19, 1)
        assert fwd.stats()["cursor"] == (await store.read_since(0, 100))[1]
        (kept,) = await store.rejects("influx")
        assert "bad\\nname" in kept["point"] and "line break" in kept["error"] and "'bad\\nname'" in kept["error"]
        assert await store.reject_counts() == {"influx": 1}
        await vm.searchable('{__name__="coater_air_temperature"}', 19)
        want = {k: v for k, v in _want(20).items() if k != ("1", int((T0 + 7) * 1000))}
        assert _exactly_once(vm.points('{__name__="coater_air_temperature"}')) == want
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
            await wait_for(lambda: fwd.stats()["written"] == 100, "the first 100 written", timeout=30)
            vm.stop()
            await store.write_samples_async(samples[100:])
            await store.flush()
            await wait_for(lambda: fwd.stats()["retries"] > 1, "retries while the server is away", timeout=30)
            assert fwd.stats()["written"] == 100  # nothing advances while the server is away
            assert not fwd.stats()["connected"] and "Connection" in fwd.stats()["last_error"]
            vm.start()
            await wait_for(lambda: fwd.stats()["written"] == 400, "the backlog caught up", timeout=30)
            task.cancel()
        assert fwd.stats()["rejected"] == 0 and fwd.stats()["connected"]
        await vm.searchable('{__name__="coater_air_temperature"}', 400)
        # Raw points, no de-duplication: the catch-up wrote every sample once, none twice.
        assert _exactly_once(vm.points('{__name__="coater_air_temperature"}')) == _want(400)
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
        assert (fwd.stats()["rejected"], fwd.stats()["written"]) == (1, 9)
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


# What a sink answers when the fault is its own, not the points': a bad token, a missing bucket,
# too many requests, a server error. The bodies are InfluxDB's; Retry-After as InfluxDB and proxies send it.
SINK_REFUSALS = [
    (401, '{"code":"unauthorized","message":"unauthorized access"}', None),
    (404, '{"code":"not found","message":"bucket linegw not found"}', None),
    (429, '{"code":"too many requests","message":"write limit reached"}', 1),
    (500, '{"code":"internal error","message":"disk full"}', None),
    (503, '{"code":"unavailable","message":"shutting down"}', 1),
]


@pytest.mark.parametrize(("status", "body", "retry_after"), SINK_REFUSALS, ids=[str(s[0]) for s in SINK_REFUSALS])
async def test_a_refusing_sink_holds_the_outbox_until_it_takes_writes(
        tmp_path: Path, vm: VictoriaMetrics, status: int, body: str, retry_after: int | None) -> None:
    proxy = Nginx(tmp_path / "nginx", vm.url)
    proxy.answer(status, body, retry_after)
    proxy.start()
    store = SqliteStore(tmp_path / "g.db")
    await store.start()
    try:
        await store.write_samples_async(_stream(120))
        await store.flush()
        fwd = InfluxForwarder(store, InfluxForward(url=proxy.url, batch_size=50, poll_s=0.05, backoff_max_s=0.2),
                              "L1", {"coater1": "coater"})
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(fwd.run())
            await wait_for(lambda: fwd.stats()["retries"] >= 2, "retries against the refusing sink", timeout=30)
            st = fwd.stats()
            assert (st["written"], st["rejected"], st["cursor"], st["connected"]) == (0, 0, 0, False)
            assert st["last_status"] == status and st["last_error"].startswith(f"HTTP {status}")
            assert body.split('"message":"')[1].rstrip('"}') in st["last_error"]  # the server's own reason
            if retry_after is not None:
                assert st["retry_in_s"] == retry_after
            else:  # the backoff's cap, less its jitter
                assert 0.1 <= st["retry_in_s"] <= 0.2
            assert await store.get_cursor("influx") == 0 and await store.rejects() == []
            answered = [r for r in proxy.requests() if r[1] == "/api/v2/write"]
            assert len(answered) >= 2 and {r[2] for r in answered} == {status}

            proxy.proxy()
            proxy.reload()
            await wait_for(lambda: fwd.stats()["written"] == 120, "the backlog written once the sink takes it",
                           timeout=30)

            async def cursor_stored() -> bool:
                return await store.get_cursor("influx") == 120

            await wait_for(cursor_stored, "the last batch's cursor committed", timeout=30)
            task.cancel()
        st = fwd.stats()
        assert st["connected"] and st["failing_since"] is None and st["rejected"] == 0
        assert await store.get_cursor("influx") == st["cursor"] == (await store.read_since(0, 1000))[1]
        await vm.searchable('{__name__="coater_air_temperature"}', 120)
        assert _exactly_once(vm.points('{__name__="coater_air_temperature"}')) == _want(120)
    finally:
        await store.close()
        proxy.stop()


async def test_writes_are_gzip_encoded(tmp_path: Path, vm: VictoriaMetrics) -> None:
    proxy = Nginx(tmp_path / "nginx", vm.url)
    proxy.start()
    store = SqliteStore(tmp_path / "g.db")
    await store.start()
    try:
        await store.write_samples_async(_stream(300))
        await store.flush()
        await _forward(store, proxy.url, 100, 300)
        writes = [r for r in proxy.requests() if r[:2] == ("POST", "/api/v2/write")]
        assert len(writes) == 3 and all(r[2] == 204 and r[3] == "gzip" for r in writes), writes
        # The log does tell an uncompressed write apart: one sent plainly shows no encoding.
        async with httpx.AsyncClient() as c:
            r = await c.post(f"{proxy.url}/api/v2/write", params={"org": "linegw", "bucket": "linegw"},
                             content=b"probe,line=L1 v=1i")
        assert r.status_code == 204
        await wait_for(lambda: proxy.requests()[-1][3] == "-", "the plain write in the access log", timeout=5)
    finally:
        await store.close()
        proxy.stop()
