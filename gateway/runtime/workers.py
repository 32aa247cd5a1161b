"""Acquisition workers: the machines' adapters run in processes of their own, beside the gateway's.

One Python process does its Python work on one core. With `acquisition: {workers: N}` in the line file, the
machines' adapters (connecting, scanning, decoding, reconnecting) run in N worker processes, and the gateway's
process keeps the rest: validation, the live picture, events, commands, the store and the API. A machine's
supervisor (device.py) does not see the difference: `RemoteAdapter` is an `Adapter` (adapters/base.py) whose work
happens in a worker. Machines are shared out among the workers in the line file's order.

Across the boundary (a Unix socket pair per worker; a frame is a 4-byte length and a pickle):

* A batch of readings is one message in columns: the points' indices (packed uint32), the values, and the source
  timestamps and errors only when the batch has any. Never one object per value on the wire. A reading without a
  source time (Modbus has none) gets the time the worker received it, not the time the gateway's process took it:
  the hop between the processes counts in the sample's latency, as it should.
* Back-pressure holds: a worker's adapter reads again once the gateway has taken its batch (WINDOW), and while
  the store is behind, not before its room, as in process. The gateway takes a batch once `on_readings`, and the
  store's room it may ask for, are done with it.
* `read`, `write` and `call` (commands, read-back, the event mailbox) are requests the worker answers; a failure
  comes back as the exception the adapter raised there (`AdapterError`, `NotImplementedError`).
* The adapters' log lines are sent to the gateway's process and logged there under their own loggers.
* A worker that ends (killed, out of memory) takes its machines' links down with the reason; it is started again
  and their adapters opened again, with backoff. What it had read but not sent is lost with it, as readings in
  flight are when a machine's link drops; what it sent is the gateway's. A worker whose gateway is gone exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import pickle
import signal
import socket
import struct
import sys
import time
from array import array
from collections.abc import Awaitable, Callable
from functools import partial
from itertools import repeat
from typing import Any

from gateway.adapters import adapter_factory
from gateway.adapters.base import Adapter, AdapterError, AdapterFactory, AdapterHealth, LinkCallback, Point, RawReading, ReadingsCallback, new_reading
from gateway.backoff import Backoff
from gateway.runtime.gctime import settle

log = logging.getLogger("linegw.workers")

# Batches a worker's adapter may have out before it waits for the gateway to take them. One, as in process: the
# adapter reads again once the runtime is done with its batch, and not before the store's room when the store is
# behind. With four, eight racks in workers overran the store's queue while it sealed (a batch each of 8,750
# samples dropped in 20 minutes): each machine could be three batches past the point where the store said "behind".
WINDOW = 1
HEALTH_S = 1.0  # how often a worker sends its adapters' health between batches (a machine that is down sends none)
REOPEN_FIRST_S, REOPEN_MAX_S = 0.5, 30.0  # backoff before an adapter is opened again after its worker ended
_HEADER = struct.Struct("!I")
# Where this gateway's code is: a worker imports the same, whatever directory the gateway was started in.
_HOME = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (keys new to the index, indices, values, source times or None, errors or None, when the worker received them)
Packed = tuple[list[str], bytes, list[Any], list[float | None] | None, dict[int, str] | None, float]


def _frame(msg: tuple[Any, ...]) -> bytes:
    data = pickle.dumps(msg, pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    return pickle.loads(await reader.readexactly(size))


def pack(readings: list[RawReading], index: dict[str, int], received: float) -> Packed:
    """A batch as columns (see `Packed`); `index` learns the keys it had not seen."""
    if not readings:
        return [], b"", [], None, None, received
    keys, values, stamps, errors = zip(*readings, strict=True)
    new: list[str] = []
    try:
        idx = array("I", map(index.__getitem__, keys))
    except KeyError:  # a key not seen before (an adapter may report more than its points): numbered as it comes
        for k in keys:
            if k not in index:
                index[k] = len(index)
                new.append(k)
        idx = array("I", map(index.__getitem__, keys))
    ts = None if stamps.count(None) == len(stamps) else list(stamps)
    errs = None if errors.count("") == len(errors) else {i: e for i, e in enumerate(errors) if e}
    return new, idx.tobytes(), list(values), ts, errs, received


def unpack(keys: list[str], packed: Packed) -> list[RawReading]:
    """The readings `pack` made, with `keys` the index's keys in order (extended by the batch's new ones)."""
    new, idx, values, ts, errs, received = packed
    keys.extend(new)
    errors = repeat("") if errs is None else (errs.get(i, "") for i in range(len(values)))
    stamps = repeat(received) if ts is None else (received if t is None else t for t in ts)
    return list(map(new_reading, zip(map(keys.__getitem__, array("I", idx)), values, stamps, errors)))


# --- the gateway's side ------------------------------------------------------------------------------------------
class RemoteAdapter:
    """An adapter that runs in an acquisition worker; built as `factory(endpoint, points, settings)`."""

    def __init__(self, worker: Worker, protocol: str, endpoint: str, points: list[Point], settings: dict[str, Any]):
        self.worker = worker
        self.protocol, self.endpoint, self.points, self.settings = protocol, endpoint, points, settings
        self.keys: list[str] = []
        self._health = AdapterHealth()
        self._ended: asyncio.Future[str] | None = None
        self._on_readings: ReadingsCallback | None = None
        self._on_link: LinkCallback | None = None
        self._up = False
        self._acks: set[asyncio.Task[None]] = set()

    async def run(self, on_readings: ReadingsCallback, on_link: LinkCallback) -> None:
        self._on_readings, self._on_link = on_readings, on_link
        backoff = Backoff(REOPEN_FIRST_S, REOPEN_MAX_S, healthy_after_s=60.0)
        while True:
            backoff.healthy()
            self._ended = asyncio.get_running_loop().create_future()
            self.keys = [p.key for p in self.points]
            try:
                try:
                    await self.worker.open(self)
                except (OSError, RuntimeError) as exc:
                    reason = f"acquisition worker {self.worker.index} could not start: {exc}"
                else:
                    # Raises what the runtime raised on a batch, as in process: the machine's supervisor restarts it.
                    reason = await self._ended
            finally:
                self.worker.close(self)
                for task in self._acks:
                    task.cancel()
            self._health = dataclasses.replace(self._health, connected=False, last_error=reason)
            if self._up:
                self._up = False
                on_link(False, reason)
            delay = backoff.next()
            log.warning("%s: %s; opened again in %.1f s", self.endpoint, reason, delay)
            await asyncio.sleep(delay)

    async def read(self, keys: list[str]) -> list[RawReading]:
        result: list[RawReading] = await self.worker.request(self, "read", keys)
        return result

    async def write(self, key: str, value: Any) -> None:
        await self.worker.request(self, "write", key, value)

    async def call(self, key: str, args: list[Any]) -> list[Any]:
        result: list[Any] = await self.worker.request(self, "call", key, args)
        return result

    def health(self) -> AdapterHealth:
        return dataclasses.replace(self._health, extra={**self._health.extra,
                                                        "acquisition_worker": self.worker.index})

    # What the worker sends about this adapter.
    def readings(self, packed: Packed, health: AdapterHealth) -> None:
        assert self._on_readings is not None
        self._health = health
        behind = self._on_readings(unpack(self.keys, packed))
        if behind is None:
            self.worker.ack(self)
            return
        task = asyncio.get_running_loop().create_task(self._ack_after(behind))
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)

    async def _ack_after(self, behind: Awaitable[None]) -> None:
        try:
            await behind
        except Exception as exc:  # the store's room failed: in process the adapter's wait would have raised it
            self.failed(exc)
            return
        self.worker.ack(self)

    def link(self, up: bool, reason: str, health: AdapterHealth) -> None:
        assert self._on_link is not None
        self._health = health
        self._up = up
        self._on_link(up, reason)

    def health_seen(self, health: AdapterHealth) -> None:
        self._health = health

    def ended(self, reason: str) -> None:
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(reason)

    def failed(self, exc: Exception) -> None:
        if self._ended is not None and not self._ended.done():
            self._ended.set_exception(exc)


class Worker:
    """One acquisition process, started when an adapter is first opened in it and again after it ended."""

    def __init__(self, index: int):
        self.index = index
        self.starts = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()
        self._adapters: dict[int, RemoteAdapter] = {}
        self._ids: dict[RemoteAdapter, int] = {}
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next = itertools.count(1)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    async def open(self, adapter: RemoteAdapter) -> None:
        async with self._starting:
            if self._writer is None:
                await self._start()
        aid = next(self._next)
        self._adapters[aid], self._ids[adapter] = adapter, aid
        self._send(("open", aid, adapter.protocol, adapter.endpoint, adapter.points, adapter.settings))

    def close(self, adapter: RemoteAdapter) -> None:
        aid = self._ids.pop(adapter, None)
        if aid is not None:
            self._adapters.pop(aid, None)
            self._send(("close", aid))

    def ack(self, adapter: RemoteAdapter) -> None:
        aid = self._ids.get(adapter)
        if aid is not None:
            self._send(("ack", aid))

    async def request(self, adapter: RemoteAdapter, kind: str, *args: Any) -> Any:
        aid = self._ids.get(adapter)
        if aid is None or self._writer is None:
            raise AdapterError(f"{adapter.endpoint}: its acquisition worker {self.index} is not running")
        rid = next(self._next)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            self._send((kind, aid, rid, *args))
            return await fut
        finally:
            self._pending.pop(rid, None)

    def _send(self, msg: tuple[Any, ...]) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(_frame(msg))

    async def _start(self) -> None:
        # A fresh interpreter, not a fork (the gateway has threads, the store's, and a fork copies their locks), and
        # not multiprocessing's spawn, which imports the gateway's main module (the whole CLI) into every worker.
        mine, theirs = socket.socketpair()
        fd = theirs.fileno()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([_HOME, *filter(None, [os.environ.get("PYTHONPATH")])])}
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", "import sys; from gateway.runtime.workers import worker_main; "
                "worker_main(int(sys.argv[1]), int(sys.argv[2]))", str(fd),
                str(logging.getLogger().getEffectiveLevel()), pass_fds=(fd,), stdin=asyncio.subprocess.DEVNULL,
                env=env)
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        reader, self._writer = await asyncio.open_unix_connection(sock=mine)
        self._proc = proc
        self.starts += 1
        self._reader = asyncio.get_running_loop().create_task(self._read(reader, proc),
                                                              name=f"acquisition-worker-{self.index}")
        log.info("acquisition worker %d started (pid %s)", self.index, proc.pid)

    async def _read(self, reader: asyncio.StreamReader, proc: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                self._dispatch(await _read_frame(reader))
                # Frames already buffered are read without a pause: let the loop send what one batch made (the
                # live messages) before the next batch is taken.
                await asyncio.sleep(0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await proc.wait()
        self._lost(f"acquisition worker {self.index} ended (exit code {proc.returncode})")

    def _dispatch(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "reply":
            _, rid, ok, payload = msg
            fut = self._pending.get(rid)
            if fut is not None and not fut.done():
                if ok:
                    fut.set_result(payload)
                else:
                    fut.set_exception(payload)
        elif kind == "log":
            _, name, level, text, exc_text, created = msg
            logger = logging.getLogger(name)
            if logger.isEnabledFor(level):
                logger.handle(logging.makeLogRecord({
                    "name": name, "levelno": level, "levelname": logging.getLevelName(level), "msg": text,
                    "exc_text": exc_text, "created": created, "process": self.pid}))
        else:
            adapter = self._adapters.get(msg[1])
            if adapter is None:
                return  # closed since it was sent
            try:
                if kind == "readings":
                    adapter.readings(msg[2], msg[3])
                elif kind == "link":
                    adapter.link(msg[2], msg[3], msg[4])
                elif kind == "health":
                    adapter.health_seen(msg[2])
                elif kind == "ended":
                    adapter.ended(msg[2])
            except Exception as exc:  # the machine's task failing is its supervisor's business, not the worker's
                adapter.failed(exc)

    def _lost(self, reason: str) -> None:
        log.warning("%s", reason)
        if self._writer is not None:
            self._writer.close()
        self._writer, self._proc = None, None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(AdapterError(reason))
        for adapter in list(self._adapters.values()):
            adapter.ended(reason)
        self._adapters.clear()
        self._ids.clear()

    async def stop(self) -> None:
        task, proc, writer = self._reader, self._proc, self._writer
        self._reader = self._proc = self._writer = None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if writer is not None:
            writer.close()
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


class AcquisitionWorkers:
    """The line's acquisition workers, and which machine runs in which."""

    def __init__(self, count: int):
        self.workers = [Worker(i) for i in range(count)]
        self._assigned: dict[str, Worker] = {}

    def __len__(self) -> int:
        return len(self.workers)

    def factory(self, equipment_id: str, protocol: str) -> AdapterFactory:
        """How the machine's adapter is built: in the worker with the fewest machines (the same one again on a
        restart). Looking the protocol up here refuses an adapter that is not installed in the gateway's process,
        at once, as in process."""
        adapter_factory(protocol)
        worker = self._assigned.get(equipment_id)
        if worker is None:
            load = {w.index: 0 for w in self.workers}
            for w in self._assigned.values():
                load[w.index] += 1
            worker = self.workers[min(load, key=lambda i: (load[i], i))]
            self._assigned[equipment_id] = worker
        return partial(RemoteAdapter, worker, protocol)

    def release(self, equipment_id: str) -> None:
        self._assigned.pop(equipment_id, None)

    def health(self) -> list[dict[str, Any]]:
        return [{"index": w.index, "pid": w.pid, "starts": w.starts,
                 "equipment": sorted(e for e, a in self._assigned.items() if a is w)} for w in self.workers]

    async def stop(self) -> None:
        await asyncio.gather(*(w.stop() for w in self.workers))


