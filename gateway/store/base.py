"""What the gateway asks of a store: samples, alarms, events, audit, link status, an outbox.

The runtime and the API depend on this protocol only, so that another store
(a server database, a time-series engine) can stand in for the embedded one.
Times are Unix seconds (floats); the time axis of samples is `source_ts`.

Rules every store follows:
  * `write_samples` is the hot path: it never blocks and never raises on load;
    what it cannot take is counted in `stats()["dropped"]`.
    `write_samples_async` waits for room instead of dropping.
  * `flush()` returns once everything enqueued before it is durable.
  * History never fabricates values: a time bucket without samples has no row,
    and a link-down marker (a BAD sample, reason "link_down") stays in place.
  * The outbox (`read_since`) hands out stored samples in commit order with a
    sequence number; forwarders keep their position as a named cursor.

The protocol is made of parts (lifecycle, sample writer, history, records,
outbox, upkeep) so that each consumer can say which part it uses, and a
store's contract tests (tests/store/) run against the whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

import numpy as np

from gateway.samples import Sample

Aggregate = Literal["avg", "min", "max", "last", "first", "count"]
EventRecord = tuple[str, float, int, dict[str, Any], Sequence[str]]  # (type, source_ts, seq, payload, ids)
AlarmState = Literal["raised", "cleared", "acknowledged"]
AGGREGATES: tuple[str, ...] = ("avg", "min", "max", "last", "first", "count")


@runtime_checkable
class Lifecycle(Protocol):
    async def start(self) -> None:
        """Open (creating if needed) and start accepting writes."""

    async def close(self) -> None:
        """Write out everything queued, then release the store."""

    async def flush(self) -> None:
        """Return once everything enqueued so far is durable."""

    def stats(self) -> dict[str, Any]:
        """queued, written, dropped, batches, db_size_bytes, last_commit_ts, and store-specific figures."""


@runtime_checkable
class SampleWriter(Protocol):
    """The hot path: acquisition hands samples over without waiting, or waits for room."""

    def write_samples(self, samples: list[Sample]) -> bool:
        """Enqueue without blocking; a full queue drops the list and counts it.

        True when the queue is past half full: a producer that can wait awaits `room()`.
        """

    async def room(self) -> None:
        """Return once the write queue has room again (back-pressure for producers)."""

    async def write_samples_async(self, samples: list[Sample]) -> None:
        """Enqueue, waiting for room when the queue is full (back-pressure)."""


class SampleColumns(NamedTuple):
    """Raw samples of one series column by column, oldest first: a raw history() without a dict per sample.

    For reads of many samples (a rack's channels over an hour is 1.8 million): the numbers stay in
    arrays, and building 1.8 million dicts would cost more than reading them."""

    ts: np.ndarray  # source times, float64
    gateway_ts: np.ndarray  # float64
    quality: np.ndarray  # uint8: Quality values
    number: np.ndarray  # float64: the value as a number (bools as 0/1), NaN where it is text or none
    values: list[Any]  # the values as written: float, int, bool, str or None
    reasons: list[str]  # "" where none


@runtime_checkable
class SampleHistory(Protocol):
    """Samples read back: history raw or in buckets (the rollups), the newest values, the series."""

    async def history(
        self,
        equipment: str,
        path: str,
        start: float,
        end: float,
        bucket_s: float | None = None,
        agg: Aggregate | str | Sequence[str] = "avg",
        limit: int = 10000,
    ) -> list[dict[str, Any]]:
        """Samples of one series with start <= source_ts < end, oldest first.

        Raw (bucket_s None): {"ts", "value", "quality", "reason", "gateway_ts"}.
        Bucketed: {"ts" (bucket start), <each aggregate>, "bad"}, aggregates over
        GOOD samples only, "bad" counting the others; only buckets holding samples.
        """

    async def history_columns(self, equipment: str, path: str, start: float, end: float,
                              limit: int = 10000) -> SampleColumns:
        """The samples of a raw history() (start <= source_ts < end, oldest first, at most limit) as columns."""

    async def latest(self, equipment: str | None = None) -> list[Sample]:
        """The newest stored sample of every series (of one machine)."""

    async def series(self, equipment: str | None = None) -> list[tuple[str, str, str]]:
        """(equipment, path, unit) of every stored series."""


@runtime_checkable
class Records(Protocol):
    """What happened to machines, units and commands: alarms, events, the audit log, link status."""

    async def record_alarm(self, equipment: str, occurrence_id: str, code: int, text: str, severity: int,
                           state: AlarmState, ts: float, stop_reason: bool, by: str | None = None) -> None: ...

    async def alarms(self, equipment: str | None = None, active_only: bool = False, start: float | None = None,
                     end: float | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Occurrences, newest raised first: raised_ts, cleared_ts, acked_ts, acked_by, active, acknowledged."""

    async def record_event(self, equipment: str, event_type: str, source_ts: float, seq: int,
                           payload: dict[str, Any], ids: Sequence[str] = ()) -> int:
        """Store an event; `ids` are the unit/lot IDs it mentions (indexed for traceability)."""

    async def record_events(self, equipment: str, events: Sequence[EventRecord]) -> list[int]:
        """Store a machine's events as `record_event` does each, in order, in one transaction; their ids.

        A formation tray of 512 cells ends with 512 events: one commit each, at the 70-300 ms a commit takes
        beside eight racks' samples, would hold them back by a minute or more."""

    async def events(self, equipment: str | None = None, event_type: str | None = None, start: float | None = None,
                     end: float | None = None, limit: int = 1000) -> list[dict[str, Any]]: ...

    async def events_referencing(self, id_value: str) -> list[dict[str, Any]]: ...

    async def record_audit(self, ts: float, user: str, role: str, equipment: str, command: str,
                           args: dict[str, Any], result_code: int, result: str, detail: str) -> None: ...

    async def audit(self, limit: int = 200, equipment: str | None = None) -> list[dict[str, Any]]: ...

    async def record_link(self, equipment: str, ts: float, up: bool, reason: str) -> None: ...

    async def link_history(self, equipment: str, start: float, end: float) -> list[dict[str, Any]]:
        """Link-down intervals overlapping [start, end): {"down_ts", "up_ts" (None: still down), "reason"}."""


@runtime_checkable
class Outbox(Protocol):
    """Stored samples handed to forwarders in commit order, each under its own named cursor."""

    async def read_since(self, cursor: int, limit: int) -> tuple[list[tuple[int, Sample]], int]:
        """Stored samples with sequence > cursor in commit order, and the cursor to pass next."""

    async def get_cursor(self, name: str) -> int | None: ...

    async def set_cursor(self, name: str, value: int) -> None: ...

    async def register_consumer(self, name: str) -> int:
        """Make `name` an outbox consumer: retention keeps what it has not passed. Returns its cursor."""

    async def unregister_consumer(self, name: str) -> None: ...

    async def outbox_backlog(self, cursor: int) -> tuple[int, float | None]:
        """Samples stored after `cursor`, and the recording time (gateway_ts) of the oldest of them."""

    async def record_reject(self, consumer: str, seq: int, point: str, error: str) -> None:
        """Keep a point a sink refused for good, with the sink's reason."""

    async def rejects(self, consumer: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Points set aside by forwarders, newest first: ts, consumer, seq, point, error."""

    async def reject_counts(self) -> dict[str, int]:
        """Per consumer: points set aside."""

    async def discards(self, since: float | None = None) -> dict[str, int]:
        """Per consumer: samples the disk budget deleted before the consumer had them (recorded since a time)."""


@runtime_checkable
class Upkeep(Protocol):
    """Retention by age (the store also runs it on its own) and the disk budget (reported in stats())."""

    async def apply_retention(self, now: float | None = None) -> int:
        """Run retention to the end now; returns the samples deleted."""


@runtime_checkable
class Store(Lifecycle, SampleWriter, SampleHistory, Records, Outbox, Upkeep, Protocol):
    """Everything the gateway asks of a store. Parts of the gateway that need less ask for the part they use."""
