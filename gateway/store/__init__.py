"""Where the gateway keeps what it records: samples, alarms, events, audit, link status.

`Store` is the protocol every store follows; `SqliteStore` is the embedded,
zero-setup default (one SQLite file in WAL mode, in-process).
"""

from gateway.store.base import (
    AGGREGATES,
    Lifecycle,
    Outbox,
    Records,
    SampleColumns,
    SampleHistory,
    SampleWriter,
    Store,
    Upkeep,
)
from gateway.store.sqlite import SqliteStore, StoreClosed

__all__ = ["AGGREGATES", "Lifecycle", "Outbox", "Records", "SampleColumns", "SampleHistory", "SampleWriter",
           "SqliteStore", "Store", "StoreClosed", "Upkeep"]