# --- the worker's side -------------------------------------------------------------------------------------------
class _Hosted:
    """One adapter in a worker, and the batches it has out."""

    def __init__(self, aid: int, adapter: Adapter, keys: list[str], send: Callable[[tuple[Any, ...]], None]):
        self.aid, self.adapter, self.send = aid, adapter, send
        self.index = {k: i for i, k in enumerate(keys)}
        self.out = 0
        self.room = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        try:
            await self.adapter.run(self.on_readings, self.on_link)
            reason = "the adapter stopped"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an adapter must not raise; if it does, the gateway says so and opens it again
            logging.getLogger("linegw.workers").exception("adapter failed in its acquisition worker")
            reason = f"the adapter failed: {type(exc).__name__}: {exc}"
        self.send(("ended", self.aid, reason))

    def on_readings(self, readings: list[RawReading]) -> Awaitable[None] | None:
        packed = pack(readings, self.index, time.time())
        try:
            self.send(("readings", self.aid, packed, self.adapter.health()))
        except (pickle.PicklingError, TypeError, AttributeError):
            self.send(("readings", self.aid, _transferable(packed), self.adapter.health()))
        self.out += 1
        if self.out < WINDOW:
            return None
        self.room.clear()
        return self._wait_room()

    async def _wait_room(self) -> None:
        await self.room.wait()

    def on_link(self, up: bool, reason: str) -> None:
        self.send(("link", self.aid, up, reason, self.adapter.health()))

    def taken(self) -> None:
        self.out -= 1
        self.room.set()


def _transferable(packed: Packed) -> Packed:
    """A batch with the values that cannot cross to the gateway marked bad with the reason, the others kept."""
    new, idx, values, ts, errs, received = packed
    errs = dict(errs or {})
    kept: list[Any] = []
    for i, v in enumerate(values):
        try:
            pickle.dumps(v, pickle.HIGHEST_PROTOCOL)
            kept.append(v)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            kept.append(None)
            errs[i] = f"value not transferable from the acquisition worker: {type(v).__name__}: {exc}"
    return new, idx, kept, ts, errs, received


class _ToGateway(logging.Handler):
    def __init__(self, send: Callable[[tuple[Any, ...]], None]):
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            exc_text = logging.Formatter().formatException(record.exc_info) if record.exc_info else record.exc_text
            self._send(("log", record.name, record.levelno, record.getMessage(), exc_text, record.created))
        except Exception:
            self.handleError(record)


async def _serve(sock: socket.socket, level: int) -> None:
    reader, writer = await asyncio.open_unix_connection(sock=sock)

    def send(msg: tuple[Any, ...]) -> None:
        if not writer.is_closing():
            writer.write(_frame(msg))

    settle()  # the collector as in the gateway's process: a scan's readings are thousands of young tuples
    root = logging.getLogger()
    root.handlers[:] = [_ToGateway(send)]
    root.setLevel(level)
    hosted: dict[int, _Hosted] = {}
    answering: set[asyncio.Task[None]] = set()

    async def answer(h: _Hosted, kind: str, rid: int, args: tuple[Any, ...]) -> None:
        try:
            result: Any = None
            if kind == "read":
                result = await h.adapter.read(*args)
            elif kind == "write":
                await h.adapter.write(*args)
            else:
                result = await h.adapter.call(*args)
            send(("reply", rid, True, result))
        except Exception as exc:
            try:
                send(("reply", rid, False, exc))
            except (pickle.PicklingError, TypeError, AttributeError):
                send(("reply", rid, False, AdapterError(f"{type(exc).__name__}: {exc}")))

    async def report_health() -> None:
        while True:
            await asyncio.sleep(HEALTH_S)
            for h in list(hosted.values()):
                send(("health", h.aid, h.adapter.health()))

    health_task = asyncio.create_task(report_health())
    try:
        while True:
            try:
                msg = await _read_frame(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return  # the gateway is gone: so is its worker
            kind, aid = msg[0], msg[1]
            if kind == "open":
                _, _, protocol, endpoint, points, settings = msg
                try:
                    adapter = adapter_factory(protocol)(endpoint, points, settings)
                except Exception as exc:
                    send(("ended", aid, f"the adapter could not be built: {type(exc).__name__}: {exc}"))
                    continue
                h = hosted[aid] = _Hosted(aid, adapter, [p.key for p in points], send)
                h.task = asyncio.create_task(h.run(), name=f"adapter {endpoint}")
            elif kind == "ack":
                if aid in hosted:
                    hosted[aid].taken()
            elif kind == "close":
                closing = hosted.pop(aid, None)
                if closing is not None and closing.task is not None:
                    closing.task.cancel()
            elif aid in hosted:  # read, write, call
                task = asyncio.create_task(answer(hosted[aid], kind, msg[2], msg[3:]))
                answering.add(task)
                task.add_done_callback(answering.discard)
            else:
                send(("reply", msg[2], False, AdapterError("the adapter was closed")))
    finally:
        health_task.cancel()
        for h in hosted.values():
            if h.task is not None:
                h.task.cancel()
        await asyncio.gather(*(h.task for h in hosted.values() if h.task is not None), return_exceptions=True)


def worker_main(fd: int, level: int) -> None:
    """The worker process: serves the gateway on the socket `fd` until the gateway closes it."""
    # Ctrl-C reaches the whole process group; the gateway stops its workers itself, in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_serve(socket.socket(fileno=fd), level))
